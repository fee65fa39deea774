//! What cacheops asks each database about itself, once per session or handle:
//! the isolation of a transaction, which database and schemas a session reads,
//! whether a table has the columns a rewrite relies on, which columns compare
//! by a collation other than bytes, and what a function may do.

use diesel::connection::Connection;
use diesel::sql_types::Text;

use super::CacheConnection;

/// The one text value `expression` selects; `None` when the query fails.
fn text<C>(conn: &mut C, expression: &str) -> Option<String>
where
    C: Connection,
    diesel::dsl::select<diesel::expression::SqlLiteral<Text>>:
        diesel::query_dsl::LoadQuery<'static, C, String>,
{
    use diesel::RunQueryDsl;
    let expression = diesel::dsl::sql::<Text>(expression);
    diesel::select(expression).get_result::<String>(conn).ok()
}

/// PostgreSQL: the database and the server's address and port, then the user
/// and `search_path` (as set: spelled differently, two equal paths only keep
/// separate entries), separated by ASCII unit separators.
#[cfg(feature = "postgres")]
pub(crate) const PG_IDENTITY: &str =
    "current_database() || '@' || coalesce(host(inet_server_addr()), 'local') || ':' \
     || current_setting('port') || chr(31) || current_user || chr(31) \
     || current_setting('search_path')";

/// PostgreSQL: the open transaction's isolation level.
#[cfg(feature = "postgres")]
pub(crate) const PG_ISOLATION: &str = "current_setting('transaction_isolation')";

/// Whether statements at isolation `level` ([`PG_ISOLATION`]) read the latest
/// committed data: READ COMMITTED (READ UNCOMMITTED behaves the same on
/// PostgreSQL) takes a new snapshot per statement.
#[cfg(feature = "postgres")]
pub(crate) fn reads_latest_at(level: Option<&str>) -> bool {
    matches!(level, Some("read committed" | "read uncommitted"))
}

/// PostgreSQL: columns of tables and views whose collation is not
/// deterministic (ICU `deterministic = false`), as [`pairs`].
#[cfg(feature = "postgres")]
pub(crate) const PG_INEXACT_COLUMNS: &str =
    "coalesce((SELECT string_agg(lower(c.relname) || chr(31) || lower(a.attname), chr(30)) \
     FROM pg_catalog.pg_attribute a \
     JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
     JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation \
     WHERE NOT co.collisdeterministic AND a.attnum > 0 AND NOT a.attisdropped), '')";

/// PostgreSQL: the schema and volatility (`i`, `s`, `v`) of every function
/// named `$1` in schema `$2` (any schema when `$2` is NULL), as [`pairs`].
#[cfg(feature = "postgres")]
const PG_FUNCTIONS: &str =
    "SELECT coalesce((SELECT string_agg(n.nspname || chr(31) || p.provolatile::text, chr(30)) \
     FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     WHERE p.proname = $1 AND (n.nspname = $2 OR $2 IS NULL)), '') AS found";

/// The row [`PG_FUNCTIONS`] returns.
#[cfg(feature = "postgres")]
#[derive(diesel::QueryableByName)]
pub(crate) struct Functions {
    #[diesel(sql_type = Text)]
    found: String,
}

/// [`PG_FUNCTIONS`] for `schema.name`, its binds set: run by the blocking and
/// the async connection alike.
#[cfg(feature = "postgres")]
pub(crate) fn pg_functions(
    schema: Option<&str>,
    name: &str,
) -> diesel::query_builder::BoxedSqlQuery<'static, diesel::pg::Pg, diesel::query_builder::SqlQuery>
{
    use diesel::sql_types::Nullable;
    diesel::sql_query(PG_FUNCTIONS)
        .into_boxed()
        .bind::<Text, _>(name.to_string())
        .bind::<Nullable<Text>, _>(schema.map(str::to_string))
}

/// What [`pg_functions`] found, as [`pairs`].
#[cfg(feature = "postgres")]
pub(crate) fn functions_found(found: Functions) -> Vec<(String, String)> {
    pairs(&found.found)
}

/// PostgreSQL: how many of the columns `$2` the table `$1` (schema-qualified
/// or not) has.
#[cfg(feature = "postgres")]
const PG_COLUMNS: &str = "SELECT (SELECT count(*) FROM pg_catalog.pg_attribute \
     WHERE attnum > 0 AND NOT attisdropped AND attrelid = to_regclass($1) \
     AND attname = ANY($2)) AS found";

/// The row [`PG_COLUMNS`] returns.
#[cfg(feature = "postgres")]
#[derive(diesel::QueryableByName)]
pub(crate) struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    found: i64,
}

/// [`PG_COLUMNS`] for `table` and `columns`, its binds set: run by the blocking
/// and the async connection alike.
#[cfg(feature = "postgres")]
pub(crate) fn pg_columns(
    table: &str,
    columns: &[&str],
) -> diesel::query_builder::BoxedSqlQuery<'static, diesel::pg::Pg, diesel::query_builder::SqlQuery>
{
    use diesel::sql_types::Array;
    let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    diesel::sql_query(PG_COLUMNS)
        .into_boxed()
        .bind::<Text, _>(table.to_string())
        .bind::<Array<Text>, _>(columns)
}

/// Whether the table [`pg_columns`] asked about has all of `columns`.
#[cfg(feature = "postgres")]
pub(crate) fn columns_found(found: Count, columns: &[&str]) -> Option<bool> {
    Some(usize::try_from(found.found).ok()? == columns.len())
}

/// Pairs joined as `a<US>b<RS>a<US>b...` (ASCII unit and record separators,
/// which names do not hold), as the catalog queries return them.
pub(crate) fn pairs(joined: &str) -> Vec<(String, String)> {
    let pair = |p: &str| {
        p.split_once('\u{1f}')
            .map(|(a, b)| (a.to_string(), b.to_string()))
    };
    joined.split('\u{1e}').filter_map(pair).collect()
}

#[cfg(feature = "postgres")]
impl CacheConnection for diesel::pg::PgConnection {
    /// READ COMMITTED (READ UNCOMMITTED behaves the same on PostgreSQL) takes a new
    /// snapshot per statement. One round trip, once per transaction.
    fn __statements_read_latest(&mut self) -> bool {
        reads_latest_at(text(self, PG_ISOLATION).as_deref())
    }

    /// One statement ([`PG_IDENTITY`]).
    fn __database_identity(&mut self) -> Option<String> {
        text(self, PG_IDENTITY)
    }

    /// Outside a transaction block every statement starts its own transaction;
    /// inside one, `now()` is the block's start, earlier than the statement's.
    /// An aborted block refuses the query: open too.
    fn __transaction_open(&mut self) -> Option<bool> {
        let probe = text(self, "(now() = statement_timestamp())::text");
        Some(probe.as_deref() != Some("true"))
    }

    /// One statement on `pg_attribute`, once per table and handle.
    fn __has_columns(&mut self, table: &str, columns: &[&str]) -> Option<bool> {
        use diesel::RunQueryDsl;
        let found = pg_columns(table, columns).get_result::<Count>(self);
        columns_found(found.ok()?, columns)
    }

    /// One statement on `pg_attribute` ([`PG_INEXACT_COLUMNS`]).
    fn __inexact_columns(&mut self) -> Option<Vec<(String, String)>> {
        Some(pairs(&text(self, PG_INEXACT_COLUMNS)?))
    }

    /// One statement on `pg_proc`, once per function name and handle.
    fn __catalog_functions(
        &mut self,
        schema: Option<&str>,
        name: &str,
    ) -> Option<Vec<(String, String)>> {
        use diesel::RunQueryDsl;
        let found = pg_functions(schema, name).get_result::<Functions>(self);
        found.ok().map(functions_found)
    }
}

#[cfg(feature = "sqlite")]
impl CacheConnection for diesel::sqlite::SqliteConnection {
    /// `BEGIN IMMEDIATE`: the write lock first (waiting as long as the busy timeout
    /// allows), then the read. A deferred transaction would read first and then
    /// fail with SQLITE_BUSY if another connection committed before it wrote.
    fn __begin_write(&mut self) -> diesel::result::QueryResult<()> {
        diesel::connection::AnsiTransactionManager::begin_transaction_sql(self, "BEGIN IMMEDIATE")
    }

    // `__statements_read_latest` stays false: a SQLite transaction reads from the
    // snapshot its first read took (WAL mode), whatever committed since.

    /// The main database's file; an in-memory database (no file) is its
    /// connection's own, so it gets an identity no other connection shares.
    fn __database_identity(&mut self) -> Option<String> {
        let file = text(
            self,
            "(SELECT file FROM pragma_database_list WHERE name = 'main')",
        )?;
        Some(match file.is_empty() {
            false => file,
            true => format!("memory {:032x}", crate::protocol::layout::unique()),
        })
    }

    /// `BEGIN` fails inside a transaction; outside one it is rolled back at once.
    fn __transaction_open(&mut self) -> Option<bool> {
        use diesel::connection::SimpleConnection;
        match self.batch_execute("BEGIN") {
            Err(_) => Some(true),
            Ok(()) => self.batch_execute("ROLLBACK").ok().map(|()| false),
        }
    }

    /// One statement on `sqlite_master`: the tables declaring a collation, whose
    /// CREATE TABLE is parsed for columns collated other than `BINARY`.
    fn __inexact_columns(&mut self) -> Option<Vec<(String, String)>> {
        let joined = text(
            self,
            "coalesce((SELECT group_concat(name || char(31) || sql, char(30)) FROM sqlite_master \
             WHERE type = 'table' AND sql LIKE '%collate%'), '')",
        )?;
        Some(
            pairs(&joined)
                .iter()
                .flat_map(|(name, sql)| collated_columns(name, sql))
                .collect(),
        )
    }
}

/// The `(table, column)` pairs of table `name`'s CREATE TABLE whose columns are
/// collated other than by bytes (SQLite's `BINARY`); `(name, "*")`, every column,
/// when it does not parse (widening is safe).
#[cfg(feature = "sqlite")]
fn collated_columns(name: &str, create: &str) -> Vec<(String, String)> {
    use sqlparser::ast::{ColumnOption, Statement};
    let table = name.to_lowercase();
    let parsed =
        sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::SQLiteDialect {}, create);
    let Ok(Some(Statement::CreateTable(created))) = parsed.map(|mut s| s.pop()) else {
        return vec![(table, "*".to_string())];
    };
    let collated = |c: &&sqlparser::ast::ColumnDef| {
        c.options.iter().any(|o| match &o.option {
            ColumnOption::Collation(collation) => {
                !collation.to_string().eq_ignore_ascii_case("binary")
            }
            _ => false,
        })
    };
    let column = |c: &sqlparser::ast::ColumnDef| (table.clone(), c.name.value.to_lowercase());
    created
        .columns
        .iter()
        .filter(collated)
        .map(column)
        .collect()
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::collated_columns;

    #[test]
    fn sqlite_collations_other_than_binary_are_found() {
        let create = "CREATE TABLE Users (id INTEGER PRIMARY KEY, Email TEXT COLLATE NOCASE, \
                      code TEXT COLLATE BINARY, name TEXT COLLATE rtrim)";
        assert_eq!(
            collated_columns("Users", create),
            [
                ("users".into(), "email".into()),
                ("users".into(), "name".into())
            ]
        );
        let odd = collated_columns("odd", "CREATE TABLE odd (((");
        assert_eq!(
            odd,
            [("odd".into(), "*".into())],
            "every column when it does not parse"
        );
    }
}
