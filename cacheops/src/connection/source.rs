//! [`AsyncReadSource`]: what an async cached read runs its SQL on, and asks
//! before its key is computed (feature `async`).
//!
//! A read asks two things of its connection before it looks at the cache:
//! whether it may use the cache now (not inside a transaction) and which
//! database, user and schema path it reads (part of the key). It needs the
//! connection itself only on a miss. A connection the caller holds answers all
//! three at once; a pool checkout that waits for a miss
//! ([`Lazy`](crate::pool::Lazy), feature `deadpool`) answers the first two from
//! what the pool's connections read, so a hit holds no database connection.

use std::future::Future;

use super::AsyncCacheConnection;
use crate::error::Result;

/// What a read may do with the cache, and the identity its key is made with:
/// asked of an [`AsyncReadSource`] before the key is computed. Not public API.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    pub(crate) may_use: bool,
    pub(crate) identity: Option<u128>,
}

/// Where an async cached read gets its connection: a diesel-async connection
/// (any [`AsyncCacheConnection`]), or a [`Lazy`](crate::pool::Lazy) checkout of
/// a pool (feature `deadpool`), which takes a connection only when the read
/// misses. Every `.cached_async()` / `.cache_async()` load takes a `&mut` of
/// one.
pub trait AsyncReadSource: Send {
    /// The connection a miss runs its SQL on.
    type Connection: AsyncCacheConnection;

    /// Whether the read may use the cache, and the identity of what it reads.
    /// Not public API.
    #[doc(hidden)]
    fn __reading(&mut self) -> impl Future<Output = Result<Reading>> + Send;

    /// The connection for the read's SQL, and whether it reads what `reading`
    /// said (a result read otherwise must not be stored under that key). Not
    /// public API.
    #[doc(hidden)]
    fn __connection(
        &mut self,
        reading: Reading,
    ) -> impl Future<Output = Result<(&mut Self::Connection, bool)>> + Send;
}

impl<C: AsyncCacheConnection> AsyncReadSource for C {
    type Connection = C;

    fn __reading(&mut self) -> impl Future<Output = Result<Reading>> + Send {
        reading_of(self)
    }

    fn __connection(&mut self, _: Reading) -> impl Future<Output = Result<(&mut C, bool)>> + Send {
        std::future::ready(Ok((self, true)))
    }
}

/// What `conn` answers before a read: its identity learned if a statement made
/// it unknown, then whether the cache may be used.
pub(crate) async fn reading_of<C: AsyncCacheConnection>(conn: &mut C) -> Result<Reading> {
    conn.__learn_identity().await;
    Ok(Reading {
        may_use: conn.__reads_may_use_cache(),
        identity: conn.__identity(),
    })
}
