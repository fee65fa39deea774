//! Transactions on a plain Diesel connection.
//!
//! A write's invalidation must not run before its COMMIT: a reader that fills the
//! cache in between would store the old state after the invalidation, and it would
//! stay stale once the write commits. So inside [`Cacheops::transaction`] the write
//! helpers queue their invalidations, per savepoint level, and the queue runs once
//! the outermost COMMIT has returned. A rolled-back level (an `Err`, a failed COMMIT,
//! a panic) drops its queue; a released savepoint merges into its parent.
//!
//! [`on_commit`] registers a callback that runs after the outermost COMMIT, after
//! the transaction's invalidations have been sent (so it never sees, or announces,
//! data the cache still holds in its old state); a rolled-back level drops its hooks.
//!
//! Reads through `.cached()` never use the cache while the connection is inside any
//! transaction: a plain connection cannot tell whether the transaction has written,
//! and a result read there may include uncommitted rows that must never reach the
//! cache. (A connection wrapper that sees every statement can do better: it knows
//! when a transaction is still clean.)

use std::cell::RefCell;
use std::collections::HashMap;

use diesel::connection::{Connection, TransactionManager};

use crate::connection::CacheConnection;
use crate::error::{Error, ErrorKind, Result};
use crate::model::ModelInfo;
use crate::pending::{Hook, Owed, Pending, Queue};
use crate::runtime::Cacheops;
use crate::value::Value;

/// What one transaction level owes at COMMIT.
type Frame = Queue;

thread_local! {
    /// Frames per connection (by address), innermost last. A connection is used by
    /// one thread at a time, and it cannot move while a transaction borrows it.
    static FRAMES: RefCell<HashMap<usize, Vec<Frame>>> = RefCell::new(HashMap::new());
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

/// Pops the frame it pushed when dropped, so a panic or an early return never
/// leaves a frame behind.
struct FrameGuard {
    conn: usize,
    popped: bool,
}

impl FrameGuard {
    fn push(conn: usize) -> FrameGuard {
        FRAMES.with(|f| {
            f.borrow_mut()
                .entry(conn)
                .or_default()
                .push(Frame::default())
        });
        FrameGuard {
            conn,
            popped: false,
        }
    }

    /// This level's queue, and whether it was the outermost level.
    fn pop(&mut self) -> (Frame, bool) {
        self.popped = true;
        FRAMES.with(|f| {
            let mut frames = f.borrow_mut();
            let stack = frames.entry(self.conn).or_default();
            let frame = stack.pop().unwrap_or_default();
            let outermost = stack.is_empty();
            if outermost {
                frames.remove(&self.conn);
            }
            (frame, outermost)
        })
    }
}

impl Drop for FrameGuard {
    fn drop(&mut self) {
        if !self.popped {
            self.pop();
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
        let mut guard = FrameGuard::push(conn_id(conn));
        let value = conn.transaction(f)?;
        let (frame, outermost) = guard.pop();
        if outermost {
            frame.settle();
        } else {
            FRAMES.with(|f| merge_into_parent(&mut f.borrow_mut(), guard.conn, frame));
        }
        Ok(value)
    }

    /// Invalidates rows a helper wrote through `conn`: queued while `conn` is inside
    /// a transaction it tracks or inside [`Cacheops::transaction`], sent now otherwise.
    pub(crate) fn after_write<C: CacheConnection>(
        &self,
        conn: &mut C,
        model: &'static ModelInfo,
        rows: Vec<Vec<Value>>,
    ) -> Result<()> {
        let pending = Pending {
            handle: self.clone(),
            what: Owed::Rows(model, rows),
        };
        let unqueued = match conn.__tracked() {
            Some(tracked) => tracked.wrote(pending),
            None => queue_for(conn_id(conn), pending, Queue::push),
        };
        match unqueued {
            // Inside a transaction cacheops does not manage: not committed yet, so
            // a failure is the caller's to handle (its transaction may roll back).
            Some(now) if in_transaction(conn) => now.send(),
            Some(now) => {
                now.send_committed();
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// Runs `hook` once the transaction open on `conn` has committed, after the
/// transaction's invalidations were sent; at once when no transaction is open.
///
/// A hook registered in a savepoint that is rolled back never runs; one in a
/// released savepoint waits for the outermost COMMIT. Hooks run in the order they
/// were registered, even when an invalidation failed (the data is committed).
///
/// Works on a [`CachedConnection`](crate::CachedConnection) in any transaction,
/// and on a plain connection inside [`Cacheops::transaction`]. A plain connection
/// inside a transaction cacheops did not open gives an [`ErrorKind::Transaction`]
/// error: its COMMIT cannot be seen, and running the hook now would run it before
/// the data is visible.
///
/// ```no_run
/// # use diesel::prelude::*;
/// # fn run(conn: &mut cacheops::CachedConnection<PgConnection>) -> QueryResult<()> {
/// conn.transaction(|conn| {
///     diesel::sql_query("UPDATE articles SET views = 0").execute(conn)?;
///     cacheops::on_commit(conn, || println!("committed and invalidated"))
///         .map_err(|e| diesel::result::Error::QueryBuilderError(Box::new(e)))?;
///     Ok(())
/// })
/// # }
/// ```
pub fn on_commit<C: CacheConnection>(
    conn: &mut C,
    hook: impl FnOnce() + Send + 'static,
) -> Result<()> {
    let hook: Hook = Box::new(hook);
    let unqueued = match conn.__tracked() {
        Some(tracked) => tracked.on_commit(hook),
        None => {
            let unqueued = queue_for(conn_id(conn), hook, Queue::push_hook);
            if unqueued.is_some() && in_transaction(conn) {
                return Err(Error::new(
                    ErrorKind::Transaction,
                    "on_commit on a plain connection inside a transaction cacheops did not \
                     open: use Cacheops::transaction or a CachedConnection",
                ));
            }
            unqueued
        }
    };
    if let Some(hook) = unqueued {
        hook();
    }
    Ok(())
}

/// Adds `item` to the innermost [`Cacheops::transaction`] level of `conn`; gives
/// it back when there is none.
fn queue_for<T>(conn: usize, item: T, add: fn(&mut Frame, T)) -> Option<T> {
    FRAMES.with(|f| {
        match f
            .borrow_mut()
            .get_mut(&conn)
            .and_then(|stack| stack.last_mut())
        {
            Some(frame) => {
                add(frame, item);
                None
            }
            None => Some(item),
        }
    })
}

fn merge_into_parent(frames: &mut HashMap<usize, Vec<Frame>>, conn: usize, frame: Frame) {
    if let Some(parent) = frames.get_mut(&conn).and_then(|stack| stack.last_mut()) {
        parent.append(frame);
    }
}
