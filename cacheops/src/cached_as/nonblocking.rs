//! `cached_as` for async code (feature `async`): the same key, samples, plan and
//! read-through as the blocking call (`through_with`, the one implementation),
//! awaited on the handle's async store, whose stampede-lock waits are tokio
//! timers.

// The public futures are `impl Future + Send` written by hand, not `async fn`:
// see `query/nonblocking.rs` on why `Send` is proven at the definition.
#![allow(clippy::manual_async_fn)]

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{drop_key, through_with, Options, Sample};
use crate::error::{Error, Result};
use crate::protocol::read_through::Plan;
use crate::runtime::{global, Cacheops};
use crate::store::CacheKey;

impl Cacheops {
    /// [`Cacheops::cached_as`] for async code: `compute` is a future, polled only
    /// on a miss, and the cache is this handle's async store (no thread is ever
    /// blocked, a stampede lock's waiters sleep on tokio timers). The same call
    /// site, arguments and options give the same key as the blocking call, so
    /// both paths share entries.
    ///
    /// The key and the samples' dependencies are computed when this is called,
    /// so the future holds neither `samples` nor `args`. Samples are taken by
    /// value (an array, a `Vec`) as well as by reference: a [`Sample`] is not
    /// `Send`, so a temporary `&[Sample]` held across the `.await` would make
    /// the caller's future (a `tokio::spawn`ed task, an axum handler) not
    /// `Send`, where an array moved in is dropped before the future exists.
    ///
    /// A handle whose store has no async twin ([`Cacheops::with_store`]) fails
    /// with an [`ErrorKind::Config`](crate::ErrorKind::Config) error, converted
    /// to `E`.
    ///
    /// ```no_run
    /// # use diesel::prelude::*;
    /// # diesel::table! { articles (id) { id -> Integer, category_id -> Integer, title -> Text } }
    /// use cacheops::{Options, Sample};
    /// use diesel::pg::Pg;
    /// use diesel_async::RunQueryDsl;
    /// # async fn run(cache: &cacheops::Cacheops, conn: &mut diesel_async::AsyncPgConnection, cat: i32) -> cacheops::Result<()> {
    /// let in_cat = articles::table.filter(articles::category_id.eq(cat));
    /// let titles: Vec<String> = cache
    ///     .cached_as_async(
    ///         [Sample::query::<Pg, _>(in_cat)],
    ///         "blog::titles",
    ///         &cat,
    ///         &Options::new().lock(true),
    ///         async {
    ///             let titles = articles::table
    ///                 .filter(articles::category_id.eq(cat))
    ///                 .select(articles::title)
    ///                 .load(conn)
    ///                 .await?;
    ///             Ok::<_, cacheops::Error>(titles)
    ///         },
    ///     )
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn cached_as_async<'h, 's, S, R, A, E, F>(
        &'h self,
        samples: S,
        site: &str,
        args: &A,
        options: &Options,
        compute: F,
    ) -> impl Future<Output = std::result::Result<R, E>> + Send + use<'h, 's, S, R, A, E, F>
    where
        S: AsRef<[Sample<'s>]>,
        R: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + ?Sized,
        E: From<Error> + Send,
        F: Future<Output = std::result::Result<R, E>> + Send,
    {
        let plan = self.cached_as_plan::<R, A>(samples.as_ref(), site, args, options);
        drop(samples);
        async move { through_async(self, plan?, compute, E::from).await }
    }

    /// [`Cacheops::invalidate_key`] on the handle's async store.
    ///
    /// ```no_run
    /// # async fn run(cache: &cacheops::Cacheops) -> cacheops::Result<()> {
    /// let key = cacheops::cached_as_key::<Vec<String>, _>("blog::titles", &3, &cacheops::Options::new())?;
    /// cache.invalidate_key_async(key).await?;
    /// # Ok(()) }
    /// ```
    pub fn invalidate_key_async(
        &self,
        key: CacheKey,
    ) -> impl Future<Output = Result<()>> + Send + use<'_> {
        async move {
            let core = self.core();
            drop_key(core, &core.nonblocking()?, key).await
        }
    }
}

/// The async read-through of a computation failing with its own error type `E`
/// (see [`super::through`]), on `handle`'s async store.
pub(crate) fn through_async<'h, R, E, F>(
    handle: &'h Cacheops,
    plan: Option<Plan>,
    compute: F,
    convert: fn(Error) -> E,
) -> impl Future<Output = std::result::Result<R, E>> + Send + use<'h, R, E, F>
where
    R: Serialize + DeserializeOwned + Send,
    E: Send,
    F: Future<Output = std::result::Result<R, E>> + Send,
{
    async move {
        let core = handle.core();
        let io = core.nonblocking().map_err(convert)?;
        through_with(core, &io, plan, compute, convert).await
    }
}

/// [`Cacheops::cached_as_async`] on the process-wide handle.
///
/// `#[cacheops::cached_as(...)]` on an `async fn` caches it this way (see
/// [`cached_as()`](crate::cached_as()) for the attribute):
///
/// ```no_run
/// # use diesel::prelude::*;
/// # diesel::table! { articles (id) { id -> Integer, category_id -> Integer, title -> Text } }
/// use diesel_async::{AsyncPgConnection, RunQueryDsl};
///
/// #[cacheops::cached_as(
///     articles::table.filter(articles::category_id.eq(cat)),
///     backend = diesel::pg::Pg,
///     lock = true,
///     timeout = 600
/// )]
/// async fn titles(conn: &mut AsyncPgConnection, cat: i32) -> cacheops::Result<Vec<String>> {
///     let titles = articles::table
///         .filter(articles::category_id.eq(cat))
///         .select(articles::title)
///         .load(conn)
///         .await?;
///     Ok(titles)
/// }
///
/// # async fn run(conn: &mut AsyncPgConnection) -> cacheops::Result<()> {
/// let in_three = titles(conn, 3).await?;
/// titles::invalidate(3).await?; // a future: the async store's round trip
/// let key = titles::key(3)?; // no I/O
/// # Ok(()) }
/// ```
///
/// As a function:
///
/// ```no_run
/// use cacheops::{Options, Sample};
/// # #[derive(cacheops::Cacheable)] #[cacheops(app = "blog")] struct Article { id: i32 }
/// # diesel::table! { articles (id) { id -> Integer } }
/// # async fn run() -> cacheops::Result<()> {
/// let count: usize = cacheops::cached_as_async(
///     [Sample::model::<Article>()],
///     "blog::article_stats",
///     &(),
///     &Options::new(),
///     async { Ok::<_, cacheops::Error>(42) },
/// )
/// .await?;
/// # Ok(()) }
/// ```
pub fn cached_as_async<'s, S, R, A, E, F>(
    samples: S,
    site: &str,
    args: &A,
    options: &Options,
    compute: F,
) -> impl Future<Output = std::result::Result<R, E>> + Send + use<'s, S, R, A, E, F>
where
    S: AsRef<[Sample<'s>]>,
    R: Serialize + DeserializeOwned + Send + 'static,
    A: Serialize + ?Sized,
    E: From<Error> + Send,
    F: Future<Output = std::result::Result<R, E>> + Send,
{
    let call = global().map(|handle| handle.cached_as_async(samples, site, args, options, compute));
    async move { call?.await }
}
