//! `#[cacheops::cached]` functions against real Redis, and stampede protection of
//! cached queries (`.cache().lock(true)`) on every backend.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, LazyLock};
use std::time::Duration;

use cacheops::{Cacheops, SimpleCache};

use crate::ctx::{handle, unique, StoreKind};

/// A Redis handle under a prefix of this test binary's own.
static HANDLE: LazyLock<Cacheops> =
    LazyLock::new(|| handle(StoreKind::Redis, &unique("cacheops_cached_fn")));
static CACHE: LazyLock<SimpleCache> = LazyLock::new(|| HANDLE.simple());

static SQUARES: AtomicUsize = AtomicUsize::new(0);

#[cacheops::cached(timeout = 60, cache = CACHE)]
fn square(n: i64, label: &str) -> cacheops::Result<(i64, String)> {
    SQUARES.fetch_add(1, Ordering::SeqCst);
    Ok((n * n, label.to_uppercase()))
}

#[test]
fn cached_fn_hits_misses_key_and_invalidate() {
    let keys = [square::key(7, "x").unwrap(), square::key(8, "x").unwrap()];
    let _ = (CACHE.delete(&keys[0]), CACHE.delete(&keys[1]));
    let before = SQUARES.load(Ordering::SeqCst);
    assert_eq!(square(7, "x").unwrap(), (49, "X".into()));
    assert_eq!(square(7, "x").unwrap(), (49, "X".into()));
    assert_eq!(square(8, "x").unwrap(), (64, "X".into()));
    assert_eq!(
        SQUARES.load(Ordering::SeqCst) - before,
        2,
        "one run per arguments"
    );
    assert_eq!(square::key(7, "x").unwrap(), keys[0], "keys are stable");
    assert_ne!(keys[0], keys[1]);
    assert!(
        keys[0].starts_with("cacheops_tests::simple::square:"),
        "{}",
        keys[0]
    );
    assert_eq!(
        CACHE.get::<(i64, String)>(&keys[0]).unwrap(),
        (49, "X".into())
    );
    square::invalidate(7, "x").unwrap();
    assert!(CACHE.get::<(i64, String)>(&keys[0]).unwrap_err().is_miss());
    assert_eq!(square(7, "x").unwrap(), (49, "X".into()));
    assert_eq!(SQUARES.load(Ordering::SeqCst) - before, 3, "recomputed");
    square::invalidate(7, "x").unwrap();
    square::invalidate(8, "x").unwrap();
}

/// An application error type: the cache's errors convert into it.
#[derive(Debug, PartialEq)]
enum AppError {
    Cache(String),
    NotFound,
}

impl From<cacheops::Error> for AppError {
    fn from(e: cacheops::Error) -> Self {
        AppError::Cache(e.to_string())
    }
}

static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

#[cacheops::cached(timeout = Duration::from_millis(150), extra = ("v1", version), cache = CACHE)]
fn lookup(mut id: u32, version: u8) -> Result<String, AppError> {
    LOOKUPS.fetch_add(1, Ordering::SeqCst);
    id += 1;
    if id > 100 {
        return Err(AppError::NotFound);
    }
    Ok(format!("item {id}"))
}

#[test]
fn cached_fn_with_own_error_type_extra_and_duration_timeout() {
    assert_ne!(
        lookup::key(1, 1).unwrap(),
        lookup::key(1, 2).unwrap(),
        "extra uses version"
    );
    assert_eq!(lookup(100, 1), Err(AppError::NotFound));
    assert_eq!(lookup(100, 1), Err(AppError::NotFound));
    let errors = LOOKUPS.load(Ordering::SeqCst);
    assert_eq!(errors, 2, "errors are not cached");
    assert_eq!(lookup(1, 1).unwrap(), "item 2");
    assert_eq!(lookup(1, 1).unwrap(), "item 2");
    assert_eq!(LOOKUPS.load(Ordering::SeqCst), errors + 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lookup(1, 1).unwrap(), "item 2");
    assert_eq!(LOOKUPS.load(Ordering::SeqCst), errors + 2, "expired");
    lookup::invalidate(1, 1).unwrap();
}

static HOT: AtomicUsize = AtomicUsize::new(0);

#[cacheops::cached(lock, cache = CACHE)]
fn hot(n: u32) -> cacheops::Result<u32> {
    HOT.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    Ok(n + 1)
}

#[test]
fn cached_fn_stampede_computes_once() {
    hot::invalidate(41).unwrap();
    let barrier = Barrier::new(8);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                barrier.wait();
                assert_eq!(hot(41).unwrap(), 42);
            });
        }
    });
    assert_eq!(HOT.load(Ordering::SeqCst), 1);
    hot::invalidate(41).unwrap();
}

/// On the process-wide cache: only its key is used here, so that this test binary
/// never installs the global handle.
#[cacheops::cached(timeout = 5)]
pub fn on_global(word: String) -> cacheops::Result<usize> {
    Ok(word.len())
}

#[test]
fn cached_fn_on_the_global_cache_has_a_key() {
    let key = on_global::key("abc".into()).unwrap();
    assert!(key.starts_with("cacheops_tests::simple::on_global:"));
}

/// Stampede protection of queries, for one backend and store.
macro_rules! query_lock {
    ($name:ident, $blog:ident, $db:ty, $store:expr) => {
        mod $name {
            use super::*;
            use crate::ctx::*;
            use crate::fixtures::$blog::*;
            use cacheops::CachedQueryDsl;
            use std::sync::atomic::AtomicBool;
            use std::sync::{Arc, Mutex};

            /// `n` connections of the context's database, counted by `queries`.
            fn connections(ctx: &Ctx<$db>, n: usize) -> Vec<<$db as TestDb>::Conn> {
                (0..n)
                    .map(|_| {
                        let mut conn = ctx.db.connect();
                        ctx.queries.instrument(&mut conn);
                        conn
                    })
                    .collect()
            }

            /// Every connection loads category 1 with `.lock(true)` at once.
            fn stampede(ctx: &Ctx<$db>, conns: Vec<<$db as TestDb>::Conn>) -> Vec<Vec<Article>> {
                let barrier = Barrier::new(conns.len());
                std::thread::scope(|s| {
                    let handles: Vec<_> = conns
                        .into_iter()
                        .map(|mut conn| {
                            let (barrier, cache) = (&barrier, &ctx.cache);
                            s.spawn(move || {
                                barrier.wait();
                                in_category(1)
                                    .cache()
                                    .lock(true)
                                    .using(cache)
                                    .load(&mut conn)
                                    .unwrap()
                            })
                        })
                        .collect();
                    handles.into_iter().map(|h| h.join().unwrap()).collect()
                })
            }

            #[test]
            fn concurrent_misses_run_the_sql_once() {
                let mut ctx = Ctx::<$db>::new($store);
                seed(&mut ctx.conn, 2, 3);
                let conns = connections(&ctx, 6);
                // Widens the window between the SQL and the store.
                let slow = || std::thread::sleep(Duration::from_millis(200));
                ctx.cache.__set_fill_hook(Some(Arc::new(slow)));
                ctx.queries.take();
                let results = stampede(&ctx, conns);
                ctx.cache.__set_fill_hook(None);
                assert_eq!(ctx.queries.take(), 1, "the SQL ran more than once");
                assert!(results.iter().all(|r| r.len() == 3 && *r == results[0]));
            }

            #[test]
            fn a_refused_fill_is_not_served_to_waiters() {
                let mut ctx = Ctx::<$db>::new($store);
                seed(&mut ctx.conn, 2, 3);
                let conns = connections(&ctx, 5);
                let writer = Mutex::new(ctx.db.connect());
                let (cache, wrote) = (ctx.cache.clone(), AtomicBool::new(false));
                // The first fill sees an insert land while its SQL ran.
                let hook = move || {
                    if !wrote.swap(true, Ordering::SeqCst) {
                        let mut conn = writer.lock().unwrap();
                        let new = NewArticle::new(1, "during the stampede");
                        cache.insert::<Article, _, _>(&mut *conn, &new).unwrap();
                    }
                    std::thread::sleep(Duration::from_millis(100));
                };
                ctx.cache.__set_fill_hook(Some(Arc::new(hook)));
                ctx.queries.take();
                let results = stampede(&ctx, conns);
                ctx.cache.__set_fill_hook(None);
                let fresh = results.iter().filter(|r| r.len() == 4).count();
                assert_eq!(
                    fresh,
                    results.len() - 1,
                    "only the first filler read stale rows"
                );
                assert_eq!(ctx.queries.take(), 2, "the refused fill, then one more");
            }
        }
    };
}

query_lock!(pg_redis, pg, crate::ctx::PgDb, StoreKind::Redis);
query_lock!(pg_memory, pg, crate::ctx::PgDb, StoreKind::Memory);
query_lock!(sqlite_redis, sqlite, crate::ctx::SqliteDb, StoreKind::Redis);
