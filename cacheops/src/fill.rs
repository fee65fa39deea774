//! The read-through algorithm every cached query goes through.
//!
//! Hit: one round trip, no SQL parsing (templates are memoised by SQL text).
//! Miss: the dependency stamps are read (or created) *before* the SQL runs, and the
//! result is stored only if they are all unchanged afterwards. An invalidation that
//! lands while the SQL runs therefore refuses the fill, which closes the
//! read-miss-then-stale-write race. The fence vouches only for a query that reads
//! the data committed when it runs; a query that read an older snapshot reports it
//! (see [`Storable`]) and its result is served but not stored.
//!
//! A computed result is never lost to the cache: one over the maximum value size
//! is not sent, and one the store fails to take (Redis down, or refusing a value
//! over its `proto-max-bulk-len`) is logged and counted; both are returned.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use diesel::query_builder::{QueryFragment, QueryId};
use diesel::QueryResult;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::CacheBackend;
use crate::codec;
use crate::connection::CacheConnection;
use crate::connection::{explicitly, fills_may_store, reads_may_use_cache};
use crate::deps::{Deps, Template};
use crate::error::Result;
use crate::key::query_key;
use crate::lock::{self, QUERY_LOCK_TTL};
use crate::runtime::{Cacheops, Prepared};
use crate::shape::shape_of;
use crate::store::{CacheKey, Fence};
use crate::value::Value;

/// One cached call's settings.
pub(crate) struct Call<'h> {
    pub(crate) handle: &'h Cacheops,
    /// The op's name, part of the key.
    pub(crate) op: &'static str,
    /// False when the call's ops exclude this op: straight to the database.
    pub(crate) enabled: bool,
    pub(crate) timeout: Option<Duration>,
    /// Stampede protection: concurrent misses compute once (see `lock.rs`).
    pub(crate) lock: bool,
}

/// What a cacheable computation resolved to: where its result lives, what it
/// depends on, and for how long.
pub(crate) struct Plan {
    pub(crate) key: CacheKey,
    /// Shared: a query's dependencies are a function of its key, kept per key.
    pub(crate) deps: Arc<Deps>,
    pub(crate) ttl: Duration,
    /// Concurrent misses of `key` compute once; the others wait (see `lock.rs`).
    pub(crate) lock: bool,
}

/// Runs `query` through the cache: `run` executes it on a miss.
pub(crate) fn fill<C, Q, R>(
    call: &Call<'_>,
    conn: &mut C,
    query: Q,
    run: impl FnOnce(Q, &mut C) -> QueryResult<R>,
) -> Result<R>
where
    C: CacheConnection,
    Q: QueryFragment<C::Backend> + QueryId,
    R: Serialize + DeserializeOwned + 'static,
{
    let plan = match reads_may_use_cache(conn) {
        true => {
            let identity = crate::connection::identity_of(call.handle, conn);
            plan::<C::Backend, Q, R>(call, identity, &query)?
        }
        false => None,
    };
    let storable = Storable::default();
    read_through_storable(call.handle, plan, &storable, || {
        let result = explicitly(conn, |conn| run(query, conn))?;
        storable.answer(|| fills_may_store(conn));
        Ok(result)
    })
}

/// Whether a computed miss may be stored. The read-through asks for it just
/// before computing a fill; the computation answers once it has run, `false` when
/// it read a snapshot older than the fence taken before it (a REPEATABLE READ
/// transaction, say). Asked only then, so that a hit or an uncached read never
/// pays for finding out.
#[derive(Debug, Default)]
pub(crate) struct Storable {
    asked: Cell<bool>,
    refused: Cell<bool>,
}

impl Storable {
    /// Records the computation's answer, found by `may_store`, if it was asked.
    pub(crate) fn answer(&self, may_store: impl FnOnce() -> bool) {
        if self.asked.get() {
            self.refused.set(!may_store());
        }
    }

    fn ask(&self) {
        self.asked.set(true);
    }

    fn refused(&self) -> bool {
        self.refused.get()
    }
}

/// The read-through algorithm for any computation with a plan: serve the cached
/// result if its stamps are intact, else fence, compute, and store unless an
/// invalidation landed meanwhile. `None` (or a plan whose tables have a pending
/// invalidation) computes without the cache.
pub(crate) fn read_through<R>(
    handle: &Cacheops,
    plan: Option<Plan>,
    compute: impl FnOnce() -> Result<R>,
) -> Result<R>
where
    R: Serialize + DeserializeOwned,
{
    read_through_storable(handle, plan, &Storable::default(), compute)
}

/// [`read_through`] for a computation that tells, through `storable`, whether
/// its result may be stored.
pub(crate) fn read_through_storable<R>(
    handle: &Cacheops,
    plan: Option<Plan>,
    storable: &Storable,
    compute: impl FnOnce() -> Result<R>,
) -> Result<R>
where
    R: Serialize + DeserializeOwned,
{
    let plan = match plan {
        Some(plan) if handle.usable(&plan.deps) => plan,
        _ => return uncached(handle, compute),
    };
    match handle.store().lookup(plan.key, &plan.deps) {
        Ok(Some(bytes)) => {
            if let Some(value) = codec::decode(&bytes) {
                handle.count_hit(true);
                return Ok(value);
            }
        }
        Ok(None) => {}
        Err(e) => {
            handle.store_failed(e, "cache read")?;
            return uncached(handle, compute);
        }
    }
    if plan.lock {
        return locked_fill(handle, compute, &plan, storable);
    }
    fill_miss(handle, compute, &plan, storable)
}

/// A miss under stampede protection: one caller fills through the fence, the
/// others are served the value it stored (read, like any hit, with its stamps
/// checked) or fill through the fence themselves after the bounded wait.
fn locked_fill<R>(
    handle: &Cacheops,
    compute: impl FnOnce() -> Result<R>,
    plan: &Plan,
    storable: &Storable,
) -> Result<R>
where
    R: Serialize + DeserializeOwned,
{
    let probe = || {
        let found = handle.store().lookup(plan.key, &plan.deps)?;
        let value = found.and_then(|bytes| codec::decode(&bytes));
        if value.is_some() {
            handle.count_hit(true);
        }
        Ok(value)
    };
    let fill = || fill_miss(handle, compute, plan, storable);
    lock::compute_once(handle.store(), plan.key, QUERY_LOCK_TTL, probe, fill)
}

fn fill_miss<R: Serialize>(
    handle: &Cacheops,
    compute: impl FnOnce() -> Result<R>,
    plan: &Plan,
    storable: &Storable,
) -> Result<R> {
    let fence = match handle.store().fence(&plan.deps, plan.ttl) {
        Ok(fence) => fence,
        Err(e) => {
            handle.store_failed(e, "cache fence")?;
            return uncached(handle, compute);
        }
    };
    storable.ask();
    let result = compute()?;
    handle.count_hit(false);
    handle.run_fill_hook();
    if !storable.refused() {
        if let Err(e) = store_fill(handle, plan, &fence, &result) {
            handle.not_stored(&e);
        }
    }
    Ok(result)
}

/// Stores a fill's result if it fits the maximum value size and the fence holds.
fn store_fill<R: Serialize>(
    handle: &Cacheops,
    plan: &Plan,
    fence: &Fence,
    result: &R,
) -> Result<()> {
    let payload = codec::encode(result)?;
    handle.check_size(payload.len(), format_args!("a cached value"))?;
    if !handle.store().store(plan.key, fence, &payload, plan.ttl)? {
        handle.count_refused();
    }
    Ok(())
}

fn uncached<R>(handle: &Cacheops, compute: impl FnOnce() -> Result<R>) -> Result<R> {
    handle.count_hit(false);
    compute()
}

/// Key, dependencies and timeout of a call; `None` when it must not be cached
/// (caching off, op excluded, or SQL the analysis cannot read).
pub(crate) fn plan<DB, Q, R>(call: &Call<'_>, identity: u128, query: &Q) -> Result<Option<Plan>>
where
    DB: CacheBackend,
    Q: QueryFragment<DB> + QueryId,
    R: DeserializeOwned + 'static,
{
    let handle = call.handle;
    if !call.enabled || !handle.config().enabled {
        return Ok(None);
    }
    let Some(query) = analyse::<DB, Q>(handle, query)? else {
        return Ok(None);
    };
    let profile_timeout = match &query.main_table {
        Some(table) => Some(handle.profile_of_table(table)?.timeout),
        None => None,
    };
    let key = query_key(
        DB::NAME,
        call.op,
        identity,
        &query.sql,
        &query.binds,
        shape_of::<R>(),
    );
    Ok(Some(Plan {
        key,
        deps: query.deps_by_key(handle, key),
        ttl: call
            .timeout
            .or(profile_timeout)
            .unwrap_or(handle.config().timeout),
        lock: call.lock,
    }))
}

/// A query as the cache sees it.
pub(crate) struct Analysis {
    pub(crate) sql: Arc<str>,
    pub(crate) binds: Vec<Value>,
    template: Arc<Template>,
    /// The table the query is about (first of its outermost FROM), if any.
    pub(crate) main_table: Option<Arc<str>>,
}

impl Analysis {
    /// What the query depends on: its template instantiated with its binds.
    pub(crate) fn deps(&self, handle: &Cacheops) -> Deps {
        handle.deps(&self.template, &self.binds)
    }

    /// [`Analysis::deps`], computed once per cache `key` of the query: a key
    /// hashes the SQL and the binds, which are all the dependencies derive from,
    /// so a hit skips instantiating them.
    pub(crate) fn deps_by_key(&self, handle: &Cacheops, key: CacheKey) -> Arc<Deps> {
        handle.deps_of_key(key, || self.deps(handle))
    }
}

/// SQL, binds and dependencies of a query; `None` (with a warning) when its SQL
/// cannot be analysed, so that it is never cached.
pub(crate) fn analyse<DB, Q>(handle: &Cacheops, query: &Q) -> Result<Option<Analysis>>
where
    DB: CacheBackend,
    Q: QueryFragment<DB> + QueryId,
{
    match prepare::<DB, Q>(handle, query)? {
        Some(prepared) => analyse_prepared(prepared, query).map(Some),
        None => Ok(None),
    }
}

/// [`analyse`] for a query whose SQL the caller rendered already.
pub(crate) fn analyse_rendered<DB, Q>(
    handle: &Cacheops,
    sql: String,
    query: &Q,
) -> Result<Option<Analysis>>
where
    DB: CacheBackend,
    Q: QueryFragment<DB> + ?Sized,
{
    match parsed::<DB>(handle, sql) {
        Some(prepared) => analyse_prepared(prepared, query).map(Some),
        None => Ok(None),
    }
}

fn analyse_prepared<DB, Q>(prepared: Prepared, query: &Q) -> Result<Analysis>
where
    DB: CacheBackend,
    Q: QueryFragment<DB> + ?Sized,
{
    let Prepared { sql, template } = prepared;
    let main_table = template
        .main_table_name()
        .or(template.tables().first())
        .cloned();
    Ok(Analysis {
        sql,
        binds: DB::collect_binds(query)?,
        template,
        main_table,
    })
}

/// The SQL and template of `query`. Rendering SQL is most of a hit's CPU, so a
/// query whose type fixes its SQL is rendered once per handle: the rule is the one
/// Diesel's own prepared-statement cache relies on (a static query id, and no
/// part, such as SQLite's `IN (?, ?)`, whose SQL depends on the values).
fn prepare<DB, Q>(handle: &Cacheops, query: &Q) -> Result<Option<Prepared>>
where
    DB: CacheBackend,
    Q: QueryFragment<DB> + QueryId,
{
    let fixed = Q::query_id().filter(|_| {
        query
            .is_safe_to_cache_prepared(&DB::default())
            .unwrap_or(false)
    });
    if let Some(found) = fixed.and_then(|id| handle.fixed(id, DB::DIALECT)) {
        return Ok(Some(found));
    }
    let prepared = parsed::<DB>(handle, DB::render_sql(query)?);
    if let (Some(id), Some(prepared)) = (fixed, &prepared) {
        handle.remember_fixed(id, DB::DIALECT, prepared.clone());
    }
    Ok(prepared)
}

/// `sql` with its template; `None` (with a warning) when it cannot be analysed.
fn parsed<DB: CacheBackend>(handle: &Cacheops, sql: String) -> Option<Prepared> {
    match handle.template(&sql, DB::DIALECT) {
        Ok(template) => Some(Prepared {
            sql: sql.into(),
            template,
        }),
        Err(e) => {
            tracing::warn!(error = %e, sql, "cacheops: SQL not understood, query not cached");
            None
        }
    }
}
