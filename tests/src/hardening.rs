//! Hostile but ordinary use: raw transaction control, SQL the write path must
//! not misread, session statements, volatile reads. Each test fails on a cache
//! that takes the SQL at its word. The `hardening!` bodies run through
//! `CachedConnection` on both backends and stores, and through
//! `AsyncCachedConnection` on PostgreSQL (one body, the path's tokens).

/// The items, for the PostgreSQL instances of a backend-generic macro only.
macro_rules! pg_only {
    (pg, $($item:item)*) => { $($item)* };
    (sqlite, $($item:item)*) => {};
}

/// Instantiates the tests for one backend (`$blog` fixtures, `$db` database),
/// one store, and one path: `$setup` is `Wrapped` (a `CachedConnection`) or
/// `AsyncWrapped` (an `AsyncCachedConnection`), with the path's tokens as in
/// `scenarios.rs` (`$($as)?` is `async`, `$(.$aw)?` is `.await`) and its
/// traits: `.cache()`, `RunQueryDsl`, `batch_execute`, `transaction`.
macro_rules! hardening {
    ($name:ident, $blog:ident, $db:ty, $store:expr, $setup:ident, [$($test:tt)*],
     [$($as:tt)?], [$($aw:tt)?], [$($dsl:tt)*], [$($run:tt)*], [$($simple:tt)*],
     [$($connection:tt)*]) => {
        mod $name {
            use crate::ctx::*;
            use crate::fixtures::$blog::*;
            use cacheops::Dialect;
            use diesel::prelude::*;
            // Shadow the glob's: one of each per path.
            #[allow(unused_imports)]
            use $($dsl)*;
            #[allow(unused_imports)]
            use $($run)*;
            #[allow(unused_imports)]
            use $($simple)*;
            #[allow(unused_imports)]
            use $($connection)*;

            type Setup = $setup<$db>;

            $($as)? fn setup() -> Setup {
                $setup::new($store, |conn| seed(conn, 3, 4))$(.$aw)?
            }

            fn dialect() -> Dialect {
                <Backend as cacheops::CacheBackend>::DIALECT
            }

            /// What the tests here do with a [`Setup`].
            trait Steps {
                $($as)? fn read(&mut self, c: i32) -> (Vec<Article>, usize);
                fn invalidations(&self) -> u64;
                $($as)? fn raw(&mut self, sql: &str);
            }

            impl Steps for Setup {
                /// Reads category `c` through the cache; the statements it ran.
                $($as)? fn read(&mut self, c: i32) -> (Vec<Article>, usize) {
                    self.counted_with($($as)? |conn, h| in_category(c).cache().using(h).load(conn)$(.$aw)?.unwrap())$(.$aw)?
                }

                fn invalidations(&self) -> u64 {
                    self.ctx.cache.stats().invalidations
                }

                $($as)? fn raw(&mut self, sql: &str) {
                    self.conn.batch_execute(sql)$(.$aw)?.unwrap();
                }
            }

            #[$($test)*]
            $($as)? fn a_raw_transaction_that_rolls_back_leaves_nothing_cached_or_owed() {
                let mut s = setup()$(.$aw)?;
                s.read(1)$(.$aw)?;
                let before = s.invalidations();
                s.raw("BEGIN")$(.$aw)?;
                s.raw("UPDATE articles SET views = 99 WHERE category_id = 1")$(.$aw)?;
                let (inside, n) = s.read(1)$(.$aw)?;
                assert_eq!(n, 1, "dirty: straight to the database");
                assert!(inside.iter().all(|a| a.views == 99), "reads its own write");
                assert_eq!(s.invalidations(), before, "queued until COMMIT");
                diesel::sql_query("ROLLBACK").execute(&mut s.conn)$(.$aw)?.unwrap();
                assert_eq!(s.invalidations(), before, "a rollback owes nothing");
                let (after, n) = s.read(1)$(.$aw)?;
                assert!(
                    after.iter().all(|a| a.views != 99),
                    "never data that never existed"
                );
                assert_eq!(n, 0, "the entry from before the transaction is still right");
            }

            #[$($test)*]
            $($as)? fn a_raw_transaction_invalidates_at_its_commit() {
                let mut s = setup()$(.$aw)?;
                s.read(1)$(.$aw)?;
                let before = s.invalidations();
                s.raw("BEGIN; UPDATE articles SET views = 5 WHERE category_id = 1")$(.$aw)?;
                // A plain Diesel write inside it goes through the granular path
                // (SQLite: no BEGIN IMMEDIATE of its own inside a raw transaction).
                diesel::update(articles::table.filter(articles::category_id.eq(1)))
                    .set(articles::published.eq(true))
                    .execute(&mut s.conn)$(.$aw)?
                    .unwrap();
                assert_eq!(s.invalidations(), before, "not before its COMMIT");
                s.raw("COMMIT")$(.$aw)?;
                assert!(s.invalidations() > before);
                let (rows, n) = s.read(1)$(.$aw)?;
                assert_eq!(n, 1);
                assert!(rows.iter().all(|a| a.views == 5 && a.published));
            }

            #[$($test)*]
            $($as)? fn raw_savepoints_drop_or_merge_their_writes() {
                let mut s = setup()$(.$aw)?;
                s.read(2)$(.$aw)?;
                let before = s.invalidations();
                s.raw(
                    "BEGIN; SAVEPOINT a; UPDATE articles SET views = 1 WHERE category_id = 2; \
                     ROLLBACK TO SAVEPOINT a; RELEASE SAVEPOINT a; COMMIT",
                )$(.$aw)?;
                assert_eq!(
                    s.invalidations(),
                    before,
                    "rolled back to the savepoint: nothing owed"
                );
                assert_eq!(s.read(2)$(.$aw)?.1, 0);
                s.raw("BEGIN; SAVEPOINT b; UPDATE articles SET views = 2 WHERE category_id = 2")$(.$aw)?;
                s.raw("RELEASE b")$(.$aw)?;
                assert_eq!(s.invalidations(), before, "released into the transaction");
                s.raw("COMMIT")$(.$aw)?;
                let (rows, n) = s.read(2)$(.$aw)?;
                assert_eq!(n, 1);
                assert!(rows.iter().all(|a| a.views == 2));
                if dialect() == Dialect::Sqlite {
                    // Outside BEGIN, SQLite's SAVEPOINT opens the transaction and
                    // its RELEASE commits it.
                    let before = s.invalidations();
                    s.raw(
                        "SAVEPOINT outer_sp; UPDATE articles SET views = 3 WHERE category_id = 2",
                    )$(.$aw)?;
                    assert_eq!(s.invalidations(), before);
                    s.raw("RELEASE outer_sp")$(.$aw)?;
                    assert!(s.invalidations() > before);
                    assert!(s.read(2)$(.$aw)?.0.iter().all(|a| a.views == 3));
                }
            }

            #[$($test)*]
            $($as)? fn a_failed_raw_commit_ends_the_transaction() {
                let mut s = setup()$(.$aw)?;
                s.read(1)$(.$aw)?;
                s.raw("BEGIN; UPDATE articles SET views = 8 WHERE category_id = 1")$(.$aw)?;
                let failed = s
                    .conn
                    .batch_execute("COMMIT; SELECT no_such_column FROM articles")$(.$aw)?;
                assert!(failed.is_err());
                // Whatever the batch left, an autocommit write now invalidates at once.
                let _ = s.conn.batch_execute("ROLLBACK")$(.$aw)?;
                let before = s.invalidations();
                s.raw("UPDATE articles SET views = 9 WHERE category_id = 1")$(.$aw)?;
                assert!(
                    s.invalidations() > before,
                    "not queued in a transaction that ended"
                );
                assert!(s.read(1)$(.$aw)?.0.iter().all(|a| a.views == 9));
            }

            #[$($test)*]
            $($as)? fn a_trailing_comment_does_not_swallow_the_returning() {
                let mut s = setup()$(.$aw)?;
                let victim = s.read(1)$(.$aw)?.0[0].id;
                let sql = format!("DELETE FROM articles WHERE id = {victim} -- cleanup job");
                assert_eq!(diesel::sql_query(sql).execute(&mut s.conn)$(.$aw)?.unwrap(), 1);
                let insert = "INSERT INTO articles (category_id, title, uid) \
                              SELECT category_id, 'copy', uid FROM articles WHERE category_id = 2 \
                              /* copies */ -- the end";
                s.read(2)$(.$aw)?;
                assert_eq!(diesel::sql_query(insert).execute(&mut s.conn)$(.$aw)?.unwrap(), 4);
                let (rows, n) = s.read(1)$(.$aw)?;
                assert_eq!(n, 1);
                assert!(rows.iter().all(|a| a.id != victim));
                assert_eq!(s.read(2)$(.$aw)?.0.len(), 8);
            }

            #[$($test)*]
            $($as)? fn sqlite_identifiers_are_compared_without_case() {
                let mut s = setup()$(.$aw)?;
                s.read(1)$(.$aw)?;
                let sql = match dialect() {
                    Dialect::Sqlite => r#"UPDATE "ARTICLES" SET "VIEWS" = 3 WHERE "Category_Id" = 1"#,
                    Dialect::Postgres => "UPDATE ARTICLES SET VIEWS = 3 WHERE CATEGORY_ID = 1",
                };
                assert_eq!(diesel::sql_query(sql).execute(&mut s.conn)$(.$aw)?.unwrap(), 4);
                let (rows, n) = s.read(1)$(.$aw)?;
                assert_eq!(n, 1);
                assert!(rows.iter().all(|a| a.views == 3));
                if dialect() == Dialect::Sqlite {
                    s.raw(r#"UPDATE "Articles" SET views = 4"#)$(.$aw)?;
                    assert!(s.read(1)$(.$aw)?.0.iter().all(|a| a.views == 4));
                }
            }

            #[$($test)*]
            $($as)? fn a_select_calling_a_function_that_writes_invalidates() {
                let mut s = setup()$(.$aw)?;
                let call = match dialect() {
                    Dialect::Postgres => {
                        s.raw(
                            "CREATE FUNCTION touch_articles(c int) RETURNS int LANGUAGE sql VOLATILE \
                             AS $$ UPDATE articles SET views = views + 1 WHERE category_id = c RETURNING 1 $$",
                        )$(.$aw)?;
                        "SELECT touch_articles(1)"
                    }
                    Dialect::Sqlite => {
                        s.raw("CREATE TABLE log (n INTEGER)")$(.$aw)?;
                        "SELECT count(*) FROM log WHERE n = abs(1) OR lower(n) = 'a'"
                    }
                };
                let before = s.read(1)$(.$aw)?.0;
                let (_, n) = s.read(1)$(.$aw)?;
                assert_eq!(n, 0);
                s.queries.take();
                diesel::sql_query(call).execute(&mut s.conn)$(.$aw)?.unwrap();
                let ran = s.queries.take();
                let (after, n) = s.read(1)$(.$aw)?;
                if dialect() == Dialect::Postgres {
                    // The catalog asked, the statement, the session's identity
                    // learned again (a function that may write may also have set
                    // the search path: right after it on the async path, at the
                    // next read on the blocking one), and the read's miss.
                    assert_eq!(ran + n, 4, "the function's write invalidated");
                    assert!(n >= 1);
                    assert!(after.iter().zip(&before).all(|(a, b)| a.views == b.views + 1));
                } else {
                    assert_eq!(n, 0, "built-in stable functions change nothing");
                }
            }

            #[$($test)*]
            $($as)? fn a_diesel_savepoint_rollback_keeps_the_raw_savepoint_beneath() {
                let mut s = setup()$(.$aw)?;
                s.read(1)$(.$aw)?;
                s.conn
                    .transaction($($as)? |c| {
                        c.batch_execute("SAVEPOINT a")$(.$aw)??;
                        diesel::update(articles::table.filter(articles::category_id.eq(1)))
                            .set(articles::views.eq(61))
                            .execute(c)$(.$aw)??;
                        let undone: QueryResult<()> =
                            c.transaction($($as)? |_| Err(diesel::result::Error::RollbackTransaction))$(.$aw)?;
                        assert!(undone.is_err());
                        c.batch_execute("RELEASE a")$(.$aw)?
                    })$(.$aw)?
                    .unwrap();
                let (rows, n) = s.read(1)$(.$aw)?;
                assert_eq!(n, 1, "the update under the raw savepoint was invalidated");
                assert!(rows.iter().all(|a| a.views == 61));
            }

            #[$($test)*]
            $($as)? fn a_failed_batch_before_its_commit_keeps_the_transaction() {
                if dialect() == Dialect::Postgres {
                    return; // PostgreSQL aborts the block: its COMMIT rolls back.
                }
                let mut s = setup()$(.$aw)?;
                s.read(1)$(.$aw)?;
                s.raw("BEGIN; UPDATE articles SET views = 62 WHERE category_id = 1")$(.$aw)?;
                let failed = s.conn.batch_execute("INSERT INTO categories (id, name) VALUES (1, 'dup'); COMMIT")$(.$aw)?;
                assert!(failed.is_err(), "the INSERT fails before the COMMIT");
                s.raw("COMMIT")$(.$aw)?;
                let (rows, n) = s.read(1)$(.$aw)?;
                assert_eq!(n, 1, "the COMMIT that came later invalidated");
                assert!(rows.iter().all(|a| a.views == 62));
            }

            // PostgreSQL only: SQLite has no catalog of functions (they may all
            // write) and no DELETE ... USING.
            pg_only! {
                $blog,
                #[$($test)*]
                $($as)? fn a_diesel_transaction_inside_a_raw_one_commits_it() {
                    let mut s = setup()$(.$aw)?;
                    s.read(1)$(.$aw)?;
                    s.raw("BEGIN")$(.$aw)?;
                    // Diesel counts no level: its BEGIN is ignored, its COMMIT real.
                    s.conn
                        .transaction($($as)? |c| {
                            diesel::update(articles::table.filter(articles::category_id.eq(1)))
                                .set(articles::views.eq(63))
                                .execute(c)$(.$aw)?
                        })$(.$aw)?
                        .unwrap();
                    s.raw("ROLLBACK")$(.$aw)?; // nothing left to roll back
                    let (rows, n) = s.read(1)$(.$aw)?;
                    assert_eq!(n, 1, "invalidated at Diesel's COMMIT");
                    assert!(rows.iter().all(|a| a.views == 63));
                }

                #[$($test)*]
                $($as)? fn commit_and_chain_commits_then_begins() {
                    let mut s = setup()$(.$aw)?;
                    s.read(1)$(.$aw)?;
                    let before = s.invalidations();
                    s.raw("BEGIN; UPDATE articles SET views = 64 WHERE category_id = 1")$(.$aw)?;
                    s.raw("COMMIT AND CHAIN")$(.$aw)?;
                    assert!(s.invalidations() > before, "the first transaction committed");
                    let before = s.invalidations();
                    s.raw("UPDATE articles SET views = 65 WHERE category_id = 1")$(.$aw)?;
                    assert_eq!(s.invalidations(), before, "queued in the chained transaction");
                    s.raw("COMMIT")$(.$aw)?;
                    assert!(s.read(1)$(.$aw)?.0.iter().all(|a| a.views == 65));
                }

            #[$($test)*]
            $($as)? fn functions_are_judged_once_per_handle() {
                let mut s = setup()$(.$aw)?;
                s.raw("CREATE FUNCTION twice(x int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT 2 * x $$")$(.$aw)?;
                s.read(1)$(.$aw)?;
                let before = s.invalidations();
                let calls = $($as)? |s: &mut Setup| {
                    s.queries.take();
                    diesel::sql_query("SELECT twice(2)").execute(&mut s.conn)$(.$aw)?.unwrap();
                    s.queries.take()
                };
                assert_eq!(calls(&mut s)$(.$aw)?, 2, "the catalog is asked the first time");
                assert_eq!(calls(&mut s)$(.$aw)?, 1, "then remembered");
                assert_eq!(s.invalidations(), before, "an immutable function writes nothing");
                assert_eq!(s.read(1)$(.$aw)?.1, 0);
            }

            #[$($test)*]
            $($as)? fn delete_using_invalidates_the_rows_of_its_target() {
                let mut s = setup()$(.$aw)?;
                // Article 2 is in category 1: RETURNING * of both tables would
                // name it by the category's id (1).
                let one = $($as)? |s: &mut Setup| {
                    let found = articles::table
                        .find(2)
                        .cache()
                        .using(&s.ctx.cache)
                        .get_result::<Article>(&mut s.conn)$(.$aw)?;
                    cacheops::OptionalExtension::optional(found).unwrap()
                };
                assert!(one(&mut s)$(.$aw)?.is_some());
                let sql = "DELETE FROM articles USING categories \
                           WHERE articles.category_id = categories.id AND categories.name = 'c1'";
                assert_eq!(diesel::sql_query(sql).execute(&mut s.conn)$(.$aw)?.unwrap(), 4);
                assert_eq!(one(&mut s)$(.$aw)?, None, "the deleted row is never served");
            }

            }

            #[$($test)*]
            $($as)? fn session_statements_invalidate_nothing() {
                let mut s = setup()$(.$aw)?;
                s.read(1)$(.$aw)?;
                let before = s.invalidations();
                let mut statements = vec!["ANALYZE articles", "SELECT 1"];
                if dialect() == Dialect::Postgres {
                    statements.extend(["SET statement_timeout = 0", "SHOW statement_timeout"]);
                    statements.extend(["LISTEN cacheops_test", "UNLISTEN cacheops_test"]);
                    statements.extend(["VACUUM articles", "RESET statement_timeout"]);
                }
                for sql in &statements {
                    s.raw(sql)$(.$aw)?;
                }
                s.conn
                    .transaction($($as)? |c| {
                        if dialect() == Dialect::Postgres {
                            c.batch_execute("LOCK TABLE articles IN SHARE MODE")$(.$aw)??;
                            diesel::sql_query("LOCK TABLE categories").execute(c)$(.$aw)??;
                        }
                        c.batch_execute("ANALYZE articles; SELECT 2")$(.$aw)?
                    })$(.$aw)?
                    .unwrap();
                assert_eq!(s.invalidations(), before, "{statements:?}");
                assert_eq!(s.read(1)$(.$aw)?.1, 0);
            }

            #[$($test)*]
            $($as)? fn explain_analyze_of_a_write_invalidates_it() {
                let mut s = setup()$(.$aw)?;
                s.read(1)$(.$aw)?;
                let sql = match dialect() {
                    Dialect::Postgres => "EXPLAIN ANALYZE UPDATE articles SET views = 4",
                    // SQLite's EXPLAIN runs nothing; its bytecode listing is the
                    // statement compiled, not executed.
                    Dialect::Sqlite => "EXPLAIN QUERY PLAN SELECT * FROM articles",
                };
                s.raw(sql)$(.$aw)?;
                let expect_write = dialect() == Dialect::Postgres;
                let (rows, n) = s.read(1)$(.$aw)?;
                assert_eq!(n == 1, expect_write);
                assert_eq!(rows.iter().all(|a| a.views == 4), expect_write);
            }
        }
    };
}

/// The blocking path's tokens and traits for `hardening!`.
macro_rules! blocking {
    ($name:ident, $blog:ident, $db:ty, $store:expr) => {
        hardening!(
            $name,
            $blog,
            $db,
            $store,
            Wrapped,
            [test],
            [],
            [],
            [cacheops::CachedQueryDsl],
            [diesel::RunQueryDsl],
            [diesel::connection::SimpleConnection],
            [diesel::Connection]
        );
    };
}

blocking!(pg_redis, pg, PgDb, StoreKind::Redis);
blocking!(pg_memory, pg, PgDb, StoreKind::Memory);
blocking!(sqlite_redis, sqlite, SqliteDb, StoreKind::Redis);
blocking!(sqlite_memory, sqlite, SqliteDb, StoreKind::Memory);
// The async path: PostgreSQL through `AsyncCachedConnection`.
hardening!(async_pg_redis, pg, PgDb, StoreKind::Redis, AsyncWrapped,
    [tokio::test(flavor = "multi_thread", worker_threads = 2)], [async], [await],
    [crate::scenarios::AsyncCache], [diesel_async::RunQueryDsl],
    [diesel_async::SimpleAsyncConnection], [diesel_async::AsyncConnection]);

/// SQLite knows nothing of an application-defined function: a statement calling
/// one may write anything (its Rust body could), so it widens to everything.
#[test]
fn sqlite_application_functions_widen() {
    use crate::ctx::*;
    use crate::fixtures::sqlite::*;
    use cacheops::{CachedConnection, CachedQueryDsl};
    use diesel::prelude::*;

    diesel::define_sql_function!(fn bump(x: diesel::sql_types::Integer) -> diesel::sql_types::Integer);

    let mut ctx: Ctx<SqliteDb> = Ctx::new(StoreKind::Redis);
    seed(&mut ctx.conn, 2, 2);
    let mut conn = CachedConnection::new(ctx.db.connect(), ctx.cache.clone());
    bump_utils::register_impl(conn.inner(), |x: i32| x + 1).unwrap();
    let read = |conn: &mut CachedConnection<Conn>, h: &cacheops::Cacheops| {
        in_category(1)
            .cache()
            .using(h)
            .load::<Article>(conn)
            .unwrap()
    };
    read(&mut conn, &ctx.cache);
    let before = ctx.cache.stats().invalidations;
    let two: i32 = diesel::select(bump(1)).get_result(&mut conn).unwrap();
    assert_eq!(two, 2);
    assert!(
        ctx.cache.stats().invalidations > before,
        "unknown functions may write"
    );
}

/// Automatic caching (PostgreSQL) never serves a read whose result varies from
/// call to call; an explicit `.cached()` of one is the caller's choice.
#[test]
fn volatile_reads_are_not_cached_automatically() {
    use crate::ctx::*;
    use crate::fixtures::pg::*;
    use cacheops::{CachedConnection, CachedQueryDsl};
    use diesel::dsl::sql;
    use diesel::prelude::*;
    use diesel::sql_types::Integer;

    let mut ctx: Ctx<PgDb> = Ctx::new(StoreKind::Redis);
    seed(&mut ctx.conn, 2, 3);
    let queries = QueryCounter::default();
    let mut inner = ctx.db.connect();
    queries.instrument(&mut inner);
    let mut conn = CachedConnection::new(inner, ctx.cache.clone());
    let mut twice = |f: &dyn Fn(&mut CachedConnection<Conn>)| {
        f(&mut conn);
        queries.take();
        f(&mut conn);
        queries.take()
    };
    let any = |c: &mut CachedConnection<Conn>| {
        articles::table
            .order(sql::<Integer>("random()"))
            .first::<Article>(c)
            .unwrap();
    };
    let past = |c: &mut CachedConnection<Conn>| {
        articles::table
            .filter(articles::created_at.lt(diesel::dsl::now))
            .load::<Article>(c)
            .unwrap();
    };
    let stable = |c: &mut CachedConnection<Conn>| {
        articles::table
            .filter(articles::title.eq(sql("lower('A1-0')")))
            .load::<Article>(c)
            .unwrap();
    };
    assert_eq!(twice(&any), 1, "ORDER BY random() is read every time");
    assert_eq!(twice(&past), 1, "now() moves on");
    assert_eq!(twice(&stable), 0, "a stable function's result is cached");
    let asked = |c: &mut CachedConnection<Conn>| {
        let q = articles::table.order(sql::<Integer>("random()")).limit(1);
        let h = c.cache();
        q.cache().using(&h).load::<Article>(c).unwrap();
    };
    assert_eq!(twice(&asked), 0, "asked for explicitly, it is cached");
}

pub mod tag_model {
    use serde::{Deserialize, Serialize};

    diesel::table! {
        tags (id) {
            id -> Integer,
            name -> Text,
        }
    }

    #[derive(
        Debug, Clone, PartialEq, diesel::Queryable, Serialize, Deserialize, cacheops::Cacheable,
    )]
    #[diesel(table_name = tags)]
    #[cacheops(app = "hardening")]
    pub struct Tag {
        pub id: i32,
        pub name: String,
    }
}

/// A column whose collation ignores case: `name = 'BOB'` reads the row named
/// `bob`, whose stamp is spelled `bob`; such conditions must widen.
macro_rules! case_insensitive {
    ($test:ident, $db:ty, $create:expr) => {
        #[test]
        fn $test() {
            use crate::ctx::*;
            use cacheops::{CachedConnection, CachedQueryDsl};
            use diesel::connection::SimpleConnection;
            use diesel::prelude::*;
            use tag_model::*;

            let ctx: Ctx<$db> = Ctx::new(StoreKind::Redis);
            let mut setup = ctx.db.connect();
            setup.batch_execute($create).unwrap();
            setup
                .batch_execute("INSERT INTO tags (id, name) VALUES (1, 'bob')")
                .unwrap();
            let mut conn = CachedConnection::new(ctx.db.connect(), ctx.cache.clone());
            let h = ctx.cache.clone();
            let named = |conn: &mut CachedConnection<_>| {
                let q = tags::table.filter(tags::name.eq("BOB"));
                q.cache().using(&h).load::<Tag>(conn).unwrap().len()
            };
            assert_eq!(named(&mut conn), 1, "the collation matches bob");
            diesel::update(tags::table.find(1))
                .set(tags::name.eq("carol"))
                .execute(&mut conn)
                .unwrap();
            assert_eq!(named(&mut conn), 0, "never the row it was before");
        }
    };
}

case_insensitive!(
    sqlite_nocase_columns_widen,
    SqliteDb,
    "CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT COLLATE NOCASE)"
);
case_insensitive!(
    postgres_nondeterministic_collations_widen,
    PgDb,
    "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false); \
     CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT COLLATE ci)"
);

pub mod counter_model {
    use serde::{Deserialize, Serialize};

    diesel::table! {
        counters (id) {
            id -> Integer,
            total -> BigInt,
        }
    }

    #[derive(
        Debug, Clone, PartialEq, diesel::Queryable, Serialize, Deserialize, cacheops::Cacheable,
    )]
    #[diesel(table_name = counters)]
    #[cacheops(app = "hardening")]
    pub struct Counter {
        pub id: i32,
        pub total: i64,
    }
}

/// A condition binds an `Integer` against a `BIGINT` column: the row arrives
/// with 8-byte values, the bind has 4; both must name the same stamp.
#[test]
fn an_integer_bind_against_a_bigint_column_is_invalidated() {
    use crate::ctx::*;
    use cacheops::{CachedConnection, CachedQueryDsl};
    use counter_model::*;
    use diesel::connection::SimpleConnection;
    use diesel::dsl::sql;
    use diesel::prelude::*;
    use diesel::sql_types::{Bool, Integer};

    let ctx: Ctx<PgDb> = Ctx::new(StoreKind::Redis);
    let mut conn = CachedConnection::new(ctx.db.connect(), ctx.cache.clone());
    conn.batch_execute(
        "CREATE TABLE counters (id SERIAL PRIMARY KEY, total BIGINT NOT NULL); \
         INSERT INTO counters (total) VALUES (5), (6)",
    )
    .unwrap();
    let h = ctx.cache.clone();
    let fives = |conn: &mut CachedConnection<PgConnection>| {
        let q = counters::table.filter(sql::<Bool>("total = ").bind::<Integer, _>(5));
        q.cache().using(&h).load::<Counter>(conn).unwrap()
    };
    assert_eq!(fives(&mut conn).len(), 1);
    diesel::update(counters::table.find(1))
        .set(counters::total.eq(7i64))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(fives(&mut conn), [], "never the row it was before");
}

/// SQLite converts `'01'` to the INTEGER column's 1 before comparing: a text
/// bind against an INTEGER column cannot be matched by bytes, so it widens.
#[test]
fn sqlite_text_against_an_integer_column_widens() {
    use crate::ctx::*;
    use crate::fixtures::sqlite::*;
    use cacheops::{CachedConnection, CachedQueryDsl};
    use diesel::dsl::sql;
    use diesel::prelude::*;
    use diesel::sql_types::{Bool, Text};

    let mut ctx: Ctx<SqliteDb> = Ctx::new(StoreKind::Redis);
    seed(&mut ctx.conn, 2, 2);
    let mut conn = CachedConnection::new(ctx.db.connect(), ctx.cache.clone());
    let h = ctx.cache.clone();
    let first = |conn: &mut CachedConnection<Conn>| {
        let q = articles::table.filter(sql::<Bool>("category_id = ").bind::<Text, _>("01"));
        q.order(articles::id)
            .cache()
            .using(&h)
            .load::<Article>(conn)
            .unwrap()
    };
    let before = first(&mut conn);
    assert_eq!(before.len(), 2);
    diesel::update(articles::table.find(before[0].id))
        .set(articles::views.eq(41))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(first(&mut conn)[0].views, 41);
}

/// Tenants in two schemas of one database, chosen by `search_path`, behind one
/// handle: through a `CachedConnection` each reads its own rows, never the other's
/// entries, on explicit and automatic reads, and after switching with `SET`.
#[test]
fn tenants_in_two_schemas_never_share_entries() {
    use crate::ctx::*;
    use crate::fixtures::pg::*;
    use cacheops::{CachedConnection, CachedQueryDsl};
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;

    let (a, b) = (PgDb::open(), PgDb::open());
    seed(&mut a.connect(), 2, 3);
    seed(&mut b.connect(), 2, 1);
    let cache = handle(StoreKind::Redis, &unique("cacheops_tenants"));
    let mut on_a = CachedConnection::new(a.connect(), cache.clone());
    let mut on_b = CachedConnection::new(b.connect(), cache.clone());
    let explicit = |conn: &mut CachedConnection<PgConnection>| {
        in_category(1)
            .cache()
            .using(&cache)
            .load::<Article>(conn)
            .unwrap()
            .len()
    };
    let automatic = |conn: &mut CachedConnection<PgConnection>| {
        let q = articles::table.filter(articles::category_id.eq(1));
        q.load::<Article>(conn).unwrap().len()
    };
    for read in [
        &explicit as &dyn Fn(&mut CachedConnection<PgConnection>) -> usize,
        &automatic,
    ] {
        assert_eq!(read(&mut on_a), 3);
        assert_eq!(read(&mut on_a), 3);
        assert_eq!(read(&mut on_b), 1, "tenant B never gets tenant A's entry");
    }
    on_a.batch_execute(&format!("SET search_path TO {}", b.schema))
        .unwrap();
    assert_eq!(explicit(&mut on_a), 1, "after SET, the session reads B");
    on_a.transaction(|c| {
        c.batch_execute(&format!("SET LOCAL search_path TO {}", a.schema))?;
        assert_eq!(explicit(c), 3, "SET LOCAL reads A inside the transaction");
        QueryResult::Ok(())
    })
    .unwrap();
    assert_eq!(explicit(&mut on_a), 1, "and B again once it ended");
    // A SET undone by a savepoint rollback: the session reads B again.
    on_a.transaction(|c| {
        c.transaction(|c| {
            c.batch_execute(&format!("SET search_path TO {}", a.schema))?;
            assert_eq!(explicit(c), 3);
            QueryResult::<()>::Err(diesel::result::Error::RollbackTransaction)
        })
        .unwrap_err();
        assert_eq!(explicit(c), 1, "the rollback undid the SET");
        QueryResult::Ok(())
    })
    .unwrap();
    let _ = cache.invalidate_all();
}

/// Plain connections cannot tell their database: the handle's configured
/// database is part of every key, so two databases behind one Redis prefix keep
/// their entries apart.
#[test]
fn handles_of_two_databases_on_one_prefix_never_share_entries() {
    use crate::ctx::*;
    use crate::fixtures::pg::*;
    use cacheops::{CachedQueryDsl, Cacheops, Config, Ops, Profile};

    let (a, b) = (PgDb::open(), PgDb::open());
    seed(&mut a.connect(), 2, 3);
    seed(&mut b.connect(), 2, 1);
    let prefix = unique("cacheops_dbs");
    let on = |database: &str| {
        let all = Profile::new(Ops::ALL, std::time::Duration::from_secs(60));
        let config = Config::builder()
            .url(redis_url())
            .prefix(&prefix)
            .database(database);
        Cacheops::new(config.profile("*.*", all).build()).unwrap()
    };
    let (ha, hb) = (on("postgres://db-a/app"), on("postgres://db-b/app"));
    let read = |h: &Cacheops, db: &PgDb| {
        in_category(1)
            .cache()
            .using(h)
            .load::<Article>(&mut db.connect())
            .unwrap()
            .len()
    };
    assert_eq!(read(&ha, &a), 3);
    assert_eq!(read(&hb, &b), 1);
    let _ = ha.invalidate_all();
}

/// Two SQLite files behind one handle: each `CachedConnection` knows its file.
#[test]
fn two_sqlite_files_never_share_entries() {
    use crate::ctx::*;
    use crate::fixtures::sqlite::*;
    use cacheops::{CachedConnection, CachedQueryDsl};

    let (a, b) = (SqliteDb::open(), SqliteDb::open());
    seed(&mut a.connect(), 2, 3);
    seed(&mut b.connect(), 2, 1);
    let cache = handle(StoreKind::Redis, &unique("cacheops_files"));
    let read = |db: &SqliteDb| {
        let mut conn = CachedConnection::new(db.connect(), cache.clone());
        in_category(1)
            .cache()
            .using(&cache)
            .load::<Article>(&mut conn)
            .unwrap()
            .len()
    };
    assert_eq!(read(&a), 3);
    assert_eq!(read(&b), 1);
    let _ = cache.invalidate_all();
}

/// A schema-qualified UPDATE of another schema's table of the same name must not
/// borrow the model's primary key: that table has no `id`.
#[test]
fn another_schemas_table_does_not_borrow_the_models_primary_key() {
    use crate::ctx::*;
    use crate::fixtures::pg::*;
    use cacheops::{CachedConnection, CachedQueryDsl};
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;

    let mut ctx: Ctx<PgDb> = Ctx::new(StoreKind::Redis);
    seed(&mut ctx.conn, 2, 2);
    let other = unique("other");
    let mut conn = CachedConnection::new(ctx.db.connect(), ctx.cache.clone());
    conn.batch_execute(&format!(
        "CREATE SCHEMA {other}; CREATE TABLE {other}.articles (code TEXT PRIMARY KEY, views INT); \
         INSERT INTO {other}.articles VALUES ('a', 1)"
    ))
    .unwrap();
    let h = ctx.cache.clone();
    in_category(1)
        .cache()
        .using(&h)
        .load::<Article>(&mut conn)
        .unwrap();
    let sql = format!("UPDATE {other}.articles SET views = 2 WHERE code = 'a'");
    assert_eq!(diesel::sql_query(&sql).execute(&mut conn).unwrap(), 1);
    conn.batch_execute(&format!("DROP SCHEMA {other} CASCADE"))
        .unwrap();
}
