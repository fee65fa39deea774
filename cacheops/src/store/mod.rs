//! Where cached values and invalidation stamps live.
//!
//! Every cached value depends on *stamps*: random tokens under keys derived from
//! its dependencies. A value is stored together with a checksum of its stamps and is
//! served only while every stamp still exists unchanged. Invalidation deletes stamps;
//! it never has to find the values. See `protocol/layout.rs` for the key names.
//!
//! A store is three traits, one per concern, so that each part of cacheops asks
//! only for what it uses:
//!
//! | trait | for | used by |
//! |---|---|---|
//! | [`QueryStore`] | the query cache: lookup, fence and store of cached values; invalidation | `.cached()`, `invalidate_*`, save hooks, transactions |
//! | [`SimpleStore`] | the simple cache: plain values under a key | `cache.get/set/delete`, `#[cached]` |
//! | [`LockStore`] | stampede locks | computing a missing value once among callers |
//!
//! [`Store`] is all three: the one bound a [`Cacheops`](crate::Cacheops) handle
//! needs. A store of your own implements the three parts and is a [`Store`] by
//! that alone. To call a method on a concrete store, import the trait that
//! defines it (`use cacheops::store::QueryStore;`).
//!
//! The two stores here are [`MemoryStore`] (`memory.rs`) and [`RedisStore`]
//! (`redis/`: its connection pool, scripts, commands and row invalidation each in
//! a file of their own). A [`RedisStore`] may keep a [`LocalTier`] in front of
//! Redis (`local.rs`), fed by the invalidation news every script publishes
//! (`news.rs`).

mod failure;
mod local;
mod memory;
mod news;
mod redis;
#[cfg(test)]
mod tests;

pub(crate) use self::failure::{Doing, Phase};
pub(crate) use self::redis::open_connection;
#[cfg(feature = "async")]
pub use self::redis::AsyncRedisStore;
#[cfg(feature = "async")]
pub use crate::protocol::store::{
    AsyncLockStore, AsyncQueryStore, AsyncSimpleStore, AsyncStore, StoreFuture,
};
pub use crate::protocol::store::{
    CacheKey, Fence, LocalStats, LockStore, QueryStore, RowState, SimpleStore, Store,
};

pub use self::local::LocalTier;
pub use self::memory::MemoryStore;
pub use self::redis::{RedisStore, RedisStoreBuilder};
