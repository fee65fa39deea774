//! SQL rewrites that make a write hand back the rows it touched, with the
//! statement's own binds unchanged: an INSERT or DELETE its rows ([`returning`]),
//! a single-table UPDATE the old and the new state of every row it changes.
//!
//! The statement is parsed with sqlparser and its pieces (target, assignments,
//! WHERE) are rendered back with its `Display`; placeholders survive as written.
//! Anything unusual (`UPDATE ... FROM`, its own `RETURNING`, `UPDATE OR ...`,
//! `LIMIT`, an aliased or joined target, several statements, SQL that does not
//! parse) gets no rewrite: the caller then invalidates the whole table.
//!
//! - PostgreSQL ([`UpdatePlan::Paired`]): one statement. The rows the WHERE selects
//!   are locked and read in a subquery, the UPDATE joins them by primary key, and
//!   `RETURNING` gives the old row (from the subquery) then the new row.
//! - SQLite ([`UpdatePlan::PreRead`]): `RETURNING` cannot name the tables of an
//!   `UPDATE ... FROM`, so a `SELECT` by the same WHERE reads the old rows first and
//!   the UPDATE returns the new ones; the caller runs both in one transaction.

use sqlparser::ast::{
    Delete, FromTable, Ident, Insert, ObjectName, SelectItem, SelectItemQualifiedWildcardKind,
    Statement, TableFactor, TableObject, Update, WildcardAdditionalOptions,
};
use sqlparser::dialect::{Dialect as SqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::backend::Dialect;
use crate::deps::{last_ident, sqlite_placeholder_number};

/// The alias of the locked old rows in the PostgreSQL rewrite.
const OLD: &str = "\"__cacheops_old\"";
/// The column of [`OLD`] holding the whole old row (a value of the table's row type).
const OLD_ROW: &str = "(\"__cacheops_old\".\"__cacheops_row\")";

/// Which columns the rewritten statement returns, in each state.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Columns<'a> {
    /// Every column of the table (`*`), for invalidating by column name.
    All,
    /// These columns in this order, for loading a model.
    Named(&'a [&'a str]),
}

/// What runs instead of an UPDATE so that its rows come back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum UpdatePlan {
    /// One statement; each row it returns holds the old state then the new state
    /// of one updated row, as two halves of equal width.
    Paired(String),
    /// `pre_read` returns the old state of the rows `update` then changes and
    /// returns; both must run in one transaction.
    PreRead {
        /// `SELECT <columns> FROM <table> WHERE <the UPDATE's WHERE>`.
        pre_read: String,
        /// The UPDATE with `RETURNING <columns>`.
        update: String,
    },
}

/// A plain single-table UPDATE, in pieces ready to be put back together.
#[derive(Debug)]
pub(crate) struct ParsedUpdate {
    dialect: Dialect,
    /// The table name as the rest of cacheops knows it (last part, unquoted).
    table: String,
    /// The target as written (`"articles"`, `"blog"."articles"`).
    target: String,
    assignments: String,
    selection: Option<String>,
    /// The largest bind number of an SQLite statement (binds are `?N` after parsing).
    binds: u32,
}

/// A plain INSERT or DELETE rewritten to return the rows it touched.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Returning {
    /// The table it writes (last part of its name, unquoted).
    pub(crate) table: String,
    /// The statement with `RETURNING *` (`RETURNING <target>.*` for a DELETE
    /// joining other tables with USING), rendered from its parsed form.
    pub(crate) sql: String,
}

/// `sql` rewritten to return every row it inserts or deletes, if it is a plain
/// INSERT (no upsert, no `OR REPLACE`) or DELETE of one table without a RETURNING
/// of its own. Rendered from the parsed statement, never by appending text (a
/// trailing `-- comment` would swallow it), and only when the rendering parses
/// back to the same statement.
pub(crate) fn returning(sql: &str, dialect: Dialect) -> Option<Returning> {
    let sql_dialect = sql_dialect(dialect);
    let (tokens, _) = numbered_tokens(sql, sql_dialect, dialect == Dialect::Sqlite)?;
    let parser = Parser::new(sql_dialect).with_tokens_with_locations(tokens);
    let mut statement = only_statement(parser)?;
    let table = match &mut statement {
        Statement::Insert(insert) => return_inserted(insert)?,
        Statement::Delete(delete) => return_deleted(delete)?,
        _ => return None,
    };
    let sql = statement.to_string();
    let again = only_statement(Parser::new(sql_dialect).try_with_sql(&sql).ok()?)?;
    (again == statement).then_some(Returning { table, sql })
}

/// Sets `RETURNING *` on a plain INSERT; the table it writes.
fn return_inserted(insert: &mut Insert) -> Option<String> {
    let plain = insert.on.is_none()
        && insert.or.is_none()
        && !insert.replace_into
        && !insert.ignore
        && insert.returning.is_none()
        && insert.output.is_none();
    let TableObject::TableName(name) = &insert.table else {
        return None;
    };
    let table = plain.then(|| last_ident(name))??;
    insert.returning = Some(vec![SelectItem::Wildcard(
        WildcardAdditionalOptions::default(),
    )]);
    Some(table)
}

/// Sets `RETURNING` on a plain DELETE of one table: `*`, or only the target's
/// columns (`<alias or name>.*`) when USING brings in other tables, whose columns
/// would otherwise come back too (and be mistaken for the target's).
fn return_deleted(delete: &mut Delete) -> Option<String> {
    let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
    let [target] = from.as_slice() else {
        return None;
    };
    let TableFactor::Table { name, alias, .. } = &target.relation else {
        return None;
    };
    let plain = delete.tables.is_empty()
        && target.joins.is_empty()
        && delete.returning.is_none()
        && delete.output.is_none()
        && delete.order_by.is_empty()
        && delete.limit.is_none();
    let table = plain.then(|| last_ident(name))??;
    let item = match (&delete.using, alias) {
        (None, _) => SelectItem::Wildcard(WildcardAdditionalOptions::default()),
        (Some(_), Some(alias)) => qualified_wildcard(ObjectName::from(vec![alias.name.clone()])),
        (Some(_), None) => qualified_wildcard(name.clone()),
    };
    delete.returning = Some(vec![item]);
    Some(table)
}

fn qualified_wildcard(name: ObjectName) -> SelectItem {
    SelectItem::QualifiedWildcard(
        SelectItemQualifiedWildcardKind::ObjectName(name),
        WildcardAdditionalOptions::default(),
    )
}

/// The one statement `parser` holds.
fn only_statement(mut parser: Parser<'_>) -> Option<Statement> {
    let mut statements = parser.parse_statements().ok()?;
    match (statements.pop(), statements.is_empty()) {
        (Some(statement), true) => Some(statement),
        _ => None,
    }
}

fn sql_dialect(dialect: Dialect) -> &'static dyn SqlDialect {
    match dialect {
        Dialect::Postgres => &PostgreSqlDialect {},
        Dialect::Sqlite => &SQLiteDialect {},
    }
}

/// Parses `sql` if it is a plain single-table UPDATE this module can rewrite.
pub(crate) fn parse_update(sql: &str, dialect: Dialect) -> Option<ParsedUpdate> {
    let sql_dialect = sql_dialect(dialect);
    let (tokens, binds) = numbered_tokens(sql, sql_dialect, dialect == Dialect::Sqlite)?;
    let parser = Parser::new(sql_dialect).with_tokens_with_locations(tokens);
    let update = only_update(parser)?;
    let TableFactor::Table { name, .. } = &update.table.relation else {
        return None;
    };
    let assignments = update.assignments.iter().map(ToString::to_string);
    let parsed = ParsedUpdate {
        dialect,
        table: last_ident(name)?,
        target: name.to_string(),
        assignments: assignments.collect::<Vec<_>>().join(", "),
        selection: update.selection.as_ref().map(ToString::to_string),
        binds,
    };
    // The rewrite is built from rendered pieces: they must mean what the original
    // said. Put back together, they must parse to the same statement.
    let again = only_update(
        Parser::new(sql_dialect)
            .try_with_sql(&parsed.render())
            .ok()?,
    )?;
    (again == update).then_some(parsed)
}

/// The one statement `parser` holds, if it is a plain UPDATE.
fn only_update(parser: Parser<'_>) -> Option<Update> {
    match only_statement(parser)? {
        Statement::Update(update) if is_plain(&update) => Some(update),
        _ => None,
    }
}

/// Tokens of `sql` with SQLite's `?` numbered `?N` (so that a second statement can
/// name the same binds), and the largest bind number.
fn numbered_tokens(
    sql: &str,
    dialect: &dyn SqlDialect,
    numbering: bool,
) -> Option<(Vec<TokenWithSpan>, u32)> {
    let mut tokens = Vec::new();
    let mut last = 0u32;
    Tokenizer::new(dialect, sql)
        .tokenize_with_location_into_buf_with_mapper(&mut tokens, |mut t| {
            if let (Token::Placeholder(p), true) = (&mut t.token, numbering) {
                if let Some(n) = sqlite_placeholder_number(p, &mut last) {
                    *p = format!("?{n}");
                }
            }
            t
        })
        .ok()?;
    Some((tokens, last))
}

/// An UPDATE of one table, with nothing but SET and an optional WHERE.
fn is_plain(update: &Update) -> bool {
    let bare_table = match &update.table.relation {
        // A decorated target (alias, hints, ONLY...) renders differently from its name.
        factor @ TableFactor::Table { name, .. } => factor.to_string() == name.to_string(),
        _ => false,
    };
    bare_table
        && update.table.joins.is_empty()
        && update.optimizer_hints.is_empty()
        && update.on_cluster.is_none()
        && !update.assignments.is_empty()
        && update.from.is_none()
        && update.returning.is_none()
        && update.output.is_none()
        && update.or.is_none()
        && update.order_by.is_empty()
        && update.limit.is_none()
        && update.settings.is_none()
}

impl ParsedUpdate {
    /// The table the UPDATE writes.
    pub(crate) fn table(&self) -> &str {
        &self.table
    }

    /// The target as written when it names its schema (`"blog"."articles"`):
    /// a model of the same table name may describe another schema's table.
    pub(crate) fn qualified_target(&self) -> Option<&str> {
        self.target.contains('.').then_some(self.target.as_str())
    }

    /// The rewrite for this backend. PostgreSQL needs the table's primary key
    /// (`None` or empty: no rewrite); SQLite does not.
    pub(crate) fn plan(&self, pk: Option<&[&str]>, columns: Columns<'_>) -> Option<UpdatePlan> {
        match self.dialect {
            Dialect::Postgres => Some(self.paired(pk.filter(|pk| !pk.is_empty())?, columns)),
            Dialect::Sqlite => Some(self.pre_read(columns)),
        }
    }

    /// `UPDATE t SET ... FROM (SELECT <pk>, <whole row> FROM t WHERE ... FOR UPDATE)
    /// AS old WHERE t.<pk> = old.<pk> RETURNING <old row>, <new row>`.
    ///
    /// Why the old half is the version the UPDATE changed (READ COMMITTED too):
    /// `FOR UPDATE` locks each row the subquery selects, waiting for a concurrent
    /// writer to finish and then re-checking the WHERE on the row's newest version
    /// (EvalPlanQual), which is the version it returns. No one else can change a
    /// locked row until our transaction ends. When the outer UPDATE reaches a row
    /// through an older snapshot version, it follows the update chain to that same
    /// newest (locked) version and re-checks the join against it. So each returned
    /// row pairs the locked version with what the UPDATE made of it. Rows moved out
    /// of the WHERE or deleted meanwhile are skipped, as a plain UPDATE skips them.
    ///
    /// The subquery exposes only `__cacheops_*` columns (the primary key and the
    /// whole row as one value), so unqualified column names in SET stay unambiguous,
    /// and the WHERE is evaluated once, on the locked rows. `ctid` is not used: it
    /// changes between a row's versions.
    fn paired(&self, pk: &[&str], columns: Columns<'_>) -> UpdatePlan {
        let t = &self.target;
        let keys: Vec<String> = (0..pk.len())
            .map(|i| format!("\"__cacheops_pk{i}\""))
            .collect();
        let pk: Vec<String> = pk.iter().map(|c| self.quote(c)).collect();
        let select_keys = pk.iter().zip(&keys).map(|(c, k)| format!("{t}.{c} AS {k}"));
        let join = pk
            .iter()
            .zip(&keys)
            .map(|(c, k)| format!("{t}.{c} = {OLD}.{k}"));
        let returning = match columns {
            Columns::All => format!("{OLD_ROW}.*, {t}.*"),
            Columns::Named(names) => {
                let old = names.iter().map(|c| format!("{OLD_ROW}.{}", self.quote(c)));
                let new = names.iter().map(|c| format!("{t}.{}", self.quote(c)));
                old.chain(new).collect::<Vec<_>>().join(", ")
            }
        };
        UpdatePlan::Paired(format!(
            "UPDATE {t} SET {} FROM (SELECT {}, ROW({t}.*)::{t} AS \"__cacheops_row\" \
             FROM {t}{} FOR UPDATE) AS {OLD} WHERE {} RETURNING {returning}",
            self.assignments,
            select_keys.collect::<Vec<_>>().join(", "),
            self.where_clause(),
            join.collect::<Vec<_>>().join(" AND "),
        ))
    }

    /// `SELECT <columns> FROM t WHERE ...` then `UPDATE ... RETURNING <columns>`.
    ///
    /// Both statements are bound with all the UPDATE's binds, and SQLite refuses a
    /// bind number above the largest its statement names (SQLITE_RANGE). The
    /// pre-read names it anyway through `?K IS ?K`, true for any value, NULL too.
    fn pre_read(&self, columns: Columns<'_>) -> UpdatePlan {
        let t = &self.target;
        let columns = match columns {
            Columns::All => "*".to_string(),
            Columns::Named(names) => {
                let quoted: Vec<String> = names.iter().map(|c| self.quote(c)).collect();
                quoted.join(", ")
            }
        };
        let all_binds = (self.binds > 0).then(|| format!("?{0} IS ?{0}", self.binds));
        let condition = match (&self.selection, all_binds) {
            (Some(s), Some(b)) => format!(" WHERE ({s}) AND ({b})"),
            (Some(s), None) => format!(" WHERE {s}"),
            (None, Some(b)) => format!(" WHERE {b}"),
            (None, None) => String::new(),
        };
        UpdatePlan::PreRead {
            pre_read: format!("SELECT {columns} FROM {t}{condition}"),
            update: format!("{} RETURNING {columns}", self.render()),
        }
    }

    /// The UPDATE as parsed, from its rendered pieces.
    fn render(&self) -> String {
        format!(
            "UPDATE {} SET {}{}",
            self.target,
            self.assignments,
            self.where_clause()
        )
    }

    fn where_clause(&self) -> String {
        self.selection
            .as_ref()
            .map_or_else(String::new, |s| format!(" WHERE {s}"))
    }

    /// A column name quoted for this dialect (backquotes on SQLite, where a
    /// double-quoted name that matches no column silently becomes a string).
    fn quote(&self, name: &str) -> String {
        let quote = match self.dialect {
            Dialect::Postgres => '"',
            Dialect::Sqlite => '`',
        };
        Ident::with_quote(quote, name).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(sql: &str, dialect: Dialect, columns: Columns<'_>) -> Option<UpdatePlan> {
        parse_update(sql, dialect)?.plan(Some(&["id"]), columns)
    }

    fn returned(sql: &str, dialect: Dialect) -> Option<(String, String)> {
        returning(sql, dialect).map(|r| (r.table, r.sql))
    }

    #[test]
    fn plain_inserts_and_deletes_return_their_rows() {
        let pg = |sql: &str| returned(sql, Dialect::Postgres);
        assert_eq!(
            pg(r#"INSERT INTO "articles" ("title") VALUES ($1)"#),
            Some((
                "articles".into(),
                r#"INSERT INTO "articles" ("title") VALUES ($1) RETURNING *"#.into()
            ))
        );
        assert_eq!(
            pg(r#"DELETE FROM "blog"."articles" WHERE ("articles"."id" = $1)"#).map(|r| r.1),
            Some(
                r#"DELETE FROM "blog"."articles" WHERE ("articles"."id" = $1) RETURNING *"#.into()
            )
        );
        let sqlite = returned(
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)",
            Dialect::Sqlite,
        );
        assert_eq!(
            sqlite.map(|r| r.1).as_deref(),
            Some("INSERT INTO t (a, b) VALUES (?1, ?2), (?3, ?4) RETURNING *")
        );
    }

    #[test]
    fn a_trailing_comment_cannot_swallow_the_returning() {
        let (_, sql) = returned(
            "DELETE FROM articles WHERE id = $1 -- by the cleanup job",
            Dialect::Postgres,
        )
        .unwrap();
        assert_eq!(sql, "DELETE FROM articles WHERE id = $1 RETURNING *");
        let (_, sql) = returned(
            "INSERT INTO tags (id) VALUES (1) /* x */ -- y",
            Dialect::Sqlite,
        )
        .unwrap();
        assert_eq!(sql, "INSERT INTO tags (id) VALUES (1) RETURNING *");
    }

    #[test]
    fn delete_using_returns_the_target_columns_only() {
        let pg = |sql: &str| returned(sql, Dialect::Postgres).map(|r| r.1);
        assert_eq!(
            pg("DELETE FROM articles USING categories c WHERE articles.category_id = c.id AND c.name = $1").as_deref(),
            Some("DELETE FROM articles USING categories c WHERE articles.category_id = c.id AND c.name = $1 RETURNING articles.*")
        );
        assert_eq!(
            pg("DELETE FROM blog.articles a USING categories WHERE a.category_id = categories.id").as_deref(),
            Some("DELETE FROM blog.articles a USING categories WHERE a.category_id = categories.id RETURNING a.*")
        );
    }

    #[test]
    fn upserts_replaces_and_own_returnings_are_not_rewritten() {
        for sql in [
            r#"INSERT INTO "tags" ("id") VALUES ($1) ON CONFLICT DO NOTHING"#,
            r#"INSERT INTO "tags" ("id") VALUES ($1) ON CONFLICT ("id") DO UPDATE SET "n" = 1"#,
            r#"DELETE FROM "articles" RETURNING "id""#,
            "DELETE FROM articles; DELETE FROM categories",
            "UPDATE articles SET views = 1",
            "DELETE FROM articles a, categories c",
        ] {
            assert_eq!(returned(sql, Dialect::Postgres), None, "{sql}");
        }
        assert_eq!(
            returned("INSERT OR REPLACE INTO t (a) VALUES (?)", Dialect::Sqlite),
            None
        );
        assert_eq!(
            returned("REPLACE INTO t (a) VALUES (?)", Dialect::Sqlite),
            None
        );
    }

    #[test]
    fn postgres_pairs_old_and_new_rows_in_one_statement() {
        let sql = r#"UPDATE "articles" SET "category_id" = $1 WHERE ("articles"."id" = $2)"#;
        let expected = r#"UPDATE "articles" SET "category_id" = $1 FROM (SELECT "articles"."id" AS "__cacheops_pk0", ROW("articles".*)::"articles" AS "__cacheops_row" FROM "articles" WHERE ("articles"."id" = $2) FOR UPDATE) AS "__cacheops_old" WHERE "articles"."id" = "__cacheops_old"."__cacheops_pk0" RETURNING ("__cacheops_old"."__cacheops_row").*, "articles".*"#;
        assert_eq!(
            plan(sql, Dialect::Postgres, Columns::All),
            Some(UpdatePlan::Paired(expected.into()))
        );
    }

    #[test]
    fn postgres_named_columns_composite_keys_and_no_where() {
        let sql = r#"UPDATE "blog"."tags" SET "n" = "n" + $1"#;
        let update = parse_update(sql, Dialect::Postgres).unwrap();
        assert_eq!(update.table(), "tags");
        let Some(UpdatePlan::Paired(out)) =
            update.plan(Some(&["a", "b"]), Columns::Named(&["a", "n"]))
        else {
            panic!("no plan")
        };
        assert!(
            out.contains(r#"FROM "blog"."tags" FOR UPDATE) AS "__cacheops_old""#),
            "{out}"
        );
        assert!(out.contains(r#"WHERE "blog"."tags"."a" = "__cacheops_old"."__cacheops_pk0" AND "blog"."tags"."b" = "__cacheops_old"."__cacheops_pk1""#), "{out}");
        assert!(out.ends_with(r#"RETURNING ("__cacheops_old"."__cacheops_row")."a", ("__cacheops_old"."__cacheops_row")."n", "blog"."tags"."a", "blog"."tags"."n""#), "{out}");
    }

    #[test]
    fn postgres_needs_a_primary_key() {
        let sql = r#"UPDATE "t" SET "x" = $1"#;
        let update = parse_update(sql, Dialect::Postgres).unwrap();
        assert_eq!(update.plan(None, Columns::All), None);
        assert_eq!(update.plan(Some(&[]), Columns::All), None);
    }

    #[test]
    fn sqlite_reads_the_old_rows_with_numbered_binds() {
        let sql =
            "UPDATE `articles` SET `views` = ?, `title` = ? WHERE (`articles`.`category_id` = ?)";
        assert_eq!(
            plan(sql, Dialect::Sqlite, Columns::All),
            Some(UpdatePlan::PreRead {
                pre_read: "SELECT * FROM `articles` WHERE ((`articles`.`category_id` = ?3)) AND (?3 IS ?3)".into(),
                update: "UPDATE `articles` SET `views` = ?1, `title` = ?2 WHERE (`articles`.`category_id` = ?3) RETURNING *".into(),
            })
        );
    }

    #[test]
    fn sqlite_pre_read_names_the_last_bind_even_without_where() {
        let sql = "UPDATE `articles` SET `views` = ?";
        let Some(UpdatePlan::PreRead { pre_read, update }) =
            plan(sql, Dialect::Sqlite, Columns::Named(&["id", "views"]))
        else {
            panic!("no plan")
        };
        assert_eq!(
            pre_read,
            "SELECT `id`, `views` FROM `articles` WHERE ?1 IS ?1"
        );
        assert_eq!(
            update,
            "UPDATE `articles` SET `views` = ?1 RETURNING `id`, `views`"
        );
        let raw = plan("UPDATE t SET x = 1", Dialect::Sqlite, Columns::All);
        assert_eq!(
            raw,
            Some(UpdatePlan::PreRead {
                pre_read: "SELECT * FROM t".into(),
                update: "UPDATE t SET x = 1 RETURNING *".into()
            })
        );
    }

    #[test]
    fn rendered_pieces_parse_back_to_the_same_update() {
        for sql in [
            r#"UPDATE "a" SET "x" = $1::int4, "y" = CASE WHEN "a"."y" > $2 THEN 1 ELSE 2 END WHERE ("a"."id" = ANY($3))"#,
            r#"UPDATE "a" SET "t" = "a"."t" || $1 WHERE (("a"."t" ILIKE $2) AND NOT ("a"."n" IS NOT DISTINCT FROM $3))"#,
            r#"UPDATE "a" SET "n" = $1 WHERE ("a"."doc" ->> 'k' = $2) AND "a"."id" IN (SELECT "b"."a_id" FROM "b" WHERE "b"."z" BETWEEN $3 AND $4)"#,
            "UPDATE articles SET title = 'it''s' WHERE category_id = 1",
        ] {
            let update = parse_update(sql, Dialect::Postgres);
            assert!(update.is_some(), "{sql}");
        }
        let sqlite = "UPDATE `a` SET `n` = `a`.`n` + ? WHERE (`a`.`t` LIKE ? ESCAPE '\\') AND `a`.`id` IN (?, ?)";
        assert!(parse_update(sqlite, Dialect::Sqlite).is_some());
    }

    #[test]
    fn unusual_updates_get_no_rewrite() {
        for (sql, dialect) in [
            (
                r#"UPDATE "a" SET "x" = $1 FROM "b" WHERE "a"."id" = "b"."id""#,
                Dialect::Postgres,
            ),
            (
                r#"UPDATE "a" SET "x" = $1 RETURNING "id""#,
                Dialect::Postgres,
            ),
            (r#"UPDATE "a" AS z SET "x" = $1"#, Dialect::Postgres),
            (r#"UPDATE ONLY "a" SET "x" = $1"#, Dialect::Postgres),
            (
                r#"UPDATE "a" SET "x" = 1; UPDATE "b" SET "y" = 2"#,
                Dialect::Postgres,
            ),
            (
                r#"WITH q AS (SELECT 1) UPDATE "a" SET "x" = 1"#,
                Dialect::Postgres,
            ),
            (r#"DELETE FROM "a""#, Dialect::Postgres),
            ("UPDATE ((( broken", Dialect::Postgres),
            ("UPDATE OR REPLACE `a` SET `x` = ?", Dialect::Sqlite),
            ("UPDATE `a` SET `x` = ? LIMIT 1", Dialect::Sqlite),
        ] {
            let planned =
                parse_update(sql, dialect).and_then(|u| u.plan(Some(&["id"]), Columns::All));
            assert_eq!(planned, None, "{sql}");
        }
    }
}
