//! WHERE clauses → disjunctive normal form.
//!
//! Parsing turns a condition into a negation-free [`Formula`] of [`Atom`]s: NOT is
//! pushed down to the atoms with De Morgan (valid in SQL's three-valued logic), and a
//! negated atom becomes either an exact positive atom (`NOT (c IS NOT NULL)` is
//! `c IS NULL`) or `True`. Anything not understood is `True` too. Because the formula
//! is then monotone, replacing an atom with `True` can only let more rows match, so
//! every approximation widens and none narrows. (This is why unknowns need no
//! placeholder here: `NOT (id IN (..) AND id IS NOT NULL)` becomes
//! `True OR id IS NULL`, i.e. the whole table.)
//!
//! [`project`] then keeps, for one relation of the FROM clause, only the atoms on its
//! own columns, after propagating `a.x = b.y` equalities, and [`eval`] multiplies the
//! result out against one call's binds, capping the size while it multiplies.

use std::sync::Arc;

use sqlparser::ast::{BinaryOperator, Expr, InTarget, UnaryOperator, Value as SqlValue};

use super::{Conj, Policy, TableDeps};
use crate::value::{pg_equality, Equality, Value};

/// A column of one relation (one FROM item) of the query: `(relation id, column id)`.
pub(super) type ColKey = (u32, u32);

/// Where the value of an equality comes from.
#[derive(Clone, Debug)]
pub(super) enum Src {
    /// `col = $n`: a NULL bind makes the term false (`= NULL` is never true).
    Bind(u32),
    /// `col IS NOT DISTINCT FROM $n`: a NULL bind means `col IS NULL`.
    BindOrNull(u32),
    /// `col IN ($a, $b, ..)`: one disjunct per value.
    List(Box<[u32]>),
    /// PostgreSQL `col = ANY($n)` with a binary array bind: one disjunct per element.
    Array(u32),
    /// `col IS NULL`.
    Null,
}

/// A condition the analysis understands, before projection onto one relation.
#[derive(Clone, Debug)]
pub(super) enum Atom {
    /// The column equals the value(s) of the source.
    Is(ColKey, Src),
    /// Two columns are equal (a join condition): used only to propagate values.
    Same(ColKey, ColKey),
}

/// After projection: the columns (of one relation) that all equal the source's value.
#[derive(Clone, Debug)]
pub(super) struct Leaf {
    pub(super) cols: Box<[u32]>,
    pub(super) src: Src,
}

/// A negation-free boolean formula. `True` is "unknown, may hold for any row".
#[derive(Clone, Debug)]
pub(super) enum Formula<L> {
    True,
    False,
    Leaf(L),
    And(Vec<Formula<L>>),
    Or(Vec<Formula<L>>),
}

impl<L> Formula<L> {
    /// Conjunction, flattened, with constants folded.
    pub(super) fn all(items: impl IntoIterator<Item = Self>) -> Self {
        let mut out = Vec::new();
        for item in items {
            match item {
                Formula::True => {}
                Formula::False => return Formula::False,
                Formula::And(inner) => out.extend(inner),
                other => out.push(other),
            }
        }
        Self::wrap(out, Formula::True, Formula::And)
    }

    /// Disjunction, flattened, with constants folded.
    pub(super) fn any(items: impl IntoIterator<Item = Self>) -> Self {
        let mut out = Vec::new();
        for item in items {
            match item {
                Formula::False => {}
                Formula::True => return Formula::True,
                Formula::Or(inner) => out.extend(inner),
                other => out.push(other),
            }
        }
        Self::wrap(out, Formula::False, Formula::Or)
    }

    fn wrap(mut out: Vec<Self>, empty: Self, many: fn(Vec<Self>) -> Self) -> Self {
        match out.len() {
            0 => empty,
            1 => out.pop().unwrap_or(empty),
            _ => many(out),
        }
    }

    /// A constant: `True` or `False`.
    pub(super) fn constant(value: bool) -> Self {
        if value {
            Formula::True
        } else {
            Formula::False
        }
    }

    /// The same formula with each leaf replaced (and constants folded again).
    fn map<M>(&self, f: &mut impl FnMut(&L) -> Formula<M>) -> Formula<M> {
        match self {
            Formula::True => Formula::True,
            Formula::False => Formula::False,
            Formula::Leaf(l) => f(l),
            Formula::And(v) => Formula::all(v.iter().map(|x| x.map(f))),
            Formula::Or(v) => Formula::any(v.iter().map(|x| x.map(f))),
        }
    }

    /// Calls `f` on every leaf, mutably.
    pub(super) fn for_each_leaf(&mut self, f: &mut impl FnMut(&mut L)) {
        match self {
            Formula::Leaf(l) => f(l),
            Formula::And(v) | Formula::Or(v) => v.iter_mut().for_each(|x| x.for_each_leaf(f)),
            Formula::True | Formula::False => {}
        }
    }
}

/// Names the column an expression refers to, in the SELECT block being analysed.
pub(super) trait Resolve {
    /// The relation and column `e` names, when certain (else the term is unknown).
    fn column(&mut self, e: &Expr) -> Option<ColKey>;
}

/// A WHERE or ON condition as a negation-free formula; `neg`: the condition sits
/// under an odd number of NOTs, pushed down with De Morgan.
pub(super) fn condition(e: &Expr, neg: bool, r: &mut impl Resolve) -> Formula<Atom> {
    use Expr as E;
    match e {
        E::Nested(inner) => condition(inner, neg, r),
        E::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => condition(expr, !neg, r),
        E::BinaryOp {
            op: op @ (BinaryOperator::And | BinaryOperator::Or),
            ..
        } => {
            let parts: Vec<_> = chain(e, op)
                .into_iter()
                .map(|x| condition(x, neg, r))
                .collect();
            match (*op == BinaryOperator::And) != neg {
                true => Formula::all(parts),
                false => Formula::any(parts),
            }
        }
        E::BinaryOp { left, op, right } => compare(left, op, right, neg, r),
        E::IsNull(x) if !neg => atom(x, Src::Null, r),
        E::IsNotNull(x) if neg => atom(x, Src::Null, r),
        E::IsNotDistinctFrom(x, y) if !neg => col_bind(x, y, Src::BindOrNull, r),
        E::IsDistinctFrom(x, y) if neg => col_bind(x, y, Src::BindOrNull, r),
        E::In {
            expr,
            target: InTarget::List(items),
            negated,
            ..
        } if *negated == neg => in_list(expr, items, r),
        E::AnyOp {
            left,
            compare_op: BinaryOperator::Eq,
            right,
            ..
        } if !neg => col_bind(left, right, Src::Array, r),
        E::Value(v) => match v.value {
            SqlValue::Boolean(b) => Formula::constant(b != neg),
            _ => Formula::True,
        },
        _ => Formula::True,
    }
}

/// `=` and `<>` between a column and a bind or another column (`NOT (a <> b)` is
/// exactly `a = b`, also with NULLs); literal-only comparisons (Diesel renders an
/// empty `IN` as `1=0`) fold to constants.
fn compare(
    l: &Expr,
    op: &BinaryOperator,
    r: &Expr,
    neg: bool,
    res: &mut impl Resolve,
) -> Formula<Atom> {
    if let (Some(a), Some(b)) = (int_literal(l), int_literal(r)) {
        return fold(op, a, b).map_or(Formula::True, |v| Formula::constant(v != neg));
    }
    if !matches!(
        (op, neg),
        (BinaryOperator::Eq, false) | (BinaryOperator::NotEq, true)
    ) {
        return Formula::True;
    }
    match (res.column(l), res.column(r)) {
        (Some(a), Some(b)) => Formula::Leaf(Atom::Same(a, b)),
        _ => col_bind(l, r, Src::Bind, res),
    }
}

/// `column op $n` in either order; anything else (a literal, an expression) is unknown.
fn col_bind(l: &Expr, r: &Expr, src: fn(u32) -> Src, res: &mut impl Resolve) -> Formula<Atom> {
    let pair = match (bind(l), bind(r)) {
        (None, Some(n)) => res.column(l).map(|c| (c, n)),
        (Some(n), None) => res.column(r).map(|c| (c, n)),
        _ => None,
    };
    pair.map_or(Formula::True, |(c, n)| Formula::Leaf(Atom::Is(c, src(n))))
}

fn atom(column: &Expr, src: Src, res: &mut impl Resolve) -> Formula<Atom> {
    res.column(column)
        .map_or(Formula::True, |c| Formula::Leaf(Atom::Is(c, src)))
}

/// `col IN ($1, $2)`; an empty list (SQLite accepts `IN ()`) is false.
fn in_list(column: &Expr, items: &[Expr], res: &mut impl Resolve) -> Formula<Atom> {
    let Some(c) = res.column(column) else {
        return Formula::True;
    };
    if items.is_empty() {
        return Formula::False;
    }
    let binds: Option<Box<[u32]>> = items.iter().map(bind).collect();
    binds.map_or(Formula::True, |b| Formula::Leaf(Atom::Is(c, Src::List(b))))
}

/// The operands of a left-deep chain of `op` (through parentheses), in order. A
/// loop, not recursion: Diesel nests every `.filter()` one level deeper.
fn chain<'e>(mut e: &'e Expr, op: &BinaryOperator) -> Vec<&'e Expr> {
    let mut parts = Vec::new();
    loop {
        match e {
            Expr::BinaryOp { left, op: o, right } if o == op => {
                parts.push(&**right);
                e = left;
            }
            Expr::Nested(inner) if matches!(&**inner, Expr::BinaryOp { op: o, .. } if o == op) => {
                e = inner
            }
            _ => break,
        }
    }
    parts.push(e);
    parts.reverse();
    parts
}

/// `$n` → bind index n - 1.
fn bind(e: &Expr) -> Option<u32> {
    match e {
        Expr::Nested(inner) => bind(inner),
        Expr::Value(v) => match &v.value {
            SqlValue::Placeholder(p) => p.strip_prefix('$')?.parse::<u32>().ok()?.checked_sub(1),
            _ => None,
        },
        _ => None,
    }
}

fn int_literal(e: &Expr) -> Option<i64> {
    match e {
        Expr::Nested(inner) => int_literal(inner),
        Expr::Value(v) => match &v.value {
            SqlValue::Number(n, false) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

fn fold(op: &BinaryOperator, a: i64, b: i64) -> Option<bool> {
    use BinaryOperator as B;
    Some(match op {
        B::Eq => a == b,
        B::NotEq => a != b,
        B::Lt => a < b,
        B::LtEq => a <= b,
        B::Gt => a > b,
        B::GtEq => a >= b,
        _ => return None,
    })
}

/// Keeps the part of `formula` that constrains relation `rel`.
///
/// Column equalities among the top-level conjuncts (join conditions, `a.x = b.y` in
/// WHERE) hold for every row the query reads, so a value known for one column of a
/// class is known for all of them: `categories.id = $1` with
/// `articles.category_id = categories.id` yields `articles.category_id = $1`. An
/// equality under an OR does not hold for every row and is ignored.
pub(super) fn project(formula: &Formula<Atom>, rel: u32) -> Formula<Leaf> {
    let classes = Classes::of(formula);
    formula.map(&mut |atom| match atom {
        Atom::Is(key, src) => {
            let mut cols: Vec<u32> = classes
                .members(*key)
                .filter(|k| k.0 == rel)
                .map(|k| k.1)
                .collect();
            cols.sort_unstable();
            cols.dedup();
            match cols.is_empty() {
                true => Formula::True,
                false => Formula::Leaf(Leaf {
                    cols: cols.into(),
                    src: src.clone(),
                }),
            }
        }
        Atom::Same(..) => Formula::True,
    })
}

/// The relations a formula's terms name.
pub(super) fn rels_of(formula: &Formula<Atom>) -> Vec<u32> {
    let mut rels = Vec::new();
    rels_into(formula, &mut rels);
    rels
}

fn rels_into(formula: &Formula<Atom>, rels: &mut Vec<u32>) {
    match formula {
        Formula::Leaf(Atom::Is(key, _)) => rels.push(key.0),
        Formula::Leaf(Atom::Same(a, b)) => rels.extend([a.0, b.0]),
        Formula::And(items) | Formula::Or(items) => items.iter().for_each(|f| rels_into(f, rels)),
        Formula::True | Formula::False => {}
    }
}

/// The top-level conjuncts of a formula.
pub(super) fn conjuncts(formula: &Formula<Atom>) -> &[Formula<Atom>] {
    match formula {
        Formula::And(items) => items,
        other => std::slice::from_ref(other),
    }
}

/// Relations that top-level conjuncts of `parts` (which are AND-ed) reject when
/// NULL: `col = $n`, `col IN (..)`, `col = ANY($n)` and `a.x = b.y` are never true
/// on a NULL column.
pub(super) fn null_rejected(parts: &[Formula<Atom>]) -> Vec<u32> {
    let mut rels = Vec::new();
    let mut visit = |f: &Formula<Atom>| match f {
        Formula::Leaf(Atom::Is(key, Src::Bind(_) | Src::List(_) | Src::Array(_))) => {
            rels.push(key.0)
        }
        Formula::Leaf(Atom::Same(a, b)) => rels.extend([a.0, b.0]),
        _ => {}
    };
    for part in parts {
        match part {
            Formula::And(items) => items.iter().for_each(&mut visit),
            other => visit(other),
        }
    }
    rels
}

/// Equivalence classes of columns under the top-level column equalities.
struct Classes(Vec<Vec<ColKey>>);

impl Classes {
    fn of(formula: &Formula<Atom>) -> Self {
        let mut classes = Classes(Vec::new());
        let top: &[Formula<Atom>] = match formula {
            Formula::And(v) => v,
            other => std::slice::from_ref(other),
        };
        for item in top {
            if let Formula::Leaf(Atom::Same(a, b)) = item {
                classes.join(*a, *b);
            }
        }
        classes
    }

    fn join(&mut self, a: ColKey, b: ColKey) {
        let ia = self.index(a);
        let ib = self.index(b);
        if ia != ib {
            let moved = std::mem::take(&mut self.0[ib.max(ia)]);
            self.0[ib.min(ia)].extend(moved);
            self.0.swap_remove(ib.max(ia));
        }
    }

    /// The class holding `key`, created as a singleton if new.
    fn index(&mut self, key: ColKey) -> usize {
        if let Some(i) = self.0.iter().position(|c| c.contains(&key)) {
            return i;
        }
        self.0.push(vec![key]);
        self.0.len() - 1
    }

    fn members(&self, key: ColKey) -> impl Iterator<Item = ColKey> + '_ {
        let class = self.0.iter().find(|c| c.contains(&key));
        let single = class.is_none().then_some(key);
        class.into_iter().flatten().copied().chain(single)
    }
}

/// `col = NULL` in the sense of `col IS NULL`: a term matching rows whose value is
/// NULL (`bytes == None`). It has no bind, hence type tag 0.
static NULL: Value = Value {
    ty: 0,
    equality: Equality::Exact,
    bytes: None,
};

/// A conjunction during evaluation: `(column id, value)` sorted by column id.
type Terms<'v> = Vec<(u32, &'v Value)>;

/// A DNF during evaluation. `[]` is false; a list holding `[]` is true.
type Dnf<'v> = Vec<Terms<'v>>;

/// The DNF grew past `max_conjunctions`: the table widens to [`TableDeps::Any`].
pub(super) struct Overflow;

/// Everything [`eval`] needs besides the formula.
pub(super) struct Ctx<'v> {
    pub(super) binds: &'v [Value],
    /// `(bind index, elements)` of every `= ANY($n)` bind; `None`: not granular.
    pub(super) arrays: &'v [(u32, Option<Vec<Value>>)],
    pub(super) policy: &'v Policy<'v>,
    pub(super) table: &'v str,
    pub(super) columns: &'v [Arc<str>],
}

/// Multiplies a projected formula out into a DNF over `ctx`'s binds.
pub(super) fn eval<'v>(f: &Formula<Leaf>, ctx: &Ctx<'v>) -> Result<Dnf<'v>, Overflow> {
    match f {
        Formula::True => Ok(vec![Vec::new()]),
        Formula::False => Ok(Vec::new()),
        Formula::Leaf(leaf) => Ok(eval_leaf(leaf, ctx)),
        Formula::And(items) => items.iter().try_fold(vec![Vec::new()], |acc, item| {
            and(&acc, &eval(item, ctx)?, ctx.policy.max_conjunctions)
        }),
        Formula::Or(items) => items.iter().try_fold(Vec::new(), |acc, item| {
            or(acc, eval(item, ctx)?, ctx.policy.max_conjunctions)
        }),
    }
}

/// The product of two DNFs, stopping as soon as it holds more than `cap` conjunctions.
fn and<'v>(a: &Dnf<'v>, b: &Dnf<'v>, cap: usize) -> Result<Dnf<'v>, Overflow> {
    let mut out: Dnf<'v> = Vec::new();
    for x in a {
        for y in b {
            if let Some(m) = merge(x, y) {
                push_unique(&mut out, m, cap)?;
            }
        }
    }
    Ok(out)
}

/// The union of two DNFs; a true side absorbs the other.
pub(super) fn or<'v>(mut a: Dnf<'v>, b: Dnf<'v>, cap: usize) -> Result<Dnf<'v>, Overflow> {
    if is_true(&a) || is_true(&b) {
        return Ok(vec![Vec::new()]);
    }
    for conj in b {
        push_unique(&mut a, conj, cap)?;
    }
    Ok(a)
}

fn is_true(dnf: &Dnf<'_>) -> bool {
    dnf.iter().any(Vec::is_empty)
}

fn push_unique<'v>(out: &mut Dnf<'v>, conj: Terms<'v>, cap: usize) -> Result<(), Overflow> {
    if !out.contains(&conj) {
        if out.len() >= cap {
            return Err(Overflow);
        }
        out.push(conj);
    }
    Ok(())
}

/// The conjunction of two sorted term lists; `None` when they contradict.
fn merge<'v>(a: &Terms<'v>, b: &Terms<'v>) -> Option<Terms<'v>> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        match x.0.cmp(&y.0) {
            std::cmp::Ordering::Less => {
                out.push(x);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(y);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                if x.1 == y.1 {
                    out.push(x);
                } else if contradict(x.1, y.1) {
                    return None;
                }
                (i, j) = (i + 1, j + 1);
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    Some(out)
}

/// Whether one column cannot equal both values. NULL differs from every value. Two
/// values of different type tags may still be equal in SQL (an int4 bind against an
/// int8 one in hand-written SQL): then both terms are dropped instead, which widens.
fn contradict(x: &Value, y: &Value) -> bool {
    x.is_null() || y.is_null() || x.ty == y.ty
}

/// A leaf as a DNF: one conjunction per value, each setting all the leaf's columns.
fn eval_leaf<'v>(leaf: &Leaf, ctx: &Ctx<'v>) -> Dnf<'v> {
    let Some(values) = leaf_values(&leaf.src, ctx) else {
        return vec![Vec::new()];
    };
    let mut out: Dnf<'v> = Vec::with_capacity(values.len());
    for value in values {
        let terms: Terms<'v> = leaf
            .cols
            .iter()
            .filter(|c| exact(ctx, **c, value))
            .map(|c| (*c, value))
            .collect();
        if terms.is_empty() {
            return vec![Vec::new()];
        }
        if !out.contains(&terms) {
            out.push(terms);
        }
    }
    out
}

fn exact(ctx: &Ctx<'_>, col: u32, value: &Value) -> bool {
    let column = ctx.columns.get(col as usize).map_or("", |c| &**c);
    (ctx.policy.column_is_exact)(ctx.table, column, value)
}

/// The values a leaf's column may take; `None`: unknown (the leaf is true). A value
/// no row can equal (a NULL bind in `= $n`, `IN (..)` or an array) is left out.
fn leaf_values<'v>(src: &Src, ctx: &Ctx<'v>) -> Option<Vec<&'v Value>> {
    let max = ctx.policy.max_in_values;
    match src {
        Src::Null => Some(vec![&NULL]),
        Src::Bind(n) => Some(non_null(ctx.binds.get(*n as usize)?)),
        Src::BindOrNull(n) => Some(vec![ctx.binds.get(*n as usize)?]),
        Src::List(ns) if ns.len() > max => None,
        Src::List(ns) => {
            let values: Option<Vec<&Value>> =
                ns.iter().map(|n| ctx.binds.get(*n as usize)).collect();
            Some(values?.into_iter().filter(|v| !v.is_null()).collect())
        }
        Src::Array(n) => {
            let (_, elements) = ctx.arrays.iter().find(|(bind, _)| bind == n)?;
            Some(elements.as_ref()?.iter().filter(|v| !v.is_null()).collect())
        }
    }
}

fn non_null(value: &Value) -> Vec<&Value> {
    match value.is_null() {
        true => Vec::new(),
        false => vec![value],
    }
}

/// Turns a table's final DNF into its canonical [`TableDeps`].
pub(super) fn finish(dnf: Result<Dnf<'_>, Overflow>, columns: &[Arc<str>]) -> TableDeps {
    let Ok(dnf) = dnf else {
        return TableDeps::Any;
    };
    if is_true(&dnf) {
        return TableDeps::Any;
    }
    let mut conjs: Vec<Conj> = dnf
        .into_iter()
        .map(|terms| to_conj(terms, columns))
        .collect();
    conjs.sort_unstable();
    conjs.dedup();
    drop_subsumed(&mut conjs);
    TableDeps::Conjs(conjs)
}

/// Column ids are assigned in name order, so the terms stay sorted by column.
fn to_conj(terms: Terms<'_>, columns: &[Arc<str>]) -> Conj {
    let name = |c: u32| {
        columns
            .get(c as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    };
    Conj(
        terms
            .into_iter()
            .map(|(c, v)| (name(c), v.clone()))
            .collect(),
    )
}

/// Drops a conjunction when a smaller one already covers it: every row matching
/// `a & b` matches `a`, so invalidating `a` is enough.
fn drop_subsumed(conjs: &mut Vec<Conj>) {
    let covered = |c: &Conj, all: &[Conj]| {
        all.iter()
            .any(|o| o.0.len() < c.0.len() && o.0.iter().all(|t| c.0.contains(t)))
    };
    let keep: Vec<bool> = conjs.iter().map(|c| !covered(c, conjs)).collect();
    let mut flags = keep.into_iter();
    conjs.retain(|_| flags.next().unwrap_or(true));
}

/// Elements of a PostgreSQL binary array (`array_send` format), or `None` when it is
/// not a one-dimensional array of at most `max` elements.
///
/// Layout: i32 ndim, i32 has-null flag, u32 element OID, per dimension i32 length and
/// i32 lower bound, then per element an i32 byte length (-1: NULL) and the bytes.
pub(super) fn decode_array(bytes: &[u8], max: usize) -> Option<Vec<Value>> {
    let mut rest = bytes;
    let ndim = read_i32(&mut rest)?;
    let _has_null = read_i32(&mut rest)?;
    let oid = read_i32(&mut rest)? as u32;
    let len = match ndim {
        0 => 0,
        1 => usize::try_from(read_i32(&mut rest)?)
            .ok()
            .filter(|n| *n <= max)?,
        _ => return None,
    };
    if ndim == 1 {
        read_i32(&mut rest)?;
    }
    let elements = (0..len)
        .map(|_| read_element(&mut rest, oid))
        .collect::<Option<Vec<_>>>()?;
    rest.is_empty().then_some(elements)
}

fn read_element(rest: &mut &[u8], oid: u32) -> Option<Value> {
    let len = read_i32(rest)?;
    let bytes = match len {
        -1 => None,
        n => {
            let (head, tail) = rest.split_at_checked(usize::try_from(n).ok()?)?;
            *rest = tail;
            Some(head.into())
        }
    };
    Some(Value {
        ty: oid,
        equality: pg_equality(oid),
        bytes,
    })
}

fn read_i32(rest: &mut &[u8]) -> Option<i32> {
    let (head, tail) = rest.split_first_chunk::<4>()?;
    *rest = tail;
    Some(i32::from_be_bytes(*head))
}
