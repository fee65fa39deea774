//! What the protocol does I/O through, so that one implementation of the
//! read-through, the fence, the locks and invalidation serves blocking and async
//! callers alike.
//!
//! The protocol's functions are `async` and generic over [`Io`]. A blocking
//! caller drives them with [`Blocking`], whose every operation is a finished
//! future (the store call ran when it was made), through [`block_on`]: the future
//! completes in its first poll, so the sync path pays for a state machine, not for
//! an executor. An async caller awaits them with the async store's `Io`
//! (`protocol/io_async.rs`, feature `async`), whose operations and pauses are
//! real futures (tokio timers, no thread ever blocked).
//!
//! Cancellation: an async caller may drop the protocol's future at any await.
//! Each function says what that leaves; nothing is ever left stale, because a
//! value is written only by one atomic store operation that checks its fence, and
//! an invalidation dropped before it was acknowledged is owed (see
//! `invalidate.rs`) exactly as one that failed.

use std::future::{ready, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use super::lock::{released, Locks};
use super::store::{CacheKey, Fence, RowState, Store};
use crate::deps::Deps;
use crate::error::Result;

/// The store operations the protocol needs, as futures (the query cache's, and
/// the simple cache's that `cached_as` and `SimpleCache` use); and the locks'
/// (see [`Locks`]).
pub(crate) trait Io: Locks {
    /// [`QueryStore::lookup`](super::store::QueryStore::lookup).
    fn lookup(
        &self,
        key: CacheKey,
        deps: &Deps,
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
    /// [`QueryStore::fence`](super::store::QueryStore::fence).
    fn fence(&self, deps: &Deps, ttl: Duration) -> impl Future<Output = Result<Fence>> + Send;
    /// [`QueryStore::store`](super::store::QueryStore::store).
    fn store(
        &self,
        key: CacheKey,
        fence: &Fence,
        payload: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// [`QueryStore::invalidate_rows`](super::store::QueryStore::invalidate_rows).
    fn invalidate_rows(
        &self,
        table: &str,
        rows: &[RowState<'_>],
    ) -> impl Future<Output = Result<()>> + Send;
    /// [`QueryStore::invalidate_table`](super::store::QueryStore::invalidate_table).
    fn invalidate_table(&self, table: &str) -> impl Future<Output = Result<()>> + Send;
    /// [`QueryStore::invalidate_all`](super::store::QueryStore::invalidate_all).
    fn invalidate_all(&self) -> impl Future<Output = Result<()>> + Send;
    /// [`QueryStore::delete`](super::store::QueryStore::delete).
    fn delete(&self, key: CacheKey) -> impl Future<Output = Result<()>> + Send;
    /// [`SimpleStore::simple_get`](super::store::SimpleStore::simple_get).
    fn simple_get(&self, key: CacheKey) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
    /// [`SimpleStore::simple_set`](super::store::SimpleStore::simple_set).
    fn simple_set(
        &self,
        key: CacheKey,
        payload: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<()>> + Send;
    /// [`SimpleStore::simple_delete`](super::store::SimpleStore::simple_delete).
    fn simple_delete(&self, key: CacheKey) -> impl Future<Output = Result<()>> + Send;
}

/// The protocol's I/O on a blocking [`Store`]: each operation runs when it is
/// called and returns a finished future.
#[derive(Clone, Copy)]
pub(crate) struct Blocking<'s>(pub(crate) &'s dyn Store);

impl Io for Blocking<'_> {
    fn lookup(
        &self,
        key: CacheKey,
        deps: &Deps,
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send {
        ready(self.0.lookup(key, deps))
    }

    fn fence(&self, deps: &Deps, ttl: Duration) -> impl Future<Output = Result<Fence>> + Send {
        ready(self.0.fence(deps, ttl))
    }

    fn store(
        &self,
        key: CacheKey,
        fence: &Fence,
        payload: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send {
        ready(self.0.store(key, fence, payload, ttl))
    }

    fn invalidate_rows(
        &self,
        table: &str,
        rows: &[RowState<'_>],
    ) -> impl Future<Output = Result<()>> + Send {
        ready(self.0.invalidate_rows(table, rows))
    }

    fn invalidate_table(&self, table: &str) -> impl Future<Output = Result<()>> + Send {
        ready(self.0.invalidate_table(table))
    }

    fn invalidate_all(&self) -> impl Future<Output = Result<()>> + Send {
        ready(self.0.invalidate_all())
    }

    fn delete(&self, key: CacheKey) -> impl Future<Output = Result<()>> + Send {
        ready(self.0.delete(key))
    }

    fn simple_get(&self, key: CacheKey) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send {
        ready(self.0.simple_get(key))
    }

    fn simple_set(
        &self,
        key: CacheKey,
        payload: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<()>> + Send {
        ready(self.0.simple_set(key, payload, ttl))
    }

    fn simple_delete(&self, key: CacheKey) -> impl Future<Output = Result<()>> + Send {
        ready(self.0.simple_delete(key))
    }
}

impl Locks for Blocking<'_> {
    fn try_lock(
        &self,
        key: CacheKey,
        token: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send {
        ready(self.0.try_lock(key, token, ttl))
    }

    fn unlock(&self, key: CacheKey, token: &str) -> impl Future<Output = Result<()>> + Send {
        ready(self.0.unlock(key, token))
    }

    fn unlock_later(&self, key: CacheKey, token: String) {
        released(self.0.unlock(key, &token));
    }

    fn pause(&self, pause: Duration) -> impl Future<Output = ()> + Send {
        std::thread::sleep(pause);
        ready(())
    }
}

/// Runs `future` to completion on this thread. A future of the protocol over
/// [`Blocking`] completes in its first poll; any other is polled again each time
/// its waker unparks the thread.
///
/// Inlined, so that the caller builds the future where it is pinned: moving it
/// in copied the whole state machine on every call.
#[inline(always)]
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        // One per thread: a waker made per call cost every blocking store
        // operation an allocation.
        static UNPARK: Waker = unpark_this_thread();
    }
    let mut future = pin!(future);
    match UNPARK.try_with(|waker| poll_until_ready(future.as_mut(), waker)) {
        Ok(output) => output,
        // Called while this thread's locals are being destroyed.
        Err(_) => poll_until_ready(future, &unpark_this_thread()),
    }
}

fn unpark_this_thread() -> Waker {
    Waker::from(Arc::new(Unpark(std::thread::current())))
}

fn poll_until_ready<F: Future>(mut future: Pin<&mut F>, waker: &Waker) -> F::Output {
    let mut context = Context::from_waker(waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

/// Wakes the thread [`block_on`] parked.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_future_is_polled_until_it_is_ready() {
        let (tx, rx) = std::sync::mpsc::channel::<u32>();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(7).unwrap();
        });
        let mut polls = 0;
        let got = block_on(std::future::poll_fn(|cx| {
            polls += 1;
            match rx.try_recv() {
                Ok(v) => Poll::Ready(v),
                Err(_) => {
                    let waker = cx.waker().clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(5));
                        waker.wake();
                    });
                    Poll::Pending
                }
            }
        }));
        assert_eq!(got, 7);
        assert!(polls > 1);
    }
}
