//! The SQL that installs the change feed (PostgreSQL): an outbox table, one
//! trigger function, and per table of a registered model a row trigger and a
//! TRUNCATE trigger. Printed by `cacheops-cli feed install --dry-run`, run by
//! [`install`]; [`uninstall`] drops it again.
//!
//! Why triggers into an outbox, not logical decoding: they see every committed
//! change whoever made it (cascades and other triggers included), need no server
//! setting (`wal_level`) nor replication privilege, commit atomically with the
//! change they record (a consumer that was down finds every row waiting), and the
//! Rust pgoutput crates are still young (0.0.x-0.1 but one).
//!
//! Each outbox row holds the changed row's old and new state as the text of its
//! row type (`OLD::text`): the consumer casts it back to the table's type, so
//! values come out in the table's own types, exactly as a `RETURNING` gives them.

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;

use crate::error::{Error, ErrorKind, Result};

/// The outbox's default schema.
pub const DEFAULT_SCHEMA: &str = "cacheops";

/// The outbox's comment, naming the shape this version of cacheops writes and
/// reads: an outbox made by another version is refused, never misread.
pub const VERSION: &str = "cacheops change feed, outbox version 1";

/// What [`plan`] found: the SQL to run, the tables it leaves out, and what stops
/// it from being installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Statements, in order.
    pub sql: String,
    /// Tables of registered models the database does not have, and why.
    pub skipped: Vec<String>,
    /// Tables the triggers are installed on.
    pub tables: Vec<String>,
    /// Why the feed must not be installed as it stands (a model's column the
    /// table lacks, an outbox of another version); [`install`] refuses while
    /// there is any.
    pub problems: Vec<String>,
}

/// What the feed needs of a model: its label, table and columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modelled {
    /// `app.Model`.
    pub label: String,
    /// The table, as the model names it.
    pub table: String,
    /// The model's columns.
    pub columns: Vec<String>,
}

impl From<&crate::model::ModelInfo> for Modelled {
    fn from(m: &crate::model::ModelInfo) -> Modelled {
        Modelled {
            label: m.label.to_string(),
            table: m.table.to_string(),
            columns: m.columns.iter().map(|c| c.to_string()).collect(),
        }
    }
}

impl From<&crate::registry::ModelEntry> for Modelled {
    fn from(m: &crate::registry::ModelEntry) -> Modelled {
        Modelled {
            label: m.label.clone(),
            table: m.table.clone(),
            columns: m.columns.clone(),
        }
    }
}

/// The installation SQL for `tables` (as the database resolves them), with the
/// outbox in `schema`.
pub fn install_sql(schema: &str, tables: &[String]) -> String {
    let s = quote(schema);
    let mut sql = format!(
        "CREATE SCHEMA IF NOT EXISTS {s};\n\
         CREATE TABLE IF NOT EXISTS {s}.outbox (\n\
         \x20   seq bigserial PRIMARY KEY,\n\
         \x20   tbl text NOT NULL,\n\
         \x20   name text NOT NULL,\n\
         \x20   op \"char\" NOT NULL,\n\
         \x20   old text,\n\
         \x20   new text,\n\
         \x20   at timestamptz NOT NULL DEFAULT clock_timestamp()\n\
         );\n\
         COMMENT ON TABLE {s}.outbox IS {version};\n\
         CREATE OR REPLACE FUNCTION {s}.capture() RETURNS trigger LANGUAGE plpgsql AS $cacheops$\n\
         BEGIN\n\
         \x20   INSERT INTO {s}.outbox (tbl, name, op, old, new)\n\
         \x20   VALUES (format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME), TG_TABLE_NAME, left(TG_OP, 1),\n\
         \x20           CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN OLD::text END,\n\
         \x20           CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN NEW::text END);\n\
         \x20   PERFORM pg_notify({channel}, '');\n\
         \x20   RETURN NULL;\n\
         END\n\
         $cacheops$;\n",
        channel = literal(&channel(schema)),
        version = literal(VERSION),
    );
    for table in tables {
        sql.push_str(&format!(
            "DROP TRIGGER IF EXISTS cacheops_capture ON {table};\n\
             CREATE TRIGGER cacheops_capture AFTER INSERT OR UPDATE OR DELETE ON {table} \
             FOR EACH ROW EXECUTE FUNCTION {s}.capture();\n\
             DROP TRIGGER IF EXISTS cacheops_capture_truncate ON {table};\n\
             CREATE TRIGGER cacheops_capture_truncate AFTER TRUNCATE ON {table} \
             FOR EACH STATEMENT EXECUTE FUNCTION {s}.capture();\n"
        ));
    }
    sql
}

/// The SQL that removes the triggers from `tables` and the outbox schema's
/// objects (rows not yet applied are lost with it: run the consumer first).
pub fn uninstall_sql(schema: &str, tables: &[String]) -> String {
    let s = quote(schema);
    let mut sql = String::new();
    for table in tables {
        sql.push_str(&format!(
            "DROP TRIGGER IF EXISTS cacheops_capture ON {table};\n\
             DROP TRIGGER IF EXISTS cacheops_capture_truncate ON {table};\n"
        ));
    }
    sql.push_str(&format!(
        "DROP FUNCTION IF EXISTS {s}.capture();\nDROP TABLE IF EXISTS {s}.outbox;\n"
    ));
    sql
}

/// The NOTIFY channel the triggers wake consumers on.
pub(crate) fn channel(schema: &str) -> String {
    format!("cacheops_feed_{schema}")
}

/// Which tables of this program's registered models `conn`'s database has (the
/// rest skipped, each with the reason), what stands in the way, and the
/// installation SQL.
pub fn plan(conn: &mut PgConnection, schema: &str) -> Result<Plan> {
    let models: Vec<Modelled> = crate::model::models().map(Modelled::from).collect();
    plan_for(conn, schema, &models)
}

/// [`plan`] for `models` (the CLI's come from the registry in Redis).
pub fn plan_for(conn: &mut PgConnection, schema: &str, models: &[Modelled]) -> Result<Plan> {
    let mut plan = Plan {
        sql: String::new(),
        skipped: Vec::new(),
        tables: Vec::new(),
        problems: Vec::new(),
    };
    if let Outbox::Other(found) = outbox(conn, schema)? {
        plan.problems.push(other_version(schema, &found));
    }
    let mut names: Vec<&str> = models.iter().map(|m| m.table.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let Some(table) = resolved(conn, name)? else {
            plan.skipped
                .push(format!("{name}: no such table in this database"));
            continue;
        };
        let present = columns(conn, &table)?;
        for model in models.iter().filter(|m| m.table == name) {
            plan.problems
                .extend(missing_columns(model, &table, &present));
        }
        plan.tables.push(table);
    }
    plan.sql = install_sql(schema, &plan.tables);
    Ok(plan)
}

/// A model's columns its table does not have, one problem each.
fn missing_columns(model: &Modelled, table: &str, present: &[String]) -> Vec<String> {
    model
        .columns
        .iter()
        .filter(|c| !present.contains(c))
        .map(|c| {
            format!(
                "{table}: column `{c}` of model {} is not in the table (renamed or dropped? \
                 update the model or the table first)",
                model.label
            )
        })
        .collect()
}

fn other_version(schema: &str, found: &str) -> String {
    format!(
        "{}.outbox was made by another version of cacheops (its comment: {found:?}; this \
         one reads {VERSION:?}): apply its rows with that version's consumer, then run \
         `feed uninstall` and `feed install`",
        quote(schema)
    )
}

/// What the schema holds where the outbox belongs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outbox {
    /// No outbox: the feed is not installed there.
    Missing,
    /// The outbox this version reads.
    Current,
    /// An outbox of another version, with its comment.
    Other(String),
}

/// Finds the outbox of `schema` and tells its version by the table's comment.
pub(crate) fn outbox(conn: &mut PgConnection, schema: &str) -> Result<Outbox> {
    use diesel::sql_types::{Nullable, Text};
    use diesel::RunQueryDsl;
    let name = format!("{}.outbox", quote(schema));
    let sql = diesel::dsl::sql::<(diesel::sql_types::Bool, Nullable<Text>)>("to_regclass(")
        .bind::<Text, _>(&name)
        .sql(") IS NOT NULL, obj_description(to_regclass(")
        .bind::<Text, _>(&name)
        .sql("), 'pg_class')");
    let (exists, comment) = diesel::select(sql)
        .get_result::<(bool, Option<String>)>(conn)
        .map_err(|e| {
            Error::new(ErrorKind::Database, "could not look up the outbox").with_source(e)
        })?;
    Ok(match (exists, comment) {
        (false, _) => Outbox::Missing,
        (true, Some(c)) if c == VERSION => Outbox::Current,
        (true, c) => Outbox::Other(c.unwrap_or_default()),
    })
}

/// Fails with a clear [`ErrorKind::Config`] error unless `schema` holds the
/// outbox this version reads: what a consumer checks before it claims a row.
pub(crate) fn check_installed(conn: &mut PgConnection, schema: &str) -> Result<()> {
    match outbox(conn, schema)? {
        Outbox::Current => Ok(()),
        Outbox::Missing => Err(Error::new(
            ErrorKind::Config,
            format!(
                "change feed: no outbox in schema {}: run `cacheops-cli feed install` first",
                quote(schema)
            ),
        )),
        Outbox::Other(found) => Err(Error::new(
            ErrorKind::Config,
            format!("change feed: {}", other_version(schema, &found)),
        )),
    }
}

/// Runs `sql` (an install or uninstall script) in one transaction.
pub fn apply_sql(conn: &mut PgConnection, sql: &str) -> Result<()> {
    run_in_transaction(conn, sql)
}

/// Installs the feed for every table of a registered model that `conn`'s
/// database has, in one transaction; the plan it ran.
pub fn install(conn: &mut PgConnection, schema: &str) -> Result<Plan> {
    let plan = plan(conn, schema)?;
    refuse_problems(&plan)?;
    run_in_transaction(conn, &plan.sql)?;
    Ok(plan)
}

/// An [`ErrorKind::Config`] error listing the plan's problems, if it has any.
pub fn refuse_problems(plan: &Plan) -> Result<()> {
    match plan.problems.is_empty() {
        true => Ok(()),
        false => Err(Error::new(
            ErrorKind::Config,
            format!(
                "the change feed cannot be installed: {}",
                plan.problems.join("; ")
            ),
        )),
    }
}

/// Removes what [`install`] created.
pub fn uninstall(conn: &mut PgConnection, schema: &str) -> Result<Plan> {
    let mut plan = plan(conn, schema)?;
    plan.sql = uninstall_sql(schema, &plan.tables);
    run_in_transaction(conn, &plan.sql)?;
    Ok(plan)
}

fn run_in_transaction(conn: &mut PgConnection, sql: &str) -> Result<()> {
    conn.batch_execute(&format!("BEGIN;\n{sql}COMMIT;"))
        .map_err(|e| {
            let _ = conn.batch_execute("ROLLBACK");
            Error::new(ErrorKind::Database, "installing the change feed failed").with_source(e)
        })
}

/// `name` as the session's search path resolves it, schema-qualified and quoted;
/// `None` when there is no such table.
fn resolved(conn: &mut PgConnection, name: &str) -> Result<Option<String>> {
    use diesel::sql_types::{Nullable, Text};
    use diesel::RunQueryDsl;
    let sql = diesel::dsl::sql::<Nullable<Text>>(
        "(SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(quote_ident(",
    )
    .bind::<Text, _>(name)
    .sql(")))");
    diesel::select(sql)
        .get_result::<Option<String>>(conn)
        .map_err(|e| Error::new(ErrorKind::Database, "could not look up a table").with_source(e))
}

/// The columns of `table` (schema-qualified and quoted), as the database names them.
fn columns(conn: &mut PgConnection, table: &str) -> Result<Vec<String>> {
    use diesel::sql_types::Text;
    use diesel::RunQueryDsl;
    let sql = diesel::dsl::sql::<diesel::sql_types::Array<Text>>(
        "(SELECT coalesce(array_agg(attname::text), '{}') FROM pg_catalog.pg_attribute \
         WHERE attrelid = to_regclass(",
    )
    .bind::<Text, _>(table)
    .sql(") AND attnum > 0 AND NOT attisdropped)");
    diesel::select(sql)
        .get_result::<Vec<String>>(conn)
        .map_err(|e| {
            Error::new(ErrorKind::Database, "could not list a table's columns").with_source(e)
        })
}

/// An identifier, double-quoted.
pub(crate) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A string literal, single-quoted.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_names_every_table_and_quotes_the_schema() {
        let sql = install_sql("my \"feed\"", &["\"public\".\"articles\"".into()]);
        assert!(sql.contains("CREATE TABLE IF NOT EXISTS \"my \"\"feed\"\"\".outbox"));
        assert!(sql.contains("AFTER TRUNCATE ON \"public\".\"articles\" FOR EACH STATEMENT"));
        assert!(sql.contains("pg_notify('cacheops_feed_my \"feed\"', '')"));
        let gone = uninstall_sql("cacheops", &["\"public\".\"articles\"".into()]);
        assert!(gone.ends_with("DROP TABLE IF EXISTS \"cacheops\".outbox;\n"));
    }
}
