//! # cacheops
//!
//! Query results of Diesel cached in Redis, invalidated automatically and granularly.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
pub mod deps;
mod error;
pub mod store;
mod value;

pub use backend::{encode_value, CacheBackend, Dialect, Rendered};
pub use error::{Error, ErrorKind, Result};
pub use value::{pg_equality, Equality, Value};
