//! The bench's async section (feature `async`): cached reads through
//! `.cache_async()` on diesel-async's `AsyncPgConnection`, served by the handle's
//! async store, next to plain async GETs and MGETs of the same payload on a
//! redis-rs tokio `MultiplexedConnection`, on a multi-thread runtime of two
//! workers (few threads, many tasks: how an async server reads).
//!
//! Figures: `async_hit_get_pk`, `async_redis_get_rtt` and `async_redis_mget_rtt`
//! (µs, taking turns in one loop as the sync `hit_get_pk` and its round trips do),
//! and reads/s of 64 and 256 tasks doing cached reads, next to as many doing
//! plain GETs and as many doing plain MGETs of a value and two stamps (what a
//! hit sends). Cached reads three ways: through a `cacheops::pool::Lazy`
//! checkout (a hit takes no connection), holding a connection checked out for
//! the read (as `pool.get()` first does), and through a handle with a local
//! tier (with `--local`). The tasks share a `CachedPool` of `ASYNC_POOL`
//! connections (default 16).

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cacheops::pool::{CachedPool, Lazy};
use cacheops::{AsyncCachedQueryDsl, Cacheops};
use diesel::connection::InstrumentationEvent;
use diesel::prelude::*;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use redis::aio::MultiplexedConnection;

use super::bench_report::AsyncReads as Reads;
use super::{articles, Article, RTT_KEYS};

/// How many tasks read at once in the reads/s figures.
const TASKS: [usize; 2] = [64, 256];

/// Statements the pool's connections sent: a hit sends none.
static QUERIES: AtomicUsize = AtomicUsize::new(0);

/// What the async section measured.
pub(crate) struct Figures {
    /// `(key, (p50, p99))` in µs.
    pub(crate) latency: Vec<(&'static str, (f64, f64))>,
    /// Reads/s per task count.
    pub(crate) reads: Vec<Reads>,
}

/// Runs the section on a runtime of its own; `hot` are the ids read, `reps` the
/// latency loop's rounds, `local` a handle with a local tier if one is measured.
/// `RTT_KEYS` must hold the GET's and MGET's values.
pub(crate) fn run(
    cache: &Cacheops,
    local: Option<&Cacheops>,
    hot: &[i32],
    reps: usize,
) -> Result<Figures, Box<dyn Error>> {
    // Two workers on this 2-core machine; the handle's multiplexed connection
    // and its driver task live on this runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (cache, local, hot) = (cache.clone(), local.cloned(), Arc::<[i32]>::from(hot));
    // Spawned, so that the loops run on the workers as an application's tasks do.
    let figures = runtime.block_on(runtime.spawn(async move {
        let pool = pool().await;
        let redis = redis::Client::open(super::redis_url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let latency = latency(&cache, &pool, &hot, redis.clone(), reps).await;
        let reads = reads_per_second(Arc::new(Shared {
            cache,
            local,
            pool,
            hot,
            redis,
        }))
        .await;
        Figures { latency, reads }
    }))?;
    Ok(figures)
}

/// A pool of `AsyncPgConnection`s on the bench's schema, every connection made.
/// A hit never reaches the database; one that holds a connection until it is
/// served is bounded by the pool's size, one through a `Lazy` is not.
async fn pool() -> CachedPool<AsyncPgConnection> {
    let mut config = ManagerConfig::default();
    // The default (`Verified`) sends `SELECT 1` at every checkout.
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(connect);
    let manager = AsyncDieselConnectionManager::new_with_config(super::database_url(), config);
    let size = super::env_num("ASYNC_POOL", 16);
    let pool = CachedPool::new(Pool::builder(manager).max_size(size).build().unwrap());
    // Connected now rather than inside the first timed second.
    let mut held = Vec::new();
    for _ in 0..size {
        held.push(pool.get().await.unwrap());
    }
    pool
}

/// One pooled connection: on the bench's schema, its statements counted.
fn connect(
    url: &str,
) -> Pin<Box<dyn Future<Output = ConnectionResult<AsyncPgConnection>> + Send + '_>> {
    Box::pin(async move {
        let mut conn = AsyncPgConnection::establish(url).await?;
        conn.batch_execute("SET search_path TO cacheops_bench")
            .await
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
        conn.set_instrumentation(|event: InstrumentationEvent<'_>| {
            if matches!(event, InstrumentationEvent::StartQuery { .. }) {
                QUERIES.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(conn)
    })
}

/// A cached read by primary key, served from the cache once filled; on the
/// connection `lazy` holds, if it holds one.
async fn hit(cache: &Cacheops, lazy: &mut Lazy<AsyncPgConnection>, id: i32) {
    let q = articles::table.find(id);
    let f = q.cache_async().using(cache).get_result::<Article>(lazy);
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| eprintln!("FUTSIZE {}", std::mem::size_of_val(&f)));
    f.await.unwrap();
}

async fn plain_get(redis: &mut MultiplexedConnection) {
    let _: Vec<u8> = redis::cmd("GET")
        .arg(RTT_KEYS[0])
        .query_async(redis)
        .await
        .unwrap();
}

/// What a hit sends: an MGET of a value and two stamps.
async fn plain_mget(redis: &mut MultiplexedConnection) {
    let _: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
        .arg(&RTT_KEYS[..])
        .query_async(redis)
        .await
        .unwrap();
}

/// The hit, a plain GET of its payload's size and a plain MGET of that value and
/// two stamps, taking turns in one loop as the sync `gets` does.
async fn latency(
    cache: &Cacheops,
    pool: &CachedPool<AsyncPgConnection>,
    hot: &[i32],
    mut redis: MultiplexedConnection,
    reps: usize,
) -> Vec<(&'static str, (f64, f64))> {
    // Holding a connection, as the sync `hit_get_pk` does.
    let mut conn = pool.lazy();
    conn.connection().await.unwrap();
    for id in hot {
        hit(cache, &mut conn, *id).await;
    }
    QUERIES.store(0, Ordering::Relaxed);
    // `timed_each`'s loop, written out: with an async closure the spawned task
    // would not be provably `Send` (see `reads`).
    let mut out: [Vec<f64>; 3] = std::array::from_fn(|_| Vec::with_capacity(reps));
    for i in 0..reps {
        for k in (0..3).map(|j| (i + j) % 3) {
            let start = Instant::now();
            match k {
                0 => hit(cache, &mut conn, hot[i % hot.len()]).await,
                1 => plain_get(&mut redis).await,
                _ => plain_mget(&mut redis).await,
            }
            out[k].push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    let [hits, get, mget] = out.map(super::percentiles);
    assert_eq!(QUERIES.load(Ordering::Relaxed), 0, "async hits ran SQL");
    vec![
        ("async_hit_get_pk", hits),
        ("async_redis_get_rtt", get),
        ("async_redis_mget_rtt", mget),
    ]
}

/// What the reads/s tasks share.
struct Shared {
    cache: Cacheops,
    /// A handle with a local tier, when `--local` measures it.
    local: Option<Cacheops>,
    pool: CachedPool<AsyncPgConnection>,
    hot: Arc<[i32]>,
    /// Cloned by each task, as the handle's async store shares one.
    redis: MultiplexedConnection,
}

/// What a reads/s task does in a loop.
#[derive(Clone, Copy)]
enum Read {
    /// A cached read of a `hot` id through a `Lazy` checkout of the pool (as a
    /// request handler would): a hit takes no connection.
    Lazy,
    /// The same holding a connection checked out for it (as `pool.get()`
    /// before the read does).
    Checkout,
    /// A `Lazy` read through the handle with a local tier.
    Local,
    /// A plain GET of the hit payload's size.
    Get,
    /// A plain MGET of a value and two stamps: what a hit sends.
    Mget,
}

/// Reads/s of `TASKS` tasks for each `Read`, three alternating seconds each,
/// each side's median (as `--throughput`).
async fn reads_per_second(shared: Arc<Shared>) -> Vec<Reads> {
    QUERIES.store(0, Ordering::Relaxed);
    let mut kinds = vec![Read::Lazy, Read::Checkout, Read::Get, Read::Mget];
    if shared.local.is_some() {
        kinds.push(Read::Local);
    }
    let mut out = Vec::new();
    for tasks in TASKS {
        let mut seconds = vec![Vec::new(); kinds.len()];
        for _ in 0..3 {
            for (k, read) in kinds.iter().enumerate() {
                seconds[k].push(per_second(tasks, *read, &shared).await);
            }
        }
        let median: Vec<f64> = seconds.into_iter().map(super::median).collect();
        out.push(Reads {
            tasks,
            lazy: median[0],
            checkout: median[1],
            gets: median[2],
            mgets: median[3],
            local: median.get(4).copied(),
        });
    }
    assert_eq!(QUERIES.load(Ordering::Relaxed), 0, "async hits ran SQL");
    out
}

/// Reads per second of `tasks` tasks doing `read`, for one second.
async fn per_second(tasks: usize, read: Read, shared: &Arc<Shared>) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let running: Vec<_> = (0..tasks)
        .map(|task| tokio::spawn(reads(read, task, shared.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut done = 0;
    for task in running {
        done += task.await.unwrap();
    }
    done as f64
}

/// One task's `read`s until `stop` is set; how many it did. A loop of its own
/// rather than an async closure: the compiler cannot yet prove such a closure's
/// future `Send`, as a spawned task must be.
async fn reads(read: Read, task: usize, shared: Arc<Shared>, stop: Arc<AtomicBool>) -> usize {
    let mut redis = shared.redis.clone();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = shared.hot[(task + i) % shared.hot.len()];
        match read {
            Read::Lazy => hit(&shared.cache, &mut shared.pool.lazy(), id).await,
            Read::Checkout => {
                let mut lazy = shared.pool.lazy();
                lazy.connection().await.unwrap();
                hit(&shared.cache, &mut lazy, id).await;
            }
            Read::Local => {
                let local = shared.local.as_ref().unwrap_or(&shared.cache);
                hit(local, &mut shared.pool.lazy(), id).await;
            }
            Read::Get => plain_get(&mut redis).await,
            Read::Mget => plain_mget(&mut redis).await,
        }
        // A local-tier hit completes without waiting: without this a task
        // would keep its worker, and the timer that ends the second never run.
        tokio::task::consume_budget().await;
        i += 1;
    }
    i
}
