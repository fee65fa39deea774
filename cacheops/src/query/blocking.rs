//! The blocking loads of a [`Cached`] query, on Diesel's connections.

use diesel::connection::LoadConnection;
use diesel::query_builder::{AsQuery, QueryFragment, QueryId};
use diesel::query_dsl::methods::{LimitDsl, SelectDsl};
use diesel::query_dsl::{LoadQuery, RunQueryDsl};
use diesel::{OptionalExtension, QueryResult};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Blocking, Cached};
use crate::analyse::Call;
use crate::config::Ops;
use crate::connection::CacheConnection;
use crate::connection::{explicitly, fills_may_store, reads_may_use_cache};
use crate::error::Result;
use crate::protocol::read_through::{read_through_storable, Storable};

impl<'h, Q: AsQuery, C> Cached<'h, Q, C, Blocking> {
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
fn fill<C, Q, R>(
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
    let may_use = reads_may_use_cache(conn);
    let identity = || crate::connection::identity_of(call.handle, conn);
    let plan = call.plan::<C::Backend, Q, R>(may_use, identity, &query)?;
    let storable = Storable::default();
    read_through_storable(call.handle.core(), plan, &storable, || {
        let result = explicitly(conn, |conn| run(query, conn))?;
        storable.answer(|| fills_may_store(conn));
        Ok(result)
    })
}
