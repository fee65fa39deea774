//! What happens when Redis fails or its data is damaged: typed errors, degrading
//! to the database, and never a stale or undecodable entry served.

/// Redis-specific scenarios for one backend.
macro_rules! failures {
    ($name:ident, $blog:ident, $db:ty) => {
        mod $name {
            use crate::ctx::*;
            use crate::fixtures::$blog::*;
            use crate::redis_server::PrivateRedis;
            use cacheops::{CachedQueryDsl, Cacheops, Config, Ops, Profile};
            use diesel::connection::SimpleConnection;
            use diesel::prelude::*;
            use std::time::Duration;

            fn ctx() -> Ctx<$db> {
                let mut ctx = Ctx::new(StoreKind::Redis);
                seed(&mut ctx.conn, 2, 3);
                ctx
            }

            fn handle_at(url: &str, degrade: bool) -> Cacheops {
                let config = Config::builder()
                    .url(url)
                    .prefix(unique("cacheops_fail"))
                    .degrade_on_failure(degrade)
                    .redis_timeout(Duration::from_millis(300))
                    .profile("*.*", Profile::new(Ops::ALL, Duration::from_secs(600)))
                    .build();
                Cacheops::new(config).unwrap()
            }

            fn read(ctx: &mut Ctx<$db>, h: &Cacheops) -> (cacheops::Result<Vec<Article>>, usize) {
                ctx.counted(|c, _| in_category(1).cache().using(h).load::<Article>(c))
            }

            /// Reads until one is served from the cache again (at most 10 s), each
            /// read checked by `check`, which says whether it succeeded.
            fn until_cached(
                ctx: &mut Ctx<$db>,
                h: &Cacheops,
                check: impl Fn(cacheops::Result<Vec<Article>>) -> bool,
            ) {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                loop {
                    let (rows, n) = read(ctx, h);
                    if check(rows) && n == 0 {
                        return;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "caching never resumed"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }

            fn read_own(ctx: &mut Ctx<$db>) -> (cacheops::Result<Vec<Article>>, usize) {
                let h = ctx.cache.clone();
                read(ctx, &h)
            }

            /// Keys of the test's prefix matching `pattern` (after the prefix).
            fn keys(ctx: &Ctx<$db>, pattern: &str) -> Vec<String> {
                let mut redis = redis::Client::open(redis_url())
                    .unwrap()
                    .get_connection()
                    .unwrap();
                let prefix = ctx.cache.config().prefix();
                let pattern = pattern.replace("{P}", prefix);
                redis::cmd("KEYS").arg(pattern).query(&mut redis).unwrap()
            }

            fn redis() -> redis::Connection {
                redis::Client::open(redis_url())
                    .unwrap()
                    .get_connection()
                    .unwrap()
            }

            #[test]
            fn unreachable_redis_is_a_typed_error() {
                let mut ctx = ctx();
                let h = handle_at("redis://127.0.0.1:1", false);
                let (result, _) = read(&mut ctx, &h);
                let err = result.unwrap_err();
                assert!(err.is_redis(), "{err}");
                // Inside a transaction it does not manage, a helper's write is not
                // committed yet: the failure is the caller's, to roll back on.
                let insert = ctx
                    .conn
                    .transaction(|c| h.insert::<Article, _, _>(c, &NewArticle::new(1, "x")));
                assert!(insert.unwrap_err().is_redis());
            }

            #[test]
            fn committed_writes_succeed_when_their_invalidation_fails() {
                let mut ctx = ctx();
                let mut server = PrivateRedis::start();
                let h = handle_at(&server.url(), false);
                let missed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
                let seen = missed.clone();
                h.on_missed_invalidation(move |e| seen.lock().unwrap().push(e.kind()));
                assert_eq!(read(&mut ctx, &h).1, 1);
                assert_eq!(read(&mut ctx, &h).1, 0);
                server.stop_keeping_data();
                // Outside any transaction the write commits: Ok, never a retry bait.
                let new = h
                    .insert::<Article, _, _>(&mut ctx.conn, &NewArticle::new(1, "down"))
                    .unwrap();
                let id = new[0].id;
                let mut conn = cacheops::CachedConnection::new(ctx.db.connect(), h.clone());
                let retitle = |t: &'static str| {
                    diesel::update(articles::table.filter(articles::id.eq(id)))
                        .set(articles::title.eq(t))
                };
                assert_eq!(retitle("b").execute(&mut conn).unwrap(), 1);
                conn.transaction(|c| retitle("c").execute(c)).unwrap();
                conn.batch_execute(&format!("UPDATE articles SET views = 7 WHERE id = {id}"))
                    .unwrap();
                assert_eq!(h.stats().missed_invalidations, 4);
                assert_eq!(
                    *missed.lock().unwrap(),
                    vec![cacheops::ErrorKind::MissedInvalidation; 4]
                );
                // What the outage missed is never served once Redis is back.
                server.restart();
                until_cached(&mut ctx, &h, |rows| {
                    let Ok(rows) = rows else {
                        return false; // reconnecting, without degrade
                    };
                    let row = rows.iter().find(|a| a.id == id).expect("the new row");
                    assert_eq!((row.title.as_str(), row.views), ("c", 7));
                    true
                });
            }

            #[test]
            fn unreachable_redis_degrades_to_the_database() {
                let mut ctx = ctx();
                let h = handle_at("redis://127.0.0.1:1", true);
                for _ in 0..2 {
                    let (rows, n) = read(&mut ctx, &h);
                    assert_eq!((rows.unwrap().len(), n), (3, 1));
                }
                let rows = h
                    .insert::<Article, _, _>(&mut ctx.conn, &NewArticle::new(1, "x"))
                    .unwrap();
                assert_eq!(rows.len(), 1);
                assert!(h.stats().errors >= 3);
            }

            #[test]
            fn invalidation_missed_while_redis_was_down_is_not_forgotten() {
                let mut ctx = ctx();
                let mut server = PrivateRedis::start();
                let h = handle_at(&server.url(), true);
                assert_eq!(read(&mut ctx, &h).1, 1);
                assert_eq!(read(&mut ctx, &h).1, 0);
                server.stop_keeping_data();
                let new = h
                    .insert::<Article, _, _>(&mut ctx.conn, &NewArticle::new(1, "while down"))
                    .unwrap();
                let (rows, n) = read(&mut ctx, &h);
                assert_eq!((rows.unwrap().len(), n), (4, 1), "degraded to the database");
                server.restart();
                let mut probe = server.client();
                let held: usize = redis::cmd("DBSIZE").query(&mut probe).unwrap();
                assert!(held > 0, "the restarted server still holds the old entry");
                // The store may hold back reconnecting for a moment after a failed
                // connect; until the pending invalidation gets through, reads bypass
                // the cache. Every read, including the first hit, must be fresh.
                until_cached(&mut ctx, &h, |rows| {
                    assert!(
                        rows.unwrap().contains(&new[0]),
                        "never the entry cached before the write"
                    );
                    true
                });
            }

            #[test]
            fn evicted_stamp_is_a_miss() {
                let mut ctx = ctx();
                assert_eq!(read_own(&mut ctx).1, 1);
                let stamps = keys(&ctx, "{{P}:articles}:j:*");
                assert!(!stamps.is_empty());
                let _: () = redis::cmd("DEL").arg(&stamps).query(&mut redis()).unwrap();
                let (rows, n) = read_own(&mut ctx);
                assert_eq!((rows.unwrap().len(), n), (3, 1));
                assert_eq!(read_own(&mut ctx).1, 0);
            }

            #[test]
            fn corrupted_or_undecodable_entries_are_misses() {
                let mut ctx = ctx();
                let (expected, _) = read_own(&mut ctx);
                let expected = expected.unwrap();
                let values = keys(&ctx, "{P}:q:*");
                assert_eq!(values.len(), 1);
                let mut redis = redis();
                // A valid checksum in front of a payload that is not MessagePack.
                let stored: Vec<u8> = redis::cmd("GET").arg(&values[0]).query(&mut redis).unwrap();
                let mut damaged = stored[..16].to_vec();
                damaged.extend_from_slice(&[0xc1, 0xc1, 0xc1]);
                let _: () = redis::cmd("SET")
                    .arg(&values[0])
                    .arg(damaged)
                    .query(&mut redis)
                    .unwrap();
                let (rows, n) = read_own(&mut ctx);
                assert_eq!((rows.unwrap(), n), (expected.clone(), 1));
                // A value too short to hold a checksum.
                let _: () = redis::cmd("SET")
                    .arg(&values[0])
                    .arg("x")
                    .query(&mut redis)
                    .unwrap();
                let (rows, n) = read_own(&mut ctx);
                assert_eq!((rows.unwrap(), n), (expected, 1));
                assert_eq!(read_own(&mut ctx).1, 0);
            }
        }
    };
}

failures!(pg, pg, PgDb);
failures!(sqlite, sqlite, SqliteDb);

/// What a Redis failure says, and what is lost (nothing the database answered),
/// against private servers in the shapes that fail: a password, a small
/// `proto-max-bulk-len`, a paused process. One backend: none of it depends on it.
mod shapes {
    use crate::ctx::*;
    use crate::fixtures::sqlite::*;
    use crate::redis_server::PrivateRedis;
    use cacheops::{CachedOptions, CachedQueryDsl, Cacheops, Config, Ops, Profile};
    use diesel::{QueryDsl, RunQueryDsl};
    use std::time::Duration;

    const TIMEOUT: Duration = Duration::from_millis(200);

    fn config(url: &str) -> cacheops::ConfigBuilder {
        Config::builder()
            .url(url)
            .prefix(unique("cacheops_shapes"))
            .redis_timeout(TIMEOUT)
            .profile("*.*", Profile::new(Ops::ALL, Duration::from_secs(600)))
    }

    fn handle_at(url: &str) -> Cacheops {
        Cacheops::new(config(url).build()).unwrap()
    }

    fn ctx() -> Ctx<SqliteDb> {
        let mut ctx = Ctx::new(StoreKind::Redis);
        seed(&mut ctx.conn, 2, 3);
        ctx
    }

    fn read(ctx: &mut Ctx<SqliteDb>, h: &Cacheops) -> (cacheops::Result<Vec<Article>>, usize) {
        ctx.counted(|c, _| in_category(1).cache().using(h).load::<Article>(c))
    }

    /// Asserts that `error` is a Redis error whose message holds every one of `parts`.
    fn says(error: &cacheops::Error, parts: &[&str]) {
        assert!(error.is_redis(), "{error}");
        let text = error.to_string();
        for part in parts {
            assert!(text.contains(part), "{part:?} missing from: {text}");
        }
    }

    #[test]
    fn a_refused_connection_says_where_to_look() {
        let mut ctx = ctx();
        let (result, _) = read(&mut ctx, &handle_at("redis://127.0.0.1:1"));
        let doing = "reading a cached value and its stamps (keys: value key, stamps)";
        says(
            &result.unwrap_err(),
            &[doing, "connection refused", "CACHEOPS_REDIS_URL"],
        );
    }

    #[test]
    fn a_missing_or_wrong_password_says_so_and_where_to_put_it() {
        let mut ctx = ctx();
        let server = PrivateRedis::start_with(&["--requirepass", "secret"]);
        let (none, _) = read(&mut ctx, &handle_at(&server.url()));
        let doing = "reading a cached value and its stamps (keys: value key, stamps)";
        says(
            &none.unwrap_err(),
            &[doing, "Redis requires a password", "CACHEOPS_REDIS_URL"],
        );
        let wrong = format!("redis://:wrong@127.0.0.1:{}", server.port);
        let (wrong, _) = read(&mut ctx, &handle_at(&wrong));
        says(
            &wrong.unwrap_err(),
            &[doing, "refused the user or password", "CACHEOPS_REDIS_URL"],
        );
    }

    #[test]
    fn a_password_set_while_running_is_named_by_the_invalidation() {
        let mut ctx = ctx();
        let server = PrivateRedis::start();
        let h = handle_at(&server.url());
        let rows = read(&mut ctx, &h).0.unwrap();
        let mut admin = server.client();
        let _: () = redis::cmd("CONFIG")
            .arg(&["SET", "requirepass", "new"])
            .query(&mut admin)
            .unwrap();
        // Drops the handle's pooled connection: it reconnects without a password.
        let _: () = redis::cmd("CLIENT")
            .arg(&["KILL", "TYPE", "normal"])
            .query(&mut admin)
            .unwrap();
        let error = h.invalidate_obj::<Backend, Article>(&rows[0]).unwrap_err();
        let doing = "invalidating rows of table articles (keys: schemes set, stamps)";
        says(
            &error,
            &[doing, "Redis requires a password", "CACHEOPS_REDIS_URL"],
        );
    }

    #[test]
    fn a_paused_server_is_a_timeout_that_says_how_long() {
        let mut ctx = ctx();
        let server = PrivateRedis::start();
        let h = handle_at(&server.url());
        read(&mut ctx, &h).0.unwrap();
        server.pause();
        let (result, _) = read(&mut ctx, &h);
        server.resume();
        let error = result.unwrap_err();
        assert!(error.is_timeout(), "{error}");
        let doing = "reading a cached value and its stamps";
        says(
            &error,
            &[
                doing,
                "no answer within 200 ms",
                "Config::redis_timeout",
                "degrade_on_failure",
            ],
        );
    }

    #[test]
    fn a_value_over_proto_max_bulk_len_still_returns_what_the_database_answered() {
        let mut ctx = ctx();
        let server = PrivateRedis::start_with(&["--proto-max-bulk-len", "1mb"]);
        let h = handle_at(&server.url());
        let body = "x".repeat(2 << 20);
        let big = NewArticle {
            body: Some(body.clone()),
            ..NewArticle::new(1, "big")
        };
        diesel::insert_into(articles::table)
            .values(&big)
            .execute(&mut ctx.conn)
            .unwrap();
        for _ in 0..2 {
            let (rows, n) = read(&mut ctx, &h);
            let rows = rows.expect("the database's rows, though Redis refused to store them");
            assert_eq!((rows.len(), n), (4, 1));
        }
        assert_eq!(h.stats().errors, 2, "each refused store is counted");
        let computed = h.simple().cached("f", &CachedOptions::new(), || {
            Ok::<_, cacheops::Error>(body.clone())
        });
        assert_eq!(
            computed.unwrap().len(),
            body.len(),
            "a cached function's result too"
        );
        let error = h.simple().set("k", &body, None).unwrap_err();
        let doing = "storing a simple-cache value (keys: simple-cache key)";
        says(
            &error,
            &[
                doing,
                "value too large",
                "proto-max-bulk-len",
                "CACHEOPS_MAX_VALUE_SIZE",
            ],
        );
    }

    #[test]
    fn a_result_over_max_value_size_is_returned_and_not_stored() {
        let mut ctx = ctx();
        let h = Cacheops::new(config(&redis_url()).max_value_size(160).build()).unwrap();
        for _ in 0..2 {
            let (rows, n) = read(&mut ctx, &h);
            assert_eq!((rows.unwrap().len(), n), (3, 1), "read, never stored");
        }
        let stats = h.stats();
        assert_eq!((stats.too_large, stats.errors), (2, 0));
        let small = || in_category(1).limit(1).cache().using(&h);
        assert_eq!(
            ctx.counted(|c, _| small().load::<Article>(c).unwrap().len()),
            (1, 1)
        );
        assert_eq!(
            ctx.counted(|c, _| small().load::<Article>(c).unwrap().len()),
            (1, 0)
        );
        let error = h.simple().set("k", &"x".repeat(200), None).unwrap_err();
        assert!(error.is_too_large(), "{error}");
        h.invalidate_all().unwrap();
    }
}

/// Automatic caching (rows replayed on PostgreSQL) stores through the same fill.
mod automatic_fill {
    use crate::ctx::*;
    use crate::fixtures::pg::*;
    use cacheops::{CachedConnection, Cacheops, Config, Ops, Profile};
    use diesel::prelude::*;
    use std::time::Duration;

    #[test]
    fn raw_rows_over_max_value_size_are_returned_and_not_stored() {
        let mut ctx: Ctx<PgDb> = Ctx::new(StoreKind::Redis);
        seed(&mut ctx.conn, 1, 3);
        let config = Config::builder()
            .url(redis_url())
            .prefix(unique("cacheops_auto_large"))
            .max_value_size(64)
            .profile("*.*", Profile::new(Ops::ALL, Duration::from_secs(600)))
            .build();
        let h = Cacheops::new(config).unwrap();
        let queries = QueryCounter::default();
        let mut inner = ctx.db.connect();
        queries.instrument(&mut inner);
        let mut conn = CachedConnection::new(inner, h.clone());
        for _ in 0..2 {
            queries.take();
            let rows: Vec<Article> = in_category(1).load(&mut conn).unwrap();
            assert_eq!((rows.len(), queries.take()), (3, 1), "read, never stored");
        }
        assert_eq!(h.stats().too_large, 2);
        h.invalidate_all().unwrap();
    }
}
