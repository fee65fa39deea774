//! Values computed once and kept: per SQL text, a query's template, what a read
//! reads, how a write is classified and rewritten (parsing SQL costs tens of µs;
//! an application runs few distinct SQL texts, each many times); per cache key,
//! what a hit would otherwise rebuild (its dependencies, its lookup command).

use std::any::TypeId;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::RwLock;

use crate::backend::Dialect;

/// Entries a map keeps before it starts over. Diesel's SQL texts are few (one per
/// query shape), but hand-written SQL with its literals inlined, or the keys of
/// every distinct query, would otherwise grow a map without bound.
const CAPACITY: usize = 4096;

/// A map from SQL text to the value computed from it, one per dialect.
pub(crate) struct Memo<V>([Bounded<Box<str>, V>; 2]);

impl<V> Default for Memo<V> {
    fn default() -> Self {
        Memo(Default::default())
    }
}

impl<V: Clone> Memo<V> {
    /// The value of `sql`, made by `make` the first time (an error is not kept).
    pub(crate) fn get_or_try<E>(
        &self,
        sql: &str,
        dialect: Dialect,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        self.0[dialect as usize].get_or_try(sql, make)
    }

    /// The value of `sql`, made by `make` the first time.
    pub(crate) fn get_or(&self, sql: &str, dialect: Dialect, make: impl FnOnce() -> V) -> V {
        self.0[dialect as usize].get_or(sql, make)
    }
}

/// A map of values computed once per key, bounded to [`CAPACITY`] entries: when
/// full, it starts over (the next calls recompute what they need).
pub(crate) struct Bounded<K, V, S = RandomState>(RwLock<HashMap<K, V, S>>);

impl<K, V, S: Default> Default for Bounded<K, V, S> {
    fn default() -> Self {
        Bounded(RwLock::new(HashMap::default()))
    }
}

/// A [`Bounded`] map by cache key. Cache keys are xxh3 digests already: their
/// bits are their hash (no SipHash on a hit's path). Crafting keys that collide
/// in those bits would only slow a map that never holds more than [`CAPACITY`].
pub(crate) type ByKey<V> = Bounded<u128, V, BuildHasherDefault<KeyBits>>;

/// A map by `TypeId` (ids are hashes too), for values kept per type.
pub(crate) type ByTypeId<V> = HashMap<TypeId, V, BuildHasherDefault<KeyBits>>;

/// The hasher of [`ByKey`] and [`ByTypeId`]: folds the key's bits.
#[derive(Default)]
pub(crate) struct KeyBits(u64);

impl Hasher for KeyBits {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached by u128 keys; still a hash of anything else.
        self.0 = bytes.iter().fold(self.0, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        });
    }

    fn write_u64(&mut self, n: u64) {
        // What a `TypeId` hashes as: its bits are a hash too.
        self.0 ^= n;
    }

    fn write_u128(&mut self, n: u128) {
        self.0 ^= (n as u64) ^ ((n >> 64) as u64);
    }
}

impl<K: Hash + Eq, V: Clone, S: BuildHasher> Bounded<K, V, S> {
    /// The value of `key`, made by `make` the first time (an error is not kept).
    pub(crate) fn get_or_try<Q, E>(
        &self,
        key: &Q,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned + ?Sized,
        Q::Owned: Into<K>,
    {
        if let Some(found) = self.get(key) {
            return Ok(found);
        }
        let value = make()?;
        self.insert(key.to_owned().into(), value.clone());
        Ok(value)
    }

    /// The value kept for `key`, if any.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // A poisoned lock only means another thread panicked while inserting a
        // complete value: the map itself is still consistent.
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.get(key).cloned()
    }

    /// Keeps `value` for `key`, replacing what was kept.
    pub(crate) fn insert(&self, key: K, value: V) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(key, value);
    }

    /// The value of `key`, made by `make` the first time.
    pub(crate) fn get_or<Q>(&self, key: &Q, make: impl FnOnce() -> V) -> V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned + ?Sized,
        Q::Owned: Into<K>,
    {
        match self.get_or_try(key, || Ok::<V, std::convert::Infallible>(make())) {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_each_value_once_and_keeps_dialects_apart() {
        let memo = Memo::<usize>::default();
        let mut made = 0;
        for _ in 0..3 {
            memo.get_or("SELECT 1", Dialect::Postgres, || {
                made += 1;
                made
            });
        }
        assert_eq!(made, 1);
        assert_eq!(memo.get_or("SELECT 1", Dialect::Sqlite, || 7), 7);
        assert_eq!(memo.get_or("SELECT 1", Dialect::Postgres, || 9), 1);
    }

    #[test]
    fn an_error_is_not_kept() {
        let memo = Memo::<usize>::default();
        let failed = memo.get_or_try("x", Dialect::Postgres, || Err("bad"));
        assert_eq!(failed, Err("bad"));
        assert_eq!(memo.get_or("x", Dialect::Postgres, || 2), 2);
    }

    #[test]
    fn a_full_memo_starts_over_instead_of_growing() {
        let memo = Memo::<usize>::default();
        for i in 0..CAPACITY + 10 {
            memo.get_or(&format!("SELECT {i}"), Dialect::Postgres, || i);
        }
        assert!(memo.0[0].len() <= CAPACITY);
        assert_eq!(memo.get_or("SELECT 0", Dialect::Postgres, || 99), 99);
    }
}
