//! The change feed on SQLite: per table of a registered model three row
//! triggers (SQLite has no TRUNCATE: `DELETE FROM t` fires them row by row once a
//! table has triggers) write into an outbox of three tables, named after the
//! prefix (`cacheops_outbox`, `cacheops_outbox_values`, `cacheops_outbox_version`).
//!
//! Each changed column value is one row of `<prefix>_outbox_values`, in a column
//! with no declared type: SQLite keeps its storage class (integer, real, text,
//! blob), so the consumer reads it back as the application's own binds encode
//! it; a text or JSON form would lose blobs or types. The triggers list the
//! table's columns as they were at install: reinstall after a migration (a column
//! added since is absent from the states, and an absent column matches any
//! condition: the feed widens).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::{DefaultLoadingMode, LoadConnection, SimpleConnection};
use diesel::row::{Field, Row};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::RunQueryDsl;

use super::plan::{literal, quote, table_names, Modelled, Outbox, Plan, VERSION};
use super::{db_error, malformed, per_table, Invalidation};
use crate::backend::CacheBackend;
use crate::error::Result;
use crate::runtime::Cacheops;
use crate::value::Value;

/// Runs a one-row query of `char(31)`-joined names and splits them (none for NULL).
macro_rules! joined {
    ($conn:expr, $sql:expr, $doing:expr) => {
        diesel::select($sql)
            .get_result::<Option<String>>($conn)
            .map_err(db_error($doing))
            .map(|found| {
                found.map_or_else(Vec::new, |j| {
                    j.split('\u{1f}')
                        .map(str::to_string)
                        .collect::<Vec<String>>()
                })
            })
    };
}

/// A table the triggers go on: its name, columns, and the column sets of its
/// primary key and unique indexes (what `INSERT OR REPLACE` conflicts on).
struct Covered {
    table: String,
    columns: Vec<String>,
    keys: Vec<Vec<String>>,
}

/// The installation SQL for `tables`, with the outbox tables named after
/// `prefix`.
fn install_sql(prefix: &str, tables: &[Covered]) -> String {
    let (outbox, values, version) = names(prefix);
    let mut sql = format!(
        "CREATE TABLE IF NOT EXISTS {outbox} (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
         tbl TEXT NOT NULL, op TEXT NOT NULL, at REAL NOT NULL DEFAULT (julianday('now')));\n\
         CREATE TABLE IF NOT EXISTS {values} (seq INTEGER NOT NULL, side TEXT NOT NULL, \
         col TEXT NOT NULL, val);\n\
         CREATE INDEX IF NOT EXISTS {index} ON {values} (seq);\n\
         CREATE TABLE IF NOT EXISTS {version} (version TEXT NOT NULL);\n\
         DELETE FROM {version};\n\
         INSERT INTO {version} (version) VALUES ({mark});\n",
        index = quote(&format!("{prefix}_outbox_values_seq")),
        mark = literal(VERSION),
    );
    for t in tables {
        for (op, event) in [("I", "INSERT"), ("U", "UPDATE"), ("D", "DELETE")] {
            sql.push_str(&trigger_sql(prefix, &t.table, &t.columns, op, event));
        }
        for event in ["INSERT", "UPDATE"] {
            sql.push_str(&replaced_sql(prefix, t, event));
        }
    }
    sql
}

/// A `BEFORE` trigger recording, as deleted, the row an `INSERT` or `UPDATE`
/// would conflict with on each unique key: `OR REPLACE` deletes it without
/// firing delete triggers (unless `recursive_triggers` is on). `=` matches as
/// the constraint does (NULLs never conflict), so at most one row per key.
fn replaced_sql(prefix: &str, t: &Covered, event: &str) -> String {
    let table = quote(&t.table);
    let name = trigger_name(prefix, &t.table, &format!("replace_{event}"));
    let mut body = String::new();
    for key in &t.keys {
        let on: Vec<String> = key
            .iter()
            .map(|c| format!("{table}.{q} = NEW.{q}", q = quote(c)))
            .collect();
        let from = format!(" FROM {table} WHERE {}", on.join(" AND "));
        let row = format!("SELECT {}, 'D'{from} LIMIT 1", literal(&t.table));
        let cells: Vec<String> = t
            .columns
            .iter()
            .map(|c| cell_sql("o", &table, c, &from))
            .collect();
        body.push_str(&record(prefix, &row, &cells));
    }
    if body.is_empty() {
        return format!("DROP TRIGGER IF EXISTS {name};\n");
    }
    format!(
        "DROP TRIGGER IF EXISTS {name};\n\
         CREATE TRIGGER {name} BEFORE {event} ON {table} BEGIN\n{body}END;\n"
    )
}

/// One trigger: the outbox row, then one values row per column and side.
fn trigger_sql(prefix: &str, table: &str, columns: &[String], op: &str, event: &str) -> String {
    let sides: &[(&str, &str)] = match op {
        "I" => &[("n", "NEW")],
        "U" => &[("o", "OLD"), ("n", "NEW")],
        _ => &[("o", "OLD")],
    };
    let cells: Vec<String> = sides
        .iter()
        .flat_map(|(side, row)| columns.iter().map(move |c| cell_sql(side, row, c, "")))
        .collect();
    let row = format!("VALUES ({}, '{op}')", literal(table));
    let name = trigger_name(prefix, table, event);
    format!(
        "DROP TRIGGER IF EXISTS {name};\n\
         CREATE TRIGGER {name} AFTER {event} ON {t} BEGIN\n{body}END;\n",
        t = quote(table),
        body = record(prefix, &row, &cells),
    )
}

/// The two statements that record one change in a trigger: the outbox row
/// (`row`: its `VALUES` or `SELECT`), then one values row per cell, numbered
/// with that row's seq (the writer is alone, so it is the greatest).
fn record(prefix: &str, row: &str, cells: &[String]) -> String {
    let (outbox, values, _) = names(prefix);
    format!(
        "\x20   INSERT INTO {outbox} (tbl, op) {row};\n\
         \x20   INSERT INTO {values} (seq, side, col, val) SELECT (SELECT max(seq) FROM {outbox}), v.* \
         FROM ({}) AS v;\n",
        cells.join(" UNION ALL ")
    )
}

/// One recorded value: its side, the column's name, and `source.column`, read
/// `rest` (a `FROM ... WHERE ...`, or nothing for `OLD`/`NEW`).
fn cell_sql(side: &str, source: &str, column: &str, rest: &str) -> String {
    format!(
        "SELECT '{side}' AS side, {} AS col, {source}.{} AS val{rest}",
        literal(column),
        quote(column)
    )
}

fn trigger_name(prefix: &str, table: &str, event: &str) -> String {
    quote(&format!(
        "{prefix}_capture_{}_{table}",
        event.to_lowercase()
    ))
}

/// The SQL that removes `triggers` (every one the prefix installed, found in the
/// schema: a trigger left on a table would fail its writes once the outbox is
/// gone) and the outbox tables (rows not yet applied are lost with them: run the
/// consumer first).
fn uninstall_sql(prefix: &str, triggers: &[String]) -> String {
    let mut sql = String::new();
    for name in triggers {
        sql.push_str(&format!("DROP TRIGGER IF EXISTS {};\n", quote(name)));
    }
    let (outbox, values, version) = names(prefix);
    for t in [values, outbox, version] {
        sql.push_str(&format!("DROP TABLE IF EXISTS {t};\n"));
    }
    sql
}

/// The triggers a prefix installed, by name.
fn installed_triggers(conn: &mut SqliteConnection, prefix: &str) -> Result<Vec<String>> {
    let start = format!("{prefix}_capture_");
    let sql = diesel::dsl::sql::<Nullable<Text>>(
        "(SELECT group_concat(name, char(31)) FROM sqlite_schema WHERE type = 'trigger' \
         AND substr(name, 1, length(",
    )
    .bind::<Text, _>(start.clone())
    .sql(")) = ")
    .bind::<Text, _>(start)
    .sql(")");
    joined!(conn, sql, "listing the feed's triggers")
}

/// The outbox's three tables, quoted: rows, their values, the version mark.
fn names(prefix: &str) -> (String, String, String) {
    let name = |suffix: &str| quote(&format!("{prefix}_outbox{suffix}"));
    (name(""), name("_values"), name("_version"))
}

impl super::sealed::Feed for SqliteConnection {
    fn plan(&mut self, prefix: &str, models: &[Modelled]) -> Result<Plan> {
        let mut plan = Plan::empty();
        plan.problems
            .extend(outbox(self, prefix)?.problem(&names(prefix).0));
        let mut covered = Vec::new();
        for name in table_names(models) {
            let present = columns(self, name)?;
            let found = (!present.is_empty()).then(|| (name.to_string(), &present[..]));
            plan.add(models, name, found);
            if !present.is_empty() {
                let keys = unique_keys(self, name)?;
                covered.push(Covered {
                    table: name.to_string(),
                    columns: present,
                    keys,
                });
            }
        }
        plan.sql = install_sql(prefix, &covered);
        let mut triggers = installed_triggers(self, prefix)?;
        for c in &covered {
            for event in [
                "insert",
                "update",
                "delete",
                "replace_insert",
                "replace_update",
            ] {
                triggers.push(format!("{prefix}_capture_{event}_{}", c.table));
            }
        }
        triggers.sort_unstable();
        triggers.dedup();
        plan.uninstall_sql = uninstall_sql(prefix, &triggers);
        Ok(plan)
    }

    fn check_installed(&mut self, prefix: &str) -> Result<()> {
        outbox(self, prefix)?.check(&names(prefix).0)
    }

    fn apply_once(&mut self, handle: &Cacheops, prefix: &str) -> Result<usize> {
        let changes = read(self, prefix)?;
        let Some(last) = changes.last().map(|c| c.seq) else {
            return Ok(0);
        };
        super::send(handle, per_table(&changes, |c| &c.tbl, invalidation))?;
        delete(self, prefix, last)?;
        Ok(changes.len())
    }

    fn listen(&mut self, _prefix: &str) -> Result<()> {
        // The application's writers hold the write lock briefly; wait for it.
        self.batch_execute("PRAGMA busy_timeout = 5000")
            .map_err(db_error("setting a busy timeout"))
    }

    fn wait(&mut self, stop: &AtomicBool) {
        let Ok(seen) = data_version(self) else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(super::POLL);
            if !data_version(self).is_ok_and(|now| now == seen) {
                return;
            }
        }
    }
}

/// A counter that moves whenever another connection commits to the file.
fn data_version(conn: &mut SqliteConnection) -> diesel::QueryResult<i64> {
    diesel::select(diesel::dsl::sql::<BigInt>(
        "(SELECT data_version FROM pragma_data_version)",
    ))
    .get_result(conn)
}

/// One outbox row with its states.
struct Change {
    seq: i64,
    tbl: String,
    /// Its old and/or new state, as `(column, value)` pairs.
    states: Vec<Vec<(String, Value)>>,
}

/// The oldest outbox rows with their values, in order.
fn read(conn: &mut SqliteConnection, prefix: &str) -> Result<Vec<Change>> {
    let (outbox, values, _) = names(prefix);
    let sql = format!(
        "SELECT o.seq, o.tbl, v.side, v.col, v.val FROM \
         (SELECT seq, tbl FROM {outbox} ORDER BY seq LIMIT {}) AS o \
         LEFT JOIN {values} AS v ON v.seq = o.seq ORDER BY o.seq, v.side, v.rowid",
        super::BATCH
    );
    let mut changes: Vec<Change> = Vec::new();
    let mut side = String::new();
    let cursor = LoadConnection::<DefaultLoadingMode>::load(conn, diesel::sql_query(sql));
    for row in cursor.map_err(db_error("reading the outbox"))? {
        let row = row.map_err(db_error("reading the outbox"))?;
        let (seq, tbl, value) = cell(&row).ok_or_else(|| malformed("an outbox row"))?;
        if changes.last().is_none_or(|c| c.seq != seq) {
            changes.push(Change {
                seq,
                tbl,
                states: Vec::new(),
            });
            side.clear();
        }
        let change = changes.last_mut().expect("pushed above");
        if let Some((s, col, val)) = value {
            if s != side || change.states.is_empty() {
                change.states.push(Vec::new());
                side = s;
            }
            change
                .states
                .last_mut()
                .expect("pushed above")
                .push((col, val));
        }
    }
    Ok(changes)
}

/// One row of the outbox join: the change's seq and table, and one value of a
/// side of it (absent when the change has none).
type Cell = (i64, String, Option<(String, String, Value)>);

fn cell<'a>(row: &impl Row<'a, Sqlite>) -> Option<Cell> {
    let text = |i: usize| -> Option<String> {
        let field = row.get(i)?;
        let text = field.value()?.read_text().to_string();
        Some(text)
    };
    let seq = row.get(0)?.value()?.read_long();
    let value = match (text(2), text(3)) {
        (Some(side), Some(col)) => {
            let val = Sqlite::raw_value(row.get(4)?.value()).ok()?;
            Some((side, col, val))
        }
        _ => None,
    };
    Some((seq, text(1)?, value))
}

/// What one table's changes invalidate: every state, or the whole table if a
/// change came with none (nothing to match it by).
fn invalidation(changes: &[Change]) -> (String, Invalidation) {
    let table = changes[0].tbl.clone();
    if changes.iter().any(|c| c.states.is_empty()) {
        return (table, Invalidation::Table);
    }
    let rows = changes
        .iter()
        .flat_map(|c| c.states.iter().cloned())
        .collect();
    (table, Invalidation::Rows(rows))
}

/// Deletes the outbox rows up to `last`: the single writer gives later changes
/// greater sequence numbers, so none of them goes unapplied.
fn delete(conn: &mut SqliteConnection, prefix: &str, last: i64) -> Result<()> {
    let (outbox, values, _) = names(prefix);
    conn.immediate_transaction(|conn| {
        for table in [&values, &outbox] {
            diesel::sql_query(format!("DELETE FROM {table} WHERE seq <= ?"))
                .bind::<BigInt, _>(last)
                .execute(conn)?;
        }
        Ok(())
    })
    .map_err(db_error("deleting applied outbox rows"))
}

/// The outbox of `prefix`, told by its version table.
fn outbox(conn: &mut SqliteConnection, prefix: &str) -> Result<Outbox> {
    let exists = |conn: &mut SqliteConnection, table: String| {
        diesel::select(
            diesel::dsl::sql::<BigInt>(
                "(SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ",
            )
            .bind::<Text, _>(table)
            .sql(")"),
        )
        .get_result::<i64>(conn)
        .map(|n| n > 0)
        .map_err(db_error("looking up the outbox"))
    };
    if !exists(conn, format!("{prefix}_outbox"))? {
        return Ok(Outbox::Missing);
    }
    if !exists(conn, format!("{prefix}_outbox_version"))? {
        return Ok(Outbox::of(Some(None)));
    }
    let sql = format!("(SELECT max(version) FROM {})", names(prefix).2);
    let mark = diesel::select(diesel::dsl::sql::<Nullable<Text>>(&sql))
        .get_result::<Option<String>>(conn)
        .map_err(db_error("reading the outbox's version"))?;
    Ok(Outbox::of(Some(mark)))
}

/// The columns of `table` in the main database, generated ones included; none
/// when there is no such table.
fn columns(conn: &mut SqliteConnection, table: &str) -> Result<Vec<String>> {
    let sql = diesel::dsl::sql::<Nullable<Text>>(
        "(SELECT group_concat(name, char(31)) FROM pragma_table_xinfo(",
    )
    .bind::<Text, _>(table)
    .sql(") WHERE hidden IN (0, 2, 3))");
    joined!(conn, sql, "listing a table's columns")
}

/// The column sets `table`'s rows are unique by: its declared primary key, and
/// each unique index on plain columns (one on an expression cannot be matched
/// column by column and is left out).
fn unique_keys(conn: &mut SqliteConnection, table: &str) -> Result<Vec<Vec<String>>> {
    let pk = diesel::dsl::sql::<Nullable<Text>>(
        "(SELECT group_concat(name, char(31)) FROM (SELECT name FROM pragma_table_info(",
    )
    .bind::<Text, _>(table)
    .sql(") WHERE pk > 0 ORDER BY pk))");
    let mut keys = vec![joined!(conn, pk, "reading a primary key")?];
    let indexes = diesel::dsl::sql::<Nullable<Text>>(
        "(SELECT group_concat(name, char(31)) FROM pragma_index_list(",
    )
    .bind::<Text, _>(table)
    .sql(") WHERE \"unique\" = 1)");
    for index in joined!(conn, indexes, "listing unique indexes")? {
        let cols = diesel::dsl::sql::<Nullable<Text>>(
            "(SELECT CASE WHEN count(name) = count(*) THEN group_concat(name, char(31)) END \
             FROM pragma_index_info(",
        )
        .bind::<Text, _>(index)
        .sql("))");
        keys.push(joined!(conn, cols, "reading a unique index")?);
    }
    keys.retain(|k| !k.is_empty());
    keys.sort_unstable();
    keys.dedup();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_trigger_records_its_sides_of_every_column() {
        let posts = Covered {
            table: "posts".into(),
            columns: vec!["id".into(), "ti\"tle".into()],
            keys: vec![vec!["id".into()]],
        };
        let sql = install_sql("feed", &[posts]);
        assert!(
            sql.contains("CREATE TRIGGER \"feed_capture_update_posts\" AFTER UPDATE ON \"posts\"")
        );
        assert!(sql.contains("SELECT 'o' AS side, 'id' AS col, OLD.\"id\" AS val"));
        assert!(sql.contains("SELECT 'n' AS side, 'ti\"tle' AS col, NEW.\"ti\"\"tle\" AS val"));
        let delete = sql.split("AFTER DELETE").nth(1).unwrap_or_default();
        assert!(!delete
            .split("END;")
            .next()
            .unwrap_or_default()
            .contains("NEW."));
        assert!(sql.contains("BEFORE INSERT ON \"posts\""), "{sql}");
        let gone = uninstall_sql("feed", &["feed_capture_insert_posts".into()]);
        assert!(gone.contains("DROP TRIGGER IF EXISTS \"feed_capture_insert_posts\""));
        assert!(gone.ends_with("DROP TABLE IF EXISTS \"feed_outbox_version\";\n"));
    }
}
