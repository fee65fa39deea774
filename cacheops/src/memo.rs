//! Values computed once per SQL text: a query's template, what a read reads, how a
//! write is classified and rewritten. Parsing SQL costs tens of µs; an application
//! runs few distinct SQL texts, each many times, so each is parsed once.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::backend::Dialect;

/// Entries kept per dialect before a memo starts over. Diesel's SQL texts are few
/// (one per query shape), but hand-written SQL with its literals inlined would
/// otherwise grow a memo without bound.
const CAPACITY: usize = 4096;

/// A map from SQL text to the value computed from it, one per dialect.
pub(crate) struct Memo<V>([RwLock<HashMap<Box<str>, V>>; 2]);

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
        let memo = &self.0[dialect as usize];
        // A poisoned lock only means another thread panicked while inserting a
        // complete value: the map itself is still consistent.
        if let Some(found) = memo.read().unwrap_or_else(|e| e.into_inner()).get(sql) {
            return Ok(found.clone());
        }
        let value = make()?;
        let mut memo = memo.write().unwrap_or_else(|e| e.into_inner());
        if memo.len() >= CAPACITY {
            memo.clear();
        }
        memo.insert(sql.into(), value.clone());
        Ok(value)
    }

    /// The value of `sql`, made by `make` the first time.
    pub(crate) fn get_or(&self, sql: &str, dialect: Dialect, make: impl FnOnce() -> V) -> V {
        let made = self.get_or_try(sql, dialect, || Ok::<V, std::convert::Infallible>(make()));
        match made {
            Ok(value) => value,
            Err(never) => match never {},
        }
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
        assert!(memo.0[0].read().unwrap().len() <= CAPACITY);
        assert_eq!(memo.get_or("SELECT 0", Dialect::Postgres, || 99), 99);
    }
}
