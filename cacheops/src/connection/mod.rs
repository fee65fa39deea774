//! Connections cacheops works through.
//!
//! [`CacheConnection`] is implemented for Diesel's own connections (and for
//! [`CachedConnection`], which sees every statement): it tells the read path and the
//! write helpers what the connection knows about its transaction.

mod tracked;

use diesel::connection::Connection;

use crate::backend::CacheBackend;

pub use tracked::Tracked;

/// A Diesel connection cacheops can read and write through.
///
/// Implemented for `PgConnection` and `SqliteConnection` (per enabled feature) and
/// for [`CachedConnection`]. A connection type of your own can opt in with an empty
/// `impl CacheConnection for MyConnection {}`: cacheops then treats it like a plain
/// connection (no cache inside transactions).
pub trait CacheConnection: Connection<Backend: CacheBackend> {
    /// The transaction tracking of a connection that sees every statement;
    /// `None` for plain connections. Not public API.
    #[doc(hidden)]
    fn __tracked(&mut self) -> Option<&mut Tracked> {
        None
    }
}

#[cfg(feature = "postgres")]
impl CacheConnection for diesel::pg::PgConnection {}

#[cfg(feature = "sqlite")]
impl CacheConnection for diesel::sqlite::SqliteConnection {}
