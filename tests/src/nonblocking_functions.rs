//! Function caching from async code: `cached_as_async` and `#[cached_as]` on an
//! `async fn`, the simple cache's `*_async` calls and `#[cached]` on an `async
//! fn`, on PostgreSQL and SQLite through diesel-async, for Redis and memory.
//!
//! A hit is proven by counting the runs of the inner computation and the
//! statements the test's connection ran; a stampede lock by counting runs among
//! concurrent tasks, and by a ticker task that must keep running while they wait
//! (a waiter that slept its thread would stall it).

/// Runs among concurrent tasks: `n` tasks start `f` at once; their results.
#[cfg(test)]
pub(crate) async fn all_at_once<T, F>(n: usize, f: impl Fn() -> F) -> Vec<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(f())).collect();
    let mut out = Vec::with_capacity(n);
    for task in tasks {
        out.push(task.await.expect("the task panicked"));
    }
    out
}

/// A counter's value (a function of its own: `diesel_async::RunQueryDsl`, in
/// scope in the scenarios, has a `load` for every type).
#[cfg(test)]
pub(crate) fn count(counter: &std::sync::atomic::AtomicUsize) -> usize {
    counter.load(std::sync::atomic::Ordering::SeqCst)
}

/// A task that ticks every millisecond until `stop`, then returns the longest
/// gap between two ticks: how long the runtime's threads were kept from it.
#[cfg(test)]
pub(crate) fn ticker(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<std::time::Duration> {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    tokio::spawn(async move {
        let (mut last, mut worst) = (Instant::now(), Duration::ZERO);
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let now = Instant::now();
            worst = worst.max(now - last);
            last = now;
        }
        worst
    })
}

macro_rules! async_function_scenarios {
    ($name:ident, $blog:ident, $db:ty, $store:expr) => {
        mod $name {
            use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
            use std::sync::{Arc, LazyLock};
            use std::time::Duration;

            use cacheops::{cached_as, Cacheops, Options, Sample, SimpleCache};
            use diesel::prelude::*;
            // Shadows the prelude's: the connection is diesel-async's.
            use diesel_async::RunQueryDsl;

            use super::{all_at_once, count, ticker};
            use crate::ctx::*;
            use crate::fixtures::$blog::*;

            type B = Backend;

            async fn ctx() -> AsyncCtx<$db> {
                AsyncCtx::seeded($store, |c| seed(c, 3, 4)).await
            }

            fn titles_of(rows: Vec<Article>) -> Vec<String> {
                rows.into_iter().map(|a| a.title).collect()
            }

            /// Titles of category `cat` through `cached_as_async`, sampled as
            /// the category's query; each computation counted in `runs`. With
            /// the statements it ran.
            async fn titles(
                ctx: &mut AsyncCtx<$db>,
                runs: &AtomicUsize,
                cat: i32,
            ) -> (Vec<String>, usize) {
                ctx.counted(async |conn, cache| {
                    let sample = Sample::query::<B, _>(in_category(cat));
                    let compute = async {
                        runs.fetch_add(1, SeqCst);
                        let rows = in_category(cat).load(conn).await?;
                        Ok::<_, cacheops::Error>(titles_of(rows))
                    };
                    cache
                        .cached_as_async([sample], "titles", &cat, &Options::new(), compute)
                        .await
                        .unwrap()
                })
                .await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cached_as_async_serves_the_second_call_from_the_cache() {
                let mut ctx = ctx().await;
                let runs = AtomicUsize::new(0);
                let (a, n1) = titles(&mut ctx, &runs, 1).await;
                let (b, n2) = titles(&mut ctx, &runs, 1).await;
                assert_eq!((a.len(), a == b), (4, true));
                assert_eq!((count(&runs), n1, n2), (1, 1, 0));
                assert_eq!(ctx.cache.stats().hits, 1);
            }

            /// The async call has the blocking call's key: each serves what the
            /// other stored.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_blocking_and_the_async_call_share_their_entry() {
                let mut ctx = ctx().await;
                let runs = AtomicUsize::new(0);
                let cache = ctx.cache.clone();
                let blocking: Vec<String> = tokio::task::block_in_place(|| {
                    let sample = Sample::query::<B, _>(in_category(2));
                    cache.cached_as(&[sample], "titles", &2, &Options::new(), || {
                        runs.fetch_add(1, SeqCst);
                        Ok::<_, cacheops::Error>(vec!["from the blocking call".to_string()])
                    })
                })
                .unwrap();
                let (from_async, n) = titles(&mut ctx, &runs, 2).await;
                assert_eq!((from_async, n, count(&runs)), (blocking, 0, 1));
            }

            /// A write through a helper, async or blocking, refreshes exactly
            /// the values its row can affect.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_write_through_a_helper_refreshes_a_cached_as_value() {
                let mut ctx = ctx().await;
                let runs = AtomicUsize::new(0);
                titles(&mut ctx, &runs, 1).await;
                titles(&mut ctx, &runs, 2).await;
                let cache = ctx.cache.clone();
                let new = NewArticle::new(2, "async fresh");
                cache
                    .insert_async::<Article, _, _>(&mut ctx.conn, &new)
                    .await
                    .unwrap();
                assert_eq!(titles(&mut ctx, &runs, 1).await.1, 0, "category 1 stays cached");
                let (two, n) = titles(&mut ctx, &runs, 2).await;
                assert!(n == 1 && two.contains(&"async fresh".to_string()), "{two:?}");
                let mut blocking = ctx.db.connect();
                tokio::task::block_in_place(|| {
                    let new = NewArticle::new(1, "blocking fresh");
                    cache.insert::<Article, _, _>(&mut blocking, &new).unwrap();
                });
                assert_eq!(titles(&mut ctx, &runs, 2).await.1, 0, "category 2 stays cached");
                let (one, n) = titles(&mut ctx, &runs, 1).await;
                assert!(n == 1 && one.contains(&"blocking fresh".to_string()), "{one:?}");
                assert_eq!(count(&runs), 4);
            }

            /// The title of one article, cached as that object.
            async fn headline(
                ctx: &mut AsyncCtx<$db>,
                runs: &AtomicUsize,
                article: &Article,
            ) -> String {
                let id = article.id;
                let conn = &mut ctx.conn;
                let compute = async {
                    runs.fetch_add(1, SeqCst);
                    let row: Article = articles::table.find(id).first(conn).await?;
                    Ok::<_, cacheops::Error>(row.title)
                };
                let sample = Sample::object::<B, _>(article);
                ctx.cache
                    .cached_as_async([sample], "headline", &id, &Options::new(), compute)
                    .await
                    .unwrap()
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_object_sample_is_refreshed_by_saving_its_row_only() {
                let mut ctx = ctx().await;
                let rows: Vec<Article> = in_category(1).load(&mut ctx.conn).await.unwrap();
                let (mine, other) = (rows[0].clone(), rows[1].clone());
                let runs = AtomicUsize::new(0);
                headline(&mut ctx, &runs, &mine).await;
                let cache = ctx.cache.clone();
                let changed = Article {
                    title: "other".into(),
                    ..other
                };
                cache.save_async(&mut ctx.conn, &changed).await.unwrap();
                headline(&mut ctx, &runs, &mine).await;
                assert_eq!(count(&runs), 1, "another row's change leaves it cached");
                let renamed = Article {
                    title: "renamed".into(),
                    ..mine.clone()
                };
                cache.save_async(&mut ctx.conn, &renamed).await.unwrap();
                assert_eq!(headline(&mut ctx, &runs, &mine).await, "renamed");
                assert_eq!(count(&runs), 2);
            }

            // One line: rustfmt re-indents a wrapped attribute inside `macro_rules!`.
            #[cached_as(in_category(cat), model(Category), extra = limit, backend = B, handle = h, skip(runs))]
            async fn first_titles(
                h: &Cacheops,
                conn: &mut AsyncConn,
                runs: &AtomicUsize,
                cat: i32,
                limit: i64,
            ) -> cacheops::Result<Vec<String>> {
                runs.fetch_add(1, SeqCst);
                let rows: Vec<Article> = in_category(cat).limit(limit).load(conn).await?;
                Ok(titles_of(rows))
            }

            /// `first_titles(1, 2)` with the statements it ran.
            async fn first_two(ctx: &mut AsyncCtx<$db>, runs: &AtomicUsize) -> usize {
                let (titles, n) = ctx
                    .counted(async |conn, h| first_titles(h, conn, runs, 1, 2).await.unwrap())
                    .await;
                assert_eq!(titles.len(), 2);
                n
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_decorated_async_fn_caches_and_has_key_and_invalidate() {
                let mut ctx = ctx().await;
                let runs = AtomicUsize::new(0);
                assert_eq!((first_two(&mut ctx, &runs).await, first_two(&mut ctx, &runs).await), (1, 0));
                assert_eq!(count(&runs), 1);
                let key = first_titles::key(1, 2).unwrap();
                assert_eq!(key, first_titles::key(1, 2).unwrap());
                assert_ne!(key, first_titles::key(1, 3).unwrap());
                assert_ne!(key, first_titles::key(2, 2).unwrap());
                let cache = ctx.cache.clone();
                first_titles::invalidate_using(&cache, 1, 2).await.unwrap();
                assert_eq!(first_two(&mut ctx, &runs).await, 1, "invalidate_using dropped it");
                let new = categories::name.eq("c4");
                cache.insert_async::<Category, _, _>(&mut ctx.conn, new).await.unwrap();
                assert_eq!(first_two(&mut ctx, &runs).await, 1, "the model sample refreshed it");
                let mut blocking = ctx.db.connect();
                tokio::task::block_in_place(|| {
                    let new = NewArticle::new(1, "blocking");
                    cache.insert::<Article, _, _>(&mut blocking, &new).unwrap();
                });
                assert_eq!(first_two(&mut ctx, &runs).await, 1, "the query sample refreshed it");
                assert_eq!((first_two(&mut ctx, &runs).await, count(&runs)), (0, 4));
            }

            #[cached_as(table("articles"), handle = h, lock = true, skip(runs))]
            async fn slow_count(h: &Cacheops, runs: &AtomicUsize, cat: i32) -> cacheops::Result<usize> {
                runs.fetch_add(1, SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(cat as usize * 10)
            }

            /// Tasks on two threads miss a locked `#[cached_as]` function at
            /// once: one computes. (`tokio::spawn` also proves its future `Send`.)
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_locked_decorated_async_fn_computes_once_among_tasks() {
                let cache = handle($store, &unique("cacheops_async_fn"));
                let runs = Arc::new(AtomicUsize::new(0));
                let got = all_at_once(8, || {
                    let (cache, runs) = (cache.clone(), runs.clone());
                    async move { slow_count(&cache, &runs, 3).await.unwrap() }
                })
                .await;
                assert_eq!((got, count(&runs)), (vec![30; 8], 1));
                cache.invalidate_all().unwrap();
            }

            /// Many tasks miss one locked `cached_as_async`: one computes, and
            /// the others wait on timers: a ticker on the same runtime is never
            /// kept waiting 250 ms (under 10 ms here, 64 waiters; waiters that slept their
            /// threads, 2 to 50 ms a poll, kept it 270 to 560 ms).
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lock_waiters_of_cached_as_async_do_not_block_the_runtime() {
                let cache = handle($store, &unique("cacheops_async_lock"));
                let (runs, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
                let ticks = ticker(stop.clone());
                let got = all_at_once(64, || {
                    let (cache, runs) = (cache.clone(), runs.clone());
                    async move {
                        let compute = async {
                            runs.fetch_add(1, SeqCst);
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            Ok::<_, cacheops::Error>(7)
                        };
                        let options = Options::new().lock(true);
                        let samples = [Sample::table("articles")];
                        cache.cached_as_async(samples, "slow", &(), &options, compute).await.unwrap()
                    }
                })
                .await;
                stop.store(true, SeqCst);
                let worst = ticks.await.unwrap();
                assert_eq!((got, count(&runs)), (vec![7; 64], 1));
                assert!(worst < Duration::from_millis(250), "the ticker was kept waiting {worst:?}");
                cache.invalidate_all().unwrap();
            }

            /// A computation's own error is returned as it is and never cached.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cached_as_async_keeps_the_computation_s_error() {
                let cache = handle($store, &unique("cacheops_async_err"));
                let runs = AtomicUsize::new(0);
                for _ in 0..2 {
                    let failed = cache
                        .cached_as_async([Sample::table("t")], "fails", &(), &Options::new(), async {
                            runs.fetch_add(1, SeqCst);
                            Err::<i32, _>(AppError::Mine)
                        })
                        .await;
                    assert_eq!(failed, Err(AppError::Mine));
                }
                assert_eq!(count(&runs), 2, "an error is not cached");
                cache.invalidate_all().unwrap();
            }

            #[derive(Debug, PartialEq)]
            enum AppError {
                Mine,
                Cache(cacheops::ErrorKind),
            }

            impl From<cacheops::Error> for AppError {
                fn from(e: cacheops::Error) -> Self {
                    AppError::Cache(e.kind())
                }
            }

            /// The simple cache's async calls, and the blocking ones on the same
            /// entries (one store, two paths).
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn simple_get_set_delete_async() {
                let handle = handle($store, &unique("cacheops_simple_async"));
                let cache = handle.simple();
                let miss = cache.get_async::<u32>("answer").await.unwrap_err();
                assert!(miss.is_miss(), "{miss}");
                cache.set_async("answer", &42u32, None).await.unwrap();
                assert_eq!(cache.get_async::<u32>("answer").await.unwrap(), 42);
                let blocking = tokio::task::block_in_place(|| cache.get::<u32>("answer"));
                assert_eq!(blocking.unwrap(), 42, "the blocking call reads the same entry");
                tokio::task::block_in_place(|| cache.set("answer", &7u32, None)).unwrap();
                assert_eq!(cache.get_async::<u32>("answer").await.unwrap(), 7);
                cache.delete_async("answer").await.unwrap();
                assert!(cache.get_async::<u32>("answer").await.unwrap_err().is_miss());
                let stats = handle.stats();
                assert_eq!((stats.hits, stats.misses), (3, 2));
                let short = Some(Duration::from_millis(100));
                cache.set_async("short", "lived", short).await.unwrap();
                tokio::time::sleep(Duration::from_millis(250)).await;
                assert!(cache.get_async::<String>("short").await.unwrap_err().is_miss());
                handle.invalidate_all().unwrap();
            }

            /// A cache of each `#[cached]` test's own: a Redis handle's async
            /// connection runs on the runtime it connected on (one per test).
            static SQUARE_CACHE: LazyLock<SimpleCache> =
                LazyLock::new(|| handle($store, &unique("cacheops_fn_async")).simple());
            static SQUARES: AtomicUsize = AtomicUsize::new(0);

            #[cacheops::cached(timeout = 60, cache = SQUARE_CACHE)]
            async fn square(n: i64, label: &str) -> cacheops::Result<(i64, String)> {
                SQUARES.fetch_add(1, SeqCst);
                tokio::task::yield_now().await;
                Ok((n * n, label.to_uppercase()))
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_cached_async_fn_hits_misses_and_invalidates() {
                let key = square::key(7, "x").unwrap();
                assert!(key.contains("::square:"), "{key}");
                assert_eq!(square(7, "x").await.unwrap(), (49, "X".into()));
                assert_eq!(square(7, "x").await.unwrap(), (49, "X".into()));
                assert_eq!(square(8, "x").await.unwrap(), (64, "X".into()));
                assert_eq!(count(&SQUARES), 2, "one run per arguments");
                let cached = SQUARE_CACHE.get_async::<(i64, String)>(&key).await;
                assert_eq!(cached.unwrap(), (49, "X".into()));
                square::invalidate(7, "x").await.unwrap();
                assert!(SQUARE_CACHE.get_async::<(i64, String)>(&key).await.unwrap_err().is_miss());
                assert_eq!(square(7, "x").await.unwrap(), (49, "X".into()));
                assert_eq!(count(&SQUARES), 3, "recomputed");
                square::invalidate(7, "x").await.unwrap();
                square::invalidate(8, "x").await.unwrap();
            }

            static HOT_CACHE: LazyLock<SimpleCache> =
                LazyLock::new(|| handle($store, &unique("cacheops_fn_async")).simple());
            static HOT: AtomicUsize = AtomicUsize::new(0);

            #[cacheops::cached(lock, cache = HOT_CACHE)]
            async fn hot(n: u32) -> cacheops::Result<u32> {
                HOT.fetch_add(1, SeqCst);
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(n + 1)
            }

            /// Tasks miss a `#[cached(lock)]` async fn at once: one computes, the
            /// others wait on timers (the ticker keeps ticking).
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_locked_cached_async_fn_computes_once_without_blocking() {
                let stop = Arc::new(AtomicBool::new(false));
                let ticks = ticker(stop.clone());
                let got = all_at_once(64, || async { hot(41).await.unwrap() }).await;
                stop.store(true, SeqCst);
                let worst = ticks.await.unwrap();
                assert_eq!((got, count(&HOT)), (vec![42; 64], 1));
                assert!(worst < Duration::from_millis(250), "the ticker was kept waiting {worst:?}");
                hot::invalidate(41).await.unwrap();
            }

            static FAILING_CACHE: LazyLock<SimpleCache> =
                LazyLock::new(|| handle($store, &unique("cacheops_fn_async")).simple());
            static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

            #[cacheops::cached(cache = FAILING_CACHE, extra = "v1")]
            async fn lookup(id: u32) -> Result<String, AppError> {
                LOOKUPS.fetch_add(1, SeqCst);
                if id > 100 {
                    return Err(AppError::Mine);
                }
                Ok(format!("item {id}"))
            }

            /// The function's own error type: its errors are returned as they
            /// are and never cached, its values are.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_cached_async_fn_keeps_its_own_errors() {
                assert_eq!(lookup(101).await, Err(AppError::Mine));
                assert_eq!(lookup(101).await, Err(AppError::Mine));
                assert_eq!(count(&LOOKUPS), 2, "errors are not cached");
                assert_eq!(lookup(1).await.unwrap(), "item 1");
                assert_eq!(lookup(1).await.unwrap(), "item 1");
                assert_eq!(count(&LOOKUPS), 3);
                lookup::invalidate(1).await.unwrap();
            }
        }
    };
}

async_function_scenarios!(pg_redis, pg, crate::ctx::PgDb, crate::ctx::StoreKind::Redis);
async_function_scenarios!(
    pg_memory,
    pg,
    crate::ctx::PgDb,
    crate::ctx::StoreKind::Memory
);
async_function_scenarios!(
    sqlite_redis,
    sqlite,
    crate::ctx::SqliteDb,
    crate::ctx::StoreKind::Redis
);
async_function_scenarios!(
    sqlite_memory,
    sqlite,
    crate::ctx::SqliteDb,
    crate::ctx::StoreKind::Memory
);

/// What the async path cannot serve fails with a typed error, before running
/// anything: a file cache (blocking by nature), a handle whose store has no
/// async twin.
mod unsupported {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::LazyLock;

    use cacheops::store::MemoryStore;
    use cacheops::{CachedOptions, Cacheops, Config, ErrorKind, Options, Sample, SimpleCache};

    static DIR: LazyLock<std::path::PathBuf> =
        LazyLock::new(|| std::env::temp_dir().join(crate::ctx::unique("cacheops_async_file")));
    static FILES: LazyLock<SimpleCache> = LazyLock::new(|| SimpleCache::file(&*DIR).unwrap());
    static ON_FILE: AtomicUsize = AtomicUsize::new(0);

    #[cacheops::cached(cache = FILES)]
    async fn on_file(n: u32) -> cacheops::Result<u32> {
        ON_FILE.fetch_add(1, SeqCst);
        Ok(n)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_cache_refuses_async_calls_with_a_config_error() {
        let kind = |e: cacheops::Error| (e.kind(), e.hint().is_some());
        let expected = (ErrorKind::Config, true);
        assert_eq!(
            kind(FILES.get_async::<u32>("k").await.unwrap_err()),
            expected
        );
        assert_eq!(
            kind(FILES.set_async("k", &1, None).await.unwrap_err()),
            expected
        );
        assert_eq!(kind(FILES.delete_async("k").await.unwrap_err()), expected);
        let options = CachedOptions::new().lock(true);
        let cached = FILES.cached_async("k", &options, async { Ok::<u32, cacheops::Error>(1) });
        assert_eq!(kind(cached.await.unwrap_err()), expected);
        assert_eq!(kind(on_file(3).await.unwrap_err()), expected);
        assert_eq!(ON_FILE.load(SeqCst), 0, "nothing ran");
        assert_eq!(kind(on_file::invalidate(3).await.unwrap_err()), expected);
        // The blocking calls still work on it.
        FILES.set("k", &5u32, None).unwrap();
        assert_eq!(FILES.get::<u32>("k").unwrap(), 5);
        std::fs::remove_dir_all(&*DIR).ok();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handle_without_an_async_store_refuses_async_calls() {
        let config = Config::builder()
            .prefix(crate::ctx::unique("no_twin"))
            .build();
        let cache = Cacheops::with_store(config, Box::new(MemoryStore::new("no_twin")));
        let runs = AtomicUsize::new(0);
        let compute = async {
            runs.fetch_add(1, SeqCst);
            Ok::<u32, cacheops::Error>(1)
        };
        let got = cache
            .cached_as_async([Sample::table("t")], "s", &(), &Options::new(), compute)
            .await;
        assert_eq!(got.unwrap_err().kind(), ErrorKind::Config);
        assert_eq!(runs.load(SeqCst), 0, "nothing ran");
        let got = cache.simple().get_async::<u32>("k").await;
        assert_eq!(got.unwrap_err().kind(), ErrorKind::Config);
        let got = cache.invalidate_key_async(1).await;
        assert_eq!(got.unwrap_err().kind(), ErrorKind::Config);
    }
}
