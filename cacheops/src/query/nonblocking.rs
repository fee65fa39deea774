//! The async loads of a [`Cached`] query, on diesel-async's connections
//! (feature `async`): the same calls as the blocking ones, awaited, through the
//! same read-through, fence and stampede lock (`protocol/`), on the handle's
//! async store.

// The public futures are `impl Future + Send` written by hand, not `async fn`:
// see `query/nonblocking.rs` on why `Send` is proven at the definition.
#![allow(clippy::manual_async_fn)]

use std::future::Future;

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
use crate::connection::{AsyncCacheConnection, AsyncReadSource};
use crate::error::Result;
use crate::protocol::read_through::{read_through_boxed, Storable};

/// A query on its way to the cache from async code: [`Cached`], run by a
/// diesel-async connection. `S` is what its load is given a `&mut` of: the
/// connection, or a pool's lazy checkout (see [`AsyncReadSource`]).
pub type CachedAsync<'h, Q, S> = Cached<'h, Q, S, Nonblocking>;

/// The connection an [`AsyncReadSource`] runs a miss on.
type Conn<S> = <S as AsyncReadSource>::Connection;

/// The backend of that connection.
type Backend<S> = <Conn<S> as diesel_async::AsyncConnectionCore>::Backend;

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
pub trait AsyncCachedQueryDsl<S>: AsQuery + Sized {
    /// A builder to tune how this query is cached; see [`Cached`].
    fn cache_async(self) -> CachedAsync<'static, Self, S> {
        Cached::new(self)
    }

    /// Loads every row through the cache: `diesel_async::RunQueryDsl::load`,
    /// cached.
    fn cached_async<'a, 'q, T>(
        self,
        conn: &'a mut S,
    ) -> impl Future<Output = Result<Vec<T>>> + Send + use<'a, 'q, S, T, Self>
    where
        'q: 'a,
        Self: Send + 'static,
        S: AsyncReadSource + 'a,
        Self::Query: QueryFragment<Backend<S>> + QueryId + LoadQuery<'q, Conn<S>, T> + Send + 'q,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        self.cache_async().load(conn)
    }
}

impl<Q: AsQuery, S> AsyncCachedQueryDsl<S> for Q {}

// Each load returns `impl Future + Send` rather than being an `async fn`: the
// future is then proven `Send` here, once, from the bounds, instead of at every
// caller from its concrete types, where rustc cannot prove it for queries that
// borrow (a boxed query's lifetime), so `tokio::spawn` and axum handlers take it.
impl<'h, Q: AsQuery + Send + 'h, S> Cached<'h, Q, S, Nonblocking> {
    /// Every row: `load`, cached (op `fetch`).
    pub fn load<'a, 'q, T>(
        self,
        conn: &'a mut S,
    ) -> impl Future<Output = Result<Vec<T>>> + Send + use<'a, 'q, 'h, Q, S, T>
    where
        'h: 'a,
        'q: 'a,
        S: AsyncReadSource + 'a,
        Q::Query: QueryFragment<Backend<S>> + QueryId + LoadQuery<'q, Conn<S>, T> + Send + 'q,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let call = self.call(Ops::FETCH, "fetch");
        let query = self.query.as_query();
        fill(call, conn, query, |q, c| q.load(c))
    }

    /// The first row of the query as it is: `get_result`, cached (op `get`).
    /// No row is `Err` whose [`crate::Error::as_diesel`] is `NotFound`.
    pub fn get_result<'a, 'q, T>(
        self,
        conn: &'a mut S,
    ) -> impl Future<Output = Result<T>> + Send + use<'a, 'q, 'h, Q, S, T>
    where
        'h: 'a,
        'q: 'a,
        S: AsyncReadSource + 'a,
        Q::Query: QueryFragment<Backend<S>> + QueryId + LoadQuery<'q, Conn<S>, T> + Send + 'q,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let call = self.call(Ops::GET, "get");
        let query = self.query.as_query();
        let row = fill(call, conn, query, |q, c| async {
            q.get_result(c).await.optional()
        });
        async {
            row.await?
                .ok_or_else(|| diesel::result::Error::NotFound.into())
        }
    }

    /// `LIMIT 1`, then the row: `first`, cached (op `get`).
    pub fn first<'a, 'q, T>(
        self,
        conn: &'a mut S,
    ) -> impl Future<Output = Result<T>> + Send + use<'a, 'q, 'h, Q, S, T>
    where
        'h: 'a,
        'q: 'a,
        S: AsyncReadSource + 'a,
        Q: LimitDsl,
        Q::Output: AsQuery + Send + 'h,
        <Q::Output as AsQuery>::Query:
            QueryFragment<Backend<S>> + QueryId + LoadQuery<'q, Conn<S>, T> + Send + 'q,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map(|q| q.limit(1)).get_result(conn)
    }

    /// `SELECT COUNT(*)` of the query, cached (op `count`).
    pub fn count<'a, 'q>(
        self,
        conn: &'a mut S,
    ) -> impl Future<Output = Result<i64>> + Send + use<'a, 'q, 'h, Q, S>
    where
        'h: 'a,
        'q: 'a,
        S: AsyncReadSource + 'a,
        Q: SelectDsl<diesel::dsl::count_star>,
        Q::Output: AsQuery,
        <Q::Output as AsQuery>::Query:
            QueryFragment<Backend<S>> + QueryId + LoadQuery<'q, Conn<S>, i64> + Send + 'q,
    {
        let call = self.call(Ops::COUNT, "count");
        let query = self.query.select(diesel::dsl::count_star()).as_query();
        fill(call, conn, query, |q, c| q.get_result(c))
    }

    /// `SELECT EXISTS (query)`, cached (op `exists`).
    pub fn exists<'a, 'q>(
        self,
        conn: &'a mut S,
    ) -> impl Future<Output = Result<bool>> + Send + use<'a, 'q, 'h, Q, S>
    where
        'h: 'a,
        'q: 'a,
        S: AsyncReadSource + 'a,
        diesel::dsl::exists<Q>: diesel::Expression,
        diesel::dsl::select<diesel::dsl::exists<Q>>: AsQuery
            + QueryFragment<Backend<S>>
            + QueryId
            + LoadQuery<'q, Conn<S>, bool>
            + Send
            + 'q,
    {
        let call = self.call(Ops::EXISTS, "exists");
        let query = diesel::select(diesel::dsl::exists(self.query));
        fill(call, conn, query, |q, c| q.get_result(c))
    }

    /// A single value, e.g. `select(max(col))`, cached (op `aggregate`).
    pub fn aggregate<'a, 'q, T>(
        self,
        conn: &'a mut S,
    ) -> impl Future<Output = Result<T>> + Send + use<'a, 'q, 'h, Q, S, T>
    where
        'h: 'a,
        'q: 'a,
        S: AsyncReadSource + 'a,
        Q::Query: QueryFragment<Backend<S>> + QueryId + LoadQuery<'q, Conn<S>, T> + Send + 'q,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let call = self.call(Ops::AGGREGATE, "aggregate");
        let query = self.query.as_query();
        fill(call, conn, query, |q, c| q.get_result(c))
    }
}

/// Runs `query` through the cache on the handle's async store: `run` executes
/// it on a miss, on the connection `source` gives then. Whether the result may
/// be stored is asked before the SQL runs: a read does not change a
/// transaction's state.
fn fill<'a, 'h: 'a, S, C, Q, R, F>(
    call: Result<Call<'h>>,
    source: &'a mut S,
    query: Q,
    run: impl FnOnce(Q, &'a mut C) -> F + Send + 'a,
) -> impl Future<Output = Result<R>> + Send + 'a
where
    S: AsyncReadSource<Connection = C> + 'a,
    C: AsyncCacheConnection + 'a,
    Q: QueryFragment<C::Backend> + QueryId + Send + 'a,
    R: Serialize + DeserializeOwned + Send + 'static,
    F: Future<Output = QueryResult<R>> + Send + 'a,
{
    async move {
        let call = call?;
        let reading = source.__reading().await?;
        let database = call.handle.config().database;
        let identity = || crate::protocol::key::identity(database, reading.identity);
        let plan = call.plan::<C::Backend, Q, R>(reading.may_use, identity, &query)?;
        let core = call.handle.core();
        let io = core.nonblocking()?;
        let storable = Storable::default();
        let compute = async {
            let (conn, reads_as_keyed) = source.__connection(reading).await?;
            // Asked only of a fill (not of a read the cache does not serve).
            let may_store = storable.asked() && reads_as_keyed && conn.__fills_may_store().await;
            // This call caches its typed result: a wrapper must not cache the rows too.
            let _explicit = conn.__tracked().map(|t| t.explicit.scope());
            let result = run(query, conn).await?;
            storable.answer(|| may_store);
            Ok(result)
        };
        read_through_boxed(core, &io, plan, &storable, compute).await
    }
}
