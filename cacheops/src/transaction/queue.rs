//! Invalidations owed by a write, held until its transaction commits.

use crate::error::Result;
use crate::protocol::invalidate;
pub(crate) use crate::protocol::invalidate::Owed;
use crate::runtime::Cacheops;

/// One invalidation a write owes, with the handle that will send it.
pub(crate) struct Pending {
    pub(crate) handle: Cacheops,
    pub(crate) what: Owed,
}

impl Pending {
    /// Sends the invalidation now; a failure is returned, or degraded when the
    /// handle degrades on failure (it is remembered either way).
    pub(crate) fn send(self) -> Result<()> {
        let core = self.handle.core();
        invalidate::degraded(core, invalidate::send(core, self.what))
    }

    /// Sends the invalidation of a write that has committed. Its failure is not the
    /// write's: the data is written, and a caller told otherwise would retry it
    /// (inserting twice). The handle remembers what was missed (reads of it bypass
    /// the cache until it gets through), counts it and reports it to its hook.
    pub(crate) fn send_committed(self) {
        let core = self.handle.core();
        if let Err(e) = invalidate::send(core, self.what) {
            core.missed_invalidation(e);
        }
    }

    /// Marks what this invalidation names owed, without sending it (one that can
    /// no longer be sent: its future was dropped): reads of it bypass the cache
    /// in this process until a retry gets through.
    #[cfg(all(feature = "async", feature = "postgres"))]
    pub(crate) fn owe(self) {
        let failures = &self.handle.core().failures;
        match &self.what {
            Owed::Rows(model, _) => failures.owe_tables([model.table]),
            Owed::Named(table, _) => failures.owe_tables([table.as_str()]),
            Owed::Tables(tables) => failures.owe_tables(tables.iter().map(String::as_str)),
            Owed::All => failures.owe_all(),
        }
    }

    /// [`Pending::send`] on the handle's async store.
    #[cfg(feature = "async")]
    pub(crate) async fn send_async(self) -> Result<()> {
        let core = self.handle.core();
        invalidate::degraded(core, send_async(core, self.what).await)
    }

    /// [`Pending::send_committed`] on the handle's async store.
    #[cfg(feature = "async")]
    pub(crate) async fn send_committed_async(self) {
        let core = self.handle.core();
        if let Err(e) = send_async(core, self.what).await {
            core.missed_invalidation(e);
        }
    }
}

/// Sends `what` on the async store. A handle without one (the helpers check
/// before they write, so only by mistake) owes everything: nothing it cached is
/// served until an invalidation gets through.
#[cfg(feature = "async")]
async fn send_async(core: &crate::protocol::core::Core, what: Owed) -> Result<()> {
    match core.nonblocking() {
        Ok(io) => invalidate::send_with(core, &io, what).await,
        Err(e) => {
            core.failures.owe_all();
            Err(e)
        }
    }
}

/// Sends each of `pending` in turn on the async stores; those not sent yet when
/// the future is dropped are owed.
#[cfg(all(feature = "async", feature = "postgres"))]
pub(crate) async fn send_committed_async(pending: Vec<Pending>) {
    let mut rest = Unsent(pending.into_iter().rev().collect());
    while let Some(next) = rest.0.pop() {
        next.send_committed_async().await;
    }
}

/// Invalidations not sent yet, owed if dropped (see [`Pending::owe`]); in
/// reverse order, popped from the end.
#[cfg(all(feature = "async", feature = "postgres"))]
struct Unsent(Vec<Pending>);

#[cfg(all(feature = "async", feature = "postgres"))]
impl Drop for Unsent {
    fn drop(&mut self) {
        self.0.drain(..).for_each(Pending::owe);
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
        self.uncertain()
            .into_iter()
            .for_each(Pending::send_committed);
    }

    /// The invalidations of an uncertain end; its hooks are dropped.
    fn uncertain(self) -> Vec<Pending> {
        if !self.hooks.is_empty() {
            tracing::warn!(
                hooks = self.hooks.len(),
                "cacheops: a transaction ended by a failed statement; its on_commit hooks do not run"
            );
        }
        self.pending
    }

    /// Owes every invalidation of a transaction whose end is unknown (its
    /// statement's future was dropped); its hooks do not run.
    #[cfg(all(feature = "async", feature = "postgres"))]
    pub(crate) fn owe(self) {
        self.uncertain().into_iter().for_each(Pending::owe);
    }

    /// [`Queue::settle_uncertain`] on the async stores.
    #[cfg(all(feature = "async", feature = "postgres"))]
    pub(crate) async fn settle_uncertain_async(self) {
        send_committed_async(self.uncertain()).await;
    }

    /// [`Queue::settle`] on the async stores. Dropped part-way, what it had not
    /// sent is owed, and the hooks do not run.
    #[cfg(all(feature = "async", feature = "postgres"))]
    pub(crate) async fn settle_async(self) {
        send_committed_async(self.pending).await;
        self.hooks.into_iter().for_each(|hook| hook());
    }

    /// Sends every invalidation of a committed transaction (a failure is reported
    /// by its handle, see [`Pending::send_committed`], never returned: the
    /// transaction has committed), then runs the hooks in the order they were
    /// registered. Invalidations go first so that a hook reading through the cache
    /// (or telling another process to) sees the committed data.
    pub(crate) fn settle(self) {
        self.pending.into_iter().for_each(Pending::send_committed);
        self.hooks.into_iter().for_each(|hook| hook());
    }
}
