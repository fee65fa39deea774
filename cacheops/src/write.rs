//! Writes that invalidate: insert, save, update and delete of cacheable models.
//!
//! Each helper learns the states a write touched from the database itself and
//! invalidates them after its transaction commits:
//! - insert: the new rows, from `RETURNING` (one statement);
//! - save / update by primary key: the old row, read with `FOR UPDATE` (PostgreSQL;
//!   SQLite's write lock serialises writers) in the same transaction, and the new
//!   row from `RETURNING` (two statements in one transaction);
//! - delete: the old row, from `RETURNING` (one statement).
//!
//! Invalidation then costs one round trip per table. Inside
//! [`Cacheops::transaction`] it waits for the outermost COMMIT (see
//! `transaction.rs`). Inside a transaction cacheops does not manage (a plain
//! `conn.transaction`), it happens when the helper returns, before your COMMIT: a
//! concurrent reader may then re-cache the old state, so prefer `Cacheops::transaction`.

use diesel::associations::HasTable;
use diesel::query_builder::{
    AsChangeset, AsQuery, AstPass, IntoUpdateTarget, Query, QueryFragment, QueryId,
};
use diesel::query_dsl::methods::FindDsl;
use diesel::query_dsl::{LoadQuery, RunQueryDsl};
use diesel::{Identifiable, Insertable, QueryResult};

use crate::backend::CacheBackend;
use crate::connection::{as_helper, CacheConnection};
use crate::error::Result;
use crate::model::CacheRow;
use crate::runtime::Cacheops;

impl Cacheops {
    /// Runs a statement whose `RETURNING` rows are every state it changed, and
    /// invalidates them: an `INSERT` (the new rows) or a `DELETE` (the old rows),
    /// with any filter. Not for `UPDATE`: its `RETURNING` shows only the new state
    /// (use [`Cacheops::update`] or [`Cacheops::save`]).
    ///
    /// ```no_run
    /// # use diesel::prelude::*;
    /// # diesel::table! { tags (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, cacheops::Cacheable, serde::Serialize, serde::Deserialize)]
    /// # #[cacheops(app = "blog")]
    /// # struct Tag { id: i32, name: String }
    /// # fn run(h: &cacheops::Cacheops, conn: &mut diesel::pg::PgConnection) -> cacheops::Result<()> {
    /// let gone: Vec<Tag> = h.write_returning(conn, diesel::delete(tags::table.filter(tags::name.like("tmp%"))))?;
    /// # Ok(()) }
    /// ```
    pub fn write_returning<'q, M, C, S>(&self, conn: &mut C, statement: S) -> Result<Vec<M>>
    where
        C: CacheConnection,
        S: LoadQuery<'q, C, M> + RunQueryDsl<C>,
        M: CacheRow<C::Backend>,
    {
        let rows: Vec<M> = as_helper(conn, |conn| statement.get_results(conn))?;
        let states = rows
            .iter()
            .map(CacheRow::row_values)
            .collect::<Result<_>>()?;
        self.after_write(conn, M::INFO, states)?;
        Ok(rows)
    }

    /// Inserts `values` into `M`'s table and returns the new rows, invalidated.
    pub fn insert<'q, M, C, V>(&self, conn: &mut C, values: V) -> Result<Vec<M>>
    where
        C: CacheConnection,
        M: CacheRow<C::Backend> + HasTable,
        V: Insertable<M::Table>,
        diesel::query_builder::InsertStatement<M::Table, V::Values>: LoadQuery<'q, C, M>,
    {
        self.write_returning(conn, diesel::insert_into(M::table()).values(values))
    }

    /// Saves `obj` (`UPDATE ... SET <all its fields> WHERE pk = ...`), invalidating
    /// its old and new state; returns the row as stored.
    pub fn save<'a, M, C>(&self, conn: &mut C, obj: &'a M) -> Result<M>
    where
        C: CacheConnection,
        M: Saveable<'a, C>,
    {
        let (old, new) = as_helper(conn, |conn| {
            conn.transaction(|conn| obj.save_returning_old(conn))
        })?;
        let states = vec![old.row_values()?, new.row_values()?];
        self.after_write(conn, M::INFO, states)?;
        Ok(new)
    }

    /// Updates the row of `M` with primary key `id` by `changes`, invalidating its
    /// old and new state; returns the new row.
    pub fn update<'q, M, C, Id, Changes>(&self, conn: &mut C, id: Id, changes: Changes) -> Result<M>
    where
        C: CacheConnection,
        M: CacheRow<C::Backend> + HasTable,
        Id: Clone,
        M::Table: FindDsl<Id>,
        diesel::dsl::Find<M::Table, Id>: IntoUpdateTarget<Table = M::Table>,
        Changes: AsChangeset<Target = M::Table>,
        Locked<diesel::dsl::Find<M::Table, Id>>: LoadQuery<'q, C, M>,
        diesel::dsl::Update<diesel::dsl::Find<M::Table, Id>, Changes>:
            AsQuery + LoadQuery<'q, C, M>,
    {
        let rows = as_helper(conn, |conn| {
            conn.transaction(|conn| {
                let old = Locked(M::table().find(id.clone())).get_result::<M>(conn)?;
                let new = diesel::update(M::table().find(id))
                    .set(changes)
                    .get_result::<M>(conn)?;
                QueryResult::Ok([old, new])
            })
        })?;
        let states = vec![rows[0].row_values()?, rows[1].row_values()?];
        self.after_write(conn, M::INFO, states)?;
        let [_, new] = rows;
        Ok(new)
    }

    /// Deletes `obj`'s row, invalidating its old state as the database returned it.
    pub fn delete<'a, 'q, M, C>(&self, conn: &mut C, obj: &'a M) -> Result<Option<M>>
    where
        C: CacheConnection,
        M: CacheRow<C::Backend>,
        &'a M: IntoUpdateTarget,
        diesel::query_builder::DeleteStatement<
            <&'a M as HasTable>::Table,
            <&'a M as IntoUpdateTarget>::WhereClause,
        >: LoadQuery<'q, C, M> + RunQueryDsl<C>,
    {
        Ok(self.write_returning(conn, diesel::delete(obj))?.pop())
    }
}

/// A query with the row lock of its backend appended (`FOR UPDATE` on PostgreSQL;
/// nothing on SQLite, whose writers are serialised by the database lock).
#[derive(Debug, Clone, Copy)]
pub struct Locked<Q>(pub Q);

impl<Q: Query> Query for Locked<Q> {
    type SqlType = Q::SqlType;
}

impl<Q> QueryId for Locked<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q, DB> QueryFragment<DB> for Locked<Q>
where
    DB: CacheBackend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass.reborrow())?;
        pass.push_sql(DB::ROW_LOCK);
        Ok(())
    }
}

impl<Q, C> RunQueryDsl<C> for Locked<Q> {}

/// A model [`Cacheops::save`] can save: identifiable, its own changeset, and
/// loadable from `UPDATE ... RETURNING`. Implemented for every such model.
pub trait Saveable<'a, C: CacheConnection>: CacheRow<C::Backend> + Sized {
    /// Reads the stored row with a row lock, then updates it from `self`:
    /// `(old, new)`. Runs inside the caller's transaction.
    fn save_returning_old(&'a self, conn: &mut C) -> QueryResult<(Self, Self)>;
}

impl<'a, M, C> Saveable<'a, C> for M
where
    C: CacheConnection,
    M: CacheRow<C::Backend> + HasTable,
    &'a M: Identifiable<Table = M::Table>
        + AsChangeset<Target = M::Table>
        + IntoUpdateTarget<Table = M::Table>,
    M::Table: FindDsl<<&'a M as Identifiable>::Id>,
    Locked<diesel::dsl::Find<M::Table, <&'a M as Identifiable>::Id>>: LoadQuery<'a, C, M>,
    diesel::dsl::Update<&'a M, &'a M>: AsQuery + LoadQuery<'a, C, M>,
{
    fn save_returning_old(&'a self, conn: &mut C) -> QueryResult<(M, M)> {
        let old = Locked(M::table().find(self.id())).get_result::<M>(conn)?;
        let new = diesel::update(self).set(self).get_result::<M>(conn)?;
        Ok((old, new))
    }
}
