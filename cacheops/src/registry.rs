//! The model registry applications publish to Redis, so that tools without the
//! application's Rust types (`cacheops-cli`) can resolve `app.Model` labels.
//!
//! `P:models` is a hash: label → MessagePack of a [`ModelEntry`] (named fields, so
//! later versions can add some). Every Redis-backed handle publishes every model
//! compiled into its program once, from its background thread, shortly after it is
//! made ([`crate::Cacheops::publish_registry`] does it on demand). Publishing only
//! adds or overwrites entries: several programs may share a prefix, so a model
//! removed from the code stays listed until someone deletes the hash.
//!
//! `P:models` and `P:stats` are not cache keys: `invalidate all` leaves them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::model::{models, ColumnEquality, ModelInfo};
use crate::protocol::layout::Layout;
use crate::store::{open_connection, Doing, Phase};

/// One model as the registry describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// `app.Model`.
    pub label: String,
    /// The SQL table.
    pub table: String,
    /// Primary key columns, in key order.
    pub primary_key: Vec<String>,
    /// Every column the model holds, in field order: the columns a row
    /// invalidation sends.
    pub columns: Vec<String>,
    /// Per column (same order): `by_type`, `exact` or `inexact`.
    #[serde(default)]
    pub equality: Vec<String>,
    /// The cacheops version that published the entry.
    #[serde(default)]
    pub cacheops_version: String,
}

impl ModelEntry {
    /// The entry of a compiled-in model.
    pub fn of(model: &ModelInfo) -> ModelEntry {
        let owned = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
        let equality = model.equality.iter().map(|e| match e {
            ColumnEquality::ByType => "by_type".to_string(),
            ColumnEquality::Exact => "exact".to_string(),
            ColumnEquality::Inexact => "inexact".to_string(),
        });
        ModelEntry {
            label: model.label.to_string(),
            table: model.table.to_string(),
            primary_key: owned(model.primary_key),
            columns: owned(model.columns),
            equality: equality.collect(),
            cacheops_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// The entry as stored in `P:models`: MessagePack with named fields.
    pub fn encode(&self) -> Result<Vec<u8>> {
        rmp_serde::to_vec_named(self)
            .map_err(|e| Error::new(ErrorKind::Encode, "model registry entry").with_source(e))
    }

    /// The application part of the label (`blog` of `blog.Article`).
    pub fn app(&self) -> &str {
        self.label.split('.').next().unwrap_or(&self.label)
    }
}

/// The Redis keys of the registry and the published stats, for one prefix.
pub fn models_key(prefix: &str) -> String {
    format!("{}:models", Layout::new(prefix).prefix())
}

/// The hash the handles publish their per-model counters to: field
/// `<label>:<hits|misses|invalidations>`, value a count.
pub fn stats_key(prefix: &str) -> String {
    format!("{}:stats", Layout::new(prefix).prefix())
}

/// Writes every compiled-in model to `target`'s `P:models`, in one command.
pub(crate) fn publish(con: &mut redis::Connection, target: &Target) -> Result<()> {
    let mut entries = Vec::new();
    for model in models() {
        entries.push((model.label, ModelEntry::of(model).encode()?));
    }
    if entries.is_empty() {
        return Ok(());
    }
    redis::cmd("HSET")
        .arg(models_key(&target.prefix))
        .arg(entries)
        .exec(con)
        .map_err(|e| Doing::PUBLISH_REGISTRY.failed(e, Phase::Command(target.timeout)))
}

/// Every model published under `prefix`, sorted by label. Entries that do not
/// decode (written by an incompatible version) are an error, not skipped: a
/// label silently missing would read as "unknown".
pub fn read(con: &mut redis::Connection, prefix: &str) -> Result<Vec<ModelEntry>> {
    let raw: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL").arg(models_key(prefix)).query(con)?;
    let mut entries = raw
        .into_iter()
        .map(|(label, bytes)| {
            rmp_serde::from_slice(&bytes).map_err(|e| {
                Error::new(
                    ErrorKind::Encode,
                    format!("registry entry `{label}` does not decode"),
                )
                .with_source(e)
            })
        })
        .collect::<Result<Vec<ModelEntry>>>()?;
    entries.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(entries)
}

/// Where a handle publishes: its Redis URL and prefix. Holds no connection, so the
/// publisher thread owns the one it opens.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
}

impl Target {
    /// Where a handle with `config` publishes.
    pub(crate) fn of(config: &crate::Config) -> Target {
        Target {
            url: config.url().to_string(),
            prefix: config.prefix().to_string(),
            timeout: config.redis_timeout,
        }
    }

    /// The connection in `slot`, opened if there is none.
    pub(crate) fn connection<'c>(
        &self,
        slot: &'c mut Option<redis::Connection>,
    ) -> Result<&'c mut redis::Connection> {
        if let Some(con) = slot {
            return Ok(con);
        }
        Ok(slot.insert(connect(&self.url, self.timeout)?))
    }

    pub(crate) fn stats_key(&self) -> String {
        stats_key(&self.prefix)
    }
}

/// A plain connection with connect, read and write timeouts, checked to serve
/// (a missing password fails here, as such).
pub fn connect(url: &str, timeout: Duration) -> Result<redis::Connection> {
    let client = redis::Client::open(url).map_err(|e| {
        Error::new(ErrorKind::Config, format!("invalid Redis URL {url:?}")).with_source(e)
    })?;
    open_connection(&client, (timeout, timeout))
        .map_err(|e| Doing::CONNECT.failed(e, Phase::Connect(timeout)))
}
