//! Automatic caching: ordinary Diesel reads through a `CachedConnection` served
//! from the cache when their model's profile enables the op (PostgreSQL), and
//! plain reads on SQLite, where rows cannot be replayed.

/// The shared setup: a seeded database, a handle with the given profiles, and a
/// `CachedConnection` whose statements are counted.
macro_rules! setup {
    ($blog:ident, $db:ty) => {
        use crate::ctx::*;
        use crate::fixtures::$blog::*;
        use cacheops::{CachedConnection, Cacheops, Ops, Profile};
        use diesel::prelude::*;

        /// `conn` is dropped first: an open transaction must end before the
        /// context drops the test's schema.
        struct Setup {
            conn: CachedConnection<Conn>,
            cache: Cacheops,
            queries: QueryCounter,
            ctx: Ctx<$db>,
        }

        impl Drop for Setup {
            fn drop(&mut self) {
                let _ = self.cache.invalidate_all();
            }
        }

        fn profile(ops: &str) -> Profile {
            Profile::new(
                Ops::parse(ops).unwrap(),
                std::time::Duration::from_secs(600),
            )
        }

        fn setup(store: StoreKind, profiles: &[(&str, &str)]) -> Setup {
            let mut ctx: Ctx<$db> = Ctx::new(store);
            seed(&mut ctx.conn, 3, 4);
            let profiles: Vec<_> = profiles.iter().map(|(p, ops)| (*p, profile(ops))).collect();
            let cache = handle_with(store, &unique("cacheops_auto"), &profiles);
            let queries = QueryCounter::default();
            let mut inner: Conn = ctx.db.connect();
            queries.instrument(&mut inner);
            let conn = CachedConnection::new(inner, cache.clone());
            Setup {
                conn,
                cache,
                queries,
                ctx,
            }
        }

        impl Setup {
            /// Runs `f` on the cached connection: its result and the statements it ran.
            fn counted<T>(
                &mut self,
                f: impl FnOnce(&mut CachedConnection<Conn>) -> T,
            ) -> (T, usize) {
                self.queries.take();
                let out = f(&mut self.conn);
                (out, self.queries.take())
            }

            fn category(&mut self, c: i32) -> (Vec<Article>, usize) {
                self.counted(|conn| in_category(c).load(conn).unwrap())
            }

            /// What the database holds, read on the plain connection.
            fn truth(&mut self, c: i32) -> Vec<Article> {
                in_category(c).load(&mut self.ctx.conn).unwrap()
            }
        }
    };
}

macro_rules! automatic {
    ($name:ident, $store:expr) => {
        mod $name {
            setup!(pg, PgDb);
            use cacheops::CachedQueryDsl;
            use diesel::dsl::{exists, max};

            const STORE: StoreKind = $store;

            fn all() -> Setup {
                setup(STORE, &[("*.*", "all")])
            }

            #[test]
            fn load_twice_runs_no_statement_the_second_time() {
                let mut s = all();
                let (first, n1) = s.category(1);
                let (second, n2) = s.category(1);
                assert_eq!((n1, n2), (1, 0));
                assert_eq!(first, second);
                assert_eq!(second, s.truth(1));
                assert_eq!(s.category(2), (s.truth(2), 1), "other binds, other entry");
            }

            #[test]
            fn find_first_and_get_result_hit() {
                let mut s = all();
                let id = s.truth(1)[0].id;
                let first = |c: &mut _| articles::table.find(id).first::<Article>(c);
                let (a, n1) = s.counted(first);
                let (b, n2) = s.counted(first);
                assert_eq!((n1, n2), (1, 0));
                assert_eq!(a.unwrap(), b.unwrap());
                let get = |c: &mut _| articles::table.find(id).get_result::<Article>(c).unwrap();
                assert_eq!(s.counted(get).1, 1);
                let (got, n) = s.counted(get);
                assert_eq!((got.id, n), (id, 0));
            }

            #[test]
            fn no_row_is_not_found_as_uncached() {
                let mut s = all();
                let missing = |c: &mut _| articles::table.find(9999).first::<Article>(c);
                for expected in [1, 0] {
                    let (result, n) = s.counted(missing);
                    assert!(matches!(result, Err(diesel::result::Error::NotFound)));
                    assert_eq!(n, expected);
                }
                let (none, n) = s.counted(|c| missing(c).optional().unwrap());
                assert_eq!((none, n), (None, 0));
            }

            #[test]
            fn count_exists_and_aggregate_hit() {
                let mut s = all();
                let count = |c: &mut _| {
                    let q = articles::table.filter(articles::category_id.eq(1));
                    q.count().get_result::<i64>(c).unwrap()
                };
                assert_eq!(s.counted(count), (4, 1));
                assert_eq!(s.counted(count), (4, 0));
                let any = |c: &mut _| {
                    let q = articles::table.filter(articles::title.eq("a2-1"));
                    diesel::select(exists(q)).get_result::<bool>(c).unwrap()
                };
                assert_eq!(s.counted(any), (true, 1));
                assert_eq!(s.counted(any), (true, 0));
                let top = |c: &mut _| {
                    let q = articles::table.select(max(articles::id));
                    q.get_result::<Option<i32>>(c).unwrap()
                };
                assert_eq!(s.counted(top), (Some(12), 1));
                assert_eq!(s.counted(top), (Some(12), 0));
            }

            #[test]
            fn a_profile_without_fetch_leaves_filters_uncached() {
                let mut s = setup(STORE, &[("blog.Article", "get")]);
                assert_eq!(s.category(1).1, 1);
                assert_eq!(
                    s.category(1).1,
                    1,
                    "a filter on a non-key column is a fetch"
                );
                let count = |c: &mut _| articles::table.count().get_result::<i64>(c).unwrap();
                assert_eq!((s.counted(count).1, s.counted(count).1), (1, 1));
                let id = s.truth(2)[1].id;
                let find = |c: &mut _| articles::table.find(id).first::<Article>(c).unwrap();
                assert_eq!((s.counted(find).1, s.counted(find).1), (1, 0));
            }

            #[test]
            fn just_enable_is_cached_only_explicitly() {
                let mut s = setup(STORE, &[("blog.Category", "just_enable"), ("*.*", "all")]);
                let plain = |c: &mut _| categories::table.load::<Category>(c).unwrap();
                assert_eq!((s.counted(plain).1, s.counted(plain).1), (1, 1));
                let cache = s.cache.clone();
                let explicit = |c: &mut _| {
                    let q = categories::table.cache().using(&cache);
                    q.load::<Category>(c).unwrap()
                };
                assert_eq!((s.counted(explicit).1, s.counted(explicit).1), (1, 0));
                assert_eq!(s.counted(explicit).0, s.counted(plain).0);
            }

            #[test]
            fn an_explicit_call_stores_its_result_once() {
                let mut s = all();
                let cache = s.cache.clone();
                let misses = cache.stats().misses;
                let explicit = |c: &mut _| {
                    in_category(3)
                        .cache()
                        .using(&cache)
                        .load::<Article>(c)
                        .unwrap()
                };
                let (typed, n) = s.counted(explicit);
                assert_eq!(
                    (n, cache.stats().misses - misses),
                    (1, 1),
                    "one miss, not two"
                );
                assert_eq!(
                    s.category(3),
                    (typed.clone(), 1),
                    "typed and raw entries differ"
                );
                assert_eq!(s.category(3), (typed, 0));
            }

            #[test]
            fn writes_invalidate_granularly() {
                let mut s = all();
                s.category(1);
                s.category(2);
                let count = |c: &mut _| {
                    let q = articles::table.filter(articles::category_id.eq(1));
                    q.count().get_result::<i64>(c).unwrap()
                };
                s.counted(count);
                diesel::insert_into(articles::table)
                    .values(&NewArticle::new(1, "new"))
                    .execute(&mut s.conn)
                    .unwrap();
                assert_eq!(s.category(2).1, 0, "an untouched category stays a hit");
                let (cat1, n) = s.category(1);
                assert_eq!((cat1.len(), n), (5, 1));
                assert_eq!(cat1, s.truth(1));
                assert_eq!(s.counted(count), (5, 1));
                diesel::update(articles::table.filter(articles::category_id.eq(2)))
                    .set(articles::views.eq(9))
                    .execute(&mut s.conn)
                    .unwrap();
                let (cat2, n) = s.category(2);
                assert_eq!(n, 1);
                assert!(cat2.iter().all(|a| a.views == 9));
            }

            #[test]
            fn a_dirty_transaction_bypasses_the_cache() {
                let mut s = all();
                s.category(1);
                let queries = s.queries.clone();
                s.conn
                    .transaction(|conn| {
                        queries.take();
                        in_category(1).load::<Article>(conn)?;
                        assert_eq!(queries.take(), 0, "clean: served from the cache");
                        diesel::update(articles::table)
                            .set(articles::views.eq(7))
                            .execute(conn)?;
                        for _ in 0..2 {
                            queries.take();
                            let inside = in_category(1).load::<Article>(conn)?;
                            assert_eq!(queries.take(), 1, "dirty: straight to the database");
                            assert!(inside.iter().all(|a| a.views == 7), "reads its own write");
                        }
                        QueryResult::Ok(())
                    })
                    .unwrap();
                let (rows, n) = s.category(1);
                assert_eq!(n, 1, "the COMMIT invalidated the entry");
                assert!(rows.iter().all(|a| a.views == 7));
                assert_eq!(s.category(1).1, 0);
            }

            #[derive(Debug, PartialEq, QueryableByName)]
            struct ByName {
                #[diesel(sql_type = diesel::sql_types::Integer)]
                id: i32,
                #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
                body: Option<String>,
            }

            #[test]
            fn nulls_and_column_types_round_trip() {
                let mut s = all();
                let id = s.truth(1)[0].id;
                diesel::update(articles::table.find(id))
                    .set((articles::body.eq("some text"), articles::score.eq(-2.5)))
                    .execute(&mut s.ctx.conn)
                    .unwrap();
                // Each query twice: on the plain connection (the truth) and cached.
                macro_rules! all_rows {
                    () => {
                        |c: &mut _| {
                            articles::table
                                .order(articles::id)
                                .load::<Article>(c)
                                .unwrap()
                        }
                    };
                }
                let truth = (all_rows!())(&mut s.ctx.conn);
                assert_eq!(s.counted(all_rows!()), (truth.clone(), 1));
                assert_eq!(s.counted(all_rows!()), (truth.clone(), 0));
                assert!(truth.iter().any(|a| a.body.is_none()) && truth[0].body.is_some());
                macro_rules! columns {
                    () => {
                        |c: &mut _| {
                            let cols = (
                                articles::body,
                                articles::created_at,
                                articles::uid,
                                articles::score,
                            );
                            let q = articles::table.select(cols).order(articles::id);
                            q.load::<(Option<String>, chrono::NaiveDateTime, uuid::Uuid, f64)>(c)
                                .unwrap()
                        }
                    };
                }
                let expected = (columns!())(&mut s.ctx.conn);
                assert_eq!(s.counted(columns!()), (expected.clone(), 1));
                assert_eq!(s.counted(columns!()), (expected, 0));
                let nulls = |c: &mut _| {
                    let q = articles::table.filter(articles::category_id.eq(2));
                    q.select(articles::body).load::<Option<String>>(c).unwrap()
                };
                assert_eq!(s.counted(nulls), (vec![None; 4], 1));
                assert_eq!(s.counted(nulls), (vec![None; 4], 0), "an all-NULL column");
                let by_name = |c: &mut _| {
                    diesel::sql_query("SELECT id, body FROM articles WHERE id = $1")
                        .bind::<diesel::sql_types::Integer, _>(id)
                        .load::<ByName>(c)
                        .unwrap()
                };
                let expected = vec![ByName {
                    id,
                    body: Some("some text".into()),
                }];
                assert_eq!(s.counted(by_name), (expected, 1));
                assert_eq!(s.counted(by_name).1, 0, "fields found by name");
            }
        }
    };
}

automatic!(pg_redis, StoreKind::Redis);
automatic!(pg_memory, StoreKind::Memory);

/// Damaged entries in Redis are misses, never errors or wrong rows.
mod pg_damaged {
    setup!(pg, PgDb);

    fn entries(s: &Setup) -> Vec<String> {
        let mut redis = redis::Client::open(redis_url())
            .unwrap()
            .get_connection()
            .unwrap();
        let pattern = format!("{}:q:*", s.cache.config().prefix());
        redis::cmd("KEYS").arg(pattern).query(&mut redis).unwrap()
    }

    /// Replaces the payload of `key`, keeping its stamp checksum.
    fn damage(key: &str, payload: &[u8]) {
        let mut redis = redis::Client::open(redis_url())
            .unwrap()
            .get_connection()
            .unwrap();
        let stored: Vec<u8> = redis::cmd("GET").arg(key).query(&mut redis).unwrap();
        let mut damaged = stored[..16].to_vec();
        damaged.extend_from_slice(payload);
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(damaged)
            .query(&mut redis)
            .unwrap();
    }

    #[test]
    fn corrupted_entries_go_to_the_database() {
        let mut s = setup(StoreKind::Redis, &[("*.*", "all")]);
        let expected = s.category(1).0;
        assert_eq!(expected, s.truth(1));
        let [key] = entries(&s).try_into().unwrap();
        // Not MessagePack; then well-formed rows that do not fit their columns
        // (two cells, one column).
        let one_column_two_cells = [
            0x92, 0x91, 0x92, 0xa2, b'i', b'd', 0x17, 0x91, 0x92, 0xc4, 4, 0, 0, 0, 1, 0xc0,
        ];
        for payload in [&[0xc1, 0xc1, 0xc1][..], &one_column_two_cells] {
            damage(&key, payload);
            assert_eq!(s.category(1), (expected.clone(), 1));
        }
        assert_eq!(s.category(1), (expected, 0), "the refill is served again");
    }
}

/// SQLite: rows cannot be replayed, so ordinary reads are plain; `.cached()` works.
mod sqlite {
    setup!(sqlite, SqliteDb);
    use cacheops::CachedQueryDsl;

    #[test]
    fn ordinary_reads_are_plain_and_correct() {
        let mut s = setup(StoreKind::Redis, &[("*.*", "all")]);
        for _ in 0..2 {
            let truth = s.truth(1);
            assert_eq!(s.category(1), (truth, 1));
        }
        let id = s.truth(2)[0].id;
        let find = |c: &mut _| articles::table.find(id).first::<Article>(c).unwrap();
        assert_eq!((s.counted(find).1, s.counted(find).1), (1, 1));
        let count = |c: &mut _| articles::table.count().get_result::<i64>(c).unwrap();
        assert_eq!((s.counted(count), s.counted(count)), ((12, 1), (12, 1)));
        diesel::update(articles::table.find(id))
            .set(articles::views.eq(5))
            .execute(&mut s.conn)
            .unwrap();
        assert_eq!(s.counted(find).0.views, 5);
    }

    #[test]
    fn cached_still_caches() {
        let mut s = setup(StoreKind::Redis, &[("*.*", "all")]);
        let cache = s.cache.clone();
        let explicit = |c: &mut _| {
            in_category(1)
                .cache()
                .using(&cache)
                .load::<Article>(c)
                .unwrap()
        };
        let truth = s.truth(1);
        assert_eq!(s.counted(explicit), (truth.clone(), 1));
        assert_eq!(s.counted(explicit), (truth, 0));
    }
}
