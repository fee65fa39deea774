//! The time-only simple cache: `cache().get/set/delete`, and [`cached`](macro@crate::cached) functions.
//!
//! Values are MessagePack, kept for a timeout and never invalidated by data
//! changes (that is `cached_as`). Two backends:
//!
//! - the handle's store ([`Cacheops::simple`], [`cache`]): keys `P:s:<32 hex>`
//!   under the handle's prefix, the hex being the xxh3-128 of the key you pass, so
//!   `invalidate_all` clears them with the rest; Redis errors follow the handle's
//!   `degrade_on_failure` (a failed read is a miss, a failed write is logged);
//! - a directory ([`SimpleCache::file`]): one file per key, see `file.rs`.
//!
//! A miss is an [`Error`] whose [`Error::is_miss`] is true: django-cacheops'
//! `CacheMiss`. An entry that no longer decodes as the type asked for is a miss.

mod cached;
mod file;
#[cfg(test)]
mod tests;

use std::future::{ready, Future};
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::io::block_on;
use crate::protocol::key::KeyHasher;
use crate::protocol::lock::Locks;
use crate::runtime::{global, Cacheops};
use crate::store::CacheKey;

pub use self::cached::{cached, CachedOptions, FnKey};

use self::file::FileCache;
/// Caches a function's result for a time, keyed by the function and its arguments
/// (django-cacheops' `@cached`).
///
/// ```
/// use std::sync::LazyLock;
/// use cacheops::{Cacheops, Config, SimpleCache};
///
/// static CACHE: LazyLock<SimpleCache> = LazyLock::new(|| {
///     Cacheops::new(Config::builder().url("memory://").build()).expect("memory store").simple()
/// });
///
/// #[cacheops::cached(timeout = 600, extra = "v2", lock = true, cache = CACHE)]
/// fn top_articles(category: i32, lang: &str) -> cacheops::Result<Vec<String>> {
///     Ok(vec![format!("best of {category} in {lang}")]) // some costly queries
/// }
///
/// fn main() -> cacheops::Result<()> {
///     assert_eq!(top_articles(3, "en")?, ["best of 3 in en"]);
///     let key = top_articles::key(3, "en")?; // "<module>::top_articles:<hash>"
///     assert!(CACHE.get::<Vec<String>>(&key).is_ok());
///     top_articles::invalidate(3, "en")?;
///     assert!(CACHE.get::<Vec<String>>(&key).unwrap_err().is_miss());
///     Ok(())
/// }
/// ```
///
/// Options, all optional:
/// - `timeout = 600` (seconds) or `timeout = <Duration expr>`: how long a result
///   lives; default: the cache's default timeout.
/// - `extra = <expr>`: any `Serialize` value added to the key (it may use the
///   arguments).
/// - `lock` or `lock = true`: stampede protection (see [`CachedOptions::lock`]);
///   `lock_timeout = <secs or Duration>` sets the lock's TTL (default 5 s).
/// - `cache = <expr>`: the [`SimpleCache`] to use (anything that derefs to one,
///   such as a `static LazyLock<SimpleCache>` of a file cache); default
///   [`cache()`], the process-wide handle's.
///
/// The function:
/// - must return `cacheops::Result<T>`, or `Result<T, E>` where
///   `E: From<cacheops::Error>`: cache failures (when not degraded) come back as
///   `E`; the function's own errors are returned as they are and never cached.
///   `T: Serialize + DeserializeOwned`;
/// - takes arguments that are plain names of `Serialize` types: each is part of
///   the key (serialized with serde, never `Debug`), with the function's module
///   path and name. It must be a free function (not in an `impl` block, where
///   its module could not go), and cannot be `async`, `const`, or generic over
///   types (lifetimes are fine);
/// - gets a sibling module of the same name with `key(args) -> Result<String>` and
///   `invalidate(args) -> Result<()>`, taking the function's arguments. Both see the
///   enclosing module's items (`use super::*`), so a function nested in another
///   function can only use module-level types in its signature.
///
/// Changing what the function returns changes nothing in its key: an entry that
/// no longer decodes is a miss, but one that still decodes (e.g. two fields of the
/// same type swapped) would be served; change `extra` when that matters.
pub use cacheops_derive::cached;

/// A simple (time-only) cache: in the handle's store, or in a directory.
/// Cheap to clone; clones share the same entries.
///
/// ```
/// use std::time::Duration;
/// let handle = cacheops::Cacheops::new(cacheops::Config::builder().url("memory://").build())?;
/// let cache = handle.simple();
/// cache.set("answer", &42u32, Some(Duration::from_secs(60)))?;
/// assert_eq!(cache.get::<u32>("answer")?, 42);
/// cache.delete("answer")?;
/// assert!(cache.get::<u32>("answer").unwrap_err().is_miss());
/// # Ok::<(), cacheops::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SimpleCache {
    backend: Backend,
    /// Overrides the backend's default timeout.
    timeout: Option<Duration>,
}

#[derive(Clone, Debug)]
enum Backend {
    Store(Cacheops),
    File(FileCache),
}

/// The process-wide handle's simple cache ([`global`]).
///
/// ```no_run
/// use cacheops::cache;
/// cache()?.set("greeting", "hello", None)?;
/// match cache()?.get::<String>("greeting") {
///     Ok(greeting) => println!("{greeting}"),
///     Err(e) if e.is_miss() => println!("not cached"),
///     Err(e) => return Err(e),
/// }
/// # Ok::<(), cacheops::Error>(())
/// ```
pub fn cache() -> Result<SimpleCache> {
    Ok(global()?.simple())
}

impl Cacheops {
    /// This handle's simple cache: keys under its prefix, default timeout and
    /// failure handling from its [`Config`](crate::Config).
    pub fn simple(&self) -> SimpleCache {
        SimpleCache {
            backend: Backend::Store(self.clone()),
            timeout: None,
        }
    }
}

impl SimpleCache {
    /// A simple cache in the directory `dir` (created if missing), one file per
    /// key; default timeout one hour. Several processes may share a directory.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("cacheops-doc-{}", std::process::id()));
    /// let cache = cacheops::SimpleCache::file(&dir)?;
    /// cache.set("k", &[1, 2, 3], None)?;
    /// assert_eq!(cache.get::<Vec<i32>>("k")?, [1, 2, 3]);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), cacheops::Error>(())
    /// ```
    pub fn file(dir: impl Into<PathBuf>) -> Result<SimpleCache> {
        Ok(SimpleCache {
            backend: Backend::File(FileCache::open(dir.into())?),
            timeout: None,
        })
    }

    /// The same cache with another default timeout (used when `set` gets `None`).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> SimpleCache {
        self.timeout = Some(timeout);
        self
    }

    /// The value stored under `key`; an error of kind [`ErrorKind::CacheMiss`] if
    /// there is none, it expired, or it does not decode as a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T> {
        self.probe(key)?
            .ok_or_else(|| Error::new(ErrorKind::CacheMiss, format!("no cached value for {key:?}")))
    }

    /// Stores `value` under `key` for `timeout` (`None`: the default timeout).
    ///
    /// In the handle's store, a value whose encoding is larger than the maximum
    /// value size ([`ConfigBuilder::max_value_size`](crate::ConfigBuilder::max_value_size))
    /// is not stored: an error of kind [`ErrorKind::TooLarge`], whatever
    /// `degrade_on_failure`.
    pub fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let result = self.put(key, value, timeout);
        match &self.backend {
            Backend::Store(handle) => degrade_write(handle, result, "simple cache write"),
            Backend::File(_) => result,
        }
    }

    /// Stores a value [`SimpleCache::cached`] computed: a failure (too large, the
    /// store down) is logged and counted, and the value returned all the same.
    fn keep<T: Serialize + ?Sized>(&self, key: &str, value: &T, timeout: Option<Duration>) {
        let Err(error) = self.put(key, value, timeout) else {
            return;
        };
        match &self.backend {
            Backend::Store(handle) => handle.core().not_stored(&error),
            Backend::File(_) => tracing::warn!(%error, "cacheops: result returned, not cached"),
        }
    }

    /// [`SimpleCache::set`] without degrading failures.
    fn put<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let payload = codec::encode(value)?;
        let ttl = timeout.unwrap_or_else(|| self.default_timeout());
        match &self.backend {
            Backend::Store(handle) if !handle.config().enabled => Ok(()),
            Backend::Store(handle) => {
                let what = format_args!("the simple-cache value of {key:?}");
                handle.core().check_size(payload.len(), what)?;
                handle.core().store().simple_set(hash(key), &payload, ttl)
            }
            Backend::File(files) => files.write(key, hash(key), &payload, ttl),
        }
    }

    /// Deletes what is stored under `key`, if anything.
    pub fn delete(&self, key: &str) -> Result<()> {
        match &self.backend {
            Backend::Store(handle) => degrade_write(
                handle,
                handle.core().store().simple_delete(hash(key)),
                "simple cache delete",
            ),
            Backend::File(files) => files.remove(hash(key)),
        }
    }

    /// Removes expired (and unreadable) entries of a file cache and returns how
    /// many files it removed. Redis expires keys itself: 0 there.
    pub fn cleanup(&self) -> Result<usize> {
        match &self.backend {
            Backend::Store(_) => Ok(0),
            Backend::File(files) => files.cleanup(),
        }
    }

    /// [`SimpleCache::lookup`], counted as a hit or a miss in the handle's stats.
    fn probe<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let value = self.lookup(key)?;
        if let Backend::Store(handle) = &self.backend {
            handle.core().tally.read(None, value.is_some());
        }
        Ok(value)
    }

    /// The value of `key` if cached: `Ok(None)` on a miss or a degraded failure.
    /// Not counted: lock waiters poll with it.
    fn lookup<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let bytes = match &self.backend {
            Backend::Store(handle) => read_store(handle, hash(key))?,
            Backend::File(files) => files.read(key, hash(key))?,
        };
        Ok(bytes.and_then(|b| codec::decode(&b)))
    }

    fn default_timeout(&self) -> Duration {
        match (&self.backend, self.timeout) {
            (_, Some(timeout)) => timeout,
            (Backend::Store(handle), None) => handle.config().timeout,
            (Backend::File(_), None) => file::DEFAULT_TIMEOUT,
        }
    }

    /// Whether anything is cached at all (a store handle may be disabled).
    fn enabled(&self) -> bool {
        match &self.backend {
            Backend::Store(handle) => handle.config().enabled,
            Backend::File(_) => true,
        }
    }
}

/// The simple cache's locks are blocking: its callers are (`#[cached]` on an
/// `async fn` goes through the handle's async store instead).
impl Locks for SimpleCache {
    fn try_lock(
        &self,
        key: CacheKey,
        token: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send {
        ready(match &self.backend {
            Backend::Store(handle) => handle.core().store().try_lock(key, token, ttl),
            Backend::File(files) => files.try_lock(key, token, ttl),
        })
    }

    fn unlock(&self, key: CacheKey, token: &str) -> impl Future<Output = Result<()>> + Send {
        ready(match &self.backend {
            Backend::Store(handle) => handle.core().store().unlock(key, token),
            Backend::File(files) => files.unlock(key, token),
        })
    }

    fn unlock_later(&self, key: CacheKey, token: String) {
        if let Err(e) = block_on(self.unlock(key, &token)) {
            // The lock expires on its own; waiters are delayed, not wrong.
            tracing::warn!(error = %e, "cacheops: could not release a lock");
        }
    }

    fn pause(&self, pause: Duration) -> impl Future<Output = ()> + Send {
        std::thread::sleep(pause);
        ready(())
    }
}

/// The 128-bit hash a user's key is stored under: Redis key names and file names
/// stay short and free of special characters whatever the key.
pub(crate) fn hash(key: &str) -> CacheKey {
    KeyHasher::new("simple", "").bytes(key.as_bytes()).finish()
}

fn read_store(handle: &Cacheops, key: CacheKey) -> Result<Option<Vec<u8>>> {
    if !handle.config().enabled {
        return Ok(None);
    }
    match handle.core().store().simple_get(key) {
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
