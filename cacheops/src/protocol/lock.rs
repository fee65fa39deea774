//! Stampede protection: when many callers miss the same key at once, one of them
//! computes the value and the others wait for it.
//!
//! The first caller to miss takes a lock with a random token and a TTL
//! (`SET P:l:<key> <token> NX PX <ttl>` in Redis), looks the value up once more (a
//! holder may have finished between its miss and its lock), computes, stores, and
//! releases the lock only if its token still holds it (`lua/unlock.lua`). The others
//! poll the cache with short sleeps, and try the lock again each time: a holder that
//! died leaves a lock that expires after its TTL, and the next waiter to take it
//! computes. A waiter gives up after twice the TTL (so it outlasts a dead holder's
//! lock plus one more computation) and computes on its own: the wait is bounded.
//!
//! Locking never decides what is stored: a holder stores through the normal path
//! (for queries, the race fence), and a waiter is only served a value the cache
//! would have served anyway. A store error while locking degrades to computing
//! without the lock: the lock saves work, it never guards correctness.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::protocol::layout::new_stamp;
use crate::protocol::store::CacheKey;

/// Lock TTL of cached queries: the longest one caller computes alone before the
/// others stop waiting for it.
pub(crate) const QUERY_LOCK_TTL: Duration = Duration::from_secs(5);

/// First and longest pause between two polls of a waiter.
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// Where locks live, and how a waiter waits: a store through the protocol's
/// [`Io`](super::io::Io), or the file cache's directory.
pub(crate) trait Locks: Sync {
    /// Takes the lock of `key` with `token` for `ttl` unless it is held.
    fn try_lock(
        &self,
        key: CacheKey,
        token: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Releases the lock of `key` if `token` holds it.
    fn unlock(&self, key: CacheKey, token: &str) -> impl Future<Output = Result<()>> + Send;
    /// Releases the lock from a destructor, where nothing can be awaited (see
    /// [`Io::unlock_later`](super::io::Io::unlock_later)).
    fn unlock_later(&self, key: CacheKey, token: String);
    /// Waits `pause` between two polls.
    fn pause(&self, pause: Duration) -> impl Future<Output = ()> + Send;
}

/// Computes the value of `key` once among concurrent callers.
///
/// `probe` looks the value up in the cache (`Ok(None)` on a miss; an error stops the
/// waiting); `compute` computes and stores it, and is not polled unless this
/// caller computes. Returns what `compute` returned, or what `probe` found while
/// waiting. A holder dropped (or panicking) while it computes releases its lock
/// through [`Locks::unlock_later`].
pub(crate) async fn compute_once<L, T, E, P>(
    locks: &L,
    key: CacheKey,
    ttl: Duration,
    mut probe: impl FnMut() -> P,
    compute: impl Future<Output = std::result::Result<T, E>>,
) -> std::result::Result<T, E>
where
    L: Locks + ?Sized,
    P: Future<Output = Result<Option<T>>>,
{
    let token = new_stamp();
    let deadline = Instant::now() + ttl.saturating_mul(2);
    let mut pause = FIRST_PAUSE;
    loop {
        match locks.try_lock(key, &token, ttl).await {
            Ok(true) => return holder(locks, key, token, probe, compute).await,
            Ok(false) => {}
            Err(e) => return alone(&e, "taking the lock", compute).await,
        }
        if Instant::now() >= deadline {
            tracing::warn!("cacheops: gave up waiting for another caller's value; computing it");
            return compute.await;
        }
        locks.pause(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
        match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => return alone(&e, "polling for the value", compute).await,
        }
    }
}

/// The lock holder: look once more, else compute, then release the lock; the
/// guard releases it if `compute` panics or the future is dropped first.
async fn holder<L, T, E, P>(
    locks: &L,
    key: CacheKey,
    token: String,
    mut probe: impl FnMut() -> P,
    compute: impl Future<Output = std::result::Result<T, E>>,
) -> std::result::Result<T, E>
where
    L: Locks + ?Sized,
    P: Future<Output = Result<Option<T>>>,
{
    let mut guard = Guard {
        locks,
        key,
        token: Some(token),
    };
    let result = match probe().await {
        Ok(Some(value)) => Ok(value),
        _ => compute.await,
    };
    if let Some(token) = guard.token.take() {
        released(locks.unlock(key, &token).await);
    }
    result
}

/// What releasing a lock came to: a failure is logged, never returned (the lock
/// expires on its own; waiters are delayed, not wrong).
pub(crate) fn released(unlocked: Result<()>) {
    if let Err(e) = unlocked {
        tracing::warn!(error = %e, "cacheops: could not release a lock");
    }
}

async fn alone<T, E>(
    error: &Error,
    during: &str,
    compute: impl Future<Output = std::result::Result<T, E>>,
) -> std::result::Result<T, E> {
    tracing::warn!(error = %error, "cacheops: {during} failed; computing without the lock");
    compute.await
}

/// Releases a held lock when dropped before the holder released it.
struct Guard<'a, L: Locks + ?Sized> {
    locks: &'a L,
    key: CacheKey,
    token: Option<String>,
}

impl<L: Locks + ?Sized> Drop for Guard<'_, L> {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            self.locks.unlock_later(self.key, token);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Barrier, Mutex};

    use std::thread;

    use super::*;
    use crate::protocol::io::{block_on, Blocking};
    use crate::store::{LockStore, MemoryStore, QueryStore, RedisStore, Store};

    /// [`compute_once`] on a blocking store, with blocking closures.
    fn once<T>(
        store: &dyn Store,
        key: CacheKey,
        ttl: Duration,
        probe: impl Fn() -> Result<Option<T>>,
        compute: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let probe = || std::future::ready(probe());
        block_on(compute_once(&Blocking(store), key, ttl, probe, async {
            compute()
        }))
    }

    /// A value slot standing in for the cache.
    struct Slot(Mutex<Option<u32>>);

    impl Slot {
        fn probe(&self) -> Result<Option<u32>> {
            Ok(*self.0.lock().unwrap())
        }
    }

    fn stampede<S: Store>(store: &S, key: CacheKey) {
        let slot = Slot(Mutex::new(None));
        let runs = AtomicUsize::new(0);
        let barrier = Barrier::new(8);
        thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    barrier.wait();
                    let compute = || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(100));
                        *slot.0.lock().unwrap() = Some(42);
                        Ok(42)
                    };
                    let got = once(store, key, Duration::from_secs(5), || slot.probe(), compute);
                    assert_eq!(got.unwrap(), 42);
                });
            }
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1, "computed more than once");
    }

    fn dead_holder<S: Store>(store: &S, key: CacheKey) {
        let ttl = Duration::from_millis(200);
        assert!(LockStore::try_lock(store, key, "dead", ttl).unwrap());
        let slot = Slot(Mutex::new(None));
        let got = once(store, key, ttl, || slot.probe(), || Ok(7));
        assert_eq!(got.unwrap(), 7);
        // The token of the dead holder no longer releases anything of ours.
        LockStore::unlock(store, key, "dead").unwrap();
    }

    fn unlock_needs_the_token<S: LockStore>(store: &S, key: CacheKey) {
        let ttl = Duration::from_secs(5);
        assert!(LockStore::try_lock(store, key, "a", ttl).unwrap());
        assert!(!LockStore::try_lock(store, key, "b", ttl).unwrap());
        LockStore::unlock(store, key, "b").unwrap();
        assert!(
            !LockStore::try_lock(store, key, "b", ttl).unwrap(),
            "b released a's lock"
        );
        LockStore::unlock(store, key, "a").unwrap();
        assert!(LockStore::try_lock(store, key, "b", ttl).unwrap());
        LockStore::unlock(store, key, "b").unwrap();
    }

    fn redis() -> (RedisStore, Cleanup) {
        let prefix = format!("cacheops-test:{}", new_stamp());
        let store = RedisStore::open("redis://127.0.0.1:6379/", &prefix).unwrap();
        (
            store,
            Cleanup(RedisStore::open("redis://127.0.0.1:6379/", &prefix).unwrap()),
        )
    }

    struct Cleanup(RedisStore);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = self.0.invalidate_all();
        }
    }

    #[test]
    fn memory_stampede_computes_once() {
        stampede(&MemoryStore::new("t"), 1);
    }

    #[test]
    fn redis_stampede_computes_once() {
        let (store, _cleanup) = redis();
        stampede(&store, 1);
    }

    #[test]
    fn memory_dead_holder_is_outwaited() {
        dead_holder(&MemoryStore::new("t"), 2);
    }

    #[test]
    fn redis_dead_holder_is_outwaited() {
        let (store, _cleanup) = redis();
        dead_holder(&store, 2);
    }

    #[test]
    fn memory_unlock_needs_the_token() {
        unlock_needs_the_token(&MemoryStore::new("t"), 3);
    }

    #[test]
    fn redis_unlock_needs_the_token() {
        let (store, _cleanup) = redis();
        unlock_needs_the_token(&store, 3);
    }

    #[test]
    fn a_panicking_holder_releases_the_lock() {
        let store = MemoryStore::new("t");
        let panicked = std::panic::catch_unwind(|| {
            let probe = || Ok(None::<u32>);
            once(&store, 4, QUERY_LOCK_TTL, probe, || -> Result<u32> {
                panic!("boom")
            })
        });
        assert!(panicked.is_err());
        assert!(
            LockStore::try_lock(&store, 4, "next", QUERY_LOCK_TTL).unwrap(),
            "lock left behind"
        );
    }

    #[test]
    fn unreachable_store_computes_alone() {
        let store = RedisStore::builder("redis://127.0.0.1:1/")
            .connect_timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        let slot = Slot(Mutex::new(None));
        let got = once(&store, 1, QUERY_LOCK_TTL, || slot.probe(), || Ok(5));
        assert_eq!(got.unwrap(), 5);
    }
}
