//! What the protocol runs on: the store, the counters, the failure state and the
//! settings a read or an invalidation needs. A handle owns one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::error::{Error, ErrorKind, Result};
use crate::protocol::failures::Failures;
use crate::protocol::io::{Blocking, Io};
use crate::protocol::stats::Tally;
use crate::protocol::store::Store;
#[cfg(feature = "async")]
use crate::protocol::{io_async::Async, store::AsyncStore};

/// A test hook run on every fill between the SQL and the store.
pub(crate) type FillHook = Arc<dyn Fn() + Send + Sync>;

/// The stores a core runs on: the blocking one, and its async twin.
pub(crate) struct Stores {
    pub(crate) blocking: Box<dyn Store>,
    #[cfg(feature = "async")]
    pub(crate) nonblocking: Option<Arc<dyn AsyncStore>>,
}

/// The store and the state shared by every read and invalidation of a handle.
pub(crate) struct Core {
    store: Box<dyn Store>,
    /// The async twin of `store`, sharing its data; `None` for a store of the
    /// user's that came without one.
    #[cfg(feature = "async")]
    async_store: Option<Arc<dyn AsyncStore>>,
    pub(crate) tally: Tally,
    pub(crate) failures: Failures,
    degrade_on_failure: bool,
    max_value_size: usize,
    /// Whether a too-large value was logged at WARN yet: the next ones are logged
    /// at DEBUG, since the same result is too large on every miss.
    too_large_warned: AtomicBool,
    fill_hook: RwLock<Option<FillHook>>,
}

impl Core {
    /// A core on `store` with the configuration's failure and size settings.
    pub(crate) fn new(stores: Stores, config: &crate::config::Config) -> Core {
        Core {
            store: stores.blocking,
            #[cfg(feature = "async")]
            async_store: stores.nonblocking,
            tally: Tally::default(),
            failures: Failures::default(),
            degrade_on_failure: config.degrade_on_failure,
            max_value_size: config.max_value_size,
            too_large_warned: AtomicBool::new(false),
            fill_hook: RwLock::default(),
        }
    }

    pub(crate) fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// The protocol's I/O on the blocking store.
    pub(crate) fn blocking(&self) -> Blocking<'_> {
        Blocking(&*self.store)
    }

    /// The protocol's I/O on the async store; an [`ErrorKind::Config`] error
    /// when the handle has none.
    #[cfg(feature = "async")]
    pub(crate) fn nonblocking(&self) -> Result<Async<'_>> {
        match &self.async_store {
            Some(store) => Ok(Async(store)),
            None => Err(Error::new(
                ErrorKind::Config,
                "this handle's store has no async twin: build the handle with \
                 Cacheops::with_stores to use it from async code",
            )),
        }
    }

    /// Handles a store error: counted, then degraded (logged, `Ok`) or returned.
    pub(crate) fn store_failed(&self, error: Error, during: &str) -> Result<()> {
        self.tally.error();
        if self.degrade_on_failure {
            tracing::warn!(error = %error, "cacheops: {during} failed, using the database");
            return Ok(());
        }
        Err(error)
    }

    /// Checks that a payload of `len` bytes, `what` (e.g. "a cached value"), is
    /// at most the maximum value size: a larger one is counted in
    /// [`crate::Stats::too_large`] and is an [`ErrorKind::TooLarge`] error.
    pub(crate) fn check_size(&self, len: usize, what: std::fmt::Arguments<'_>) -> Result<()> {
        let max = self.max_value_size;
        if len <= max {
            return Ok(());
        }
        self.tally.too_large();
        let message = format!(
            "not storing {what}: its encoding of {len} bytes is over the maximum value size ({max} bytes)"
        );
        Err(Error::new(ErrorKind::TooLarge, message).with_hint(
            "raise max_value_size (Config::max_value_size or CACHEOPS_MAX_VALUE_SIZE), \
             or cache less (fewer rows or columns)",
        ))
    }

    /// A computed result that could not be stored (too large, not encodable, or
    /// the store failed) is returned all the same: the database answered, and the
    /// next read computes it again. The failure is logged, and a store error
    /// counted in [`crate::Stats::errors`].
    pub(crate) fn not_stored(&self, error: &Error) {
        if error.is_redis() {
            self.tally.error();
        }
        let quiet = error.is_too_large() && self.too_large_warned.swap(true, Ordering::Relaxed);
        match quiet {
            true => tracing::debug!(%error, "cacheops: result returned, not cached"),
            false => tracing::warn!(%error, "cacheops: result returned, not cached"),
        }
    }

    /// Reports an invalidation a committed write owed and could not send (see
    /// [`Failures::missed`]), and counts it.
    pub(crate) fn missed_invalidation(&self, error: Error) {
        self.tally.missed();
        self.failures.missed(error);
    }

    /// Whether reads of `deps` may use the cache (see
    /// [`Failures::retry_then_may_read`]).
    pub(crate) async fn may_read(&self, io: &impl Io, deps: &crate::deps::Deps) -> bool {
        self.failures
            .retry_then_may_read(io, &self.tally, deps)
            .await
    }

    pub(crate) fn set_fill_hook(&self, hook: Option<FillHook>) {
        *self.fill_hook.write().unwrap_or_else(|e| e.into_inner()) = hook;
    }

    pub(crate) fn run_fill_hook(&self) {
        let hook = self
            .fill_hook
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook();
        }
    }
}
