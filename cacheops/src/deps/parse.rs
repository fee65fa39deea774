//! SQL text → [`Template`]: which tables a query reads and, per FROM item, which
//! conditions narrow the rows it reads.
//!
//! The walk covers SELECT statements: set operations, CTEs, derived tables, joins and
//! subqueries anywhere in expressions. Every SELECT block is analysed on its own: a
//! block's result depends only on the rows of its FROM tables that satisfy its own
//! WHERE (and inner-join ON) conditions, so tables inside subqueries, EXISTS, UNION
//! branches, CTEs and derived tables get the conditions of their own block, and
//! everything a block does not understand widens. Conditions that mention another
//! block's columns (correlated subqueries) are unknown there, which only widens.

use std::sync::Arc;

use sqlparser::ast::{
    Cte, Ident, ObjectName, ObjectNamePart, Query, SetExpr, Statement, TableFactor,
};
use sqlparser::dialect::{Dialect as SqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::dnf::{self, Ctx, Formula, Leaf};
use super::walk::Builder;
use super::{Deps, Policy};
use crate::backend::Dialect;
use crate::error::{Error, ErrorKind, Result};
use crate::value::{Equality, Value};

/// Deeper nesting than this (of queries and expressions) is refused rather than
/// risking the stack: our walk is recursive.
pub(super) const MAX_DEPTH: usize = 1000;

/// The parser's own nesting limit (its default is 50). Diesel nests every
/// `.filter()` in one more pair of parentheses, so a boxed query built in a loop
/// goes deep; the parser grows its stack as needed (`recursive-protection`).
const PARSER_DEPTH: usize = 400;

/// The dependency structure of one SQL text, with binds still unknown.
///
/// Built once per distinct SQL text; [`Template::instantiate`] then only evaluates
/// small precompiled formulas whose terms refer to bind indexes.
#[derive(Debug)]
pub struct Template {
    /// Every table referenced, sorted by name.
    pub(super) tables: Vec<Arc<str>>,
    /// Index into `tables` of the first table of the outermost FROM.
    pub(super) main: Option<usize>,
    /// Every column named in a condition, sorted: ids are indexes, so ordering terms
    /// by id orders them by name.
    pub(super) columns: Vec<Arc<str>>,
    /// One formula per FROM item that is a table, sorted by table index. A table read
    /// several times depends on the union of its occurrences.
    pub(super) occurrences: Vec<(usize, Formula<Leaf>)>,
    /// Per occurrence, in the same order, why it may not narrow its table.
    pub(super) notes: Box<[&'static str]>,
    /// Binds used as `= ANY($n)`, decoded once per instantiation.
    pub(super) arrays: Box<[u32]>,
}

impl Template {
    /// Parses `sql` as rendered by Diesel for `dialect`.
    ///
    /// Only queries (SELECT, possibly with set operations and CTEs) are supported;
    /// anything else, and SQL the analysis cannot cover, is an [`ErrorKind::Sql`] error.
    pub fn parse(sql: &str, dialect: Dialect) -> Result<Template> {
        let (query, selects) = parse_counted(sql, dialect)?;
        let mut builder = Builder::default();
        builder.query(&query, false)?;
        // A SELECT the walk never reached sits in an expression it does not descend
        // into: its tables would be missed, so refuse rather than under-invalidate.
        if builder.selects != selects {
            return Err(unsupported(
                "a subquery in a position the analysis does not cover",
            ));
        }
        Ok(builder.finish(main_table_of(&query)))
    }

    /// Every table the SQL references anywhere, sorted and deduplicated.
    pub fn tables(&self) -> &[Arc<str>] {
        &self.tables
    }

    /// Column names, by the ids formulas use, for `explain.rs`.
    pub(super) fn columns(&self) -> &[Arc<str>] {
        &self.columns
    }

    /// One formula per FROM item that is a table, with its index in
    /// [`Template::tables`], for `explain.rs`.
    pub(super) fn occurrences(&self) -> &[(usize, Formula<Leaf>)] {
        &self.occurrences
    }

    /// Why each of [`Template::occurrences`] may not narrow its table.
    pub(super) fn notes(&self) -> &[&'static str] {
        &self.notes
    }

    /// The first table of the outermost FROM: the model a query is "about".
    pub fn main_table(&self) -> Option<&str> {
        self.main_table_name().map(|t| &**t)
    }

    /// [`Template::main_table`] as the shared name, so a hit need not copy it.
    pub(crate) fn main_table_name(&self) -> Option<&Arc<str>> {
        self.tables.get(self.main?)
    }

    /// The dependencies of one call with these binds.
    ///
    /// A NULL term (`col IS NULL`) carries a value with `bytes: None` and type tag 0;
    /// it matches a row whose column is NULL, whatever the column's type.
    pub fn instantiate(&self, binds: &[Value], policy: &Policy<'_>) -> Deps {
        let arrays: Vec<(u32, Option<Vec<Value>>)> = self
            .arrays
            .iter()
            .map(|n| (*n, array_elements(binds.get(*n as usize), policy)))
            .collect();
        let mut tables = Vec::with_capacity(self.tables.len());
        for group in self.occurrences.chunk_by(|a, b| a.0 == b.0) {
            let Some(table) = group.first().and_then(|(t, _)| self.tables.get(*t)) else {
                continue;
            };
            let ctx = Ctx {
                binds,
                arrays: &arrays,
                policy,
                table,
                columns: &self.columns,
            };
            let dnf = group.iter().try_fold(Vec::new(), |acc, (_, f)| {
                dnf::or(acc, dnf::eval(f, &ctx)?, policy.max_conjunctions)
            });
            tables.push((table.clone(), dnf::finish(dnf, &self.columns)));
        }
        Deps { tables }
    }
}

/// The elements of an array bind, when it is one and small enough to be granular.
fn array_elements(bind: Option<&Value>, policy: &Policy<'_>) -> Option<Vec<Value>> {
    let bind = bind.filter(|v| v.equality == Equality::PgArray)?;
    dnf::decode_array(bind.bytes.as_deref()?, policy.max_in_values)
}

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
fn parse_counted(sql: &str, dialect: Dialect) -> Result<(Box<Query>, usize)> {
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
