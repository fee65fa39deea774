//! A query's dependencies: which row changes can change its result.
//!
//! A [`Template`] is parsed once per distinct SQL text; [`Template::instantiate`]
//! then turns it and one call's binds into [`Deps`] without touching the parser.
//!
//! Per table, dependencies are an OR of conjunctions of `column = value`
//! ([`TableDeps`]). A saved row invalidates a cached query when, for some table it
//! depends on, the row's old or new values satisfy one of the conjunctions. Anything
//! the analysis does not understand widens to "any change of that table".

// Files form a chain, each using only those before it:
// ast < dnf < template < walk < explain.
mod ast;
mod dnf;
mod explain;
pub(crate) mod functions;
mod infer;
mod memo;
mod template;
mod walk;

pub(crate) use infer::{infer, Read};
pub(crate) use memo::{Prepared, SqlMemo};

use std::sync::Arc;

use crate::backend::Dialect;
use crate::value::Value;

pub(crate) use ast::{last_ident, main_table_of, norm, parse_one, sqlite_placeholder_number};
pub use explain::{explain, Conjunctions, Explanation, TableExplanation, Widening};
pub use template::Template;

/// `column = value`: one term of a conjunction. `value` may be NULL (`col IS NULL`).
pub type Term = (Arc<str>, Value);

/// A conjunction of equality terms on one table, sorted by column, never empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Conj(pub Vec<Term>);

/// What changes of one table invalidate a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableDeps {
    /// Any change of the table.
    Any,
    /// Only changes to rows matching one of these conjunctions (sorted, deduplicated).
    /// Empty: the query provably reads no row of this table, yet a table-wide
    /// invalidation (e.g. of the model) still reaches it.
    Conjs(Vec<Conj>),
}

/// The dependencies of one query: tables in name order, each with its conditions.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Deps {
    /// `(table, deps)` sorted by table name, one entry per table.
    pub tables: Vec<(Arc<str>, TableDeps)>,
}

/// Limits and column knowledge applied when a template meets its binds.
pub struct Policy<'a> {
    /// Past this many conjunctions on one table, the table widens to [`TableDeps::Any`].
    pub max_conjunctions: usize,
    /// Past this many values in one `IN (...)` / `= ANY(...)`, the term is unknown.
    pub max_in_values: usize,
    /// Whether `table.column = value` may be decided by byte equality; a term where
    /// it says no is unknown. Called for every scalar value (array elements one by
    /// one). The default trusts the value's equality class; the runtime
    /// adds each model's per-column opt-ins and opt-outs.
    pub column_is_exact: &'a (dyn Fn(&str, &str, &Value) -> bool + Sync),
}

impl Default for Policy<'_> {
    fn default() -> Self {
        Policy {
            max_conjunctions: 64,
            max_in_values: 32,
            column_is_exact: &|_, _, v| v.equality == crate::value::Equality::Exact,
        }
    }
}

/// Parses SQL into a template. Convenience over [`Template::parse`].
pub fn parse(sql: &str, dialect: Dialect) -> crate::Result<Template> {
    Template::parse(sql, dialect)
}

#[cfg(test)]
mod tests;
