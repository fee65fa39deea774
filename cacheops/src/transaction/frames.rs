//! The one stack of transaction levels, and the rules its levels follow.
//!
//! Each open level (a transaction, or a savepoint inside one) keeps what its writes
//! owe and whether it has written (is dirty). Rules (those of django-cacheops'
//! transaction support):
//! - a released level merges its dirty flag and its queue into its parent;
//! - a rolled-back level drops both, hooks included;
//! - the outermost commit hands back what the whole transaction owes, to settle.
//!
//! The stack knows nothing of connections: `CachedConnection` maps Diesel's depths
//! and raw SQL onto it (`connection/tracked.rs`), and [`super::plain`] maps
//! `Cacheops::transaction` scopes onto one stack per plain connection.

use super::queue::{Hook, Pending, Queue};

/// What opened a level: tells Diesel's levels from raw SQL ones, and names raw
/// savepoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Opened {
    /// Begun by Diesel's transaction manager (counted in its depth).
    Diesel,
    /// Begun by a raw `BEGIN`.
    Raw,
    /// Begun by a raw `SAVEPOINT name`.
    Savepoint(String),
    /// Begun by [`crate::Cacheops::transaction`] on a plain connection.
    Scope,
}

/// One open level.
struct Frame {
    queue: Queue,
    dirty: bool,
    opened: Opened,
}

/// The open levels, outermost first.
#[derive(Default)]
pub(crate) struct Frames(Vec<Frame>);

/// What committing levels left to do.
#[derive(Default)]
pub(crate) struct Closed {
    /// What the transaction owes, to settle: empty unless it ended.
    pub(crate) owed: Queue,
    /// Whether the outermost level closed (the transaction ended).
    pub(crate) ended: bool,
}

impl Frames {
    /// Opens a level inside the innermost one.
    pub(crate) fn open(&mut self, opened: Opened) {
        self.0.push(Frame {
            queue: Queue::default(),
            dirty: false,
            opened,
        });
    }

    /// Whether any level is open.
    pub(crate) fn is_open(&self) -> bool {
        !self.0.is_empty()
    }

    /// How many levels are open.
    pub(crate) fn depth(&self) -> usize {
        self.0.len()
    }

    /// Whether no open level has written.
    pub(crate) fn clean(&self) -> bool {
        !self.0.iter().any(|f| f.dirty)
    }

    /// Queues a write's invalidation in the innermost level and marks it dirty;
    /// hands it back when no level is open (to be sent now).
    pub(crate) fn wrote(&mut self, pending: Pending) -> Option<Pending> {
        let Some(frame) = self.0.last_mut() else {
            return Some(pending);
        };
        frame.dirty = true;
        frame.queue.push(pending);
        None
    }

    /// Queues an after-commit hook in the innermost level; hands it back when no
    /// level is open (to run now).
    pub(crate) fn on_commit(&mut self, hook: Hook) -> Option<Hook> {
        let Some(frame) = self.0.last_mut() else {
            return Some(hook);
        };
        frame.queue.push_hook(hook);
        None
    }

    /// The innermost level committed: merged into its parent, or, the outermost,
    /// handed back.
    pub(crate) fn commit_innermost(&mut self) -> Closed {
        let Some(frame) = self.0.pop() else {
            return Closed::default();
        };
        let Some(parent) = self.0.last_mut() else {
            return Closed {
                owed: frame.queue,
                ended: true,
            };
        };
        parent.dirty |= frame.dirty;
        parent.queue.append(frame.queue);
        Closed::default()
    }

    /// Commits every level from `level` up, innermost first (a RELEASE of the
    /// level, or a COMMIT when `level` is 0).
    pub(crate) fn commit_from(&mut self, level: usize) -> Closed {
        let mut closed = Closed::default();
        while self.0.len() > level {
            closed = self.commit_innermost();
        }
        closed
    }

    /// Rolls back every level from `level` up, dropping their queues. Returns
    /// whether that ended the transaction (`level` 0) rather than part of it.
    pub(crate) fn roll_back_from(&mut self, level: usize) -> bool {
        self.0.truncate(level);
        level == 0
    }

    /// Rolls back to the start of `level` (`ROLLBACK TO`): the levels above it
    /// close, and it stays open, clean and empty, as it began.
    pub(crate) fn roll_back_to(&mut self, level: usize) {
        self.0.truncate(level + 1);
        if let Some(frame) = self.0.get_mut(level) {
            frame.queue = Queue::default();
            frame.dirty = false;
        }
    }

    /// Where the levels Diesel's manager no longer counts start, once it counts
    /// `depth`: 0 when it counts none (its COMMIT or ROLLBACK ended everything,
    /// raw levels included), else the index of its `depth + 1`-th level (raw
    /// levels below stay). `None` when it counts no more than that many.
    pub(crate) fn diesel_level(&self, depth: usize) -> Option<usize> {
        if depth == 0 {
            return Some(0);
        }
        let mut diesel = self
            .0
            .iter()
            .enumerate()
            .filter(|(_, f)| f.opened == Opened::Diesel);
        diesel.nth(depth).map(|(i, _)| i)
    }

    /// The level of the innermost raw savepoint called `name`.
    pub(crate) fn savepoint(&self, name: &str) -> Option<usize> {
        let named = |f: &Frame| matches!(&f.opened, Opened::Savepoint(n) if n == name);
        self.0.iter().rposition(named)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A hook that counts its runs in `ran`.
    fn counting(ran: &Arc<AtomicUsize>) -> Hook {
        let ran = Arc::clone(ran);
        Box::new(move || {
            ran.fetch_add(1, Ordering::SeqCst);
        })
    }

    /// A stack with `levels` open, outermost first.
    fn opened(levels: impl IntoIterator<Item = Opened>) -> Frames {
        let mut frames = Frames::default();
        levels.into_iter().for_each(|level| frames.open(level));
        frames
    }

    fn savepoint(name: &str) -> Opened {
        Opened::Savepoint(name.into())
    }

    fn ran_after_settling(closed: Closed, ran: &AtomicUsize) -> usize {
        closed.owed.settle();
        ran.load(Ordering::SeqCst)
    }

    #[test]
    fn a_released_level_waits_for_the_outermost_commit() {
        let ran = Arc::new(AtomicUsize::new(0));
        let mut frames = opened([Opened::Raw, savepoint("a")]);
        assert!(frames.on_commit(counting(&ran)).is_none());
        let released = frames.commit_from(frames.savepoint("a").unwrap());
        assert!(!released.ended);
        assert_eq!(ran_after_settling(released, &ran), 0);
        let committed = frames.commit_from(0);
        assert!(committed.ended && !frames.is_open());
        assert_eq!(ran_after_settling(committed, &ran), 1);
    }

    #[test]
    fn a_rolled_back_level_drops_its_hooks() {
        let ran = Arc::new(AtomicUsize::new(0));
        let mut frames = opened([Opened::Scope, Opened::Scope]);
        frames.on_commit(counting(&ran));
        assert!(!frames.roll_back_from(frames.depth() - 1));
        assert_eq!(ran_after_settling(frames.commit_innermost(), &ran), 0);
    }

    #[test]
    fn rolling_back_to_a_savepoint_keeps_it_open_and_named() {
        let ran = Arc::new(AtomicUsize::new(0));
        let mut frames = opened([Opened::Raw, savepoint("a"), Opened::Diesel]);
        frames.on_commit(counting(&ran));
        frames.roll_back_to(1);
        assert_eq!(frames.depth(), 2);
        assert_eq!(frames.savepoint("a"), Some(1));
        assert_eq!(ran_after_settling(frames.commit_from(0), &ran), 0);
    }

    #[test]
    fn diesel_levels_skip_raw_ones() {
        let frames = opened([Opened::Diesel, savepoint("raw"), Opened::Diesel]);
        assert_eq!(frames.diesel_level(0), Some(0));
        assert_eq!(frames.diesel_level(1), Some(2));
        assert_eq!(frames.diesel_level(2), None);
    }

    #[test]
    fn no_level_hands_everything_back() {
        let mut frames = Frames::default();
        assert!(frames.on_commit(Box::new(|| {})).is_some());
        assert!(frames.clean());
        assert!(!frames.commit_from(0).ended);
    }
}
