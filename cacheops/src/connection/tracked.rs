//! What a connection that sees every statement knows about its transaction and
//! session: its levels (the stack of [`crate::transaction`], with its rules), and
//! what they change about reads.
//!
//! Before the first write of a transaction, reads use the cache normally; once any
//! level has written, reads bypass the cache entirely. Diesel's depths and the raw
//! SQL control statements the connection sees are mapped onto the stack here.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::effect::Step;
use crate::runtime::Cacheops;
use crate::transaction::{Frames, Opened};
use crate::transaction::{Hook, Pending, Queue};

/// Per-connection transaction frames. Not public API.
#[doc(hidden)]
pub struct Tracked {
    pub(crate) handle: Cacheops,
    frames: Frames,
    /// Entered while a cacheops write helper runs its statements: the helper
    /// invalidates them itself, granularly.
    pub(crate) helper: Depth,
    /// Entered while an explicit `.cached()` call runs its query on a miss: that
    /// call caches the typed result, so the rows must not be cached again.
    pub(crate) explicit: Depth,
    /// Whether the open transaction's statements read the latest committed data
    /// (see `CacheConnection::__statements_read_latest`); asked on its first miss.
    pub(crate) reads_latest: Cell<Option<bool>>,
    /// The hashed database identity of the session (database, user, schema
    /// search path); `None` until learned, and again after a statement that may
    /// change it.
    pub(crate) identity: Option<u128>,
    /// A statement inside the open transaction may have changed the identity
    /// (`SET LOCAL`, or a `SET` a rollback undoes): learn it again when it ends.
    identity_ends_with_transaction: bool,
    /// Set once the session created a temporary table, which shadows tables of
    /// the same name for it alone: mixed into its identity from then on.
    private: Option<u128>,
    /// The transaction state is unknown (an async statement controlling the
    /// transaction was dropped before it was followed): the connection refuses
    /// every statement from then on, and pools discard it.
    #[cfg(all(feature = "async", feature = "postgres"))]
    pub(crate) broken: bool,
}

/// How many nested scopes of one kind are open. A scope closes when its
/// [`Scope`] is dropped, which it is even when the code in it panics or (async)
/// its future is dropped: a scope left open would hide every later statement.
#[derive(Debug, Default)]
pub(crate) struct Depth(Arc<AtomicU32>);

impl Depth {
    /// Opens a scope, open until the returned guard is dropped.
    pub(crate) fn scope(&self) -> Scope {
        self.0.fetch_add(1, Ordering::Relaxed);
        Scope(Arc::clone(&self.0))
    }

    pub(crate) fn active(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

/// An open scope of a [`Depth`] (it holds no borrow of the connection, which
/// the code in the scope uses).
pub(crate) struct Scope(Arc<AtomicU32>);

impl Drop for Scope {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked")
            .field("depth", &self.frames.depth())
            .field("dirty", &!self.reads_may_use_cache())
            .finish()
    }
}

impl Tracked {
    pub(crate) fn new(handle: Cacheops) -> Tracked {
        Tracked {
            handle,
            frames: Frames::default(),
            helper: Depth::default(),
            explicit: Depth::default(),
            reads_latest: Cell::new(None),
            identity: None,
            identity_ends_with_transaction: false,
            private: None,
            #[cfg(all(feature = "async", feature = "postgres"))]
            broken: false,
        }
    }

    /// A statement may have changed which schemas or database the session reads
    /// (`SET`, `RESET`, `DISCARD`, `set_config`).
    pub(crate) fn session_changed(&mut self) {
        self.identity = None;
        self.identity_ends_with_transaction |= self.in_transaction();
    }

    /// The session created a temporary table: no other session shares its names.
    pub(crate) fn made_private(&mut self) {
        if self.private.is_none() {
            self.private = Some(crate::protocol::layout::unique());
            self.identity = None;
        }
    }

    /// What makes a private session's identity its own (0 for others).
    pub(crate) fn private_salt(&self) -> u128 {
        self.private.unwrap_or(0)
    }

    /// The outermost level ended (committed or rolled back).
    fn ended(&mut self) {
        if std::mem::take(&mut self.identity_ends_with_transaction) {
            self.identity = None;
        }
    }

    /// Whether a read may use the cache: no open level has written.
    pub(crate) fn reads_may_use_cache(&self) -> bool {
        self.frames.clean()
    }

    /// Records a write's invalidation: queued (and the level marked dirty) inside a
    /// transaction; handed back to be sent now outside one.
    pub(crate) fn wrote(&mut self, pending: Pending) -> Option<Pending> {
        self.frames.wrote(pending)
    }

    /// Registers an after-commit hook: queued in the innermost level inside a
    /// transaction, handed back to run now outside one.
    pub(crate) fn on_commit(&mut self, hook: Hook) -> Option<Hook> {
        self.frames.on_commit(hook)
    }

    /// A level Diesel's transaction manager began.
    pub(crate) fn begin(&mut self) {
        self.open(Opened::Diesel);
    }

    /// Opens a level; a new transaction asks again how its statements read.
    fn open(&mut self, opened: Opened) {
        if !self.frames.is_open() {
            self.reads_latest.set(None);
        }
        self.frames.open(opened);
    }

    pub(crate) fn in_transaction(&self) -> bool {
        self.frames.is_open()
    }

    /// Whether a miss read now through `inner`, the connection this tracks, may
    /// store its result (see [`crate::connection::fills_may_store`]).
    pub(crate) fn fills_may_store<C: super::CacheConnection>(
        in_transaction: bool,
        reads_latest: &Cell<Option<bool>>,
        inner: &mut C,
    ) -> bool {
        if !in_transaction {
            return true;
        }
        if let Some(known) = reads_latest.get() {
            return known;
        }
        let known = inner.__statements_read_latest();
        reads_latest.set(Some(known));
        known
    }

    /// Diesel's manager committed, leaving it at `depth` levels: a COMMIT (depth 0)
    /// ended every level, raw ones included, and hands back what they owe; a
    /// RELEASE merged the levels above its own into the one below.
    pub(crate) fn committed(&mut self, depth: usize) -> Queue {
        match self.frames.diesel_level(depth) {
            Some(level) => self.commit_from(level),
            None => Queue::default(),
        }
    }

    /// Follows a transaction control statement sent as SQL: what a raw `COMMIT`
    /// (or the `RELEASE` of SQLite's outermost savepoint) leaves owed, to settle.
    pub(crate) fn control(&mut self, step: &Step) -> Option<Queue> {
        match step {
            // PostgreSQL ignores a BEGIN inside a transaction (with a warning).
            Step::Begin if self.in_transaction() => None,
            Step::Begin => {
                self.open(Opened::Raw);
                None
            }
            Step::Savepoint(name) => {
                self.open(Opened::Savepoint(name.clone()));
                None
            }
            Step::Release(name) => self.frames.savepoint(name).map(|i| self.commit_from(i)),
            Step::RollbackTo(name) => {
                let level = self.frames.savepoint(name)?;
                self.frames.roll_back_to(level);
                self.undone();
                None
            }
            Step::Commit => Some(self.commit_from(0)),
            Step::Rollback => {
                self.roll_back_from(0);
                None
            }
            Step::Write(_) => None,
        }
    }

    /// Commits every level from `level` up: what the outermost owes when `level`
    /// is 0, else nothing (merged into the level below).
    fn commit_from(&mut self, level: usize) -> Queue {
        let closed = self.frames.commit_from(level);
        if closed.ended {
            self.ended();
        }
        closed.owed
    }

    /// The whole transaction ended: what every level owes.
    pub(crate) fn end_all(&mut self) -> Queue {
        self.commit_from(0)
    }

    /// Diesel's manager rolled back (or failed to commit), leaving it at `depth`
    /// levels: the levels it no longer counts are dropped, with their queues.
    pub(crate) fn keep_levels(&mut self, depth: usize) {
        if let Some(level) = self.frames.diesel_level(depth) {
            self.roll_back_from(level);
        }
    }

    /// Drops the levels from `level` up, with their queues.
    fn roll_back_from(&mut self, level: usize) {
        if self.frames.roll_back_from(level) {
            self.ended();
        } else {
            self.undone();
        }
    }

    /// Part of the transaction was undone: a `SET` in it may be too.
    fn undone(&mut self) {
        if self.identity_ends_with_transaction {
            self.identity = None;
        }
    }

    pub(crate) fn in_helper(&self) -> bool {
        self.helper.active()
    }

    /// Whether a plain read may be served from the cache without `.cached()`:
    /// neither a helper nor an explicit call is running it, and no open level has
    /// written.
    pub(crate) fn reads_may_be_automatic(&self) -> bool {
        !self.helper.active() && !self.explicit.active() && self.reads_may_use_cache()
    }
}
