//! Invalidations owed by a write, held until its transaction commits.

use crate::error::Result;
use crate::model::ModelInfo;
use crate::runtime::Cacheops;
use crate::store::RowState;
use crate::value::Value;

/// One invalidation a write owes, with the handle that will send it.
pub(crate) struct Pending {
    pub(crate) handle: Cacheops,
    pub(crate) what: Owed,
}

/// What a write invalidates.
pub(crate) enum Owed {
    /// Rows of a model, each with every column in the model's order (helpers).
    Rows(&'static ModelInfo, Vec<Vec<Value>>),
    /// Rows of a table as the database returned them, `(column, value)` each.
    Named(String, Vec<Vec<(String, Value)>>),
    /// Everything that depends on these tables (writes it could not analyse finer).
    Tables(Vec<String>),
    /// Everything under the prefix (raw SQL it could not analyse at all).
    All,
}

impl Pending {
    /// Sends the invalidation now.
    pub(crate) fn send(self) -> Result<()> {
        let handle = self.handle;
        match self.what {
            Owed::Rows(model, rows) => handle.invalidate_values(model, rows),
            Owed::Named(table, rows) => handle.invalidate_named(&table, &rows),
            Owed::Tables(tables) => tables.iter().try_for_each(|t| handle.invalidate_table(t)),
            Owed::All => handle.invalidate_all(),
        }
    }
}

/// A callback the user registered to run after the outermost COMMIT.
pub(crate) type Hook = Box<dyn FnOnce() + Send>;

/// What one transaction level owes once the outermost COMMIT has returned: its
/// writes' invalidations, then the user's after-commit hooks.
#[derive(Default)]
pub(crate) struct Queue {
    pending: Vec<Pending>,
    hooks: Vec<Hook>,
}

impl Queue {
    pub(crate) fn push(&mut self, pending: Pending) {
        self.pending.push(pending);
    }

    pub(crate) fn push_hook(&mut self, hook: Hook) {
        self.hooks.push(hook);
    }

    /// Takes over what a released savepoint owed, after what this level owes.
    pub(crate) fn append(&mut self, child: Queue) {
        self.pending.extend(child.pending);
        self.hooks.extend(child.hooks);
    }

    /// Sends every invalidation, even after one fails (each failure is remembered
    /// by its handle), then runs the hooks in the order they were registered.
    /// Invalidations go first so that a hook reading through the cache (or telling
    /// another process to) sees the committed data. The data is committed whatever
    /// Redis said, so the hooks run even when an invalidation failed; the first
    /// failure is returned afterwards.
    pub(crate) fn settle(self) -> Result<()> {
        let mut first_error = None;
        for p in self.pending {
            if let Err(e) = p.send() {
                first_error.get_or_insert(e);
            }
        }
        for hook in self.hooks {
            hook();
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Cacheops {
    /// Invalidates rows given as `(column, value)` pairs of `table`.
    pub(crate) fn invalidate_named(
        &self,
        table: &str,
        rows: &[Vec<(String, Value)>],
    ) -> Result<()> {
        let states: Vec<RowState<'_>> = rows
            .iter()
            .map(|row| RowState {
                table,
                columns: row.iter().map(|(c, v)| (c.as_str(), v.clone())).collect(),
            })
            .collect();
        self.count_invalidation();
        let sent = self.store().invalidate_rows(table, &states);
        self.after_invalidation(sent, &[table])
    }
}
