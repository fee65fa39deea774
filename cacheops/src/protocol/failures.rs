//! Invalidations that could not reach the store. Until one gets through, reads
//! of what it names bypass the cache (in this process: others cannot know), so a
//! failed invalidation never leaves a stale entry served.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::deps::Deps;
use crate::error::{Error, ErrorKind};
use crate::protocol::io::Io;
use crate::protocol::stats::Tally;

/// Told of every invalidation a committed write missed.
pub(crate) type MissedHook = Arc<dyn Fn(&Error) + Send + Sync>;

/// What failed invalidations left owed, and who to tell of missed ones.
#[derive(Default)]
pub(crate) struct Failures {
    owed: Mutex<Owed>,
    /// Whether anything is owed: the common case reads one atomic.
    any: AtomicBool,
    /// Whether a reader is retrying what is owed (one at a time).
    retrying: AtomicBool,
    hook: RwLock<Option<MissedHook>>,
}

/// Tables owed an invalidation, or everything under the prefix; each with the
/// number of the failure that owed it last, so that a retry clears only what
/// was owed before it began (the lock is not held across the retry's I/O).
#[derive(Default)]
struct Owed {
    tables: BTreeMap<String, u64>,
    all: Option<u64>,
    /// Failures counted so far.
    count: u64,
}

impl Owed {
    fn next(&mut self) -> u64 {
        self.count += 1;
        self.count
    }

    /// Whether reads of `deps` must bypass the cache.
    fn blocks(&self, deps: &Deps) -> bool {
        let owed = |t: &str| self.tables.contains_key(&t.to_ascii_lowercase());
        self.all.is_some() || deps.tables.iter().any(|(t, _)| owed(t))
    }

    fn any(&self) -> bool {
        self.all.is_some() || !self.tables.is_empty()
    }
}

impl Failures {
    fn lock(&self) -> MutexGuard<'_, Owed> {
        // Plain inserts and removals: poisoning is harmless.
        self.owed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers that invalidating `tables` failed, so no entry of them is served
    /// until a table-wide invalidation gets through.
    pub(crate) fn owe_tables<'t>(&self, tables: impl IntoIterator<Item = &'t str>) {
        let mut owed = self.lock();
        let n = owed.next();
        for table in tables {
            owed.tables.insert(table.to_ascii_lowercase(), n);
        }
        self.any.store(true, Ordering::Release);
        tracing::error!(tables = ?owed.tables.keys(), "cacheops: invalidation failed; these tables bypass the cache until it succeeds");
    }

    /// Remembers that invalidating everything under the prefix failed: nothing is
    /// served from the cache until it gets through.
    pub(crate) fn owe_all(&self) {
        let mut owed = self.lock();
        owed.all = Some(owed.next());
        self.any.store(true, Ordering::Release);
        tracing::error!("cacheops: invalidating everything failed; nothing is served from the cache until it succeeds");
    }

    /// Retries what is owed through `io` (one reader at a time; the others
    /// bypass the cache meanwhile), then tells whether reads of `deps` may use
    /// the cache: none of its tables is still owed.
    pub(crate) async fn retry_then_may_read(
        &self,
        io: &impl Io,
        tally: &Tally,
        deps: &Deps,
    ) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return true;
        }
        if self.retrying.swap(true, Ordering::Acquire) {
            return false;
        }
        let _done = Retrying(&self.retrying);
        self.retry(io, tally).await;
        let owed = self.lock();
        self.any.store(owed.any(), Ordering::Release);
        !owed.blocks(deps)
    }

    /// One retry of what was owed when it began; what is owed again meanwhile
    /// (a newer failure) stays owed.
    async fn retry(&self, io: &impl Io, tally: &Tally) {
        let (all, tables, began) = {
            let owed = self.lock();
            (owed.all, owed.tables.clone(), owed.count)
        };
        if all.is_some() && io.invalidate_all().await.is_ok() {
            // Everything was dropped: every table owed before it is cleared.
            let mut owed = self.lock();
            owed.all = owed.all.filter(|n| *n > began);
            owed.tables.retain(|_, n| *n > began);
            return;
        }
        for table in tables.keys() {
            if io.invalidate_table(table).await.is_ok() {
                tally.retried(table);
                let mut owed = self.lock();
                if owed.tables.get(table).is_some_and(|n| *n <= began) {
                    owed.tables.remove(table);
                }
            }
        }
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

/// Clears the retrying flag when the retry ends, or its future is dropped.
struct Retrying<'a>(&'a AtomicBool);

impl Drop for Retrying<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
