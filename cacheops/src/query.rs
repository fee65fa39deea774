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

use std::marker::PhantomData;
use std::time::Duration;

use diesel::connection::LoadConnection;
use diesel::query_builder::{AsQuery, QueryFragment, QueryId};
use diesel::query_dsl::methods::{LimitDsl, SelectDsl};
use diesel::query_dsl::{LoadQuery, RunQueryDsl};
use diesel::{OptionalExtension, QueryResult};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::analyse::Call;
use crate::config::Ops;
use crate::connection::CacheConnection;
use crate::connection::{explicitly, fills_may_store, reads_may_use_cache};
use crate::error::Result;
use crate::protocol::read_through::{read_through_storable, Storable};
use crate::runtime::Cacheops;

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
        Cached {
            query: self,
            timeout: None,
            ops: Ops::ALL,
            lock: false,
            handle: None,
            conn: PhantomData,
        }
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
#[must_use = "a cached query does nothing until it is loaded"]
pub struct Cached<'h, Q, C> {
    query: Q,
    timeout: Option<Duration>,
    ops: Ops,
    lock: bool,
    handle: Option<&'h Cacheops>,
    conn: PhantomData<fn(&mut C)>,
}

impl<'h, Q: AsQuery, C> Cached<'h, Q, C> {
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
    pub fn using<'a>(self, handle: &'a Cacheops) -> Cached<'a, Q, C> {
        Cached {
            query: self.query,
            timeout: self.timeout,
            ops: self.ops,
            lock: self.lock,
            handle: Some(handle),
            conn: PhantomData,
        }
    }

    fn map<R: AsQuery>(self, f: impl FnOnce(Q) -> R) -> Cached<'h, R, C> {
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

    /// Every row: `load`, cached (op `fetch`).
    pub fn load<'q, T>(self, conn: &mut C) -> Result<Vec<T>>
    where
        C: CacheConnection + LoadConnection,
        Q::Query: QueryFragment<C::Backend> + QueryId + RunQueryDsl<C> + LoadQuery<'q, C, T>,
        T: Serialize + DeserializeOwned + 'static,
    {
        let call = self.call(Ops::FETCH, "fetch")?;
        fill(&call, conn, self.query.as_query(), |q, c| q.load(c))
    }

    /// The first row of the query as it is: `get_result`, cached (op `get`).
    /// No row is `Err` whose [`crate::Error::as_diesel`] is `NotFound`; see
    /// [`crate::OptionalExtension`].
    pub fn get_result<'q, T>(self, conn: &mut C) -> Result<T>
    where
        C: CacheConnection + LoadConnection,
        Q::Query: QueryFragment<C::Backend> + QueryId + RunQueryDsl<C> + LoadQuery<'q, C, T>,
        T: Serialize + DeserializeOwned + 'static,
    {
        let call = self.call(Ops::GET, "get")?;
        let row = fill(&call, conn, self.query.as_query(), |q, c| {
            q.get_result(c).optional()
        })?;
        row.ok_or_else(|| diesel::result::Error::NotFound.into())
    }

    /// `LIMIT 1`, then the row: `first`, cached (op `get`).
    pub fn first<'q, T>(self, conn: &mut C) -> Result<T>
    where
        Q: LimitDsl,
        Q::Output: AsQuery,
        C: CacheConnection + LoadConnection,
        <Q::Output as AsQuery>::Query:
            QueryFragment<C::Backend> + QueryId + RunQueryDsl<C> + LoadQuery<'q, C, T>,
        T: Serialize + DeserializeOwned + 'static,
    {
        self.map(|q| q.limit(1)).get_result(conn)
    }

    /// `SELECT COUNT(*)` of the query, cached (op `count`).
    pub fn count<'q>(self, conn: &mut C) -> Result<i64>
    where
        Q: SelectDsl<diesel::dsl::count_star>,
        Q::Output: AsQuery,
        C: CacheConnection + LoadConnection,
        <Q::Output as AsQuery>::Query:
            QueryFragment<C::Backend> + QueryId + RunQueryDsl<C> + LoadQuery<'q, C, i64>,
    {
        let call = self.call(Ops::COUNT, "count")?;
        let query = self.query.select(diesel::dsl::count_star()).as_query();
        fill(&call, conn, query, |q, c| q.get_result(c))
    }

    /// `SELECT EXISTS (query)`, cached (op `exists`).
    pub fn exists<'q>(self, conn: &mut C) -> Result<bool>
    where
        diesel::dsl::exists<Q>: diesel::Expression,
        diesel::dsl::select<diesel::dsl::exists<Q>>:
            AsQuery + QueryFragment<C::Backend> + QueryId + RunQueryDsl<C> + LoadQuery<'q, C, bool>,
        C: CacheConnection + LoadConnection,
    {
        let call = self.call(Ops::EXISTS, "exists")?;
        let query = diesel::select(diesel::dsl::exists(self.query));
        fill(&call, conn, query, |q, c| q.get_result(c))
    }

    /// A single value, e.g. `select(max(col))`, cached (op `aggregate`).
    pub fn aggregate<'q, T>(self, conn: &mut C) -> Result<T>
    where
        C: CacheConnection + LoadConnection,
        Q::Query: QueryFragment<C::Backend> + QueryId + RunQueryDsl<C> + LoadQuery<'q, C, T>,
        T: Serialize + DeserializeOwned + 'static,
    {
        let call = self.call(Ops::AGGREGATE, "aggregate")?;
        fill(&call, conn, self.query.as_query(), |q, c| q.get_result(c))
    }
}

/// Runs `query` through the cache: `run` executes it on a miss.
pub(crate) fn fill<C, Q, R>(
    call: &Call<'_>,
    conn: &mut C,
    query: Q,
    run: impl FnOnce(Q, &mut C) -> QueryResult<R>,
) -> Result<R>
where
    C: CacheConnection,
    Q: QueryFragment<C::Backend> + QueryId,
    R: Serialize + DeserializeOwned + 'static,
{
    let plan = match reads_may_use_cache(conn) {
        true => {
            let identity = crate::connection::identity_of(call.handle, conn);
            crate::analyse::plan::<C::Backend, Q, R>(call, identity, &query)?
        }
        false => None,
    };
    let storable = Storable::default();
    read_through_storable(call.handle.core(), plan, &storable, || {
        let result = explicitly(conn, |conn| run(query, conn))?;
        storable.answer(|| fills_may_store(conn));
        Ok(result)
    })
}
