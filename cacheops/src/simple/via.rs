//! The simple cache's operations, written once as async code over where they
//! go: the handle's store through one of the protocol's I/O (`Blocking` for the
//! blocking calls, the async store's for `*_async`), or the file backend
//! (blocking calls only: `nonblocking.rs` never routes an async call there).
//! The blocking methods of [`SimpleCache`] drive these with `block_on`, which
//! completes in one poll; the async ones await them.

use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::cached::CachedOptions;
use super::file::{self, FileCache};
use super::{hash, SimpleCache};
use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::io::Io;
use crate::protocol::lock::{self, released, Locks};
use crate::runtime::Cacheops;
use crate::store::CacheKey;

/// A simple cache for one call, with the I/O it goes through.
pub(super) struct Via<'c, I> {
    route: Route<'c, I>,
    /// The cache's own default timeout, if it has one.
    timeout: Option<Duration>,
}

/// Where a call's operations go.
pub(super) enum Route<'c, I> {
    /// The handle's store, through `I`.
    Store(&'c Cacheops, I),
    /// A directory, read and written by blocking calls.
    File(&'c FileCache),
}

impl<'c, I: Io> Via<'c, I> {
    pub(super) fn new(cache: &SimpleCache, route: Route<'c, I>) -> Via<'c, I> {
        Via {
            route,
            timeout: cache.timeout,
        }
    }

    /// The value stored under `key`; an [`ErrorKind::CacheMiss`] error if
    /// there is none (see [`SimpleCache::get`]).
    pub(super) async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T> {
        let found = self.probe(key).await?;
        found
            .ok_or_else(|| Error::new(ErrorKind::CacheMiss, format!("no cached value for {key:?}")))
    }

    /// Stores `payload`, the encoding of a value, under `key` (see
    /// [`SimpleCache::set`]): a store failure degrades as the handle says.
    pub(super) async fn set(
        &self,
        key: &str,
        payload: &[u8],
        timeout: Option<Duration>,
    ) -> Result<()> {
        let result = self.put(key, payload, timeout).await;
        match &self.route {
            Route::Store(handle, _) => degrade_write(handle, result, "simple cache write"),
            Route::File(_) => result,
        }
    }

    /// Deletes what is stored under `key`, if anything.
    pub(super) async fn delete(&self, key: &str) -> Result<()> {
        match &self.route {
            Route::Store(handle, io) => {
                let deleted = io.simple_delete(hash(key)).await;
                degrade_write(handle, deleted, "simple cache delete")
            }
            Route::File(files) => files.remove(hash(key)),
        }
    }

    /// The cached result under `key`, else `compute`'s, stored unless it is an
    /// error (see [`SimpleCache::cached`]). `compute` is not polled unless this
    /// caller computes.
    pub(super) async fn cached<T, E>(
        &self,
        key: &str,
        options: &CachedOptions,
        compute: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
    {
        if !self.enabled() {
            return compute.await;
        }
        if let Some(value) = self.probe(key).await? {
            return Ok(value);
        }
        let fill = async {
            let value = compute.await?;
            // Encoded first: nothing borrowed from the value is held across the
            // store's await (an async fill stays `Send` for any value type).
            self.keep(key, codec::encode(&value), options.timeout).await;
            Ok(value)
        };
        if !options.lock {
            return fill.await;
        }
        let probe = || self.lookup(key);
        lock::compute_once(self, hash(key), options.lock_ttl(), probe, fill).await
    }

    /// Stores a value [`Via::cached`] computed: a failure (not encodable, too
    /// large, the store down) is logged and counted, and the value returned all
    /// the same.
    async fn keep(&self, key: &str, payload: Result<Vec<u8>>, timeout: Option<Duration>) {
        let kept = match payload {
            Ok(payload) => self.put(key, &payload, timeout).await,
            Err(e) => Err(e),
        };
        let Err(error) = kept else {
            return;
        };
        match &self.route {
            Route::Store(handle, _) => handle.core().not_stored(&error),
            Route::File(_) => tracing::warn!(%error, "cacheops: result returned, not cached"),
        }
    }

    /// [`Via::set`] without degrading failures.
    async fn put(&self, key: &str, payload: &[u8], timeout: Option<Duration>) -> Result<()> {
        let ttl = timeout.unwrap_or_else(|| self.default_timeout());
        match &self.route {
            Route::Store(handle, _) if !handle.config().enabled => Ok(()),
            Route::Store(handle, io) => {
                // Not held across the await: `format_args!` is not `Send`.
                handle.core().check_size(
                    payload.len(),
                    format_args!("the simple-cache value of {key:?}"),
                )?;
                io.simple_set(hash(key), payload, ttl).await
            }
            Route::File(files) => files.write(key, hash(key), payload, ttl),
        }
    }

    /// [`Via::lookup`], counted as a hit or a miss in the handle's stats.
    async fn probe<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let value = self.lookup(key).await?;
        if let Route::Store(handle, _) = &self.route {
            handle.core().tally.read(None, value.is_some());
        }
        Ok(value)
    }

    /// The value of `key` if cached: `Ok(None)` on a miss or a degraded failure.
    /// Not counted: lock waiters poll with it.
    async fn lookup<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let bytes = match &self.route {
            Route::Store(handle, io) => read_store(handle, io, hash(key)).await?,
            Route::File(files) => files.read(key, hash(key))?,
        };
        Ok(bytes.and_then(|b| codec::decode(&b)))
    }

    fn default_timeout(&self) -> Duration {
        match (&self.route, self.timeout) {
            (_, Some(timeout)) => timeout,
            (Route::Store(handle, _), None) => handle.config().timeout,
            (Route::File(_), None) => file::DEFAULT_TIMEOUT,
        }
    }

    /// Whether anything is cached at all (a store handle may be disabled).
    fn enabled(&self) -> bool {
        match &self.route {
            Route::Store(handle, _) => handle.config().enabled,
            Route::File(_) => true,
        }
    }
}

/// The simple cache's stampede locks: the store's, waiting as its I/O does
/// (tokio timers on the async path), or the directory's lock files.
impl<I: Io> Locks for Via<'_, I> {
    async fn try_lock(&self, key: CacheKey, token: &str, ttl: Duration) -> Result<bool> {
        match &self.route {
            Route::Store(_, io) => io.try_lock(key, token, ttl).await,
            Route::File(files) => files.try_lock(key, token, ttl),
        }
    }

    async fn unlock(&self, key: CacheKey, token: &str) -> Result<()> {
        match &self.route {
            Route::Store(_, io) => io.unlock(key, token).await,
            Route::File(files) => files.unlock(key, token),
        }
    }

    fn unlock_later(&self, key: CacheKey, token: String) {
        match &self.route {
            Route::Store(_, io) => io.unlock_later(key, token),
            // The file's lock is released where it is: a file system call.
            Route::File(files) => released(files.unlock(key, &token)),
        }
    }

    async fn pause(&self, pause: Duration) {
        match &self.route {
            Route::Store(_, io) => io.pause(pause).await,
            Route::File(_) => std::thread::sleep(pause),
        }
    }
}

async fn read_store(handle: &Cacheops, io: &impl Io, key: CacheKey) -> Result<Option<Vec<u8>>> {
    if !handle.config().enabled {
        return Ok(None);
    }
    match io.simple_get(key).await {
        Ok(found) => Ok(found),
        Err(e) => handle
            .core()
            .store_failed(e, "simple cache read")
            .map(|()| None),
    }
}

/// `result` of a write, its Redis failure degraded as the handle says; any other
/// error (a value too large) is the caller's to see.
fn degrade_write(handle: &Cacheops, result: Result<()>, during: &str) -> Result<()> {
    match result {
        Err(e) if e.is_redis() => handle.core().store_failed(e, during),
        other => other,
    }
}
