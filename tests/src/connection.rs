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

            /// `conn` is dropped first: an open test transaction must end before
            /// the context drops the test's schema.
            struct Setup {
                conn: Cached,
                ctx: Ctx<$db>,
                queries: QueryCounter,
            }

            fn setup() -> Setup {
                let mut ctx: Ctx<$db> = Ctx::new($store);
                seed(&mut ctx.conn, 3, 4);
                let queries = QueryCounter::default();
                let mut inner: Conn = ctx.db.connect();
                queries.instrument(&mut inner);
                let conn = CachedConnection::new(inner, ctx.cache.clone());
                Setup { conn, ctx, queries }
            }

            impl Setup {
                /// Reads category `c` through the cache; the statements it ran.
                fn read(&mut self, c: i32) -> (Vec<Article>, usize) {
                    self.queries.take();
                    let rows = in_category(c)
                        .cache()
                        .using(&self.ctx.cache)
                        .load(&mut self.conn)
                        .unwrap();
                    (rows, self.queries.take())
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
                s.ctx.cache.save(&mut s.conn, &a).unwrap();
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
