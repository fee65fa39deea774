//! Writes that invalidate: insert, save, update and delete of cacheable models.
//!
//! Each helper learns the states a write touched from the database itself and
//! invalidates them after its transaction commits:
//! - insert: the new rows, from `RETURNING` (one statement);
//! - save / update by primary key: the old and the new row. PostgreSQL: one
//!   statement, the UPDATE joined to the row it locks and reads with `FOR UPDATE`,
//!   returning both states (no transaction needed). SQLite: a `SELECT` of the old
//!   row then `UPDATE ... RETURNING`, in the caller's transaction or in
//!   `BEGIN IMMEDIATE ... COMMIT` (four statements). See `connection/rewrite.rs`;
//! - delete: the old row, from `RETURNING` (one statement).
//!
//! Invalidation then costs one round trip per table. Inside
//! [`Cacheops::transaction`] it waits for the outermost COMMIT (see
//! `transaction/plain.rs`). Inside a transaction cacheops does not manage (a plain
//! `conn.transaction`), it happens when the helper returns, before your COMMIT: a
//! concurrent reader may then re-cache the old state, so prefer `Cacheops::transaction`.

#[cfg(feature = "async")]
mod nonblocking;

#[cfg(feature = "async")]
pub use nonblocking::AsyncSaveable;

use std::sync::{Arc, LazyLock};

use diesel::associations::HasTable;
use diesel::connection::LoadConnection;
use diesel::deserialize::FromSqlRow;
use diesel::query_builder::{
    AsChangeset, AsQuery, AstPass, IntoUpdateTarget, Query, QueryFragment, QueryId,
};
use diesel::query_dsl::methods::FindDsl;
use diesel::query_dsl::{LoadQuery, RunQueryDsl};
use diesel::{Identifiable, Insertable, QueryResult, Table};

use crate::backend::{CacheBackend, Dialect};
use crate::connection::{
    as_helper, old_and_new, parse_update, CacheConnection, Columns, Typed, UpdatePlan,
};
use crate::error::Result;
use crate::memo::Memo;
use crate::model::{CacheRow, Cacheable, ModelInfo};
use crate::runtime::Cacheops;
use crate::transaction::{conn_id, in_transaction, plain_wrote};
use crate::transaction::{Owed, Pending};
use crate::value::Value;

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
        after_write(self, conn, M::INFO, states)?;
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
        let rows = as_helper(conn, |conn| obj.save_returning_old(conn))?;
        self.after_update(conn, rows)
    }

    /// Updates the row of `M` with primary key `id` by `changes`, invalidating its
    /// old and new state; returns the new row.
    pub fn update<'q, M, C, Id, Changes>(&self, conn: &mut C, id: Id, changes: Changes) -> Result<M>
    where
        C: CacheConnection + LoadConnection,
        M: CacheRow<C::Backend> + HasTable + FromSqlRow<RowType<M>, C::Backend>,
        Id: Clone,
        M::Table: FindDsl<Id>,
        diesel::dsl::Find<M::Table, Id>: IntoUpdateTarget<Table = M::Table>,
        Changes: AsChangeset<Target = M::Table>,
        Locked<diesel::dsl::Find<M::Table, Id>>: LoadQuery<'q, C, M>,
        diesel::dsl::Update<diesel::dsl::Find<M::Table, Id>, Changes>:
            AsQuery + LoadQuery<'q, C, M> + QueryFragment<C::Backend> + QueryId,
    {
        let statement = diesel::update(M::table().find(id.clone())).set(changes);
        let locked = Locked(M::table().find(id));
        let rows = as_helper(conn, |conn| updated_row(conn, statement, locked))?;
        self.after_update(conn, rows)
    }

    /// Invalidates a row's old and new state; the new one, for the caller.
    fn after_update<M, C>(&self, conn: &mut C, (old, new): (M, M)) -> Result<M>
    where
        C: CacheConnection,
        M: CacheRow<C::Backend>,
    {
        let states = vec![old.row_values()?, new.row_values()?];
        after_write(self, conn, M::INFO, states)?;
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

/// The SQL type of a model's row: its table's columns, as `RETURNING` gives them.
/// Invalidates rows a helper wrote through `conn`: queued while `conn` is inside
/// a transaction it tracks or inside [`Cacheops::transaction`], sent now otherwise.
fn after_write<C: CacheConnection>(
    handle: &Cacheops,
    conn: &mut C,
    model: &'static ModelInfo,
    rows: Vec<Vec<Value>>,
) -> Result<()> {
    let pending = Pending {
        handle: handle.clone(),
        what: Owed::Rows(model, rows),
    };
    let unqueued = match conn.__tracked() {
        Some(tracked) => tracked.wrote(pending),
        None => plain_wrote(conn_id(conn), pending),
    };
    match unqueued {
        // Inside a transaction cacheops does not manage: not committed yet, so
        // a failure is the caller's to handle (its transaction may roll back).
        Some(now) if in_transaction(conn) => now.send(),
        Some(now) => {
            now.send_committed();
            Ok(())
        }
        None => Ok(()),
    }
}

pub(crate) type RowType<M> = diesel::dsl::SqlTypeOf<<<M as HasTable>::Table as Table>::AllColumns>;

/// The old and the new state of the one row `statement` (an UPDATE of `M`'s table
/// by primary key) changes, from the rewrite of `connection/rewrite.rs`. When it
/// declines (SQL it cannot parse, e.g. a raw fragment in the changeset): `locked`
/// (`SELECT ... FOR UPDATE` by primary key) then the UPDATE with `RETURNING`, in a
/// transaction.
fn updated_row<'q, M, C, S, L>(conn: &mut C, statement: S, locked: L) -> QueryResult<(M, M)>
where
    C: CacheConnection + LoadConnection,
    M: CacheRow<C::Backend> + HasTable + FromSqlRow<RowType<M>, C::Backend>,
    S: QueryFragment<C::Backend> + QueryId + LoadQuery<'q, C, M>,
    L: LoadQuery<'q, C, M>,
{
    if let Some(rows) = rewritten_row::<M, C, S>(conn, &statement) {
        return rows;
    }
    conn.transaction(|conn| {
        let old = locked.get_result::<M>(conn)?;
        let new = statement.get_result::<M>(conn)?;
        Ok((old, new))
    })
}

/// [`updated_row`] through the rewrite; `None` when there is none.
fn rewritten_row<M, C, S>(conn: &mut C, statement: &S) -> Option<QueryResult<(M, M)>>
where
    C: CacheConnection + LoadConnection,
    M: CacheRow<C::Backend> + HasTable + FromSqlRow<RowType<M>, C::Backend>,
    S: QueryFragment<C::Backend> + QueryId,
{
    let sql = <C::Backend as CacheBackend>::render_sql(statement).ok()?;
    let plan = helper_plan::<M>(&sql, <C::Backend as CacheBackend>::DIALECT)?;
    let open = conn.__in_transaction();
    let rows = old_and_new::<C, S, Typed<M, RowType<M>>>(conn, statement, &plan, open);
    Some(
        rows.and_then(|(mut old, mut new)| match (old.pop(), new.pop()) {
            (Some(old), Some(new)) => Ok((old, new)),
            _ => Err(diesel::result::Error::NotFound),
        }),
    )
}

/// The rewrite of a helper's UPDATE `sql` returning `M`'s columns, parsed once per
/// model and SQL text (a save otherwise spent more CPU parsing than waiting for
/// Redis). `None`: no rewrite.
pub(crate) fn helper_plan<M: Cacheable>(sql: &str, dialect: Dialect) -> Option<Arc<UpdatePlan>> {
    static PLANS: LazyLock<Memo<Option<Arc<UpdatePlan>>>> = LazyLock::new(Memo::default);
    // Two models of one table may render the same UPDATE but load other columns.
    let key = format!("{}\n{sql}", M::INFO.label);
    PLANS.get_or(&key, dialect, || {
        let update = parse_update(sql, dialect)?;
        let plan = update.plan(Some(M::INFO.primary_key), Columns::Named(M::INFO.columns))?;
        Some(Arc::new(plan))
    })
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
    /// Updates the stored row from `self` and returns `(old, new)`: one statement on
    /// PostgreSQL, a read and the update in one transaction on SQLite.
    fn save_returning_old(&'a self, conn: &mut C) -> QueryResult<(Self, Self)>;
}

impl<'a, M, C> Saveable<'a, C> for M
where
    C: CacheConnection + LoadConnection,
    M: CacheRow<C::Backend> + HasTable + FromSqlRow<RowType<M>, C::Backend>,
    &'a M: Identifiable<Table = M::Table>
        + AsChangeset<Target = M::Table>
        + IntoUpdateTarget<Table = M::Table>,
    M::Table: FindDsl<<&'a M as Identifiable>::Id>,
    Locked<diesel::dsl::Find<M::Table, <&'a M as Identifiable>::Id>>: LoadQuery<'a, C, M>,
    diesel::dsl::Update<&'a M, &'a M>:
        AsQuery + LoadQuery<'a, C, M> + QueryFragment<C::Backend> + QueryId,
{
    fn save_returning_old(&'a self, conn: &mut C) -> QueryResult<(M, M)> {
        let locked = Locked(M::table().find(self.id()));
        updated_row(conn, diesel::update(self).set(self), locked)
    }
}
