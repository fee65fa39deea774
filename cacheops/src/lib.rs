//! # cacheops
//!
//! Diesel query results cached in Redis, invalidated automatically and
//! *granularly* when the rows they were read from change: what django-cacheops
//! does for Django, for Diesel, without its stale fills under concurrency.
//!
//! ```no_run
//! use cacheops::{Cacheable, CachedQueryDsl};
//! use diesel::prelude::*;
//!
//! diesel::table! { articles (id) { id -> Integer, category_id -> Integer, title -> Text } }
//!
//! #[derive(Queryable, Identifiable, AsChangeset, Cacheable, serde::Serialize, serde::Deserialize)]
//! #[diesel(table_name = articles)]
//! #[cacheops(app = "blog", ops = "all", timeout = 600)]
//! struct Article { id: i32, category_id: i32, title: String }
//!
//! # fn run(conn: &mut PgConnection) -> cacheops::Result<()> {
//! cacheops::install(cacheops::Config::from_env()?)?;
//! let cache = cacheops::global()?;
//! // Read through the cache: the second call costs one Redis round trip.
//! let in_cat: Vec<Article> = articles::table.filter(articles::category_id.eq(3)).cached(conn)?;
//! // Write through a helper: only cached queries this row can affect are invalidated.
//! let mut first = articles::table.find(1).first::<Article>(conn)?;
//! first.title = "renamed".into();
//! cache.save(conn, &first)?;
//! # Ok(()) }
//! ```
//!
//! ## Where things are
//! | concern | module | public items |
//! |---|---|---|
//! | configuration and profiles | `config.rs` | [`Config`], [`Profile`], [`Ops`] |
//! | the handle: store, memo of parsed SQL, failure state | `runtime.rs` | [`Cacheops`], [`install`], [`global`], [`Stats`] |
//! | `.cached()` and the [`Cached`] builder | `query.rs` | [`CachedQueryDsl`], [`Cached`] |
//! | the read-through algorithm (one round trip per hit, race fence on miss) | `fill.rs` | |
//! | SQL parsed once per text (templates, write classification, UPDATE rewrites) | `memo.rs` | |
//! | cache keys and result-shape fingerprints | `key.rs`, `shape.rs` | |
//! | MessagePack payloads | `codec.rs` | |
//! | a query's dependencies (SQL → per-table conjunctions) | [`deps`] | [`deps::Template`], [`deps::Deps`] |
//! | stamps and values in Redis or in process; Lua scripts | [`store`] | [`store::RedisStore`], [`store::MemoryStore`] |
//! | the local tier in front of Redis, and the invalidation news that keeps it fresh | `store/local.rs`, `store/news.rs` | [`store::LocalTier`], [`store::LocalStats`] |
//! | what `#[derive(Cacheable)]` generates; the model registry | `model.rs` | [`Cacheable`], [`CacheRow`], [`ModelInfo`] |
//! | canonical values of binds and columns | `backend.rs`, `value.rs` | [`CacheBackend`], [`Value`], [`encode_value`] |
//! | write helpers | `write.rs` | [`Cacheops::insert`], [`Cacheops::save`], [`Cacheops::update`], [`Cacheops::delete`] |
//! | connections: which ones we read/write through; a wrapper that sees every statement; UPDATEs rewritten to return old and new rows | `connection/` | [`CacheConnection`], [`CachedConnection`] |
//! | the change feed: outside writes (cascades, triggers, `psql`) invalidate through an outbox | [`feed`] | [`feed::install`], [`feed::apply_once`], [`Cacheops::start_change_feed`] |
//! | what the functions a statement calls may do (built-ins by name, PostgreSQL's catalog) | `functions.rs` | |
//! | automatic caching of ordinary reads through [`CachedConnection`]: op inference, raw rows, replayed rows | `automatic/` | [`CachedRow`], [`CachedCursor`], [`ReplayedRow`], [`NoReplay`] |
//! | transactions on plain connections: invalidation after the outermost COMMIT, then after-commit hooks | `transaction/`, `pending.rs` | [`Cacheops::transaction`], [`on_commit`] |
//! | manual invalidation | `invalidate.rs` | [`invalidate_obj`], [`invalidate_model`], [`invalidate_table`], [`invalidate_all`] |
//! | time-only cache, `cached`, file backend | `simple/` | [`cache`], [`cached()`], [`SimpleCache`], [`FnKey`] |
//! | function caching tied to data | `cached_as.rs` | [`cached_as()`], [`Sample`], [`Options`] |
//! | template fragments (feature `minijinja`) | `fragment.rs` | `fragment::register` |
//! | model registry, stats, the CLI | `registry.rs`, `stats.rs`, `cli/` | [`stats()`], [`model_stats`] |
//! | stampede locks | `lock.rs` | [`CachedOptions::lock`], [`Cached::lock`] |
//! | errors | `error.rs` | [`Error`], [`ErrorKind`], [`OptionalExtension`] |
//!
//! ## How invalidation decides
//! Every cached query depends, per table it reads, on an OR of conjunctions of
//! `column = value` taken from its WHERE clause (`=`, `IN`, `= ANY`, `IS NULL`,
//! AND, OR, join equalities). Each conjunction has a *stamp* in Redis; a cached
//! value carries a checksum of its stamps and is served only while all of them are
//! unchanged. Saving or deleting a row deletes, for every condition *scheme*
//! (column set) cached for its table, the stamp built from the row's old and new
//! values: cost O(schemes), whatever the number of cached queries. Anything not
//! understood (ranges, LIKE, NOT, functions, literals, subqueries, float or json
//! columns) widens to "any change of that table": widening is always safe.
//!
//! On a miss the stamps are read *before* the SQL runs and the result is stored
//! only if they are unchanged afterwards, so a write that commits while a reader's
//! SQL runs can never leave the reader's stale result in the cache.
//!
//! ## Features
//! - `postgres` (default): PostgreSQL through `diesel/postgres`.
//! - `sqlite` (default): SQLite through `diesel/sqlite`.
//! - `cli` (default): the `cacheops-cli` binary.
//! - `minijinja`: template fragment caching.
//! - `r2d2`: pools of [`CachedConnection`] through Diesel's `r2d2`.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod automatic;
mod backend;
mod cached_as;
#[cfg(feature = "cli")]
pub mod cli;
mod codec;
mod config;
mod connection;
pub mod deps;
mod error;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub mod feed;
mod fill;
#[cfg(feature = "minijinja")]
#[cfg_attr(docsrs, doc(cfg(feature = "minijinja")))]
pub mod fragment;
mod functions;
mod invalidate;
mod key;
mod lock;
mod memo;
mod model;
mod pending;
mod query;
pub mod registry;
mod runtime;
mod shape;
mod simple;
mod stats;
pub mod store;
mod transaction;
mod value;
mod write;

pub use automatic::{CachedCursor, CachedField, CachedRow, NoReplay};
#[cfg(feature = "postgres")]
pub use automatic::{ReplayedField, ReplayedRow};
pub use backend::{encode_value, CacheBackend, Dialect, Rendered};
pub use cached_as::{cached_as, cached_as_key, invalidate_key, Options, Sample};
pub use cacheops_derive::cached_as;
pub use cacheops_derive::Cacheable;
pub use config::{Config, ConfigBuilder, Ops, Profile, DEFAULT_MAX_VALUE_SIZE};
pub use connection::{
    on_commit, CacheConnection, CachedConnection, CachedTransactionManager, SettlingCursor,
};
pub use error::{Error, ErrorKind, OptionalExtension, Result};
pub use invalidate::{invalidate_all, invalidate_model, invalidate_obj, invalidate_table};
pub use model::{
    model_of_label, model_of_table, models, models_of_table, CacheRow, Cacheable, ColumnEquality,
    ModelInfo, ProfileAttr,
};
pub use query::{Cached, CachedQueryDsl};
pub use runtime::{global, install, Cacheops};
pub use simple::{cache, cached, CachedOptions, FnKey, SimpleCache};
pub use stats::{model_stats, stats, ModelStats, Stats};
pub use value::{pg_equality, Equality, Value};
pub use write::Locked;

/// Items the derive macro's output refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::cached_as::__macro::*;
    pub use crate::connection::Tracked;
    pub use diesel;
    pub use inventory;
}
