//! Running a write so that it hands back the rows it touched: an INSERT or DELETE
//! with a `RETURNING` clause, an UPDATE rewritten by [`super::rewrite`].
//!
//! Rewritten statements keep Diesel's binds exactly: [`WithSql`] gives the
//! connection the new SQL text through `QueryFragment::to_sql` (which both
//! backends' statement caches call to build the text) and walks the original
//! statement for everything else (binds, whether it may be cached as prepared).
//!
//! Statements each path runs:
//! - INSERT / DELETE: the statement itself, with `RETURNING *`.
//! - UPDATE on PostgreSQL: one statement returning old and new rows.
//! - UPDATE on SQLite: `SELECT` (old rows) and `UPDATE ... RETURNING` (new rows),
//!   inside the caller's transaction, or inside `BEGIN IMMEDIATE ... COMMIT` of
//!   their own (see [`CacheConnection::__begin_write`]).

use std::marker::PhantomData;

use diesel::backend::Backend;
use diesel::connection::{LoadConnection, TransactionManager};
use diesel::deserialize::FromSqlRow;
use diesel::query_builder::{AstPass, Query, QueryBuilder, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::row::{Field, Row};

use super::effect::{self, Effect};
use super::rewrite::{self, Columns, UpdatePlan};
use super::CacheConnection;
use crate::backend::{CacheBackend, Dialect};
use crate::transaction::Owed;
use crate::value::Value;

/// A write [`super::CachedConnection`] can invalidate row by row.
#[derive(Debug)]
pub(crate) enum Granular {
    /// A plain INSERT or DELETE, run as `sql` (the statement returning its rows).
    Returning { table: String, sql: String },
    /// A plain UPDATE of one table, run as `plan`. `check`: a schema-qualified
    /// target and the primary key its model gave, to make sure that table has
    /// those columns before the rewrite relies on them.
    Update {
        table: String,
        plan: UpdatePlan,
        check: Option<(String, &'static [&'static str])>,
    },
}

/// How `sql` (with write effect `effect`) can be run to learn the rows it touches;
/// `None` leaves it to the table-wide path.
pub(crate) fn granular(sql: &str, effect: &Effect, dialect: Dialect) -> Option<Granular> {
    let one_table = matches!(effect, Effect::Tables(tables) if tables.len() == 1);
    if !one_table {
        return None;
    }
    if let Some(rewrite::Returning { table, sql }) = rewrite::returning(sql, dialect) {
        return Some(Granular::Returning { table, sql });
    }
    if effect::first_keyword(sql).as_deref() != Some("UPDATE") {
        return None;
    }
    let update = rewrite::parse_update(sql, dialect)?;
    let pk = crate::model::model_of_table(update.table()).map(|m| m.primary_key);
    let plan = update.plan(pk, Columns::All)?;
    let table = update.table().to_string();
    let check = match (&plan, update.qualified_target(), pk) {
        (UpdatePlan::Paired(_), Some(target), Some(pk)) => Some((target.to_string(), pk)),
        _ => None,
    };
    Some(Granular::Update { table, plan, check })
}

/// Runs `source` the granular way: the number of rows it changed, and what that
/// owes (every state it returned: old and new rows of an UPDATE). `open`: whether
/// a transaction is open on `conn` (raw `BEGIN`s included).
pub(crate) fn execute<C, T>(
    conn: &mut C,
    source: &T,
    granular: &Granular,
    open: bool,
) -> QueryResult<(usize, Owed)>
where
    C: CacheConnection + LoadConnection,
    T: QueryFragment<C::Backend> + QueryId,
{
    match granular {
        Granular::Returning { table, sql } => {
            let rows = load_all::<C, T, Named>(conn, source, sql)?;
            Ok((rows.len(), Owed::Named(table.clone(), rows)))
        }
        Granular::Update { table, plan, .. } => {
            let (mut states, new) = old_and_new::<C, T, Named>(conn, source, plan, open)?;
            let count = new.len();
            states.extend(new);
            Ok((count, Owed::Named(table.clone(), states)))
        }
    }
}

/// The old states of the rows an UPDATE changed, and their new states, in the
/// same order.
pub(crate) type OldAndNew<R> = (Vec<R>, Vec<R>);

/// Runs the UPDATE `source` as `plan`: the old and the new state of every row it
/// changed. `open`: whether a transaction is open on `conn`.
pub(crate) fn old_and_new<C, T, D>(
    conn: &mut C,
    source: &T,
    plan: &UpdatePlan,
    open: bool,
) -> QueryResult<OldAndNew<D::Out>>
where
    C: CacheConnection + LoadConnection,
    T: QueryFragment<C::Backend> + QueryId,
    D: DecodeRow<C::Backend>,
{
    match plan {
        UpdatePlan::Paired(sql) => {
            let pairs = load_all::<C, T, Pair<D>>(conn, source, sql)?;
            Ok(pairs.into_iter().unzip())
        }
        UpdatePlan::PreRead { pre_read, update } => write_transaction(conn, open, |conn| {
            let old = load_all::<C, T, D>(conn, source, pre_read)?;
            let new = load_all::<C, T, D>(conn, source, update)?;
            Ok((old, new))
        }),
    }
}

/// Runs `f` inside the connection's transaction, or inside one of its own.
///
/// SQLite: the pre-read and the UPDATE must see the same rows. SQLite has one
/// writer at a time, and a transaction that read before writing cannot write
/// over a newer commit (it fails with SQLITE_BUSY instead), so inside a
/// transaction the rows read are the rows updated. A transaction of our own starts
/// with the write lock (`BEGIN IMMEDIATE`), so it waits for other writers instead.
fn write_transaction<C, R>(
    conn: &mut C,
    open: bool,
    f: impl FnOnce(&mut C) -> QueryResult<R>,
) -> QueryResult<R>
where
    C: CacheConnection,
{
    if open {
        return f(conn);
    }
    conn.__begin_write()?;
    match f(conn) {
        Ok(out) => C::TransactionManager::commit_transaction(conn).map(|()| out),
        Err(e) => {
            // The statement's error says more than a failed ROLLBACK would.
            let _ = C::TransactionManager::rollback_transaction(conn);
            Err(e)
        }
    }
}

/// Every row of `source` run as `sql`, decoded by `D`.
fn load_all<C, T, D>(conn: &mut C, source: &T, sql: &str) -> QueryResult<Vec<D::Out>>
where
    C: CacheConnection + LoadConnection,
    T: QueryFragment<C::Backend> + QueryId,
    D: DecodeRow<C::Backend>,
{
    let mut rows = Vec::new();
    let prepare = D::NAMED_COLUMNS;
    for row in conn.load(WithSql {
        sql,
        source,
        prepare,
    })? {
        rows.push(D::decode(&row?)?);
    }
    Ok(rows)
}

/// How a returned row becomes a value.
pub(crate) trait DecodeRow<DB: Backend> {
    /// One decoded row.
    type Out;
    /// Whether the statements read by this decoder name their result columns
    /// (rather than `*`), so that a schema change cannot change what a prepared
    /// statement returns: only those are kept in Diesel's statement cache.
    const NAMED_COLUMNS: bool;
    /// Decodes `row`.
    fn decode<'a>(row: &impl Row<'a, DB>) -> QueryResult<Self::Out>;
}

/// `(column, value)` pairs as the database returned them, for invalidation.
pub(crate) struct Named;

impl<DB: CacheBackend> DecodeRow<DB> for Named {
    type Out = Vec<(String, Value)>;
    const NAMED_COLUMNS: bool = false;

    fn decode<'a>(row: &impl Row<'a, DB>) -> QueryResult<Self::Out> {
        (0..row.field_count())
            .filter_map(|i| row.get(i))
            .map(|field| {
                let name = field.field_name().unwrap_or_default().to_string();
                let value = DB::raw_value(field.value()).map_err(super::into_diesel)?;
                Ok((name, value))
            })
            .collect()
    }
}

/// A typed row `M` of SQL type `ST`, as `get_result` would load it.
pub(crate) struct Typed<M, ST>(PhantomData<(M, ST)>);

impl<DB: Backend, M: FromSqlRow<ST, DB>, ST> DecodeRow<DB> for Typed<M, ST> {
    const NAMED_COLUMNS: bool = true;
    type Out = M;

    fn decode<'a>(row: &impl Row<'a, DB>) -> QueryResult<M> {
        M::build_from_row(row).map_err(diesel::result::Error::DeserializationError)
    }
}

/// A row of [`UpdatePlan::Paired`]: the old state then the new, decoded by `D`.
pub(crate) struct Pair<D>(PhantomData<D>);

impl<DB: Backend, D: DecodeRow<DB>> DecodeRow<DB> for Pair<D> {
    const NAMED_COLUMNS: bool = D::NAMED_COLUMNS;
    type Out = (D::Out, D::Out);

    fn decode<'a>(row: &impl Row<'a, DB>) -> QueryResult<Self::Out> {
        let half = row.field_count() / 2;
        let old = D::decode(&row.partial_row(0..half))?;
        let new = D::decode(&row.partial_row(half..2 * half))?;
        Ok((old, new))
    }
}

/// `source` sent as `sql`: a rewrite of its text with the same binds.
pub(crate) struct WithSql<'a, T> {
    pub(crate) sql: &'a str,
    pub(crate) source: &'a T,
    /// Kept as a prepared statement, keyed by its SQL text and bind types (which
    /// fully define it). Diesel marks every UPDATE unsafe to cache because its
    /// *type* does not fix its SQL (skipped `None` fields); keyed by text, that
    /// does not matter, and parsing and planning the rewrite on every save cost
    /// PostgreSQL ~0.2 ms.
    pub(crate) prepare: bool,
}

impl<T> Query for WithSql<'_, T> {
    type SqlType = diesel::sql_types::Untyped;
}

/// Not static: the statement cache keys it by its SQL text.
impl<T> QueryId for WithSql<'_, T> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<T: QueryFragment<DB>, DB: Backend> QueryFragment<DB> for WithSql<'_, T> {
    /// Binds are the source's.
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.source.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, backend: &DB) -> QueryResult<bool> {
        Ok(self.prepare || self.source.is_safe_to_cache_prepared(backend)?)
    }

    /// The text is the rewrite.
    fn to_sql(&self, out: &mut DB::QueryBuilder, _backend: &DB) -> QueryResult<()> {
        out.push_sql(self.sql);
        Ok(())
    }
}
