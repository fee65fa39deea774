//! Per-test isolation: a database of its own, a Redis prefix of its own, and a
//! count of the queries the test's connection ran.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cacheops::{Cacheops, Config, Ops, Profile};
use diesel::connection::InstrumentationEvent;
use diesel::prelude::*;

/// A database a test owns: created on `open`, dropped on drop.
pub trait TestDb: Sized {
    type Conn: Connection;
    /// Its diesel-async connection.
    type AsyncConn: diesel_async::AsyncConnection;
    /// Creates the database (a PostgreSQL schema, or an SQLite file) with the
    /// blog tables.
    fn open() -> Self;
    /// A new connection to it.
    fn connect(&self) -> Self::Conn;
    /// A new diesel-async connection to it.
    fn connect_async(&self) -> impl std::future::Future<Output = Self::AsyncConn> + Send;
}

/// A fresh name for a schema, file or prefix.
pub fn unique(tag: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    let n = RandomState::new().hash_one(std::time::SystemTime::now());
    format!("{tag}_{}_{:x}", std::process::id(), n & 0xffff_ffff)
}

pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1/test".into())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A PostgreSQL schema of the test's own, reached through `search_path`.
pub struct PgDb {
    pub schema: String,
}

impl TestDb for PgDb {
    type Conn = PgConnection;
    type AsyncConn = diesel_async::AsyncPgConnection;

    fn open() -> Self {
        let db = PgDb {
            schema: unique("t"),
        };
        let mut conn = PgConnection::establish(&database_url()).expect("PostgreSQL is reachable");
        let up = include_str!("../../migrations/postgres/2026-11-25-000001_blog/up.sql");
        let sql = format!("CREATE SCHEMA {0}; SET search_path TO {0}; {up}", db.schema);
        diesel::connection::SimpleConnection::batch_execute(&mut conn, &sql).unwrap();
        db
    }

    fn connect(&self) -> PgConnection {
        let mut conn = PgConnection::establish(&database_url()).unwrap();
        let sql = format!("SET search_path TO {}", self.schema);
        diesel::connection::SimpleConnection::batch_execute(&mut conn, &sql).unwrap();
        conn
    }

    async fn connect_async(&self) -> diesel_async::AsyncPgConnection {
        use diesel_async::{AsyncConnection, SimpleAsyncConnection};
        let mut conn = diesel_async::AsyncPgConnection::establish(&database_url())
            .await
            .unwrap();
        let sql = format!("SET search_path TO {}", self.schema);
        conn.batch_execute(&sql).await.unwrap();
        conn
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&database_url()) {
            let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
            let _ = diesel::connection::SimpleConnection::batch_execute(&mut conn, &sql);
        }
    }
}

/// An SQLite file of the test's own (a file, so that several connections share it).
pub struct SqliteDb {
    pub path: String,
}

impl TestDb for SqliteDb {
    type Conn = SqliteConnection;
    type AsyncConn = crate::fixtures::sqlite::AsyncConn;

    fn open() -> Self {
        let path = std::env::temp_dir().join(format!("{}.sqlite", unique("cacheops")));
        let db = SqliteDb {
            path: path.to_string_lossy().into_owned(),
        };
        let mut conn = db.connect();
        let up = include_str!("../../migrations/sqlite/2026-11-25-000001_blog/up.sql");
        diesel::connection::SimpleConnection::batch_execute(&mut conn, up).unwrap();
        db
    }

    fn connect(&self) -> SqliteConnection {
        let mut conn = SqliteConnection::establish(&self.path).unwrap();
        diesel::connection::SimpleConnection::batch_execute(&mut conn, SQLITE_PRAGMAS).unwrap();
        conn
    }

    async fn connect_async(&self) -> Self::AsyncConn {
        use diesel_async::{AsyncConnection, SimpleAsyncConnection};
        let mut conn = Self::AsyncConn::establish(&self.path).await.unwrap();
        conn.batch_execute(SQLITE_PRAGMAS).await.unwrap();
        conn
    }
}

const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL;";

impl Drop for SqliteDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path));
        }
    }
}

/// Which store a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum StoreKind {
    Redis,
    Memory,
}

/// A cacheops handle on its own prefix; everything under it is dropped at the end.
pub fn handle(store: StoreKind, prefix: &str) -> Cacheops {
    let all = Profile::new(Ops::ALL, std::time::Duration::from_secs(600));
    handle_with(store, prefix, &[("*.*", all)])
}

/// A handle with these profiles (label pattern, profile) and no other.
pub fn handle_with(store: StoreKind, prefix: &str, profiles: &[(&str, Profile)]) -> Cacheops {
    let url = match store {
        StoreKind::Redis => redis_url(),
        StoreKind::Memory => "memory://".to_string(),
    };
    let config = profiles
        .iter()
        .fold(
            Config::builder().url(url).prefix(prefix),
            |b, (pattern, profile)| b.profile(*pattern, *profile),
        )
        .build();
    Cacheops::new(config).unwrap()
}

/// Counts the statements a connection starts.
#[derive(Clone, Default)]
pub struct QueryCounter(Arc<AtomicUsize>);

impl QueryCounter {
    /// Statements since the last call.
    pub fn take(&self) -> usize {
        self.0.swap(0, Ordering::SeqCst)
    }

    pub fn instrument<C: Connection>(&self, conn: &mut C) {
        conn.set_instrumentation(self.counter());
    }

    pub fn instrument_async<C: diesel_async::AsyncConnection>(&self, conn: &mut C) {
        conn.set_instrumentation(self.counter());
    }

    fn counter(&self) -> impl diesel::connection::Instrumentation {
        let count = self.0.clone();
        move |event: InstrumentationEvent<'_>| {
            if matches!(event, InstrumentationEvent::StartQuery { .. }) {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// Records the SQL of every statement a connection starts.
#[derive(Clone, Default)]
pub struct SqlLog(Arc<std::sync::Mutex<Vec<String>>>);

impl SqlLog {
    /// Statements since the last call, as Diesel shows them (SQL, then binds).
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    pub fn instrument<C: Connection>(&self, conn: &mut C) {
        let log = self.0.clone();
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::StartQuery { query, .. } = event {
                log.lock().unwrap().push(query.to_string());
            }
        });
    }
}

/// Everything one test owns.
pub struct Ctx<D: TestDb> {
    pub conn: D::Conn,
    pub cache: Cacheops,
    pub queries: QueryCounter,
    pub db: D,
}

impl<D: TestDb> Ctx<D> {
    pub fn new(store: StoreKind) -> Self {
        let db = D::open();
        let mut conn = db.connect();
        let queries = QueryCounter::default();
        queries.instrument(&mut conn);
        Ctx {
            conn,
            cache: handle(store, &unique("cacheops_test")),
            queries,
            db,
        }
    }

    /// Runs `f` and returns its result with the number of statements it ran.
    pub fn counted<T>(&mut self, f: impl FnOnce(&mut D::Conn, &Cacheops) -> T) -> (T, usize) {
        self.queries.take();
        let out = f(&mut self.conn, &self.cache);
        (out, self.queries.take())
    }
}

impl<D: TestDb> Ctx<D> {
    /// A context whose database `seed` filled first.
    pub fn seeded(store: StoreKind, seed: impl FnOnce(&mut D::Conn)) -> Self {
        let mut ctx = Ctx::new(store);
        seed(&mut ctx.conn);
        ctx
    }
}

/// [`Ctx`] for async tests: the same database, prefix and counting, with a
/// diesel-async connection.
pub struct AsyncCtx<D: TestDb> {
    pub conn: D::AsyncConn,
    pub cache: Cacheops,
    pub queries: QueryCounter,
    pub db: D,
}

impl<D: TestDb> AsyncCtx<D> {
    /// A context whose database `seed` filled first (on a blocking connection:
    /// the set-up is not what the tests check).
    pub async fn seeded(store: StoreKind, seed: impl FnOnce(&mut D::Conn)) -> Self {
        let db = D::open();
        seed(&mut db.connect());
        let mut conn = db.connect_async().await;
        let queries = QueryCounter::default();
        queries.instrument_async(&mut conn);
        AsyncCtx {
            conn,
            cache: handle(store, &unique("cacheops_test")),
            queries,
            db,
        }
    }

    /// Runs `f` and returns its result with the number of statements it ran.
    pub async fn counted<T>(
        &mut self,
        f: impl AsyncFnOnce(&mut D::AsyncConn, &Cacheops) -> T,
    ) -> (T, usize) {
        self.queries.take();
        let out = f(&mut self.conn, &self.cache).await;
        (out, self.queries.take())
    }
}

impl<D: TestDb> Drop for AsyncCtx<D> {
    fn drop(&mut self) {
        let _ = self.cache.invalidate_all();
    }
}

impl<D: TestDb> Drop for Ctx<D> {
    fn drop(&mut self) {
        let _ = self.cache.invalidate_all();
    }
}

/// What a pool of a test's database connects to, and the statements each pooled
/// connection runs first.
/// A test context and a `CachedConnection` of its own on the test's database,
/// whose statements are counted. `conn` is dropped first: an open transaction
/// must end before the context drops the test's schema.
pub struct Wrapped<D: TestDb>
where
    D::Conn: cacheops::CacheConnection,
{
    pub conn: cacheops::CachedConnection<D::Conn>,
    pub ctx: Ctx<D>,
    pub queries: QueryCounter,
}

impl<D: TestDb> Wrapped<D>
where
    D::Conn: cacheops::CacheConnection,
{
    /// A context on `store`, its database filled by `seed`, and the wrapper.
    pub fn new(store: StoreKind, seed: impl FnOnce(&mut D::Conn)) -> Self {
        let mut ctx: Ctx<D> = Ctx::new(store);
        seed(&mut ctx.conn);
        let queries = QueryCounter::default();
        let mut inner = ctx.db.connect();
        queries.instrument(&mut inner);
        let conn = cacheops::CachedConnection::new(inner, ctx.cache.clone());
        Wrapped { conn, ctx, queries }
    }

    /// Runs `f` on the connection and the handle: its result and the statements
    /// it ran.
    pub fn counted_with<T>(
        &mut self,
        f: impl FnOnce(&mut cacheops::CachedConnection<D::Conn>, &Cacheops) -> T,
    ) -> (T, usize) {
        self.queries.take();
        let out = f(&mut self.conn, &self.ctx.cache);
        (out, self.queries.take())
    }
}

pub trait PoolTarget {
    fn pool_url(&self) -> String;
    fn pool_setup(&self) -> String;
}

impl PoolTarget for PgDb {
    fn pool_url(&self) -> String {
        database_url()
    }

    fn pool_setup(&self) -> String {
        format!("SET search_path TO {}", self.schema)
    }
}

impl PoolTarget for SqliteDb {
    fn pool_url(&self) -> String {
        self.path.clone()
    }

    fn pool_setup(&self) -> String {
        "PRAGMA busy_timeout = 5000".into()
    }
}

pub fn pool_url(db: &impl PoolTarget) -> String {
    db.pool_url()
}

pub fn pool_setup(db: &impl PoolTarget) -> String {
    db.pool_setup()
}

/// A deadpool manager of `AsyncCachedConnection`s on `schema` that invalidate
/// through `cache` (`establish` would take the process-wide handle), their
/// statements counted by `queries` if given.
pub fn wrapped_manager(
    schema: &str,
    cache: &Cacheops,
    queries: Option<&QueryCounter>,
) -> diesel_async::pooled_connection::AsyncDieselConnectionManager<
    cacheops::connection::AsyncCachedConnection<diesel_async::AsyncPgConnection>,
> {
    use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
    use diesel_async::{AsyncConnection, SimpleAsyncConnection};
    let (schema, cache, queries) = (schema.to_string(), cache.clone(), queries.cloned());
    let mut config = ManagerConfig::default();
    config.custom_setup = Box::new(move |url| {
        let (schema, cache, queries) = (schema.clone(), cache.clone(), queries.clone());
        Box::pin(async move {
            let mut inner = diesel_async::AsyncPgConnection::establish(url).await?;
            inner
                .batch_execute(&format!("SET search_path TO {schema}"))
                .await
                .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
            if let Some(queries) = queries {
                queries.instrument_async(&mut inner);
            }
            Ok(cacheops::connection::AsyncCachedConnection::new(inner, cache).await)
        })
    });
    AsyncDieselConnectionManager::new_with_config(database_url(), config)
}

/// [`Wrapped`] on the async path: a context on PostgreSQL and an
/// `AsyncCachedConnection` of its own whose statements are counted.
pub struct AsyncWrapped<D: TestDb> {
    pub conn: cacheops::connection::AsyncCachedConnection<diesel_async::AsyncPgConnection>,
    pub ctx: AsyncCtx<D>,
    pub queries: QueryCounter,
}

impl<D: TestDb<AsyncConn = diesel_async::AsyncPgConnection>> AsyncWrapped<D> {
    /// A context on `store`, its database filled by `seed`, and the wrapper.
    pub async fn new(store: StoreKind, seed: impl FnOnce(&mut D::Conn)) -> Self {
        let ctx: AsyncCtx<D> = AsyncCtx::seeded(store, seed).await;
        let queries = QueryCounter::default();
        let mut inner = ctx.db.connect_async().await;
        queries.instrument_async(&mut inner);
        let cache = ctx.cache.clone();
        let conn = cacheops::connection::AsyncCachedConnection::new(inner, cache).await;
        AsyncWrapped { conn, ctx, queries }
    }

    /// Runs `f` on the connection and the handle: its result and the statements
    /// it ran.
    pub async fn counted_with<T>(
        &mut self,
        f: impl AsyncFnOnce(
            &mut cacheops::connection::AsyncCachedConnection<diesel_async::AsyncPgConnection>,
            &Cacheops,
        ) -> T,
    ) -> (T, usize) {
        self.queries.take();
        let out = f(&mut self.conn, &self.ctx.cache).await;
        (out, self.queries.take())
    }
}
