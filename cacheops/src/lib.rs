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
//! ## Where things are: the layers, bottom up
//! Each layer imports only its own and lower ones (`cacheops/layers.txt`, checked
//! by `.ci/layers`; `ARCHITECTURE.md` says what each owns and why).
//!
//! | layer | modules | public items |
//! |---|---|---|
//! | 0 values, errors, settings, model descriptions | `error.rs`, `value.rs`, `codec.rs` (MessagePack), `config.rs`, `backend.rs` (canonical binds), `model.rs` (what the derive generates, profiles), `memo.rs` | [`Error`], [`ErrorKind`], [`Config`], [`Profile`], [`Ops`], [`Cacheable`], [`CacheRow`], [`CacheBackend`], [`Value`] |
//! | 1 SQL analysis | [`deps`] (SQL → per-table conjunctions, templates, what a read is for automatic caching, what functions may do, memos), `catalog.rs` | [`deps::Template`], [`deps::Deps`], [`deps::explain`] |
//! | 2 the cache protocol, no connection types | `protocol/`: keys and result shapes, the key/stamp layout, the store traits, the read-through with its fence, invalidation, failure state, counters, stampede locks | [`store::Store`], [`Stats`], [`ModelStats`] |
//! | 3 stores | [`store`] (memory; Redis: pool, scripts, commands, row invalidation; the local tier and its news), [`registry`], `publish.rs` | [`store::RedisStore`], [`store::MemoryStore`], [`store::LocalTier`] |
//! | 4 the handle | `runtime/` (a thin owner of configuration, core and memos; the process-wide handle; counters), `invalidate.rs` | [`Cacheops`], [`install`], [`global`], [`invalidate_obj`], [`invalidate_model`], [`invalidate_table`], [`invalidate_all`] |
//! | 5 Diesel | `transaction/` (what each level owes, and one stack of levels for both `CachedConnection` and `Cacheops::transaction`: queued until the outermost COMMIT), `analyse.rs` (a query as the cache sees it), `automatic/`, `connection/` ([`CachedConnection`]), `query.rs` (`.cached()`), `write.rs` (helpers) | [`CachedQueryDsl`], [`Cached`], [`CachedConnection`], [`Cacheops::transaction`], [`on_commit`], [`Cacheops::save`] |
//! | 6 extras | `simple/` (time-only cache, `#[cached]`, file backend), `cached_as.rs`, `fragment.rs` (feature `minijinja`), [`feed`] (outside writes through an outbox) | [`cache`], [`cached()`], [`cached_as()`], [`Sample`], [`feed::install`], [`Cacheops::start_change_feed`] |
//! | 7 the operator CLI | `bin/cacheops-cli/` (its own module tree, on the public API and `__private`) | |
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
//! - `async`: the async path on diesel-async and tokio: `AsyncCachedQueryDsl`
//!   (`.cached_async()`), the `_async` write helpers, `connection::AsyncCachedConnection`,
//!   function and simple caching from async code, `store::AsyncRedisStore`.
//! - `deadpool`: deadpool pools of async connections (diesel-async's `deadpool`),
//!   and `pool::CachedPool`, whose reads check a connection out only on a miss.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod analyse;
mod automatic;
mod backend;
mod cached_as;
mod catalog;
mod codec;
mod config;
pub mod connection;
pub mod deps;
mod error;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub mod feed;
#[cfg(feature = "minijinja")]
#[cfg_attr(docsrs, doc(cfg(feature = "minijinja")))]
pub mod fragment;

mod invalidate;
mod memo;
mod model;
#[cfg(feature = "deadpool")]
#[cfg_attr(docsrs, doc(cfg(feature = "deadpool")))]
pub mod pool;
mod protocol;
mod publish;
pub mod query;
pub mod registry;
mod runtime;
mod simple;
pub mod store;
mod transaction;
mod value;
mod write;

pub use backend::{CacheBackend, Dialect};
#[cfg(feature = "async")]
pub use cached_as::cached_as_async;
pub use cached_as::{cached_as, cached_as_key, Options, Sample};
pub use cacheops_derive::cached_as;
pub use cacheops_derive::Cacheable;
pub use config::{Config, ConfigBuilder, Ops, Profile};
#[cfg(feature = "async")]
pub use connection::AsyncCacheConnection;
pub use connection::{on_commit, CacheConnection, CachedConnection};
pub use error::{Error, ErrorKind, OptionalExtension, Result};
pub use invalidate::{invalidate_all, invalidate_model, invalidate_obj, invalidate_table};
pub use model::{models_of_table, CacheRow, Cacheable, ColumnEquality, ModelInfo};
pub use protocol::stats::{ModelStats, Stats};
#[cfg(feature = "async")]
pub use query::{AsyncCachedQueryDsl, CachedAsync};
pub use query::{Cached, CachedQueryDsl};
pub use runtime::{global, install, Cacheops};
pub use runtime::{model_stats, stats};
#[cfg(feature = "async")]
pub use simple::cached_async;
pub use simple::{cache, cached, CachedOptions, FnKey, SimpleCache};
pub use value::Value;
#[cfg(feature = "async")]
pub use write::AsyncSaveable;

/// What an application writes daily: `use cacheops::prelude::*;`, beside
/// `diesel::prelude::*` (nothing in one shadows the other or std's prelude, so
/// `Result`, `Error` and `OptionalExtension` stay `cacheops::`-qualified).
///
/// ```
/// use cacheops::prelude::*;
/// use diesel::prelude::*;
///
/// let cache = Cacheops::new(Config::builder().url("memory://").build())?;
/// assert_eq!(cache.config().prefix(), "cacheops");
/// # Ok::<_, cacheops::Error>(())
/// ```
pub mod prelude {
    pub use crate::{
        cached, cached_as, on_commit, Cacheable, CachedConnection, CachedOptions, CachedQueryDsl,
        Cacheops, Config, FnKey, Ops, Profile, Sample,
    };
}

/// Items the derive macros' output refers to. Not public API: no stability
/// promise, may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::backend::encode_value;
    pub use crate::cached_as::__macro::*;
    pub use crate::config::DatabaseUrl;
    pub use crate::connection::Tracked;
    pub use crate::feed::quote;
    pub use crate::model::ProfileAttr;
    pub use crate::protocol::layout::Layout;
    pub use crate::protocol::store::CacheKey;
    pub use crate::write::Locked;
    pub use diesel;
    pub use inventory;
}
