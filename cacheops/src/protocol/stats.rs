//! Counters: per handle ([`Stats`]) and per model ([`ModelStats`]), counted in
//! one place ([`Tally`]) by the read-through and the invalidations, once per
//! call. Per-model counting costs a read lock and an atomic add per table. Each
//! per-model event is also a `tracing` event (target `cacheops::stats`: hits and
//! misses at TRACE, invalidations at DEBUG). `publish.rs` sends the per-model
//! counters to Redis.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::deps::Deps;
use crate::model::model_of_table;

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

/// Every counter of one handle: the totals and the per-model ones.
#[derive(Default)]
pub(crate) struct Tally {
    totals: Counters,
    /// Shared with the stats publisher thread.
    tables: Arc<ModelCounters>,
}

impl Tally {
    /// A read through the cache: a hit or a miss, of every table of `deps` too
    /// (`None`: a read that bypassed the cache, counted in the totals only).
    pub(crate) fn read(&self, deps: Option<&Deps>, hit: bool) {
        let (total, event) = match hit {
            true => (&self.totals.hits, Event::Hit),
            false => (&self.totals.misses, Event::Miss),
        };
        total.fetch_add(1, Ordering::Relaxed);
        for (table, _) in deps.map_or(&[][..], |d| &d.tables[..]) {
            self.tables.count(table, event);
        }
    }

    /// An invalidation sent, of `table` if it names one.
    pub(crate) fn invalidated(&self, table: Option<&str>) {
        self.totals.invalidations.fetch_add(1, Ordering::Relaxed);
        if let Some(table) = table {
            self.tables.count(table, Event::Invalidation);
        }
    }

    /// A table-wide invalidation owed since a failure got through on retry:
    /// counted for its model (the totals count the invalidation that failed).
    pub(crate) fn retried(&self, table: &str) {
        self.tables.count(table, Event::Invalidation);
    }

    /// A fill the store refused: an invalidation landed while the SQL ran.
    pub(crate) fn refused(&self) {
        self.totals.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A store error.
    pub(crate) fn error(&self) {
        self.totals.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// An invalidation a committed write missed (also a store error).
    pub(crate) fn missed(&self) {
        self.error();
        self.totals.missed.fetch_add(1, Ordering::Relaxed);
    }

    /// A value not stored for its size.
    pub(crate) fn too_large(&self) {
        self.totals.too_large.fetch_add(1, Ordering::Relaxed);
    }

    /// The totals now.
    pub(crate) fn snapshot(&self) -> Stats {
        self.totals.snapshot()
    }

    /// The per-model counters.
    pub(crate) fn tables(&self) -> &Arc<ModelCounters> {
        &self.tables
    }
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
