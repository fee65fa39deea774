//! `cacheops::pool`: a `Lazy` checkout of a `CachedPool` serves a hit without
//! a database connection (proven with the pool's only connection held
//! elsewhere), checks one out on a miss or for a write, and never keys a read
//! by what another connection of the pool reads.

use std::time::Duration;

use cacheops::connection::AsyncCachedConnection;
use cacheops::pool::CachedPool;
use cacheops::{AsyncCachedQueryDsl, Cacheops};
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};

use crate::ctx::*;
use crate::fixtures::pg::*;

type Wrapped = AsyncCachedConnection<AsyncConn>;

/// Long enough for a read that needs no connection; a read waiting for the
/// pool's only connection, held elsewhere, outlasts it.
const PATIENCE: Duration = Duration::from_millis(500);

/// A pool of one wrapped connection on `schema`, its statements counted.
fn pool_on(schema: &str, cache: &Cacheops, queries: &QueryCounter) -> CachedPool<Wrapped> {
    let manager = wrapped_manager(schema, cache, Some(queries));
    CachedPool::new(Pool::builder(manager).max_size(1).build().unwrap())
}

async fn category(
    cache: &Cacheops,
    lazy: &mut cacheops::pool::Lazy<Wrapped>,
    c: i32,
) -> cacheops::Result<Vec<Article>> {
    in_category(c).cache_async().using(cache).load(lazy).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_holds_no_connection_and_a_miss_waits_for_one() {
    let db = PgDb::open();
    seed(&mut db.connect(), 3, 4);
    let cache = handle(StoreKind::Redis, &unique("cacheops_lazy_pool"));
    let queries = QueryCounter::default();
    let pool = pool_on(&db.schema, &cache, &queries);
    let mut lazy = pool.lazy();
    assert_eq!(category(&cache, &mut lazy, 1).await.unwrap().len(), 4);
    assert!(lazy.is_checked_out(), "the miss took a connection");
    drop(lazy);

    // The pool's only connection is busy elsewhere: a hit is served anyway.
    let held = pool.get().await.unwrap();
    queries.take();
    let mut lazy = pool.lazy();
    let hit = tokio::time::timeout(PATIENCE, category(&cache, &mut lazy, 1)).await;
    assert_eq!(
        hit.expect("a hit waits for no connection").unwrap().len(),
        4
    );
    assert!(!lazy.is_checked_out());
    assert_eq!(queries.take(), 0, "the hit ran no SQL");
    let miss = tokio::time::timeout(PATIENCE, category(&cache, &mut lazy, 2)).await;
    assert!(miss.is_err(), "a miss needs the connection held elsewhere");
    drop(held);
    assert_eq!(category(&cache, &mut lazy, 2).await.unwrap().len(), 4);

    // A write through the lazy checkout's connection invalidates.
    diesel::insert_into(articles::table)
        .values(&NewArticle::new(1, "lazy"))
        .execute(lazy.connection().await.unwrap())
        .await
        .unwrap();
    drop(lazy);
    let mut lazy = pool.lazy();
    assert_eq!(category(&cache, &mut lazy, 1).await.unwrap().len(), 5);
    let _ = cache.invalidate_all();
}

/// Two tenants' schemas, A (4 articles a category) and B (2), and a pool of
/// one connection on A whose reads of category 1 are cached.
struct Tenants {
    a: PgDb,
    b: PgDb,
    cache: Cacheops,
    pool: CachedPool<Wrapped>,
}

impl Tenants {
    async fn new(tag: &str) -> Tenants {
        let (a, b) = (PgDb::open(), PgDb::open());
        seed(&mut a.connect(), 3, 4);
        seed(&mut b.connect(), 3, 2);
        let cache = handle(StoreKind::Redis, &unique(tag));
        let pool = pool_on(&a.schema, &cache, &QueryCounter::default());
        let cached = category(&cache, &mut pool.lazy(), 1).await.unwrap();
        assert_eq!(cached.len(), 4);
        Tenants { a, b, cache, pool }
    }
}

/// A pooled connection left reading another schema (a `SET search_path` on
/// it) must not have its rows stored under the key of what the pool's
/// connections read, nor be passed over by a read that holds no connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reading_another_schema_is_never_keyed_as_the_pools() {
    let Tenants { a, b, cache, pool } = Tenants::new("cacheops_lazy_mixed").await;

    // Changed behind the CachedPool's back: it cannot see this until the
    // connection is checked out through it again.
    let mut direct = pool.pool().get().await.unwrap();
    direct
        .batch_execute(&format!("SET search_path TO {}", b.schema))
        .await
        .unwrap();
    drop(direct);
    // A miss checks it out: B's rows, and not stored as A's.
    let mut lazy = pool.lazy();
    assert_eq!(category(&cache, &mut lazy, 2).await.unwrap().len(), 2);
    drop(lazy);
    let mut on_a = AsyncCachedConnection::new(a.connect_async().await, cache.clone()).await;
    let from_a: Vec<Article> = in_category(2)
        .cache_async()
        .using(&cache)
        .load(&mut on_a)
        .await
        .unwrap();
    assert_eq!(from_a.len(), 4, "B's rows were not stored under A's key");

    // The pool is mixed now: a read takes a connection first, and reads what
    // it reads (B), even where A's entry is cached.
    let mut lazy = pool.lazy();
    assert_eq!(category(&cache, &mut lazy, 1).await.unwrap().len(), 2);
    assert!(lazy.is_checked_out());
    let _ = cache.invalidate_all();
}

/// The same seen through the `CachedPool`: a connection given back reading
/// another schema makes every later read take a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_given_back_reading_another_schema_mixes_the_pool() {
    let Tenants {
        a: _a,
        b,
        cache,
        pool,
    } = Tenants::new("cacheops_lazy_given_back").await;
    let mut conn = pool.get().await.unwrap();
    let set = format!("SET search_path TO {}", b.schema);
    conn.batch_execute(&set).await.unwrap();
    let seen: Vec<Article> = in_category(3).load(&mut *conn).await.unwrap();
    assert_eq!(seen.len(), 2);
    drop(conn);
    let mut lazy = pool.lazy();
    assert_eq!(category(&cache, &mut lazy, 1).await.unwrap().len(), 2);
    assert!(
        lazy.is_checked_out(),
        "a mixed pool reads with a connection"
    );
    let _ = cache.invalidate_all();
}

/// Plain connections (no identity): SQLite through diesel-async's wrapper, on
/// the in-process store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_plain_sqlite_connections_serves_hits_without_one() {
    use crate::fixtures::sqlite;
    use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
    type Plain = SyncConnectionWrapper<diesel::SqliteConnection>;
    let db = SqliteDb::open();
    sqlite::seed(&mut db.connect(), 2, 3);
    let cache = handle(StoreKind::Memory, &unique("cacheops_lazy_sqlite"));
    let manager = AsyncDieselConnectionManager::<Plain>::new(db.path.clone());
    let pool = CachedPool::new(Pool::builder(manager).max_size(1).build().unwrap());
    let read = async |lazy: &mut cacheops::pool::Lazy<Plain>| {
        sqlite::in_category(1)
            .cache_async()
            .using(&cache)
            .load::<sqlite::Article>(lazy)
            .await
    };
    assert_eq!(read(&mut pool.lazy()).await.unwrap().len(), 3);
    let _held = pool.get().await.unwrap();
    let mut lazy = pool.lazy();
    let hit = tokio::time::timeout(PATIENCE, read(&mut lazy)).await;
    assert_eq!(hit.expect("no connection needed").unwrap().len(), 3);
    assert!(!lazy.is_checked_out());
}
