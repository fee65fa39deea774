//! The write helpers for async code, on diesel-async connections (feature
//! `async`): the same statements as the blocking helpers (`RETURNING` rows; for
//! an update, the rewrite returning old and new rows), the same invalidation, on
//! the handle's async store.
//!
//! A helper's future may be dropped at any await. Before its statement runs, it
//! marks the model's table owed (see `protocol/invalidate.rs`, `Owing`), and
//! settles that only once the invalidation is sent or queued: a statement that
//! committed and was never invalidated leaves its table bypassing the cache in
//! this process until a retry gets through.

// The public futures are `impl Future + Send` written by hand, not `async fn`:
// see `query/nonblocking.rs` on why `Send` is proven at the definition.
#![allow(clippy::manual_async_fn)]

use std::future::Future;

use diesel::associations::HasTable;
use diesel::deserialize::FromSqlRow;
use diesel::query_builder::{AsChangeset, AsQuery, IntoUpdateTarget, QueryFragment, QueryId};
use diesel::query_dsl::methods::FindDsl;
use diesel::{Identifiable, Insertable, QueryResult};
use diesel_async::methods::LoadQuery;
use diesel_async::RunQueryDsl;

use super::{helper_plan, Locked, RowType};
use crate::backend::CacheBackend;
use crate::connection::{begin_own, end_own, old_and_new_async, AsyncCacheConnection, Typed};
use crate::error::Result;
use crate::model::{CacheRow, ModelInfo};
use crate::protocol::invalidate::Owing;
use crate::runtime::Cacheops;
use crate::transaction::{Owed, Pending};
use crate::value::Value;

impl Cacheops {
    /// [`Cacheops::write_returning`] on a diesel-async connection.
    ///
    /// ```no_run
    /// # use diesel::prelude::*;
    /// # diesel::table! { tags (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, cacheops::Cacheable, serde::Serialize, serde::Deserialize)]
    /// # #[cacheops(app = "blog")]
    /// # struct Tag { id: i32, name: String }
    /// # async fn run(h: &cacheops::Cacheops, conn: &mut diesel_async::AsyncPgConnection) -> cacheops::Result<()> {
    /// let doomed = tags::table.filter(tags::name.like("tmp%"));
    /// let gone: Vec<Tag> = h.write_returning_async(conn, diesel::delete(doomed)).await?;
    /// # Ok(()) }
    /// ```
    pub fn write_returning_async<'a, 'q, M, C, S>(
        &'a self,
        conn: &'a mut C,
        statement: S,
    ) -> impl Future<Output = Result<Vec<M>>> + Send + use<'a, 'q, M, C, S>
    where
        'q: 'a,
        C: AsyncCacheConnection,
        S: LoadQuery<'q, C, M> + Send + 'q,
        M: CacheRow<C::Backend> + Send,
    {
        async move {
            let owing = self.owing(M::INFO)?;
            let helper = helper_scope(conn);
            let rows: Vec<M> = statement.get_results(conn).await?;
            drop(helper);
            let states = rows.iter().map(CacheRow::row_values).collect::<Result<_>>();
            self.after_write_async(conn, M::INFO, states?, owing)
                .await?;
            Ok(rows)
        }
    }

    /// [`Cacheops::insert`] on a diesel-async connection.
    pub fn insert_async<'a, 'q, M, C, V>(
        &'a self,
        conn: &'a mut C,
        values: V,
    ) -> impl Future<Output = Result<Vec<M>>> + Send + use<'a, 'q, M, C, V>
    where
        'q: 'a,
        C: AsyncCacheConnection,
        M: CacheRow<C::Backend> + HasTable + Send,
        V: Insertable<M::Table>,
        diesel::query_builder::InsertStatement<M::Table, V::Values>:
            LoadQuery<'q, C, M> + Send + 'q,
    {
        let statement = diesel::insert_into(M::table()).values(values);
        self.write_returning_async(conn, statement)
    }

    /// [`Cacheops::save`] on a diesel-async connection.
    pub fn save_async<'a, M, C>(
        &'a self,
        conn: &'a mut C,
        obj: &'a M,
    ) -> impl Future<Output = Result<M>> + Send + use<'a, M, C>
    where
        C: AsyncCacheConnection,
        M: AsyncSaveable<'a, C> + Send + Sync,
    {
        async move {
            let owing = self.owing(M::INFO)?;
            let helper = helper_scope(conn);
            let rows = obj.save_returning_old(conn).await?;
            drop(helper);
            self.after_update_async(conn, rows, owing).await
        }
    }

    /// [`Cacheops::update`] on a diesel-async connection.
    pub fn update_async<'a, 'q, M, C, Id, Changes>(
        &'a self,
        conn: &'a mut C,
        id: Id,
        changes: Changes,
    ) -> impl Future<Output = Result<M>> + Send + use<'a, 'q, M, C, Id, Changes>
    where
        'q: 'a,
        C: AsyncCacheConnection,
        M: CacheRow<C::Backend> + HasTable + FromSqlRow<RowType<M>, C::Backend> + Send + Sync,
        Id: Clone,
        M::Table: FindDsl<Id>,
        diesel::dsl::Find<M::Table, Id>: IntoUpdateTarget<Table = M::Table>,
        Changes: AsChangeset<Target = M::Table>,
        Locked<diesel::dsl::Find<M::Table, Id>>: LoadQuery<'q, C, M> + Send + 'q,
        diesel::dsl::Update<diesel::dsl::Find<M::Table, Id>, Changes>:
            AsQuery + LoadQuery<'q, C, M> + QueryFragment<C::Backend> + QueryId + Send + Sync + 'q,
    {
        let statement = diesel::update(M::table().find(id.clone())).set(changes);
        let locked = Locked(M::table().find(id));
        async move {
            let owing = self.owing(M::INFO)?;
            let helper = helper_scope(conn);
            let rows = updated_row(conn, statement, locked).await?;
            drop(helper);
            self.after_update_async(conn, rows, owing).await
        }
    }

    /// [`Cacheops::delete`] on a diesel-async connection.
    pub fn delete_async<'a, 'q, M, C>(
        &'a self,
        conn: &'a mut C,
        obj: &'a M,
    ) -> impl Future<Output = Result<Option<M>>> + Send + use<'a, 'q, M, C>
    where
        'q: 'a,
        C: AsyncCacheConnection,
        M: CacheRow<C::Backend> + Send,
        &'a M: IntoUpdateTarget,
        diesel::query_builder::DeleteStatement<
            <&'a M as HasTable>::Table,
            <&'a M as IntoUpdateTarget>::WhereClause,
        >: LoadQuery<'q, C, M> + Send + 'q,
    {
        let deleted = self.write_returning_async(conn, diesel::delete(obj));
        async move { Ok(deleted.await?.pop()) }
    }

    /// Marks `model`'s table owed until the helper's invalidation is settled;
    /// first checks that the handle can send it (an async store), so that a
    /// helper that could not invalidate never writes.
    fn owing(&self, model: &'static ModelInfo) -> Result<Owing<'_>> {
        self.core().nonblocking()?;
        Ok(Owing::Table(self.core(), model.table))
    }

    async fn after_update_async<M, C>(
        &self,
        conn: &mut C,
        (old, new): (M, M),
        owing: Owing<'_>,
    ) -> Result<M>
    where
        C: AsyncCacheConnection,
        M: CacheRow<C::Backend>,
    {
        let states = vec![old.row_values()?, new.row_values()?];
        self.after_write_async(conn, M::INFO, states, owing).await?;
        Ok(new)
    }

    /// Invalidates rows a helper wrote: queued while a connection that tracks
    /// its transactions has one open, sent now otherwise (inside a transaction
    /// of a plain connection, before your COMMIT, as for a plain Diesel one).
    async fn after_write_async<C: AsyncCacheConnection>(
        &self,
        conn: &mut C,
        model: &'static ModelInfo,
        rows: Vec<Vec<Value>>,
        owing: Owing<'_>,
    ) -> Result<()> {
        let pending = Pending {
            handle: self.clone(),
            what: Owed::Rows(model, rows),
        };
        let unqueued = match conn.__tracked() {
            Some(tracked) => tracked.wrote(pending),
            None => Some(pending),
        };
        let sent = match unqueued {
            None => Ok(()),
            // Not committed yet: a failure is the caller's to handle.
            Some(now) if conn.__in_transaction() => now.send_async().await,
            Some(now) => {
                now.send_committed_async().await;
                Ok(())
            }
        };
        owing.settled();
        sent
    }
}

/// A helper's statements on a connection that sees every statement are the
/// helper's to invalidate (granularly): the connection must not record them.
fn helper_scope<C: AsyncCacheConnection>(conn: &mut C) -> Option<crate::connection::Scope> {
    conn.__tracked().map(|tracked| tracked.helper.scope())
}

/// The old and new state of the one row an UPDATE by primary key changes: the
/// rewrite returning both, or (when it declines) `locked` then the UPDATE in a
/// transaction, as the blocking helpers do.
async fn updated_row<'q, M, C, S, L>(conn: &mut C, statement: S, locked: L) -> QueryResult<(M, M)>
where
    C: AsyncCacheConnection,
    M: CacheRow<C::Backend> + HasTable + FromSqlRow<RowType<M>, C::Backend> + Send + Sync,
    S: QueryFragment<C::Backend> + QueryId + LoadQuery<'q, C, M> + Sync + 'q,
    L: LoadQuery<'q, C, M> + 'q,
{
    if let Some(rows) = rewritten_row::<M, C, S>(conn, &statement).await {
        return rows;
    }
    let open = conn.__in_transaction();
    begin_own(conn, open).await?;
    let rows = async {
        let old = locked.get_result::<M>(conn).await?;
        let new = statement.get_result::<M>(conn).await?;
        Ok((old, new))
    };
    let rows = rows.await;
    end_own(conn, open, rows).await
}

/// [`updated_row`] through the rewrite; `None` when there is none.
async fn rewritten_row<M, C, S>(conn: &mut C, statement: &S) -> Option<QueryResult<(M, M)>>
where
    C: AsyncCacheConnection,
    M: CacheRow<C::Backend> + HasTable + FromSqlRow<RowType<M>, C::Backend> + Send + Sync,
    S: QueryFragment<C::Backend> + QueryId + Sync,
{
    let sql = <C::Backend as CacheBackend>::render_sql(statement).ok()?;
    let plan = helper_plan::<M>(&sql, <C::Backend as CacheBackend>::DIALECT)?;
    let open = conn.__in_transaction();
    let rows = old_and_new_async::<C, S, Typed<M, RowType<M>>>(conn, statement, &plan, open);
    Some(
        rows.await
            .and_then(|(mut old, mut new)| match (old.pop(), new.pop()) {
                (Some(old), Some(new)) => Ok((old, new)),
                _ => Err(diesel::result::Error::NotFound),
            }),
    )
}

/// A model [`Cacheops::save_async`] can save: identifiable, its own changeset, and
/// loadable from `UPDATE ... RETURNING`, as [`Cacheops::save`] asks.
/// Implemented for every such model.
pub trait AsyncSaveable<'a, C: AsyncCacheConnection>: CacheRow<C::Backend> + Sized {
    /// Updates the stored row from `self` and returns `(old, new)`.
    fn save_returning_old(
        &'a self,
        conn: &mut C,
    ) -> impl std::future::Future<Output = QueryResult<(Self, Self)>> + Send;
}

impl<'a, M, C> AsyncSaveable<'a, C> for M
where
    C: AsyncCacheConnection,
    M: CacheRow<C::Backend> + HasTable + FromSqlRow<RowType<M>, C::Backend> + Send + Sync,
    &'a M: Identifiable<Table = M::Table>
        + AsChangeset<Target = M::Table>
        + IntoUpdateTarget<Table = M::Table>,
    M::Table: FindDsl<<&'a M as Identifiable>::Id>,
    Locked<diesel::dsl::Find<M::Table, <&'a M as Identifiable>::Id>>:
        LoadQuery<'a, C, M> + Send + 'a,
    diesel::dsl::Update<&'a M, &'a M>:
        AsQuery + LoadQuery<'a, C, M> + QueryFragment<C::Backend> + QueryId + Send + Sync + 'a,
{
    fn save_returning_old(
        &'a self,
        conn: &mut C,
    ) -> impl std::future::Future<Output = QueryResult<(M, M)>> + Send {
        // Built here and moved in (no async block holding them): an async block
        // would have to prove them `Send` for every lifetime, not just `'a`.
        let locked = Locked(M::table().find(self.id()));
        updated_row(conn, diesel::update(self).set(self), locked)
    }
}
