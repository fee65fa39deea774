//! Transactions on a plain connection: invalidations wait for the outermost
//! COMMIT, rolled-back levels send none, and reads inside bypass the cache.

macro_rules! transactions {
    ($name:ident, $blog:ident, $db:ty, $store:expr) => {
        mod $name {
            use crate::ctx::*;
            use crate::fixtures::$blog::*;
            use cacheops::CachedQueryDsl;

            fn ctx() -> Ctx<$db> {
                let mut ctx = Ctx::new($store);
                seed(&mut ctx.conn, 3, 4);
                ctx
            }

            fn load_cat(ctx: &mut Ctx<$db>, c: i32) -> (Vec<Article>, usize) {
                ctx.counted(|conn, h| in_category(c).cache().using(h).load(conn).unwrap())
            }

            fn first_of(ctx: &mut Ctx<$db>, c: i32) -> Article {
                load_cat(ctx, c).0[0].clone()
            }

            fn moved(mut a: Article, to: i32) -> Article {
                a.category_id = to;
                a
            }

            #[test]
            fn invalidation_waits_for_the_commit() {
                let mut ctx = ctx();
                let article = moved(first_of(&mut ctx, 1), 2);
                let before = ctx.cache.stats().invalidations;
                let mut reader = ctx.db.connect();
                let cache = ctx.cache.clone();
                cache
                    .transaction(&mut ctx.conn, |conn| {
                        cache.save(conn, &article)?;
                        assert_eq!(
                            cache.stats().invalidations,
                            before,
                            "nothing sent before COMMIT"
                        );
                        // A reader fills the cache from the committed (old) state meanwhile.
                        let seen = in_category(1)
                            .cache()
                            .using(&cache)
                            .load::<Article>(&mut reader)?;
                        assert!(seen.iter().any(|a| a.id == article.id));
                        Ok::<(), cacheops::Error>(())
                    })
                    .unwrap();
                assert_eq!(ctx.cache.stats().invalidations, before + 1);
                let (cat1, n) = load_cat(&mut ctx, 1);
                assert_eq!(
                    n, 1,
                    "the reader's fill was invalidated by the COMMIT's queue"
                );
                assert!(cat1.iter().all(|a| a.id != article.id));
            }

            #[test]
            fn rollback_sends_no_invalidation() {
                let mut ctx = ctx();
                let original = first_of(&mut ctx, 1);
                let before = ctx.cache.stats().invalidations;
                let cache = ctx.cache.clone();
                let result: cacheops::Result<()> = cache.transaction(&mut ctx.conn, |conn| {
                    cache.save(conn, &moved(original.clone(), 2))?;
                    Err(cacheops::Error::new(cacheops::ErrorKind::Config, "abort"))
                });
                assert!(result.is_err());
                assert_eq!(ctx.cache.stats().invalidations, before);
                let (cat1, n) = load_cat(&mut ctx, 1);
                assert_eq!(
                    (n, cat1[0].clone()),
                    (0, original),
                    "still cached, and still true"
                );
            }

            #[test]
            fn savepoints_merge_on_release_and_drop_on_rollback() {
                let mut ctx = ctx();
                for c in 1..=3 {
                    load_cat(&mut ctx, c);
                }
                let (a, b) = (
                    moved(first_of(&mut ctx, 1), 2),
                    moved(first_of(&mut ctx, 3), 1),
                );
                let before = ctx.cache.stats().invalidations;
                let cache = ctx.cache.clone();
                cache
                    .transaction(&mut ctx.conn, |conn| {
                        cache.transaction(conn, |conn| cache.save(conn, &a))?;
                        let inner: cacheops::Result<Article> = cache.transaction(conn, |conn| {
                            cache.save(conn, &b)?;
                            Err(cacheops::Error::new(
                                cacheops::ErrorKind::Config,
                                "abort inner",
                            ))
                        });
                        assert!(inner.is_err());
                        assert_eq!(
                            cache.stats().invalidations,
                            before,
                            "the released savepoint waits for the outer COMMIT"
                        );
                        Ok::<(), cacheops::Error>(())
                    })
                    .unwrap();
                assert_eq!(
                    ctx.cache.stats().invalidations,
                    before + 1,
                    "only the released savepoint's write"
                );
                let counts: Vec<usize> =
                    [1, 2, 3].iter().map(|&c| load_cat(&mut ctx, c).1).collect();
                assert_eq!(
                    counts,
                    vec![1, 1, 0],
                    "category 3's query was never invalidated"
                );
            }

            #[test]
            fn reads_inside_a_transaction_bypass_the_cache() {
                let mut ctx = ctx();
                load_cat(&mut ctx, 1);
                let article = moved(first_of(&mut ctx, 1), 2);
                let cache = ctx.cache.clone();
                let (inside, n) = ctx.counted(|conn, _| {
                    cache
                        .transaction(conn, |conn| {
                            cache.save(conn, &article)?;
                            in_category(1).cache().using(&cache).load::<Article>(conn)
                        })
                        .unwrap()
                });
                assert!(
                    inside.iter().all(|a| a.id != article.id),
                    "reads its own write"
                );
                assert!(n >= 3, "save and read both went to the database: {n}");
            }
        }
    };
}

transactions!(pg_redis, pg, PgDb, StoreKind::Redis);
transactions!(pg_memory, pg, PgDb, StoreKind::Memory);
transactions!(sqlite_redis, sqlite, SqliteDb, StoreKind::Redis);
transactions!(sqlite_memory, sqlite, SqliteDb, StoreKind::Memory);

/// A COMMIT that fails (a deferred constraint) runs none of the queue.
#[test]
fn failed_commit_sends_no_invalidation() {
    use crate::ctx::*;
    use crate::fixtures::pg::*;
    use cacheops::CachedQueryDsl;
    use diesel::connection::SimpleConnection;
    let mut ctx: Ctx<PgDb> = Ctx::new(StoreKind::Redis);
    seed(&mut ctx.conn, 2, 2);
    ctx.conn
        .batch_execute(
            "ALTER TABLE articles DROP CONSTRAINT articles_category_id_fkey, \
             ADD FOREIGN KEY (category_id) REFERENCES categories (id) DEFERRABLE INITIALLY DEFERRED",
        )
        .unwrap();
    let (rows, _) = ctx.counted(|c, h| in_category(1).cache().using(h).load::<Article>(c).unwrap());
    let mut broken = rows[0].clone();
    broken.category_id = 999;
    let before = ctx.cache.stats().invalidations;
    let cache = ctx.cache.clone();
    let result = cache.transaction(&mut ctx.conn, |conn| cache.save(conn, &broken));
    assert!(result.is_err(), "the deferred foreign key fails at COMMIT");
    assert_eq!(ctx.cache.stats().invalidations, before);
    let (again, n) =
        ctx.counted(|c, h| in_category(1).cache().using(h).load::<Article>(c).unwrap());
    assert_eq!((again, n), (rows, 0));
}
