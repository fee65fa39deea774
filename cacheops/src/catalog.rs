//! What the database's catalog told a handle, asked once and remembered: what
//! functions unknown to the built-in lists do, which columns compare by a
//! collation other than bytes, and whether a table has the columns a model names.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use crate::backend::Dialect;
use crate::deps::functions::{self, Volatility};

/// The catalog's answers, per handle.
#[derive(Default)]
pub(crate) struct Catalog {
    /// What functions unknown to the built-in lists do.
    functions: RwLock<HashMap<String, Volatility>>,
    /// Columns whose collation compares other than by bytes, from the catalog of
    /// each database met.
    collations: RwLock<Collations>,
    /// Whether a schema-qualified table has the primary key its model names, by
    /// session identity and table.
    columns: RwLock<HashMap<(u128, String), bool>>,
}

/// Columns compared by a collation other than bytes: conditions on them widen.
#[derive(Default)]
struct Collations {
    /// Databases whose catalog was read.
    scanned: HashSet<u128>,
    /// `(table, column)`, lower case.
    columns: HashSet<(String, String)>,
}

impl Catalog {
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
        let judged = remembered(&self.functions, name, || {
            let found = lookup(schema, own)?;
            Some(functions::from_catalog(
                found.iter().map(|(s, v)| (s.as_str(), v.as_str())),
            ))
        });
        judged.unwrap_or(Volatility::MayWrite)
    }

    /// The functions of `names` neither built in nor judged yet: what a
    /// connection that cannot ask inside [`Catalog::volatility`] (an async one)
    /// asks first.
    #[cfg(feature = "async")]
    pub(crate) fn unjudged(&self, names: &[String], dialect: Dialect) -> Vec<String> {
        if names.is_empty() {
            // Most statements call no function: no lock taken for them.
            return Vec::new();
        }
        let judged = self.functions.read().unwrap_or_else(|e| e.into_inner());
        let unknown = |name: &&String| {
            functions::known(name, dialect).is_none() && !judged.contains_key(name.as_str())
        };
        names.iter().filter(unknown).cloned().collect()
    }

    /// Whether the collations of `database` were read already (a session of
    /// it need not ask again).
    pub(crate) fn knows_collations(&self, database: u128) -> bool {
        let known = self.collations.read().unwrap_or_else(|e| e.into_inner());
        known.scanned.contains(&database)
    }

    /// Reads, once per database (`database`: its hashed name and server), which
    /// columns are collated other than by bytes (`lookup` asks the catalog; a
    /// failed lookup is asked again next time).
    pub(crate) fn learn_collations(
        &self,
        database: u128,
        lookup: impl FnOnce() -> Option<Vec<(String, String)>>,
    ) {
        if self.knows_collations(database) {
            return;
        }
        let Some(found) = lookup() else {
            return;
        };
        let mut known = self.collations.write().unwrap_or_else(|e| e.into_inner());
        known.scanned.insert(database);
        known.columns.extend(found);
    }

    /// Whether `table.column` compares by a collation other than bytes.
    pub(crate) fn collated(&self, table: &str, column: &str) -> bool {
        let known = self.collations.read().unwrap_or_else(|e| e.into_inner());
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
        remembered(&self.columns, &(identity, table.to_string()), lookup).unwrap_or(false)
    }

    /// What [`Catalog::has_columns`] remembers, without asking.
    #[cfg(feature = "async")]
    pub(crate) fn knows_columns(&self, identity: u128, table: &str) -> Option<bool> {
        remembered(&self.columns, &(identity, table.to_string()), || None)
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
