//! Key names, value framing and stamp checksums shared by every store.
//!
//! # Layout
//!
//! `P` is the store's prefix (default `cacheops`). Every key of one table `T` starts
//! with the hash tag `{P:T}`, so each script touches keys of one cluster slot only:
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `{P:T}:gen` | string | generation stamp; every value depending on `T` depends on it. Deleted only by table-wide invalidation. |
//! | `{P:T}:all` | string | stamp of "any change of `T`" ([`TableDeps::Any`]). Deleted by every row invalidation of `T`. |
//! | `{P:T}:j:<c1>=<v1>&<c2>=<v2>` | string | stamp of one conjunction, columns sorted. |
//! | `{P:T}:schemes` | set | every scheme (comma-joined sorted columns of a conjunction) registered for `T`, plus the sentinel `""` once anything was fenced for `T`. |
//! | `P:q:<32 hex>` | string | a cached value: 16-byte checksum of its stamps, then the payload. |
//! | `P:s:<32 hex>` | string | a simple-cache value (`cache.set`, `#[cached]`): the payload; the hex is the xxh3-128 of the user's key. |
//! | `P:l:<32 hex>` | string | a stampede lock on the `q` or `s` key of the same hex: the holder's token. |
//! | `P:news` | pub/sub channel | invalidation news: the names of stamp and value keys a script deleted or re-created, `\n`-joined, or `*` (see `news.rs`). |
//!
//! Values in conjunction keys: NULL is `~`, up to 32 bytes are lowercase hex, longer
//! ones are `#` plus the hex of their xxh3-128; PostgreSQL integers of any width
//! are the 8 bytes of their `i64` (an `int4` bind matches an `int8` column). Table and column names are
//! percent-escaped where they contain `%`, `,`, `=`, `&`, `{`, `}`, `:`, glob
//! characters or control characters, so a scheme splits on `,` and a key parses one
//! way only. In `P`, only `{`, `}` and `%` are escaped; a prefix may contain `:`
//! (keys of prefix `P:x` are told apart from those of `P` by [`Layout::owns`]).
//!
//! The stamps of a [`Deps`] in canonical order: per table, in `deps.tables` order,
//! `gen`, then `all` for [`TableDeps::Any`], else the conjunction keys in [`Conj`]
//! order. A value's checksum is xxh3-128 over those stamps, each prefixed by its
//! length, so a lookup recomputes it from one `MGET` of the value and its stamps.
//!
//! This module holds everything both stores must agree on. The Lua scripts in
//! `lua/` repeat only the matching of rows against schemes ([`Layout::dropped_by`]),
//! on strings this module prepared.

use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use xxhash_rust::xxh3::xxh3_128;

use super::store::{CacheKey, RowState};
use crate::deps::{Conj, Deps, TableDeps};
use crate::value::Value;

/// Length of the checksum in front of every stored value.
pub(crate) const CHECKSUM_LEN: usize = 16;

/// The member every schemes set gets at its first fence: proves the set was not lost.
pub(crate) const SENTINEL: &str = "";

/// Values longer than this are hashed in conjunction keys.
const MAX_INLINE_VALUE: usize = 32;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Key names of one prefix.
#[derive(Clone, Debug)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// The layout under `prefix`; `{`, `}` and `%` in it are percent-escaped so
    /// they cannot end a hash tag early.
    pub fn new(prefix: &str) -> Layout {
        let mut escaped = String::with_capacity(prefix.len());
        for c in prefix.chars() {
            match c {
                '{' | '}' | '%' => escaped.push_str(&format!("%{:02X}", c as u32)),
                c => escaped.push(c),
            }
        }
        Layout { prefix: escaped }
    }

    /// The (escaped) prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P:q:<32 hex>`: where the value of `key` lives.
    pub(crate) fn value_key(&self, key: CacheKey) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 35);
        self.push_value_key(&mut out, key);
        out
    }

    /// Appends the value key of `key` to `out`.
    pub(crate) fn push_value_key(&self, out: &mut String, key: CacheKey) {
        self.push_hashed_key(out, 'q', key);
    }

    /// `P:s:<32 hex>`: where the simple cache keeps the value of `key`.
    pub(crate) fn simple_key(&self, key: CacheKey) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 35);
        self.push_hashed_key(&mut out, 's', key);
        out
    }

    /// `P:l:<32 hex>`: the stampede lock of `key`.
    pub(crate) fn lock_key(&self, key: CacheKey) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 35);
        self.push_hashed_key(&mut out, 'l', key);
        out
    }

    fn push_hashed_key(&self, out: &mut String, kind: char, key: CacheKey) {
        out.push_str(&self.prefix);
        out.push(':');
        out.push(kind);
        out.push(':');
        push_hex(out, &key.to_be_bytes());
    }

    /// `P:news`: the pub/sub channel of invalidation news (see `news.rs`).
    pub(crate) fn news_channel(&self) -> String {
        format!("{}:news", self.prefix)
    }

    /// `{P:T}:<suffix>`, e.g. `gen`, `all`, `schemes`, or `j:` for the conj prefix.
    pub(crate) fn table_key(&self, table: &str, suffix: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + table.len() + 12);
        self.push_table_key(&mut out, table, suffix);
        out
    }

    fn push_table_key(&self, out: &mut String, table: &str, suffix: &str) {
        out.push('{');
        out.push_str(&self.prefix);
        out.push(':');
        push_escaped(out, table);
        out.push_str("}:");
        out.push_str(suffix);
    }

    /// Calls `f` with each stamp key of `deps`, in canonical order, reusing one
    /// buffer: the hot path builds no string per key.
    pub(crate) fn for_each_stamp_key(&self, deps: &Deps, mut f: impl FnMut(&str)) {
        let mut buf = String::with_capacity(128);
        for (table, table_deps) in &deps.tables {
            self.for_each_table_stamp(&mut buf, table, table_deps, &mut f);
        }
    }

    /// Calls `f` with the stamp keys of one table, in canonical order.
    pub(crate) fn for_each_table_stamp(
        &self,
        buf: &mut String,
        table: &str,
        deps: &TableDeps,
        f: &mut impl FnMut(&str),
    ) {
        let mut emit = |buf: &mut String, suffix: &str, conj: Option<&Conj>| {
            buf.clear();
            self.push_table_key(buf, table, suffix);
            if let Some(conj) = conj {
                push_conj(buf, conj);
            }
            f(buf);
        };
        emit(buf, "gen", None);
        match deps {
            TableDeps::Any => emit(buf, "all", None),
            TableDeps::Conjs(conjs) => conjs.iter().for_each(|c| emit(buf, "j:", Some(c))),
        }
    }

    /// Every stamp key of `deps`, in canonical order.
    #[cfg(test)]
    pub(crate) fn stamp_keys(&self, deps: &Deps) -> Vec<String> {
        let mut keys = Vec::new();
        self.for_each_stamp_key(deps, |k| keys.push(k.to_owned()));
        keys
    }

    /// Whether `key` is one of this prefix's keys (and not of a prefix that merely
    /// starts with ours, such as `P:x` for `P`).
    pub fn owns(&self, key: &str) -> bool {
        if let Some(rest) = key.strip_prefix(&self.prefix) {
            let hashed = [":q:", ":s:", ":l:"]
                .iter()
                .find_map(|k| rest.strip_prefix(k));
            if let Some(hex) = hashed {
                return hex.len() == 32;
            }
        }
        let Some(rest) = key
            .strip_prefix('{')
            .and_then(|k| k.strip_prefix(&self.prefix))
        else {
            return false;
        };
        // Escaped table names contain neither ':' nor '}'.
        let Some(table_end) = rest.strip_prefix(':').and_then(|t| t.find('}')) else {
            return false;
        };
        !rest[1..=table_end].contains(':')
    }

    /// SCAN patterns that cover [`Layout::owns`] (a superset; filter with it).
    pub fn scan_patterns(&self) -> [String; 2] {
        let mut glob = String::with_capacity(self.prefix.len());
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                glob.push('\\');
            }
            glob.push(c);
        }
        [format!("{{{glob}:*"), format!("{glob}:[qsl]:*")]
    }
}

/// The scheme of a conjunction: its escaped columns, sorted, comma-joined.
pub(crate) fn scheme(conj: &Conj) -> String {
    let mut out = String::new();
    for (i, (column, _)) in conj.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_escaped(&mut out, column);
    }
    out
}

/// The distinct schemes of one table's dependencies, sorted.
pub(crate) fn schemes(deps: &TableDeps) -> Vec<String> {
    let TableDeps::Conjs(conjs) = deps else {
        return Vec::new();
    };
    let mut out: Vec<String> = conjs.iter().map(scheme).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Appends `c1=v1&c2=v2` for a conjunction (columns are already sorted).
fn push_conj(out: &mut String, conj: &Conj) {
    for (i, (column, value)) in conj.0.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        push_escaped(out, column);
        out.push('=');
        push_value(out, value);
    }
}

/// A row as the invalidation script receives it: per column, its escaped name and
/// its term `<name>=<encoded value>`, as conjunction keys spell it (built here so
/// that the script only joins terms).
pub(crate) type EncodedRow = Vec<(String, String)>;

/// Encodes a row's columns the way conjunction keys spell them. A name that
/// comes twice with different values (columns whose names differ only in case)
/// is left out: a row lacking a scheme's column invalidates the whole table.
pub(crate) fn encode_row(row: &RowState<'_>) -> EncodedRow {
    let encode = |(column, value): &(&str, Value)| {
        let mut name = String::with_capacity(column.len());
        push_escaped(&mut name, column);
        let mut term = String::with_capacity(name.len() + 9);
        term.push_str(&name);
        term.push('=');
        push_value(&mut term, value);
        (name, term)
    };
    let encoded: EncodedRow = row.columns.iter().map(encode).collect();
    let ambiguous =
        |(name, term): &(String, String)| encoded.iter().any(|(n, t)| n == name && t != term);
    if !encoded.iter().any(ambiguous) {
        return encoded;
    }
    let kept = encoded.iter().filter(|c| !ambiguous(c)).cloned();
    kept.collect()
}

/// The conjunction key (after `conj_prefix`, i.e. `{P:T}:j:`) that `row` hits for
/// `scheme`, or `None` when the row lacks a column of the scheme: an unknown value
/// may equal anything, so the caller must invalidate the whole table (never treat
/// a missing column as a value). `invalidate.lua` is the same function in Lua.
pub(crate) fn row_conj_key(conj_prefix: &str, scheme: &str, row: &EncodedRow) -> Option<String> {
    let mut key = String::with_capacity(conj_prefix.len() + scheme.len() * 4);
    key.push_str(conj_prefix);
    for (i, column) in scheme.split(',').enumerate() {
        let (_, term) = row.iter().rev().find(|(c, _)| c == column)?;
        if i > 0 {
            key.push('&');
        }
        key.push_str(term);
    }
    Some(key)
}

/// The stamp keys that invalidating `rows` of one table deletes.
#[derive(Debug)]
pub(crate) struct Dropped {
    pub(crate) keys: Vec<String>,
    /// Whether they include `gen`: every value of the table dies.
    pub(crate) whole_table: bool,
}

impl Layout {
    /// What invalidating `rows` of `table` deletes, given the members of its
    /// schemes set (`schemes`; without the sentinel, the set was lost): `all` and
    /// each scheme's conjunction key for each row; or `all` and `gen` when the
    /// schemes were lost or a row lacks a scheme's column. The memory store runs
    /// this; `invalidate.lua` is the same function in Lua.
    pub(crate) fn dropped_by(
        &self,
        table: &str,
        schemes: &[String],
        rows: &[EncodedRow],
    ) -> Dropped {
        let all = self.table_key(table, "all");
        let whole_table = || Dropped {
            keys: vec![all.clone(), self.table_key(table, "gen")],
            whole_table: true,
        };
        if !schemes.iter().any(|s| s == SENTINEL) {
            return whole_table();
        }
        let conj_prefix = self.table_key(table, "j:");
        let mut keys = vec![all.clone()];
        for scheme in schemes.iter().filter(|s| *s != SENTINEL) {
            for row in rows {
                let Some(key) = row_conj_key(&conj_prefix, scheme, row) else {
                    return whole_table();
                };
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        Dropped {
            keys,
            whole_table: false,
        }
    }
}

/// Appends a value as conjunction keys spell it (see the module docs).
pub(crate) fn push_value(out: &mut String, value: &Value) {
    if let Some(int) = crate::value::canonical_int(value) {
        return push_hex(out, &int);
    }
    match value.bytes.as_deref() {
        None => out.push('~'),
        Some(bytes) if bytes.len() <= MAX_INLINE_VALUE => push_hex(out, bytes),
        Some(bytes) => {
            out.push('#');
            push_hex(out, &xxh3_128(bytes).to_be_bytes());
        }
    }
}

/// Appends `name`, percent-escaping the characters that carry meaning in keys,
/// schemes or SCAN patterns, and folding ASCII letters to lower case: SQLite
/// compares identifiers without case (`"ARTICLES"` is `articles`), and on
/// PostgreSQL two tables or columns whose names differ only in case merely share
/// stamps (more invalidation, never less; a row holding both columns is
/// ambiguous and widens, see [`encode_row`]).
pub(crate) fn push_escaped(out: &mut String, name: &str) {
    let special = |c: char| {
        matches!(
            c,
            '%' | ',' | '=' | '&' | '{' | '}' | ':' | '*' | '?' | '[' | ']' | '\\'
        ) || c.is_ascii_control()
            || c.is_ascii_uppercase()
    };
    if name.is_empty() {
        // A lone '%' never results from escaping: keeps "" apart from the sentinel
        // scheme and from an empty segment.
        out.push('%');
        return;
    }
    if !name.contains(special) {
        out.push_str(name);
        return;
    }
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push(c.to_ascii_lowercase());
        } else if special(c) {
            // Every special character is ASCII: one byte.
            let _ = write!(out, "%{:02X}", c as u32);
        } else {
            out.push(c);
        }
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
}

/// The checksum of stamps in canonical order. Length prefixes keep `["ab", "c"]`
/// and `["a", "bc"]` apart.
pub(crate) fn checksum<'a>(stamps: impl IntoIterator<Item = &'a [u8]>) -> [u8; CHECKSUM_LEN] {
    // One buffer hashed at once: cheaper than xxh3's streaming state for the few
    // short stamps of a value, with the same digest.
    let mut bytes = Vec::with_capacity(128);
    for stamp in stamps {
        bytes.extend_from_slice(&(stamp.len() as u64).to_le_bytes());
        bytes.extend_from_slice(stamp);
    }
    xxh3_128(&bytes).to_be_bytes()
}

/// A stored value: the checksum of `stamps`, then `payload`.
pub(crate) fn frame<'a>(stamps: impl IntoIterator<Item = &'a [u8]>, payload: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(CHECKSUM_LEN + payload.len());
    framed.extend_from_slice(&checksum(stamps));
    framed.extend_from_slice(payload);
    framed
}

/// Checks a looked-up value against the stamps read with it and returns the
/// payload. `values` is the `MGET` answer: the value, then the stamps. A missing
/// value or stamp, a short value or a checksum mismatch is a miss.
pub(crate) fn unframe(mut values: Vec<Option<Vec<u8>>>) -> Option<Vec<u8>> {
    let stamps = values.get(1..)?;
    if stamps.iter().any(Option::is_none) {
        return None;
    }
    let expected = checksum(stamps.iter().flatten().map(Vec::as_slice));
    let mut value = values.swap_remove(0)?;
    if value.get(..CHECKSUM_LEN)? != expected {
        return None;
    }
    value.drain(..CHECKSUM_LEN);
    Some(value)
}

/// A fresh random stamp: 16 hex characters. Process-wide random keys hash a
/// counter, so stamps never repeat within a process and differ between processes.
pub(crate) fn new_stamp() -> String {
    let mut out = String::with_capacity(16);
    push_hex(&mut out, &fresh().to_be_bytes());
    out
}

/// A random 128-bit value no other call in this or any process gives (see
/// [`new_stamp`]): for identities that must be their holder's own.
pub(crate) fn unique() -> u128 {
    u128::from(fresh()) << 64 | u128::from(fresh())
}

fn fresh() -> u64 {
    static STATE: LazyLock<RandomState> = LazyLock::new(RandomState::new);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    STATE.hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// How long stamps live for values of `ttl`: long enough to outlive every value
/// fenced with them.
pub(crate) fn stamp_ttl(ttl: Duration) -> Duration {
    ttl.saturating_mul(2)
        .saturating_add(Duration::from_secs(60))
}

/// A TTL in whole milliseconds, at least 1 (Redis rejects `PX 0`).
pub(crate) fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
