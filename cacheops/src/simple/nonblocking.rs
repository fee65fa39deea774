//! The simple cache for async code (feature `async`): the same operations as
//! the blocking ones (`via.rs`, written once), awaited on the handle's async
//! store; `cached_async` with `lock` waits on tokio timers.
//!
//! The file backend is blocking (each operation is file system calls, and its
//! lock waits sleep the thread): an async call on a file cache fails with an
//! [`ErrorKind::Config`] error rather than block a runtime thread.

// The public futures are `impl Future + Send` written by hand, not `async fn`:
// see `query/nonblocking.rs` on why `Send` is proven at the definition.
#![allow(clippy::manual_async_fn)]

use std::borrow::Borrow;
use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::cached::CachedOptions;
use super::via::{Route, Via};
use super::{Backend, SimpleCache};
use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::io_async::Async;

impl SimpleCache {
    /// [`SimpleCache::get`] for async code, on the handle's async store.
    ///
    /// Like every `*_async` method of the simple cache, it fails with an
    /// [`ErrorKind::Config`] error on a file cache ([`SimpleCache::file`], whose
    /// operations block), or on a handle whose store has no async twin
    /// ([`Cacheops::with_store`](crate::Cacheops::with_store)).
    ///
    /// ```
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// # runtime.block_on(async {
    /// use std::time::Duration;
    /// let handle = cacheops::Cacheops::new(cacheops::Config::builder().url("memory://").build())?;
    /// let cache = handle.simple();
    /// cache.set_async("answer", &42u32, Some(Duration::from_secs(60))).await?;
    /// assert_eq!(cache.get_async::<u32>("answer").await?, 42);
    /// cache.delete_async("answer").await?;
    /// assert!(cache.get_async::<u32>("answer").await.unwrap_err().is_miss());
    /// # Ok::<(), cacheops::Error>(()) })?;
    /// # Ok::<(), cacheops::Error>(())
    /// ```
    pub fn get_async<'a, T>(
        &'a self,
        key: &'a str,
    ) -> impl Future<Output = Result<T>> + Send + use<'a, T>
    where
        T: DeserializeOwned + Send,
    {
        async move { self.nonblocking()?.get(key).await }
    }

    /// [`SimpleCache::set`] for async code. `value` is encoded when this is
    /// called: the future does not borrow it.
    pub fn set_async<'a, T>(
        &'a self,
        key: &'a str,
        value: &T,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send + use<'a, T>
    where
        T: Serialize + ?Sized,
    {
        let payload = codec::encode(value);
        async move { self.nonblocking()?.set(key, &payload?, timeout).await }
    }

    /// [`SimpleCache::delete`] for async code.
    pub fn delete_async<'a>(
        &'a self,
        key: &'a str,
    ) -> impl Future<Output = Result<()>> + Send + use<'a> {
        async move { self.nonblocking()?.delete(key).await }
    }

    /// [`SimpleCache::cached`] for async code: `compute` is a future, polled
    /// only on a miss. With [`CachedOptions::lock`], concurrent misses of `key`
    /// compute once and the other tasks wait on tokio timers.
    ///
    /// ```
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// # runtime.block_on(async {
    /// # let handle = cacheops::Cacheops::new(cacheops::Config::builder().url("memory://").build())?;
    /// let cache = handle.simple();
    /// let options = cacheops::CachedOptions::new().lock(true);
    /// let first: u32 = cache.cached_async("k", &options, async { Ok::<_, cacheops::Error>(1) }).await?;
    /// let second: u32 = cache.cached_async("k", &options, async { Ok::<_, cacheops::Error>(2) }).await?;
    /// assert_eq!((first, second), (1, 1));
    /// # Ok::<(), cacheops::Error>(()) })?;
    /// # Ok::<(), cacheops::Error>(())
    /// ```
    pub fn cached_async<'a, T, E, F>(
        &'a self,
        key: &'a str,
        options: &CachedOptions,
        compute: F,
    ) -> impl Future<Output = Result<T, E>> + Send + use<'a, T, E, F>
    where
        T: Serialize + DeserializeOwned + Send,
        E: From<Error> + Send,
        F: Future<Output = Result<T, E>> + Send,
    {
        let options = *options;
        async move {
            let via = self.nonblocking()?;
            via.cached(key, &options, compute).await
        }
    }

    /// This cache for an async call: the handle's async store. A file cache has
    /// none (see the module's doc).
    fn nonblocking(&self) -> Result<Via<'_, Async<'_>>> {
        let route = match &self.backend {
            Backend::Store(handle) => Route::Store(handle, handle.core().nonblocking()?),
            Backend::File(_) => return Err(file_is_blocking()),
        };
        Ok(Via::new(self, route))
    }

    /// What `#[cached]` on an `async fn` expands to (see [`SimpleCache::__cached_fn`]).
    #[doc(hidden)]
    pub fn __cached_fn_async<C, T, E, F>(
        key: Result<String>,
        cache: Result<C>,
        options: &CachedOptions,
        compute: F,
    ) -> impl Future<Output = Result<T, E>> + Send + use<C, T, E, F>
    where
        C: Borrow<SimpleCache> + Send,
        T: Serialize + DeserializeOwned + Send,
        E: From<Error> + Send,
        F: Future<Output = Result<T, E>> + Send,
    {
        let options = *options;
        async move {
            let cache = cache?;
            cache.borrow().cached_async(&key?, &options, compute).await
        }
    }

    /// What the `invalidate(args)` of an async `#[cached]` function's module
    /// returns: the entry of `key` deleted. Borrows nothing.
    #[doc(hidden)]
    pub fn __invalidate_fn_async(
        key: Result<String>,
        cache: Result<SimpleCache>,
    ) -> impl Future<Output = Result<()>> + Send + use<> {
        async move { cache?.delete_async(&key?).await }
    }
}

/// [`SimpleCache::cached_async`] on the process-wide simple cache
/// ([`crate::cache`]): what `#[cacheops::cached]` on an `async fn` does.
///
/// ```no_run
/// use cacheops::{cached_async, CachedOptions, FnKey};
/// async fn top_articles(category: i32) -> cacheops::Result<Vec<String>> {
///     let key = FnKey::new("top_articles").arg(&category).finish()?;
///     cached_async(&key, &CachedOptions::new().lock(true), async {
///         Ok(vec![format!("the best of {category}")]) // some costly queries
///     })
///     .await
/// }
/// ```
pub fn cached_async<'a, T, E, F>(
    key: &'a str,
    options: &CachedOptions,
    compute: F,
) -> impl Future<Output = Result<T, E>> + Send + use<'a, T, E, F>
where
    T: Serialize + DeserializeOwned + Send,
    E: From<Error> + Send,
    F: Future<Output = Result<T, E>> + Send,
{
    let options = *options;
    async move {
        let cache = super::cache()?;
        cache.cached_async(key, &options, compute).await
    }
}

fn file_is_blocking() -> Error {
    Error::new(
        ErrorKind::Config,
        "a file cache has no async path: its operations and lock waits block the thread",
    )
    .with_hint(
        "use a store-backed cache (Cacheops::simple, cacheops::cache) from async code, \
         or call the blocking methods inside tokio::task::spawn_blocking",
    )
}
