//! Pools whose cached reads take a database connection only on a miss
//! (feature `deadpool`).
//!
//! A cache hit needs no database connection, yet `pool.get().await?` before
//! every read holds one across the hit's round trip to Redis: with many tasks
//! the pool's size, not the cache, bounds how many reads are served at once.
//! [`CachedPool`] wraps diesel-async's deadpool [`Pool`]; its [`Lazy`] checkout
//! is passed where a read takes `&mut conn`, and checks a connection out only
//! when a read misses (or when asked, for a write).
//!
//! A key includes what the connection reads (database, user, schema search
//! path: see [`AsyncCachedConnection`](crate::connection::AsyncCachedConnection)),
//! so a `Lazy` read that holds no connection is keyed by what the pool's
//! connections read, learned from every connection the pool hands out (each
//! checkout learns its connection's identity) and from every connection given
//! back (a `SET search_path` on it is seen then). Once two of its connections
//! read differently the pool has no one identity: from then on every `Lazy`
//! read checks a connection out first, as a plain read does. A miss that
//! checks out a connection reading otherwise than the key said runs its SQL
//! there and does not store the result. Connections checked out of the inner
//! pool directly ([`CachedPool::pool`]) are not seen until they are checked
//! out through the `CachedPool` again.
//!
//! ```no_run
//! # use diesel::prelude::*;
//! # diesel::table! { articles (id) { id -> Integer, title -> Text } }
//! # #[derive(Queryable, serde::Serialize, serde::Deserialize)]
//! # struct Article { id: i32, title: String }
//! use cacheops::pool::CachedPool;
//! use cacheops::AsyncCachedQueryDsl;
//! use diesel_async::pooled_connection::deadpool::Pool;
//! use diesel_async::pooled_connection::AsyncDieselConnectionManager;
//! use diesel_async::AsyncPgConnection;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new("postgres://localhost/app");
//! let pool = CachedPool::new(Pool::builder(manager).max_size(8).build()?);
//! // In a request handler: no connection is checked out until a read misses.
//! let mut db = pool.lazy();
//! let article: Article = articles::table.find(7).cache_async().get_result(&mut db).await?;
//! // A write needs one: `connection()` checks it out (once per `Lazy`).
//! diesel_async::RunQueryDsl::execute(
//!     diesel::update(articles::table.find(7)).set(articles::title.eq("new")),
//!     db.connection().await?,
//! ).await?;
//! # Ok(()) }
//! ```

// The futures are `impl Future + Send` written by hand, not `async fn`, so that
// `Send` is proven here (see `query/nonblocking.rs`).
#![allow(clippy::manual_async_fn)]

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, PoisonError};

use deadpool::managed::Manager;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, PoolError};

use crate::connection::{reading_of, AsyncCacheConnection, AsyncReadSource, Reading};
use crate::error::{Error, ErrorKind, Result};

/// A deadpool pool of diesel-async connections whose [`Lazy`] reads take a
/// connection only on a miss; see the [module docs](self). Cheap to clone (the
/// clones share the pool and what it learned).
pub struct CachedPool<C: 'static>
where
    C: AsyncCacheConnection + Send,
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    pool: Pool<C>,
    seen: Arc<Identities>,
}

/// What the pool's connections read, shared by the pool and the connections
/// it hands out.
#[derive(Default)]
struct Identities(Mutex<Seen>);

/// What the pool's connections read, as far as its checkouts have seen.
#[derive(Clone, Copy, PartialEq, Debug, Default)]
enum Seen {
    /// No connection handed out yet.
    #[default]
    Nothing,
    /// Every connection seen reads this (`None`: a plain connection, keyed by
    /// the handle's database alone).
    One(Option<u128>),
    /// Two connections read differently: no read goes without a connection.
    Mixed,
}

impl Seen {
    /// What is known once a connection reading `identity` was seen too.
    fn and(self, identity: Option<u128>) -> Seen {
        match self {
            Seen::Nothing => Seen::One(identity),
            Seen::One(known) if known == identity => self,
            _ => Seen::Mixed,
        }
    }
}

impl<C: 'static> Clone for CachedPool<C>
where
    C: AsyncCacheConnection + Send,
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    fn clone(&self) -> Self {
        CachedPool {
            pool: self.pool.clone(),
            seen: self.seen.clone(),
        }
    }
}

impl<C> CachedPool<C>
where
    C: AsyncCacheConnection + Send + 'static,
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    /// Wraps `pool`; nothing is known of its connections until one is checked
    /// out.
    pub fn new(pool: Pool<C>) -> Self {
        CachedPool {
            pool,
            seen: Arc::default(),
        }
    }

    /// The deadpool pool inside (its status, its size). Connections checked
    /// out of it directly are not seen (see the [module docs](self)).
    pub fn pool(&self) -> &Pool<C> {
        &self.pool
    }

    /// A checkout that waits for the first read that misses, or for
    /// [`Lazy::connection`]: pass `&mut lazy` where a cached read takes
    /// `&mut conn`. Holds at most one connection, until it is dropped.
    pub fn lazy(&self) -> Lazy<C> {
        Lazy {
            pool: self.clone(),
            conn: None,
        }
    }

    /// A connection now, as `pool.get()`; what it reads is learned first.
    pub fn get(&self) -> impl Future<Output = Result<Pooled<C>>> + Send + '_ {
        async move {
            let mut object = self.pool.get().await.map_err(no_connection)?;
            object.__learn_identity().await;
            self.seen.saw(object.__identity());
            Ok(Pooled {
                object,
                seen: self.seen.clone(),
            })
        }
    }
}

impl Identities {
    /// The identity a read with no connection is keyed by, if the pool has one.
    fn one(&self) -> Option<Option<u128>> {
        match *self.lock() {
            Seen::One(identity) => Some(identity),
            Seen::Nothing | Seen::Mixed => None,
        }
    }

    /// Records a connection reading `identity`; says so once the pool is mixed.
    fn saw(&self, identity: Option<u128>) {
        let mut seen = self.lock();
        let was = *seen;
        *seen = was.and(identity);
        if *seen == Seen::Mixed && was != Seen::Mixed {
            tracing::warn!(
                "cacheops: a pooled connection reads another database, user or schema path \
                 than the others (a SET left on it?): every Lazy read now checks a connection out"
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        // A `Seen` is always whole: a panic elsewhere cannot leave it half-written.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn no_connection(e: deadpool::managed::PoolError<PoolError>) -> Error {
    Error::new(ErrorKind::Database, "no connection from the pool").with_source(e)
}

/// A connection checked out of a [`CachedPool`]: derefs to it, and when it is
/// given back tells the pool what it read then.
pub struct Pooled<C: 'static>
where
    C: AsyncCacheConnection + Send,
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    object: Object<C>,
    seen: Arc<Identities>,
}

impl<C: 'static> Deref for Pooled<C>
where
    C: AsyncCacheConnection + Send,
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    type Target = C;

    fn deref(&self) -> &C {
        &self.object
    }
}

impl<C: 'static> DerefMut for Pooled<C>
where
    C: AsyncCacheConnection + Send,
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    fn deref_mut(&mut self) -> &mut C {
        &mut self.object
    }
}

/// Given back: a connection whose session was changed since it was checked
/// out (`SET search_path`) reads otherwise than the pool's others, and the pool
/// is mixed from then on. One whose identity a statement made unknown (any
/// `SET`) is learned again at its next checkout.
impl<C: 'static> Drop for Pooled<C>
where
    C: AsyncCacheConnection + Send,
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    fn drop(&mut self) {
        if let Some(identity) = self.object.__known_identity() {
            self.seen.saw(identity);
        }
    }
}

/// A request's checkout of a [`CachedPool`]: takes a connection only when a
/// read misses or [`Lazy::connection`] is called, then keeps it until dropped.
/// Pass `&mut lazy` to `.cached_async()`, `.cache_async().get_result()`, ...
pub struct Lazy<C: 'static>
where
    C: AsyncCacheConnection + Send,
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    pool: CachedPool<C>,
    conn: Option<Pooled<C>>,
}

impl<C> Lazy<C>
where
    C: AsyncCacheConnection + Send + 'static,
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    /// The connection, checked out now if it was not yet: for writes and
    /// uncached statements.
    pub fn connection(&mut self) -> impl Future<Output = Result<&mut C>> + Send + '_ {
        async move {
            match &mut self.conn {
                Some(conn) => Ok(&mut **conn),
                empty @ None => Ok(&mut **empty.insert(self.pool.get().await?)),
            }
        }
    }

    /// Whether a connection is checked out.
    pub fn is_checked_out(&self) -> bool {
        self.conn.is_some()
    }
}

impl<C> AsyncReadSource for Lazy<C>
where
    C: AsyncCacheConnection + Send + 'static,
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = PoolError>,
{
    type Connection = C;

    /// The pool's identity while no connection is held; the connection's once
    /// one is (or once the pool has no one identity).
    fn __reading(&mut self) -> impl Future<Output = Result<Reading>> + Send {
        async move {
            if self.conn.is_none() {
                if let Some(identity) = self.pool.seen.one() {
                    // Fresh from the pool: not in a transaction.
                    let may_use = true;
                    return Ok(Reading { may_use, identity });
                }
            }
            // Boxed, as the checkout in `__connection`: inline, the pool's and
            // the identity queries' futures would be part of every read's.
            Box::pin(async move { reading_of(self.connection().await?).await }).await
        }
    }

    fn __connection(
        &mut self,
        reading: Reading,
    ) -> impl Future<Output = Result<(&mut C, bool)>> + Send {
        async move {
            let held = self.is_checked_out();
            let conn = Box::pin(self.connection()).await?;
            // A connection held when the key was made is what made it.
            let reads_as_keyed = held || conn.__identity() == reading.identity;
            Ok((conn, reads_as_keyed))
        }
    }
}
