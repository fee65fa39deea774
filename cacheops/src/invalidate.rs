//! Manual invalidation: of an object, a model, a table, or everything we cached.
//!
//! Row invalidation matches the row's values against every condition scheme
//! cached for its table: one round trip, whatever the number of cached queries.
//!
//! When the store cannot be reached, an invalidation is never silently dropped:
//! its tables are remembered and bypass the cache in this process until a
//! table-wide invalidation of them gets through (retried before each read).
//! Other processes cannot learn of it while the store is unreachable; when Redis
//! itself restarts empty, every stamp is gone and nothing stale survives.

use crate::backend::CacheBackend;
use crate::error::{Error, Result};
use crate::model::{CacheRow, Cacheable, ModelInfo};
use crate::runtime::{global, Cacheops};
use crate::store::RowState;
use crate::value::Value;

impl Cacheops {
    /// Invalidates every cached query whose conditions `obj`'s values match.
    pub fn invalidate_obj<DB: CacheBackend, M: CacheRow<DB>>(&self, obj: &M) -> Result<()> {
        self.invalidate_objs::<DB, M>(std::slice::from_ref(obj))
    }

    /// [`Cacheops::invalidate_obj`] for several rows of one model, in one round trip.
    pub fn invalidate_objs<DB: CacheBackend, M: CacheRow<DB>>(&self, objs: &[M]) -> Result<()> {
        if objs.is_empty() {
            return Ok(());
        }
        let values = objs
            .iter()
            .map(CacheRow::row_values)
            .collect::<Result<Vec<_>>>()?;
        self.degraded(self.send_values(M::INFO, values))
    }

    /// Invalidates rows given as values of every column of `model`, in order; a
    /// failure is remembered (see [`Cacheops::remembered`]) and returned.
    pub(crate) fn send_values(&self, model: &ModelInfo, rows: Vec<Vec<Value>>) -> Result<()> {
        let rows: Vec<RowState<'_>> = rows
            .into_iter()
            .map(|values| RowState {
                table: model.table,
                columns: model.columns.iter().copied().zip(values).collect(),
            })
            .collect();
        self.count_invalidation();
        let sent = self.store().invalidate_rows(model.table, &rows);
        self.remembered(sent, &[model.table])
    }

    /// Invalidates every cached query that depends on model `M` at all.
    pub fn invalidate_model<M: Cacheable>(&self) -> Result<()> {
        self.invalidate_table(M::INFO.table)
    }

    /// Invalidates every cached query that depends on `table` at all.
    pub fn invalidate_table(&self, table: &str) -> Result<()> {
        self.degraded(self.send_table(table))
    }

    /// [`Cacheops::invalidate_table`], with a failure remembered and returned.
    pub(crate) fn send_table(&self, table: &str) -> Result<()> {
        self.count_invalidation();
        let sent = self.store().invalidate_table(table);
        self.remembered(sent, &[table])
    }

    /// Drops everything cached under this handle's prefix, and nothing else.
    /// An operator action: a failure is always returned, never degraded.
    pub fn invalidate_all(&self) -> Result<()> {
        self.count_invalidation();
        self.store().invalidate_all()
    }

    /// `sent`, after remembering a failure: reads of `tables` then bypass the
    /// cache until a table-wide invalidation of them gets through.
    pub(crate) fn remembered(&self, sent: Result<()>, tables: &[&str]) -> Result<()> {
        sent.inspect_err(|_| self.invalidation_failed(tables.iter().copied()))
    }

    /// A failed invalidation the caller asked for: returned, or degraded (logged,
    /// `Ok`) when the handle degrades on failure.
    pub(crate) fn degraded(&self, sent: Result<()>) -> Result<()> {
        sent.or_else(|e: Error| self.store_failed(e, "invalidation"))
    }
}

/// [`Cacheops::invalidate_obj`] on the process-wide handle.
///
/// ```no_run
/// # use cacheops::Cacheable;
/// # fn run<M: cacheops::CacheRow<diesel::pg::Pg>>(article: &M) -> cacheops::Result<()> {
/// cacheops::invalidate_obj::<diesel::pg::Pg, _>(article)?;
/// # Ok(()) }
/// ```
pub fn invalidate_obj<DB: CacheBackend, M: CacheRow<DB>>(obj: &M) -> Result<()> {
    global()?.invalidate_obj::<DB, M>(obj)
}

/// [`Cacheops::invalidate_model`] on the process-wide handle.
pub fn invalidate_model<M: Cacheable>() -> Result<()> {
    global()?.invalidate_model::<M>()
}

/// [`Cacheops::invalidate_table`] on the process-wide handle.
pub fn invalidate_table(table: &str) -> Result<()> {
    global()?.invalidate_table(table)
}

/// [`Cacheops::invalidate_all`] on the process-wide handle.
pub fn invalidate_all() -> Result<()> {
    global()?.invalidate_all()
}
