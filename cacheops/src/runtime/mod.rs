//! The cacheops handle: a thin owner of the configuration, the protocol's core
//! (store, counters, failure state) and the memos of the modules that use them.
//!
//! Most programs [`install`] one handle for the whole process (`global.rs`) and
//! use the free functions and `.cached()`; tests and multi-tenant programs may
//! hold several [`Cacheops`] and pass one explicitly (`.cache().using(&handle)`).
//! Counters and their publishing are in `stats.rs`.

mod global;
mod stats;

pub use global::{global, install};
pub use stats::{model_stats, stats};

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::config::{Config, Profile};
use crate::deps::SqlMemo;
use crate::error::{Error, ErrorKind, Result};
use crate::model::Profiles;
use crate::protocol::core::{Core, FillHook, Stores};
use crate::protocol::store::Store;
use crate::registry::Target;
use crate::store::{MemoryStore, RedisStore};

/// Work a module above the handle starts with every new handle (the change
/// feed's configured consumer), registered with `inventory::submit!` so that the
/// handle needs no knowledge of it.
pub(crate) struct OnStart(pub(crate) fn(&Cacheops));

inventory::collect!(OnStart);

/// A [`Cacheops`] that does not keep it alive (for threads that must end with it).
pub(crate) struct WeakCacheops(std::sync::Weak<Inner>);

impl WeakCacheops {
    /// The handle, while any clone of it lives.
    pub(crate) fn upgrade(&self) -> Option<Cacheops> {
        self.0.upgrade().map(|inner| Cacheops { inner })
    }
}

/// A handle on one cache: cheap to clone, shared by threads.
#[derive(Clone)]
pub struct Cacheops {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    core: Core,
    /// Parsed SQL and dependencies (`deps/memo.rs`).
    sql: SqlMemo,
    /// What the database's catalog said (`catalog.rs`).
    catalog: Catalog,
    /// Where the registry and stats are published (Redis stores only).
    publish: Option<Target>,
    /// Profiles by table, resolved once (`model.rs`).
    profiles: Profiles,
}

impl std::fmt::Debug for Cacheops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cacheops")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Cacheops {
    /// A handle on the store the configuration names (`redis://...` or `memory://`).
    /// Connecting to Redis is lazy: this succeeds while Redis is down. With the
    /// `async` feature the handle also has the store's async twin (sharing its
    /// data), which the async path uses.
    pub fn new(config: Config) -> Result<Cacheops> {
        match config.url.split_once("://") {
            Some(("memory", _)) => {
                let memory = MemoryStore::new(&config.prefix);
                let stores = Stores {
                    blocking: Box::new(memory.clone()),
                    #[cfg(feature = "async")]
                    nonblocking: Some(Arc::new(memory)),
                };
                Ok(Cacheops::build(config, stores, None))
            }
            Some(("redis" | "rediss" | "unix" | "redis+unix", _)) => {
                let mut builder = RedisStore::builder(&config.url)
                    .prefix(&config.prefix)
                    .connect_timeout(config.redis_timeout)
                    .io_timeout(config.redis_timeout);
                if let Some(tier) = config.local_tier {
                    builder = builder.local_tier(tier);
                }
                let store = builder.build()?;
                let stores = Stores {
                    #[cfg(feature = "async")]
                    nonblocking: Some(Arc::new(store.async_twin())),
                    blocking: Box::new(store),
                };
                // Only a handle on Redis publishes its registry and counters there.
                let target = Target::of(&config);
                let handle = Cacheops::build(config, stores, Some(target));
                handle.start_publisher();
                Ok(handle)
            }
            _ => Err(Error::new(
                ErrorKind::Config,
                format!("unsupported cache URL `{}`", config.url),
            )),
        }
    }

    /// A handle on a store you built yourself. Its async path (feature `async`)
    /// needs an async store too: see `Cacheops::with_stores`.
    pub fn with_store(config: Config, store: Box<dyn Store>) -> Cacheops {
        let stores = Stores {
            blocking: store,
            #[cfg(feature = "async")]
            nonblocking: None,
        };
        Cacheops::build(config, stores, None)
    }

    /// A handle on a blocking store and its async twin, both yours: they must
    /// share their data (as [`RedisStore::async_twin`] does), since a write on
    /// one path invalidates what the other cached.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cacheops::store::MemoryStore;
    /// let memory = MemoryStore::new("app"); // clones share their data
    /// let cache = cacheops::Cacheops::with_stores(
    ///     cacheops::Config::builder().build(),
    ///     Box::new(memory.clone()),
    ///     Arc::new(memory),
    /// );
    /// # drop(cache);
    /// ```
    #[cfg(feature = "async")]
    pub fn with_stores(
        config: Config,
        store: Box<dyn Store>,
        async_store: Arc<dyn crate::store::AsyncStore>,
    ) -> Cacheops {
        let stores = Stores {
            blocking: store,
            nonblocking: Some(async_store),
        };
        Cacheops::build(config, stores, None)
    }

    fn build(config: Config, stores: Stores, publish: Option<Target>) -> Cacheops {
        let inner = Inner {
            core: Core::new(stores, &config),
            config,
            publish,
            sql: SqlMemo::default(),
            catalog: Catalog::default(),
            profiles: Profiles::default(),
        };
        let handle = Cacheops {
            inner: Arc::new(inner),
        };
        for hook in inventory::iter::<OnStart> {
            (hook.0)(&handle);
        }
        handle
    }

    /// A reference that does not keep the handle alive.
    pub(crate) fn downgrade(&self) -> WeakCacheops {
        WeakCacheops(Arc::downgrade(&self.inner))
    }

    /// The configuration this handle runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The store, counters and failure state every read and invalidation uses.
    pub(crate) fn core(&self) -> &Core {
        &self.inner.core
    }

    /// What SQL analysis remembers for this handle.
    pub(crate) fn sql(&self) -> &SqlMemo {
        &self.inner.sql
    }

    /// What the database's catalog told this handle.
    pub(crate) fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The profile of the model stored in `table`; an error if the table has no
    /// registered model or the model no profile.
    pub(crate) fn profile_of_table(&self, table: &str) -> Result<Profile> {
        self.inner.profiles.of_table(&self.inner.config, table)
    }

    /// Where the registry and counters are published (Redis stores only).
    pub(crate) fn publish_target(&self) -> Option<&Target> {
        self.inner.publish.as_ref()
    }

    /// Calls `hook` with every invalidation a committed write could not send
    /// (an [`ErrorKind::MissedInvalidation`] error whose source is the store's).
    ///
    /// Such a write still returns `Ok`: its data is committed, and a caller told
    /// otherwise would retry it. The handle itself stays safe: what the write
    /// touched bypasses the cache in this process until an invalidation of it gets
    /// through. Use the hook to alert, or to tell other processes (which cannot
    /// know) to invalidate. [`crate::Stats::missed_invalidations`] counts them.
    ///
    /// ```
    /// let cache = cacheops::Cacheops::new(cacheops::Config::builder().url("memory://").build())?;
    /// cache.on_missed_invalidation(|e| eprintln!("alert: {e}"));
    /// # Ok::<_, cacheops::Error>(())
    /// ```
    pub fn on_missed_invalidation(&self, hook: impl Fn(&Error) + Send + Sync + 'static) {
        self.core().failures.set_hook(Arc::new(hook));
    }

    /// Test support: runs `hook` on every fill between the SQL and the store.
    #[doc(hidden)]
    pub fn __set_fill_hook(&self, hook: Option<FillHook>) {
        self.core().set_fill_hook(hook);
    }
}
