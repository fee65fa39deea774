//! Automatic caching: ordinary Diesel reads through a [`crate::CachedConnection`]
//! served from the cache, without `.cached()`.
//!
//! A read is cached automatically when the op inferred from its SQL (`infer.rs`)
//! is one its model's profile enables. Its result is stored as raw rows
//! (`rows.rs`, their cells in one buffer: `cells.rs`) and handed back to Diesel
//! as rows of its own (`replay.rs`), so any Rust type Diesel deserialises the
//! rows into reads the same entry. The read-through itself, race fence and
//! failure handling included, is `.cached()`'s (`fill.rs`).

mod cells;

mod replay;
mod rows;

use diesel::query_builder::QueryFragment;
use diesel::QueryResult;

use crate::analyse::analyse_rendered;
use crate::backend::CacheBackend;
use crate::connection::Tracked;
use crate::error::{Error, ErrorKind};
use crate::protocol::key::rows_key;
use crate::protocol::read_through::{read_through_storable, Plan, Storable};

pub(crate) use replay::Replay;
pub use replay::{CachedCursor, CachedField, CachedRow, NoReplay};
#[cfg(feature = "postgres")]
pub use replay::{ReplayedField, ReplayedRow};
pub(crate) use rows::RawRows;

/// Where and for how long the read `query` (rendered as `sql`) is cached
/// automatically; `None` when it goes straight to the database.
pub(crate) fn plan<DB, Q>(tracked: &Tracked, identity: u128, sql: String, query: &Q) -> Option<Plan>
where
    DB: CacheBackend,
    Q: QueryFragment<DB> + ?Sized,
{
    let handle = &tracked.handle;
    if !DB::Replayed::POSSIBLE || !handle.config().enabled || !tracked.reads_may_be_automatic() {
        return None;
    }
    let read = handle.sql().read_of(&sql, DB::DIALECT)?;
    // No profile means "not cached", as for a model without a pattern in django.
    let profile = handle.profile_of_table(&read.table).ok()?;
    if !profile.ops.contains(read.op) {
        return None;
    }
    // A query that cannot be analysed still runs, uncached, as it would unwrapped.
    let analysis = match analyse_rendered::<DB, Q>(handle, sql, query) {
        Ok(analysis) => analysis?,
        Err(e) => {
            tracing::warn!(error = %e, "cacheops: read not cached automatically");
            return None;
        }
    };
    let key = rows_key(DB::NAME, identity, &analysis.sql, &analysis.binds);
    Some(Plan {
        key,
        deps: analysis.deps_by_key(handle, key),
        ttl: profile.timeout,
        lock: false,
    })
}

/// The rows of a planned read: from the cache, or read to the end by `run` (which
/// says whether they may be stored) and stored. A database error is returned as
/// the database returned it.
pub(crate) fn serve<DB: CacheBackend>(
    tracked: &Tracked,
    plan: Plan,
    run: impl FnOnce(&Storable) -> crate::Result<RawRows>,
) -> QueryResult<Vec<DB::Replayed>> {
    let storable = Storable::default();
    let raw = read_through_storable(tracked.handle.core(), Some(plan), &storable, || {
        run(&storable)
    })
    .map_err(Error::into_diesel)?;
    DB::Replayed::replay(raw).ok_or_else(|| {
        Error::new(ErrorKind::NotCacheable, "this backend cannot replay rows").into_diesel()
    })
}
