//! The cacheops handle: configuration, store, parsed-SQL memo and failure state.
//!
//! Most programs [`install`] one handle for the whole process and use the free
//! functions and `.cached()`; tests and multi-tenant programs may hold several
//! [`Cacheops`] and pass one explicitly (`.cache().using(&handle)`).

use std::any::TypeId;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::automatic::{infer, Read};
use crate::backend::Dialect;
use crate::config::{Config, Profile};
use crate::deps::{Deps, Policy, Template};
use crate::error::{Error, ErrorKind, Result};
use crate::functions::{self, Volatility};
use crate::memo::{ByKey, ByTypeId, Memo};
use crate::model::{models_of_table, ModelInfo};
use crate::registry::Target;
use crate::stats::{Counted, Counters, ModelCounters, Stats};
use crate::store::{CacheKey, MemoryStore, QueryStore, RedisStore, Store};
use crate::value::{Equality, Value};

/// A query's SQL with its parsed template.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub(crate) sql: Arc<str>,
    pub(crate) template: Arc<Template>,
}

/// Work a module above the handle starts with every new handle (the change
/// feed's configured consumer), registered with `inventory::submit!` so that the
/// handle needs no knowledge of it.
pub(crate) struct OnStart(pub(crate) fn(&Cacheops));

inventory::collect!(OnStart);

/// A [`Cacheops`] that does not keep it alive (for threads that must end with it).
pub(crate) struct WeakCacheops(std::sync::Weak<Inner>);

impl WeakCacheops {
    /// The handle, while any clone of it lives.
    pub(crate) fn upgrade(&self) -> Option<Cacheops> {
        self.0.upgrade().map(|inner| Cacheops { inner })
    }
}

/// A handle on one cache: cheap to clone, shared by threads.
#[derive(Clone)]
pub struct Cacheops {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Box<dyn Store>,
    /// Parsed templates by SQL text.
    templates: Memo<Arc<Template>>,
    /// What each SQL text reads, for automatic caching (`automatic/infer.rs`).
    reads: Memo<Option<Read>>,
    /// SQL and template of query types whose SQL their type fixes, by the type's
    /// query id, one map per dialect: a hit of such a query renders no SQL.
    fixed: [RwLock<ByTypeId<Prepared>>; 2],
    /// Dependencies of cached queries by cache key (see [`Cacheops::deps_of_key`]).
    deps: ByKey<Arc<Deps>>,
    /// Invalidations that could not reach the store: until they get through,
    /// reads of what they name bypass the cache.
    pending: Mutex<Missed>,
    has_pending: AtomicBool,
    /// What functions unknown to the built-in lists do, from the catalog.
    functions: RwLock<HashMap<String, Volatility>>,
    /// Columns whose collation compares other than by bytes, from the catalog of
    /// each session identity met.
    collations: RwLock<Collations>,
    /// Whether a schema-qualified table has the primary key its model names, by
    /// session identity and table, from the catalog.
    columns: RwLock<HashMap<(u128, String), bool>>,
    /// Told of every invalidation a committed write missed (see
    /// [`Cacheops::on_missed_invalidation`]).
    missed_hook: RwLock<Option<MissedHook>>,
    stats: Counters,
    /// Whether a too-large value was logged at WARN yet: the next ones are logged
    /// at DEBUG, since the same result is too large on every miss.
    too_large_warned: AtomicBool,
    /// Per-model counters; also held by the stats publisher thread.
    models: Arc<ModelCounters>,
    /// Where the registry and stats are published (Redis stores only).
    publish: Option<Target>,
    /// Profiles by table, resolved once: a hit must not parse profile strings.
    profiles: RwLock<HashMap<&'static str, Profile>>,
    fill_hook: RwLock<Option<FillHook>>,
}

type FillHook = Arc<dyn Fn() + Send + Sync>;
type MissedHook = Arc<dyn Fn(&Error) + Send + Sync>;

/// Columns compared by a collation other than bytes: conditions on them widen.
#[derive(Default)]
struct Collations {
    /// Databases whose catalog was read.
    scanned: std::collections::HashSet<u128>,
    /// `(table, column)`, lower case.
    columns: std::collections::HashSet<(String, String)>,
}

/// What failed invalidations left owed: tables, or everything under the prefix.
#[derive(Default)]
struct Missed {
    tables: BTreeSet<String>,
    all: bool,
}

impl Missed {
    /// Retries what is owed; whether anything is still owed.
    fn retry(&mut self, store: &dyn QueryStore) -> bool {
        if self.all && store.invalidate_all().is_ok() {
            // Everything was dropped: the tables owe nothing more.
            self.all = false;
            self.tables.clear();
        }
        self.tables
            .retain(|table| store.invalidate_table(table).is_err());
        self.all || !self.tables.is_empty()
    }

    /// Whether reads of `deps` must bypass the cache.
    fn blocks(&self, deps: &Deps) -> bool {
        let owed = |t: &str| self.tables.contains(&t.to_ascii_lowercase());
        self.all || deps.tables.iter().any(|(t, _)| owed(t))
    }
}

impl std::fmt::Debug for Cacheops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cacheops")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Cacheops {
    /// A handle on the store the configuration names (`redis://...` or `memory://`).
    /// Connecting to Redis is lazy: this succeeds while Redis is down.
    pub fn new(config: Config) -> Result<Cacheops> {
        let store: Box<dyn Store> = match config.url.split_once("://") {
            Some(("memory", _)) => Box::new(MemoryStore::new(&config.prefix)),
            Some(("redis" | "rediss" | "unix" | "redis+unix", _)) => {
                let mut builder = RedisStore::builder(&config.url)
                    .prefix(&config.prefix)
                    .connect_timeout(config.redis_timeout)
                    .io_timeout(config.redis_timeout);
                if let Some(tier) = config.local_tier {
                    builder = builder.local_tier(tier);
                }
                let store = builder.build()?;
                // Only a handle on Redis publishes its registry and counters there.
                let target = Target::of(&config);
                let handle = Cacheops::build(config, Box::new(store), Some(target));
                handle.start_publisher();
                return Ok(handle);
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("unsupported cache URL `{}`", config.url),
                ))
            }
        };
        Ok(Cacheops::with_store(config, store))
    }

    /// A handle on a store you built yourself.
    pub fn with_store(config: Config, store: Box<dyn Store>) -> Cacheops {
        Cacheops::build(config, store, None)
    }

    fn build(config: Config, store: Box<dyn Store>, publish: Option<Target>) -> Cacheops {
        let models = Arc::<ModelCounters>::default();
        let store = Box::new(Counted {
            inner: store,
            counters: models.clone(),
        });
        let inner = Inner {
            config,
            store,
            models,
            publish,
            templates: Memo::default(),
            reads: Memo::default(),
            fixed: Default::default(),
            deps: ByKey::default(),
            pending: Mutex::default(),
            has_pending: AtomicBool::new(false),
            stats: Counters::default(),
            too_large_warned: AtomicBool::new(false),
            profiles: RwLock::default(),
            fill_hook: RwLock::default(),
            missed_hook: RwLock::default(),
            functions: RwLock::default(),
            columns: RwLock::default(),
            collations: RwLock::default(),
        };
        let handle = Cacheops {
            inner: Arc::new(inner),
        };
        for hook in inventory::iter::<OnStart> {
            (hook.0)(&handle);
        }
        handle
    }

    /// A reference that does not keep the handle alive.
    pub(crate) fn downgrade(&self) -> WeakCacheops {
        WeakCacheops(Arc::downgrade(&self.inner))
    }

    /// The configuration this handle runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    /// Counters since this handle was made.
    pub fn stats(&self) -> Stats {
        let mut stats = self.inner.stats.snapshot();
        if let Some(local) = self.store().local_tier() {
            stats.local_hits = local.hits;
            stats.local_ready = local.ready;
        }
        stats
    }

    /// The per-model counters and where to publish them (see `stats.rs`).
    pub(crate) fn model_counters(&self) -> (&Arc<ModelCounters>, Option<&Target>) {
        (&self.inner.models, self.inner.publish.as_ref())
    }

    pub(crate) fn count_hit(&self, hit: bool) {
        let counter = if hit {
            &self.inner.stats.hits
        } else {
            &self.inner.stats.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_refused(&self) {
        self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The parsed template of `sql`, parsing it only the first time it is seen.
    pub(crate) fn template(&self, sql: &str, dialect: Dialect) -> Result<Arc<Template>> {
        self.inner.templates.get_or_try(sql, dialect, || {
            Ok(Arc::new(Template::parse(sql, dialect)?))
        })
    }

    /// What `sql` reads as automatic caching sees it, inferred only the first time
    /// it is seen; `None` when it is not an automatically cacheable read, or when
    /// its dependencies cannot be analysed (remembered, so such a read costs one
    /// memo lookup and logs once, not on every call).
    pub(crate) fn read_of(&self, sql: &str, dialect: Dialect) -> Option<Read> {
        let make = || {
            let read = infer(sql, dialect)?;
            if let Err(e) = self.template(sql, dialect) {
                tracing::warn!(error = %e, sql, "cacheops: SQL not understood, never cached automatically");
                return None;
            }
            Some(read)
        };
        self.inner.reads.get_or(sql, dialect, make)
    }

    /// What calling the function `name` may do: a built-in's known answer, else
    /// the catalog's (asked through `lookup` with its schema and own name, once
    /// per handle; a failed lookup is not remembered and counts as "may write").
    pub(crate) fn volatility(
        &self,
        name: &str,
        dialect: Dialect,
        lookup: impl FnOnce(Option<&str>, &str) -> Option<Vec<(String, String)>>,
    ) -> Volatility {
        if let Some(known) = functions::known(name, dialect) {
            return known;
        }
        let (schema, own) = functions::schema_and_name(name);
        let judged = remembered(&self.inner.functions, name, || {
            let found = lookup(schema, own)?;
            Some(functions::from_catalog(
                found.iter().map(|(s, v)| (s.as_str(), v.as_str())),
            ))
        });
        judged.unwrap_or(Volatility::MayWrite)
    }

    /// Reads, once per database (`database`: its hashed name and server), which
    /// columns are collated other than by bytes (`lookup` asks the catalog; a
    /// failed lookup is asked again next time).
    pub(crate) fn learn_collations(
        &self,
        database: u128,
        lookup: impl FnOnce() -> Option<Vec<(String, String)>>,
    ) {
        let known = self
            .inner
            .collations
            .read()
            .unwrap_or_else(|e| e.into_inner());
        if known.scanned.contains(&database) {
            return;
        }
        drop(known);
        let Some(found) = lookup() else {
            return;
        };
        let mut known = self
            .inner
            .collations
            .write()
            .unwrap_or_else(|e| e.into_inner());
        known.scanned.insert(database);
        known.columns.extend(found);
    }

    /// Whether `table.column` compares by a collation other than bytes.
    fn collated(&self, table: &str, column: &str) -> bool {
        let known = self
            .inner
            .collations
            .read()
            .unwrap_or_else(|e| e.into_inner());
        if known.columns.is_empty() {
            return false;
        }
        let table = table.to_ascii_lowercase();
        let has = |column: String| known.columns.contains(&(table.clone(), column));
        has(column.to_ascii_lowercase()) || has("*".to_string())
    }

    /// Whether `table`, in the session of `identity`, has the columns `lookup`
    /// (the catalog) is asked about, once; a failed lookup is "no", not kept.
    pub(crate) fn has_columns(
        &self,
        identity: u128,
        table: &str,
        lookup: impl FnOnce() -> Option<bool>,
    ) -> bool {
        remembered(&self.inner.columns, &(identity, table.to_string()), lookup).unwrap_or(false)
    }

    /// The SQL and template remembered for the query type `id` (see
    /// [`Cacheops::remember_fixed`]).
    pub(crate) fn fixed(&self, id: TypeId, dialect: Dialect) -> Option<Prepared> {
        let memo = self.inner.fixed[dialect as usize]
            .read()
            .unwrap_or_else(|e| e.into_inner());
        memo.get(&id).cloned()
    }

    /// Remembers the SQL and template of a query type whose SQL is fixed by the type.
    pub(crate) fn remember_fixed(&self, id: TypeId, dialect: Dialect, prepared: Prepared) {
        let mut memo = self.inner.fixed[dialect as usize]
            .write()
            .unwrap_or_else(|e| e.into_inner());
        memo.insert(id, prepared);
    }

    /// The dependencies of a call: the template met with its binds.
    pub(crate) fn deps(&self, template: &Template, binds: &[Value]) -> Deps {
        let policy = Policy {
            max_conjunctions: self.inner.config.max_conjunctions,
            max_in_values: self.inner.config.max_in_values,
            column_is_exact: &|table, column, value| {
                column_is_exact(table, column, value) && !self.collated(table, column)
            },
        };
        template.instantiate(binds, &policy)
    }

    /// The dependencies of the query cached under `key`, made by `make` the first
    /// time. Sound because a key hashes the SQL and binds they derive from, and
    /// everything else they derive from (the configuration, the models' column
    /// equality) is fixed for the handle's life.
    pub(crate) fn deps_of_key(&self, key: CacheKey, make: impl FnOnce() -> Deps) -> Arc<Deps> {
        self.inner.deps.get_or(&key, || Arc::new(make()))
    }

    /// The profile of the model stored in `table`; an error if the table has no
    /// registered model or the model no profile.
    pub(crate) fn profile_of_table(&self, table: &str) -> Result<Profile> {
        let known = self
            .inner
            .profiles
            .read()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(profile) = known.get(table) {
            return Ok(*profile);
        }
        drop(known);
        let (model, profile) = self.resolve_profile(table)?;
        let mut known = self
            .inner
            .profiles
            .write()
            .unwrap_or_else(|e| e.into_inner());
        known.insert(model, profile);
        Ok(profile)
    }

    fn resolve_profile(&self, table: &str) -> Result<(&'static str, Profile)> {
        let models = models_of_table(table);
        let Some(first) = models.first() else {
            let message = format!("table `{table}` has no #[derive(Cacheable)] model");
            return Err(not_cacheable(message));
        };
        let mut chosen: Option<(&ModelInfo, Profile)> = None;
        for model in models {
            let Some(profile) = model.profile(&self.inner.config)? else {
                continue;
            };
            match chosen {
                Some((other, theirs)) if theirs != profile => {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!(
                            "models `{}` and `{}` of table `{table}` have different cache profiles \
                             ({theirs:?} and {profile:?}): one table has one profile, give them \
                             the same #[cacheops(ops, timeout)] or set it on one of them only",
                            other.label, model.label
                        ),
                    ));
                }
                _ => chosen = Some((model, profile)),
            }
        }
        let (_, profile) = chosen.ok_or_else(|| {
            not_cacheable(format!(
                "model `{}` has no cache profile: add #[cacheops(ops = ...)] or a matching Config::profile",
                first.label
            ))
        })?;
        Ok((first.table, profile))
    }

    /// Handles a store error: counted, then degraded (logged, `Ok`) or returned.
    pub(crate) fn store_failed(&self, error: Error, during: &str) -> Result<()> {
        self.inner.stats.errors.fetch_add(1, Ordering::Relaxed);
        if self.inner.config.degrade_on_failure {
            tracing::warn!(error = %error, "cacheops: {during} failed, using the database");
            return Ok(());
        }
        Err(error)
    }

    /// Checks that a payload of `len` bytes, `what` (e.g. "a cached value"), is
    /// at most the maximum value size: a larger one is counted in
    /// [`Stats::too_large`] and is an [`ErrorKind::TooLarge`] error.
    pub(crate) fn check_size(&self, len: usize, what: std::fmt::Arguments<'_>) -> Result<()> {
        let max = self.inner.config.max_value_size;
        if len <= max {
            return Ok(());
        }
        self.inner.stats.too_large.fetch_add(1, Ordering::Relaxed);
        let message = format!(
            "not storing {what}: its encoding of {len} bytes is over the maximum value size ({max} bytes)"
        );
        Err(Error::new(ErrorKind::TooLarge, message).with_hint(
            "raise max_value_size (Config::max_value_size or CACHEOPS_MAX_VALUE_SIZE), \
             or cache less (fewer rows or columns)",
        ))
    }

    /// A computed result that could not be stored (too large, not encodable, or
    /// the store failed) is returned all the same: the database answered, and the
    /// next read computes it again. The failure is logged, and a store error
    /// counted in [`Stats::errors`].
    pub(crate) fn not_stored(&self, error: &Error) {
        if error.is_redis() {
            self.inner.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        let quiet =
            error.is_too_large() && self.inner.too_large_warned.swap(true, Ordering::Relaxed);
        match quiet {
            true => tracing::debug!(%error, "cacheops: result returned, not cached"),
            false => tracing::warn!(%error, "cacheops: result returned, not cached"),
        }
    }

    /// Remembers that invalidating `tables` failed, so no entry of them is served
    /// until a table-wide invalidation gets through.
    pub(crate) fn invalidation_failed<'t>(&self, tables: impl IntoIterator<Item = &'t str>) {
        let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending
            .tables
            .extend(tables.into_iter().map(str::to_ascii_lowercase));
        self.inner.has_pending.store(true, Ordering::Release);
        tracing::error!(tables = ?pending.tables, "cacheops: invalidation failed; these tables bypass the cache until it succeeds");
    }

    /// Remembers that invalidating everything under the prefix failed: nothing is
    /// served from the cache until it gets through.
    fn invalidation_of_all_failed(&self) {
        let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.all = true;
        self.inner.has_pending.store(true, Ordering::Release);
        tracing::error!("cacheops: invalidating everything failed; nothing is served from the cache until it succeeds");
    }

    /// Invalidates everything under the prefix for a write that may have changed
    /// anything; a failure is remembered (nothing is served until it gets through)
    /// and returned.
    pub(crate) fn send_all(&self) -> Result<()> {
        self.invalidate_all()
            .inspect_err(|_| self.invalidation_of_all_failed())
    }

    /// Reports an invalidation that a committed write owed and could not send: it
    /// is already remembered (reads of what it names bypass the cache until it
    /// gets through), so it is counted, logged and handed to the hook, not returned.
    pub(crate) fn missed_invalidation(&self, error: Error) {
        self.inner.stats.errors.fetch_add(1, Ordering::Relaxed);
        self.inner.stats.missed.fetch_add(1, Ordering::Relaxed);
        let error = Error::new(
            ErrorKind::MissedInvalidation,
            "a committed write could not invalidate the cache; reads of what it wrote \
             bypass the cache in this process until an invalidation gets through",
        )
        .with_source(error);
        tracing::warn!(error = %error, "cacheops: invalidation after commit failed");
        let hook = self
            .inner
            .missed_hook
            .read()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(hook) = hook.as_ref() {
            hook(&error);
        }
    }

    /// Calls `hook` with every invalidation a committed write could not send
    /// (an [`ErrorKind::MissedInvalidation`] error whose source is the store's).
    ///
    /// Such a write still returns `Ok`: its data is committed, and a caller told
    /// otherwise would retry it. The handle itself stays safe: what the write
    /// touched bypasses the cache in this process until an invalidation of it gets
    /// through. Use the hook to alert, or to tell other processes (which cannot
    /// know) to invalidate. [`Stats::missed_invalidations`] counts them.
    ///
    /// ```
    /// let cache = cacheops::Cacheops::new(cacheops::Config::builder().url("memory://").build())?;
    /// cache.on_missed_invalidation(|e| eprintln!("alert: {e}"));
    /// # Ok::<_, cacheops::Error>(())
    /// ```
    pub fn on_missed_invalidation(&self, hook: impl Fn(&Error) + Send + Sync + 'static) {
        *self
            .inner
            .missed_hook
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(hook));
    }

    /// Whether reads of `deps` may use the cache: no pending invalidation of any of
    /// its tables is left after retrying them.
    pub(crate) fn usable(&self, deps: &Deps) -> bool {
        if !self.inner.has_pending.load(Ordering::Acquire) {
            return true;
        }
        // One reader retries at a time; the others bypass the cache meanwhile.
        let mut pending = match self.inner.pending.try_lock() {
            Ok(pending) => pending,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        let owed = pending.retry(&*self.inner.store);
        self.inner.has_pending.store(owed, Ordering::Release);
        !pending.blocks(deps)
    }

    pub(crate) fn count_invalidation(&self) {
        self.inner
            .stats
            .invalidations
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Test support: runs `hook` on every fill between the SQL and the store.
    #[doc(hidden)]
    pub fn __set_fill_hook(&self, hook: Option<FillHook>) {
        *self
            .inner
            .fill_hook
            .write()
            .unwrap_or_else(|e| e.into_inner()) = hook;
    }

    pub(crate) fn run_fill_hook(&self) {
        let hook = self
            .inner
            .fill_hook
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook();
        }
    }
}

/// Whether `table.column = value` is decided by byte equality: by every model of
/// the table that holds the column; by the value's type for a table without a
/// model; never for a column the table's models do not describe.
fn column_is_exact(table: &str, column: &str, value: &Value) -> bool {
    let models = models_of_table(table);
    let mut holders = models.iter().filter(|m| m.holds(column)).peekable();
    match holders.peek() {
        // No model: the value's type is all there is to go by.
        None if models.is_empty() => value.equality == Equality::Exact,
        // A column no model describes: its type is unknown, so it widens.
        None => false,
        Some(_) => holders.all(|m| m.decides_exact(column, value)),
    }
}

/// The value `memo` holds for `key`, or the one `lookup` finds, then kept; a
/// lookup that finds nothing is not kept (asked again next time). The key is
/// copied only when a found value is kept.
fn remembered<K, Q, V>(
    memo: &RwLock<HashMap<K, V>>,
    key: &Q,
    lookup: impl FnOnce() -> Option<V>,
) -> Option<V>
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: ToOwned<Owned = K> + std::hash::Hash + Eq + ?Sized,
    V: Copy,
{
    if let Some(known) = memo.read().unwrap_or_else(|e| e.into_inner()).get(key) {
        return Some(*known);
    }
    let found = lookup()?;
    let mut memo = memo.write().unwrap_or_else(|e| e.into_inner());
    memo.insert(key.to_owned(), found);
    Some(found)
}

fn not_cacheable(message: String) -> Error {
    Error::new(ErrorKind::NotCacheable, message)
}

/// The process-wide handle, and whether [`install`] put it there (rather than
/// [`global`] from the environment, for want of one).
static GLOBAL: RwLock<Option<(&'static Cacheops, bool)>> = RwLock::new(None);

/// Installs the process-wide handle. Fails if [`install`] was called already.
///
/// The order of `install` and [`global`] does not matter: when `global` (or
/// something that uses it, such as `CachedConnection::establish` for pools) ran
/// first and installed the environment's configuration, `install` replaces it for
/// every later call. What took the first handle before keeps it (it lives on).
///
/// ```
/// let implicit = cacheops::global().unwrap(); // from the environment
/// cacheops::install(cacheops::Config::builder().url("memory://").prefix("app").build()).unwrap();
/// assert_eq!(cacheops::global().unwrap().config().prefix(), "app");
/// assert!(cacheops::install(cacheops::Config::builder().build()).is_err(), "installed already");
/// # let _ = implicit;
/// ```
pub fn install(config: Config) -> Result<()> {
    let handle = Cacheops::new(config)?;
    let mut global = GLOBAL.write().unwrap_or_else(|e| e.into_inner());
    if let Some((_, true)) = *global {
        return Err(Error::new(
            ErrorKind::Config,
            "cacheops is installed already",
        ));
    }
    if global.is_some() {
        tracing::info!(
            "cacheops: install() replaces the handle global() made from the environment"
        );
    }
    *global = Some((Box::leak(Box::new(handle)), true));
    Ok(())
}

/// The process-wide handle: the one [`install`]ed, else one made from the
/// environment ([`Config::from_env`]) on first use (which a later `install`
/// replaces).
pub fn global() -> Result<&'static Cacheops> {
    if let Some((handle, _)) = *GLOBAL.read().unwrap_or_else(|e| e.into_inner()) {
        return Ok(handle);
    }
    let handle = Cacheops::new(Config::from_env()?)?;
    let mut global = GLOBAL.write().unwrap_or_else(|e| e.into_inner());
    // Another thread may have installed one meanwhile: it wins.
    Ok(global
        .get_or_insert_with(|| (Box::leak(Box::new(handle)), false))
        .0)
}
