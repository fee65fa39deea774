//! Which op an ordinary read is, inferred from its SQL, and the model it is about.
//!
//! Diesel sends `.load()`, `.first()`, `.get_result()` and `.count()` through the
//! same `load`, so the op django-cacheops takes from the API called is read off
//! the statement instead:
//!
//! | SQL shape | op |
//! |---|---|
//! | `SELECT EXISTS (subquery)` without FROM | `exists` (model: the subquery's main table) |
//! | one `COUNT(...)` and no GROUP BY | `count` |
//! | only aggregate calls (`MAX`, `SUM`, ...) and no GROUP BY | `aggregate` |
//! | one table, no join, WHERE pins every primary-key column to a value (`find(k)`) | `get` |
//! | anything else (joins, GROUP BY, set operations, ...) | `fetch` |
//!
//! The model is the main table's (first of the outermost FROM). Locking reads
//! (`FOR UPDATE`, `FOR SHARE`) and tables without a registered model are never
//! automatic.

use std::sync::Arc;

use sqlparser::ast::{BinaryOperator, Expr, GroupByExpr, Query, Select, SelectItem, SetExpr};

use crate::backend::Dialect;
use crate::config::Ops;
use crate::deps::functions::AGGREGATES;
use crate::deps::{last_ident, main_table_of, norm, parse_one};
use crate::model::{model_of_table, ModelInfo};

/// A read that may be cached automatically: its op and its model's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Read {
    /// One op of [`Ops`].
    pub(crate) op: Ops,
    /// The table of the model whose profile decides.
    pub(crate) table: Arc<str>,
}

/// What `sql` reads; `None` for statements that are not plain reads of a model.
pub(crate) fn infer(sql: &str, dialect: Dialect) -> Option<Read> {
    let query = parse_one(sql, dialect).ok()?;
    // A locking read must reach the database to take its locks.
    if !query.locks.is_empty() || query.for_clause.is_some() {
        return None;
    }
    let model = model_of_table(&table_about(&query)?)?;
    let op = match &*query.body {
        SetExpr::Select(select) => op_of(select, model),
        _ => Ops::FETCH,
    };
    Some(Read {
        op,
        table: model.table.into(),
    })
}

/// The table a query is about: its main table, or its EXISTS subquery's.
fn table_about(query: &Query) -> Option<String> {
    match exists_subquery(query) {
        Some(subquery) => main_table_of(subquery),
        None => main_table_of(query),
    }
}

/// The subquery of `SELECT EXISTS (subquery)`, Diesel's `select(exists(..))`.
fn exists_subquery(query: &Query) -> Option<&Query> {
    let SetExpr::Select(select) = &*query.body else {
        return None;
    };
    match projection(select)?.as_slice() {
        [Expr::Exists {
            subquery,
            negated: false,
        }] if select.from.is_empty() => Some(subquery),
        _ => None,
    }
}

fn op_of(select: &Select, model: &ModelInfo) -> Ops {
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    let exprs = projection(select).unwrap_or_default();
    let aggregates = !grouped && !exprs.is_empty() && exprs.iter().all(|e| aggregate(e).is_some());
    match exprs.as_slice() {
        [Expr::Exists { negated: false, .. }] if select.from.is_empty() => Ops::EXISTS,
        [e] if aggregates && aggregate(e) == Some("count".into()) => Ops::COUNT,
        _ if aggregates => Ops::AGGREGATE,
        _ if is_get(select, model) => Ops::GET,
        _ => Ops::FETCH,
    }
}

/// The selected expressions; `None` when there is a wildcard.
fn projection(select: &Select) -> Option<Vec<&Expr>> {
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
            _ => None,
        })
        .collect()
}

/// The lower-case name of an aggregate call (not a window function).
fn aggregate(e: &Expr) -> Option<String> {
    let Expr::Function(f) = e else {
        return None;
    };
    let name = last_ident(&f.name)?;
    (f.over.is_none() && AGGREGATES.contains(&name.as_str())).then_some(name)
}

/// One table, no join, and every primary-key column pinned to a value by a
/// top-level conjunct: at most one row.
fn is_get(select: &Select, model: &ModelInfo) -> bool {
    let [from] = select.from.as_slice() else {
        return false;
    };
    let Some(selection) = &select.selection else {
        return false;
    };
    let mut terms = Vec::new();
    conjuncts(selection, &mut terms);
    let pinned = |pk: &&str| terms.iter().any(|t| pins(t, pk));
    from.joins.is_empty() && model.primary_key.iter().all(pinned)
}

/// The terms of a chain of ANDs, parentheses removed.
fn conjuncts<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::Nested(inner) => conjuncts(inner, out),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        _ => out.push(e),
    }
}

/// `column = value` (either way round) for the column named `column`.
fn pins(e: &Expr, column: &str) -> bool {
    let Expr::BinaryOp {
        left,
        op: BinaryOperator::Eq,
        right,
    } = e
    else {
        return false;
    };
    let is_value = |e: &Expr| matches!(e, Expr::Value(_));
    (names(left, column) && is_value(right)) || (names(right, column) && is_value(left))
}

fn names(e: &Expr, column: &str) -> bool {
    match e {
        Expr::Identifier(id) => norm(id) == column,
        Expr::CompoundIdentifier(parts) => parts.last().is_some_and(|id| norm(id) == column),
        Expr::Nested(inner) => names(inner, column),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model registered for these tests only.
    static WIDGETS: ModelInfo = ModelInfo {
        label: "infer.Widget",
        table: "infer_widgets",
        primary_key: &["id"],
        columns: &["id", "kind"],
        equality: &[],
        sql_types: &[],
        profile: None,
    };
    inventory::submit!(&WIDGETS);

    fn op(sql: &str) -> Option<Ops> {
        infer(sql, Dialect::Postgres).map(|r| r.op)
    }

    const COLS: &str = r#""infer_widgets"."id", "infer_widgets"."kind""#;

    #[test]
    fn diesel_shapes() {
        let t = r#""infer_widgets""#;
        let find = format!(r#"SELECT {COLS} FROM {t} WHERE ({t}."id" = $1)"#);
        assert_eq!(op(&find), Some(Ops::GET));
        assert_eq!(op(&format!("{find} LIMIT $2")), Some(Ops::GET));
        let both =
            format!(r#"SELECT {COLS} FROM {t} WHERE (({t}."kind" = $1) AND ({t}."id" = $2))"#);
        assert_eq!(op(&both), Some(Ops::GET));
        let by_kind = format!(r#"SELECT {COLS} FROM {t} WHERE ({t}."kind" = $1) LIMIT $2"#);
        assert_eq!(op(&by_kind), Some(Ops::FETCH));
        let count = format!(r#"SELECT COUNT(*) FROM {t} WHERE ({t}."kind" = $1)"#);
        assert_eq!(op(&count), Some(Ops::COUNT));
        assert_eq!(
            op(&format!(r#"SELECT COUNT({t}."kind") FROM {t}"#)),
            Some(Ops::COUNT)
        );
        let exists = format!(r#"SELECT EXISTS (SELECT {COLS} FROM {t} WHERE ({t}."id" = $1))"#);
        assert_eq!(op(&exists), Some(Ops::EXISTS));
        assert_eq!(
            op(&format!(r#"SELECT MAX({t}."id") FROM {t}"#)),
            Some(Ops::AGGREGATE)
        );
        let two = format!(r#"SELECT COUNT(*), MIN({t}."id") FROM {t}"#);
        assert_eq!(op(&two), Some(Ops::AGGREGATE));
    }

    #[test]
    fn grouped_joined_or_pk_range_are_fetches() {
        let t = r#""infer_widgets""#;
        let grouped = format!(r#"SELECT {t}."kind", COUNT(*) FROM {t} GROUP BY {t}."kind""#);
        assert_eq!(op(&grouped), Some(Ops::FETCH));
        let counted_groups = format!(r#"SELECT COUNT(*) FROM {t} GROUP BY {t}."kind""#);
        assert_eq!(op(&counted_groups), Some(Ops::FETCH));
        let range = format!(r#"SELECT {COLS} FROM {t} WHERE ({t}."id" > $1)"#);
        assert_eq!(op(&range), Some(Ops::FETCH));
        let either =
            format!(r#"SELECT {COLS} FROM {t} WHERE (({t}."id" = $1) OR ({t}."id" = $2))"#);
        assert_eq!(op(&either), Some(Ops::FETCH));
        let union = format!(r#"SELECT {COLS} FROM {t} UNION SELECT {COLS} FROM {t}"#);
        assert_eq!(op(&union), Some(Ops::FETCH));
    }

    #[test]
    fn not_automatic() {
        let t = r#""infer_widgets""#;
        let locked = format!(r#"SELECT {COLS} FROM {t} WHERE ({t}."id" = $1) FOR UPDATE"#);
        assert_eq!(op(&locked), None);
        assert_eq!(op(r#"SELECT "x"."id" FROM "no_model_here" AS "x""#), None);
        assert_eq!(op("SELECT 1"), None);
        assert_eq!(op(r#"UPDATE "infer_widgets" SET "kind" = $1"#), None);
        assert_eq!(op("not sql at all"), None);
    }
}
