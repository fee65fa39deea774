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
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                loop {
                    let (rows, n) = read(&mut ctx, &h);
                    if let Ok(rows) = rows {
                        let row = rows.iter().find(|a| a.id == id).expect("the new row");
                        assert_eq!((row.title.as_str(), row.views), ("c", 7));
                        if n == 0 {
                            break;
                        }
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "caching never resumed"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
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
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                loop {
                    let (rows, n) = read(&mut ctx, &h);
                    assert!(
                        rows.unwrap().contains(&new[0]),
                        "never the entry cached before the write"
                    );
                    if n == 0 {
                        break;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "caching never resumed"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
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
