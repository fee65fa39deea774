//! Scenario bodies, written once and run for every backend × store pair.
//!
//! "Served from the cache" is always checked by counting the statements the
//! test's connection ran, never assumed.

/// Instantiates every scenario for one backend (`$blog` fixtures, `$db` context)
/// and one store.
macro_rules! scenarios {
    ($name:ident, $blog:ident, $db:ty, $store:expr) => {
        mod $name {
            use crate::ctx::*;
            use crate::fixtures::$blog::*;
            use cacheops::{CachedQueryDsl, Ops, OptionalExtension};
            use diesel::dsl::{exists, max, not};
            use diesel::prelude::*;

            fn ctx() -> Ctx<$db> {
                let mut ctx = Ctx::new($store);
                seed(&mut ctx.conn, 3, 4);
                ctx
            }

            fn load_cat(ctx: &mut Ctx<$db>, c: i32) -> (Vec<Article>, usize) {
                ctx.counted(|conn, h| in_category(c).cache().using(h).load(conn).unwrap())
            }

            fn one(ctx: &mut Ctx<$db>, cat: i32) -> Article {
                let (rows, _) = load_cat(ctx, cat);
                rows[0].clone()
            }

            fn insert(ctx: &mut Ctx<$db>, new: NewArticle) -> Article {
                let (rows, _) =
                    ctx.counted(|conn, h| h.insert::<Article, _, _>(conn, &new).unwrap());
                rows.into_iter().next().unwrap()
            }

            /// Caches each query, then returns how many statements reading them again ran.
            fn cached_cats(ctx: &mut Ctx<$db>, cats: &[i32]) {
                for &c in cats {
                    load_cat(ctx, c);
                }
            }

            /// Statements a save or update by primary key runs outside a transaction:
            /// one on PostgreSQL; on SQLite BEGIN IMMEDIATE, the old row, the UPDATE, COMMIT.
            fn save_statements() -> usize {
                match <Backend as cacheops::CacheBackend>::DIALECT {
                    cacheops::Dialect::Postgres => 1,
                    cacheops::Dialect::Sqlite => 4,
                }
            }

            #[test]
            fn second_fetch_is_served_from_cache() {
                let mut ctx = ctx();
                let (first, n1) = load_cat(&mut ctx, 1);
                let (second, n2) = load_cat(&mut ctx, 1);
                assert_eq!((first.len(), n1, n2), (4, 1, 0));
                assert_eq!(first, second);
                assert_eq!(ctx.cache.stats().hits, 1);
            }

            #[test]
            fn get_first_count_exists_and_aggregates_are_cached() {
                let mut ctx = ctx();
                let id = one(&mut ctx, 2).id;
                for _ in 0..2 {
                    let (row, n) = ctx.counted(|c, h| {
                        articles::table
                            .find(id)
                            .cache()
                            .using(h)
                            .get_result::<Article>(c)
                            .unwrap()
                    });
                    assert_eq!(row.id, id);
                    let (first, m) = ctx.counted(|c, h| {
                        articles::table
                            .order(articles::id.desc())
                            .cache()
                            .using(h)
                            .first::<Article>(c)
                            .unwrap()
                    });
                    assert_eq!(first.id, 12);
                    let (count, k) = ctx.counted(|c, h| {
                        articles::table
                            .filter(articles::category_id.eq(2))
                            .cache()
                            .using(h)
                            .count(c)
                            .unwrap()
                    });
                    assert_eq!(count, 4);
                    let (found, e) = ctx.counted(|c, h| {
                        articles::table
                            .filter(articles::title.eq("a3-1"))
                            .cache()
                            .using(h)
                            .exists(c)
                            .unwrap()
                    });
                    assert!(found);
                    let (top, a) = ctx.counted(|c, h| {
                        articles::table
                            .select(max(articles::id))
                            .cache()
                            .using(h)
                            .aggregate::<Option<i32>>(c)
                            .unwrap()
                    });
                    assert_eq!(top, Some(12));
                    let total = n + m + k + e + a;
                    assert!(total == 5 || total == 0, "5 statements, then none: {total}");
                }
                assert_eq!(ctx.cache.stats().hits, 5);
            }

            #[test]
            fn not_found_is_cached_too() {
                let mut ctx = ctx();
                for expected in [1, 0] {
                    let (row, n) = ctx.counted(|c, h| {
                        articles::table
                            .find(999)
                            .cache()
                            .using(h)
                            .get_result::<Article>(c)
                            .optional()
                            .unwrap()
                    });
                    assert_eq!((row, n), (None, expected));
                }
                let mut conn = ctx.db.connect();
                let err = articles::table
                    .find(999)
                    .cache()
                    .using(&ctx.cache)
                    .get_result::<Article>(&mut conn);
                assert!(matches!(
                    err.unwrap_err().as_diesel(),
                    Some(diesel::result::Error::NotFound)
                ));
            }

            #[test]
            fn insert_invalidates_only_its_category() {
                let mut ctx = ctx();
                cached_cats(&mut ctx, &[1, 2]);
                let new = insert(&mut ctx, NewArticle::new(1, "fresh"));
                assert_eq!(load_cat(&mut ctx, 2).1, 0);
                let (rows, n) = load_cat(&mut ctx, 1);
                assert_eq!(n, 1);
                assert_eq!(rows.last(), Some(&new));
            }

            #[test]
            fn insert_many_invalidates_every_new_row() {
                let mut ctx = ctx();
                cached_cats(&mut ctx, &[1, 2, 3]);
                let news = vec![NewArticle::new(1, "x"), NewArticle::new(3, "y")];
                let (rows, _) = ctx.counted(|c, h| h.insert::<Article, _, _>(c, &news).unwrap());
                assert_eq!(rows.len(), 2);
                let counts: Vec<usize> =
                    [1, 2, 3].iter().map(|&c| load_cat(&mut ctx, c).1).collect();
                assert_eq!(counts, vec![1, 0, 1]);
            }

            #[test]
            fn save_invalidates_old_and_new_state() {
                let mut ctx = ctx();
                cached_cats(&mut ctx, &[1, 2, 3]);
                let mut moved = one(&mut ctx, 1);
                moved.category_id = 2;
                let (saved, n) = ctx.counted(|c, h| h.save(c, &moved).unwrap());
                assert_eq!((saved, n), (moved.clone(), save_statements()));
                assert_eq!(load_cat(&mut ctx, 3).1, 0);
                let (cat1, n1) = load_cat(&mut ctx, 1);
                let (cat2, n2) = load_cat(&mut ctx, 2);
                assert_eq!((n1, n2), (1, 1));
                assert!(!cat1.contains(&moved) && cat2.contains(&moved));
            }

            #[test]
            fn save_that_cannot_match_leaves_queries_cached() {
                let mut ctx = ctx();
                cached_cats(&mut ctx, &[1, 2]);
                let mut article = one(&mut ctx, 1);
                article.views += 10;
                ctx.counted(|c, h| h.save(c, &article).unwrap());
                assert_eq!(load_cat(&mut ctx, 2).1, 0);
                let (cat1, n) = load_cat(&mut ctx, 1);
                assert_eq!(n, 1);
                assert!(cat1.contains(&article));
            }

            #[test]
            fn update_by_primary_key_invalidates() {
                let mut ctx = ctx();
                let id = one(&mut ctx, 3).id;
                let find = |ctx: &mut Ctx<$db>| {
                    ctx.counted(|c, h| {
                        articles::table
                            .find(id)
                            .cache()
                            .using(h)
                            .get_result::<Article>(c)
                            .unwrap()
                    })
                };
                find(&mut ctx);
                let (new, n) = ctx.counted(|c, h| {
                    h.update::<Article, _, _, _>(c, id, articles::views.eq(100))
                        .unwrap()
                });
                assert_eq!(n, save_statements());
                let (row, n) = find(&mut ctx);
                assert_eq!((row.views, n, new.views), (100, 1, 100));
            }

            #[test]
            fn delete_invalidates_the_old_state() {
                let mut ctx = ctx();
                cached_cats(&mut ctx, &[1, 2]);
                let gone = one(&mut ctx, 1);
                let (deleted, _) = ctx.counted(|c, h| h.delete(c, &gone).unwrap());
                assert_eq!(deleted.as_ref(), Some(&gone));
                assert_eq!(load_cat(&mut ctx, 2).1, 0);
                let (cat1, n) = load_cat(&mut ctx, 1);
                assert_eq!((cat1.len(), n), (3, 1));
            }

            #[test]
            fn mass_delete_with_returning_invalidates_each_old_row() {
                let mut ctx = ctx();
                cached_cats(&mut ctx, &[1, 2, 3]);
                let (gone, _) = ctx.counted(|c, h| {
                    let doomed = articles::table.filter(articles::title.like("a1-%"));
                    h.write_returning::<Article, _, _>(c, diesel::delete(doomed))
                        .unwrap()
                });
                assert_eq!(gone.len(), 4);
                let counts: Vec<usize> =
                    [1, 2, 3].iter().map(|&c| load_cat(&mut ctx, c).1).collect();
                assert_eq!(counts, vec![1, 0, 0]);
                assert!(load_cat(&mut ctx, 1).0.is_empty());
            }

            #[test]
            fn in_list_is_granular() {
                let mut ctx = ctx();
                let q = |ctx: &mut Ctx<$db>| {
                    ctx.counted(|c, h| {
                        articles::table
                            .filter(articles::category_id.eq_any(vec![1, 2]))
                            .cache()
                            .using(h)
                            .count(c)
                            .unwrap()
                    })
                };
                assert_eq!(q(&mut ctx), (8, 1));
                insert(&mut ctx, NewArticle::new(3, "elsewhere"));
                assert_eq!(q(&mut ctx), (8, 0));
                insert(&mut ctx, NewArticle::new(2, "inside"));
                assert_eq!(q(&mut ctx), (9, 1));
            }

            #[test]
            fn or_is_granular() {
                let mut ctx = ctx();
                let q = |ctx: &mut Ctx<$db>| {
                    ctx.counted(|c, h| {
                        articles::table
                            .filter(articles::category_id.eq(1).or(articles::title.eq("x")))
                            .cache()
                            .using(h)
                            .count(c)
                            .unwrap()
                    })
                };
                assert_eq!(q(&mut ctx), (4, 1));
                insert(&mut ctx, NewArticle::new(2, "y"));
                assert_eq!(q(&mut ctx), (4, 0));
                insert(&mut ctx, NewArticle::new(3, "x"));
                assert_eq!(q(&mut ctx), (5, 1));
            }

            #[test]
            fn is_null_is_granular_and_not_null_widens() {
                let mut ctx = ctx();
                let null = |ctx: &mut Ctx<$db>| {
                    ctx.counted(|c, h| {
                        articles::table
                            .filter(articles::body.is_null())
                            .cache()
                            .using(h)
                            .count(c)
                            .unwrap()
                    })
                };
                let not_null = |ctx: &mut Ctx<$db>| {
                    ctx.counted(|c, h| {
                        articles::table
                            .filter(articles::body.is_not_null())
                            .cache()
                            .using(h)
                            .count(c)
                            .unwrap()
                    })
                };
                assert_eq!((null(&mut ctx), not_null(&mut ctx)), ((12, 1), (0, 1)));
                insert(
                    &mut ctx,
                    NewArticle {
                        body: Some("text".into()),
                        ..NewArticle::new(1, "b")
                    },
                );
                assert_eq!((null(&mut ctx), not_null(&mut ctx)), ((12, 0), (1, 1)));
                insert(&mut ctx, NewArticle::new(1, "no body"));
                assert_eq!(null(&mut ctx), (13, 1));
            }

            #[test]
            fn joins_propagate_equalities() {
                let mut ctx = ctx();
                let q = |ctx: &mut Ctx<$db>| {
                    ctx.counted(|c, h| {
                        articles::table
                            .inner_join(categories::table)
                            .filter(categories::id.eq(1))
                            .select((articles::title, categories::name))
                            .order(articles::id)
                            .cache()
                            .using(h)
                            .load::<(String, String)>(c)
                            .unwrap()
                    })
                };
                assert_eq!(q(&mut ctx).1, 1);
                let mut other = Category {
                    id: 2,
                    name: "renamed".into(),
                };
                ctx.counted(|c, h| h.save(c, &other).unwrap());
                insert(&mut ctx, NewArticle::new(2, "elsewhere"));
                assert_eq!(
                    q(&mut ctx).1,
                    0,
                    "changes in category 2 cannot affect category 1"
                );
                insert(&mut ctx, NewArticle::new(1, "joined"));
                let (rows, n) = q(&mut ctx);
                assert_eq!((rows.len(), n), (5, 1));
                other.id = 1;
                ctx.counted(|c, h| h.save(c, &other).unwrap());
                let (rows, n) = q(&mut ctx);
                assert_eq!((rows[0].1.as_str(), n), ("renamed", 1));
            }

            #[test]
            fn subquery_tables_are_dependencies() {
                let mut ctx = ctx();
                let q = |ctx: &mut Ctx<$db>| {
                    ctx.counted(|c, h| {
                        let named_c1 = categories::table
                            .filter(categories::name.eq("c1"))
                            .select(categories::id);
                        articles::table
                            .filter(articles::category_id.eq_any(named_c1))
                            .cache()
                            .using(h)
                            .count(c)
                            .unwrap()
                    })
                };
                assert_eq!(q(&mut ctx), (4, 1));
                let renamed = Category {
                    id: 3,
                    name: "c1".into(),
                };
                ctx.counted(|c, h| h.save(c, &renamed).unwrap());
                assert_eq!(q(&mut ctx), (8, 1));
            }

            #[test]
            fn exists_subquery_tables_are_dependencies() {
                let mut ctx = ctx();
                let q = |ctx: &mut Ctx<$db>| {
                    ctx.counted(|c, h| {
                        let has_new = articles::table
                            .filter(articles::category_id.eq(categories::id))
                            .filter(articles::title.eq("new"));
                        categories::table
                            .filter(exists(has_new))
                            .select(categories::id)
                            .cache()
                            .using(h)
                            .load::<i32>(c)
                            .unwrap()
                    })
                };
                assert_eq!(q(&mut ctx), (vec![], 1));
                insert(&mut ctx, NewArticle::new(2, "new"));
                assert_eq!(q(&mut ctx), (vec![2], 1));
            }

            #[test]
            fn distinct_group_by_limit_and_offset_are_cached_and_invalidated() {
                let mut ctx = ctx();
                let grouped = |ctx: &mut Ctx<$db>| {
                    ctx.counted(|c, h| {
                        articles::table
                            .filter(articles::published.eq(true))
                            .group_by(articles::category_id)
                            .select((articles::category_id, diesel::dsl::count_star()))
                            .order(articles::category_id)
                            .cache()
                            .using(h)
                            .load::<(i32, i64)>(c)
                            .unwrap()
                    })
                };
                let page = |ctx: &mut Ctx<$db>| {
                    ctx.counted(|c, h| {
                        articles::table
                            .select(articles::category_id)
                            .distinct()
                            .order(articles::category_id)
                            .limit(2)
                            .offset(1)
                            .cache()
                            .using(h)
                            .load::<i32>(c)
                            .unwrap()
                    })
                };
                assert_eq!(grouped(&mut ctx), (vec![(1, 2), (2, 2), (3, 2)], 1));
                assert_eq!(page(&mut ctx), (vec![2, 3], 1));
                assert_eq!((grouped(&mut ctx).1, page(&mut ctx).1), (0, 0));
                insert(&mut ctx, NewArticle::new(2, "published"));
                assert_eq!(grouped(&mut ctx), (vec![(1, 2), (2, 3), (3, 2)], 1));
                assert_eq!(
                    page(&mut ctx),
                    (vec![2, 3], 1),
                    "LIMIT/OFFSET do not narrow"
                );
            }

            #[test]
            fn not_widens_to_the_table() {
                let mut ctx = ctx();
                let q = |ctx: &mut Ctx<$db>| {
                    ctx.counted(|c, h| {
                        articles::table
                            .filter(not(articles::category_id.eq(1)))
                            .cache()
                            .using(h)
                            .count(c)
                            .unwrap()
                    })
                };
                assert_eq!(q(&mut ctx), (8, 1));
                insert(&mut ctx, NewArticle::new(3, "any"));
                assert_eq!(q(&mut ctx), (9, 1));
            }

            #[test]
            fn contradiction_is_untouched_by_rows_but_not_by_model_invalidation() {
                let mut ctx = ctx();
                let q = |ctx: &mut Ctx<$db>| {
                    ctx.counted(|c, h| {
                        articles::table
                            .filter(articles::id.eq(1))
                            .filter(articles::id.eq(2))
                            .cache()
                            .using(h)
                            .count(c)
                            .unwrap()
                    })
                };
                assert_eq!(q(&mut ctx), (0, 1));
                insert(&mut ctx, NewArticle::new(1, "any"));
                assert_eq!(q(&mut ctx), (0, 0));
                ctx.cache.invalidate_model::<Article>().unwrap();
                assert_eq!(q(&mut ctx), (0, 1));
            }

            #[test]
            fn in_lists_with_commas_do_not_collide() {
                let mut ctx = ctx();
                for title in ["a", "b", "a, b"] {
                    insert(&mut ctx, NewArticle::new(1, title));
                }
                let q = |ctx: &mut Ctx<$db>, titles: Vec<&'static str>| {
                    ctx.counted(|c, h| {
                        articles::table
                            .filter(articles::title.eq_any(titles))
                            .select(articles::title)
                            .order(articles::title)
                            .cache()
                            .using(h)
                            .load::<String>(c)
                            .unwrap()
                    })
                };
                for expected_queries in [1, 0] {
                    assert_eq!(
                        q(&mut ctx, vec!["a", "b"]),
                        (vec!["a".to_string(), "b".into()], expected_queries)
                    );
                    assert_eq!(
                        q(&mut ctx, vec!["a, b"]),
                        (vec!["a, b".to_string()], expected_queries)
                    );
                }
            }

            #[derive(Debug, PartialEq, Queryable, serde::Serialize, serde::Deserialize)]
            struct IdTitle {
                id: i32,
                title: String,
            }

            #[test]
            fn another_result_type_never_reads_an_entry_of_the_old_shape() {
                let mut ctx = ctx();
                let q = || {
                    articles::table
                        .filter(articles::id.eq(1))
                        .select((articles::id, articles::title))
                };
                let (tuple, n) =
                    ctx.counted(|c, h| q().cache().using(h).load::<(i32, String)>(c).unwrap());
                assert_eq!(n, 1);
                for expected in [1, 0] {
                    let (rows, n) =
                        ctx.counted(|c, h| q().cache().using(h).load::<IdTitle>(c).unwrap());
                    assert_eq!(
                        (rows[0].id, &rows[0].title, n),
                        (tuple[0].0, &tuple[0].1, expected)
                    );
                }
            }

            #[test]
            fn inexact_columns_widen() {
                let mut ctx = ctx();
                let q = |ctx: &mut Ctx<$db>| {
                    ctx.counted(|c, h| {
                        articles::table
                            .filter(articles::score.eq(0.0))
                            .cache()
                            .using(h)
                            .count(c)
                            .unwrap()
                    })
                };
                assert_eq!(q(&mut ctx), (12, 1));
                insert(&mut ctx, NewArticle::new(2, "float"));
                assert_eq!(
                    q(&mut ctx),
                    (13, 1),
                    "a float condition depends on the whole table"
                );
            }

            #[test]
            fn bypass_ops_and_disabled_config_go_to_the_database() {
                let mut ctx = ctx();
                for _ in 0..2 {
                    assert_eq!(
                        ctx.counted(|c, h| in_category(1)
                            .cache()
                            .using(h)
                            .bypass()
                            .load::<Article>(c)
                            .unwrap())
                            .1,
                        1
                    );
                    let (_, n) = ctx.counted(|c, h| {
                        in_category(1)
                            .cache()
                            .using(h)
                            .ops(Ops::COUNT)
                            .load::<Article>(c)
                            .unwrap()
                    });
                    assert_eq!(n, 1);
                }
                let off = cacheops::Cacheops::new(
                    cacheops::Config::builder()
                        .url("memory://")
                        .enabled(false)
                        .build(),
                )
                .unwrap();
                for _ in 0..2 {
                    assert_eq!(
                        ctx.counted(|c, _| in_category(1)
                            .cache()
                            .using(&off)
                            .load::<Article>(c)
                            .unwrap())
                            .1,
                        1
                    );
                }
            }

            #[test]
            fn per_call_timeout_expires() {
                let mut ctx = ctx();
                let q = |ctx: &mut Ctx<$db>| {
                    ctx.counted(|c, h| {
                        in_category(1)
                            .cache()
                            .using(h)
                            .timeout(std::time::Duration::from_secs(1))
                            .load::<Article>(c)
                            .unwrap()
                    })
                    .1
                };
                assert_eq!((q(&mut ctx), q(&mut ctx)), (1, 0));
                std::thread::sleep(std::time::Duration::from_millis(2100));
                assert_eq!(q(&mut ctx), 1);
            }

            #[test]
            fn model_without_profile_is_refused() {
                let mut ctx = ctx();
                let bare =
                    cacheops::Cacheops::new(cacheops::Config::builder().url("memory://").build())
                        .unwrap();
                let err = in_category(1)
                    .cache()
                    .using(&bare)
                    .load::<Article>(&mut ctx.conn)
                    .unwrap_err();
                assert_eq!(err.kind(), cacheops::ErrorKind::NotCacheable);
                assert!(err.to_string().contains("blog.Article"), "{err}");
            }

            #[test]
            fn writes_outside_helpers_need_manual_invalidation() {
                let mut ctx = ctx();
                let old = one(&mut ctx, 1);
                cached_cats(&mut ctx, &[1, 2]);
                diesel::update(articles::table.find(old.id))
                    .set(articles::category_id.eq(2))
                    .execute(&mut ctx.conn)
                    .unwrap();
                assert_eq!(
                    load_cat(&mut ctx, 1).1,
                    0,
                    "a plain Diesel write does not invalidate by itself"
                );
                let new = articles::table
                    .find(old.id)
                    .first::<Article>(&mut ctx.conn)
                    .unwrap();
                ctx.cache
                    .invalidate_objs::<Backend, _>(&[old, new])
                    .unwrap();
                assert_eq!(
                    (load_cat(&mut ctx, 1).0.len(), load_cat(&mut ctx, 2).0.len()),
                    (3, 5)
                );
            }

            #[test]
            fn invalidate_all_is_scoped_to_the_prefix() {
                let mut ctx = ctx();
                let other = handle($store, &unique("cacheops_other"));
                let q = |ctx: &mut Ctx<$db>| {
                    ctx.counted(|c, _| {
                        in_category(1)
                            .cache()
                            .using(&other)
                            .load::<Article>(c)
                            .unwrap()
                    })
                    .1
                };
                q(&mut ctx);
                load_cat(&mut ctx, 1);
                ctx.cache.invalidate_all().unwrap();
                assert_eq!(q(&mut ctx), 0);
                assert_eq!(load_cat(&mut ctx, 1).1, 1);
                other.invalidate_all().unwrap();
            }

            #[test]
            fn stale_fill_is_refused_when_a_write_lands_during_the_sql() {
                let mut ctx = ctx();
                let (sql_done, wait_sql) = std::sync::mpsc::channel::<()>();
                let (write_done, wait_write) = std::sync::mpsc::channel::<()>();
                let wait_write = std::sync::Mutex::new(wait_write);
                let fired = std::sync::atomic::AtomicBool::new(false);
                ctx.cache.__set_fill_hook(Some(std::sync::Arc::new(move || {
                    if !fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        sql_done.send(()).unwrap();
                        wait_write.lock().unwrap().recv().unwrap();
                    }
                })));
                let mut reader_conn = ctx.db.connect();
                let reader_cache = ctx.cache.clone();
                let reader = std::thread::spawn(move || {
                    in_category(1)
                        .cache()
                        .using(&reader_cache)
                        .load::<Article>(&mut reader_conn)
                        .unwrap()
                });
                wait_sql.recv().unwrap();
                let new = insert(&mut ctx, NewArticle::new(1, "during the read"));
                write_done.send(()).unwrap();
                let stale = reader.join().unwrap();
                ctx.cache.__set_fill_hook(None);
                assert!(
                    !stale.contains(&new),
                    "the reader's SQL ran before the write"
                );
                assert_eq!(ctx.cache.stats().refused_fills, 1);
                let (fresh, n) = load_cat(&mut ctx, 1);
                assert_eq!(n, 1, "the stale result was not stored");
                assert!(fresh.contains(&new));
            }
        }
    };
}

scenarios!(pg_redis, pg, PgDb, StoreKind::Redis);
scenarios!(pg_memory, pg, PgDb, StoreKind::Memory);
scenarios!(sqlite_redis, sqlite, SqliteDb, StoreKind::Redis);
scenarios!(sqlite_memory, sqlite, SqliteDb, StoreKind::Memory);
