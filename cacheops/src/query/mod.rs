//! `.cached()` and its siblings: Diesel queries served from the cache.
//!
//! [`CachedQueryDsl`] is implemented for every Diesel query, the way
//! `RunQueryDsl` is. `query.cached(&mut conn)` is `query.load(&mut conn)` through
//! the cache; `query.cache()` gives a [`Cached`] builder to set a timeout, the ops
//! to cache, or a handle, before running it with `load`, `first`, `get_result`,
//! `count` or `exists`.
//!
//! One call: render the SQL and collect the binds (no round trip), look the parsed
//! template up by SQL text (parsed only the first time), compute the key and the
//! dependencies, then one Redis round trip. On a miss: read the dependency stamps,
//! run the SQL, store the result only if no stamp changed meanwhile.

mod blocking;
#[cfg(feature = "async")]
mod nonblocking;

use std::marker::PhantomData;
use std::time::Duration;

use diesel::connection::LoadConnection;
use diesel::query_builder::{AsQuery, QueryFragment, QueryId};
use diesel::query_dsl::{LoadQuery, RunQueryDsl};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::analyse::Call;
use crate::config::Ops;
use crate::connection::CacheConnection;
use crate::error::Result;
use crate::runtime::Cacheops;

#[cfg(feature = "async")]
pub use nonblocking::{AsyncCachedQueryDsl, CachedAsync};

/// Extension methods that serve any Diesel query from the cache.
///
/// ```no_run
/// # use diesel::prelude::*;
/// # diesel::table! { articles (id) { id -> Integer, category_id -> Integer, title -> Text } }
/// # #[derive(Queryable, serde::Serialize, serde::Deserialize)]
/// # struct Article { id: i32, category_id: i32, title: String }
/// use cacheops::CachedQueryDsl;
/// # fn run(conn: &mut diesel::pg::PgConnection) -> cacheops::Result<()> {
/// let in_cat: Vec<Article> = articles::table
///     .filter(articles::category_id.eq(3))
///     .cached(conn)?;
/// let total: i64 = articles::table.cache().count(conn)?;
/// # Ok(()) }
/// ```
///
/// Like Diesel's `RunQueryDsl<Conn>`, the trait is generic over the connection, so
/// the row type is the only turbofish argument: `.cached::<Article>(conn)`.
pub trait CachedQueryDsl<C>: AsQuery + Sized {
    /// A builder to tune how this query is cached; see [`Cached`].
    fn cache(self) -> Cached<'static, Self, C> {
        Cached::new(self)
    }

    /// Loads every row through the cache: [`RunQueryDsl::load`], cached.
    fn cached<'q, T>(self, conn: &mut C) -> Result<Vec<T>>
    where
        C: CacheConnection + LoadConnection,
        Self::Query: QueryFragment<C::Backend> + QueryId + RunQueryDsl<C> + LoadQuery<'q, C, T>,
        T: Serialize + DeserializeOwned + 'static,
    {
        self.cache().load(conn)
    }
}

impl<Q: AsQuery, C> CachedQueryDsl<C> for Q {}

/// A query on its way to the cache, with per-call options.
///
/// `M` is how it runs: [`Blocking`] (from [`CachedQueryDsl::cache`], on Diesel's
/// connections) or `Nonblocking` (from `AsyncCachedQueryDsl::cache_async`, on
/// diesel-async's, feature `async`); the options are the same.
#[must_use = "a cached query does nothing until it is loaded"]
pub struct Cached<'h, Q, C, M = Blocking> {
    query: Q,
    timeout: Option<Duration>,
    ops: Ops,
    lock: bool,
    handle: Option<&'h Cacheops>,
    conn: PhantomData<fn(&mut C) -> M>,
}

/// A [`Cached`] query run by a blocking Diesel connection.
#[derive(Debug)]
pub enum Blocking {}

/// A [`Cached`] query run by an async diesel-async connection (feature `async`).
#[cfg(feature = "async")]
#[derive(Debug)]
pub enum Nonblocking {}

impl<Q, C, M> Cached<'static, Q, C, M> {
    fn new(query: Q) -> Self {
        Cached {
            query,
            timeout: None,
            ops: Ops::ALL,
            lock: false,
            handle: None,
            conn: PhantomData,
        }
    }
}

impl<'h, Q: AsQuery, C, M> Cached<'h, Q, C, M> {
    /// How long this result lives, overriding the model's profile.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Caches only these ops for this call (`Ops::NONE` bypasses the cache).
    pub fn ops(mut self, ops: Ops) -> Self {
        self.ops = ops;
        self
    }

    /// Stampede protection: when many callers miss this query at once, one runs it
    /// and the others wait (a few seconds at most) for its result instead of
    /// running it too. Costs two more round trips on a miss, none on a hit.
    ///
    /// ```no_run
    /// # use diesel::prelude::*;
    /// # diesel::table! { articles (id) { id -> Integer, title -> Text } }
    /// use cacheops::CachedQueryDsl;
    /// # fn run(conn: &mut diesel::pg::PgConnection) -> cacheops::Result<()> {
    /// let titles: Vec<String> = articles::table
    ///     .select(articles::title)
    ///     .cache()
    ///     .lock(true)
    ///     .load(conn)?;
    /// # Ok(()) }
    /// ```
    ///
    /// Takes the flag, as [`crate::Options::lock`] and [`crate::CachedOptions::lock`] do.
    pub fn lock(mut self, lock: bool) -> Self {
        self.lock = lock;
        self
    }

    /// Bypasses the cache: the query goes to the database, nothing is stored.
    pub fn bypass(self) -> Self {
        self.ops(Ops::NONE)
    }

    /// Uses this handle instead of the process-wide one.
    pub fn using<'a>(self, handle: &'a Cacheops) -> Cached<'a, Q, C, M> {
        Cached {
            query: self.query,
            timeout: self.timeout,
            ops: self.ops,
            lock: self.lock,
            handle: Some(handle),
            conn: PhantomData,
        }
    }

    fn map<R: AsQuery>(self, f: impl FnOnce(Q) -> R) -> Cached<'h, R, C, M> {
        Cached {
            query: f(self.query),
            timeout: self.timeout,
            ops: self.ops,
            lock: self.lock,
            handle: self.handle,
            conn: PhantomData,
        }
    }

    fn call(&self, op: Ops, name: &'static str) -> Result<Call<'h>> {
        let handle = match self.handle {
            Some(handle) => handle,
            None => crate::runtime::global()?,
        };
        Ok(Call {
            handle,
            op: name,
            enabled: self.ops.contains(op),
            timeout: self.timeout,
            lock: self.lock,
        })
    }
}
