//! Invalidations that could not reach the store. Until one gets through, reads
//! of what it names bypass the cache (in this process: others cannot know), so a
//! failed invalidation never leaves a stale entry served.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::deps::Deps;
use crate::error::{Error, ErrorKind};
use crate::protocol::stats::Tally;
use crate::protocol::store::QueryStore;

/// Told of every invalidation a committed write missed.
pub(crate) type MissedHook = Arc<dyn Fn(&Error) + Send + Sync>;

/// What failed invalidations left owed, and who to tell of missed ones.
#[derive(Default)]
pub(crate) struct Failures {
    owed: Mutex<Owed>,
    /// Whether anything is owed: the common case reads one atomic.
    any: AtomicBool,
    hook: RwLock<Option<MissedHook>>,
}

/// Tables owed an invalidation, or everything under the prefix.
#[derive(Default)]
struct Owed {
    tables: BTreeSet<String>,
    all: bool,
}

impl Owed {
    /// Retries what is owed; whether anything is still owed.
    fn retry(&mut self, store: &dyn QueryStore, tally: &Tally) -> bool {
        if self.all && store.invalidate_all().is_ok() {
            // Everything was dropped: the tables owe nothing more.
            self.all = false;
            self.tables.clear();
        }
        self.tables.retain(|table| {
            let failed = store.invalidate_table(table).is_err();
            if !failed {
                tally.retried(table);
            }
            failed
        });
        self.all || !self.tables.is_empty()
    }

    /// Whether reads of `deps` must bypass the cache.
    fn blocks(&self, deps: &Deps) -> bool {
        let owed = |t: &str| self.tables.contains(&t.to_ascii_lowercase());
        self.all || deps.tables.iter().any(|(t, _)| owed(t))
    }
}

impl Failures {
    /// Remembers that invalidating `tables` failed, so no entry of them is served
    /// until a table-wide invalidation gets through.
    pub(crate) fn owe_tables<'t>(&self, tables: impl IntoIterator<Item = &'t str>) {
        let mut owed = self.owed.lock().unwrap_or_else(|e| e.into_inner());
        owed.tables
            .extend(tables.into_iter().map(str::to_ascii_lowercase));
        self.any.store(true, Ordering::Release);
        tracing::error!(tables = ?owed.tables, "cacheops: invalidation failed; these tables bypass the cache until it succeeds");
    }

    /// Remembers that invalidating everything under the prefix failed: nothing is
    /// served from the cache until it gets through.
    pub(crate) fn owe_all(&self) {
        let mut owed = self.owed.lock().unwrap_or_else(|e| e.into_inner());
        owed.all = true;
        self.any.store(true, Ordering::Release);
        tracing::error!("cacheops: invalidating everything failed; nothing is served from the cache until it succeeds");
    }

    /// Retries what is owed through `store` (one reader at a time; the others
    /// bypass the cache meanwhile), then tells whether reads of `deps` may use
    /// the cache: none of its tables is still owed.
    pub(crate) fn retry_then_may_read(
        &self,
        store: &dyn QueryStore,
        tally: &Tally,
        deps: &Deps,
    ) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return true;
        }
        let mut owed = match self.owed.try_lock() {
            Ok(owed) => owed,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        let still = owed.retry(store, tally);
        self.any.store(still, Ordering::Release);
        !owed.blocks(deps)
    }

    /// Reports an invalidation that a committed write owed and could not send
    /// (already owed here): logged and handed to the hook, as an
    /// [`ErrorKind::MissedInvalidation`] error whose source is `error`.
    pub(crate) fn missed(&self, error: Error) {
        let error = Error::new(
            ErrorKind::MissedInvalidation,
            "a committed write could not invalidate the cache; reads of what it wrote \
             bypass the cache in this process until an invalidation gets through",
        )
        .with_source(error);
        tracing::warn!(error = %error, "cacheops: invalidation after commit failed");
        let hook = self.hook.read().unwrap_or_else(|e| e.into_inner());
        if let Some(hook) = hook.as_ref() {
            hook(&error);
        }
    }

    /// Sets the hook told of missed invalidations.
    pub(crate) fn set_hook(&self, hook: MissedHook) {
        *self.hook.write().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }
}
