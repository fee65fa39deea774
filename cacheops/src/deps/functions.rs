//! What the functions a statement calls may do: nothing a cache must mind, change
//! their result from call to call (`random()`, `now()`), or write anything (a
//! user-defined volatile function called by a `SELECT`).
//!
//! Built-in functions are known by name. Any other function is looked up once per
//! handle: on PostgreSQL in the catalog (`pg_proc.provolatile`; a STABLE or
//! IMMUTABLE function cannot modify the database), while on SQLite an
//! application-defined function is unknown, so it may write.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, ObjectName, ObjectNamePart, Statement, TableFactor, Visit, Visitor};

use crate::backend::Dialect;
use crate::deps::norm;

/// What calling a function may do, as far as the cache is concerned; ordered
/// from harmless to worst, so that a statement's calls take the maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Volatility {
    /// Same result for the same arguments and data, and no writes (IMMUTABLE, or
    /// STABLE and independent of time and session): reads calling it may be cached.
    Stable,
    /// A result that changes with time, chance or the session, and no table
    /// writes (`now()`, `random()`, `nextval()`): reads calling it are never
    /// cached automatically.
    Varies,
    /// May write (user-defined VOLATILE, or unknown): the statement is treated as
    /// a write of anything, and never cached automatically.
    MayWrite,
}

/// Built-in functions whose result varies between calls, both dialects (lower
/// case). Keyword functions such as `CURRENT_TIMESTAMP` parse as calls too.
const VARIES: &[&str] = &[
    // PostgreSQL
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "clock_timestamp",
    "timeofday",
    "age",
    "random",
    "random_normal",
    "gen_random_uuid",
    "nextval",
    "currval",
    "lastval",
    "setval",
    "txid_current",
    "pg_current_xact_id",
    "current_setting",
    "set_config",
    "current_user",
    "session_user",
    "current_role",
    "user",
    "current_schema",
    "current_schemas",
    "current_database",
    "current_catalog",
    "inet_client_addr",
    "pg_backend_pid",
    "pg_sleep",
    "pg_notify",
    "pg_advisory_lock",
    "pg_try_advisory_lock",
    "pg_advisory_xact_lock",
    "pg_advisory_unlock",
    // SQLite
    "randomblob",
    "changes",
    "total_changes",
    "last_insert_rowid",
    "date",
    "time",
    "datetime",
    "julianday",
    "strftime",
    "unixepoch",
    "timediff",
];

/// Aggregate functions, by lower-case name (PostgreSQL and SQLite).
pub(crate) const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "every",
    "string_agg",
    "array_agg",
    "json_agg",
    "jsonb_agg",
    "group_concat",
    "total",
];

/// Other common built-in functions that are stable in both dialects (lower
/// case): known, like [`AGGREGATES`], without a catalog lookup.
const STABLE: &[&str] = &[
    "lower",
    "upper",
    "coalesce",
    "nullif",
    "ifnull",
    "iif",
    "greatest",
    "least",
    "length",
    "char_length",
    "octet_length",
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "trunc",
    "mod",
    "power",
    "sqrt",
    "sign",
    "concat",
    "concat_ws",
    "substr",
    "substring",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "replace",
    "instr",
    "strpos",
    "left",
    "right",
    "lpad",
    "rpad",
    "split_part",
    "position",
    "encode",
    "decode",
    "hex",
    "quote",
    "typeof",
    "printf",
    "format",
    "date_trunc",
    "date_part",
    "to_char",
    "array_length",
    "cardinality",
    "unnest",
    "json_build_object",
    "jsonb_build_object",
    "json_extract",
    "json_object",
    "json_array",
    "row_number",
    "rank",
    "dense_rank",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "exists",
];

/// What a function of this name does, when it is a known built-in.
pub(crate) fn builtin(name: &str) -> Option<Volatility> {
    match name {
        n if STABLE.contains(&n) || AGGREGATES.contains(&n) => Some(Volatility::Stable),
        n if VARIES.contains(&n) => Some(Volatility::Varies),
        _ => None,
    }
}

/// What a function unknown to [`builtin`] does, from PostgreSQL's catalog:
/// `provolatile` (`i`, `s`, `v`) of every function of that name, each with its
/// schema. IMMUTABLE is stable; a STABLE function may read settings
/// (`current_setting('app.tenant')`), so outside `pg_catalog` its result varies
/// with the session; built-in (`pg_catalog`) volatile functions write no table
/// rows; any other volatile one may. No function of that name: it may be anything.
pub(crate) fn from_catalog<'a>(found: impl IntoIterator<Item = (&'a str, &'a str)>) -> Volatility {
    let judged = found
        .into_iter()
        .map(|(schema, volatile)| match (schema, volatile) {
            (_, "i") | ("pg_catalog", "s") => Volatility::Stable,
            (_, "s") | ("pg_catalog", _) => Volatility::Varies,
            _ => Volatility::MayWrite,
        });
    judged.max().unwrap_or(Volatility::MayWrite)
}

/// Whether `sql` may call a function at all, told from its text without parsing
/// (reads on the hot path skip the parse when it cannot): a word right before a
/// `(` that is not a reserved keyword opening a parenthesis, a name after a `.`
/// or quoted, or a keyword function that takes none (`CURRENT_TIMESTAMP`). Text
/// this rough scan could misread (comments, escaped or dollar-quoted strings,
/// bracketed names) always "may": Diesel renders none of them. Errs towards "may".
pub(crate) fn may_call(sql: &str) -> bool {
    let mut words = Words {
        bytes: sql.as_bytes(),
        at: 0,
    };
    // The word right before the current token: `Some(None)` for a name that
    // cannot be a keyword (quoted, or after a dot).
    let mut last: Option<Option<&[u8]>> = None;
    let mut after_dot = false;
    while let Some(token) = words.next() {
        let dot = matches!(token, Token::Dot);
        match token {
            Token::Open if last.is_some_and(|w| w.is_none_or(|w| !opens_without_call(w))) => {
                return true;
            }
            Token::Hard => return true,
            Token::Word(w) if is_keyword_call(w) && !after_dot => return true,
            Token::Word(w) => last = Some((!after_dot).then_some(w)),
            Token::Quoted => last = Some(None),
            _ => last = None,
        }
        after_dot = dot;
    }
    false
}

/// Reserved keywords that may stand before a parenthesis that is not a call
/// (and that no function can be named unquoted).
fn opens_without_call(word: &[u8]) -> bool {
    const KEYWORDS: &[&str] = &[
        "select",
        "from",
        "where",
        "and",
        "or",
        "not",
        "in",
        "on",
        "values",
        "as",
        "any",
        "all",
        "some",
        "case",
        "when",
        "then",
        "else",
        "with",
        "union",
        "except",
        "intersect",
        "distinct",
        "lateral",
        "using",
        "returning",
        "limit",
        "offset",
        "having",
        "into",
        "row",
        "exists",
        "between",
    ];
    KEYWORDS
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k.as_bytes()))
}

fn is_keyword_call(word: &[u8]) -> bool {
    const CALLS: &[&str] = &[
        "current_timestamp",
        "current_date",
        "current_time",
        "localtime",
        "localtimestamp",
        "current_user",
        "session_user",
        "current_role",
        "user",
        "current_schema",
        "current_catalog",
    ];
    CALLS
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k.as_bytes()))
}

enum Token<'a> {
    /// An unquoted word.
    Word(&'a [u8]),
    /// A quoted identifier.
    Quoted,
    Open,
    Dot,
    /// Text this rough lexer could misread: a comment, an escape, a dollar
    /// quote, a bracketed name.
    Hard,
    Other,
}

/// A rough lexer: enough to find words before parentheses. String literals are
/// skipped whole, so their contents are never taken for calls.
struct Words<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Words<'a> {
    fn next(&mut self) -> Option<Token<'a>> {
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
        let b = *self.bytes.get(self.at)?;
        let start = self.at;
        self.at += 1;
        Some(match b {
            b'(' => Token::Open,
            b'.' => Token::Dot,
            // An escape inside may end the string elsewhere than this lexer thinks.
            b'\'' if self.skip_past(b'\'') => Token::Hard,
            b'\'' => Token::Other,
            b'"' | b'`' => {
                self.skip_past(b);
                Token::Quoted
            }
            b'\\' | b'[' => Token::Hard,
            b'-' | b'/' if self.peek() == Some(if b == b'-' { b'-' } else { b'*' }) => Token::Hard,
            // `$1` is a placeholder; `$$` or `$tag$` opens a dollar-quoted string.
            b'$' if !self.peek().is_some_and(|n| n.is_ascii_digit()) => Token::Hard,
            b if is_word_byte(b) => {
                while self.bytes.get(self.at).copied().is_some_and(is_word_byte) {
                    self.at += 1;
                }
                Token::Word(&self.bytes[start..self.at])
            }
            _ => Token::Other,
        })
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Moves past the closing `quote`; whether a backslash came before it.
    fn skip_past(&mut self, quote: u8) -> bool {
        let mut escaped = false;
        while let Some(&b) = self.bytes.get(self.at) {
            self.at += 1;
            if b == quote {
                break;
            }
            escaped |= b == b'\\';
        }
        escaped
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The names of every function `statements` call, as the database resolves them
/// (unquoted parts folded to lower case, `schema.name` when qualified), minus the
/// built-ins known [`Volatility::Stable`]; sorted, without repeats.
pub(crate) fn called(statements: &[Statement]) -> Vec<String> {
    let mut calls = Calls(Vec::new());
    for statement in statements {
        let _ = statement.visit(&mut calls);
    }
    let mut names = calls.0;
    names.retain(|n| builtin(n) != Some(Volatility::Stable));
    names.sort();
    names.dedup();
    names
}

struct Calls(Vec<String>);

impl Visitor for Calls {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = expr {
            self.push(&f.name);
        }
        ControlFlow::Continue(())
    }

    /// Set-returning functions in FROM: `SELECT * FROM f()`.
    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.push(name),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

impl Calls {
    fn push(&mut self, name: &ObjectName) {
        let parts = name.0.iter().map(|part| match part {
            ObjectNamePart::Identifier(ident) => norm(ident),
            ObjectNamePart::Function(f) => f.name.value.to_lowercase(),
        });
        self.0.push(parts.collect::<Vec<_>>().join("."));
    }
}

/// Splits a name from [`called`] into its schema (if qualified) and its own name.
pub(crate) fn schema_and_name(name: &str) -> (Option<&str>, &str) {
    match name.rsplit_once('.') {
        Some((schema, own)) => (Some(schema), own),
        None => (None, name),
    }
}

/// How the dialect's built-ins and catalog judge `name` without a connection:
/// known built-ins, and on SQLite every other function (application-defined, so
/// unknown: it may write). `None`: ask PostgreSQL's catalog.
pub(crate) fn known(name: &str, dialect: Dialect) -> Option<Volatility> {
    let builtin_name = name.strip_prefix("pg_catalog.").unwrap_or(name);
    builtin(builtin_name).or(match dialect {
        Dialect::Sqlite => Some(Volatility::MayWrite),
        Dialect::Postgres => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn calls(sql: &str) -> Vec<String> {
        called(&Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap())
    }

    #[test]
    fn calls_are_found_anywhere_stable_built_ins_dropped() {
        assert_eq!(
            calls("SELECT count(*), lower(name) FROM t"),
            Vec::<String>::new()
        );
        assert_eq!(
            calls("SELECT * FROM t WHERE ts < now() ORDER BY random() LIMIT 1"),
            ["now", "random"]
        );
        assert_eq!(
            calls("SELECT * FROM Audit.Log_Write($1)"),
            ["audit.log_write"]
        );
        assert_eq!(
            calls(r#"SELECT "MyFn"(1), x FROM t WHERE y IN (SELECT f())"#),
            ["MyFn", "f"]
        );
        assert_eq!(calls("SELECT CURRENT_TIMESTAMP"), ["current_timestamp"]);
        assert_eq!(calls("UPDATE t SET a = touch_other($1)"), ["touch_other"]);
    }

    #[test]
    fn the_text_scan_never_misses_a_call() {
        for sql in [
            "SELECT f(1)",
            "SELECT \"F\" (1)",
            "SELECT \"select\"(1)",
            "SELECT * FROM articles -- don't cache\nORDER BY random() LIMIT 1",
            "SELECT /* purge user's data */ purge_user($1)",
            "SELECT now/**/()",
            "SELECT app.select(1)",
            "SELECT filter(x) FROM t",
            "SELECT $$it's$$, f(1)",
            "SELECT E'a\\'b', f(1)",
            "SELECT * FROM s.f()",
            "SELECT a FROM t WHERE b = CURRENT_DATE",
            "select count(*) from t",
        ] {
            assert!(may_call(sql), "{sql}");
        }
        for sql in [
            r#"SELECT "t"."a" FROM "t" WHERE ("t"."b" = $1) AND ("t"."c" IN ($2, $3)) LIMIT $4"#,
            "SELECT a FROM t WHERE b = 'now()'",
            "SELECT EXISTS (SELECT 1 FROM t WHERE (a = 1))",
            "SELECT a FROM t WHERE (b = $1) LIMIT $2 OFFSET $3",
        ] {
            assert!(!may_call(sql), "{sql}");
        }
    }

    #[test]
    fn catalog_rows_judge_unknown_functions() {
        assert_eq!(
            from_catalog([("public", "i"), ("pg_catalog", "s")]),
            Volatility::Stable
        );
        let reads_settings = from_catalog([("public", "s")]);
        assert_eq!(
            reads_settings,
            Volatility::Varies,
            "a STABLE function may read settings"
        );
        assert_eq!(from_catalog([("pg_catalog", "v")]), Volatility::Varies);
        assert_eq!(
            from_catalog([("app", "v"), ("pg_catalog", "s")]),
            Volatility::MayWrite
        );
        assert_eq!(from_catalog([]), Volatility::MayWrite);
        assert_eq!(known("my_fn", Dialect::Sqlite), Some(Volatility::MayWrite));
        assert_eq!(known("my_fn", Dialect::Postgres), None);
        assert_eq!(known("random", Dialect::Postgres), Some(Volatility::Varies));
        assert_eq!(
            known("pg_catalog.now", Dialect::Postgres),
            Some(Volatility::Varies)
        );
    }
}
