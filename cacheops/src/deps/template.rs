//! [`Template`]: the dependency structure of one SQL text, and its instantiation
//! with one call's binds into [`Deps`].
//!
//! Building a template (the walk) lives in `walk.rs`, which also holds
//! [`Template::parse`]; this file needs only the formulas of `dnf.rs`, so the walk
//! and `explain.rs` can both depend on it without depending on each other.

use std::sync::Arc;

use super::dnf::{self, Ctx, Formula, Leaf};
use super::{Deps, Policy};
use crate::value::{Equality, Value};

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
