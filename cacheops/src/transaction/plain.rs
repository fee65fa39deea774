//! Transactions on a plain Diesel connection.
//!
//! A write's invalidation must not run before its COMMIT: a reader that fills the
//! cache in between would store the old state after the invalidation, and it would
//! stay stale once the write commits. So inside [`Cacheops::transaction`] the write
//! helpers queue their invalidations, per savepoint level, and the queue runs once
//! the outermost COMMIT has returned. A rolled-back level (an `Err`, a failed COMMIT,
//! a panic) drops its queue; a released savepoint merges into its parent.
//!
//! [`on_commit`](crate::on_commit) registers a callback that runs after the
//! outermost COMMIT, after the transaction's invalidations have been sent (so it
//! never sees, or announces, data the cache still holds in its old state); a
//! rolled-back level drops its hooks.
//!
//! Reads through `.cached()` never use the cache while the connection is inside any
//! transaction: a plain connection cannot tell whether the transaction has written,
//! and a result read there may include uncommitted rows that must never reach the
//! cache. (A connection wrapper that sees every statement can do better: it knows
//! when a transaction is still clean.)

use std::cell::RefCell;
use std::collections::HashMap;

use diesel::connection::{Connection, TransactionManager};

use super::frames::{Frames, Opened};
use super::queue::{Hook, Pending};
use crate::error::Error;
use crate::runtime::Cacheops;

thread_local! {
    /// The open [`Cacheops::transaction`] levels per plain connection (by address).
    /// A connection is used by one thread at a time, and it cannot move while a
    /// transaction borrows it.
    static PLAIN: RefCell<HashMap<usize, Frames>> = RefCell::new(HashMap::new());
}

/// Identifies a connection while it is borrowed.
pub(crate) fn conn_id<C>(conn: &C) -> usize {
    conn as *const C as usize
}

/// Whether `conn` is inside a transaction (or its transaction state is broken,
/// which is treated the same way: no cache).
pub(crate) fn in_transaction<C: Connection>(conn: &mut C) -> bool {
    let status =
        <C::TransactionManager as TransactionManager<C>>::transaction_manager_status_mut(conn);
    !matches!(status.transaction_depth(), Ok(None))
}

/// Queues a write's invalidation in the innermost [`Cacheops::transaction`] level
/// of the plain connection `conn`; hands it back when there is none.
pub(crate) fn plain_wrote(conn: usize, pending: Pending) -> Option<Pending> {
    with_frames(conn, pending, Frames::wrote)
}

/// Queues an after-commit hook in the innermost [`Cacheops::transaction`] level
/// of the plain connection `conn`; hands it back when there is none.
pub(crate) fn plain_on_commit(conn: usize, hook: Hook) -> Option<Hook> {
    with_frames(conn, hook, Frames::on_commit)
}

fn with_frames<T>(conn: usize, item: T, add: fn(&mut Frames, T) -> Option<T>) -> Option<T> {
    PLAIN.with(|plain| match plain.borrow_mut().get_mut(&conn) {
        Some(frames) => add(frames, item),
        None => Some(item),
    })
}

/// One [`Cacheops::transaction`] level. Rolls it back when dropped before it
/// committed, so an `Err`, a failed COMMIT or a panic never leaves it behind.
struct Scope {
    conn: usize,
    closed: bool,
}

impl Scope {
    fn open(conn: usize) -> Scope {
        PLAIN.with(|plain| {
            let mut plain = plain.borrow_mut();
            plain.entry(conn).or_default().open(Opened::Scope);
        });
        Scope {
            conn,
            closed: false,
        }
    }

    /// The level committed: merged into its parent, or, the outermost, settled.
    fn commit(mut self) {
        self.closed = true;
        let closed = self.close(Frames::commit_innermost);
        if closed.ended {
            closed.owed.settle();
        }
    }

    /// Closes the innermost level of this connection with `how`, and forgets the
    /// connection once none is left open.
    fn close<T>(&self, how: impl FnOnce(&mut Frames) -> T) -> T {
        PLAIN.with(|plain| {
            let mut plain = plain.borrow_mut();
            let frames = plain.entry(self.conn).or_default();
            let out = how(frames);
            if !frames.is_open() {
                plain.remove(&self.conn);
            }
            out
        })
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if !self.closed {
            self.close(|frames| frames.roll_back_from(frames.depth().saturating_sub(1)));
        }
    }
}

impl Cacheops {
    /// Runs `f` in a transaction (a savepoint when nested) whose helper writes
    /// invalidate only after the outermost COMMIT, and not at all if rolled back.
    ///
    /// ```no_run
    /// # use diesel::prelude::*;
    /// # fn run(cache: &cacheops::Cacheops, conn: &mut PgConnection) -> cacheops::Result<()> {
    /// cache.transaction(conn, |conn| {
    ///     // cache.save(conn, &article)?; cache.write_returning(conn, ...)?; ...
    ///     Ok::<(), cacheops::Error>(())
    /// })?;
    /// # Ok(()) }
    /// ```
    ///
    /// The error type may be Diesel's, as with `Connection::transaction`
    /// (cacheops' errors convert into it, keeping the database's own):
    ///
    /// ```no_run
    /// # use diesel::prelude::*;
    /// # diesel::table! { tags (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Insertable, Identifiable, AsChangeset, cacheops::Cacheable, serde::Serialize, serde::Deserialize)]
    /// # #[diesel(table_name = tags)]
    /// # #[cacheops(app = "blog")]
    /// # struct Tag { id: i32, name: String }
    /// # fn run(cache: &cacheops::Cacheops, conn: &mut PgConnection, tag: &Tag) -> QueryResult<()> {
    /// cache.transaction(conn, |conn| {
    ///     cache.save(conn, tag)?;
    ///     diesel::delete(tags::table.filter(tags::name.eq("old"))).execute(conn)?;
    ///     Ok::<(), diesel::result::Error>(())
    /// })
    /// # }
    /// ```
    pub fn transaction<C, T, E, F>(&self, conn: &mut C, f: F) -> std::result::Result<T, E>
    where
        C: Connection,
        F: FnOnce(&mut C) -> std::result::Result<T, E>,
        E: From<diesel::result::Error> + From<Error>,
    {
        let scope = Scope::open(conn_id(conn));
        let value = conn.transaction(f)?;
        scope.commit();
        Ok(value)
    }
}
