//! The handle's counters: [`Stats`] and [`ModelStats`], and publishing them.

use std::collections::BTreeMap;

use super::Cacheops;
use crate::error::Result;
use crate::protocol::stats::{ModelStats, Stats};
use crate::publish::{flush, spawn_publisher};

impl Cacheops {
    /// Counters since this handle was made.
    pub fn stats(&self) -> Stats {
        let mut stats = self.core().tally.snapshot();
        if let Some(local) = self.core().store().local_tier() {
            stats.local_hits = local.hits;
            stats.local_ready = local.ready;
        }
        stats
    }

    /// Starts the thread that publishes the registry and the counters of this
    /// handle to Redis (a no-op for other stores).
    pub(crate) fn start_publisher(&self) {
        if let Some(target) = self.publish_target() {
            spawn_publisher(target.clone(), self.core().tally.tables().clone());
        }
    }

    /// Counters per model label since this handle was made (see [`ModelStats`]).
    ///
    /// ```
    /// let cache = cacheops::Cacheops::new(cacheops::Config::builder().url("memory://").build())?;
    /// assert!(cache.model_stats().is_empty());
    /// # Ok::<(), cacheops::Error>(())
    /// ```
    pub fn model_stats(&self) -> BTreeMap<String, ModelStats> {
        self.core().tally.tables().snapshot()
    }

    /// Publishes every compiled-in model to Redis now (the handle also does it by
    /// itself shortly after it is made). A no-op for non-Redis stores.
    pub fn publish_registry(&self) -> Result<()> {
        let Some(target) = self.publish_target() else {
            return Ok(());
        };
        crate::registry::publish(target.connection(&mut None)?, target)
    }

    /// Sends the per-model counts not yet published to Redis now, instead of
    /// within the next second. A no-op for non-Redis stores.
    pub fn publish_stats(&self) -> Result<()> {
        let Some(target) = self.publish_target() else {
            return Ok(());
        };
        flush(
            self.core().tally.tables(),
            target.connection(&mut None)?,
            target,
        )
    }
}

/// [`crate::Cacheops::stats`] of the process-wide handle.
pub fn stats() -> Result<Stats> {
    Ok(super::global()?.stats())
}

/// [`crate::Cacheops::model_stats`] of the process-wide handle.
pub fn model_stats() -> Result<BTreeMap<String, ModelStats>> {
    Ok(super::global()?.model_stats())
}
