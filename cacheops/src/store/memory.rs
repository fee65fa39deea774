//! In-process store: the semantics of the Redis store, for one process.
//!
//! The keys are those of [`crate::protocol::layout`]; each method does what the matching
//! script in `lua/` does, under one lock. Expired keys are removed when touched and
//! swept whenever the map has doubled since the last sweep.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{CacheKey, Fence, LockStore, QueryStore, RowState, SimpleStore};
use crate::deps::{Deps, TableDeps};
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::layout::{self, Layout, SENTINEL};

/// A store in this process's memory, with the same semantics as
/// [`RedisStore`](super::RedisStore): for single-process programs, tests and
/// examples. Clones share the same data.
///
/// ```
/// use cacheops::store::{MemoryStore, QueryStore};
/// let store = MemoryStore::new("myapp");
/// assert_eq!(store.lookup(1, &Default::default()).unwrap(), None);
/// ```
#[derive(Clone, Debug)]
pub struct MemoryStore {
    layout: Layout,
    keys: Arc<Mutex<Keys>>,
}

impl Default for MemoryStore {
    /// A store with the default prefix `cacheops`.
    fn default() -> Self {
        MemoryStore::new("cacheops")
    }
}

impl MemoryStore {
    /// An empty store whose keys live under `prefix`.
    pub fn new(prefix: &str) -> MemoryStore {
        MemoryStore {
            layout: Layout::new(prefix),
            keys: Arc::default(),
        }
    }

    /// A store under another prefix sharing this one's keys (as two programs
    /// share one Redis).
    #[cfg(test)]
    pub(crate) fn sibling(&self, prefix: &str) -> MemoryStore {
        MemoryStore {
            layout: Layout::new(prefix),
            keys: Arc::clone(&self.keys),
        }
    }

    #[cfg(test)]
    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Raw access for tests: sets `key` to `value` with no expiry.
    #[cfg(test)]
    pub(crate) fn raw_set(&self, key: &str, value: &[u8]) {
        self.lock().set(key, Data::Bytes(value.to_vec()), None);
    }

    /// Raw access for tests: whether `key` exists.
    #[cfg(test)]
    pub(crate) fn raw_exists(&self, key: &str) -> bool {
        self.lock().live(key, Instant::now()).is_some()
    }

    /// Raw access for tests: deletes `key`.
    #[cfg(test)]
    pub(crate) fn raw_del(&self, key: &str) {
        self.lock().map.remove(key);
    }

    fn lock(&self) -> MutexGuard<'_, Keys> {
        // Nothing panics while the lock is held, and a half-done change is no worse
        // than an eviction: the data stays usable.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `fence.lua` for one table.
    fn fence_table(
        &self,
        keys: &mut Keys,
        table: &str,
        deps: &TableDeps,
        ttl: Duration,
        fence: &mut Fence,
    ) {
        let now = Instant::now();
        let candidate = layout::new_stamp();
        let schemes_key = self.layout.table_key(table, "schemes");
        let gen_key = self.layout.table_key(table, "gen");
        let lost = keys.live(&schemes_key, now).is_none();
        if lost {
            // Schemes lost: values registered under them must die.
            keys.map.remove(&gen_key);
        }
        let schemes = layout::schemes(deps)
            .into_iter()
            .chain([SENTINEL.to_owned()]);
        keys.sadd(&schemes_key, schemes, now);
        keys.expire(&schemes_key, now + ttl, !lost);
        let mut buf = String::new();
        let mut visit = |key: &str| {
            let stamp = keys.set_nx_get(key, candidate.as_bytes(), now, now + ttl);
            fence.keys.push(key.to_owned());
            fence.stamps.push(stamp);
        };
        self.layout
            .for_each_table_stamp(&mut buf, table, deps, &mut visit);
    }

    /// `invalidate.lua`.
    fn invalidate_locked(&self, keys: &mut Keys, table: &str, rows: &[RowState<'_>]) {
        let schemes_key = self.layout.table_key(table, "schemes");
        let schemes = keys
            .members(&schemes_key, Instant::now())
            .unwrap_or_default();
        let rows: Vec<_> = rows.iter().map(layout::encode_row).collect();
        for key in self.layout.dropped_by(table, &schemes, &rows).keys {
            keys.map.remove(&key);
        }
    }
}

impl QueryStore for MemoryStore {
    fn lookup(&self, key: CacheKey, deps: &Deps) -> Result<Option<Vec<u8>>> {
        let value_key = self.layout.value_key(key);
        let now = Instant::now();
        let mut keys = self.lock();
        let mut values = vec![keys.get(&value_key, now)];
        self.layout
            .for_each_stamp_key(deps, |k| values.push(keys.get(k, now)));
        drop(keys);
        Ok(layout::unframe(values))
    }

    fn fence(&self, deps: &Deps, ttl: Duration) -> Result<Fence> {
        let ttl = layout::stamp_ttl(ttl);
        let mut fence = Fence {
            keys: Vec::new(),
            stamps: Vec::new(),
        };
        let mut keys = self.lock();
        for (table, table_deps) in &deps.tables {
            self.fence_table(&mut keys, table, table_deps, ttl, &mut fence);
        }
        Ok(fence)
    }

    fn store(&self, key: CacheKey, fence: &Fence, payload: &[u8], ttl: Duration) -> Result<bool> {
        let framed = layout::frame(fence.stamps.iter().map(Vec::as_slice), payload);
        let now = Instant::now();
        let mut keys = self.lock();
        let mut stamps = fence.keys.iter().zip(&fence.stamps);
        if !stamps.all(|(k, s)| keys.get(k, now).as_ref() == Some(s)) {
            return Ok(false);
        }
        let ttl = Duration::from_millis(layout::millis(ttl));
        keys.set(
            &self.layout.value_key(key),
            Data::Bytes(framed),
            Some(now + ttl),
        );
        Ok(true)
    }

    fn invalidate_rows(&self, table: &str, rows: &[RowState<'_>]) -> Result<()> {
        check_rows(table, rows)?;
        if !rows.is_empty() {
            self.invalidate_locked(&mut self.lock(), table, rows);
        }
        Ok(())
    }

    fn invalidate_table(&self, table: &str) -> Result<()> {
        let mut keys = self.lock();
        keys.map.remove(&self.layout.table_key(table, "gen"));
        keys.map.remove(&self.layout.table_key(table, "all"));
        Ok(())
    }

    fn invalidate_all(&self) -> Result<()> {
        self.lock().map.retain(|k, _| !self.layout.owns(k));
        Ok(())
    }

    fn delete(&self, key: CacheKey) -> Result<()> {
        self.lock().map.remove(&self.layout.value_key(key));
        Ok(())
    }
}

impl SimpleStore for MemoryStore {
    fn simple_get(&self, key: CacheKey) -> Result<Option<Vec<u8>>> {
        let simple_key = self.layout.simple_key(key);
        Ok(self.lock().get(&simple_key, Instant::now()))
    }

    fn simple_set(&self, key: CacheKey, payload: &[u8], ttl: Duration) -> Result<()> {
        let expires = Instant::now() + Duration::from_millis(layout::millis(ttl));
        let simple_key = self.layout.simple_key(key);
        self.lock()
            .set(&simple_key, Data::Bytes(payload.to_vec()), Some(expires));
        Ok(())
    }

    fn simple_delete(&self, key: CacheKey) -> Result<()> {
        self.lock().map.remove(&self.layout.simple_key(key));
        Ok(())
    }
}

impl LockStore for MemoryStore {
    fn try_lock(&self, key: CacheKey, token: &str, ttl: Duration) -> Result<bool> {
        let now = Instant::now();
        let lock_key = self.layout.lock_key(key);
        let mut keys = self.lock();
        if keys.live(&lock_key, now).is_some() {
            return Ok(false);
        }
        let expires = now + Duration::from_millis(layout::millis(ttl));
        keys.set(&lock_key, Data::Bytes(token.into()), Some(expires));
        Ok(true)
    }

    fn unlock(&self, key: CacheKey, token: &str) -> Result<()> {
        let lock_key = self.layout.lock_key(key);
        let mut keys = self.lock();
        if keys.get(&lock_key, Instant::now()).as_deref() == Some(token.as_bytes()) {
            keys.map.remove(&lock_key);
        }
        Ok(())
    }
}

/// The memory store for async callers: every operation is a short critical
/// section, done when called, so each future is finished when it is returned.
#[cfg(feature = "async")]
mod nonblocking {
    use std::future::ready;
    use std::time::Duration;

    use super::MemoryStore;
    use crate::deps::Deps;
    use crate::store::{
        AsyncLockStore, AsyncQueryStore, AsyncSimpleStore, CacheKey, Fence, LockStore, QueryStore,
        RowState, SimpleStore, StoreFuture,
    };

    impl AsyncQueryStore for MemoryStore {
        fn lookup<'a>(&'a self, key: CacheKey, deps: &'a Deps) -> StoreFuture<'a, Option<Vec<u8>>> {
            Box::pin(ready(QueryStore::lookup(self, key, deps)))
        }

        fn fence<'a>(&'a self, deps: &'a Deps, ttl: Duration) -> StoreFuture<'a, Fence> {
            Box::pin(ready(QueryStore::fence(self, deps, ttl)))
        }

        fn store<'a>(
            &'a self,
            key: CacheKey,
            fence: &'a Fence,
            payload: &'a [u8],
            ttl: Duration,
        ) -> StoreFuture<'a, bool> {
            Box::pin(ready(QueryStore::store(self, key, fence, payload, ttl)))
        }

        fn invalidate_rows<'a>(
            &'a self,
            table: &'a str,
            rows: &'a [RowState<'a>],
        ) -> StoreFuture<'a, ()> {
            Box::pin(ready(QueryStore::invalidate_rows(self, table, rows)))
        }

        fn invalidate_table<'a>(&'a self, table: &'a str) -> StoreFuture<'a, ()> {
            Box::pin(ready(QueryStore::invalidate_table(self, table)))
        }

        fn invalidate_all(&self) -> StoreFuture<'_, ()> {
            Box::pin(ready(QueryStore::invalidate_all(self)))
        }

        fn delete(&self, key: CacheKey) -> StoreFuture<'_, ()> {
            Box::pin(ready(QueryStore::delete(self, key)))
        }
    }

    impl AsyncSimpleStore for MemoryStore {
        fn simple_get(&self, key: CacheKey) -> StoreFuture<'_, Option<Vec<u8>>> {
            Box::pin(ready(SimpleStore::simple_get(self, key)))
        }

        fn simple_set<'a>(
            &'a self,
            key: CacheKey,
            payload: &'a [u8],
            ttl: Duration,
        ) -> StoreFuture<'a, ()> {
            Box::pin(ready(SimpleStore::simple_set(self, key, payload, ttl)))
        }

        fn simple_delete(&self, key: CacheKey) -> StoreFuture<'_, ()> {
            Box::pin(ready(SimpleStore::simple_delete(self, key)))
        }
    }

    impl AsyncLockStore for MemoryStore {
        fn try_lock<'a>(
            &'a self,
            key: CacheKey,
            token: &'a str,
            ttl: Duration,
        ) -> StoreFuture<'a, bool> {
            Box::pin(ready(LockStore::try_lock(self, key, token, ttl)))
        }

        fn unlock<'a>(&'a self, key: CacheKey, token: &'a str) -> StoreFuture<'a, ()> {
            Box::pin(ready(LockStore::unlock(self, key, token)))
        }
    }
}

/// Rejects rows of another table than the one named: matching them against this
/// table's schemes would invalidate the wrong keys and leave theirs stale.
pub(crate) fn check_rows(table: &str, rows: &[RowState<'_>]) -> Result<()> {
    match rows.iter().find(|r| r.table != table) {
        None => Ok(()),
        Some(row) => Err(Error::new(
            ErrorKind::Config,
            format!(
                "a row of table {:?} was passed to invalidate_rows({table:?})",
                row.table
            ),
        )),
    }
}

#[derive(Debug, Default)]
struct Keys {
    map: HashMap<String, Entry>,
    /// Map size after the last sweep of expired entries.
    swept_len: usize,
}

#[derive(Debug)]
struct Entry {
    data: Data,
    expires: Option<Instant>,
}

#[derive(Debug)]
enum Data {
    Bytes(Vec<u8>),
    Set(BTreeSet<String>),
}

impl Keys {
    /// The entry of `key` unless it expired (then it is removed).
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        let expired = self.map.get(key)?.expires.is_some_and(|at| at <= now);
        if expired {
            self.map.remove(key);
            return None;
        }
        self.map.get_mut(key)
    }

    /// `GET`: a string's bytes (a set reads as absent).
    fn get(&mut self, key: &str, now: Instant) -> Option<Vec<u8>> {
        match &self.live(key, now)?.data {
            Data::Bytes(bytes) => Some(bytes.clone()),
            Data::Set(_) => None,
        }
    }

    /// `SET key value [PXAT expires]`.
    fn set(&mut self, key: &str, data: Data, expires: Option<Instant>) {
        self.sweep_if_grown();
        self.map.insert(key.to_owned(), Entry { data, expires });
    }

    /// `SET key value NX GET PXAT expires`, then `PEXPIREAT key expires GT` if it
    /// existed. Returns the stamp now in place.
    fn set_nx_get(&mut self, key: &str, value: &[u8], now: Instant, expires: Instant) -> Vec<u8> {
        if let Some(Entry {
            data: Data::Bytes(old),
            ..
        }) = self.live(key, now)
        {
            let old = old.clone();
            self.expire(key, expires, true);
            return old;
        }
        self.set(key, Data::Bytes(value.to_vec()), Some(expires));
        value.to_vec()
    }

    /// `PEXPIREAT key expires [GT]`. Like Redis, GT never puts an expiry on a key
    /// that has none (no expiry counts as infinitely later).
    fn expire(&mut self, key: &str, expires: Instant, only_later: bool) {
        let Some(entry) = self.map.get_mut(key) else {
            return;
        };
        match entry.expires {
            Some(at) if only_later && at >= expires => {}
            None if only_later => {}
            _ => entry.expires = Some(expires),
        }
    }

    /// `SADD`: creates the set with no expiry if absent.
    fn sadd(&mut self, key: &str, members: impl IntoIterator<Item = String>, now: Instant) {
        if self.live(key, now).is_none() {
            self.set(key, Data::Set(BTreeSet::new()), None);
        }
        if let Some(Entry {
            data: Data::Set(set),
            ..
        }) = self.map.get_mut(key)
        {
            set.extend(members);
        }
    }

    /// `SMEMBERS`, or `None` if the set does not exist.
    fn members(&mut self, key: &str, now: Instant) -> Option<Vec<String>> {
        match &self.live(key, now)?.data {
            Data::Set(set) => Some(set.iter().cloned().collect()),
            Data::Bytes(_) => None,
        }
    }

    fn sweep_if_grown(&mut self) {
        if self.map.len() < (2 * self.swept_len).max(1024) {
            return;
        }
        let now = Instant::now();
        self.map.retain(|_, e| e.expires.is_none_or(|at| at > now));
        self.swept_len = self.map.len();
    }
}
