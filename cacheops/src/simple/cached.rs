//! `cached`: a function's result in the simple cache, keyed by the function and
//! its arguments. The `#[cacheops::cached]` attribute expands to these calls.

use std::borrow::Borrow;
use std::fmt::Write as _;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::SimpleCache;
use crate::codec;
use crate::error::{Error, Result};
use crate::protocol::io::block_on;
use crate::protocol::key::KeyHasher;

/// Lock TTL of `cached` when [`CachedOptions::lock_timeout`] is not set.
const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(5);

/// The key of one call of a cached function: its identity, then each argument and
/// any `extra`, each serialized with serde (MessagePack) and length-prefixed, then
/// hashed. Arguments must serialize the same way in every process: prefer
/// `BTreeMap` to `HashMap`, whose order varies.
///
/// ```
/// use cacheops::FnKey;
/// let key = FnKey::new("blog::top_articles").arg(&3).arg("en").finish()?;
/// assert!(key.starts_with("blog::top_articles:"));
/// assert_ne!(key, FnKey::new("blog::top_articles").arg(&3).arg("fr").finish()?);
/// # Ok::<(), cacheops::Error>(())
/// ```
#[must_use]
pub struct FnKey {
    name: String,
    hasher: KeyHasher,
    error: Option<Error>,
}

impl std::fmt::Debug for FnKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl FnKey {
    /// Starts the key of a call of `function` (a unique name, e.g.
    /// `concat!(module_path!(), "::top_articles")`).
    pub fn new(function: &str) -> FnKey {
        let mut hasher = KeyHasher::new("fn", "cached");
        hasher.bytes(function.as_bytes());
        FnKey {
            name: function.to_owned(),
            hasher,
            error: None,
        }
    }

    /// Adds an argument.
    pub fn arg<T: Serialize + ?Sized>(self, arg: &T) -> FnKey {
        self.part(b"arg", arg)
    }

    /// Adds the `extra` part (tagged apart from arguments).
    pub fn extra<T: Serialize + ?Sized>(self, extra: &T) -> FnKey {
        self.part(b"extra", extra)
    }

    fn part<T: Serialize + ?Sized>(mut self, tag: &[u8], value: &T) -> FnKey {
        match codec::encode(value) {
            Ok(bytes) => {
                self.hasher.bytes(tag).bytes(&bytes);
            }
            Err(e) => self.error = self.error.or(Some(e)),
        }
        self
    }

    /// The key: `<function>:<32 hex>`, or the error of an argument that failed to
    /// serialize.
    pub fn finish(self) -> Result<String> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let mut key = self.name;
        let _ = write!(key, ":{:032x}", self.hasher.finish());
        Ok(key)
    }
}

/// Options of a [`cached`] call (and of the `#[cached]` attribute).
///
/// ```
/// use std::time::Duration;
/// let options = cacheops::CachedOptions::new()
///     .timeout(Duration::from_secs(600))
///     .lock(true);
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[must_use]
pub struct CachedOptions {
    pub(super) timeout: Option<Duration>,
    pub(super) lock: bool,
    lock_timeout: Option<Duration>,
}

impl CachedOptions {
    /// The defaults: the cache's default timeout, no lock.
    pub fn new() -> CachedOptions {
        CachedOptions::default()
    }

    /// How long the result lives.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Stampede protection: concurrent misses of one key compute once, the others
    /// wait for the result (at most twice the lock timeout, then compute).
    pub fn lock(mut self, lock: bool) -> Self {
        self.lock = lock;
        self
    }

    /// How long one caller may compute alone before the lock expires (default 5 s).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = Some(timeout);
        self
    }

    /// The lock's TTL.
    pub(super) fn lock_ttl(&self) -> Duration {
        self.lock_timeout.unwrap_or(DEFAULT_LOCK_TTL)
    }
}

/// Runs `compute` through the process-wide simple cache ([`crate::cache`]) under
/// `key`: the cached result if there is one, else `compute`'s, stored unless it
/// is an error. Errors of `compute` are returned as they are and never cached. A
/// result that cannot be stored (over the maximum value size, or the store
/// failing) is logged and returned all the same.
///
/// ```no_run
/// use cacheops::{cached, CachedOptions, FnKey};
/// fn top_articles(category: i32) -> cacheops::Result<Vec<String>> {
///     let key = FnKey::new("top_articles").arg(&category).finish()?;
///     cached(&key, &CachedOptions::new().lock(true), || {
///         Ok(vec![format!("the best of {category}")]) // some costly queries
///     })
/// }
/// ```
pub fn cached<T, E, F>(key: &str, options: &CachedOptions, compute: F) -> Result<T, E>
where
    T: Serialize + DeserializeOwned,
    E: From<Error>,
    F: FnOnce() -> Result<T, E>,
{
    crate::simple::cache()?.cached(key, options, compute)
}

impl SimpleCache {
    /// [`cached`] on this cache.
    ///
    /// ```
    /// # let handle = cacheops::Cacheops::new(cacheops::Config::builder().url("memory://").build())?;
    /// let cache = handle.simple();
    /// let options = cacheops::CachedOptions::new();
    /// let first: cacheops::Result<u32> = cache.cached("k", &options, || Ok(1));
    /// let second: cacheops::Result<u32> = cache.cached("k", &options, || Ok(2));
    /// assert_eq!((first?, second?), (1, 1));
    /// # Ok::<(), cacheops::Error>(())
    /// ```
    pub fn cached<T, E, F>(&self, key: &str, options: &CachedOptions, compute: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnOnce() -> Result<T, E>,
    {
        block_on(self.blocking().cached(key, options, async { compute() }))
    }
}

impl SimpleCache {
    /// What `#[cached]` expands to: one call, so that a wrong error type is one
    /// compiler error (`E: From<cacheops::Error>`), not one per `?`.
    #[doc(hidden)]
    pub fn __cached_fn<C, T, E, F>(
        key: Result<String>,
        cache: Result<C>,
        options: &CachedOptions,
        compute: F,
    ) -> Result<T, E>
    where
        C: Borrow<SimpleCache>,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnOnce() -> Result<T, E>,
    {
        cache?.borrow().cached(&key?, options, compute)
    }
}
