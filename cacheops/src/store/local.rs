//! The local tier: an in-process copy of values read from Redis, served without a
//! round trip, and dropped as soon as invalidation news says a stamp it depends on
//! changed.
//!
//! # Why it stays fresh
//!
//! Every change that can make a value stale deletes or re-creates one of its
//! stamp keys (or its value key) in a script, and every such script also publishes
//! the keys it touched on the prefix's news channel (see `news.rs` and the Lua
//! headers). The tier keeps, per stamp, the *epoch* at which news of it last
//! arrived; an entry remembers its stamps and the epoch read before the Redis read
//! that produced it (`born`). It is served only while no stamp of it has news newer
//! than that. Reading the epoch *before* the Redis read matters: news processed
//! between the read and the insert makes the insert stale on arrival, and it is
//! refused at the next hit.
//!
//! The writer's own process applies its news synchronously, before the write
//! returns; other processes apply it when the subscription delivers it (the
//! staleness window, measured by `examples/bench.rs --local`). While the
//! subscription is down nothing is served or kept locally, and when it comes back
//! everything older is dropped: news may have been missed meanwhile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::xxh3_64;

use super::CacheKey;
pub use crate::config::LocalTier;

/// Past this many stamps with news, the whole tier is dropped instead of
/// remembering more (bounds the news map; entries are bounded by moka).
const MAX_NEWS: usize = 100_000;

/// Bookkeeping bytes charged per entry on top of its payload and stamps.
const ENTRY_OVERHEAD: usize = 96;

/// The identity of a stamp or value key in the tier: a hash of its name. Two
/// keys sharing a hash only make news of one drop entries of both.
pub(crate) type KeyId = u64;

pub(crate) fn key_id(key: &[u8]) -> KeyId {
    xxh3_64(key)
}

struct Entry {
    payload: Arc<[u8]>,
    /// Stamp keys and the value key the entry depends on.
    keys: Arc<[KeyId]>,
    born: u64,
    expires: Instant,
}

#[derive(Default)]
struct News {
    /// The epoch of the latest news of each key.
    latest: HashMap<KeyId, u64>,
    /// Entries born before this are dropped (news may have been missed).
    floor: u64,
}

impl News {
    fn allows(&self, keys: &[KeyId], born: u64) -> bool {
        born >= self.floor
            && keys
                .iter()
                .all(|k| self.latest.get(k).is_none_or(|&at| at <= born))
    }
}

/// The tier itself, shared by a Redis store and its news listener.
pub(crate) struct Local {
    options: LocalTier,
    entries: moka::sync::Cache<CacheKey, Arc<Entry>>,
    news: RwLock<News>,
    epoch: AtomicU64,
    /// Whether the news subscription is up: nothing is served or kept without it.
    listening: AtomicBool,
    hits: AtomicU64,
}

/// What a Redis read must remember to keep its result locally: the epoch before it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket(u64);

impl Local {
    pub(crate) fn new(options: LocalTier) -> Local {
        let entries = moka::sync::Cache::builder()
            .max_capacity(options.max_bytes)
            .weigher(|_, e: &Arc<Entry>| {
                let bytes = e.payload.len() + e.keys.len() * 8 + ENTRY_OVERHEAD;
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .time_to_live(options.max_ttl)
            .build();
        Local {
            options,
            entries,
            news: RwLock::default(),
            epoch: AtomicU64::new(1),
            listening: AtomicBool::new(false),
            hits: AtomicU64::new(0),
        }
    }

    /// The payload of `key`, if kept and no news has touched it since.
    pub(crate) fn get(&self, key: CacheKey) -> Option<Vec<u8>> {
        if !self.listening.load(Ordering::Acquire) {
            return None;
        }
        let entry = self.entries.get(&key)?;
        let fresh =
            entry.expires > Instant::now() && self.read_news().allows(&entry.keys, entry.born);
        if !fresh {
            self.entries.invalidate(&key);
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(entry.payload.to_vec())
    }

    /// Taken before a Redis read whose result may be kept; `None` while the tier
    /// is not listening.
    pub(crate) fn ticket(&self) -> Option<Ticket> {
        self.listening
            .load(Ordering::Acquire)
            .then(|| Ticket(self.epoch.load(Ordering::Acquire)))
    }

    /// Keeps a payload read from Redis under `ticket`, unless news of one of its
    /// `keys` arrived since the ticket was taken.
    pub(crate) fn keep(
        &self,
        key: CacheKey,
        ticket: Ticket,
        payload: &[u8],
        keys: Arc<[KeyId]>,
        ttl: Duration,
    ) {
        if !self.read_news().allows(&keys, ticket.0) {
            return;
        }
        let entry = Entry {
            payload: payload.into(),
            keys,
            born: ticket.0,
            expires: Instant::now() + ttl.min(self.options.max_ttl),
        };
        self.entries.insert(key, Arc::new(entry));
    }

    /// News: `keys` were deleted or re-created; entries depending on them die.
    /// No keys (a fence that created nothing): no lock taken, no epoch spent.
    pub(crate) fn news<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        let mut keys = keys.into_iter().peekable();
        if keys.peek().is_none() {
            return;
        }
        let mut news = self.write_news();
        let at = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        for key in keys {
            news.latest.insert(key_id(key), at);
        }
        if news.latest.len() > MAX_NEWS {
            self.drop_all_locked(&mut news);
        }
    }

    /// Drops every entry, e.g. after `invalidate_all` or when news may be lost.
    pub(crate) fn drop_all(&self) {
        self.drop_all_locked(&mut self.write_news());
    }

    fn drop_all_locked(&self, news: &mut News) {
        news.floor = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        news.latest.clear();
        self.entries.invalidate_all();
    }

    /// The subscription is up (`true`) or lost (`false`). Both drop everything:
    /// news published while it was down is lost.
    pub(crate) fn set_listening(&self, listening: bool) {
        if !listening {
            self.listening.store(false, Ordering::Release);
        }
        self.drop_all();
        if listening {
            self.listening.store(true, Ordering::Release);
        }
    }

    pub(crate) fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// Reads served from the tier.
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Approximate bytes held (payloads, stamps, bookkeeping), as of moka's last
    /// maintenance: cheap, since `Cacheops::stats` may be polled.
    pub(crate) fn weighted_size(&self) -> u64 {
        self.entries.weighted_size()
    }

    fn read_news(&self) -> std::sync::RwLockReadGuard<'_, News> {
        // News is consistent at every step (plain inserts): poisoning is harmless.
        self.news.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_news(&self) -> std::sync::RwLockWriteGuard<'_, News> {
        self.news.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listening() -> Local {
        let local = Local::new(LocalTier::new(1 << 20));
        local.set_listening(true);
        local
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn news_drops_the_entries_of_its_keys_only() {
        let local = listening();
        let ticket = local.ticket().unwrap();
        local.keep(
            1,
            ticket,
            b"one",
            vec![key_id(b"a"), key_id(b"b")].into(),
            MINUTE,
        );
        local.keep(
            2,
            ticket,
            b"two",
            vec![key_id(b"a"), key_id(b"c")].into(),
            MINUTE,
        );
        assert_eq!(local.get(1).as_deref(), Some(&b"one"[..]));
        local.news([&b"b"[..]]);
        assert_eq!(local.get(1), None);
        assert_eq!(local.get(2).as_deref(), Some(&b"two"[..]));
    }

    #[test]
    fn news_between_the_read_and_the_keep_refuses_it() {
        let local = listening();
        let ticket = local.ticket().unwrap();
        local.news([&b"a"[..]]);
        local.keep(1, ticket, b"old", vec![key_id(b"a")].into(), MINUTE);
        assert_eq!(local.get(1), None);
        let later = local.ticket().unwrap();
        local.keep(1, later, b"new", vec![key_id(b"a")].into(), MINUTE);
        assert_eq!(local.get(1).as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn nothing_is_served_or_kept_while_not_listening() {
        let local = listening();
        let ticket = local.ticket().unwrap();
        local.keep(1, ticket, b"x", vec![key_id(b"a")].into(), MINUTE);
        local.set_listening(false);
        assert!(local.ticket().is_none());
        assert_eq!(local.get(1), None);
        local.set_listening(true);
        assert_eq!(local.get(1), None, "dropped: news may have been missed");
        local.keep(1, ticket, b"x", vec![key_id(b"a")].into(), MINUTE);
        assert_eq!(
            local.get(1),
            None,
            "a ticket from before the outage is void"
        );
    }

    #[test]
    fn entries_expire_with_their_value() {
        let local = listening();
        let ticket = local.ticket().unwrap();
        local.keep(1, ticket, b"x", vec![].into(), Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(local.get(1), None);
    }

    #[test]
    fn memory_stays_bounded() {
        let local = Local::new(LocalTier::new(64 * 1024));
        local.set_listening(true);
        let payload = vec![7u8; 1000];
        for key in 0..1000 {
            let ticket = local.ticket().unwrap();
            local.keep(key, ticket, &payload, vec![key_id(b"a")].into(), MINUTE);
        }
        local.entries.run_pending_tasks();
        assert!(
            local.weighted_size() <= 64 * 1024,
            "{}",
            local.weighted_size()
        );
    }
}
