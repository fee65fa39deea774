//! What a connection that sees every statement knows about its transaction:
//! one frame per open level, each with the invalidations its writes owe and whether
//! it has written (is dirty).
//!
//! Rules (those of django-cacheops' transaction support): before the first write
//! of a transaction, reads use the cache normally; once any level has written,
//! reads bypass the cache entirely; invalidations run after the outermost COMMIT;
//! a released savepoint merges its queue and dirty flag into its parent; a rolled
//! back level drops both.

use std::cell::Cell;

use super::effect::Step;
use crate::pending::{Hook, Pending, Queue};
use crate::runtime::Cacheops;

/// Per-connection transaction frames. Not public API.
#[doc(hidden)]
pub struct Tracked {
    pub(crate) handle: Cacheops,
    frames: Vec<Frame>,
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
}

/// How many nested scopes of one kind are open.
#[derive(Debug, Default)]
pub(crate) struct Depth(u32);

impl Depth {
    pub(crate) fn enter(&mut self) {
        self.0 += 1;
    }

    pub(crate) fn leave(&mut self) {
        self.0 = self.0.saturating_sub(1);
    }

    pub(crate) fn active(&self) -> bool {
        self.0 > 0
    }
}

#[derive(Default)]
struct Frame {
    queue: Queue,
    dirty: bool,
    /// The name of a savepoint begun by raw SQL (`SAVEPOINT name`).
    savepoint: Option<String>,
    /// Begun by Diesel's transaction manager (counted in its depth), not by raw SQL.
    diesel: bool,
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked")
            .field("depth", &self.frames.len())
            .field("dirty", &!self.reads_may_use_cache())
            .finish()
    }
}

impl Tracked {
    pub(crate) fn new(handle: Cacheops) -> Tracked {
        Tracked {
            handle,
            frames: Vec::new(),
            helper: Depth::default(),
            explicit: Depth::default(),
            reads_latest: Cell::new(None),
            identity: None,
            identity_ends_with_transaction: false,
            private: None,
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
        !self.frames.iter().any(|f| f.dirty)
    }

    /// Records a write's invalidation: queued (and the level marked dirty) inside a
    /// transaction; handed back to be sent now outside one.
    pub(crate) fn wrote(&mut self, pending: Pending) -> Option<Pending> {
        match self.frames.last_mut() {
            Some(frame) => {
                frame.dirty = true;
                frame.queue.push(pending);
                None
            }
            None => Some(pending),
        }
    }

    /// Registers an after-commit hook: queued in the innermost level inside a
    /// transaction, handed back to run now outside one.
    pub(crate) fn on_commit(&mut self, hook: Hook) -> Option<Hook> {
        match self.frames.last_mut() {
            Some(frame) => {
                frame.queue.push_hook(hook);
                None
            }
            None => Some(hook),
        }
    }

    /// A level Diesel's transaction manager began.
    pub(crate) fn begin(&mut self) {
        self.push(Frame {
            diesel: true,
            ..Frame::default()
        });
    }

    fn push(&mut self, frame: Frame) {
        if self.frames.is_empty() {
            self.reads_latest.set(None);
        }
        self.frames.push(frame);
    }

    pub(crate) fn in_transaction(&self) -> bool {
        !self.frames.is_empty()
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
        match self.diesel_level(depth) {
            Some(level) => self.release_from(level),
            None => Queue::default(),
        }
    }

    /// The innermost level committed: its queue to send if it was the outermost,
    /// else merged into the parent.
    fn pop_level(&mut self) -> Queue {
        let Some(frame) = self.frames.pop() else {
            return Queue::default();
        };
        match self.frames.last_mut() {
            Some(parent) => {
                parent.dirty |= frame.dirty;
                parent.queue.append(frame.queue);
                Queue::default()
            }
            None => {
                self.ended();
                frame.queue
            }
        }
    }

    /// Where the levels Diesel's manager no longer counts start, once it counts
    /// `depth`: 0 when it counts none (its COMMIT or ROLLBACK ended everything),
    /// else the index of its `depth + 1`-th level (raw levels below stay).
    fn diesel_level(&self, depth: usize) -> Option<usize> {
        if depth == 0 {
            return Some(0);
        }
        let mut diesel = self.frames.iter().enumerate().filter(|(_, f)| f.diesel);
        diesel.nth(depth).map(|(i, _)| i)
    }

    /// Follows a transaction control statement sent as SQL: what a raw `COMMIT`
    /// (or the `RELEASE` of SQLite's outermost savepoint) leaves owed, to settle.
    pub(crate) fn control(&mut self, step: &Step) -> Option<Queue> {
        match step {
            // PostgreSQL ignores a BEGIN inside a transaction (with a warning).
            Step::Begin if self.in_transaction() => None,
            Step::Begin => {
                self.push(Frame::default());
                None
            }
            Step::Savepoint(name) => {
                self.push(Frame {
                    savepoint: Some(name.clone()),
                    ..Frame::default()
                });
                None
            }
            Step::Release(name) => self.level_of(name).map(|i| self.release_from(i)),
            Step::RollbackTo(name) => {
                let i = self.level_of(name)?;
                self.frames.truncate(i + 1);
                let savepoint = self.frames[i].savepoint.take();
                self.frames[i] = Frame {
                    savepoint,
                    ..Frame::default()
                };
                self.undone();
                None
            }
            Step::Commit => Some(self.release_from(0)),
            Step::Rollback => {
                self.drop_from(0);
                None
            }
            Step::Write(_) => None,
        }
    }

    /// The level of the innermost raw savepoint called `name`.
    fn level_of(&self, name: &str) -> Option<usize> {
        let named = |f: &Frame| f.savepoint.as_deref() == Some(name);
        self.frames.iter().rposition(named)
    }

    /// Commits every level from `level` up: what the outermost owes when `level`
    /// is 0, else nothing (merged into the level below).
    fn release_from(&mut self, level: usize) -> Queue {
        let mut owed = Queue::default();
        while self.frames.len() > level {
            owed = self.pop_level();
        }
        owed
    }

    /// The whole transaction ended: what every level owes.
    pub(crate) fn end_all(&mut self) -> Queue {
        self.release_from(0)
    }

    /// Diesel's manager rolled back (or failed to commit), leaving it at `depth`
    /// levels: the levels it no longer counts are dropped, with their queues.
    pub(crate) fn keep_levels(&mut self, depth: usize) {
        if let Some(level) = self.diesel_level(depth) {
            self.drop_from(level);
        }
    }

    /// Drops the levels from `level` up, with their queues.
    fn drop_from(&mut self, level: usize) {
        self.frames.truncate(level);
        match level {
            0 => self.ended(),
            _ => self.undone(),
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
