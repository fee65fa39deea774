//! Connections cacheops works through.
//!
//! [`CacheConnection`] is implemented for Diesel's own connections (and for
//! [`CachedConnection`], which sees every statement): it tells the read path and the
//! write helpers what the connection knows about its transaction.
//!
//! The types `CachedConnection`'s Diesel impls name (its transaction manager, its
//! cursors, the rows automatic caching serves, and the backend trait it needs)
//! are public here so they can be named; an application rarely writes them.

#[cfg(all(feature = "async", feature = "postgres"))]
mod async_cached;
mod cached;
mod catalog;
mod compat;
mod effect;
#[cfg(feature = "async")]
mod nonblocking;
mod rewrite;
#[cfg(feature = "async")]
mod source;
mod touched;
mod tracked;

use diesel::connection::{Connection, TransactionManager};
use diesel::result::QueryResult;

use crate::error::{Error, ErrorKind, Result};
use crate::transaction::Hook;
use crate::transaction::{conn_id, in_transaction, plain_on_commit};

pub use crate::automatic::{CachedCursor, CachedField, CachedRow, NoReplay, ReplayBackend};
#[cfg(feature = "postgres")]
pub use crate::automatic::{ReplayedField, ReplayedRow};
#[cfg(all(feature = "async", feature = "postgres"))]
pub use async_cached::{AsyncCachedConnection, AsyncCachedTransactionManager};
pub use cached::{CachedConnection, CachedTransactionManager, SettlingCursor};
#[cfg(feature = "async")]
pub use nonblocking::AsyncCacheConnection;
#[cfg(all(feature = "async", feature = "sqlite"))]
pub use nonblocking::AsyncCachedSqliteConnection;
#[cfg(feature = "async")]
pub(crate) use nonblocking::{begin_own, end_own, old_and_new_async};
pub(crate) use rewrite::{parse_update, Columns, UpdatePlan};
#[cfg(feature = "async")]
pub(crate) use source::reading_of;
#[cfg(feature = "async")]
pub use source::{AsyncReadSource, Reading};
pub(crate) use touched::{old_and_new, Typed};
#[cfg(feature = "postgres")]
pub(crate) use touched::{DecodeRow, Named};
use tracked::Depth;
#[cfg(feature = "async")]
pub(crate) use tracked::Scope;
pub use tracked::Tracked;

/// A Diesel connection cacheops can read and write through.
///
/// Implemented for `PgConnection` and `SqliteConnection` (per enabled feature) and
/// for [`CachedConnection`]. A connection type of your own can opt in with an empty
/// `impl CacheConnection for MyConnection {}`: cacheops then treats it like a plain
/// connection (no cache inside transactions).
///
/// Its backend is a [`crate::CacheBackend`]; the bound names automatic caching's
/// extension of it, which every such backend implements, so that code generic over
/// a `CacheConnection` can load through a [`CachedConnection`] of it.
pub trait CacheConnection: Connection<Backend: ReplayBackend> {
    /// The transaction tracking of a connection that sees every statement;
    /// `None` for plain connections. Not public API.
    #[doc(hidden)]
    fn __tracked(&mut self) -> Option<&mut Tracked> {
        None
    }

    /// Begins the transaction of a write that reads its rows before it changes
    /// them (outside any transaction). Not public API.
    #[doc(hidden)]
    fn __begin_write(&mut self) -> QueryResult<()> {
        Self::TransactionManager::begin_transaction(self)
    }

    /// Whether a transaction is open: Diesel's, or (on a connection that sees
    /// every statement) one begun by raw SQL. Not public API.
    #[doc(hidden)]
    fn __in_transaction(&mut self) -> bool {
        in_transaction(self)
    }

    /// Whether each statement of the open transaction reads the data committed
    /// before it started (PostgreSQL's READ COMMITTED), rather than a snapshot
    /// taken earlier in the transaction. Asked once per transaction, on its first
    /// miss; `false` when it cannot be told. Not public API.
    #[doc(hidden)]
    fn __statements_read_latest(&mut self) -> bool {
        false
    }

    /// What this connection knows of the database, user and schema search path
    /// it reads, hashed (see [`CachedConnection`]); `None` for a plain connection,
    /// which would need a round trip per call to find out. Not public API.
    #[doc(hidden)]
    fn __identity(&mut self) -> Option<u128> {
        None
    }

    /// Asks the database which database, user and schema search path this
    /// session reads; `None` when it cannot tell. Not public API.
    #[doc(hidden)]
    fn __database_identity(&mut self) -> Option<String> {
        None
    }

    /// Whether a transaction is open on the session, asked of the database after
    /// a statement that may have ended one failed; `None` when it cannot tell.
    /// Not public API.
    #[doc(hidden)]
    fn __transaction_open(&mut self) -> Option<bool> {
        None
    }

    /// Whether the table `table` (as written, maybe schema-qualified) has every
    /// column of `columns`; `None` when it cannot tell. Not public API.
    #[doc(hidden)]
    fn __has_columns(&mut self, table: &str, columns: &[&str]) -> Option<bool> {
        let _ = (table, columns);
        None
    }

    /// Every `(table, column)` whose collation compares other than by bytes
    /// (PostgreSQL's non-deterministic collations, SQLite's `NOCASE`, `RTRIM`), in
    /// lower case; `None` when it cannot tell. Not public API.
    #[doc(hidden)]
    fn __inexact_columns(&mut self) -> Option<Vec<(String, String)>> {
        None
    }

    /// Every function called `name` (in `schema`, when given) the database
    /// knows, as `(schema, provolatile)` pairs; `None` when it cannot tell (no
    /// catalog, or the lookup failed). Not public API.
    #[doc(hidden)]
    fn __catalog_functions(
        &mut self,
        schema: Option<&str>,
        name: &str,
    ) -> Option<Vec<(String, String)>> {
        let _ = (schema, name);
        None
    }

    /// Whether a miss read on this connection now may store its result. Not
    /// public API.
    #[doc(hidden)]
    fn __fills_may_store(&mut self) -> bool {
        !in_transaction(self)
    }
}

/// Runs a cacheops write helper's statements: a connection that sees every
/// statement must not record them again, the helper invalidates them itself.
pub(crate) fn as_helper<C: CacheConnection, T>(conn: &mut C, f: impl FnOnce(&mut C) -> T) -> T {
    within(conn, |t| &t.helper, f)
}

/// Runs an explicit `.cached()` call's query: it caches its typed result itself,
/// so a connection that caches reads automatically must not cache its rows too.
pub(crate) fn explicitly<C: CacheConnection, T>(conn: &mut C, f: impl FnOnce(&mut C) -> T) -> T {
    within(conn, |t| &t.explicit, f)
}

/// Runs `f` with one more scope of the kind `depth` picks open on a tracking
/// connection (plain connections track nothing).
fn within<C: CacheConnection, T>(
    conn: &mut C,
    depth: fn(&Tracked) -> &Depth,
    f: impl FnOnce(&mut C) -> T,
) -> T {
    let _scope = conn.__tracked().map(|tracked| depth(tracked).scope());
    f(conn)
}

/// The database identity of a call on `conn` through `handle` (see
/// [`crate::protocol::key::identity`]).
pub(crate) fn identity_of<C: CacheConnection>(handle: &crate::Cacheops, conn: &mut C) -> u128 {
    crate::protocol::key::identity(handle.config().database, conn.__identity())
}

/// Whether a miss on `conn` may store what it read. The race fence is read just
/// before the query runs, so it vouches only for a query that reads the data
/// committed by then: outside a transaction, or in one whose every statement reads
/// the latest committed data. A REPEATABLE READ or SERIALIZABLE transaction (and
/// any SQLite one) reads a snapshot that may predate invalidations the fence can no
/// longer see, so its misses are served but not stored.
pub(crate) fn fills_may_store<C: CacheConnection>(conn: &mut C) -> bool {
    conn.__fills_may_store()
}

/// Whether a read on `conn` may use the cache now: outside any transaction, or
/// inside one that a tracking connection knows has not written yet.
pub(crate) fn reads_may_use_cache<C: CacheConnection>(conn: &mut C) -> bool {
    match conn.__tracked() {
        Some(tracked) => tracked.reads_may_use_cache(),
        None => !in_transaction(conn),
    }
}

/// Runs `hook` once the transaction open on `conn` has committed, after the
/// transaction's invalidations were sent; at once when no transaction is open.
///
/// A hook registered in a savepoint that is rolled back never runs; one in a
/// released savepoint waits for the outermost COMMIT. Hooks run in the order they
/// were registered, even when an invalidation failed (the data is committed).
///
/// Works on a [`CachedConnection`] in any transaction, and on a plain connection
/// inside [`Cacheops::transaction`](crate::Cacheops::transaction). A plain
/// connection inside a transaction cacheops did not open gives an
/// [`ErrorKind::Transaction`] error: its COMMIT cannot be seen, and running the
/// hook now would run it before the data is visible.
///
/// ```no_run
/// # use diesel::prelude::*;
/// # fn run(conn: &mut cacheops::CachedConnection<PgConnection>) -> QueryResult<()> {
/// conn.transaction(|conn| {
///     diesel::sql_query("UPDATE articles SET views = 0").execute(conn)?;
///     cacheops::on_commit(conn, || println!("committed and invalidated"))
///         .map_err(|e| diesel::result::Error::QueryBuilderError(Box::new(e)))?;
///     Ok(())
/// })
/// # }
/// ```
pub fn on_commit<C: CacheConnection>(
    conn: &mut C,
    hook: impl FnOnce() + Send + 'static,
) -> Result<()> {
    let hook: Hook = Box::new(hook);
    let unqueued = match conn.__tracked() {
        Some(tracked) => tracked.on_commit(hook),
        None => plain_hook(conn, hook)?,
    };
    if let Some(hook) = unqueued {
        hook();
    }
    Ok(())
}

/// [`on_commit`] on a plain connection: queued inside `Cacheops::transaction`,
/// handed back outside any transaction, refused inside one cacheops did not open.
fn plain_hook<C: CacheConnection>(conn: &mut C, hook: Hook) -> Result<Option<Hook>> {
    let unqueued = plain_on_commit(conn_id(conn), hook);
    if unqueued.is_some() && in_transaction(conn) {
        return Err(Error::new(
            ErrorKind::Transaction,
            "on_commit on a plain connection inside a transaction cacheops did not \
             open: use Cacheops::transaction or a CachedConnection",
        ));
    }
    Ok(unqueued)
}

/// A cacheops error where Diesel expects its own.
fn into_diesel(e: crate::Error) -> diesel::result::Error {
    e.into_diesel()
}
