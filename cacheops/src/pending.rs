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
    /// Sends the invalidation now; a failure is returned, or degraded when the
    /// handle degrades on failure (it is remembered either way).
    pub(crate) fn send(self) -> Result<()> {
        let handle = self.handle.clone();
        handle.degraded(self.send_remembered())
    }

    /// Sends the invalidation of a write that has committed. Its failure is not the
    /// write's: the data is written, and a caller told otherwise would retry it
    /// (inserting twice). The handle remembers what was missed (reads of it bypass
    /// the cache until it gets through), counts it and reports it to its hook.
    pub(crate) fn send_committed(self) {
        let handle = self.handle.clone();
        if let Err(e) = self.send_remembered() {
            handle.missed_invalidation(e);
        }
    }

    /// Sends everything owed (every table, even after one failed); what failed is
    /// remembered by the handle, and the first failure returned.
    fn send_remembered(self) -> Result<()> {
        let handle = self.handle;
        match self.what {
            Owed::Rows(model, rows) => handle.send_values(model, rows),
            Owed::Named(table, rows) => handle.send_named(&table, &rows),
            Owed::Tables(tables) => {
                let sent: Vec<Result<()>> = tables.iter().map(|t| handle.send_table(t)).collect();
                sent.into_iter().collect()
            }
            Owed::All => handle.send_all(),
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

    /// Sends every invalidation of a transaction that ended without telling how
    /// (a failed batch holding a COMMIT): the invalidations go out (widening is
    /// safe), the after-commit hooks do not run (it may have rolled back).
    pub(crate) fn settle_uncertain(self) {
        if !self.hooks.is_empty() {
            tracing::warn!(
                hooks = self.hooks.len(),
                "cacheops: a transaction ended by a failed statement; its on_commit hooks do not run"
            );
        }
        self.pending.into_iter().for_each(Pending::send_committed);
    }

    /// Sends every invalidation of a committed transaction (a failure is reported
    /// by its handle, see [`Pending::send_committed`], never returned: the
    /// transaction has committed), then runs the hooks in the order they were
    /// registered. Invalidations go first so that a hook reading through the cache
    /// (or telling another process to) sees the committed data.
    pub(crate) fn settle(self) {
        self.pending.into_iter().for_each(Pending::send_committed);
        for hook in self.hooks {
            hook();
        }
    }
}

impl Cacheops {
    /// Invalidates rows given as `(column, value)` pairs of `table`; a failure is
    /// remembered and returned.
    pub(crate) fn send_named(&self, table: &str, rows: &[Vec<(String, Value)>]) -> Result<()> {
        let states: Vec<RowState<'_>> = rows
            .iter()
            .map(|row| RowState {
                table,
                columns: row.iter().map(|(c, v)| (c.as_str(), v.clone())).collect(),
            })
            .collect();
        self.count_invalidation();
        let sent = self.store().invalidate_rows(table, &states);
        self.remembered(sent, &[table])
    }
}
