//! `explain`: a statement's dependencies in words, before any bind is known.
//!
//! The parsed [`Template`] is multiplied out symbolically: each conjunction is shown
//! with its *scheme* (the sorted columns a saved row is matched on) and the
//! placeholder each column is bound to. What the template alone cannot decide
//! (the bound values' types, list lengths) is listed as caveats, and the top-level
//! conditions the analysis could not use are quoted, so a user sees why a query
//! is or is not granular.

use std::collections::BTreeSet;
use std::fmt;

use sqlparser::ast::{Expr, JoinConstraint, JoinOperator, SetExpr};
use sqlparser::dialect::{Dialect as SqlDialect, PostgreSqlDialect, SQLiteDialect};

use super::ast;
use super::dnf::{self, ColKey, Formula, Leaf, Src};
use super::template::Template;
use crate::backend::Dialect;
use crate::error::Result;

/// Past this many conjunctions for one table the runtime widens it; so does explain.
const MAX_CONJUNCTIONS: usize = 64;

/// The dependencies of one statement, as `cacheops-cli explain` prints them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The first table of the outermost FROM, if any.
    pub main_table: Option<String>,
    /// Every table the statement reads, sorted by name.
    pub tables: Vec<TableExplanation>,
    /// Top-level WHERE/ON conditions that narrow nothing (quoted SQL).
    pub not_granular: Vec<String>,
}

/// What changes of one table invalidate the statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableExplanation {
    /// The table.
    pub table: String,
    /// Either the conjunctions (each: terms like `category_id = $1`, sorted), or why
    /// the table is not granular.
    pub conjunctions: Conjunctions,
    /// For a table no usable condition narrows: why, for each place it is read.
    pub why: Vec<String>,
}

/// A table's conjunctions, each a sorted list of rendered terms, or why there are none.
pub type Conjunctions = Result<Vec<Vec<String>>, Widening>;

/// Why a table is not granular.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Widening {
    /// No condition the analysis understands narrows the rows read from it.
    NoUsableCondition,
    /// The conditions multiply out to more conjunctions than the runtime keeps.
    TooManyConjunctions,
}

/// Parses `sql` for `dialect` and explains its dependencies.
///
/// ```
/// use cacheops::{deps::explain, Dialect};
/// let e = explain(r#"SELECT * FROM "posts" WHERE "posts"."author_id" = $1"#, Dialect::Postgres)?;
/// assert_eq!(e.tables[0].conjunctions, Ok(vec![vec!["author_id = $1".to_string()]]));
/// # Ok::<(), cacheops::Error>(())
/// ```
pub fn explain(sql: &str, dialect: Dialect) -> Result<Explanation> {
    let template = Template::parse(sql, dialect)?;
    let (columns, occurrences) = (template.columns(), template.occurrences());
    let explained = template.tables().iter().enumerate().map(|(i, table)| {
        let of_table = || {
            occurrences
                .iter()
                .zip(template.notes())
                .filter(move |((t, _), _)| *t == i)
        };
        let conjunctions = table_conjunctions(of_table().map(|((_, f), _)| f), columns);
        let unnarrowed = |((_, f), _): &(&(usize, Formula<Leaf>), &&str)| {
            symbolic(f, columns).is_ok_and(|s| s.iter().any(BTreeSet::is_empty))
        };
        let mut why: Vec<String> = match conjunctions {
            Err(Widening::NoUsableCondition) => of_table()
                .filter(unnarrowed)
                .map(|(_, why)| why.to_string())
                .collect(),
            _ => Vec::new(),
        };
        why.dedup();
        TableExplanation {
            table: table.to_string(),
            conjunctions,
            why,
        }
    });
    Ok(Explanation {
        main_table: template.main_table().map(str::to_string),
        tables: explained.collect(),
        not_granular: not_granular(sql, dialect),
    })
}

/// A symbolic DNF: conjunctions of rendered terms. `[]` is false, `[[]]` true.
type Sym = Vec<BTreeSet<String>>;

fn table_conjunctions<'f>(
    formulas: impl Iterator<Item = &'f Formula<Leaf>>,
    columns: &[std::sync::Arc<str>],
) -> Conjunctions {
    let mut all: Sym = Vec::new();
    for formula in formulas {
        all = or(all, symbolic(formula, columns)?)?;
    }
    if all.iter().any(BTreeSet::is_empty) {
        return Err(Widening::NoUsableCondition);
    }
    let mut out: Vec<Vec<String>> = all.into_iter().map(|c| c.into_iter().collect()).collect();
    out.sort();
    Ok(out)
}

fn symbolic(f: &Formula<Leaf>, columns: &[std::sync::Arc<str>]) -> Result<Sym, Widening> {
    match f {
        Formula::True => Ok(vec![BTreeSet::new()]),
        Formula::False => Ok(Vec::new()),
        Formula::Leaf(leaf) => Ok(vec![BTreeSet::from([term(leaf, columns)])]),
        Formula::And(items) => items.iter().try_fold(vec![BTreeSet::new()], |acc, item| {
            and(&acc, &symbolic(item, columns)?)
        }),
        Formula::Or(items) => items
            .iter()
            .try_fold(Vec::new(), |acc, item| or(acc, symbolic(item, columns)?)),
    }
}

fn and(a: &Sym, b: &Sym) -> Result<Sym, Widening> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            push_unique(&mut out, x.union(y).cloned().collect())?;
        }
    }
    Ok(out)
}

fn or(mut a: Sym, b: Sym) -> Result<Sym, Widening> {
    for conj in b {
        push_unique(&mut a, conj)?;
    }
    Ok(a)
}

fn push_unique(out: &mut Sym, conj: BTreeSet<String>) -> Result<(), Widening> {
    if !out.contains(&conj) {
        if out.len() >= MAX_CONJUNCTIONS {
            return Err(Widening::TooManyConjunctions);
        }
        out.push(conj);
    }
    Ok(())
}

/// `a = b = $1`, `a IN ($1, $2)`, `a = ANY($3)`, `a IS NULL`.
fn term(leaf: &Leaf, columns: &[std::sync::Arc<str>]) -> String {
    let names: Vec<&str> = leaf
        .cols
        .iter()
        .map(|c| columns.get(*c as usize).map_or("?", |n| &**n))
        .collect();
    let lhs = names.join(" = ");
    let placeholder = |n: &u32| format!("${}", n + 1);
    match &leaf.src {
        Src::Bind(n) => format!("{lhs} = {}", placeholder(n)),
        Src::BindOrNull(n) => format!("{lhs} IS NOT DISTINCT FROM {}", placeholder(n)),
        Src::List(ns) => {
            let list: Vec<String> = ns.iter().map(placeholder).collect();
            format!("{lhs} IN ({})", list.join(", "))
        }
        Src::Array(n) => format!("{lhs} = ANY({})", placeholder(n)),
        Src::Null => format!("{lhs} IS NULL"),
    }
}

/// The top-level conditions (AND-ed parts of WHERE and inner-join ON clauses of the
/// outer SELECT blocks) that the analysis turns into "unknown". Best effort: SQL
/// that does not parse here has already failed [`Template::parse`].
fn not_granular(sql: &str, dialect: Dialect) -> Vec<String> {
    let sql_dialect: &dyn SqlDialect = match dialect {
        Dialect::Postgres => &PostgreSqlDialect {},
        Dialect::Sqlite => &SQLiteDialect {},
    };
    // The same tokens as the analysis: SQLite's `?` become `$n`, as in the terms.
    let query = ast::tokenize(sql, sql_dialect).and_then(|(t, _)| ast::parse_query(t, sql_dialect));
    let Ok(query) = query else {
        return Vec::new();
    };
    let mut conditions = Vec::new();
    collect_conditions(&query.body, &mut conditions);
    let unknown = |e: &&Expr| matches!(dnf::condition(e, false, &mut AnyColumn), Formula::True);
    conditions
        .into_iter()
        .filter(unknown)
        .map(|e| e.to_string())
        .collect()
}

fn collect_conditions<'q>(body: &'q SetExpr, out: &mut Vec<&'q Expr>) {
    match body {
        SetExpr::Select(select) => {
            out.extend(select.selection.iter().flat_map(conjuncts));
            let joins = select.from.iter().flat_map(|t| &t.joins);
            let on = joins.filter_map(|j| match &j.join_operator {
                JoinOperator::Join(JoinConstraint::On(e))
                | JoinOperator::Inner(JoinConstraint::On(e)) => Some(e),
                _ => None,
            });
            out.extend(on.flat_map(conjuncts));
        }
        SetExpr::Query(q) => collect_conditions(&q.body, out),
        SetExpr::SetOperation { left, right, .. } => {
            collect_conditions(left, out);
            collect_conditions(right, out);
        }
        _ => {}
    }
}

/// The AND-ed parts of `e`, through Diesel's parentheses.
fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Nested(inner) => conjuncts(inner),
        Expr::BinaryOp {
            left,
            op: sqlparser::ast::BinaryOperator::And,
            right,
        } => {
            let mut parts = conjuncts(left);
            parts.extend(conjuncts(right));
            parts
        }
        other => vec![other],
    }
}

/// Treats every column reference as a column: only the shape of a condition matters
/// for telling whether it can narrow at all.
struct AnyColumn;

impl dnf::Resolve for AnyColumn {
    fn column(&mut self, e: &Expr) -> Option<ColKey> {
        match e {
            Expr::Nested(inner) => self.column(inner),
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => Some((0, 0)),
            _ => None,
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(main) = &self.main_table {
            writeln!(f, "main table: {main}")?;
        }
        for table in &self.tables {
            write!(f, "{table}")?;
        }
        if !self.not_granular.is_empty() {
            writeln!(f, "conditions that narrow nothing (only `col = $n`, `col IN (..)`, `col = ANY($n)`, `col IS NULL` and AND/OR of them do):")?;
            for cond in &self.not_granular {
                writeln!(f, "  {cond}")?;
            }
        }
        writeln!(f, "caveats, decided per call from the bound values:")?;
        writeln!(f, "  a term whose value has an inexact type (float, numeric, json, custom types unless #[cacheops(exact)]) is dropped from its conjunction;")?;
        writeln!(f, "  an IN list or ANY array longer than max_in_values (default 32) is dropped; more than max_conjunctions (default 64) per table widens the table.")
    }
}

impl fmt::Display for TableExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let conjs = match &self.conjunctions {
            Err(Widening::NoUsableCondition) => {
                writeln!(
                    f,
                    "table {}: any change (no usable condition narrows it)",
                    self.table
                )?;
                return self
                    .why
                    .iter()
                    .try_for_each(|why| writeln!(f, "  because: {why}"));
            }
            Err(Widening::TooManyConjunctions) => {
                return writeln!(
                    f,
                    "table {}: any change (more than {MAX_CONJUNCTIONS} conjunctions)",
                    self.table
                )
            }
            Ok(conjs) if conjs.is_empty() => {
                return writeln!(
                    f,
                    "table {}: no row can match; only table-wide invalidation reaches it",
                    self.table
                )
            }
            Ok(conjs) => conjs,
        };
        writeln!(
            f,
            "table {}: granular, {} conjunction(s)",
            self.table,
            conjs.len()
        )?;
        for conj in conjs {
            writeln!(f, "  scheme ({}): {}", scheme(conj), conj.join(" AND "))?;
        }
        Ok(())
    }
}

/// The sorted columns of a rendered conjunction: each term starts with its
/// columns joined by ` = `, up to the operator.
fn scheme(conj: &[String]) -> String {
    let mut cols = BTreeSet::new();
    for term in conj {
        let lhs = [" IS NOT DISTINCT FROM ", " IN (", " = ANY(", " IS NULL"]
            .iter()
            .filter_map(|op| term.find(op))
            .min()
            .unwrap_or(term.len());
        let lhs = &term[..lhs];
        // `a = b = $1`: every part but the placeholder is a column.
        cols.extend(lhs.split(" = ").filter(|p| !p.starts_with('$')));
    }
    cols.into_iter().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conjs(sql: &str) -> Vec<(String, Conjunctions)> {
        let e = explain(sql, Dialect::Postgres).unwrap();
        e.tables
            .into_iter()
            .map(|t| (t.table, t.conjunctions))
            .collect()
    }

    fn terms(list: &[&[&str]]) -> Conjunctions {
        Ok(list
            .iter()
            .map(|c| c.iter().map(|t| t.to_string()).collect())
            .collect())
    }

    #[test]
    fn in_lists_any_and_null_are_granular() {
        let got = conjs("SELECT * FROM t WHERE t.a IN ($1, $2) AND (t.b = ANY($3) OR t.c IS NULL)");
        let want = terms(&[
            &["a IN ($1, $2)", "b = ANY($3)"],
            &["a IN ($1, $2)", "c IS NULL"],
        ]);
        assert_eq!(got, vec![("t".to_string(), want)]);
    }

    #[test]
    fn subquery_tables_are_listed_with_their_own_conditions() {
        let got =
            conjs("SELECT * FROM a WHERE a.x = $1 AND a.y IN (SELECT b.y FROM b WHERE b.z > $2)");
        assert_eq!(got[0], ("a".to_string(), terms(&[&["x = $1"]])));
        assert_eq!(got[1], ("b".to_string(), Err(Widening::NoUsableCondition)));
    }

    #[test]
    fn every_widened_table_says_why() {
        let why = |sql: &str, table: &str| {
            let e = explain(sql, Dialect::Postgres).unwrap();
            e.tables.into_iter().find(|t| t.table == table).unwrap().why
        };
        let left = "SELECT * FROM categories LEFT JOIN posts ON posts.category_id = categories.id WHERE categories.name = 'x' OR posts.id = $1";
        assert_eq!(why(left, "posts").len(), 1);
        assert!(why(left, "posts")[0].contains("nullable side of a LEFT JOIN"));
        let full = "SELECT * FROM a FULL JOIN b ON b.a_id = a.id WHERE a.id = $1";
        assert!(why(full, "b")[0].contains("FULL"));
        assert!(why("SELECT * FROM a WHERE x > $1", "a")[0].contains("no `column = value` term"));
        assert!(
            why("SELECT * FROM a WHERE a.id = $1", "a").is_empty(),
            "granular"
        );
    }

    #[test]
    fn contradictions_and_overflow() {
        let got = conjs("SELECT * FROM t WHERE t.a = $1 AND 1 = 0");
        assert_eq!(got[0].1, Ok(Vec::new()));
        let many: Vec<String> = (0..7)
            .map(|i| format!("(t.a = ${} OR t.b = ${})", 2 * i + 1, 2 * i + 2))
            .collect();
        let got = conjs(&format!("SELECT * FROM t WHERE {}", many.join(" AND ")));
        assert_eq!(got[0].1, Err(Widening::TooManyConjunctions));
    }

    #[test]
    fn display_names_schemes() {
        let e = explain(
            "SELECT * FROM t WHERE t.b = $2 AND t.a = $1",
            Dialect::Postgres,
        )
        .unwrap();
        let shown = e.to_string();
        assert!(
            shown.contains("scheme (a, b): a = $1 AND b = $2"),
            "{shown}"
        );
    }
}
