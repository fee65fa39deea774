//! [`AsyncCacheConnection`]: the diesel-async connections cacheops reads and
//! writes through (feature `async`).

use diesel_async::{AsyncConnection, TransactionManager};

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

    /// Whether a miss read on this connection now may store its result. Not
    /// public API.
    #[doc(hidden)]
    fn __fills_may_store(&mut self) -> bool {
        !self.__in_transaction()
    }
}

#[cfg(feature = "postgres")]
impl AsyncCacheConnection for diesel_async::AsyncPgConnection {}

#[cfg(feature = "sqlite")]
impl AsyncCacheConnection
    for diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>
{
}
