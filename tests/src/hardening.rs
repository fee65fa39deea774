//! Hostile but ordinary use: raw transaction control, SQL the write path must
//! not misread, session statements, volatile reads. Each test fails on a cache
//! that takes the SQL at its word.

macro_rules! hardening {
    ($name:ident, $blog:ident, $db:ty, $store:expr) => {
        mod $name {
            use crate::ctx::*;
            use crate::fixtures::$blog::*;
            use cacheops::{CachedConnection, CachedQueryDsl, Dialect};
            use diesel::connection::SimpleConnection;
            use diesel::prelude::*;

            type Cached = CachedConnection<Conn>;

            /// `conn` is dropped first: an open transaction must end before the
            /// context drops the test's schema.
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

            fn dialect() -> Dialect {
                <Backend as cacheops::CacheBackend>::DIALECT
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

                fn invalidations(&self) -> u64 {
                    self.ctx.cache.stats().invalidations
                }

                fn raw(&mut self, sql: &str) {
                    self.conn.batch_execute(sql).unwrap();
                }
            }

            #[test]
            fn a_raw_transaction_that_rolls_back_leaves_nothing_cached_or_owed() {
                let mut s = setup();
                s.read(1);
                let before = s.invalidations();
                s.raw("BEGIN");
                s.raw("UPDATE articles SET views = 99 WHERE category_id = 1");
                let (inside, n) = s.read(1);
                assert_eq!(n, 1, "dirty: straight to the database");
                assert!(inside.iter().all(|a| a.views == 99), "reads its own write");
                assert_eq!(s.invalidations(), before, "queued until COMMIT");
                diesel::sql_query("ROLLBACK").execute(&mut s.conn).unwrap();
                assert_eq!(s.invalidations(), before, "a rollback owes nothing");
                let (after, n) = s.read(1);
                assert!(
                    after.iter().all(|a| a.views != 99),
                    "never data that never existed"
                );
                assert_eq!(n, 0, "the entry from before the transaction is still right");
            }

            #[test]
            fn a_raw_transaction_invalidates_at_its_commit() {
                let mut s = setup();
                s.read(1);
                let before = s.invalidations();
                s.raw("BEGIN; UPDATE articles SET views = 5 WHERE category_id = 1");
                // A plain Diesel write inside it goes through the granular path
                // (SQLite: no BEGIN IMMEDIATE of its own inside a raw transaction).
                diesel::update(articles::table.filter(articles::category_id.eq(1)))
                    .set(articles::published.eq(true))
                    .execute(&mut s.conn)
                    .unwrap();
                assert_eq!(s.invalidations(), before, "not before its COMMIT");
                s.raw("COMMIT");
                assert!(s.invalidations() > before);
                let (rows, n) = s.read(1);
                assert_eq!(n, 1);
                assert!(rows.iter().all(|a| a.views == 5 && a.published));
            }

            #[test]
            fn raw_savepoints_drop_or_merge_their_writes() {
                let mut s = setup();
                s.read(2);
                let before = s.invalidations();
                s.raw(
                    "BEGIN; SAVEPOINT a; UPDATE articles SET views = 1 WHERE category_id = 2; \
                     ROLLBACK TO SAVEPOINT a; RELEASE SAVEPOINT a; COMMIT",
                );
                assert_eq!(
                    s.invalidations(),
                    before,
                    "rolled back to the savepoint: nothing owed"
                );
                assert_eq!(s.read(2).1, 0);
                s.raw("BEGIN; SAVEPOINT b; UPDATE articles SET views = 2 WHERE category_id = 2");
                s.raw("RELEASE b");
                assert_eq!(s.invalidations(), before, "released into the transaction");
                s.raw("COMMIT");
                let (rows, n) = s.read(2);
                assert_eq!(n, 1);
                assert!(rows.iter().all(|a| a.views == 2));
                if dialect() == Dialect::Sqlite {
                    // Outside BEGIN, SQLite's SAVEPOINT opens the transaction and
                    // its RELEASE commits it.
                    let before = s.invalidations();
                    s.raw(
                        "SAVEPOINT outer_sp; UPDATE articles SET views = 3 WHERE category_id = 2",
                    );
                    assert_eq!(s.invalidations(), before);
                    s.raw("RELEASE outer_sp");
                    assert!(s.invalidations() > before);
                    assert!(s.read(2).0.iter().all(|a| a.views == 3));
                }
            }

            #[test]
            fn a_failed_raw_commit_ends_the_transaction() {
                let mut s = setup();
                s.read(1);
                s.raw("BEGIN; UPDATE articles SET views = 8 WHERE category_id = 1");
                let failed = s
                    .conn
                    .batch_execute("COMMIT; SELECT no_such_column FROM articles");
                assert!(failed.is_err());
                // Whatever the batch left, an autocommit write now invalidates at once.
                let _ = s.conn.batch_execute("ROLLBACK");
                let before = s.invalidations();
                s.raw("UPDATE articles SET views = 9 WHERE category_id = 1");
                assert!(
                    s.invalidations() > before,
                    "not queued in a transaction that ended"
                );
                assert!(s.read(1).0.iter().all(|a| a.views == 9));
            }

            #[test]
            fn a_trailing_comment_does_not_swallow_the_returning() {
                let mut s = setup();
                let victim = s.read(1).0[0].id;
                let sql = format!("DELETE FROM articles WHERE id = {victim} -- cleanup job");
                assert_eq!(diesel::sql_query(sql).execute(&mut s.conn).unwrap(), 1);
                let insert = "INSERT INTO articles (category_id, title, uid) \
                              SELECT category_id, 'copy', uid FROM articles WHERE category_id = 2 \
                              /* copies */ -- the end";
                s.read(2);
                assert_eq!(diesel::sql_query(insert).execute(&mut s.conn).unwrap(), 4);
                let (rows, n) = s.read(1);
                assert_eq!(n, 1);
                assert!(rows.iter().all(|a| a.id != victim));
                assert_eq!(s.read(2).0.len(), 8);
            }

            #[test]
            fn delete_using_invalidates_the_rows_of_its_target() {
                if dialect() == Dialect::Sqlite {
                    return; // SQLite has no DELETE ... USING.
                }
                let mut s = setup();
                // Article 2 is in category 1: RETURNING * of both tables would
                // name it by the category's id (1).
                let one = |s: &mut Setup| {
                    let found = articles::table
                        .find(2)
                        .cache()
                        .using(&s.ctx.cache)
                        .get_result::<Article>(&mut s.conn);
                    cacheops::OptionalExtension::optional(found).unwrap()
                };
                assert!(one(&mut s).is_some());
                let sql = "DELETE FROM articles USING categories \
                           WHERE articles.category_id = categories.id AND categories.name = 'c1'";
                assert_eq!(diesel::sql_query(sql).execute(&mut s.conn).unwrap(), 4);
                assert_eq!(one(&mut s), None, "the deleted row is never served");
            }

            #[test]
            fn sqlite_identifiers_are_compared_without_case() {
                let mut s = setup();
                s.read(1);
                let sql = match dialect() {
                    Dialect::Sqlite => r#"UPDATE "ARTICLES" SET "VIEWS" = 3 WHERE "Category_Id" = 1"#,
                    Dialect::Postgres => "UPDATE ARTICLES SET VIEWS = 3 WHERE CATEGORY_ID = 1",
                };
                assert_eq!(diesel::sql_query(sql).execute(&mut s.conn).unwrap(), 4);
                let (rows, n) = s.read(1);
                assert_eq!(n, 1);
                assert!(rows.iter().all(|a| a.views == 3));
                if dialect() == Dialect::Sqlite {
                    s.raw(r#"UPDATE "Articles" SET views = 4"#);
                    assert!(s.read(1).0.iter().all(|a| a.views == 4));
                }
            }

            #[test]
            fn session_statements_invalidate_nothing() {
                let mut s = setup();
                s.read(1);
                let before = s.invalidations();
                let mut statements = vec!["ANALYZE articles", "SELECT 1"];
                if dialect() == Dialect::Postgres {
                    statements.extend(["SET statement_timeout = 0", "SHOW statement_timeout"]);
                    statements.extend(["LISTEN cacheops_test", "UNLISTEN cacheops_test"]);
                    statements.extend(["VACUUM articles", "RESET statement_timeout"]);
                }
                for sql in &statements {
                    s.raw(sql);
                }
                s.conn
                    .transaction(|c| {
                        if dialect() == Dialect::Postgres {
                            c.batch_execute("LOCK TABLE articles IN SHARE MODE")?;
                            diesel::sql_query("LOCK TABLE categories").execute(c)?;
                        }
                        c.batch_execute("ANALYZE articles; SELECT 2")
                    })
                    .unwrap();
                assert_eq!(s.invalidations(), before, "{statements:?}");
                assert_eq!(s.read(1).1, 0);
            }

            #[test]
            fn explain_analyze_of_a_write_invalidates_it() {
                let mut s = setup();
                s.read(1);
                let sql = match dialect() {
                    Dialect::Postgres => "EXPLAIN ANALYZE UPDATE articles SET views = 4",
                    // SQLite's EXPLAIN runs nothing; its bytecode listing is the
                    // statement compiled, not executed.
                    Dialect::Sqlite => "EXPLAIN QUERY PLAN SELECT * FROM articles",
                };
                s.raw(sql);
                let expect_write = dialect() == Dialect::Postgres;
                let (rows, n) = s.read(1);
                assert_eq!(n == 1, expect_write);
                assert_eq!(rows.iter().all(|a| a.views == 4), expect_write);
            }
        }
    };
}

hardening!(pg_redis, pg, PgDb, StoreKind::Redis);
hardening!(pg_memory, pg, PgDb, StoreKind::Memory);
hardening!(sqlite_redis, sqlite, SqliteDb, StoreKind::Redis);
hardening!(sqlite_memory, sqlite, SqliteDb, StoreKind::Memory);
