//! The async path beyond the shared scenarios: futures dropped at every await
//! (cancellation), stampede waits that do not block the runtime's thread, and
//! PostgreSQL's batch insert.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cacheops::store::{
    AsyncLockStore, AsyncQueryStore, AsyncSimpleStore, AsyncStore, CacheKey, Fence, MemoryStore,
    RowState, StoreFuture,
};
use cacheops::{AsyncCachedQueryDsl, Cacheops, Config, Ops, Profile};
use diesel_async::RunQueryDsl;

use crate::ctx::*;
use crate::fixtures::pg::*;

/// The memory store, whose `n`-th async operation from when it is armed never
/// completes: the caller's future is then dropped there by a timeout.
struct Pausing {
    inner: MemoryStore,
    countdown: AtomicIsize,
}

impl Pausing {
    /// Pauses the `n`-th operation from now (0: the next one).
    fn arm(&self, n: isize) {
        self.countdown.store(n, Ordering::SeqCst);
    }

    fn disarm(&self) {
        self.countdown.store(-1, Ordering::SeqCst);
    }

    /// `op` (not called before it is let through: the memory store's does its
    /// work when called), or a future that never completes if this is the armed
    /// operation.
    fn gate<'a, T: 'a>(&self, op: impl FnOnce() -> StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        match self.countdown.fetch_sub(1, Ordering::SeqCst) {
            0 => Box::pin(std::future::pending()),
            _ => op(),
        }
    }
}

impl AsyncQueryStore for Pausing {
    fn lookup<'a>(
        &'a self,
        key: CacheKey,
        deps: &'a cacheops::deps::Deps,
    ) -> StoreFuture<'a, Option<Vec<u8>>> {
        self.gate(|| AsyncQueryStore::lookup(&self.inner, key, deps))
    }
    fn fence<'a>(
        &'a self,
        deps: &'a cacheops::deps::Deps,
        ttl: Duration,
    ) -> StoreFuture<'a, Fence> {
        self.gate(|| AsyncQueryStore::fence(&self.inner, deps, ttl))
    }
    fn store<'a>(
        &'a self,
        key: CacheKey,
        fence: &'a Fence,
        payload: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        self.gate(|| AsyncQueryStore::store(&self.inner, key, fence, payload, ttl))
    }
    fn invalidate_rows<'a>(
        &'a self,
        table: &'a str,
        rows: &'a [RowState<'a>],
    ) -> StoreFuture<'a, ()> {
        self.gate(|| AsyncQueryStore::invalidate_rows(&self.inner, table, rows))
    }
    fn invalidate_table<'a>(&'a self, table: &'a str) -> StoreFuture<'a, ()> {
        self.gate(|| AsyncQueryStore::invalidate_table(&self.inner, table))
    }
    fn invalidate_all(&self) -> StoreFuture<'_, ()> {
        self.gate(|| AsyncQueryStore::invalidate_all(&self.inner))
    }
    fn delete(&self, key: CacheKey) -> StoreFuture<'_, ()> {
        self.gate(|| AsyncQueryStore::delete(&self.inner, key))
    }
}

impl AsyncSimpleStore for Pausing {
    fn simple_get(&self, key: CacheKey) -> StoreFuture<'_, Option<Vec<u8>>> {
        self.gate(|| AsyncSimpleStore::simple_get(&self.inner, key))
    }
    fn simple_set<'a>(
        &'a self,
        key: CacheKey,
        payload: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, ()> {
        self.gate(|| AsyncSimpleStore::simple_set(&self.inner, key, payload, ttl))
    }
    fn simple_delete(&self, key: CacheKey) -> StoreFuture<'_, ()> {
        self.gate(|| AsyncSimpleStore::simple_delete(&self.inner, key))
    }
}

impl AsyncLockStore for Pausing {
    fn try_lock<'a>(
        &'a self,
        key: CacheKey,
        token: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        self.gate(|| AsyncLockStore::try_lock(&self.inner, key, token, ttl))
    }
    fn unlock<'a>(&'a self, key: CacheKey, token: &'a str) -> StoreFuture<'a, ()> {
        self.gate(|| AsyncLockStore::unlock(&self.inner, key, token))
    }
}

/// A PostgreSQL schema with the blog, an async connection whose statements are
/// counted, and a handle whose async store is [`Pausing`] (its blocking one the
/// same memory).
struct Paused {
    conn: AsyncConn,
    queries: QueryCounter,
    cache: Cacheops,
    store: Arc<Pausing>,
    db: PgDb,
}

impl Paused {
    async fn new() -> Paused {
        let db = PgDb::open();
        seed(&mut db.connect(), 3, 4);
        let mut conn = db.connect_async().await;
        let queries = QueryCounter::default();
        queries.instrument_async(&mut conn);
        let memory = MemoryStore::new(&unique("cacheops_paused"));
        let store = Arc::new(Pausing {
            inner: memory.clone(),
            countdown: AtomicIsize::new(-1),
        });
        let all = Profile::new(Ops::ALL, Duration::from_secs(600));
        let config = Config::builder().profile("*.*", all).build();
        let cache = Cacheops::with_stores(
            config,
            Box::new(memory),
            store.clone() as Arc<dyn AsyncStore>,
        );
        Paused {
            conn,
            queries,
            cache,
            store,
            db,
        }
    }

    /// Category `c` through the cache, with the statements it ran.
    async fn load_cat(&mut self, c: i32) -> (Vec<Article>, usize) {
        self.queries.take();
        let rows = in_category(c)
            .cache_async()
            .using(&self.cache)
            .load::<Article>(&mut self.conn)
            .await
            .unwrap();
        (rows, self.queries.take())
    }

    /// Category `c` as the database has it.
    async fn truth(&mut self, c: i32) -> Vec<Article> {
        in_category(c).load(&mut self.conn).await.unwrap()
    }
}

/// Runs `f` with `store`'s `n`-th operation paused: `true` if `f` was dropped
/// there, `false` if it finished first (it has no `n`-th operation).
async fn dropped_at<F: Future>(store: &Pausing, n: isize, f: F) -> bool {
    store.arm(n);
    let finished = tokio::time::timeout(Duration::from_millis(200), f)
        .await
        .is_ok();
    store.disarm();
    !finished
}

/// Drops a save that moves an article from category 1 to 2 at each of its
/// store operations in turn: however far it got, the next reads of both
/// categories are what the database holds (from the cache or not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_dropped_at_any_await_never_leaves_a_stale_read() {
    for n in 0.. {
        let mut p = Paused::new().await;
        p.load_cat(1).await;
        p.load_cat(2).await;
        let mut moved = p.truth(1).await[0].clone();
        moved.category_id = 2;
        let cache = p.cache.clone();
        let conn = &mut p.conn;
        let save = async { cache.save_async(conn, &moved).await.map(|_| ()) };
        let dropped = dropped_at(&p.store.clone(), n, save).await;
        for c in [1, 2] {
            let truth = p.truth(c).await;
            assert_eq!(p.load_cat(c).await.0, truth, "dropped at operation {n}");
        }
        if !dropped {
            assert!(n > 0, "the save invalidates through the store");
            break;
        }
        drop(p.db);
    }
}

/// Drops a miss at each store operation (lookup, fence, store) in turn, then
/// writes through a helper: the next read is fresh, and the cache serves again
/// once the write's invalidation went through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_dropped_at_any_await_stores_nothing_stale() {
    for n in 0.. {
        let mut p = Paused::new().await;
        let cache = p.cache.clone();
        let conn = &mut p.conn;
        let read = async {
            in_category(1)
                .cache_async()
                .using(&cache)
                .load::<Article>(conn)
                .await
        };
        let dropped = dropped_at(&p.store.clone(), n, read).await;
        let new = NewArticle::new(1, "after the dropped read");
        let cache = p.cache.clone();
        cache
            .insert_async::<Article, _, _>(&mut p.conn, &new)
            .await
            .unwrap();
        let truth = p.truth(1).await;
        assert_eq!(p.load_cat(1).await.0, truth, "dropped at operation {n}");
        assert_eq!(
            p.load_cat(1).await,
            (truth, 0),
            "served from the cache again"
        );
        if !dropped {
            break;
        }
    }
}

/// A stampede-locked miss whose holder is dropped releases its lock (in a task
/// of its own): the next caller computes at once instead of waiting out the
/// lock's five seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_lock_holder_releases_its_lock() {
    let mut p = Paused::new().await;
    let cache = p.cache.clone();
    let conn = &mut p.conn;
    // Operations: lookup, try_lock, the holder's probe, fence (paused).
    let read = async {
        in_category(1)
            .cache_async()
            .using(&cache)
            .lock(true)
            .load::<Article>(conn)
            .await
    };
    assert!(
        dropped_at(&p.store.clone(), 3, read).await,
        "dropped while holding the lock"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = std::time::Instant::now();
    let rows = in_category(1)
        .cache_async()
        .using(&p.cache)
        .lock(true)
        .load::<Article>(&mut p.conn)
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited for a lock nobody held: {:?}",
        started.elapsed()
    );
}

/// Many tasks on one thread miss the same query with stampede protection: one
/// runs it, the others wait for its value (on tokio timers, between polls).
#[tokio::test(flavor = "current_thread")]
async fn stampede_waiters_do_not_block_the_thread() {
    let db = PgDb::open();
    seed(&mut db.connect(), 3, 4);
    let cache = handle(StoreKind::Redis, &unique("cacheops_stampede"));
    let queries = QueryCounter::default();
    let mut conns = Vec::new();
    for _ in 0..8 {
        let mut conn = db.connect_async().await;
        queries.instrument_async(&mut conn);
        conns.push(conn);
    }
    queries.take();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move {
            in_category(2)
                .cache_async()
                .using(&cache)
                .lock(true)
                .load::<Article>(&mut conn)
                .await
                .unwrap()
                .len()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 4);
    }
    assert_eq!(queries.take(), 1, "one task ran the SQL, the others waited");
    cache.invalidate_all().unwrap();
}

/// A batch insert on PostgreSQL invalidates every new row (the scenario runs
/// blocking-only: diesel-async's SQLite has no batch insert).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_batch_insert_invalidates_every_new_row() {
    let mut ctx: AsyncCtx<PgDb> = AsyncCtx::seeded(StoreKind::Redis, |c| seed(c, 3, 4)).await;
    for c in [1, 2, 3] {
        load(&mut ctx, c).await;
    }
    let news = vec![NewArticle::new(1, "x"), NewArticle::new(3, "y")];
    let cache = ctx.cache.clone();
    let rows = cache
        .insert_async::<Article, _, _>(&mut ctx.conn, &news)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let mut counts = Vec::new();
    for c in [1, 2, 3] {
        counts.push(load(&mut ctx, c).await);
    }
    assert_eq!(counts, vec![1, 0, 1]);
}

/// Statements a cached read of category `c` ran.
async fn load(ctx: &mut AsyncCtx<PgDb>, c: i32) -> usize {
    ctx.counted(async |conn, h| {
        in_category(c)
            .cache_async()
            .using(h)
            .load::<Article>(conn)
            .await
            .unwrap()
    })
    .await
    .1
}

/// The futures of the async API are `Send` (what axum and tokio::spawn need).
#[allow(dead_code)]
fn futures_are_send(cache: &Cacheops, conn: &mut AsyncConn, article: &Article) {
    fn send<T: Send>(_: T) {}
    send(
        in_category(1)
            .cache_async()
            .using(cache)
            .load::<Article>(conn),
    );
    send(cache.save_async(conn, article));
    let _: Option<Pin<Box<dyn Future<Output = ()>>>> = None;
}

/// The race fence on the async path: a write that commits (and invalidates)
/// while a miss's SQL runs makes the store refuse that fill, so the reader's
/// old result is served once and never cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_fill_is_refused_when_a_write_lands_during_the_sql() {
    let mut ctx: AsyncCtx<PgDb> = AsyncCtx::seeded(StoreKind::Redis, |c| seed(c, 3, 4)).await;
    let (sql_done, wait_sql) = std::sync::mpsc::channel::<()>();
    let (write_done, wait_write) = std::sync::mpsc::channel::<()>();
    let wait_write = std::sync::Mutex::new(wait_write);
    let fired = std::sync::atomic::AtomicBool::new(false);
    // Runs between the reader's SQL and its store; it holds that worker thread
    // until the write is done (the test runs on the other one).
    ctx.cache.__set_fill_hook(Some(Arc::new(move || {
        if !fired.swap(true, Ordering::SeqCst) {
            sql_done.send(()).unwrap();
            wait_write.lock().unwrap().recv().unwrap();
        }
    })));
    let mut reader_conn = ctx.db.connect_async().await;
    let reader_cache = ctx.cache.clone();
    let reader = tokio::spawn(async move {
        in_category(1)
            .cache_async()
            .using(&reader_cache)
            .load::<Article>(&mut reader_conn)
            .await
            .unwrap()
    });
    tokio::task::spawn_blocking(move || wait_sql.recv())
        .await
        .unwrap()
        .unwrap();
    let cache = ctx.cache.clone();
    let new = NewArticle::new(1, "during the read");
    let new = cache
        .insert_async::<Article, _, _>(&mut ctx.conn, &new)
        .await
        .unwrap()
        .remove(0);
    write_done.send(()).unwrap();
    let stale = reader.await.unwrap();
    ctx.cache.__set_fill_hook(None);
    assert!(
        !stale.contains(&new),
        "the reader's SQL ran before the write"
    );
    assert_eq!(ctx.cache.stats().refused_fills, 1);
    let (fresh, n) = ctx
        .counted(async |conn, h| {
            in_category(1)
                .cache_async()
                .using(h)
                .load::<Article>(conn)
                .await
                .unwrap()
        })
        .await;
    assert_eq!(n, 1, "the stale result was not stored");
    assert!(fresh.contains(&new));
}
