//! # cacheops
//!
//! Query results of Diesel cached in Redis, invalidated automatically and granularly.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod cached_as;
mod codec;
mod config;
pub mod deps;
mod error;
mod fill;
#[cfg(feature = "minijinja")]
#[cfg_attr(docsrs, doc(cfg(feature = "minijinja")))]
pub mod fragment;
mod invalidate;
mod key;
mod model;
mod query;
mod runtime;
mod shape;
pub mod store;
mod value;
mod write;

pub use backend::{encode_value, CacheBackend, Dialect, Rendered};
pub use cached_as::{cached_as, cached_as_key, invalidate_key, Options, Sample};
pub use cacheops_derive::cached_as;
pub use cacheops_derive::Cacheable;
pub use config::{Config, ConfigBuilder, Ops, Profile};
pub use error::{Error, ErrorKind, OptionalExtension, Result};
pub use invalidate::{invalidate_all, invalidate_model, invalidate_obj, invalidate_table};
pub use model::{
    model_of_label, model_of_table, models, CacheRow, Cacheable, ColumnEquality, ModelInfo,
    ProfileAttr,
};
pub use query::{Cached, CachedQueryDsl};
pub use runtime::{global, install, Cacheops, Stats};
pub use value::{pg_equality, Equality, Value};
pub use write::Locked;

/// Items the derive macro's output refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::cached_as::__macro::*;
    pub use diesel;
    pub use inventory;
}
