//! Cache keys: a stable 128-bit hash of everything that determines a result.
//!
//! Hashed, in order and each length-prefixed: the format version, the backend, the
//! operation, the database identity (which database, user and schema search path
//! the SQL ran against, as far as the connection knows), the SQL text, every
//! bind's type tag and bytes (NULL distinct from empty), and a fingerprint of the
//! result type's shape. So `IN ('a','b')` and
//! `IN ('a, b')` differ (different SQL and binds), and a struct whose fields changed
//! after a deploy gets new keys instead of decoding old-shape data.

use xxhash_rust::xxh3::xxh3_128;

use crate::protocol::store::CacheKey;
use crate::value::Value;

/// Bumped whenever the payload or key format changes: old entries are then
/// simply never read again. 2: conjunction keys spell PostgreSQL integers of every
/// width alike and fold identifier case, so entries depending on stamps of the
/// old spelling must never be served (writers no longer delete those stamps).
pub(crate) const FORMAT_VERSION: u32 = 2;

/// Builds a [`CacheKey`] from its parts. The parts are gathered into one buffer
/// and hashed in one call: xxh3's streaming state cost more per small part than
/// hashing the whole (the digest is the same either way).
pub(crate) struct KeyHasher(Vec<u8>);

impl KeyHasher {
    pub(crate) fn new(backend: &str, op: &str) -> Self {
        let mut hasher = KeyHasher(Vec::with_capacity(256));
        hasher.0.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        hasher.bytes(backend.as_bytes());
        hasher.bytes(op.as_bytes());
        hasher
    }

    /// Adds a length-prefixed byte string.
    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.0
            .extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    pub(crate) fn binds(&mut self, binds: &[Value]) -> &mut Self {
        self.0
            .extend_from_slice(&(binds.len() as u64).to_le_bytes());
        for bind in binds {
            self.0.extend_from_slice(&bind.ty.to_le_bytes());
            match &bind.bytes {
                None => self.0.push(0),
                Some(bytes) => {
                    self.0.push(1);
                    self.bytes(bytes);
                }
            }
        }
        self
    }

    pub(crate) fn u128(&mut self, value: u128) -> &mut Self {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub(crate) fn finish(&self) -> CacheKey {
        xxh3_128(&self.0)
    }
}

/// The database identity of a call: the handle's configured database, and what
/// the connection knows of the database, user and schema path it reads (`None`
/// for a plain connection, which cannot tell).
pub(crate) fn identity(database: u128, connection: Option<u128>) -> u128 {
    match connection {
        None => database,
        Some(connection) => {
            let mut both = [0u8; 32];
            both[..16].copy_from_slice(&database.to_le_bytes());
            both[16..].copy_from_slice(&connection.to_le_bytes());
            xxh3_128(&both)
        }
    }
}

/// The key of one query call against the database `identity`.
pub(crate) fn query_key(
    backend: &str,
    op: &str,
    identity: u128,
    sql: &str,
    binds: &[Value],
    shape: u128,
) -> CacheKey {
    KeyHasher::new(backend, op)
        .u128(identity)
        .bytes(sql.as_bytes())
        .binds(binds)
        .u128(shape)
        .finish()
}

/// The op name of raw-row entries (automatic caching through `CachedConnection`).
/// Typed `.cached()` entries are keyed by the op's own name (`get`, `fetch`, ...),
/// so an entry of one kind can never be read as the other. Its suffix is the
/// raw-row payload's layout, bumped alone so that typed entries survive a change
/// of it: `v2` keeps every cell in one buffer (`automatic/cells.rs`).
pub(crate) const RAW_ROWS_OP: &str = "rows.v2";

/// The key of a query cached as raw rows: no result-type shape, the rows describe
/// themselves (names and type tags travel with them).
pub(crate) fn rows_key(backend: &str, identity: u128, sql: &str, binds: &[Value]) -> CacheKey {
    KeyHasher::new(backend, RAW_ROWS_OP)
        .u128(identity)
        .bytes(sql.as_bytes())
        .binds(binds)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Equality;

    fn text(s: &str) -> Value {
        Value {
            ty: 25,
            equality: Equality::Exact,
            bytes: Some(s.as_bytes().into()),
        }
    }

    #[test]
    fn binds_are_length_prefixed() {
        let sql = "SELECT 1 WHERE x IN ($1, $2)";
        let two = query_key("pg", "fetch", 0, sql, &[text("a"), text("b")], 0);
        let one = query_key("pg", "fetch", 0, sql, &[text("a, b")], 0);
        let joined = query_key("pg", "fetch", 0, sql, &[text("ab"), text("")], 0);
        assert_ne!(two, one);
        assert_ne!(two, joined);
    }

    #[test]
    fn null_differs_from_empty_and_type_matters() {
        let null = Value {
            ty: 25,
            equality: Equality::Exact,
            bytes: None,
        };
        let int = Value { ty: 23, ..text("") };
        let keys = [&null, &text(""), &int]
            .map(|v| query_key("pg", "get", 0, "S", std::slice::from_ref(v), 0));
        assert_ne!(keys[0], keys[1]);
        assert_ne!(keys[1], keys[2]);
    }

    #[test]
    fn every_part_counts() {
        let base = query_key("pg", "get", 0, "S", &[], 1);
        assert_ne!(base, query_key("sqlite", "get", 0, "S", &[], 1));
        assert_ne!(base, query_key("pg", "fetch", 0, "S", &[], 1));
        assert_ne!(base, query_key("pg", "get", 0, "T", &[], 1));
        assert_ne!(base, query_key("pg", "get", 0, "S", &[], 2));
        assert_eq!(base, query_key("pg", "get", 0, "S", &[], 1));
        assert_ne!(
            base,
            query_key("pg", "get", 7, "S", &[], 1),
            "another database"
        );
    }

    #[test]
    fn raw_rows_never_share_a_typed_key() {
        let rows = rows_key("pg", 0, "S", &[]);
        for op in ["get", "fetch", "count", "exists", "aggregate"] {
            assert_ne!(rows, query_key("pg", op, 0, "S", &[], 0));
        }
        assert_ne!(rows, rows_key("sqlite", 0, "S", &[]));
        assert_ne!(rows, rows_key("pg", 0, "S", &[text("a")]));
    }
}
