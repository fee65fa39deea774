//! SQL text → [`Template`]: the walk over a parsed query (scopes, FROM items and
//! joins), which tables a query reads and, per FROM item, which conditions narrow
//! the rows it reads. `ast.rs` turns SQL into the AST; [`Template::parse`] walks it
//! and `Builder::finish` packs the result into a [`Template`].
//!
//! The walk covers SELECT statements: set operations, CTEs, derived tables, joins and
//! subqueries anywhere in expressions. Every SELECT block is analysed on its own: a
//! block's result depends only on the rows of its FROM tables that satisfy its own
//! WHERE (and inner-join ON) conditions, so tables inside subqueries, EXISTS, UNION
//! branches, CTEs and derived tables get the conditions of their own block, and
//! everything a block does not understand widens. Conditions that mention another
//! block's columns (correlated subqueries) are unknown there, which only widens.

use std::collections::HashMap;
use std::sync::Arc;

use sqlparser::ast::{
    Cte, Distinct, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    InTarget, Join, JoinConstraint, JoinOperator, LimitClause, OrderByKind, Query, Select,
    SelectItem, SetExpr, TableAlias, TableFactor, TableWithJoins, With,
};

use super::ast::{last_ident, main_table_of, norm, parse_counted, unsupported, MAX_DEPTH};
use super::dnf::{self, Atom, ColKey, Formula, Leaf, Src};
use super::template::Template;
use crate::backend::Dialect;
use crate::error::Result;

// The entry point lives with the walk it drives rather than beside the struct, so
// that `template.rs` needs nothing from the walk (an inherent impl may sit in any
// module of the crate).
impl Template {
    /// Parses `sql` as rendered by Diesel for `dialect`.
    ///
    /// Only queries (SELECT, possibly with set operations and CTEs) are supported;
    /// anything else, and SQL the analysis cannot cover, is an
    /// [`ErrorKind::Sql`](crate::ErrorKind::Sql) error.
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
}

/// Names ↔ dense ids, in first-seen order until [`Interner::sorted`].
#[derive(Default)]
struct Interner {
    names: Vec<String>,
    ids: HashMap<String, usize>,
}

impl Interner {
    fn intern(&mut self, name: &str) -> usize {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), self.names.len() - 1);
        self.names.len() - 1
    }

    /// The names sorted, and for each old id its new one.
    fn sorted(self) -> (Vec<Arc<str>>, Vec<usize>) {
        let mut order: Vec<usize> = (0..self.names.len()).collect();
        order.sort_by(|a, b| self.names[*a].cmp(&self.names[*b]));
        let mut new_id = vec![0; order.len()];
        for (new, old) in order.iter().enumerate() {
            new_id[*old] = new;
        }
        let names = order
            .iter()
            .map(|i| Arc::from(self.names[*i].as_str()))
            .collect();
        (names, new_id)
    }
}

/// How the conditions of a SELECT block apply to one of its FROM items.
enum State<'q> {
    /// WHERE and inner-join ON conditions hold for every row read from it.
    Global,
    /// The nullable side of a LEFT JOIN: only its own ON conditions (see `join`).
    Own(Vec<&'q Expr>),
    /// Nothing safely narrows it, for this reason.
    Any(&'static str),
}

/// One FROM item of a SELECT block.
struct Rel<'q> {
    /// The name columns are qualified with: the alias, else the table name.
    name: String,
    id: u32,
    /// Interned table name; `None` for derived tables, CTE references, functions.
    table: Option<usize>,
    state: State<'q>,
}

/// The FROM items of one SELECT block, for resolving column references.
struct Scope<'q> {
    rels: Vec<Rel<'q>>,
    /// Inside a subquery an unqualified column may belong to an outer block.
    nested: bool,
    /// Output aliases: SQLite lets WHERE use them; they are not columns.
    aliases: Vec<String>,
}

impl Scope<'_> {
    /// The relation an unqualified column belongs to, when that is certain.
    fn only_rel(&self, column: &str) -> Option<u32> {
        match self.rels.as_slice() {
            [rel] if !self.nested && !self.aliases.iter().any(|a| a == column) => Some(rel.id),
            _ => None,
        }
    }

    fn find(&self, qualifier: &str) -> Option<u32> {
        self.rels.iter().find(|r| r.name == qualifier).map(|r| r.id)
    }
}

fn set_any(rels: &mut [Rel<'_>], why: &'static str) {
    rels.iter_mut().for_each(|r| r.state = State::Any(why));
}

/// Why a table of a block may not be narrowed, for `explain`.
const NO_TERM: &str =
    "no `column = value` term (=, IN, = ANY, IS NULL) of its WHERE or inner-join ON narrows it";
const NULLABLE: &str = "the nullable side of a LEFT JOIN: only its ON terms, and WHERE terms on the rows ON joins it to, narrow it, and none gives it a value";

/// The kinds of join whose effect on narrowing differs.
enum JoinKind {
    Inner,
    Left,
    Right,
    /// FULL and dialect-specific joins: nothing on either side narrows.
    Other,
}

fn join_kind(op: &JoinOperator) -> (JoinKind, Option<&JoinConstraint>) {
    use JoinOperator as J;
    match op {
        J::Join(c) | J::Inner(c) | J::CrossJoin(c) | J::StraightJoin(c) => {
            (JoinKind::Inner, Some(c))
        }
        J::Left(c) | J::LeftOuter(c) => (JoinKind::Left, Some(c)),
        J::Right(c) | J::RightOuter(c) => (JoinKind::Right, Some(c)),
        J::FullOuter(c) | J::Semi(c) | J::LeftSemi(c) | J::RightSemi(c) | J::Anti(c) => {
            (JoinKind::Other, Some(c))
        }
        J::LeftAnti(c) | J::RightAnti(c) | J::AsOf { constraint: c, .. } => {
            (JoinKind::Other, Some(c))
        }
        _ => (JoinKind::Other, None),
    }
}

/// Walks a parsed query, collecting tables and per-FROM-item formulas.
#[derive(Default)]
pub(super) struct Builder {
    tables: Interner,
    columns: Interner,
    occurrences: Vec<(usize, Formula<Leaf>)>,
    /// Why each occurrence may not narrow its table, for `explain`.
    notes: Vec<&'static str>,
    /// CTE names visible at the current point of the walk.
    ctes: Vec<String>,
    next_rel: u32,
    pub(super) selects: usize,
    depth: usize,
}

impl Builder {
    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        match self.depth > MAX_DEPTH {
            true => Err(unsupported("nesting too deep")),
            false => Ok(()),
        }
    }

    pub(super) fn query(&mut self, q: &Query, nested: bool) -> Result<()> {
        self.enter()?;
        let visible = self.ctes.len();
        if let Some(with) = &q.with {
            self.with(with, nested)?;
        }
        self.set_expr(&q.body, nested)?;
        if let Some(OrderByKind::Expressions(items)) = q.order_by.as_ref().map(|o| &o.kind) {
            self.scan_each(items.iter().map(|o| &o.expr))?;
        }
        self.scan_limit(q)?;
        if !q.pipe_operators.is_empty() {
            return Err(unsupported("pipe operators"));
        }
        self.ctes.truncate(visible);
        self.depth -= 1;
        Ok(())
    }

    /// CTE bodies: each is a block of its own. A CTE name hides a table of that
    /// name in later CTEs and the body (and, if RECURSIVE, in every CTE).
    fn with(&mut self, with: &With, nested: bool) -> Result<()> {
        let name = |cte: &Cte| norm(&cte.alias.name);
        if with.recursive {
            self.ctes.extend(with.cte_tables.iter().map(name));
        }
        for cte in &with.cte_tables {
            self.query(&cte.query, nested)?;
            if !with.recursive {
                self.ctes.push(name(cte));
            }
        }
        Ok(())
    }

    fn scan_limit(&mut self, q: &Query) -> Result<()> {
        match &q.limit_clause {
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                let offset = offset.as_ref().map(|o| &o.value);
                self.scan_each(limit.iter().chain(offset).chain(limit_by))?;
            }
            Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
                self.scan_each([offset, limit])?
            }
            None => {}
        }
        self.scan_each(q.fetch.as_ref().and_then(|f| f.quantity.as_ref()))
    }

    /// Set operations: a row change can alter the result only through a branch
    /// whose own conditions it meets, so each branch is analysed on its own.
    fn set_expr(&mut self, body: &SetExpr, nested: bool) -> Result<()> {
        self.enter()?;
        match body {
            SetExpr::Select(select) => self.select(select, nested)?,
            SetExpr::Query(query) => self.query(query, nested)?,
            SetExpr::SetOperation { .. } => {
                // Left-deep like expression chains: walked in a loop.
                let mut branch = body;
                while let SetExpr::SetOperation { left, right, .. } = branch {
                    self.set_expr(right, nested)?;
                    branch = left;
                }
                self.set_expr(branch, nested)?;
            }
            SetExpr::Values(values) => self.scan_each(values.rows.iter().flat_map(|r| r.iter()))?,
            SetExpr::Table(t) => self.table_anywhere(t.table_name.as_ref().map(norm)),
            _ => return Err(unsupported("a data-modifying statement inside a query")),
        }
        self.depth -= 1;
        Ok(())
    }

    /// A table read in full, outside any block's conditions (`TABLE t`, `IN t`).
    fn table_anywhere(&mut self, name: Option<String>) {
        if let Some(name) = name.filter(|n| !self.ctes.contains(n)) {
            let table = self.tables.intern(&name);
            self.occurrences.push((table, Formula::True));
            self.notes.push("read whole (`TABLE t`, `IN t`)");
        }
    }

    fn select(&mut self, select: &Select, nested: bool) -> Result<()> {
        self.selects += 1;
        if !select.lateral_views.is_empty() || !select.connect_by.is_empty() {
            return Err(unsupported("LATERAL VIEW or CONNECT BY"));
        }
        let aliases = select.projection.iter().filter_map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(norm(alias)),
            _ => None,
        });
        let mut scope = Scope {
            rels: Vec::new(),
            nested,
            aliases: aliases.collect(),
        };
        let mut on = Vec::new();
        for item in &select.from {
            self.joined(item, &mut scope, &mut on)?;
        }
        self.scan_select(select)?;
        self.record(&scope, select.selection.as_ref(), &on);
        Ok(())
    }

    /// Finds the subqueries in every expression of a SELECT block. Only WHERE and ON
    /// narrow; HAVING, GROUP BY, DISTINCT, the projection are merely scanned.
    fn scan_select(&mut self, s: &Select) -> Result<()> {
        let projection = s.projection.iter().filter_map(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
            SelectItem::ExprWithAliases { expr: e, .. } => Some(e),
            _ => None,
        });
        let group: &[Expr] = match &s.group_by {
            GroupByExpr::Expressions(exprs, _) => exprs,
            GroupByExpr::All(_) => &[],
        };
        let distinct: &[Expr] = match &s.distinct {
            Some(Distinct::On(exprs)) => exprs,
            _ => &[],
        };
        let clauses = [&s.selection, &s.having, &s.prewhere, &s.qualify]
            .into_iter()
            .flatten();
        let lists = group
            .iter()
            .chain(distinct)
            .chain(&s.cluster_by)
            .chain(&s.distribute_by);
        self.scan_each(
            projection
                .chain(clauses)
                .chain(lists)
                .chain(s.sort_by.iter().map(|o| &o.expr)),
        )
    }

    /// One formula per table of the block: WHERE and inner-join ON conditions for
    /// tables every row comes from, own ON conditions for nullable sides.
    ///
    /// A LEFT JOIN whose right side a top-level condition rejects when NULL (e.g.
    /// `WHERE right.x = $1`) returns no NULL-extended row: it is an inner join, and
    /// its ON condition joins the global ones.
    ///
    /// Otherwise the nullable side's rows matter only when ON joins them to a row
    /// of the other side that passes WHERE: its own ON conditions, AND the
    /// top-level conjuncts over relations every row comes from, narrow it
    /// (`categories LEFT JOIN posts ON posts.category_id = categories.id WHERE
    /// categories.id = $1` gives `posts.category_id = $1`). Conjuncts naming a
    /// nullable side (`posts.x IS NULL`, an OR across the sides) are left out.
    fn record<'q>(&mut self, scope: &Scope<'q>, selection: Option<&'q Expr>, on: &[&'q Expr]) {
        let mut global: Vec<_> = selection
            .into_iter()
            .chain(on.iter().copied())
            .map(|e| self.cond(e, scope))
            .collect();
        let rejected = dnf::null_rejected(&global);
        let inner =
            |rel: &Rel<'_>| matches!(rel.state, State::Own(_)) && rejected.contains(&rel.id);
        for rel in scope.rels.iter().filter(|r| inner(r)) {
            if let State::Own(own) = &rel.state {
                global.extend(own.iter().map(|e| self.cond(e, scope)));
            }
        }
        let global = Formula::all(global);
        // Conjuncts over relations every row of the block comes from: true of the
        // preserved row any nullable row is joined to.
        let every_row = |id: u32| {
            let rel = scope.rels.iter().find(|r| r.id == id);
            rel.is_some_and(|r| matches!(r.state, State::Global) || inner(r))
        };
        let preserved: Vec<_> = dnf::conjuncts(&global)
            .iter()
            .filter(|f| dnf::rels_of(f).into_iter().all(every_row))
            .cloned()
            .collect();
        for rel in &scope.rels {
            let Some(table) = rel.table else { continue };
            let formula = match &rel.state {
                State::Global => dnf::project(&global, rel.id),
                State::Own(_) if inner(rel) => dnf::project(&global, rel.id),
                State::Own(own) => {
                    let own = own.iter().map(|e| self.cond(e, scope));
                    let joined: Vec<_> = own.chain(preserved.iter().cloned()).collect();
                    dnf::project(&Formula::all(joined), rel.id)
                }
                State::Any(_) => Formula::True,
            };
            let why = match &rel.state {
                State::Global => NO_TERM,
                State::Own(_) if inner(rel) => NO_TERM,
                State::Own(_) => NULLABLE,
                State::Any(why) => why,
            };
            self.occurrences.push((table, formula));
            self.notes.push(why);
        }
    }

    /// A FROM item with its joins. `on` receives the ON conditions that hold for
    /// every row of the block.
    fn joined<'q>(
        &mut self,
        item: &'q TableWithJoins,
        scope: &mut Scope<'q>,
        on: &mut Vec<&'q Expr>,
    ) -> Result<()> {
        let first = scope.rels.len();
        let mut local = Vec::new();
        self.factor(&item.relation, scope, &mut local)?;
        for join in &item.joins {
            self.join(join, first, scope, &mut local)?;
        }
        on.extend(local);
        Ok(())
    }

    /// Join rules. INNER: ON acts as WHERE. LEFT: the right side's rows are read only
    /// when they meet the ON condition, so ON (and only ON: WHERE may be met by the
    /// NULL-extended row, e.g. `WHERE right.x IS NULL`) narrows the right side, if it
    /// is a single table; ON never narrows the left side, whose rows all come out.
    /// RIGHT: mirror image, kept simple: the left side widens. FULL and the rest:
    /// everything in this FROM item widens.
    fn join<'q>(
        &mut self,
        join: &'q Join,
        first: usize,
        scope: &mut Scope<'q>,
        on: &mut Vec<&'q Expr>,
    ) -> Result<()> {
        let start = scope.rels.len();
        let mut inner = Vec::new();
        self.factor(&join.relation, scope, &mut inner)?;
        let (kind, constraint) = join_kind(&join.join_operator);
        let cond = match constraint {
            Some(JoinConstraint::On(e)) => Some(e),
            _ => None,
        };
        self.scan_each(cond)?;
        if let JoinOperator::AsOf {
            match_condition, ..
        } = &join.join_operator
        {
            self.scan_expr(match_condition)?;
        }
        match kind {
            JoinKind::Inner => on.extend(inner.into_iter().chain(cond)),
            JoinKind::Left if start + 1 == scope.rels.len() && inner.is_empty() => {
                scope.rels[start].state = State::Own(cond.into_iter().collect());
            }
            JoinKind::Left => set_any(
                &mut scope.rels[start..],
                "the nullable side of a LEFT JOIN that is itself a join or a derived table",
            ),
            JoinKind::Right => {
                set_any(
                    &mut scope.rels[first..start],
                    "the nullable side of a RIGHT JOIN",
                );
                *on = inner;
            }
            JoinKind::Other => {
                set_any(
                    &mut scope.rels[first..],
                    "in a FULL (or other outer) join, whose rows all come out",
                );
                on.clear();
            }
        }
        Ok(())
    }

    fn factor<'q>(
        &mut self,
        factor: &'q TableFactor,
        scope: &mut Scope<'q>,
        on: &mut Vec<&'q Expr>,
    ) -> Result<()> {
        match factor {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let table = last_ident(name)
                    .ok_or_else(|| unsupported("a table name with a function part"))?;
                let is_cte = name.0.len() == 1 && self.ctes.contains(&table);
                let id = (!is_cte).then(|| self.tables.intern(&table));
                self.push_rel(scope, alias.as_ref(), table, id);
            }
            TableFactor::Table {
                name,
                alias,
                args: Some(args),
                ..
            } => {
                self.scan_args(&args.args)?;
                self.push_rel(
                    scope,
                    alias.as_ref(),
                    last_ident(name).unwrap_or_default(),
                    None,
                );
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                ..
            } => {
                self.query(subquery, scope.nested || *lateral)?;
                self.push_rel(scope, alias.as_ref(), String::new(), None);
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias: None,
            } => self.joined(table_with_joins, scope, on)?,
            TableFactor::NestedJoin {
                table_with_joins,
                alias: Some(alias),
            } => {
                let start = scope.rels.len();
                self.joined(table_with_joins, scope, &mut Vec::new())?;
                set_any(&mut scope.rels[start..], "inside an aliased nested join");
                self.push_rel(scope, Some(alias), String::new(), None);
            }
            _ => return self.function_factor(factor, scope),
        }
        Ok(())
    }

    /// Table functions read no table we know of; their arguments may hold subqueries.
    fn function_factor<'q>(
        &mut self,
        factor: &'q TableFactor,
        scope: &mut Scope<'q>,
    ) -> Result<()> {
        let alias = match factor {
            TableFactor::Function { args, alias, .. } => {
                self.scan_args(args)?;
                alias
            }
            TableFactor::UNNEST {
                array_exprs, alias, ..
            } => {
                self.scan_each(array_exprs)?;
                alias
            }
            TableFactor::TableFunction { expr, alias } => {
                self.scan_expr(expr)?;
                alias
            }
            _ => return Err(unsupported("this kind of FROM item")),
        };
        self.push_rel(scope, alias.as_ref(), String::new(), None);
        Ok(())
    }

    fn push_rel(
        &mut self,
        scope: &mut Scope<'_>,
        alias: Option<&TableAlias>,
        name: String,
        table: Option<usize>,
    ) {
        let name = alias.map_or(name, |a| norm(&a.name));
        scope.rels.push(Rel {
            name,
            id: self.next_rel,
            table,
            state: State::Global,
        });
        self.next_rel += 1;
    }

    fn scan_each<'q>(&mut self, exprs: impl IntoIterator<Item = &'q Expr>) -> Result<()> {
        exprs.into_iter().try_for_each(|e| self.scan_expr(e))
    }

    /// Finds the subqueries in an expression; each is a block of its own.
    fn scan_expr(&mut self, e: &Expr) -> Result<()> {
        self.enter()?;
        self.scan_inner(e)?;
        self.depth -= 1;
        Ok(())
    }

    fn scan_inner(&mut self, e: &Expr) -> Result<()> {
        use Expr as E;
        match e {
            E::Subquery(q) | E::Exists { subquery: q, .. } => self.query(q, true),
            E::In { expr, target, .. } => {
                self.scan_expr(expr)?;
                self.scan_in_target(target)
            }
            E::BinaryOp { .. } | E::Nested(_) => self.scan_chain(e),
            E::AnyOp {
                left: l, right: r, ..
            }
            | E::AllOp {
                left: l, right: r, ..
            } => self.scan_each([&**l, &**r]),
            E::IsDistinctFrom(l, r) | E::IsNotDistinctFrom(l, r) => self.scan_each([&**l, &**r]),
            E::UnaryOp { expr, .. } | E::IsNull(expr) | E::IsNotNull(expr) => self.scan_expr(expr),
            E::IsTrue(expr) | E::IsFalse(expr) | E::IsNotTrue(expr) | E::IsNotFalse(expr) => {
                self.scan_expr(expr)
            }
            E::IsUnknown(expr) | E::IsNotUnknown(expr) | E::Collate { expr, .. } => {
                self.scan_expr(expr)
            }
            E::Cast { expr, .. }
            | E::Extract { expr, .. }
            | E::Ceil { expr, .. }
            | E::Floor { expr, .. } => self.scan_expr(expr),
            E::AtTimeZone {
                timestamp,
                time_zone,
            } => self.scan_each([&**timestamp, &**time_zone]),
            E::Between {
                expr, low, high, ..
            } => self.scan_each([&**expr, &**low, &**high]),
            E::Like { expr, pattern, .. } | E::ILike { expr, pattern, .. } => {
                self.scan_each([&**expr, &**pattern])
            }
            E::SimilarTo { expr, pattern, .. } | E::RLike { expr, pattern, .. } => {
                self.scan_each([&**expr, &**pattern])
            }
            E::Function(f) => self.scan_function(f),
            E::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let whens = conditions.iter().flat_map(|w| [&w.condition, &w.result]);
                self.scan_each(
                    operand
                        .as_deref()
                        .into_iter()
                        .chain(whens)
                        .chain(else_result.as_deref()),
                )
            }
            E::Tuple(items) => self.scan_each(items),
            E::Array(array) => self.scan_each(&array.elem),
            // Leaves, and rarer forms: a subquery inside one of those is caught by
            // the SELECT count check in `Template::parse`.
            _ => Ok(()),
        }
    }

    /// A left-deep chain (`a AND b AND c ..`, or Diesel's `((a AND b) AND c)`) is
    /// walked in a loop: its length must not cost stack.
    fn scan_chain(&mut self, mut e: &Expr) -> Result<()> {
        loop {
            match e {
                Expr::BinaryOp { left, right, .. } => {
                    self.scan_expr(right)?;
                    e = left;
                }
                Expr::Nested(inner) => e = inner,
                other => return self.scan_expr(other),
            }
        }
    }

    fn scan_in_target(&mut self, target: &InTarget) -> Result<()> {
        match target {
            InTarget::List(items) => self.scan_each(items),
            InTarget::Subquery(q) => self.query(q, true),
            InTarget::Unnest(e) => self.scan_expr(e),
            InTarget::Table { name, .. } => {
                self.table_anywhere(last_ident(name));
                Ok(())
            }
        }
    }

    fn scan_function(&mut self, f: &Function) -> Result<()> {
        for args in [&f.parameters, &f.args] {
            match args {
                FunctionArguments::List(list) => self.scan_args(&list.args)?,
                FunctionArguments::Subquery(q) => self.query(q, true)?,
                FunctionArguments::None => {}
            }
        }
        self.scan_each(
            f.filter
                .as_deref()
                .into_iter()
                .chain(f.within_group.iter().map(|o| &o.expr)),
        )
    }

    fn scan_args(&mut self, args: &[FunctionArg]) -> Result<()> {
        let exprs = args.iter().filter_map(|arg| match arg {
            FunctionArg::Named { arg, .. }
            | FunctionArg::ExprNamed { arg, .. }
            | FunctionArg::Unnamed(arg) => match arg {
                FunctionArgExpr::Expr(e) => Some(e),
                _ => None,
            },
        });
        self.scan_each(exprs)
    }

    /// A condition of `scope`'s block as a formula.
    fn cond(&mut self, e: &Expr, scope: &Scope<'_>) -> Formula<Atom> {
        let mut resolver = Resolver {
            scope,
            columns: &mut self.columns,
        };
        dnf::condition(e, false, &mut resolver)
    }

    pub(super) fn finish(self, main: Option<String>) -> Template {
        let (tables, table_ids) = self.tables.sorted();
        let (columns, column_ids) = self.columns.sorted();
        let mut arrays = Vec::new();
        let mut renumber = |leaf: &mut Leaf| {
            if let Src::Array(n) = leaf.src {
                arrays.push(n);
            }
            leaf.cols
                .iter_mut()
                .for_each(|c| *c = column_ids[*c as usize] as u32);
            leaf.cols.sort_unstable();
        };
        let mut noted: Vec<_> = self
            .occurrences
            .into_iter()
            .zip(self.notes)
            .map(|((t, f), why)| (table_ids[t], f, why))
            .collect();
        for (_, formula, _) in &mut noted {
            formula.for_each_leaf(&mut renumber);
        }
        noted.sort_by_key(|(t, _, _)| *t);
        let notes = noted.iter().map(|(_, _, why)| *why).collect();
        let occurrences = noted.into_iter().map(|(t, f, _)| (t, f)).collect();
        let main = main.and_then(|m| tables.iter().position(|t| **t == *m));
        arrays.sort_unstable();
        arrays.dedup();
        Template {
            tables,
            main,
            columns,
            occurrences,
            notes,
            arrays: arrays.into(),
        }
    }
}

/// Resolves column references against one SELECT block, interning column names.
struct Resolver<'a, 'q> {
    scope: &'a Scope<'q>,
    columns: &'a mut Interner,
}

impl dnf::Resolve for Resolver<'_, '_> {
    fn column(&mut self, e: &Expr) -> Option<ColKey> {
        let (rel, column) = match e {
            Expr::Nested(inner) => return self.column(inner),
            Expr::Identifier(id) => {
                let column = norm(id);
                (self.scope.only_rel(&column)?, column)
            }
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [.., qualifier, column] => (self.scope.find(&norm(qualifier))?, norm(column)),
                _ => return None,
            },
            _ => return None,
        };
        Some((rel, self.columns.intern(&column) as u32))
    }
}
