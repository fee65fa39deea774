//! What `#[cached_as]` expands to: the fallible steps before the body runs, and
//! the compile-time checks whose messages name the attribute's rules; on an
//! `async fn`, the async twins of the run and of the module's invalidation.

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

#[cfg(feature = "async")]
use super::nonblocking::through_async;
use super::{through, Options};
use crate::deps::Deps;
use crate::error::{Error, Result};
use crate::protocol::read_through::Plan;
use crate::runtime::{global, Cacheops};
use crate::store::CacheKey;

/// The result type of a `#[cached_as]` function.
#[diagnostic::on_unimplemented(
    message = "a #[cached_as] function must return `Result<T, E>` with `E: From<cacheops::Error>`",
    label = "this return type does not qualify"
)]
pub trait FnResult: Sized {
    /// `T` of `Result<T, E>`: the cached value.
    type Ok;
    /// `E` of `Result<T, E>`.
    type Err;
    /// A cacheops failure as this result.
    fn from_cache_error(error: Error) -> Self;
    /// A cacheops failure as this result's error.
    fn err_from_cache(error: Error) -> Self::Err;
    /// As a plain `Result`.
    fn into_result(self) -> std::result::Result<Self::Ok, Self::Err>;
    /// Back from a plain `Result`.
    fn from_result(result: std::result::Result<Self::Ok, Self::Err>) -> Self;
}

impl<T, E: From<Error>> FnResult for std::result::Result<T, E> {
    type Ok = T;
    type Err = E;

    fn from_cache_error(error: Error) -> Self {
        Err(E::from(error))
    }

    fn err_from_cache(error: Error) -> E {
        E::from(error)
    }

    fn into_result(self) -> Self {
        self
    }

    fn from_result(result: Self) -> Self {
        result
    }
}

/// An argument that is part of the key.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is part of the #[cached_as] key, so it must implement `serde::Serialize`",
    label = "not serializable",
    note = "exclude the argument from the key with `skip(<argument>)` in the attribute"
)]
pub trait KeyArg {}

impl<T: Serialize + ?Sized> KeyArg for T {}

/// Compile-time check of a key argument, spanned at its type.
pub fn assert_key_arg<T: KeyArg + ?Sized>() {}

/// Compile-time check of the return type, spanned at it.
pub fn assert_fn_result<T: FnResult>() {}

/// A call whose key and dependencies are known: what is left is the body.
pub struct Prepared<'h> {
    handle: &'h Cacheops,
    key: CacheKey,
    deps: Option<Deps>,
}

/// The handle, key and dependencies of a call. Takes closures so that the key's
/// and the samples' borrows of the arguments end here, before the body (which
/// may move the arguments) becomes a closure.
pub fn prepare<'h>(
    handle: Option<&'h Cacheops>,
    key: impl FnOnce() -> Result<CacheKey>,
    deps: impl FnOnce(&Cacheops) -> Result<Option<Deps>>,
) -> Result<Prepared<'h>> {
    let handle = match handle {
        Some(handle) => handle,
        None => global()?,
    };
    Ok(Prepared {
        handle,
        key: key()?,
        deps: deps(handle)?,
    })
}

impl<'h> Prepared<'h> {
    /// Runs the body through the cache.
    pub fn run<F>(self, options: &Options, body: impl FnOnce() -> F) -> F
    where
        F: FnResult,
        F::Ok: Serialize + DeserializeOwned,
    {
        let handle = self.handle;
        let plan = self.plan(options);
        let result = through(handle, plan, || body().into_result(), F::err_from_cache);
        F::from_result(result)
    }

    /// Runs the body of an `async fn` through the cache, on the handle's async
    /// store (feature `async`).
    #[cfg(feature = "async")]
    pub fn run_async<F, B>(
        self,
        options: &Options,
        body: B,
    ) -> impl Future<Output = F> + Send + use<'h, F, B>
    where
        F: FnResult + Send,
        F::Ok: Serialize + DeserializeOwned + Send,
        F::Err: Send,
        B: Future<Output = F> + Send,
    {
        let handle = self.handle;
        let plan = self.plan(options);
        let body = async { body.await.into_result() };
        let result = through_async(handle, plan, body, F::err_from_cache);
        async { F::from_result(result.await) }
    }

    fn plan(self, options: &Options) -> Option<Plan> {
        let handle = self.handle;
        handle.plan_for(self.key, self.deps, options.timeout, options.lock)
    }
}

/// The body of an `async fn` under `#[cached_as]` or `#[cached]`, as a future
/// whose output is the function's return type `R`: `?` and `return` in it then
/// know their type, as they do in the function.
pub fn async_body<R, B: Future<Output = R>>(body: B) -> B {
    body
}

/// What an async function's `key` module's `invalidate(args)` and
/// `invalidate_using(handle, args)` return: the key's entry dropped on the
/// async store of `handle` (`None`: the process-wide handle). Borrows nothing.
#[cfg(feature = "async")]
pub fn invalidate_async(
    handle: Option<&Cacheops>,
    key: Result<CacheKey>,
) -> impl Future<Output = Result<()>> + Send + use<> {
    let handle = match handle {
        Some(handle) => Ok(handle.clone()),
        None => global().cloned(),
    };
    async move { handle?.invalidate_key_async(key?).await }
}
