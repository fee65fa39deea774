//! What SQL analysis remembers per handle, so that a hit parses nothing: parsed
//! templates by SQL text, what each text reads (automatic caching), the SQL of
//! query types that fix it, and the dependencies of each cached query by key.

use std::any::TypeId;
use std::sync::{Arc, RwLock};

use super::{Deps, Read, Template};
use crate::backend::Dialect;
use crate::error::Result;
use crate::memo::{ByKey, ByTypeId, Memo};

/// A query's SQL with its parsed template.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub(crate) sql: Arc<str>,
    pub(crate) template: Arc<Template>,
}

/// The memos of SQL analysis, per handle.
#[derive(Default)]
pub(crate) struct SqlMemo {
    /// Parsed templates by SQL text.
    templates: Memo<Arc<Template>>,
    /// What each SQL text reads, for automatic caching (`infer.rs`).
    reads: Memo<Option<Read>>,
    /// SQL and template of query types whose SQL their type fixes, by the type's
    /// query id, one map per dialect: a hit of such a query renders no SQL.
    fixed: [RwLock<ByTypeId<Prepared>>; 2],
    /// Dependencies of cached queries by cache key (see [`SqlMemo::deps_of_key`]).
    deps: ByKey<Arc<Deps>>,
}

impl SqlMemo {
    /// The parsed template of `sql`, parsing it only the first time it is seen.
    pub(crate) fn template(&self, sql: &str, dialect: Dialect) -> Result<Arc<Template>> {
        self.templates.get_or_try(sql, dialect, || {
            Ok(Arc::new(Template::parse(sql, dialect)?))
        })
    }

    /// What `sql` reads as automatic caching sees it, inferred only the first time
    /// it is seen; `None` when it is not an automatically cacheable read, or when
    /// its dependencies cannot be analysed (remembered, so such a read costs one
    /// memo lookup and logs once, not on every call).
    pub(crate) fn read_of(&self, sql: &str, dialect: Dialect) -> Option<Read> {
        let make = || {
            let read = super::infer(sql, dialect)?;
            if let Err(e) = self.template(sql, dialect) {
                tracing::warn!(error = %e, sql, "cacheops: SQL not understood, never cached automatically");
                return None;
            }
            Some(read)
        };
        self.reads.get_or(sql, dialect, make)
    }

    /// The SQL and template remembered for the query type `id` (see
    /// [`SqlMemo::remember_fixed`]).
    pub(crate) fn fixed(&self, id: TypeId, dialect: Dialect) -> Option<Prepared> {
        let memo = self.fixed[dialect as usize]
            .read()
            .unwrap_or_else(|e| e.into_inner());
        memo.get(&id).cloned()
    }

    /// Remembers the SQL and template of a query type whose SQL is fixed by the type.
    pub(crate) fn remember_fixed(&self, id: TypeId, dialect: Dialect, prepared: Prepared) {
        let mut memo = self.fixed[dialect as usize]
            .write()
            .unwrap_or_else(|e| e.into_inner());
        memo.insert(id, prepared);
    }

    /// The dependencies of the query cached under `key`, made by `make` the first
    /// time. Sound because a key hashes the SQL and binds they derive from, and
    /// everything else they derive from (the configuration, the models' column
    /// equality) is fixed for the handle's life.
    pub(crate) fn deps_of_key(&self, key: u128, make: impl FnOnce() -> Deps) -> Arc<Deps> {
        self.deps.get_or(&key, || Arc::new(make()))
    }
}
