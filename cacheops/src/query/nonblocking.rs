//! The async loads of a [`Cached`] query, on diesel-async's connections
//! (feature `async`): the same calls as the blocking ones, awaited, through the
//! same read-through, fence and stampede lock (`protocol/`), on the handle's
//! async store.

use diesel::query_builder::{AsQuery, QueryFragment, QueryId};
use diesel::query_dsl::methods::{LimitDsl, SelectDsl};
use diesel::{OptionalExtension, QueryResult};
use diesel_async::methods::LoadQuery;
use diesel_async::RunQueryDsl;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Cached, Nonblocking};
use crate::analyse::Call;
use crate::config::Ops;
use crate::connection::AsyncCacheConnection;
use crate::error::Result;
use crate::protocol::read_through::{read_through_with, Storable};

/// A query on its way to the cache from async code: [`Cached`], run by a
/// diesel-async connection.
pub type CachedAsync<'h, Q, C> = Cached<'h, Q, C, Nonblocking>;

/// Extension methods that serve any Diesel query from the cache in async code,
/// on a diesel-async connection: [`CachedQueryDsl`](super::CachedQueryDsl)'s
/// twin, beside `diesel_async::RunQueryDsl`.
///
/// ```no_run
/// # use diesel::prelude::*;
/// # diesel::table! { articles (id) { id -> Integer, category_id -> Integer, title -> Text } }
/// # #[derive(Queryable, serde::Serialize, serde::Deserialize)]
/// # struct Article { id: i32, category_id: i32, title: String }
/// use cacheops::AsyncCachedQueryDsl;
/// # async fn run(conn: &mut diesel_async::AsyncPgConnection) -> cacheops::Result<()> {
/// let in_cat: Vec<Article> = articles::table
///     .filter(articles::category_id.eq(3))
///     .cached_async(conn)
///     .await?;
/// let total: i64 = articles::table.cache_async().count(conn).await?;
/// # Ok(()) }
/// ```
pub trait AsyncCachedQueryDsl<C>: AsQuery + Sized {
    /// A builder to tune how this query is cached; see [`Cached`].
    fn cache_async(self) -> CachedAsync<'static, Self, C> {
        Cached::new(self)
    }

    /// Loads every row through the cache: `diesel_async::RunQueryDsl::load`,
    /// cached.
    #[allow(async_fn_in_trait)]
    async fn cached_async<'q, T>(self, conn: &mut C) -> Result<Vec<T>>
    where
        C: AsyncCacheConnection,
        Self::Query: QueryFragment<C::Backend> + QueryId + LoadQuery<'q, C, T> + 'q,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        self.cache_async().load(conn).await
    }
}

impl<Q: AsQuery, C> AsyncCachedQueryDsl<C> for Q {}

impl<'h, Q: AsQuery, C: AsyncCacheConnection> Cached<'h, Q, C, Nonblocking> {
    /// Every row: `load`, cached (op `fetch`).
    pub async fn load<'q, T>(self, conn: &mut C) -> Result<Vec<T>>
    where
        Q::Query: QueryFragment<C::Backend> + QueryId + LoadQuery<'q, C, T> + 'q,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let call = self.call(Ops::FETCH, "fetch")?;
        fill(&call, conn, self.query.as_query(), async |q, c| {
            q.load(c).await
        })
        .await
    }

    /// The first row of the query as it is: `get_result`, cached (op `get`).
    /// No row is `Err` whose [`crate::Error::as_diesel`] is `NotFound`.
    pub async fn get_result<'q, T>(self, conn: &mut C) -> Result<T>
    where
        Q::Query: QueryFragment<C::Backend> + QueryId + LoadQuery<'q, C, T> + 'q,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let call = self.call(Ops::GET, "get")?;
        let query = self.query.as_query();
        let row = fill(&call, conn, query, async |q, c| {
            q.get_result(c).await.optional()
        });
        row.await?
            .ok_or_else(|| diesel::result::Error::NotFound.into())
    }

    /// `LIMIT 1`, then the row: `first`, cached (op `get`).
    pub async fn first<'q, T>(self, conn: &mut C) -> Result<T>
    where
        Q: LimitDsl,
        Q::Output: AsQuery,
        <Q::Output as AsQuery>::Query:
            QueryFragment<C::Backend> + QueryId + LoadQuery<'q, C, T> + 'q,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map(|q| q.limit(1)).get_result(conn).await
    }

    /// `SELECT COUNT(*)` of the query, cached (op `count`).
    pub async fn count<'q>(self, conn: &mut C) -> Result<i64>
    where
        Q: SelectDsl<diesel::dsl::count_star>,
        Q::Output: AsQuery,
        <Q::Output as AsQuery>::Query:
            QueryFragment<C::Backend> + QueryId + LoadQuery<'q, C, i64> + 'q,
    {
        let call = self.call(Ops::COUNT, "count")?;
        let query = self.query.select(diesel::dsl::count_star()).as_query();
        fill(&call, conn, query, async |q, c| q.get_result(c).await).await
    }

    /// `SELECT EXISTS (query)`, cached (op `exists`).
    pub async fn exists<'q>(self, conn: &mut C) -> Result<bool>
    where
        diesel::dsl::exists<Q>: diesel::Expression,
        diesel::dsl::select<diesel::dsl::exists<Q>>:
            AsQuery + QueryFragment<C::Backend> + QueryId + LoadQuery<'q, C, bool> + 'q,
    {
        let call = self.call(Ops::EXISTS, "exists")?;
        let query = diesel::select(diesel::dsl::exists(self.query));
        fill(&call, conn, query, async |q, c| q.get_result(c).await).await
    }

    /// A single value, e.g. `select(max(col))`, cached (op `aggregate`).
    pub async fn aggregate<'q, T>(self, conn: &mut C) -> Result<T>
    where
        Q::Query: QueryFragment<C::Backend> + QueryId + LoadQuery<'q, C, T> + 'q,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let call = self.call(Ops::AGGREGATE, "aggregate")?;
        let query = self.query.as_query();
        fill(&call, conn, query, async |q, c| q.get_result(c).await).await
    }
}

/// Runs `query` through the cache on the handle's async store: `run` executes
/// it on a miss.
async fn fill<C, Q, R>(
    call: &Call<'_>,
    conn: &mut C,
    query: Q,
    run: impl AsyncFnOnce(Q, &mut C) -> QueryResult<R>,
) -> Result<R>
where
    C: AsyncCacheConnection,
    Q: QueryFragment<C::Backend> + QueryId,
    R: Serialize + DeserializeOwned + 'static,
{
    let may_use = conn.__reads_may_use_cache();
    let database = call.handle.config().database;
    let identity = || crate::protocol::key::identity(database, conn.__identity());
    let plan = call.plan::<C::Backend, Q, R>(may_use, identity, &query)?;
    let core = call.handle.core();
    let io = core.nonblocking()?;
    let storable = Storable::default();
    let compute = async {
        let result = run(query, &mut *conn).await?;
        storable.answer(|| conn.__fills_may_store());
        Ok(result)
    };
    read_through_with(core, &io, plan, &storable, compute).await
}
