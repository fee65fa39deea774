//! `cached_as`: a function's result cached and invalidated like the data it names.
//!
//! A call names *samples* ([`Sample`]): Diesel queries, objects (rows) or models.
//! Their dependencies are united per table into one [`Deps`], and the result is
//! stored through the same race-fenced read-through as every cached query
//! (`protocol/read_through.rs`): stamps are read before the closure runs, and the result
//! is stored only if no invalidation touched them meanwhile. So a write that any
//! sample's query would see, a change of a sampled object, or any write to a
//! sampled model drops the cached result, and nothing else does.
//!
//! The key is a hash of the call site, the serialized arguments, the `extra`
//! value of [`Options`] and the result type's shape, each length-prefixed; never
//! of `Debug` output or a process-seeded hasher, so every process agrees on it.
//! Samples are not part of the key: they must follow from the arguments and
//! `extra` (as they do when a sample filters on an argument). Two calls with equal
//! key parts but different samples are never served each other's result (the
//! stamps differ, so the lookup misses) but keep replacing each other's entry.

use std::collections::btree_map::{BTreeMap, Entry};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use diesel::query_builder::{AsQuery, QueryFragment, QueryId};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::analyse::analyse;
use crate::backend::CacheBackend;
use crate::codec;
use crate::deps::{Conj, Deps, TableDeps};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{CacheRow, Cacheable, ColumnEquality, ModelInfo};
use crate::protocol::core::Core;
use crate::protocol::io::{block_on, Io};
use crate::protocol::key::KeyHasher;
use crate::protocol::read_through::{read_through_with, Plan, Storable};
use crate::protocol::shape::shape_of;
use crate::runtime::{global, Cacheops};
use crate::store::CacheKey;
use crate::value::{Equality, Value};

/// One thing a cached function's result depends on: a query, an object or a model.
///
/// ```
/// # use diesel::prelude::*;
/// # diesel::table! { articles (id) { id -> Integer, category_id -> Integer } }
/// use cacheops::Sample;
/// use diesel::sqlite::Sqlite;
/// let by_category = Sample::query::<Sqlite, _>(articles::table.filter(articles::category_id.eq(3)));
/// let whole_table = Sample::table("articles");
/// # let _ = (by_category, whole_table);
/// ```
pub struct Sample<'a>(Source<'a>);

enum Source<'a> {
    Ready(Deps),
    /// Resolved with the handle of the call: query analysis needs its memo and limits.
    Lazy(Box<Resolve<'a>>),
}

/// Dependencies of a sample, `None` when its SQL cannot be analysed.
type Resolve<'a> = dyn Fn(&Cacheops) -> Result<Option<Deps>> + 'a;

impl std::fmt::Debug for Sample<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Source::Ready(deps) => f.debug_tuple("Sample").field(deps).finish(),
            Source::Lazy(_) => f.write_str("Sample(<unresolved>)"),
        }
    }
}

impl<'a> Sample<'a> {
    /// The rows a Diesel query reads, rendered for backend `DB`: a write the query
    /// could see invalidates (granular like `.cached()`). A query whose SQL cannot
    /// be analysed makes the whole call uncached, as it would be for `.cached()`.
    pub fn query<DB, Q>(query: Q) -> Sample<'a>
    where
        DB: CacheBackend,
        Q: AsQuery,
        Q::Query: QueryFragment<DB> + QueryId + 'a,
    {
        let query = query.as_query();
        Sample(Source::Lazy(Box::new(move |handle| {
            Ok(analyse::<DB, _>(handle, &query)?.map(|a| a.deps(handle)))
        })))
    }

    /// One row: its primary key. Saving, updating or deleting that row invalidates
    /// (whether the old or the new state is written), and so does inserting a row
    /// with that key again; writes to other rows do not. A key column whose values
    /// do not compare by bytes (e.g. a float) widens to the whole table.
    pub fn object<DB, M>(obj: &'a M) -> Sample<'a>
    where
        DB: CacheBackend,
        M: CacheRow<DB>,
    {
        Sample(Source::Lazy(Box::new(move |_| {
            object_deps(M::INFO, obj.row_values()?).map(Some)
        })))
    }

    /// Every row of model `M`: any write to its table invalidates.
    pub fn model<M: Cacheable>() -> Sample<'static> {
        Sample::table(M::INFO.table)
    }

    /// Every row of `table`: any write to it invalidates.
    pub fn table(table: &str) -> Sample<'static> {
        Sample::deps(Deps {
            tables: vec![(Arc::from(table), TableDeps::Any)],
        })
    }

    /// Dependencies computed elsewhere (e.g. `cacheops::deps` of some SQL).
    pub fn deps(deps: Deps) -> Sample<'static> {
        Sample(Source::Ready(deps))
    }

    fn resolve(&self, handle: &Cacheops) -> Result<Option<Deps>> {
        match &self.0 {
            Source::Ready(deps) => Ok(Some(deps.clone())),
            Source::Lazy(resolve) => resolve(handle),
        }
    }
}

/// The dependency of one row: a conjunction on its primary key.
fn object_deps(model: &ModelInfo, values: Vec<Value>) -> Result<Deps> {
    let mut terms = Vec::with_capacity(model.primary_key.len());
    for key in model.primary_key {
        let value = model
            .columns
            .iter()
            .position(|c| c == key)
            .and_then(|i| values.get(i));
        match value {
            Some(value) if is_exact(model, key, value) => {
                terms.push((Arc::from(*key), value.clone()))
            }
            // A key we cannot compare by bytes can only be tracked table-wide.
            _ => return Ok(whole_table(model.table)),
        }
    }
    if terms.is_empty() {
        return Ok(whole_table(model.table));
    }
    terms.sort();
    let conj = TableDeps::Conjs(vec![Conj(terms)]);
    Ok(Deps {
        tables: vec![(Arc::from(model.table), conj)],
    })
}

/// The same decision the query analysis makes for `column = value`.
fn is_exact(model: &ModelInfo, column: &str, value: &Value) -> bool {
    match model.column_equality(column) {
        ColumnEquality::Exact => true,
        ColumnEquality::Inexact => false,
        ColumnEquality::ByType => value.equality == Equality::Exact,
    }
}

fn whole_table(table: &str) -> Deps {
    Deps {
        tables: vec![(Arc::from(table), TableDeps::Any)],
    }
}

/// The union of several dependencies, per table: `Any` absorbs, conjunctions are
/// merged in canonical order without duplicates, and a table past
/// `max_conjunctions` widens to `Any` (a write must not fan out to many keys).
pub(crate) fn union(parts: impl IntoIterator<Item = Deps>, max_conjunctions: usize) -> Deps {
    let mut tables: BTreeMap<Arc<str>, TableDeps> = BTreeMap::new();
    for (table, deps) in parts.into_iter().flat_map(|d| d.tables) {
        match tables.entry(table) {
            Entry::Vacant(slot) => {
                slot.insert(deps);
            }
            Entry::Occupied(mut slot) => merge(slot.get_mut(), deps),
        }
    }
    let tables = tables
        .into_iter()
        .map(|(table, deps)| (table, canonical(deps, max_conjunctions)))
        .collect();
    Deps { tables }
}

fn merge(into: &mut TableDeps, other: TableDeps) {
    match (&mut *into, other) {
        (TableDeps::Any, _) => {}
        (_, TableDeps::Any) => *into = TableDeps::Any,
        (TableDeps::Conjs(mine), TableDeps::Conjs(theirs)) => mine.extend(theirs),
    }
}

fn canonical(deps: TableDeps, max_conjunctions: usize) -> TableDeps {
    match deps {
        TableDeps::Any => TableDeps::Any,
        TableDeps::Conjs(mut conjs) => {
            conjs.sort();
            conjs.dedup();
            if conjs.len() > max_conjunctions {
                TableDeps::Any
            } else {
                TableDeps::Conjs(conjs)
            }
        }
    }
}

/// Per-call settings of [`cached_as`]: timeout and `extra` key part.
///
/// ```
/// use std::time::Duration;
/// let options = cacheops::Options::new()
///     .timeout(Duration::from_secs(600))
///     .extra(&("v2", 5));
/// # let _ = options;
/// ```
#[derive(Debug, Default)]
pub struct Options {
    timeout: Option<Duration>,
    lock: bool,
    /// The encoded `extra`; an encoding error is reported when the call runs.
    extra: Option<Result<Vec<u8>>>,
}

impl Options {
    /// No timeout of its own (the configured default applies) and no `extra`.
    pub fn new() -> Options {
        Options::default()
    }

    /// How long the result lives at most (default: the configuration's timeout).
    pub fn timeout(mut self, timeout: Duration) -> Options {
        self.timeout = Some(timeout);
        self
    }

    /// Stampede protection: when many callers miss at once, one computes and the
    /// others wait for its result (bounded; see `protocol/lock.rs`).
    pub fn lock(mut self, lock: bool) -> Options {
        self.lock = lock;
        self
    }

    /// A value added to the key, for results that depend on more than the
    /// arguments (a version, a page size...). Serialized with serde.
    pub fn extra<T: Serialize + ?Sized>(mut self, extra: &T) -> Options {
        self.extra = Some(codec::encode(extra));
        self
    }

    fn extra_bytes(&self) -> Result<&[u8]> {
        match &self.extra {
            None => Ok(&[]),
            Some(Ok(bytes)) => Ok(bytes),
            Some(Err(e)) => Err(Error::new(
                ErrorKind::Encode,
                format!("could not encode `extra`: {e}"),
            )),
        }
    }
}

/// The cache key of a [`cached_as`] call: call site, arguments, `extra` and the
/// shape of result type `R`, each length-prefixed.
///
/// ```
/// use cacheops::{cached_as_key, Options};
/// let a = cached_as_key::<Vec<String>, _>("blog::titles", &(1, 5), &Options::new())?;
/// let b = cached_as_key::<Vec<String>, _>("blog::titles", &(15,), &Options::new())?;
/// assert_ne!(a, b);
/// # Ok::<(), cacheops::Error>(())
/// ```
pub fn cached_as_key<R, A>(site: &str, args: &A, options: &Options) -> Result<CacheKey>
where
    R: DeserializeOwned + 'static,
    A: Serialize + ?Sized,
{
    let args = codec::encode(args)?;
    Ok(KeyHasher::new("fn", "cached_as")
        .bytes(site.as_bytes())
        .bytes(&args)
        .bytes(options.extra_bytes()?)
        .u128(shape_of::<R>())
        .finish())
}

impl Cacheops {
    /// Runs `compute` through the cache: its result is keyed by `site`, `args` and
    /// `options`' extra, and invalidated by any change of the `samples`.
    ///
    /// `compute` may fail with any error type that cacheops errors convert into;
    /// a failure is returned as is and never cached.
    ///
    /// ```no_run
    /// # use diesel::prelude::*;
    /// # diesel::table! { articles (id) { id -> Integer, category_id -> Integer, title -> Text } }
    /// use cacheops::{Options, Sample};
    /// use diesel::sqlite::Sqlite;
    /// # fn run(cache: &cacheops::Cacheops, conn: &mut SqliteConnection, cat: i32) -> cacheops::Result<()> {
    /// let in_cat = articles::table.filter(articles::category_id.eq(cat));
    /// let titles: Vec<String> = cache.cached_as(
    ///     &[Sample::query::<Sqlite, _>(in_cat)],
    ///     "blog::titles",
    ///     &cat,
    ///     &Options::new(),
    ///     || {
    ///         let titles = articles::table
    ///             .filter(articles::category_id.eq(cat))
    ///             .select(articles::title)
    ///             .load(conn)?;
    ///         Ok::<_, cacheops::Error>(titles)
    ///     },
    /// )?;
    /// # Ok(()) }
    /// ```
    pub fn cached_as<R, A, E>(
        &self,
        samples: &[Sample<'_>],
        site: &str,
        args: &A,
        options: &Options,
        compute: impl FnOnce() -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E>
    where
        R: Serialize + DeserializeOwned + 'static,
        A: Serialize + ?Sized,
        E: From<Error>,
    {
        let plan = self.cached_as_plan::<R, A>(samples, site, args, options)?;
        through(self, plan, compute, E::from)
    }

    /// The plan of a [`Cacheops::cached_as`] call (and of its async twin): its
    /// key, its samples' dependencies, its timeout and lock.
    fn cached_as_plan<R, A>(
        &self,
        samples: &[Sample<'_>],
        site: &str,
        args: &A,
        options: &Options,
    ) -> Result<Option<Plan>>
    where
        R: DeserializeOwned + 'static,
        A: Serialize + ?Sized,
    {
        let key = cached_as_key::<R, A>(site, args, options)?;
        let deps = self.resolve_samples(samples)?;
        Ok(self.plan_for(key, deps, options.timeout, options.lock))
    }

    /// The united dependencies of `samples`; `None` when one cannot be analysed.
    #[doc(hidden)]
    pub fn resolve_samples(&self, samples: &[Sample<'_>]) -> Result<Option<Deps>> {
        let mut parts = Vec::with_capacity(samples.len());
        for sample in samples {
            match sample.resolve(self)? {
                Some(deps) => parts.push(deps),
                None => return Ok(None),
            }
        }
        Ok(Some(union(parts, self.config().max_conjunctions)))
    }

    /// Drops the cached result under `key` (e.g. from [`cached_as_key`] or a
    /// decorated function's `key(args)`); its dependencies are left alone.
    pub fn invalidate_key(&self, key: CacheKey) -> Result<()> {
        let core = self.core();
        block_on(drop_key(core, &core.blocking(), key))
    }

    /// The one place function and fragment caching build a [`Plan`]: `None` when
    /// caching is off or the dependencies are unknown. Per-call options that the
    /// read-through learns later (e.g. a stampede lock) belong here.
    pub(crate) fn plan_for(
        &self,
        key: CacheKey,
        deps: Option<Deps>,
        timeout: Option<Duration>,
        lock: bool,
    ) -> Option<Plan> {
        if !self.config().enabled {
            return None;
        }
        Some(Plan {
            key,
            deps: Arc::new(deps?),
            ttl: timeout.unwrap_or(self.config().timeout),
            lock,
        })
    }
}

/// The read-through for a blocking computation failing with its own error type `E`: its
/// error is kept aside (never cached) and returned as is; cacheops' own errors
/// become `E` through `convert`.
pub(crate) fn through<R, E>(
    handle: &Cacheops,
    plan: Option<Plan>,
    compute: impl FnOnce() -> std::result::Result<R, E>,
    convert: impl FnOnce(Error) -> E,
) -> std::result::Result<R, E>
where
    R: Serialize + DeserializeOwned,
{
    let core = handle.core();
    block_on(through_with(
        core,
        &core.blocking(),
        plan,
        async { compute() },
        convert,
    ))
}

/// [`through`] for any computation, on any of the protocol's I/O: the one
/// implementation both paths run (`cached_as/nonblocking.rs` awaits it on the
/// async store).
pub(crate) async fn through_with<R, E>(
    core: &Core,
    io: &impl Io,
    plan: Option<Plan>,
    compute: impl Future<Output = std::result::Result<R, E>>,
    convert: impl FnOnce(Error) -> E,
) -> std::result::Result<R, E>
where
    R: Serialize + DeserializeOwned,
{
    let mut failed = None;
    let compute = async {
        compute.await.map_err(|e| {
            failed = Some(e);
            Error::new(ErrorKind::Database, "the cached computation failed")
        })
    };
    let result = read_through_with(core, io, plan, &Storable::default(), compute).await;
    match (result, failed) {
        (_, Some(e)) => Err(e),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(convert(e)),
    }
}

/// Drops the cached value of `key` (not its stamps), counted as an
/// invalidation; a store failure degrades as the handle says.
async fn drop_key(core: &Core, io: &impl Io, key: CacheKey) -> Result<()> {
    core.tally.invalidated(None);
    match io.delete(key).await {
        Ok(()) => Ok(()),
        Err(e) => core.store_failed(e, "invalidation"),
    }
}

/// [`Cacheops::cached_as`] on the process-wide handle.
///
/// # As an attribute
/// `#[cacheops::cached_as(<samples>, <options>)]` on a function caches its result
/// the same way. The function must return `Result<T, E>` with
/// `E: From<cacheops::Error>` (its errors are never cached), take plain named
/// arguments and no `self`, and have no generics (lifetimes are fine). It may be
/// an `async fn` (feature `async`): see below.
///
/// Samples, in any number, may use the function's arguments:
/// - a Diesel query expression, e.g. `articles::table.filter(articles::category_id.eq(cat))`;
/// - `object(expr)`: one row, an `&M` of a `#[derive(Cacheable)]` model;
/// - `model(Type)`: any write to that model's table;
/// - `table(expr)`: any write to the table named by a `&str`.
///
/// Options:
/// - `backend = diesel::pg::Pg` (or `diesel::sqlite::Sqlite`): needed by query
///   and object samples, which are rendered/encoded for that backend;
/// - `timeout = 600` (seconds) or `timeout = <Duration expression>`;
/// - `lock = true`: stampede protection, as [`Options::lock`];
/// - `extra = <expr>`: added to the key; may use the key arguments;
/// - `handle = <expr>`: a `&Cacheops` to use instead of the process-wide one;
///   an argument named there is left out of the key;
/// - `skip(a, b)`: arguments left out of the key. Arguments of type `&mut _`
///   (a connection) are always left out; every other one must be
///   `serde::Serialize` (a compile error says so otherwise).
///
/// Next to the function, a module of the same name holds `key(args)`,
/// `invalidate(args)` and `invalidate_using(&handle, args)`, taking the key
/// arguments only. The call site's identity is the function's module path and
/// name, so renaming or moving the function starts with fresh keys. The function
/// must be a module item (that module sits beside it), not a function-local item.
///
/// On an `async fn` (feature `async`), the body runs as a future through
/// `Cacheops::cached_as_async`'s path: the same key, samples and options as
/// the blocking function would have, on the handle's async store, a lock's
/// waiters sleeping on tokio timers. The function stays an `async fn` whose
/// future is `Send` (so its body must be: a compile error says so otherwise),
/// and its module's `invalidate(args)` and `invalidate_using(&handle, args)`
/// return futures (`Send`, borrowing nothing) to await; `key(args)` does no I/O
/// and stays blocking. See `cacheops::cached_as_async` for an example.
///
/// ```no_run
/// # use diesel::prelude::*;
/// # diesel::table! { articles (id) { id -> Integer, category_id -> Integer, title -> Text } }
/// # #[derive(cacheops::Cacheable)] #[cacheops(app = "blog")] struct Article { id: i32 }
/// #[cacheops::cached_as(
///     articles::table.filter(articles::category_id.eq(cat)),
///     backend = diesel::sqlite::Sqlite,
///     extra = count,
///     timeout = 600
/// )]
/// fn titles(conn: &mut SqliteConnection, cat: i32, count: i64) -> cacheops::Result<Vec<String>> {
///     let titles = articles::table
///         .filter(articles::category_id.eq(cat))
///         .select(articles::title)
///         .limit(count)
///         .load(conn)?;
///     Ok(titles)
/// }
///
/// # fn main() -> cacheops::Result<()> {
/// # let conn = &mut SqliteConnection::establish(":memory:").unwrap();
/// let five = titles(conn, 3, 5)?;
/// titles::invalidate(3, 5)?;
/// let key = titles::key(3, 5)?;
/// # Ok(()) }
/// ```
///
/// As a function:
///
/// ```no_run
/// use cacheops::{Options, Sample};
/// # #[derive(cacheops::Cacheable)] #[cacheops(app = "blog")] struct Article { id: i32 }
/// # diesel::table! { articles (id) { id -> Integer } }
/// let count: cacheops::Result<usize> = cacheops::cached_as(
///     &[Sample::model::<Article>()],
///     "blog::article_stats",
///     &(),
///     &Options::new(),
///     || Ok(42),
/// );
/// ```
pub fn cached_as<R, A, E>(
    samples: &[Sample<'_>],
    site: &str,
    args: &A,
    options: &Options,
    compute: impl FnOnce() -> std::result::Result<R, E>,
) -> std::result::Result<R, E>
where
    R: Serialize + DeserializeOwned + 'static,
    A: Serialize + ?Sized,
    E: From<Error>,
{
    global()?.cached_as(samples, site, args, options, compute)
}

/// Items `#[cached_as]` expands to. Not public API.
#[doc(hidden)]
pub(crate) mod __macro;
#[cfg(feature = "async")]
mod nonblocking;

#[cfg(feature = "async")]
pub use nonblocking::cached_as_async;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Equality;

    fn int(n: u8) -> Value {
        Value {
            ty: 23,
            equality: Equality::Exact,
            bytes: Some(vec![n].into()),
        }
    }

    fn conj(col: &str, n: u8) -> Conj {
        Conj(vec![(Arc::from(col), int(n))])
    }

    fn deps(tables: Vec<(&str, TableDeps)>) -> Deps {
        Deps {
            tables: tables.into_iter().map(|(t, d)| (Arc::from(t), d)).collect(),
        }
    }

    #[test]
    fn union_sorts_tables_merges_and_dedups_conjunctions() {
        let a = deps(vec![(
            "b",
            TableDeps::Conjs(vec![conj("x", 2), conj("x", 1)]),
        )]);
        let b = deps(vec![
            ("a", TableDeps::Conjs(vec![])),
            ("b", TableDeps::Conjs(vec![conj("x", 1), conj("y", 1)])),
        ]);
        let got = union([a, b], 64);
        let want = deps(vec![
            ("a", TableDeps::Conjs(vec![])),
            (
                "b",
                TableDeps::Conjs(vec![conj("x", 1), conj("x", 2), conj("y", 1)]),
            ),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn any_absorbs_either_side_and_too_many_conjunctions_widen() {
        let some = deps(vec![("t", TableDeps::Conjs(vec![conj("x", 1)]))]);
        let any = deps(vec![("t", TableDeps::Any)]);
        let want = deps(vec![("t", TableDeps::Any)]);
        assert_eq!(union([some.clone(), any.clone()], 64), want);
        assert_eq!(union([any, some.clone()], 64), want);
        let two = deps(vec![("t", TableDeps::Conjs(vec![conj("x", 2)]))]);
        assert_eq!(union([some, two], 1), want);
    }

    static MODEL: ModelInfo = ModelInfo {
        label: "blog.Article",
        table: "articles",
        primary_key: &["id"],
        columns: &["title", "id"],
        equality: &[ColumnEquality::ByType, ColumnEquality::ByType],
        sql_types: &[],
        profile: None,
    };

    #[test]
    fn an_object_depends_on_its_primary_key_only() {
        let got = object_deps(&MODEL, vec![int(9), int(7)]).unwrap();
        assert_eq!(
            got,
            deps(vec![("articles", TableDeps::Conjs(vec![conj("id", 7)]))])
        );
        let float = Value {
            equality: Equality::Inexact,
            ..int(7)
        };
        let widened = object_deps(&MODEL, vec![int(9), float]).unwrap();
        assert_eq!(widened, deps(vec![("articles", TableDeps::Any)]));
    }

    #[test]
    fn keys_differ_by_site_args_extra_and_result_type() {
        let key = |site: &str, args: &(i32, &str), extra: Option<i32>| {
            let options = extra.map_or(Options::new(), |e| Options::new().extra(&e));
            cached_as_key::<Vec<String>, _>(site, args, &options).unwrap()
        };
        let base = key("f", &(1, "a"), None);
        assert_eq!(base, key("f", &(1, "a"), None));
        assert_ne!(base, key("g", &(1, "a"), None));
        assert_ne!(base, key("f", &(2, "a"), None));
        assert_ne!(base, key("f", &(1, "a"), Some(0)));
        assert_ne!(key("f", &(1, "a"), Some(0)), key("f", &(1, "a"), Some(1)));
        let other = cached_as_key::<Vec<i64>, _>("f", &(1, "a"), &Options::new()).unwrap();
        assert_ne!(base, other);
    }

    #[test]
    fn results_are_cached_until_a_sampled_table_changes() {
        let config = crate::Config::builder().url("memory://").build();
        let cache = Cacheops::new(config).unwrap();
        let mut runs = 0;
        let mut call = || {
            cache
                .cached_as(&[Sample::table("t")], "site", &1, &Options::new(), || {
                    runs += 1;
                    Ok::<_, Error>(runs)
                })
                .unwrap()
        };
        assert_eq!((call(), call()), (1, 1));
        cache.invalidate_table("t").unwrap();
        assert_eq!(call(), 2);
    }

    #[test]
    fn a_result_over_the_maximum_value_size_is_returned_not_stored() {
        let config = crate::Config::builder()
            .url("memory://")
            .max_value_size(64)
            .build();
        let cache = Cacheops::new(config).unwrap();
        let mut runs = 0;
        let mut call = |len: usize| {
            cache
                .cached_as(&[Sample::table("t")], "big", &len, &Options::new(), || {
                    runs += 1;
                    Ok::<_, Error>("x".repeat(len))
                })
                .unwrap()
        };
        assert_eq!(call(100).len(), 100);
        assert_eq!(call(100).len(), 100, "computed again: nothing was stored");
        assert_eq!((call(10).len(), call(10).len()), (10, 10));
        assert_eq!(runs, 3, "a value that fits is stored");
        let stats = cache.stats();
        assert_eq!((stats.too_large, stats.errors), (2, 0));
    }

    #[test]
    fn with_lock_concurrent_misses_compute_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let cache = Cacheops::new(crate::Config::builder().url("memory://").build()).unwrap();
        let runs = AtomicUsize::new(0);
        let options = Options::new().lock(true);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    let value = cache
                        .cached_as(&[Sample::table("t")], "locked", &(), &options, || {
                            runs.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(100));
                            Ok::<_, Error>(7)
                        })
                        .unwrap();
                    assert_eq!(value, 7);
                });
            }
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_timeout_of_the_call_applies() {
        let cache = Cacheops::new(crate::Config::builder().url("memory://").build()).unwrap();
        let options = Options::new().timeout(Duration::from_millis(50));
        let mut runs = 0;
        let mut call = || {
            cache
                .cached_as(&[], "short", &(), &options, || {
                    runs += 1;
                    Ok::<_, Error>(runs)
                })
                .unwrap()
        };
        assert_eq!((call(), call()), (1, 1));
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(call(), 2);
    }

    #[test]
    fn a_failed_computation_keeps_its_error_and_is_not_cached() {
        #[derive(Debug, PartialEq)]
        enum MyError {
            Mine,
            Cache,
        }
        impl From<Error> for MyError {
            fn from(_: Error) -> Self {
                MyError::Cache
            }
        }
        let cache = Cacheops::new(crate::Config::builder().url("memory://").build()).unwrap();
        let fail = cache.cached_as(&[], "s", &(), &Options::new(), || {
            Err::<i32, _>(MyError::Mine)
        });
        assert_eq!(fail, Err(MyError::Mine));
        let ok = cache.cached_as(&[], "s", &(), &Options::new(), || Ok::<_, MyError>(3));
        assert_eq!(ok, Ok(3));
    }
}
