//! A Diesel query as the cache sees it: its SQL (rendered once per query type
//! when the type fixes it), its parsed template, binds and dependencies, and the
//! [`Plan`] of a cached call (key, dependencies, timeout).

use std::sync::Arc;
use std::time::Duration;

use diesel::query_builder::{QueryFragment, QueryId};
use serde::de::DeserializeOwned;

use crate::backend::CacheBackend;
use crate::deps::{Deps, Template};
use crate::deps::{Policy, Prepared};
use crate::error::Result;
use crate::model::column_is_exact;
use crate::protocol::key::query_key;
use crate::protocol::read_through::Plan;
use crate::protocol::shape::shape_of;
use crate::protocol::store::CacheKey;
use crate::runtime::Cacheops;
use crate::value::Value;

/// One cached call's settings.
pub(crate) struct Call<'h> {
    pub(crate) handle: &'h Cacheops,
    /// The op's name, part of the key.
    pub(crate) op: &'static str,
    /// False when the call's ops exclude this op: straight to the database.
    pub(crate) enabled: bool,
    pub(crate) timeout: Option<Duration>,
    /// Stampede protection: concurrent misses compute once (see `protocol/lock.rs`).
    pub(crate) lock: bool,
}

impl Call<'_> {
    /// The [`plan`] of this call's `query` when reads may use the cache now
    /// (`may_use`), with the connection's `identity`, asked only then.
    pub(crate) fn plan<DB, Q, R>(
        &self,
        may_use: bool,
        identity: impl FnOnce() -> u128,
        query: &Q,
    ) -> Result<Option<Plan>>
    where
        DB: CacheBackend,
        Q: QueryFragment<DB> + QueryId,
        R: DeserializeOwned + 'static,
    {
        match may_use {
            true => plan::<DB, Q, R>(self, identity(), query),
            false => Ok(None),
        }
    }
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
        deps_of(handle, &self.template, &self.binds)
    }

    /// [`Analysis::deps`], computed once per cache `key` of the query: a key
    /// hashes the SQL and the binds, which are all the dependencies derive from,
    /// so a hit skips instantiating them.
    pub(crate) fn deps_by_key(&self, handle: &Cacheops, key: CacheKey) -> Arc<Deps> {
        handle.sql().deps_of_key(key, || self.deps(handle))
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
    if let Some(found) = fixed.and_then(|id| handle.sql().fixed(id, DB::DIALECT)) {
        return Ok(Some(found));
    }
    let prepared = parsed::<DB>(handle, DB::render_sql(query)?);
    if let (Some(id), Some(prepared)) = (fixed, &prepared) {
        handle
            .sql()
            .remember_fixed(id, DB::DIALECT, prepared.clone());
    }
    Ok(prepared)
}

/// `sql` with its template; `None` (with a warning) when it cannot be analysed.
fn parsed<DB: CacheBackend>(handle: &Cacheops, sql: String) -> Option<Prepared> {
    match handle.sql().template(&sql, DB::DIALECT) {
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

/// The dependencies of a call: the template met with its binds, under the
/// handle's limits; a condition decides exactly only where byte equality is the
/// column's equality (its models' types, and no collation).
fn deps_of(handle: &Cacheops, template: &Template, binds: &[Value]) -> Deps {
    let catalog = handle.catalog();
    let exact = |table: &str, column: &str, value: &Value| {
        column_is_exact(table, column, value) && !catalog.collated(table, column)
    };
    let policy = Policy {
        max_conjunctions: handle.config().max_conjunctions,
        max_in_values: handle.config().max_in_values,
        column_is_exact: &exact,
    };
    template.instantiate(binds, &policy)
}
