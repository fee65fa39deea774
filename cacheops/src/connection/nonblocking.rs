//! [`AsyncCacheConnection`]: the diesel-async connections cacheops reads and
//! writes through (feature `async`).

use diesel::query_builder::{QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel_async::{AsyncConnection, TransactionManager};
use futures_util::StreamExt;

use super::rewrite::UpdatePlan;
use super::touched::{DecodeRow, OldAndNew, Pair, WithSql};
use crate::automatic::ReplayBackend;

/// A diesel-async connection cacheops can read and write through: the async
/// twin of [`CacheConnection`](super::CacheConnection).
///
/// Implemented for `AsyncPgConnection` (feature `postgres`) and for SQLite
/// through `SyncConnectionWrapper<SqliteConnection>` (feature `sqlite`). A
/// connection type of your own can opt in with an empty impl: cacheops then
/// treats it as a plain connection (no cache inside transactions).
pub trait AsyncCacheConnection: AsyncConnection<Backend: ReplayBackend> {
    /// Whether a transaction is open on the connection. Not public API.
    #[doc(hidden)]
    fn __in_transaction(&mut self) -> bool {
        let status = Self::TransactionManager::transaction_manager_status_mut(self);
        !matches!(status.transaction_depth(), Ok(None))
    }

    /// Whether a read on this connection may use the cache now. Not public API.
    #[doc(hidden)]
    fn __reads_may_use_cache(&mut self) -> bool {
        !self.__in_transaction()
    }

    /// What this connection knows of the database, user and schema search path
    /// it reads, hashed; `None` for a plain connection. Not public API.
    #[doc(hidden)]
    fn __identity(&mut self) -> Option<u128> {
        None
    }

    /// [`AsyncCacheConnection::__identity`] if it is known now, with no round
    /// trip: `None` when a statement made it unknown. Not public API.
    #[doc(hidden)]
    fn __known_identity(&mut self) -> Option<Option<u128>> {
        Some(self.__identity())
    }

    /// Whether a miss read on this connection now may store its result, asked
    /// before its SQL runs (a wrapper may ask the open transaction's isolation,
    /// once per transaction). Not public API.
    #[doc(hidden)]
    fn __fills_may_store(&mut self) -> impl std::future::Future<Output = bool> + Send {
        std::future::ready(!self.__in_transaction())
    }

    /// Learns what [`AsyncCacheConnection::__identity`] answers, if a statement
    /// made it unknown (a wrapper's connection is busy while its statement's
    /// future lives, so it learns it when asked). Not public API.
    #[doc(hidden)]
    fn __learn_identity(&mut self) -> impl std::future::Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// The transaction tracking of a connection that sees every statement;
    /// `None` for plain connections. Not public API.
    #[doc(hidden)]
    fn __tracked(&mut self) -> Option<&mut super::Tracked> {
        None
    }
}

#[cfg(feature = "postgres")]
impl AsyncCacheConnection for diesel_async::AsyncPgConnection {}

#[cfg(feature = "sqlite")]
impl AsyncCacheConnection
    for diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>
{
}

/// SQLite's async connection that sees every statement (see the impl of
/// [`AsyncCacheConnection`] for it): `AsyncCachedConnection` for SQLite.
#[cfg(feature = "sqlite")]
pub type AsyncCachedSqliteConnection = diesel_async::sync_connection_wrapper::SyncConnectionWrapper<
    super::CachedConnection<diesel::SqliteConnection>,
>;

/// SQLite's async connection that sees every statement: diesel-async runs every
/// SQLite statement on tokio's blocking pool, and the [`CachedConnection`]
/// inside invalidates there, as it does in blocking code. Its transactions
/// follow `CachedConnection`'s rules; cacheops cannot reach its tracking from
/// outside the blocking pool, so `.cached_async()` reads use the cache only
/// outside a transaction, and a helper's write is also seen (and invalidated
/// table-wide) by the connection inside.
///
/// [`CachedConnection`]: super::CachedConnection
#[cfg(feature = "sqlite")]
impl AsyncCacheConnection
    for diesel_async::sync_connection_wrapper::SyncConnectionWrapper<
        super::CachedConnection<diesel::SqliteConnection>,
    >
{
}

/// [`old_and_new`](super::old_and_new) on a diesel-async connection: the same
/// statements (the rewrite of `rewrite.rs`), the same decoding.
pub(crate) async fn old_and_new_async<C, T, D>(
    conn: &mut C,
    source: &T,
    plan: &UpdatePlan,
    open: bool,
) -> QueryResult<OldAndNew<D::Out>>
where
    C: AsyncCacheConnection,
    T: QueryFragment<C::Backend> + QueryId + Sync,
    D: DecodeRow<C::Backend>,
    D::Out: Send,
{
    match plan {
        UpdatePlan::Paired(sql) => {
            let pairs = load_all::<C, T, Pair<D>>(conn, source, sql).await?;
            Ok(pairs.into_iter().unzip())
        }
        UpdatePlan::PreRead { pre_read, update } => {
            begin_own(conn, open).await?;
            let rows = pre_read_then_update::<C, T, D>(conn, source, pre_read, update).await;
            end_own(conn, open, rows).await
        }
    }
}

/// Begins a transaction of a write's own, unless one is `open`: what reads its
/// rows before it changes them must see the rows it changes.
pub(crate) async fn begin_own<C: AsyncCacheConnection>(
    conn: &mut C,
    open: bool,
) -> QueryResult<()> {
    match open {
        true => Ok(()),
        false => C::TransactionManager::begin_transaction(conn).await,
    }
}

/// Ends the transaction [`begin_own`] began: commits if `result` is `Ok`,
/// rolls back otherwise (the statement's error says more than a failed
/// ROLLBACK would).
pub(crate) async fn end_own<C: AsyncCacheConnection, R>(
    conn: &mut C,
    open: bool,
    result: QueryResult<R>,
) -> QueryResult<R> {
    match (open, result) {
        (true, result) => result,
        (false, Ok(rows)) => C::TransactionManager::commit_transaction(conn)
            .await
            .map(|()| rows),
        (false, Err(e)) => {
            let _ = C::TransactionManager::rollback_transaction(conn).await;
            Err(e)
        }
    }
}

async fn pre_read_then_update<C, T, D>(
    conn: &mut C,
    source: &T,
    pre_read: &str,
    update: &str,
) -> QueryResult<OldAndNew<D::Out>>
where
    C: AsyncCacheConnection,
    T: QueryFragment<C::Backend> + QueryId + Sync,
    D: DecodeRow<C::Backend>,
    D::Out: Send,
{
    let old = load_all::<C, T, D>(conn, source, pre_read).await?;
    let new = load_all::<C, T, D>(conn, source, update).await?;
    Ok((old, new))
}

/// Every row of `source` run as `sql`, decoded by `D`.
async fn load_all<C, T, D>(conn: &mut C, source: &T, sql: &str) -> QueryResult<Vec<D::Out>>
where
    C: AsyncCacheConnection,
    T: QueryFragment<C::Backend> + QueryId + Sync,
    D: DecodeRow<C::Backend>,
    D::Out: Send,
{
    let prepare = D::NAMED_COLUMNS;
    let rows = conn.load(WithSql {
        sql,
        source,
        prepare,
    });
    let mut rows = std::pin::pin!(rows.await?);
    let mut out = Vec::new();
    while let Some(row) = rows.next().await {
        out.push(D::decode(&row?)?);
    }
    Ok(out)
}
