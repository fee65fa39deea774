//! Automatic caching: ordinary Diesel reads through a [`crate::CachedConnection`]
//! served from the cache, without `.cached()`.
//!
//! A read is cached automatically when the op inferred from its SQL (`deps/infer.rs`)
//! is one its model's profile enables. Its result is stored as raw rows
//! (`rows.rs`, their cells in one buffer: `cells.rs`) and handed back to Diesel
//! as rows of its own (`replay.rs`), so any Rust type Diesel deserialises the
//! rows into reads the same entry. The read-through itself, race fence and
//! failure handling included, is `.cached()`'s (`protocol/read_through.rs`).

mod cells;

mod replay;
mod rows;

use std::num::NonZeroU32;

use diesel::backend::Backend;
use diesel::query_builder::QueryFragment;
use diesel::row::Row;
use diesel::QueryResult;

use crate::analyse::analyse_rendered;
use crate::backend::CacheBackend;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::key::rows_key;
use crate::protocol::read_through::{read_through_storable, Plan, Storable};
use crate::runtime::Cacheops;

pub(crate) use replay::Replay;
pub use replay::{CachedCursor, CachedField, CachedRow, NoReplay};
#[cfg(feature = "postgres")]
pub use replay::{ReplayedField, ReplayedRow};
pub(crate) use rows::RawRows;

/// What automatic caching needs of a backend beyond [`CacheBackend`]: how to
/// capture a row's cells and which rows replay them. Implemented (in `replay.rs`)
/// for every backend [`CacheBackend`] is, so it costs a user nothing; it lives
/// here rather than on [`CacheBackend`] so that the backend layer knows nothing
/// of automatic caching.
// Declared in mod.rs, not beside its impls in `replay.rs`: `rows.rs` captures
// through `raw_cell` and `replay.rs` replays `RawRows`, so in either file the two
// would import each other.
pub trait ReplayBackend: CacheBackend {
    /// Rows replayed from the cache by [`crate::CachedConnection`]'s automatic
    /// caching: [`crate::connection::ReplayedRow`] on PostgreSQL, the uninhabited
    /// [`crate::connection::NoReplay`] on SQLite (whose values cannot be rebuilt from bytes).
    type Replayed: for<'a> Row<'a, Self> + Replay;

    /// The type tag and bytes of a non-NULL value as the database returned it in
    /// a row, borrowed: what automatic caching stores of each cell, with no
    /// allocation of its own. An error on a backend that cannot replay rows
    /// ([`ReplayBackend::Replayed`]), which therefore never stores any.
    fn raw_cell<'v>(raw: &<Self as Backend>::RawValue<'v>) -> Result<(NonZeroU32, &'v [u8])>;
}

/// Where and for how long the read `query` (rendered as `sql`) is cached
/// automatically; `None` when it goes straight to the database. `eligible` is
/// the connection's verdict (no helper or explicit call runs the read, no open
/// level has written): passed in rather than read off the connection's tracking,
/// so that automatic caching needs nothing of the connection layer above it.
pub(crate) fn plan<DB, Q>(
    handle: &Cacheops,
    eligible: bool,
    identity: u128,
    sql: String,
    query: &Q,
) -> Option<Plan>
where
    DB: ReplayBackend,
    Q: QueryFragment<DB> + ?Sized,
{
    if !DB::Replayed::POSSIBLE || !handle.config().enabled || !eligible {
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
pub(crate) fn serve<DB: ReplayBackend>(
    handle: &Cacheops,
    plan: Plan,
    run: impl FnOnce(&Storable) -> crate::Result<RawRows>,
) -> QueryResult<Vec<DB::Replayed>> {
    let storable = Storable::default();
    let raw = read_through_storable(handle.core(), Some(plan), &storable, || run(&storable));
    replayed::<DB>(raw)
}

/// [`serve`] for an async connection, on the handle's async store: `run` reads
/// the rows, and says whether they may be stored (it may have to ask the
/// database, and runs only on a miss).
#[cfg(all(feature = "async", feature = "postgres"))]
pub(crate) async fn serve_async<DB: ReplayBackend>(
    handle: &Cacheops,
    plan: Plan,
    run: impl std::future::Future<Output = crate::Result<(RawRows, bool)>>,
) -> QueryResult<Vec<DB::Replayed>> {
    let core = handle.core();
    let io = core.nonblocking().map_err(Error::into_diesel)?;
    let storable = Storable::default();
    let compute = async {
        let (rows, may_store) = run.await?;
        storable.answer(|| may_store);
        Ok(rows)
    };
    let raw = crate::protocol::read_through::read_through_boxed(
        core,
        &io,
        Some(plan),
        &storable,
        compute,
    )
    .await;
    replayed::<DB>(raw)
}

/// The rows to hand Diesel from what the read-through returned.
fn replayed<DB: ReplayBackend>(raw: crate::Result<RawRows>) -> QueryResult<Vec<DB::Replayed>> {
    let raw = raw.map_err(Error::into_diesel)?;
    DB::Replayed::replay(raw).ok_or_else(|| {
        Error::new(ErrorKind::NotCacheable, "this backend cannot replay rows").into_diesel()
    })
}
