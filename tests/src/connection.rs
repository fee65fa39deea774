//! `CachedConnection`: every write through it invalidates, whatever API made it,
//! and its transactions follow the rules (clean reads cached, dirty bypass, queue
//! until the outermost COMMIT).

macro_rules! connection {
    ($name:ident, $blog:ident, $db:ty, $store:expr) => {
        mod $name {
            use crate::ctx::*;
            use crate::fixtures::$blog::*;
            use cacheops::{CachedConnection, CachedQueryDsl};
            use diesel::connection::SimpleConnection;
            use diesel::prelude::*;

            type Cached = CachedConnection<Conn>;
            type Setup = Wrapped<$db>;

            fn setup() -> Setup {
                Wrapped::new($store, |conn| seed(conn, 3, 4))
            }

            /// Statements one plain UPDATE costs: PostgreSQL runs one rewritten
            /// statement; SQLite a pre-read and the UPDATE, in `BEGIN IMMEDIATE ...
            /// COMMIT` of its own outside a transaction.
            fn update_statements(in_transaction: bool) -> usize {
                match (<Backend as cacheops::CacheBackend>::DIALECT, in_transaction) {
                    (cacheops::Dialect::Postgres, _) => 1,
                    (cacheops::Dialect::Sqlite, true) => 2,
                    (cacheops::Dialect::Sqlite, false) => 4,
                }
            }

            /// What the tests here do with a [`Setup`].
            trait Steps {
                fn counted<T>(&mut self, f: impl FnOnce(&mut Cached) -> T) -> (T, usize);
                fn read(&mut self, c: i32) -> (Vec<Article>, usize);
                fn read_categories(&mut self) -> usize;
                fn warm(&mut self);
            }

            impl Steps for Setup {
                /// Runs `f` on the connection; its result and the statements it ran.
                fn counted<T>(&mut self, f: impl FnOnce(&mut Cached) -> T) -> (T, usize) {
                    self.counted_with(|conn, _| f(conn))
                }

                /// Reads category `c` through the cache; the statements it ran.
                fn read(&mut self, c: i32) -> (Vec<Article>, usize) {
                    self.counted_with(|conn, h| in_category(c).cache().using(h).load(conn).unwrap())
                }

                fn read_categories(&mut self) -> usize {
                    self.queries.take();
                    categories::table
                        .cache()
                        .using(&self.ctx.cache)
                        .load::<Category>(&mut self.conn)
                        .unwrap();
                    self.queries.take()
                }

                fn warm(&mut self) {
                    self.read(1);
                    self.read(2);
                    self.read_categories();
                }
            }

            #[test]
            fn plain_diesel_writes_invalidate_their_table_only() {
                let mut s = setup();
                s.warm();
                diesel::update(articles::table.filter(articles::category_id.eq(1)))
                    .set(articles::views.eq(99))
                    .execute(&mut s.conn)
                    .unwrap();
                let (rows, n) = s.read(1);
                assert_eq!(n, 1);
                assert!(rows.iter().all(|a| a.views == 99));
                assert_eq!(s.read_categories(), 0, "another table stays cached");
                diesel::insert_into(articles::table)
                    .values(&NewArticle::new(2, "x"))
                    .execute(&mut s.conn)
                    .unwrap();
                assert_eq!(s.read(2).0.len(), 5);
                diesel::delete(articles::table.filter(articles::title.eq("x")))
                    .execute(&mut s.conn)
                    .unwrap();
                let (rows, n) = s.read(2);
                assert_eq!((rows.len(), n), (4, 1));
            }

            #[test]
            fn plain_inserts_and_deletes_are_granular() {
                let mut s = setup();
                for c in 1..=3 {
                    s.read(c);
                }
                let inserted = diesel::insert_into(articles::table)
                    .values(&vec![NewArticle::new(1, "p1"), NewArticle::new(1, "p2")])
                    .execute(&mut s.conn)
                    .unwrap();
                assert_eq!(inserted, 2, "the row count is still the statement's");
                assert_eq!((s.read(2).1, s.read(3).1), (0, 0), "other categories stay cached");
                let (cat1, n) = s.read(1);
                assert_eq!((cat1.len(), n), (6, 1));
                let deleted = diesel::delete(articles::table.filter(articles::title.like("a2-%")))
                    .execute(&mut s.conn)
                    .unwrap();
                assert_eq!(deleted, 4);
                assert_eq!((s.read(1).1, s.read(3).1), (0, 0));
                assert_eq!(s.read(2), (vec![], 1));
            }

            #[test]
            fn plain_updates_invalidate_old_and_new_rows_only() {
                let mut s = setup();
                for c in 1..=3 {
                    s.read(c);
                }
                let moved = s.read(1).0[0].id;
                let (count, n) = s.counted(|conn| {
                    diesel::update(articles::table.filter(articles::id.eq(moved)))
                        .set(articles::category_id.eq(2))
                        .execute(conn)
                        .unwrap()
                });
                assert_eq!((count, n), (1, update_statements(false)));
                assert_eq!(s.read(3).1, 0, "a category the row never was in stays cached");
                let (cat1, n1) = s.read(1);
                assert_eq!((cat1.len(), n1), (3, 1), "the old state was invalidated");
                let (cat2, n2) = s.read(2);
                assert_eq!((cat2.len(), n2), (5, 1), "the new state was invalidated");
                assert!(cat2.iter().any(|a| a.id == moved));
                let count = diesel::update(articles::table.filter(articles::category_id.eq(3)))
                    .set(articles::views.eq(9))
                    .execute(&mut s.conn)
                    .unwrap();
                assert_eq!(count, 4);
                assert_eq!((s.read(1).1, s.read(2).1), (0, 0));
                let (cat3, n3) = s.read(3);
                assert_eq!(n3, 1);
                assert!(cat3.iter().all(|a| a.views == 9));
            }

            #[test]
            fn a_mass_update_moves_every_matching_row() {
                let mut s = setup();
                for c in 1..=3 {
                    s.read(c);
                }
                let filter = articles::category_id.eq(1).and(articles::published.eq(true));
                let (count, n) = s.counted(|conn| {
                    diesel::update(articles::table.filter(filter))
                        .set((articles::category_id.eq(2), articles::views.eq(articles::views + 1)))
                        .execute(conn)
                        .unwrap()
                });
                assert_eq!((count, n), (2, update_statements(false)));
                assert_eq!(s.read(3).1, 0);
                let (cat1, _) = s.read(1);
                let (cat2, _) = s.read(2);
                assert_eq!((cat1.len(), cat2.len()), (2, 6));
                assert!(cat1.iter().all(|a| !a.published));
                assert_eq!(cat2.iter().filter(|a| a.views == 1).count(), 2);
                let none = diesel::update(articles::table.filter(articles::category_id.eq(42)))
                    .set(articles::views.eq(0))
                    .execute(&mut s.conn)
                    .unwrap();
                assert_eq!(none, 0);
                assert_eq!((s.read(1).1, s.read(2).1, s.read(3).1), (0, 0, 0));
            }

            #[test]
            fn plain_updates_in_transactions_wait_for_commit_and_vanish_on_rollback() {
                let mut s = setup();
                for c in 1..=3 {
                    s.read(c);
                }
                let cache = s.ctx.cache.clone();
                let queries = s.queries.clone();
                let before = cache.stats().invalidations;
                let moved = s.read(1).0[0].id;
                s.conn
                    .transaction(|conn| {
                        queries.take();
                        let count = diesel::update(articles::table.find(moved))
                            .set(articles::category_id.eq(2))
                            .execute(conn)?;
                        assert_eq!((count, queries.take()), (1, update_statements(true)));
                        assert_eq!(cache.stats().invalidations, before, "queued until COMMIT");
                        QueryResult::Ok(())
                    })
                    .unwrap();
                assert!(cache.stats().invalidations > before);
                assert_eq!(s.read(3).1, 0);
                assert_eq!((s.read(1).0.len(), s.read(2).0.len()), (3, 5));
                let before = cache.stats().invalidations;
                let rolled_back: QueryResult<()> = s.conn.transaction(|conn| {
                    diesel::update(articles::table.find(moved))
                        .set(articles::category_id.eq(3))
                        .execute(conn)?;
                    Err(diesel::result::Error::RollbackTransaction)
                });
                assert!(rolled_back.is_err());
                assert_eq!(cache.stats().invalidations, before, "nothing was owed");
                let (cat2, n2) = s.read(2);
                assert_eq!(n2, 0, "still cached, and still right");
                assert!(cat2.iter().any(|a| a.id == moved));
                assert_eq!(s.read(3).1, 0);
            }

            #[test]
            fn updates_it_cannot_rewrite_stay_table_wide() {
                let mut s = setup();
                for c in 1..=3 {
                    s.read(c);
                }
                let id = s.read(1).0[0].id;
                let (count, n) = s.counted(|conn| {
                    diesel::update(articles::table.find(id))
                        .set(articles::views.eq(1))
                        .returning(articles::id)
                        .execute(conn)
                        .unwrap()
                });
                assert_eq!((count, n), (1, 1), "its own RETURNING: run as written");
                assert_eq!(s.read(3).1, 1, "the whole table was invalidated");
            }

            #[test]
            fn without_a_model_updates_are_table_wide_on_postgres_granular_on_sqlite() {
                diesel::table! { notes (id) { id -> Integer, body -> Text } }
                let s = setup();
                let log = SqlLog::default();
                let mut inner: Conn = s.ctx.db.connect();
                log.instrument(&mut inner);
                let mut conn = CachedConnection::new(inner, s.ctx.cache.clone());
                conn.batch_execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
                    .unwrap();
                diesel::insert_into(notes::table)
                    .values((notes::id.eq(1), notes::body.eq("a")))
                    .execute(&mut conn)
                    .unwrap();
                log.take();
                let count = diesel::update(notes::table.find(1))
                    .set(notes::body.eq("b"))
                    .execute(&mut conn)
                    .unwrap();
                assert_eq!(count, 1);
                let sent = log.take();
                match <Backend as cacheops::CacheBackend>::DIALECT {
                    // No registered model, no primary key to join on: the UPDATE as written.
                    cacheops::Dialect::Postgres => {
                        assert_eq!(sent.len(), 1);
                        assert!(!sent[0].contains("__cacheops"), "{sent:?}");
                    }
                    // SQLite's pre-read needs no primary key.
                    cacheops::Dialect::Sqlite => {
                        assert_eq!(sent.len(), 4, "{sent:?}");
                        assert!(sent[1].starts_with("SELECT * FROM `notes`"), "{sent:?}");
                    }
                }
            }

            #[test]
            fn returning_writes_and_raw_sql_invalidate() {
                let mut s = setup();
                s.warm();
                let new: Article = diesel::insert_into(articles::table)
                    .values(&NewArticle::new(1, "returned"))
                    .get_result(&mut s.conn)
                    .unwrap();
                assert!(s.read(1).0.contains(&new));
                s.read(1);
                diesel::sql_query("UPDATE articles SET title = 'raw' WHERE category_id = 1")
                    .execute(&mut s.conn)
                    .unwrap();
                assert!(s.read(1).0.iter().all(|a| a.title == "raw"));
                s.conn
                    .batch_execute("UPDATE categories SET name = 'batch'")
                    .unwrap();
                assert_eq!(s.read_categories(), 1);
                s.read(1);
                s.conn.batch_execute("SELECT 1").unwrap();
                assert_eq!(s.read(1).1, 0, "a read-only batch invalidates nothing");
            }

            #[test]
            fn helpers_through_it_stay_granular() {
                let mut s = setup();
                s.warm();
                s.read(3);
                let mut a = s.read(1).0[0].clone();
                a.category_id = 2;
                let cache = s.ctx.cache.clone();
                let (saved, n) = s.counted(|conn| cache.save(conn, &a).unwrap());
                assert_eq!((saved, n), (a, update_statements(false)));
                assert_eq!((s.read(1).1, s.read(2).1), (1, 1));
                assert_eq!(
                    s.read(3).1,
                    0,
                    "the helper's write did not widen to the table"
                );
            }

            #[test]
            fn a_clean_transaction_reads_the_cache_a_dirty_one_does_not() {
                let mut s = setup();
                s.warm();
                let cache = s.ctx.cache.clone();
                let queries = s.queries.clone();
                let before = cache.stats().invalidations;
                s.conn
                    .transaction(|conn| {
                        queries.take();
                        in_category(1).cache().using(&cache).load::<Article>(conn)?;
                        assert_eq!(queries.take(), 0, "clean: served from the cache");
                        diesel::update(articles::table)
                            .set(articles::views.eq(7))
                            .execute(conn)?;
                        queries.take();
                        let inside = in_category(1).cache().using(&cache).load::<Article>(conn)?;
                        assert_eq!(queries.take(), 1, "dirty: straight to the database");
                        assert!(inside.iter().all(|a| a.views == 7), "reads its own write");
                        assert_eq!(cache.stats().invalidations, before, "queued until COMMIT");
                        Ok::<_, cacheops::Error>(())
                    })
                    .unwrap();
                assert!(cache.stats().invalidations > before);
                assert!(s.read(1).0.iter().all(|a| a.views == 7));
            }

            /// A transaction reading from a snapshot (PostgreSQL's REPEATABLE READ,
            /// any SQLite transaction in WAL mode) may read rows older than the
            /// fence taken before its miss: it is served, never stored.
            #[test]
            fn misses_read_from_an_older_snapshot_are_not_stored() {
                let mut s = setup();
                let cache = s.ctx.cache.clone();
                let mut other = CachedConnection::new(s.ctx.db.connect(), cache.clone());
                s.conn
                    .transaction(|conn| {
                        if <Backend as cacheops::CacheBackend>::DIALECT == cacheops::Dialect::Postgres {
                            conn.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")?;
                        }
                        categories::table.load::<Category>(conn)?; // takes the snapshot
                        diesel::update(articles::table.filter(articles::category_id.eq(1)))
                            .set(articles::views.eq(77))
                            .execute(&mut other)?;
                        let inside = in_category(1).cache().using(&cache).load::<Article>(conn)?;
                        assert!(inside.iter().all(|a| a.views != 77), "the snapshot predates it");
                        Ok::<_, cacheops::Error>(())
                    })
                    .unwrap();
                let (rows, n) = s.read(1);
                assert_eq!(n, 1, "the snapshot's miss was not stored");
                assert!(rows.iter().all(|a| a.views == 77));
            }

            #[test]
            fn read_committed_misses_are_stored() {
                if <Backend as cacheops::CacheBackend>::DIALECT != cacheops::Dialect::Postgres {
                    return;
                }
                let mut s = setup();
                let cache = s.ctx.cache.clone();
                let (_, n) = s.counted(|conn| {
                    conn.transaction(|conn| {
                        in_category(1).cache().using(&cache).load::<Article>(conn)?;
                        in_category(1).cache().using(&cache).load::<Article>(conn)
                    })
                    .unwrap()
                });
                assert_eq!(n, 4, "BEGIN, the miss, the isolation level once, COMMIT");
                assert_eq!(s.read(1).1, 0, "stored by the clean transaction");
            }

            #[test]
            fn rollbacks_drop_their_queue_and_their_dirt() {
                let mut s = setup();
                s.warm();
                let cache = s.ctx.cache.clone();
                let queries = s.queries.clone();
                let before = cache.stats().invalidations;
                s.conn
                    .transaction(|conn| {
                        let failed: QueryResult<()> = conn.transaction(|conn| {
                            diesel::update(articles::table)
                                .set(articles::views.eq(5))
                                .execute(conn)?;
                            Err(diesel::result::Error::RollbackTransaction)
                        });
                        assert!(failed.is_err());
                        queries.take();
                        in_category(1).cache().using(&cache).load::<Article>(conn)?;
                        assert_eq!(
                            queries.take(),
                            0,
                            "the rolled-back savepoint left the transaction clean"
                        );
                        Ok::<_, cacheops::Error>(())
                    })
                    .unwrap();
                assert_eq!(cache.stats().invalidations, before, "nothing was owed");
                assert_eq!(s.read(1).1, 0);
            }

            #[test]
            fn save_changes_goes_through_and_invalidates() {
                let mut s = setup();
                s.warm();
                let mut a = s.read(1).0[0].clone();
                a.views = 42;
                let saved: Article = a.save_changes(&mut s.conn).unwrap();
                assert_eq!(saved.views, 42);
                let (rows, n) = s.read(1);
                assert_eq!(n, 1);
                assert!(rows.contains(&saved));
            }

            #[test]
            fn a_pooled_connection_can_be_wrapped_per_checkout() {
                use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
                #[derive(Debug)]
                struct SearchPath(String);
                impl<C: SimpleConnection> CustomizeConnection<C, diesel::r2d2::Error> for SearchPath {
                    fn on_acquire(&self, conn: &mut C) -> Result<(), diesel::r2d2::Error> {
                        conn.batch_execute(&self.0).map_err(diesel::r2d2::Error::QueryError)
                    }
                }
                let mut s = setup();
                s.warm();
                let manager = ConnectionManager::<Conn>::new(pool_url(&s.ctx.db));
                let pool = Pool::builder()
                    .max_size(2)
                    .connection_customizer(Box::new(SearchPath(pool_setup(&s.ctx.db))))
                    .build(manager)
                    .unwrap();
                let mut conn = CachedConnection::new(pool.get().unwrap(), s.ctx.cache.clone());
                diesel::update(articles::table.filter(articles::category_id.eq(1)))
                    .set(articles::views.eq(11))
                    .execute(&mut conn)
                    .unwrap();
                drop(conn);
                let (rows, n) = s.read(1);
                assert_eq!(n, 1);
                assert!(rows.iter().all(|a| a.views == 11));
            }

            #[test]
            fn test_transactions_work() {
                let mut s = setup();
                s.conn.begin_test_transaction().unwrap();
                diesel::update(articles::table)
                    .set(articles::views.eq(3))
                    .execute(&mut s.conn)
                    .unwrap();
                let (rows, n) = s.read(1);
                assert_eq!(n, 1);
                assert!(rows.iter().all(|a| a.views == 3));
            }
        }
    };
}

connection!(pg_redis, pg, PgDb, StoreKind::Redis);
connection!(pg_memory, pg, PgDb, StoreKind::Memory);
connection!(sqlite_redis, sqlite, SqliteDb, StoreKind::Redis);
connection!(sqlite_memory, sqlite, SqliteDb, StoreKind::Memory);
