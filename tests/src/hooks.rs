//! After-commit hooks (`cacheops::on_commit`): they run after the outermost COMMIT,
//! after the transaction's invalidations; rolled-back levels drop theirs.

macro_rules! hooks {
    ($name:ident, $blog:ident, $db:ty, $store:expr) => {
        mod $name {
            use std::sync::{Arc, Mutex};

            use crate::ctx::*;
            use crate::fixtures::$blog::*;
            use cacheops::{CachedConnection, CachedQueryDsl, Cacheops, ErrorKind};
            use diesel::prelude::*;

            fn ctx() -> Ctx<$db> {
                let mut ctx = Ctx::new($store);
                seed(&mut ctx.conn, 3, 4);
                ctx
            }

            /// What the hooks saw, in the order they ran.
            #[derive(Clone, Default)]
            struct Log(Arc<Mutex<Vec<String>>>);

            impl Log {
                /// A hook that records its name and how many invalidations the
                /// handle had sent by the time it ran.
                fn hook(&self, name: &str, cache: &Cacheops) -> impl FnOnce() + Send + 'static {
                    let (log, cache, name) = (self.0.clone(), cache.clone(), name.to_string());
                    let before = cache.stats().invalidations;
                    move || {
                        let sent = cache.stats().invalidations - before;
                        log.lock().unwrap().push(format!("{name} after {sent}"));
                    }
                }

                fn seen(&self) -> Vec<String> {
                    self.0.lock().unwrap().clone()
                }
            }

            fn moved(ctx: &mut Ctx<$db>, from: i32, to: i32) -> Article {
                let mut a = in_category(from)
                    .cache()
                    .using(&ctx.cache)
                    .load::<Article>(&mut ctx.conn)
                    .unwrap()
                    .remove(0);
                a.category_id = to;
                a
            }

            #[test]
            fn hooks_run_after_the_commits_invalidations() {
                let mut ctx = ctx();
                let article = moved(&mut ctx, 1, 2);
                let (log, cache) = (Log::default(), ctx.cache.clone());
                cache
                    .transaction(&mut ctx.conn, |conn| {
                        // Registered before the write: still runs after its invalidation.
                        cacheops::on_commit(conn, log.hook("first", &cache))?;
                        cache.save(conn, &article)?;
                        cacheops::on_commit(conn, log.hook("second", &cache))?;
                        assert!(log.seen().is_empty(), "nothing runs before COMMIT");
                        Ok::<(), cacheops::Error>(())
                    })
                    .unwrap();
                assert_eq!(log.seen(), ["first after 1", "second after 1"]);
            }

            #[test]
            fn rolled_back_savepoints_drop_their_hooks_released_ones_wait() {
                let mut ctx = ctx();
                let (log, cache) = (Log::default(), ctx.cache.clone());
                cache
                    .transaction(&mut ctx.conn, |conn| {
                        cache.transaction(conn, |conn| {
                            cacheops::on_commit(conn, log.hook("released", &cache))
                        })?;
                        let rolled_back: cacheops::Result<()> = cache.transaction(conn, |conn| {
                            cacheops::on_commit(conn, log.hook("rolled back", &cache))?;
                            Err(cacheops::Error::new(ErrorKind::Config, "abort"))
                        });
                        assert!(rolled_back.is_err());
                        assert!(
                            log.seen().is_empty(),
                            "the released one waits for the outer COMMIT"
                        );
                        Ok::<(), cacheops::Error>(())
                    })
                    .unwrap();
                assert_eq!(log.seen(), ["released after 0"]);
            }

            #[test]
            fn a_hook_outside_a_transaction_runs_at_once() {
                let mut ctx = ctx();
                let log = Log::default();
                cacheops::on_commit(&mut ctx.conn, log.hook("now", &ctx.cache)).unwrap();
                assert_eq!(log.seen(), ["now after 0"]);
            }

            #[test]
            fn a_plain_connection_in_a_transaction_cacheops_did_not_open_is_refused() {
                let mut ctx = ctx();
                let (log, cache) = (Log::default(), ctx.cache.clone());
                let refused = ctx.conn.transaction(|conn| {
                    Ok::<_, diesel::result::Error>(cacheops::on_commit(conn, log.hook("x", &cache)))
                });
                let err = refused.unwrap().unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Transaction);
                assert!(log.seen().is_empty(), "the refused hook never runs");
            }

            #[test]
            fn a_cached_connection_runs_hooks_after_its_queue() {
                let ctx = ctx();
                let (log, cache) = (Log::default(), ctx.cache.clone());
                let mut conn = CachedConnection::new(ctx.db.connect(), cache.clone());
                conn.transaction(|conn| {
                    cacheops::on_commit(conn, log.hook("outer", &cache))?;
                    diesel::update(articles::table)
                        .set(articles::views.eq(3))
                        .execute(conn)?;
                    let failed: QueryResult<()> = conn.transaction(|conn| {
                        cacheops::on_commit(conn, log.hook("rolled back", &cache))
                            .map_err(|e| diesel::result::Error::QueryBuilderError(Box::new(e)))?;
                        Err(diesel::result::Error::RollbackTransaction)
                    });
                    assert!(failed.is_err());
                    assert!(log.seen().is_empty());
                    Ok::<_, cacheops::Error>(())
                })
                .unwrap();
                let seen = log.seen();
                assert_eq!(seen.len(), 1, "{seen:?}");
                assert!(
                    seen[0].starts_with("outer after") && !seen[0].ends_with("after 0"),
                    "ran after the UPDATE's invalidation: {seen:?}"
                );
            }
        }
    };
}

hooks!(pg, pg, PgDb, StoreKind::Redis);
hooks!(sqlite, sqlite, SqliteDb, StoreKind::Redis);
