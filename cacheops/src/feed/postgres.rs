//! The change feed on PostgreSQL: an outbox table, one trigger function, and per
//! table of a registered model a row trigger and a TRUNCATE trigger; consumers
//! claim outbox rows with `FOR UPDATE SKIP LOCKED` and wake on `NOTIFY`.
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

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::{Connection, DefaultLoadingMode, LoadConnection, SimpleConnection};
use diesel::pg::{Pg, PgConnection};
use diesel::row::{Field, Row};
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text};
use diesel::RunQueryDsl;

use super::plan::{literal, quote, table_names, Modelled, Outbox, Plan, VERSION};
use super::{db_error, malformed, per_table, Invalidation};
use crate::connection::{DecodeRow, Named};
use crate::error::Result;
use crate::runtime::Cacheops;

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
fn channel(schema: &str) -> String {
    format!("cacheops_feed_{schema}")
}

impl super::sealed::Feed for PgConnection {
    fn plan(&mut self, schema: &str, models: &[Modelled]) -> Result<Plan> {
        let mut plan = Plan::empty();
        plan.problems
            .extend(outbox(self, schema)?.problem(&place(schema)));
        for name in table_names(models) {
            match resolved(self, name)? {
                Some(table) => {
                    let present = columns(self, &table)?;
                    plan.add(models, name, Some((table, &present)));
                }
                None => plan.add(models, name, None),
            }
        }
        plan.sql = install_sql(schema, &plan.tables);
        plan.uninstall_sql = uninstall_sql(schema, &plan.tables);
        Ok(plan)
    }

    fn check_installed(&mut self, schema: &str) -> Result<()> {
        outbox(self, schema)?.check(&place(schema))
    }

    fn apply_once(&mut self, handle: &Cacheops, schema: &str) -> Result<usize> {
        self.transaction(|conn| {
            let changes = claim(conn, schema)?;
            let claimed = per_table(&changes, |c| &c.tbl, |group| invalidation(conn, group));
            super::send(handle, claimed)?;
            let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
            delete(conn, schema, &seqs)?;
            Ok(changes.len())
        })
    }

    fn listen(&mut self, schema: &str) -> Result<()> {
        let listen = format!("LISTEN {}", quote(&channel(schema)));
        self.batch_execute(&listen).map_err(db_error("listening"))
    }

    fn wait(&mut self, stop: &AtomicBool) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            // Only a query reads what the server sent; then notifications are pending.
            if self.batch_execute("").is_err() || self.notifications_iter().count() > 0 {
                return;
            }
            std::thread::sleep(super::POLL);
        }
    }
}

fn place(schema: &str) -> String {
    format!("{}.outbox", quote(schema))
}

/// One claimed outbox row.
struct Change {
    seq: i64,
    /// The table, schema-qualified and quoted (`"public"."articles"`).
    tbl: String,
    /// The table's name, as cacheops' stamps name it.
    name: String,
    truncate: bool,
    old: Option<String>,
    new: Option<String>,
}

/// The oldest unclaimed outbox rows, locked for this transaction.
fn claim(conn: &mut PgConnection, schema: &str) -> Result<Vec<Change>> {
    let sql = format!(
        "SELECT seq, tbl, name, op::text, old, new FROM {}.outbox ORDER BY seq LIMIT {} \
         FOR UPDATE SKIP LOCKED",
        quote(schema),
        super::BATCH
    );
    let mut changes = Vec::new();
    let cursor = LoadConnection::<DefaultLoadingMode>::load(conn, diesel::sql_query(sql));
    for row in cursor.map_err(db_error("reading the outbox"))? {
        let row = row.map_err(db_error("reading the outbox"))?;
        changes.push(change(&row).ok_or_else(|| malformed("an outbox row"))?);
    }
    Ok(changes)
}

fn change<'a>(row: &impl Row<'a, Pg>) -> Option<Change> {
    let text = |i: usize| -> Option<Option<String>> {
        let field = row.get(i)?;
        Some(
            field
                .value()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        )
    };
    let seq = row
        .get(0)?
        .value()?
        .as_bytes()
        .try_into()
        .ok()
        .map(i64::from_be_bytes)?;
    Some(Change {
        seq,
        tbl: text(1)??,
        name: text(2)??,
        truncate: text(3)?? == "T",
        old: text(4)?,
        new: text(5)?,
    })
}

/// What the changes of one table invalidate: their rows' old and new states, or
/// the whole table (a TRUNCATE, or states that no longer read as its row type).
fn invalidation(conn: &mut PgConnection, changes: &[Change]) -> (String, Invalidation) {
    let first = &changes[0];
    if changes.iter().any(|c| c.truncate) {
        return (first.name.clone(), Invalidation::Table);
    }
    let states: Vec<&str> = changes
        .iter()
        .flat_map(|c| c.old.iter().chain(&c.new))
        .map(String::as_str)
        .collect();
    // A savepoint: a state that no longer casts must not abort the claim.
    let rows = conn.transaction(|conn| typed(conn, &first.tbl, &states));
    let invalidation = match rows {
        Ok(rows) => Invalidation::Rows(rows),
        Err(e) => {
            tracing::warn!(error = %e, table = %first.name, "cacheops: outbox rows do not read as the table's rows; invalidating it whole");
            Invalidation::Table
        }
    };
    (first.name.clone(), invalidation)
}

/// The states (row texts) of `tbl`, cast back to its row type: `(column, value)`
/// pairs in the table's own types.
fn typed(
    conn: &mut PgConnection,
    tbl: &str,
    states: &[&str],
) -> diesel::QueryResult<Vec<Vec<(String, crate::value::Value)>>> {
    let sql = format!("SELECT (CAST(x AS {tbl})).* FROM unnest($1::text[]) AS x");
    let query = diesel::sql_query(sql).bind::<Array<Text>, _>(states);
    let mut rows = Vec::with_capacity(states.len());
    for row in LoadConnection::<DefaultLoadingMode>::load(conn, query)? {
        rows.push(<Named as DecodeRow<Pg>>::decode(&row?)?);
    }
    Ok(rows)
}

fn delete(conn: &mut PgConnection, schema: &str, seqs: &[i64]) -> Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    let sql = format!("DELETE FROM {}.outbox WHERE seq = ANY($1)", quote(schema));
    diesel::sql_query(sql)
        .bind::<Array<BigInt>, _>(seqs)
        .execute(conn)
        .map(drop)
        .map_err(db_error("deleting applied outbox rows"))
}

/// The outbox of `schema`, told by the table's comment.
fn outbox(conn: &mut PgConnection, schema: &str) -> Result<Outbox> {
    let name = place(schema);
    let sql = diesel::dsl::sql::<(Bool, Nullable<Text>)>("to_regclass(")
        .bind::<Text, _>(&name)
        .sql(") IS NOT NULL, obj_description(to_regclass(")
        .bind::<Text, _>(&name)
        .sql("), 'pg_class')");
    let (exists, comment) = diesel::select(sql)
        .get_result::<(bool, Option<String>)>(conn)
        .map_err(db_error("looking up the outbox"))?;
    Ok(Outbox::of(exists.then_some(comment)))
}

/// `name` as the session's search path resolves it, schema-qualified and quoted;
/// `None` when there is no such table.
fn resolved(conn: &mut PgConnection, name: &str) -> Result<Option<String>> {
    let sql = diesel::dsl::sql::<Nullable<Text>>(
        "(SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(quote_ident(",
    )
    .bind::<Text, _>(name)
    .sql(")))");
    diesel::select(sql)
        .get_result::<Option<String>>(conn)
        .map_err(db_error("looking up a table"))
}

/// The columns of `table` (schema-qualified and quoted), as the database names them.
fn columns(conn: &mut PgConnection, table: &str) -> Result<Vec<String>> {
    let sql = diesel::dsl::sql::<Array<Text>>(
        "(SELECT coalesce(array_agg(attname::text), '{}') FROM pg_catalog.pg_attribute \
         WHERE attrelid = to_regclass(",
    )
    .bind::<Text, _>(table)
    .sql(") AND attnum > 0 AND NOT attisdropped)");
    diesel::select(sql)
        .get_result::<Vec<String>>(conn)
        .map_err(db_error("listing a table's columns"))
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
