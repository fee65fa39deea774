//! The store interface the protocol runs over: what a store must do, split by
//! concern (see `crate::store` for the table of who uses which trait).

use std::time::Duration;

use crate::deps::Deps;
use crate::error::Result;
use crate::value::Value;

/// A 128-bit cache key of one query call (see `key.rs`).
pub type CacheKey = u128;

/// The stamps a reader saw before it ran its SQL. A fill is stored only if they are
/// all still in place when it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// Stamp keys in canonical order.
    pub keys: Vec<String>,
    /// The stamp each key held, in the same order.
    pub stamps: Vec<Vec<u8>>,
}

/// One row's state, as a list of `(column, value)` of a table: what invalidation
/// matches against cached conditions. A column that is absent matches anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowState<'a> {
    /// The table the row belongs to.
    pub table: &'a str,
    /// Column values, in any order.
    pub columns: Vec<(&'a str, Value)>,
}

/// What the local tier in front of a store holds and has served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalStats {
    /// Reads it served without a round trip.
    pub hits: u64,
    /// Approximate bytes it holds (payloads, stamps, bookkeeping).
    pub bytes: u64,
    /// Whether it serves now (subscribed to invalidation news).
    pub ready: bool,
}

/// The query cache of a store: cached values guarded by stamps, and the
/// invalidations that delete stamps. What `.cached()` queries, `invalidate_*` and
/// the derive's save hooks use.
pub trait QueryStore: Send + Sync + 'static {
    /// The cached payload of `key`, if present and every stamp of `deps` is
    /// unchanged since it was stored. One round trip.
    fn lookup(&self, key: CacheKey, deps: &Deps) -> Result<Option<Vec<u8>>>;

    /// Reads the stamps of `deps`, creating missing ones, and registers the
    /// conjunction schemes of each table; call before running the SQL. `ttl` is the
    /// value's timeout, which the stamps must outlive.
    fn fence(&self, deps: &Deps, ttl: Duration) -> Result<Fence>;

    /// Stores `payload` under `key` for `ttl` if and only if every stamp of `fence`
    /// is still in place. Returns whether it stored.
    fn store(&self, key: CacheKey, fence: &Fence, payload: &[u8], ttl: Duration) -> Result<bool>;

    /// Invalidates every cached value whose conditions one of `rows` matches
    /// (rows of one table). One round trip.
    fn invalidate_rows(&self, table: &str, rows: &[RowState<'_>]) -> Result<()>;

    /// Invalidates every cached value that depends on `table` at all.
    fn invalidate_table(&self, table: &str) -> Result<()>;

    /// Drops every key under this store's prefix, and nothing else.
    fn invalidate_all(&self) -> Result<()>;

    /// Deletes the cached value of `key` (not its stamps).
    fn delete(&self, key: CacheKey) -> Result<()>;

    /// The local tier in front of this store, if it has one.
    fn local_tier(&self) -> Option<LocalStats> {
        None
    }
}

/// The simple cache of a store: plain values under a key, with a timeout and no
/// stamps (`cache.get/set/delete`, `#[cached]`).
pub trait SimpleStore: Send + Sync + 'static {
    /// The simple cache's payload under `key` (`P:s:<hex>`), if present.
    fn simple_get(&self, key: CacheKey) -> Result<Option<Vec<u8>>>;

    /// Sets the simple cache's payload under `key`, expiring after `ttl`.
    fn simple_set(&self, key: CacheKey, payload: &[u8], ttl: Duration) -> Result<()>;

    /// Deletes the simple cache's payload under `key`.
    fn simple_delete(&self, key: CacheKey) -> Result<()>;
}

/// The stampede locks of a store: one caller computes a missing value while the
/// others wait for it.
pub trait LockStore: Send + Sync + 'static {
    /// Takes the stampede lock of `key` (`P:l:<hex>`) with `token` for `ttl`, unless
    /// it is held. Returns whether it was taken.
    fn try_lock(&self, key: CacheKey, token: &str, ttl: Duration) -> Result<bool>;

    /// Releases the lock of `key` if `token` still holds it (a lock that expired
    /// and was taken by another caller is left alone).
    fn unlock(&self, key: CacheKey, token: &str) -> Result<()>;
}

/// A whole backend for cached values and stamps: what a [`Cacheops`] handle
/// needs ([`Cacheops::with_store`]). Implemented for every type that implements
/// its three parts; both stores here share their semantics (the same test
/// bodies run on each).
///
/// [`Cacheops`]: crate::Cacheops
/// [`Cacheops::with_store`]: crate::Cacheops::with_store
pub trait Store: QueryStore + SimpleStore + LockStore {}

impl<S: QueryStore + SimpleStore + LockStore + ?Sized> Store for S {}

/// The future of an [`AsyncStore`] operation.
#[cfg(feature = "async")]
pub type StoreFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 'a>>;

/// [`QueryStore`] for async callers: the same operations, with the same
/// semantics, as futures that never block a thread.
#[cfg(feature = "async")]
pub trait AsyncQueryStore: Send + Sync + 'static {
    /// [`QueryStore::lookup`].
    fn lookup<'a>(&'a self, key: CacheKey, deps: &'a Deps) -> StoreFuture<'a, Option<Vec<u8>>>;
    /// [`QueryStore::fence`].
    fn fence<'a>(&'a self, deps: &'a Deps, ttl: Duration) -> StoreFuture<'a, Fence>;
    /// [`QueryStore::store`].
    fn store<'a>(
        &'a self,
        key: CacheKey,
        fence: &'a Fence,
        payload: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;
    /// [`QueryStore::invalidate_rows`].
    fn invalidate_rows<'a>(
        &'a self,
        table: &'a str,
        rows: &'a [RowState<'a>],
    ) -> StoreFuture<'a, ()>;
    /// [`QueryStore::invalidate_table`].
    fn invalidate_table<'a>(&'a self, table: &'a str) -> StoreFuture<'a, ()>;
    /// [`QueryStore::invalidate_all`].
    fn invalidate_all(&self) -> StoreFuture<'_, ()>;
    /// [`QueryStore::delete`].
    fn delete(&self, key: CacheKey) -> StoreFuture<'_, ()>;
}

/// [`SimpleStore`] for async callers.
#[cfg(feature = "async")]
pub trait AsyncSimpleStore: Send + Sync + 'static {
    /// [`SimpleStore::simple_get`].
    fn simple_get(&self, key: CacheKey) -> StoreFuture<'_, Option<Vec<u8>>>;
    /// [`SimpleStore::simple_set`].
    fn simple_set<'a>(
        &'a self,
        key: CacheKey,
        payload: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, ()>;
    /// [`SimpleStore::simple_delete`].
    fn simple_delete(&self, key: CacheKey) -> StoreFuture<'_, ()>;
}

/// [`LockStore`] for async callers.
#[cfg(feature = "async")]
pub trait AsyncLockStore: Send + Sync + 'static {
    /// [`LockStore::try_lock`].
    fn try_lock<'a>(
        &'a self,
        key: CacheKey,
        token: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;
    /// [`LockStore::unlock`].
    fn unlock<'a>(&'a self, key: CacheKey, token: &'a str) -> StoreFuture<'a, ()>;
}

/// [`Store`] for async callers: what a handle's async path runs on. A handle
/// on Redis or memory has one beside its blocking store (sharing its data); one
/// on a store of your own gets one with
/// [`Cacheops::with_stores`](crate::Cacheops::with_stores).
#[cfg(feature = "async")]
pub trait AsyncStore: AsyncQueryStore + AsyncSimpleStore + AsyncLockStore {}

#[cfg(feature = "async")]
impl<S: AsyncQueryStore + AsyncSimpleStore + AsyncLockStore + ?Sized> AsyncStore for S {}
