//! Counters: per handle ([`Stats`]) and per model ([`ModelStats`]).
//!
//! Per-model counters are kept by a thin wrapper around the handle's store
//! ([`Counted`]): every cache lookup and every row or table invalidation passes
//! through it with its tables, so the read path needs no extra argument and the
//! counting costs a read lock and an atomic add. Each event is also a `tracing`
//! event (target `cacheops::stats`: hits and misses at TRACE, invalidations at
//! DEBUG).
//!
//! A background thread per Redis-backed handle publishes the per-model counters to
//! the hash `P:stats` at most once per second (`HINCRBY` of what accumulated since
//! the last flush, one pipeline), so `cacheops-cli stats` can show them; a hit
//! never waits for it. The same thread publishes the model registry first (see
//! `registry.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::deps::Deps;
use crate::error::Result;
use crate::model::model_of_table;
use crate::store::{
    CacheKey, Doing, Fence, LocalStats, LockStore, Phase, QueryStore, RowState, SimpleStore, Store,
};

/// Counters of one handle, as atomics.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) missed: AtomicU64,
    pub(crate) too_large: AtomicU64,
}

impl Counters {
    /// The current values.
    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            refused_fills: self.refused.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            missed_invalidations: self.missed.load(Ordering::Relaxed),
            too_large: self.too_large.load(Ordering::Relaxed),
            local_hits: 0,
            local_ready: false,
        }
    }
}

/// Counters of one handle since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Reads served from the cache.
    pub hits: u64,
    /// Reads that went to the database (including bypassed ones).
    pub misses: u64,
    /// Fills refused because an invalidation happened while the SQL ran.
    pub refused_fills: u64,
    /// Row, model and table invalidations sent.
    pub invalidations: u64,
    /// Store errors: each one returned, degraded to the database, or (a failed
    /// store of a computed result) logged while the result was returned.
    pub errors: u64,
    /// Invalidations owed by committed writes that could not reach the store (see
    /// [`crate::Cacheops::on_missed_invalidation`]); each is also in `errors`.
    pub missed_invalidations: u64,
    /// Values not stored because their encoding is larger than the maximum value
    /// size ([`ConfigBuilder::max_value_size`](crate::ConfigBuilder::max_value_size)).
    pub too_large: u64,
    /// Hits served by the local tier, without a round trip (included in `hits`).
    pub local_hits: u64,
    /// Whether the local tier serves now: configured, and subscribed to news.
    pub local_ready: bool,
}

/// Counters of one model (or of a table no registered model maps).
///
/// A cached read counts for every table it depends on: a join of articles and
/// categories served from the cache is a hit of both models. Reads that bypass the
/// cache (caching off, SQL not understood, a pending invalidation) are not counted
/// here, only in [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelStats {
    /// Cache lookups that found a value.
    pub hits: u64,
    /// Cache lookups that found none (or a stale one).
    pub misses: u64,
    /// Row and table invalidations of this model sent by this process.
    pub invalidations: u64,
}

/// What happened to a table, for the counters and for tracing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    Hit,
    Miss,
    Invalidation,
}

impl Event {
    /// The field suffix in `P:stats`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Event::Hit => "hits",
            Event::Miss => "misses",
            Event::Invalidation => "invalidations",
        }
    }
}

/// One table's counters: totals, and what is not yet published to Redis.
struct TableCounters {
    label: Box<str>,
    totals: [AtomicU64; 3],
    pending: [AtomicU64; 3],
}

impl TableCounters {
    fn bump(&self, table: &str, event: Event) {
        let i = event as usize;
        self.totals[i].fetch_add(1, Ordering::Relaxed);
        self.pending[i].fetch_add(1, Ordering::Relaxed);
        let label = &*self.label;
        match event {
            Event::Invalidation => {
                tracing::debug!(target: "cacheops::stats", label, table, "invalidation")
            }
            Event::Hit => tracing::trace!(target: "cacheops::stats", label, table, "hit"),
            Event::Miss => tracing::trace!(target: "cacheops::stats", label, table, "miss"),
        }
    }
}

/// Per-model counters of one handle, keyed by table.
#[derive(Default)]
pub(crate) struct ModelCounters {
    by_table: RwLock<HashMap<Box<str>, Arc<TableCounters>>>,
}

impl ModelCounters {
    /// Counts `event` on `table` and emits its tracing event. The common case
    /// (a table seen before) takes only the read lock and two atomic adds.
    pub(crate) fn count(&self, table: &str, event: Event) {
        if let Some(counters) = self.read().get(table) {
            return counters.bump(table, event);
        }
        self.insert(table).bump(table, event);
    }

    fn insert(&self, table: &str) -> Arc<TableCounters> {
        let label = model_of_table(table).map_or(table, |m| m.label);
        // A poisoned lock only means a thread panicked while inserting a complete
        // entry: the map is consistent.
        let mut map = self.by_table.write().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(table.into()).or_insert_with(|| {
            Arc::new(TableCounters {
                label: label.into(),
                totals: Default::default(),
                pending: Default::default(),
            })
        });
        entry.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Box<str>, Arc<TableCounters>>> {
        self.by_table.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Totals by model label (tables of one label are summed).
    pub(crate) fn snapshot(&self) -> BTreeMap<String, ModelStats> {
        let mut out: BTreeMap<String, ModelStats> = BTreeMap::new();
        for counters in self.read().values() {
            let total = |i: usize| counters.totals[i].load(Ordering::Relaxed);
            let entry = out.entry(counters.label.to_string()).or_default();
            entry.hits += total(0);
            entry.misses += total(1);
            entry.invalidations += total(2);
        }
        out
    }

    /// Takes what accumulated since the last call: `(label:event, count)`.
    pub(crate) fn take_pending(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for counters in self.read().values() {
            for event in [Event::Hit, Event::Miss, Event::Invalidation] {
                let n = counters.pending[event as usize].swap(0, Ordering::Relaxed);
                if n > 0 {
                    out.push((format!("{}:{}", counters.label, event.name()), n));
                }
            }
        }
        out
    }

    /// Puts back counts [`ModelCounters::take_pending`] took but could not publish.
    pub(crate) fn restore_pending(&self, taken: &[(String, u64)]) {
        let map = self.read();
        for (field, n) in taken {
            let Some((label, event)) = field.rsplit_once(':') else {
                continue;
            };
            let i = ["hits", "misses", "invalidations"]
                .iter()
                .position(|e| *e == event);
            let counters = map.values().find(|c| &*c.label == label);
            if let (Some(i), Some(c)) = (i, counters) {
                c.pending[i].fetch_add(*n, Ordering::Relaxed);
            }
        }
    }
}

/// The handle's store, counting per table what passes through it.
pub(crate) struct Counted {
    pub(crate) inner: Box<dyn Store>,
    pub(crate) counters: Arc<ModelCounters>,
}

impl Counted {
    fn count_tables(&self, deps: &Deps, event: Event) {
        for (table, _) in &deps.tables {
            self.counters.count(table, event);
        }
    }
}

impl QueryStore for Counted {
    /// A found value counts as a hit even in the rare case the caller then fails to
    /// decode it (and reads the database): the store did serve it.
    fn lookup(&self, key: CacheKey, deps: &Deps) -> Result<Option<Vec<u8>>> {
        let found = self.inner.lookup(key, deps)?;
        let event = if found.is_some() {
            Event::Hit
        } else {
            Event::Miss
        };
        self.count_tables(deps, event);
        Ok(found)
    }

    fn fence(&self, deps: &Deps, ttl: Duration) -> Result<Fence> {
        self.inner.fence(deps, ttl)
    }

    fn store(&self, key: CacheKey, fence: &Fence, payload: &[u8], ttl: Duration) -> Result<bool> {
        self.inner.store(key, fence, payload, ttl)
    }

    fn invalidate_rows(&self, table: &str, rows: &[RowState<'_>]) -> Result<()> {
        self.counters.count(table, Event::Invalidation);
        self.inner.invalidate_rows(table, rows)
    }

    fn invalidate_table(&self, table: &str) -> Result<()> {
        self.counters.count(table, Event::Invalidation);
        self.inner.invalidate_table(table)
    }

    fn invalidate_all(&self) -> Result<()> {
        self.inner.invalidate_all()
    }

    fn delete(&self, key: CacheKey) -> Result<()> {
        self.inner.delete(key)
    }

    fn local_tier(&self) -> Option<LocalStats> {
        self.inner.local_tier()
    }
}

impl SimpleStore for Counted {
    fn simple_get(&self, key: CacheKey) -> Result<Option<Vec<u8>>> {
        self.inner.simple_get(key)
    }

    fn simple_set(&self, key: CacheKey, payload: &[u8], ttl: Duration) -> Result<()> {
        self.inner.simple_set(key, payload, ttl)
    }

    fn simple_delete(&self, key: CacheKey) -> Result<()> {
        self.inner.simple_delete(key)
    }
}

impl LockStore for Counted {
    fn try_lock(&self, key: CacheKey, token: &str, ttl: Duration) -> Result<bool> {
        self.inner.try_lock(key, token, ttl)
    }

    fn unlock(&self, key: CacheKey, token: &str) -> Result<()> {
        self.inner.unlock(key, token)
    }
}

/// Sends the pending per-model counts to `target`'s `P:stats` in one pipeline; on
/// failure they stay pending for the next flush.
pub(crate) fn flush(
    counters: &ModelCounters,
    con: &mut redis::Connection,
    target: &crate::registry::Target,
) -> Result<()> {
    let pending = counters.take_pending();
    if pending.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    let stats_key = target.stats_key();
    for (field, n) in &pending {
        pipe.hincr(&stats_key, field, *n).ignore();
    }
    pipe.exec(con).map_err(|e| {
        counters.restore_pending(&pending);
        Doing::PUBLISH_STATS.failed(e, Phase::Command(target.timeout))
    })
}

/// How often the publisher flushes.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Starts the publisher thread of a Redis-backed handle: it publishes the model
/// registry once, then flushes the counters every second. Once the handle is gone
/// (the thread holds the last reference) it flushes one last time and ends.
/// Failures are logged and retried; they never reach the application.
pub(crate) fn spawn_publisher(target: crate::registry::Target, counters: Arc<ModelCounters>) {
    let spawned = std::thread::Builder::new()
        .name("cacheops-stats".into())
        .spawn(move || publisher_loop(&target, &counters));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cacheops: could not start the stats publisher");
    }
}

fn publisher_loop(target: &crate::registry::Target, counters: &Arc<ModelCounters>) {
    let mut con = None;
    let mut registry_published = false;
    loop {
        if !registry_published {
            registry_published = attempt(target, &mut con, "publishing the model registry", |c| {
                crate::registry::publish(c, target)
            });
        }
        std::thread::sleep(FLUSH_EVERY);
        let last = Arc::strong_count(counters) == 1;
        attempt(target, &mut con, "publishing stats", |c| {
            flush(counters, c, target)
        });
        if last {
            return;
        }
    }
}

/// Runs `f` on the publisher's connection (opened if needed). A failure is logged
/// at DEBUG (Redis being down is reported by the cache itself) and drops the
/// connection, which may be out of step.
fn attempt(
    target: &crate::registry::Target,
    con: &mut Option<redis::Connection>,
    what: &str,
    f: impl FnOnce(&mut redis::Connection) -> Result<()>,
) -> bool {
    match target.connection(con).and_then(f) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "cacheops: {what} failed; will retry");
            *con = None;
            false
        }
    }
}

impl crate::Cacheops {
    /// Starts the thread that publishes the registry and the counters of this
    /// handle to Redis (a no-op for other stores).
    pub(crate) fn start_publisher(&self) {
        let (counters, target) = self.model_counters();
        if let Some(target) = target {
            spawn_publisher(target.clone(), counters.clone());
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
        self.model_counters().0.snapshot()
    }

    /// Publishes every compiled-in model to Redis now (the handle also does it by
    /// itself shortly after it is made). A no-op for non-Redis stores.
    pub fn publish_registry(&self) -> Result<()> {
        let Some(target) = self.model_counters().1 else {
            return Ok(());
        };
        crate::registry::publish(target.connection(&mut None)?, target)
    }

    /// Sends the per-model counts not yet published to Redis now, instead of
    /// within the next second. A no-op for non-Redis stores.
    pub fn publish_stats(&self) -> Result<()> {
        let (counters, Some(target)) = self.model_counters() else {
            return Ok(());
        };
        flush(counters, target.connection(&mut None)?, target)
    }
}

/// [`crate::Cacheops::stats`] of the process-wide handle.
pub fn stats() -> Result<Stats> {
    Ok(crate::global()?.stats())
}

/// [`crate::Cacheops::model_stats`] of the process-wide handle.
pub fn model_stats() -> Result<BTreeMap<String, ModelStats>> {
    Ok(crate::global()?.model_stats())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_label_and_publishes_each_count_once() {
        let counters = ModelCounters::default();
        counters.count("t", Event::Hit);
        counters.count("t", Event::Hit);
        counters.count("t", Event::Invalidation);
        let want = ModelStats {
            hits: 2,
            misses: 0,
            invalidations: 1,
        };
        assert_eq!(counters.snapshot()["t"], want);
        let mut taken = counters.take_pending();
        taken.sort();
        assert_eq!(taken, [("t:hits".into(), 2), ("t:invalidations".into(), 1)]);
        assert!(counters.take_pending().is_empty());
        counters.restore_pending(&taken);
        assert_eq!(counters.take_pending().len(), 2);
        assert_eq!(counters.snapshot()["t"], want);
    }
}
