//! Redis store: the layout of [`crate::protocol::layout`] in a Redis server, changed by the
//! scripts in `lua/` and by MULTI/EXEC transactions that read, where they write,
//! what they relied on.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`RedisStore`] (and `AsyncRedisStore`, feature `async`), their builder, and the store traits |
//! | `server.rs` | what each operation sends and what its reply means (for the local tier too), written once over a link |
//! | `link.rs` | what a link to the server does: send one request, read its reply |
//! | `pool.rs` | the blocking link: checkout and checkin, connecting, failing fast while Redis is down |
//! | `multiplexed.rs` | the async link: one multiplexed tokio connection, reconnected when lost |
//! | `scripts.rs` | the Lua scripts: EVALSHA, and loading them on NOSCRIPT |
//! | `commands.rs` | every command sent (lookups packed once per key) and the parsing of replies |
//! | `invalidation.rs` | row invalidation: client-side from known schemes, or by script |
//!
//! Every failure is described by what the operation was doing ([`Doing`],
//! `failure.rs`).
//!
//! With a [`LocalTier`], values read from Redis are also kept in process and served
//! from there without a round trip, for as long as no invalidation news touches
//! them (see `local.rs` and `news.rs`).
//!
//! Cluster: every script except `store.lua`, and every transaction, touches keys
//! of one table, which share a hash tag. `store.lua` compares stamps of several
//! tables; see its header for what a cluster mode would do instead. Only
//! standalone Redis (and Sentinel, via a plain URL to the master) is supported
//! today.

mod commands;
mod invalidation;
mod link;
#[cfg(feature = "async")]
mod multiplexed;
mod pool;
mod scripts;
mod server;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

#[cfg(test)]
use redis::{Connection, RedisResult};

use self::commands::Commands;
use self::pool::{Pool, PoolOptions};
use self::server::{Server, Shared};
#[cfg(test)]
use super::failure::Doing;
use super::local::{Local, LocalTier};
use super::news;
use super::{CacheKey, Fence, LocalStats, LockStore, QueryStore, RowState, SimpleStore};
use crate::deps::Deps;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::io::block_on;
use crate::protocol::layout::Layout;

pub(crate) use self::pool::open_connection;

/// Options of a [`RedisStore`], built with [`RedisStore::builder`].
///
/// ```
/// use std::time::Duration;
/// use cacheops::store::RedisStore;
/// let store = RedisStore::builder("redis://127.0.0.1:6379/")
///     .prefix("myapp")
///     .io_timeout(Duration::from_millis(200))
///     .build()?;
/// # Ok::<(), cacheops::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    pool: PoolOptions,
    local: Option<LocalTier>,
}

impl RedisStoreBuilder {
    /// The prefix of every key (default `cacheops`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a connection attempt may take (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.pool.connect_timeout = timeout;
        self
    }

    /// How long one read or write on a connection may take (default 1 s).
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.pool.io_timeout = timeout;
        self
    }

    /// How many idle connections are kept for reuse (default 16). More threads may
    /// work at once; their extra connections are closed after use.
    pub fn max_idle_connections(mut self, max: usize) -> Self {
        self.pool.max_idle = max;
        self
    }

    /// After a failed connection attempt, operations fail at once for this long
    /// (default 1 s), so a down Redis does not cost every query a connect timeout.
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.pool.retry_after = delay;
        self
    }

    /// Keeps values read from Redis in process too (see [`LocalTier`]): a hit there
    /// costs no round trip. A listener thread subscribes to invalidation news;
    /// until it is subscribed, and whenever it loses its connection, the tier
    /// serves nothing.
    pub fn local_tier(mut self, tier: LocalTier) -> Self {
        self.local = Some(tier);
        self
    }

    /// The store. Does not connect: fails only if the URL is invalid.
    pub fn build(self) -> Result<RedisStore> {
        let client = redis::Client::open(self.url.as_str()).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("invalid Redis URL {:?}", self.url),
            )
            .with_source(e)
        })?;
        let commands = Commands::new(Layout::new(&self.prefix), news::new_origin());
        let local = self.local.map(|tier| Arc::new(Local::new(tier)));
        if let Some(local) = &local {
            let (channel, origin) = (commands.channel().to_owned(), commands.origin().to_owned());
            news::listen(client.clone(), channel, origin, local);
        }
        Ok(RedisStore {
            server: Server {
                link: Pool::new(client, self.pool),
                shared: Arc::new(Shared::new(commands, local)),
            },
        })
    }
}

/// A store in a Redis server (7.0 or later).
///
/// ```no_run
/// use cacheops::store::{QueryStore, RedisStore};
/// let store = RedisStore::open("redis://127.0.0.1:6379/", "myapp")?;
/// store.invalidate_table("posts")?;
/// # Ok::<(), cacheops::Error>(())
/// ```
pub struct RedisStore {
    server: Server<Pool>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options = &self.server.link.options;
        f.debug_struct("RedisStore")
            .field("prefix", &self.server.shared.commands.layout.prefix())
            .field("connect_timeout", &options.connect_timeout)
            .field("io_timeout", &options.io_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store at `url` (`redis://host:port/db`) with keys under `prefix` and
    /// default options. Does not connect; fails only if the URL is invalid.
    pub fn open(url: &str, prefix: &str) -> Result<RedisStore> {
        RedisStore::builder(url).prefix(prefix).build()
    }

    /// Options for a store at `url`.
    pub fn builder(url: &str) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.to_owned(),
            prefix: "cacheops".to_owned(),
            pool: PoolOptions::default(),
            local: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn layout(&self) -> &Layout {
        &self.server.shared.commands.layout
    }

    /// Runs `op` on a pooled connection (see `pool.rs`): the store's tests' raw
    /// commands.
    #[cfg(test)]
    pub(crate) fn run<T>(
        &self,
        doing: Doing<'_>,
        op: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T> {
        self.server
            .link
            .run(doing, op)
            .map_err(link::Failure::into_error)
    }
}

impl QueryStore for RedisStore {
    fn lookup(&self, key: CacheKey, deps: &Deps) -> Result<Option<Vec<u8>>> {
        block_on(self.server.lookup(key, deps))
    }

    fn fence(&self, deps: &Deps, ttl: Duration) -> Result<Fence> {
        block_on(self.server.fence(deps, ttl))
    }

    fn store(&self, key: CacheKey, fence: &Fence, payload: &[u8], ttl: Duration) -> Result<bool> {
        block_on(self.server.store(key, fence, payload, ttl))
    }

    fn invalidate_rows(&self, table: &str, rows: &[RowState<'_>]) -> Result<()> {
        block_on(self.server.invalidate_rows(table, rows))
    }

    fn invalidate_table(&self, table: &str) -> Result<()> {
        block_on(self.server.invalidate_table(table))
    }

    fn invalidate_all(&self) -> Result<()> {
        block_on(self.server.invalidate_all())
    }

    fn delete(&self, key: CacheKey) -> Result<()> {
        block_on(self.server.delete(key))
    }

    fn local_tier(&self) -> Option<LocalStats> {
        self.server.local_tier()
    }
}

impl SimpleStore for RedisStore {
    fn simple_get(&self, key: CacheKey) -> Result<Option<Vec<u8>>> {
        block_on(self.server.simple_get(key))
    }

    fn simple_set(&self, key: CacheKey, payload: &[u8], ttl: Duration) -> Result<()> {
        block_on(self.server.simple_set(key, payload, ttl))
    }

    fn simple_delete(&self, key: CacheKey) -> Result<()> {
        block_on(self.server.simple_delete(key))
    }
}

impl LockStore for RedisStore {
    fn try_lock(&self, key: CacheKey, token: &str, ttl: Duration) -> Result<bool> {
        block_on(self.server.try_lock(key, token, ttl))
    }

    fn unlock(&self, key: CacheKey, token: &str) -> Result<()> {
        block_on(self.server.unlock(key, token))
    }
}

/// The async twin of a [`RedisStore`]: the same keys, scripts, local tier and
/// news origin, over one multiplexed tokio connection (see `multiplexed.rs`).
/// Made with [`RedisStore::async_twin`]; a [`Cacheops`](crate::Cacheops) handle
/// on Redis makes its own.
#[cfg(feature = "async")]
pub struct AsyncRedisStore {
    server: Server<multiplexed::Multiplexed>,
}

#[cfg(feature = "async")]
impl fmt::Debug for AsyncRedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncRedisStore")
            .field("prefix", &self.server.shared.commands.layout.prefix())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "async")]
impl RedisStore {
    /// The async twin of this store, sharing its data in process (the local
    /// tier, the schemes it knows). Does not connect: the twin connects on its
    /// first operation, on the tokio runtime that runs it.
    ///
    /// ```
    /// let store = cacheops::store::RedisStore::open("redis://127.0.0.1:6379/", "myapp")?;
    /// let twin = store.async_twin();
    /// # drop(twin);
    /// # Ok::<(), cacheops::Error>(())
    /// ```
    pub fn async_twin(&self) -> AsyncRedisStore {
        let pool = &self.server.link;
        AsyncRedisStore {
            server: Server {
                link: multiplexed::Multiplexed::new(pool.client.clone(), pool.options),
                shared: Arc::clone(&self.server.shared),
            },
        }
    }
}

#[cfg(feature = "async")]
mod nonblocking {
    use std::time::Duration;

    use super::AsyncRedisStore;
    use crate::deps::Deps;
    use crate::store::{
        AsyncLockStore, AsyncQueryStore, AsyncSimpleStore, CacheKey, Fence, RowState, StoreFuture,
    };

    impl AsyncQueryStore for AsyncRedisStore {
        fn lookup<'a>(&'a self, key: CacheKey, deps: &'a Deps) -> StoreFuture<'a, Option<Vec<u8>>> {
            Box::pin(self.server.lookup(key, deps))
        }

        fn fence<'a>(&'a self, deps: &'a Deps, ttl: Duration) -> StoreFuture<'a, Fence> {
            Box::pin(self.server.fence(deps, ttl))
        }

        fn store<'a>(
            &'a self,
            key: CacheKey,
            fence: &'a Fence,
            payload: &'a [u8],
            ttl: Duration,
        ) -> StoreFuture<'a, bool> {
            Box::pin(self.server.store(key, fence, payload, ttl))
        }

        fn invalidate_rows<'a>(
            &'a self,
            table: &'a str,
            rows: &'a [RowState<'a>],
        ) -> StoreFuture<'a, ()> {
            Box::pin(self.server.invalidate_rows(table, rows))
        }

        fn invalidate_table<'a>(&'a self, table: &'a str) -> StoreFuture<'a, ()> {
            Box::pin(self.server.invalidate_table(table))
        }

        fn invalidate_all(&self) -> StoreFuture<'_, ()> {
            Box::pin(self.server.invalidate_all())
        }

        fn delete(&self, key: CacheKey) -> StoreFuture<'_, ()> {
            Box::pin(self.server.delete(key))
        }
    }

    impl AsyncSimpleStore for AsyncRedisStore {
        fn simple_get(&self, key: CacheKey) -> StoreFuture<'_, Option<Vec<u8>>> {
            Box::pin(self.server.simple_get(key))
        }

        fn simple_set<'a>(
            &'a self,
            key: CacheKey,
            payload: &'a [u8],
            ttl: Duration,
        ) -> StoreFuture<'a, ()> {
            Box::pin(self.server.simple_set(key, payload, ttl))
        }

        fn simple_delete(&self, key: CacheKey) -> StoreFuture<'_, ()> {
            Box::pin(self.server.simple_delete(key))
        }
    }

    impl AsyncLockStore for AsyncRedisStore {
        fn try_lock<'a>(
            &'a self,
            key: CacheKey,
            token: &'a str,
            ttl: Duration,
        ) -> StoreFuture<'a, bool> {
            Box::pin(self.server.try_lock(key, token, ttl))
        }

        fn unlock<'a>(&'a self, key: CacheKey, token: &'a str) -> StoreFuture<'a, ()> {
            Box::pin(self.server.unlock(key, token))
        }
    }
}
