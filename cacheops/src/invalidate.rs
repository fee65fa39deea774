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
use crate::error::Result;
use crate::model::{CacheRow, Cacheable};
use crate::protocol::invalidate::{self, degraded, drop_all, send_rows, send_table};
use crate::runtime::{global, Cacheops};

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
        let core = self.core();
        let rows = invalidate::of_model(M::INFO, values);
        degraded(core, send_rows(core, M::INFO.table, &rows))
    }

    /// Invalidates every cached query that depends on model `M` at all.
    pub fn invalidate_model<M: Cacheable>(&self) -> Result<()> {
        self.invalidate_table(M::INFO.table)
    }

    /// Invalidates every cached query that depends on `table` at all.
    pub fn invalidate_table(&self, table: &str) -> Result<()> {
        degraded(self.core(), send_table(self.core(), table))
    }

    /// Drops everything cached under this handle's prefix, and nothing else.
    /// An operator action: a failure is always returned, never degraded.
    pub fn invalidate_all(&self) -> Result<()> {
        drop_all(self.core())
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
