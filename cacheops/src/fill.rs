//! The read-through algorithm every cached query goes through.
//!
//! Hit: one round trip, no SQL parsing (templates are memoised by SQL text).
//! Miss: the dependency stamps are read (or created) *before* the SQL runs, and the
//! result is stored only if they are all unchanged afterwards. An invalidation that
//! lands while the SQL runs therefore refuses the fill, which closes the
//! read-miss-then-stale-write race.

use std::time::Duration;

use diesel::connection::Connection;
use diesel::query_builder::QueryFragment;
use diesel::QueryResult;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::CacheBackend;
use crate::codec;
use crate::deps::Deps;
use crate::error::Result;
use crate::key::query_key;
use crate::runtime::Cacheops;
use crate::shape::shape_of;
use crate::store::CacheKey;

/// One cached call's settings.
pub(crate) struct Call<'h> {
    pub(crate) handle: &'h Cacheops,
    /// The op's name, part of the key.
    pub(crate) op: &'static str,
    /// False when the call's ops exclude this op: straight to the database.
    pub(crate) enabled: bool,
    pub(crate) timeout: Option<Duration>,
}

/// What a cacheable call resolved to.
struct Plan {
    key: CacheKey,
    deps: Deps,
    ttl: Duration,
}

/// Runs `query` through the cache: `run` executes it on a miss.
pub(crate) fn fill<C, Q, R>(
    call: &Call<'_>,
    conn: &mut C,
    query: Q,
    run: impl FnOnce(Q, &mut C) -> QueryResult<R>,
) -> Result<R>
where
    C: Connection,
    C::Backend: CacheBackend,
    Q: QueryFragment<C::Backend>,
    R: Serialize + DeserializeOwned + 'static,
{
    let handle = call.handle;
    let plan = match plan::<C::Backend, Q, R>(call, &query)? {
        Some(plan) if handle.usable(&plan.deps) => plan,
        _ => return uncached(handle, conn, query, run),
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
            return uncached(handle, conn, query, run);
        }
    }
    fill_miss(handle, conn, query, run, &plan)
}

fn fill_miss<C: Connection, Q, R: Serialize>(
    handle: &Cacheops,
    conn: &mut C,
    query: Q,
    run: impl FnOnce(Q, &mut C) -> QueryResult<R>,
    plan: &Plan,
) -> Result<R> {
    let fence = match handle.store().fence(&plan.deps, plan.ttl) {
        Ok(fence) => fence,
        Err(e) => {
            handle.store_failed(e, "cache fence")?;
            return uncached(handle, conn, query, run);
        }
    };
    let result = run(query, conn)?;
    handle.count_hit(false);
    handle.run_fill_hook();
    let payload = codec::encode(&result)?;
    match handle.store().store(plan.key, &fence, &payload, plan.ttl) {
        Ok(true) => {}
        Ok(false) => handle.count_refused(),
        Err(e) => handle.store_failed(e, "cache write")?,
    }
    Ok(result)
}

fn uncached<C, Q, R>(
    handle: &Cacheops,
    conn: &mut C,
    query: Q,
    run: impl FnOnce(Q, &mut C) -> QueryResult<R>,
) -> Result<R> {
    handle.count_hit(false);
    Ok(run(query, conn)?)
}

/// Key, dependencies and timeout of a call; `None` when it must not be cached
/// (caching off, op excluded, or SQL the analysis cannot read).
fn plan<DB, Q, R>(call: &Call<'_>, query: &Q) -> Result<Option<Plan>>
where
    DB: CacheBackend,
    Q: QueryFragment<DB>,
    R: DeserializeOwned + 'static,
{
    let handle = call.handle;
    if !call.enabled || !handle.config().enabled {
        return Ok(None);
    }
    let sql = DB::render_sql(query)?;
    let template = match handle.template(&sql, DB::DIALECT) {
        Ok(template) => template,
        Err(e) => {
            tracing::warn!(error = %e, sql, "cacheops: SQL not understood, query not cached");
            return Ok(None);
        }
    };
    let main_table = template
        .main_table()
        .or(template.tables().first().map(|t| &**t));
    let profile_timeout = match main_table {
        Some(table) => Some(handle.profile_of_table(table)?.timeout),
        None => None,
    };
    let binds = DB::collect_binds(query)?;
    Ok(Some(Plan {
        key: query_key(DB::NAME, call.op, &sql, &binds, shape_of::<R>()),
        deps: handle.deps(&template, &binds),
        ttl: call
            .timeout
            .or(profile_timeout)
            .unwrap_or(handle.config().timeout),
    }))
}
