//! What a statement does to the data: nothing, writes to some tables, or
//! something we cannot tell (then everything is invalidated: widening is safe);
//! and which transaction levels raw SQL opens or ends (`BEGIN`, `SAVEPOINT`,
//! `COMMIT` sent as text), so that they are tracked like Diesel's own.

use sqlparser::ast::{FromTable, Ident, ObjectName, SetExpr, Statement, TableFactor, TableObject};
use sqlparser::dialect::{Dialect as SqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use crate::backend::Dialect;
use crate::deps::functions;
use crate::deps::last_ident;

/// The effect of one SQL text on the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Reads only (or changes no table's rows: transaction control, settings).
    Read,
    /// Changes rows of these tables.
    Tables(Vec<String>),
    /// May change anything.
    Unknown,
    /// Opens or ends transaction levels, with writes between them: each
    /// statement's step, in order.
    Steps(Vec<Step>),
}

/// What one statement of SQL holding transaction control does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `SAVEPOINT name`.
    Savepoint(String),
    /// `RELEASE [SAVEPOINT] name`.
    Release(String),
    /// `ROLLBACK TO [SAVEPOINT] name`: back to the savepoint, which stays open.
    RollbackTo(String),
    /// `COMMIT` / `END`: ends the whole transaction.
    Commit,
    /// `ROLLBACK` / `ABORT`: ends the whole transaction.
    Rollback,
    /// A statement with this (write) effect: [`Effect::Tables`] or [`Effect::Unknown`].
    Write(Effect),
}

impl Effect {
    /// This effect once a function the statement calls may write anything: an
    /// unknown write, after any transaction control it also does.
    pub(crate) fn with_unknown_writes(self) -> Effect {
        match self {
            Effect::Steps(mut steps) => {
                steps.push(Step::Write(Effect::Unknown));
                Effect::Steps(steps)
            }
            _ => Effect::Unknown,
        }
    }

    /// Whether the statement may end the whole transaction.
    pub(crate) fn ends_transaction(&self) -> bool {
        let ends = |s: &Step| matches!(s, Step::Commit | Step::Rollback);
        matches!(self, Effect::Steps(steps) if steps.iter().any(ends))
    }
}

/// Statements that never change a table's rows nor open or end a transaction
/// level, by their first keyword. (`EXPLAIN` is not one: `EXPLAIN ANALYZE` runs
/// its statement.)
const READS: &[&str] = &[
    "SELECT",
    "VALUES",
    "SHOW",
    "SET",
    "RESET",
    "LOCK",
    "DISCARD",
    "PRAGMA",
    "LISTEN",
    "UNLISTEN",
    "NOTIFY",
    "DECLARE",
    "FETCH",
    "CLOSE",
    "PREPARE",
    "DEALLOCATE",
    "CREATE",
    "ANALYZE",
    "VACUUM",
];

/// The effect of `sql`, rendered by Diesel or written by hand, as far as its text
/// tells; what the functions it calls may do is [`Analysis::calls`]'.
#[cfg(test)]
pub(crate) fn of_sql(sql: &str, dialect: Dialect) -> Effect {
    analyse(sql, dialect).effect
}

/// What a SQL text does, before the functions it calls are known.
#[derive(Debug)]
pub(crate) struct Analysis {
    /// The effect of the statements themselves.
    pub(crate) effect: Effect,
    /// The functions it calls that are not known harmless (see
    /// [`functions::called`]): what they do decides whether it may write more.
    pub(crate) calls: Vec<String>,
    /// Whether it may change which database, user or schemas the session reads.
    pub(crate) session: bool,
    /// Whether it creates a temporary table, which shadows a table of the same
    /// name for this session only.
    pub(crate) temp: bool,
}

/// The effect of `sql` and the functions it calls. A read that cannot call a
/// function is told without parsing (see [`unparsed`]).
pub(crate) fn analyse(sql: &str, dialect: Dialect) -> Analysis {
    if prepares_transaction(sql) {
        return Analysis::of(Effect::Steps(vec![Step::Commit]));
    }
    unparsed(sql).unwrap_or_else(|| parsed(sql, dialect))
}

impl Analysis {
    /// Just this effect: no calls, nothing about the session.
    pub(crate) fn of(effect: Effect) -> Analysis {
        Analysis {
            effect,
            calls: Vec::new(),
            session: false,
            temp: false,
        }
    }
}

/// What one statement's text tells without parsing, when that is all there is:
/// its first keyword says it changes no rows, and it calls no function. `None`:
/// parse it. Every read through a `CachedConnection` asks this, so it looks at
/// the text once for the keyword and once for calls.
pub(crate) fn unparsed(sql: &str) -> Option<Analysis> {
    let word = first_keyword(sql)?;
    let read = READS.contains(&word.as_str()) && !sql.contains(';') && !functions::may_call(sql);
    let mut analysis = read.then(|| Analysis::of(Effect::Read))?;
    match word.as_str() {
        "PREPARE" if prepares_transaction(sql) => return None,
        "SET" | "RESET" | "DISCARD" => analysis.session = names_identity(sql),
        "CREATE" => analysis.temp = creates_temp(sql),
        _ => {}
    }
    Some(analysis)
}

/// Whether a single statement creates a temporary table (`CREATE TEMP TABLE`,
/// `CREATE LOCAL TEMPORARY TABLE`), told by its first words.
fn creates_temp(sql: &str) -> bool {
    let mut words = sql.split_whitespace().take(3);
    let create = words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("create"));
    let temp = |w: &str| w.eq_ignore_ascii_case("temp") || w.eq_ignore_ascii_case("temporary");
    create && words.any(temp)
}

/// Whether `sql` mentions a setting the session's identity depends on (the
/// schema search path, the role), or all of them (`RESET ALL`, `DISCARD ALL`).
fn names_identity(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    [
        "search_path",
        "schema",
        "role",
        "authorization",
        "all",
        "temp",
    ]
    .iter()
    .any(|word| lower.contains(word))
}

/// `PREPARE TRANSACTION 'id'` (two-phase commit): the transaction leaves the
/// session, to be committed later from anywhere; its writes are invalidated then
/// (before that commit: the only moment this session sees).
fn prepares_transaction(sql: &str) -> bool {
    let mut words = sql.split_whitespace();
    let prepare = words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("prepare"));
    prepare
        && words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("transaction"))
}

/// The first word of the statement, upper-cased, past blanks, parentheses and comments.
pub(crate) fn first_keyword(sql: &str) -> Option<String> {
    let mut rest = sql;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r);
        } else {
            break;
        }
    }
    let word: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
    (!word.is_empty()).then(|| word.to_ascii_uppercase())
}

fn parsed(sql: &str, dialect: Dialect) -> Analysis {
    let sql_dialect: &dyn SqlDialect = match dialect {
        Dialect::Postgres => &PostgreSqlDialect {},
        Dialect::Sqlite => &SQLiteDialect {},
    };
    let Ok(statements) = Parser::parse_sql(sql_dialect, sql) else {
        return Analysis {
            session: true,
            temp: creates_temp(sql),
            ..Analysis::of(Effect::Unknown)
        };
    };
    let calls = functions::called(&statements);
    let session = names_identity(sql)
        && statements.iter().any(|s| {
            matches!(
                s,
                Statement::Set(_) | Statement::Discard { .. } | Statement::Reset(_)
            )
        });
    let steps: Vec<Step> = statements.iter().flat_map(steps_of).collect();
    let effect = if steps.iter().all(|s| matches!(s, Step::Write(_))) {
        merged(steps)
    } else {
        // Only the writes are kept between the levels: reads change nothing.
        let kept = steps.into_iter();
        Effect::Steps(kept.filter(|s| *s != Step::Write(Effect::Read)).collect())
    };
    let temp = statements
        .iter()
        .any(|s| matches!(s, Statement::CreateTable(t) if t.temporary));
    Analysis {
        effect,
        calls,
        session,
        temp,
    }
}

/// One statement's step: transaction control, or its write effect.
fn steps_of(statement: &Statement) -> Vec<Step> {
    match statement {
        // `AND CHAIN` opens a new transaction at once.
        Statement::Commit { chain: true, .. } => vec![Step::Commit, Step::Begin],
        Statement::Rollback {
            chain: true,
            savepoint: None,
        } => vec![Step::Rollback, Step::Begin],
        other => vec![step_of(other)],
    }
}

/// One statement's step: transaction control, or its write effect.
fn step_of(statement: &Statement) -> Step {
    match statement {
        Statement::StartTransaction { .. } => Step::Begin,
        Statement::Commit { .. } => Step::Commit,
        Statement::Rollback {
            savepoint: Some(name),
            ..
        } => Step::RollbackTo(savepoint(name)),
        Statement::Rollback { .. } => Step::Rollback,
        Statement::Savepoint { name } => Step::Savepoint(savepoint(name)),
        Statement::ReleaseSavepoint { name } => Step::Release(savepoint(name)),
        other => {
            let mut tables = Vec::new();
            Step::Write(match written_by(other, &mut tables) {
                false => Effect::Unknown,
                true if tables.is_empty() => Effect::Read,
                true => Effect::Tables(tables),
            })
        }
    }
}

/// A savepoint name as the database compares them.
fn savepoint(name: &Ident) -> String {
    crate::deps::norm(name)
}

/// The effect of statements that are all plain reads or writes.
fn merged(steps: Vec<Step>) -> Effect {
    let mut tables = Vec::new();
    for step in steps {
        match step {
            Step::Write(Effect::Tables(t)) => tables.extend(t),
            Step::Write(Effect::Read) => {}
            _ => return Effect::Unknown,
        }
    }
    tables.sort();
    tables.dedup();
    match tables.is_empty() {
        true => Effect::Read,
        false => Effect::Tables(tables),
    }
}

/// Adds the tables `statement` writes to; false when it cannot tell.
fn written_by(statement: &Statement, tables: &mut Vec<String>) -> bool {
    match statement {
        Statement::Insert(insert) => match &insert.table {
            TableObject::TableName(name) => push_name(name, tables),
            _ => false,
        },
        Statement::Update(update) => push_factor(&update.table.relation, tables),
        Statement::Delete(delete) => {
            let from = match &delete.from {
                FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => from,
            };
            let targets = delete.tables.iter().all(|name| push_name(name, tables));
            targets && from.iter().all(|t| push_factor(&t.relation, tables))
        }
        Statement::Truncate(truncate) => truncate
            .table_names
            .iter()
            .all(|t| push_name(&t.name, tables)),
        Statement::Query(query) => query_writes(&query.body, query.with.as_ref(), tables),
        Statement::Drop { names, .. } => names.iter().all(|n| push_name(n, tables)),
        Statement::AlterTable(alter) => push_name(&alter.name, tables),
        Statement::Explain {
            analyze,
            options,
            statement,
            ..
        } => !(*analyze || runs_analyze(options.as_deref())) || written_by(statement, tables),
        // Session and maintenance statements: they change no table's rows.
        Statement::Lock(_)
        | Statement::LockTables { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::Analyze(_)
        | Statement::Vacuum(_)
        | Statement::Discard { .. }
        | Statement::LISTEN { .. }
        | Statement::UNLISTEN { .. }
        | Statement::NOTIFY { .. }
        | Statement::Comment { .. }
        | Statement::Reset(_)
        | Statement::Deallocate { .. } => true,
        Statement::CreateTable(_)
        | Statement::CreateIndex(_)
        | Statement::CreateView { .. }
        | Statement::Set(_) => true,
        _ => false,
    }
}

/// Whether PostgreSQL-style `EXPLAIN (ANALYZE ...)` options run the statement.
fn runs_analyze(options: Option<&[sqlparser::ast::UtilityOption]>) -> bool {
    let analyze = |o: &sqlparser::ast::UtilityOption| o.name.value.eq_ignore_ascii_case("analyze");
    options.is_some_and(|options| options.iter().any(analyze))
}

/// A query writes only through data-modifying CTEs or set operands (PostgreSQL's
/// `WITH d AS (DELETE ...) SELECT ...`).
fn query_writes(
    body: &SetExpr,
    with: Option<&sqlparser::ast::With>,
    tables: &mut Vec<String>,
) -> bool {
    let ctes = with.is_none_or(|w| {
        w.cte_tables
            .iter()
            .all(|cte| query_writes(&cte.query.body, cte.query.with.as_ref(), tables))
    });
    ctes && match body {
        SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) => written_by(s, tables),
        SetExpr::SetOperation { left, right, .. } => {
            query_writes(left, None, tables) && query_writes(right, None, tables)
        }
        SetExpr::Query(q) => query_writes(&q.body, q.with.as_ref(), tables),
        _ => true,
    }
}

fn push_factor(factor: &TableFactor, tables: &mut Vec<String>) -> bool {
    match factor {
        TableFactor::Table { name, .. } => push_name(name, tables),
        _ => false,
    }
}

fn push_name(name: &ObjectName, tables: &mut Vec<String>) -> bool {
    match last_ident(name) {
        Some(table) => {
            tables.push(table);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effect(sql: &str) -> Effect {
        of_sql(sql, Dialect::Postgres)
    }

    fn tables(names: &[&str]) -> Effect {
        Effect::Tables(names.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn diesel_writes_name_their_table() {
        assert_eq!(
            effect(r#"INSERT INTO "articles" ("title") VALUES ($1) RETURNING "articles"."id""#),
            tables(&["articles"])
        );
        assert_eq!(
            effect(r#"UPDATE "articles" SET "views" = $1 WHERE ("articles"."id" = $2)"#),
            tables(&["articles"])
        );
        assert_eq!(
            effect(r#"DELETE FROM "blog"."articles" WHERE ("articles"."id" = $1)"#),
            tables(&["articles"])
        );
        assert_eq!(
            effect(r#"INSERT INTO "tags" ("id") VALUES ($1) ON CONFLICT DO NOTHING"#),
            tables(&["tags"])
        );
    }

    #[test]
    fn reads_and_session_statements_change_nothing() {
        for sql in [
            "SELECT 1",
            "  (SELECT * FROM articles)",
            "-- note\nSELECT 2",
            "SET search_path TO x",
            "LOCK TABLE articles IN ACCESS EXCLUSIVE MODE",
            "SHOW search_path",
            "LISTEN news",
            "ANALYZE articles",
            "VACUUM articles",
            "EXPLAIN UPDATE articles SET views = 0",
            "LOCK TABLE articles; SET x.y = 1; SHOW x.y; ANALYZE articles; LISTEN a; NOTIFY a",
        ] {
            assert_eq!(effect(sql), Effect::Read, "{sql}");
        }
    }

    #[test]
    fn explain_analyze_runs_its_statement() {
        for sql in [
            "EXPLAIN ANALYZE UPDATE articles SET views = 0",
            "EXPLAIN (ANALYZE, BUFFERS) DELETE FROM articles",
            "EXPLAIN ANALYZE WITH d AS (DELETE FROM articles RETURNING id) SELECT * FROM d",
        ] {
            assert_eq!(effect(sql), tables(&["articles"]), "{sql}");
        }
        assert_eq!(
            effect("EXPLAIN ANALYZE SELECT * FROM articles"),
            Effect::Read
        );
    }

    #[test]
    fn transaction_control_is_kept_in_order_with_the_writes_between() {
        use Step::*;
        let write = |t: &str| Write(tables(&[t]));
        let steps = |sql: &str| match effect(sql) {
            Effect::Steps(steps) => steps,
            other => panic!("{sql}: {other:?}"),
        };
        assert_eq!(steps("BEGIN"), [Begin]);
        assert_eq!(steps("commit"), [Commit]);
        assert_eq!(
            steps("START TRANSACTION; UPDATE articles SET views = 1; SELECT 1; SAVEPOINT \"S\"; DELETE FROM tags; ROLLBACK TO SAVEPOINT \"S\"; RELEASE s2; COMMIT"),
            [
                Begin,
                write("articles"),
                Savepoint("S".into()),
                write("tags"),
                RollbackTo("S".into()),
                Release("s2".into()),
                Commit
            ]
        );
        assert_eq!(
            steps("BEGIN; CALL p(); ROLLBACK"),
            [Begin, Write(Effect::Unknown), Rollback]
        );
        let sqlite = |sql: &str| of_sql(sql, Dialect::Sqlite);
        assert_eq!(sqlite("BEGIN IMMEDIATE"), Effect::Steps(vec![Begin]));
        assert_eq!(sqlite("END TRANSACTION"), Effect::Steps(vec![Commit]));
        assert!(effect("BEGIN; COMMIT").ends_transaction());
        assert_eq!(steps("ROLLBACK AND CHAIN"), [Rollback, Begin]);
        assert_eq!(steps("PREPARE TRANSACTION 'x'"), [Commit]);
        assert!(analyse("SELECT 1; RESET search_path", Dialect::Postgres).session);
        assert!(analyse("SET SCHEMA 'b'", Dialect::Postgres).session);
        assert!(!analyse("SET statement_timeout = 0", Dialect::Postgres).session);
        assert!(analyse("CREATE TEMP TABLE t (a int)", Dialect::Postgres).temp);
        assert!(!effect("SAVEPOINT a").ends_transaction());
    }

    #[test]
    fn raw_batches_and_data_modifying_ctes() {
        assert_eq!(
            effect("UPDATE articles SET views = 0; DELETE FROM categories; SELECT 1"),
            tables(&["articles", "categories"])
        );
        assert_eq!(
            effect("WITH gone AS (DELETE FROM articles RETURNING id) SELECT count(*) FROM gone"),
            tables(&["articles"])
        );
        assert_eq!(
            effect("TRUNCATE articles, categories"),
            tables(&["articles", "categories"])
        );
        assert_eq!(effect("SELECT 1; SELECT 2"), Effect::Read);
    }

    #[test]
    fn what_we_cannot_tell_is_unknown() {
        assert_eq!(effect("CALL refresh_everything()"), Effect::Unknown);
        assert_eq!(effect("UPDATE ((( broken"), Effect::Unknown);
        assert_eq!(effect("SELECT 1; CALL p()"), Effect::Unknown);
    }
}
