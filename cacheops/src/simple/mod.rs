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
//! A miss is an [`Error`](crate::Error) whose [`Error::is_miss`](crate::Error::is_miss) is true: django-cacheops'
//! `CacheMiss`. An entry that no longer decodes as the type asked for is a miss.

mod cached;
mod file;
#[cfg(feature = "async")]
mod nonblocking;
#[cfg(test)]
mod tests;
mod via;

use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::error::Result;
use crate::protocol::io::{block_on, Blocking};
use crate::protocol::key::KeyHasher;
use crate::runtime::{global, Cacheops};
use crate::store::CacheKey;

pub use self::cached::{cached, CachedOptions, FnKey};
#[cfg(feature = "async")]
pub use self::nonblocking::cached_async;

use self::file::FileCache;
use self::via::{Route, Via};
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
///   its module could not go), and cannot be `const` or generic over types
///   (lifetimes are fine);
/// - gets a sibling module of the same name with `key(args) -> Result<String>` and
///   `invalidate(args) -> Result<()>`, taking the function's arguments. Both see the
///   enclosing module's items (`use super::*`), so a function nested in another
///   function can only use module-level types in its signature.
///
/// It may be an `async fn` (feature `async`): its body then runs as a future
/// through `SimpleCache::cached_async` (the same key and options, on the
/// handle's async store; with `lock`, waiters sleep on tokio timers). The
/// function's future is `Send`, so its body must be; its module's
/// `invalidate(args)` returns a future (`Send`, borrowing nothing) to await,
/// `key(args)` stays blocking (no I/O). On a file cache an async call fails
/// with an [`ErrorKind::Config`](crate::ErrorKind::Config) error: its operations
/// block, so they have no async path.
///
/// ```no_run
/// # #[cfg(feature = "async")]
/// #[cacheops::cached(timeout = 600, lock)]
/// async fn top_articles(category: i32) -> cacheops::Result<Vec<String>> {
///     Ok(vec![format!("best of {category}")]) // some costly async queries
/// }
///
/// # #[cfg(feature = "async")]
/// # async fn run() -> cacheops::Result<()> {
/// let top = top_articles(3).await?;
/// top_articles::invalidate(3).await?;
/// # Ok(()) }
/// # fn main() {}
/// ```
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

    /// The value stored under `key`; an error of kind [`ErrorKind::CacheMiss`](crate::ErrorKind::CacheMiss) if
    /// there is none, it expired, or it does not decode as a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T> {
        block_on(self.blocking().get(key))
    }

    /// Stores `value` under `key` for `timeout` (`None`: the default timeout).
    ///
    /// In the handle's store, a value whose encoding is larger than the maximum
    /// value size ([`ConfigBuilder::max_value_size`](crate::ConfigBuilder::max_value_size))
    /// is not stored: an error of kind [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge), whatever
    /// `degrade_on_failure`.
    pub fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let payload = codec::encode(value)?;
        block_on(self.blocking().set(key, &payload, timeout))
    }

    /// Deletes what is stored under `key`, if anything.
    pub fn delete(&self, key: &str) -> Result<()> {
        block_on(self.blocking().delete(key))
    }

    /// Removes expired (and unreadable) entries of a file cache and returns how
    /// many files it removed. Redis expires keys itself: 0 there.
    pub fn cleanup(&self) -> Result<usize> {
        match &self.backend {
            Backend::Store(_) => Ok(0),
            Backend::File(files) => files.cleanup(),
        }
    }

    /// This cache for a blocking call: the handle's blocking store, or the
    /// directory.
    fn blocking(&self) -> Via<'_, Blocking<'_>> {
        let route = match &self.backend {
            Backend::Store(handle) => Route::Store(handle, handle.core().blocking()),
            Backend::File(files) => Route::File(files),
        };
        Via::new(self, route)
    }
}

/// The 128-bit hash a user's key is stored under: Redis key names and file names
/// stay short and free of special characters whatever the key.
pub(crate) fn hash(key: &str) -> CacheKey {
    KeyHasher::new("simple", "").bytes(key.as_bytes()).finish()
}
