//! SQL text → sqlparser AST, as the dependency analysis reads it: tokenizing (with
//! SQLite's `?` renumbered), parsing one query under a nesting limit, identifier
//! normalisation and the main table of a query.
//!
//! The bottom of `deps/`: it knows no [`super::Template`] and no walk, so every other
//! file here may use it.

use sqlparser::ast::{
    Cte, Ident, ObjectName, ObjectNamePart, Query, SetExpr, Statement, TableFactor,
};
use sqlparser::dialect::{Dialect as SqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::backend::Dialect;
use crate::error::{Error, ErrorKind, Result};

/// Deeper nesting than this (of queries and expressions) is refused rather than
/// risking the stack: our walk is recursive.
pub(super) const MAX_DEPTH: usize = 1000;

/// The parser's own nesting limit (its default is 50). Diesel nests every
/// `.filter()` in one more pair of parentheses, so a boxed query built in a loop
/// goes deep; the parser grows its stack as needed (`recursive-protection`).
const PARSER_DEPTH: usize = 400;

pub(super) fn sql_error(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Sql, format!("{what}: {e}")).with_source(e)
}

pub(super) fn unsupported(what: &str) -> Error {
    Error::new(
        ErrorKind::Sql,
        format!("unsupported by the dependency analysis: {what}"),
    )
}

/// `sql` parsed as one query, and the number of its SELECT keywords.
pub(super) fn parse_counted(sql: &str, dialect: Dialect) -> Result<(Box<Query>, usize)> {
    let sql_dialect: &dyn SqlDialect = match dialect {
        Dialect::Postgres => &PostgreSqlDialect {},
        Dialect::Sqlite => &SQLiteDialect {},
    };
    let (tokens, selects) = tokenize(sql, sql_dialect)?;
    Ok((parse_query(tokens, sql_dialect)?, selects))
}

/// `sql` parsed as one query, as the dependency analysis parses it (same
/// placeholders, same nesting limit).
pub(crate) fn parse_one(sql: &str, dialect: Dialect) -> Result<Box<Query>> {
    Ok(parse_counted(sql, dialect)?.0)
}

/// Tokens of `sql`, with SQLite's `?` renumbered as `$n`, and the number of SELECT
/// keywords (to check that the walk reached every SELECT block).
pub(super) fn tokenize(sql: &str, dialect: &dyn SqlDialect) -> Result<(Vec<TokenWithSpan>, usize)> {
    let mut tokens = Vec::new();
    let mut last = 0u32;
    Tokenizer::new(dialect, sql)
        .tokenize_with_location_into_buf_with_mapper(&mut tokens, |mut t| {
            if let Token::Placeholder(p) = &mut t.token {
                if let Some(n) = sqlite_placeholder_number(p, &mut last) {
                    *p = format!("${n}");
                }
            }
            t
        })
        .map_err(|e| sql_error("could not tokenize the SQL", e))?;
    let is_select =
        |t: &TokenWithSpan| matches!(&t.token, Token::Word(w) if w.keyword == Keyword::SELECT);
    let selects = tokens.iter().filter(|t| is_select(t)).count();
    Ok((tokens, selects))
}

/// The bind number of an SQLite placeholder: `?` is one more than the largest
/// number so far (`last`, updated), `?N` is N; `None` for other placeholders.
pub(crate) fn sqlite_placeholder_number(p: &str, last: &mut u32) -> Option<u32> {
    let digits = p.strip_prefix('?')?;
    let n = match digits {
        "" => last.saturating_add(1),
        d => d.parse::<u32>().ok()?,
    };
    *last = (*last).max(n);
    Some(n)
}

pub(super) fn parse_query(
    tokens: Vec<TokenWithSpan>,
    dialect: &dyn SqlDialect,
) -> Result<Box<Query>> {
    let mut statements = Parser::new(dialect)
        .with_recursion_limit(PARSER_DEPTH)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| sql_error("could not parse the SQL", e))?;
    if statements.len() > 1 {
        return Err(unsupported("several statements"));
    }
    match statements.pop() {
        Some(Statement::Query(query)) => Ok(query),
        Some(_) => Err(unsupported("a statement other than a query")),
        None => Err(Error::new(ErrorKind::Sql, "the SQL holds no statement")),
    }
}

/// An identifier as the database sees it: unquoted names fold to lower case.
pub(crate) fn norm(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// The last part of a dotted name: `schema.table` → `table`.
pub(crate) fn last_ident(name: &ObjectName) -> Option<String> {
    match name.0.last()? {
        ObjectNamePart::Identifier(ident) => Some(norm(ident)),
        ObjectNamePart::Function(_) => None,
    }
}

/// The first table of the outermost FROM, looking through derived tables and CTEs.
pub(crate) fn main_table_of(q: &Query) -> Option<String> {
    main_of_query(q, &mut Vec::new())
}

fn main_of_query<'a>(q: &'a Query, ctes: &mut Vec<&'a Cte>) -> Option<String> {
    ctes.extend(q.with.iter().flat_map(|w| &w.cte_tables));
    main_of_set(&q.body, ctes)
}

fn main_of_set<'a>(body: &'a SetExpr, ctes: &mut Vec<&'a Cte>) -> Option<String> {
    match body {
        SetExpr::Select(s) => main_of_factor(&s.from.first()?.relation, ctes),
        SetExpr::Query(q) => main_of_query(q, ctes),
        SetExpr::SetOperation { left, .. } => main_of_set(left, ctes),
        SetExpr::Table(t) => t.table_name.as_ref().map(norm),
        _ => None,
    }
}

fn main_of_factor<'a>(factor: &'a TableFactor, ctes: &mut Vec<&'a Cte>) -> Option<String> {
    match factor {
        TableFactor::Table {
            name, args: None, ..
        } => {
            let table = last_ident(name)?;
            let cte = ctes
                .iter()
                .rposition(|c| norm(&c.alias.name) == table)
                .filter(|_| name.0.len() == 1);
            // Only earlier CTEs are visible from a CTE's body: no loop on recursion.
            match cte {
                Some(i) => {
                    let body = &ctes[i].query;
                    main_of_query(body, &mut ctes[..i].to_vec())
                }
                None => Some(table),
            }
        }
        TableFactor::Derived { subquery, .. } => main_of_query(subquery, ctes),
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => main_of_factor(&table_with_joins.relation, ctes),
        _ => None,
    }
}
