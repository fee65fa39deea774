//! Redis store: the layout of [`crate::protocol::layout`] in a Redis server, changed by the
//! scripts in `lua/` and by MULTI/EXEC transactions that read, where they write,
//! what they relied on.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`RedisStore`], its builder, and the store traits, composed of the parts below and the local tier |
//! | `pool.rs` | connections: checkout and checkin, connecting, failing fast while Redis is down |
//! | `scripts.rs` | the Lua scripts: EVALSHA, and loading them on NOSCRIPT |
//! | `commands.rs` | every command sent (lookups packed once per key) and the parsing of replies |
//! | `invalidation.rs` | row invalidation: client-side from known schemes, or by script |
//!
//! Every failure is described by what the operation was doing ([`Doing`],
//! `failure.rs`).
//!
//! With a [`LocalTier`], values read from Redis are also kept in process and served
//! from there without a round trip, for as long as no invalidation news touches
//! them (see `local.rs` and `news.rs`).
//!
//! Cluster: every script except `store.lua`, and every transaction, touches keys
//! of one table, which share a hash tag. `store.lua` compares stamps of several
//! tables; see its header for what a cluster mode would do instead. Only
//! standalone Redis (and Sentinel, via a plain URL to the master) is supported
//! today.

mod commands;
mod invalidation;
mod pool;
mod scripts;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::{Connection, RedisResult};

use self::commands::{read_stamps, with_value_key, Commands, LookupCmd};
use self::invalidation::KnownSchemes;
use self::pool::{Failure, Pool, PoolOptions};
use self::scripts::{with_script, STORE, UNLOCK};
use super::failure::Doing;
use super::local::{key_id, Local, LocalTier, Ticket};
use super::memory::check_rows;
use super::news;
use super::{CacheKey, Fence, LocalStats, LockStore, QueryStore, RowState, SimpleStore};
use crate::deps::Deps;
use crate::error::{Error, ErrorKind, Result};
use crate::memo::ByKey;
use crate::protocol::layout::{self, EncodedRow, Layout};

pub(crate) use self::pool::open_connection;

/// Options of a [`RedisStore`], built with [`RedisStore::builder`].
///
/// ```
/// use std::time::Duration;
/// use cacheops::store::RedisStore;
/// let store = RedisStore::builder("redis://127.0.0.1:6379/")
///     .prefix("myapp")
///     .io_timeout(Duration::from_millis(200))
///     .build()?;
/// # Ok::<(), cacheops::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    pool: PoolOptions,
    local: Option<LocalTier>,
}

impl RedisStoreBuilder {
    /// The prefix of every key (default `cacheops`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a connection attempt may take (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.pool.connect_timeout = timeout;
        self
    }

    /// How long one read or write on a connection may take (default 1 s).
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.pool.io_timeout = timeout;
        self
    }

    /// How many idle connections are kept for reuse (default 16). More threads may
    /// work at once; their extra connections are closed after use.
    pub fn max_idle_connections(mut self, max: usize) -> Self {
        self.pool.max_idle = max;
        self
    }

    /// After a failed connection attempt, operations fail at once for this long
    /// (default 1 s), so a down Redis does not cost every query a connect timeout.
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.pool.retry_after = delay;
        self
    }

    /// Keeps values read from Redis in process too (see [`LocalTier`]): a hit there
    /// costs no round trip. A listener thread subscribes to invalidation news;
    /// until it is subscribed, and whenever it loses its connection, the tier
    /// serves nothing.
    pub fn local_tier(mut self, tier: LocalTier) -> Self {
        self.local = Some(tier);
        self
    }

    /// The store. Does not connect: fails only if the URL is invalid.
    pub fn build(self) -> Result<RedisStore> {
        let client = redis::Client::open(self.url.as_str()).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("invalid Redis URL {:?}", self.url),
            )
            .with_source(e)
        })?;
        let commands = Commands::new(Layout::new(&self.prefix), news::new_origin());
        let local = self.local.map(|tier| Arc::new(Local::new(tier)));
        if let Some(local) = &local {
            let (channel, origin) = (commands.channel().to_owned(), commands.origin().to_owned());
            news::listen(client.clone(), channel, origin, local);
        }
        Ok(RedisStore {
            pool: Pool::new(client, self.pool),
            commands,
            local,
            lookups: ByKey::default(),
            schemes: KnownSchemes::default(),
        })
    }
}

/// A store in a Redis server (7.0 or later).
///
/// ```no_run
/// use cacheops::store::{QueryStore, RedisStore};
/// let store = RedisStore::open("redis://127.0.0.1:6379/", "myapp")?;
/// store.invalidate_table("posts")?;
/// # Ok::<(), cacheops::Error>(())
/// ```
pub struct RedisStore {
    pool: Pool,
    commands: Commands,
    local: Option<Arc<Local>>,
    /// What a lookup of each key sends, built once (see [`LookupCmd`]).
    lookups: ByKey<Arc<LookupCmd>>,
    schemes: KnownSchemes,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.commands.layout.prefix())
            .field("connect_timeout", &self.pool.options.connect_timeout)
            .field("io_timeout", &self.pool.options.io_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store at `url` (`redis://host:port/db`) with keys under `prefix` and
    /// default options. Does not connect; fails only if the URL is invalid.
    pub fn open(url: &str, prefix: &str) -> Result<RedisStore> {
        RedisStore::builder(url).prefix(prefix).build()
    }

    /// Options for a store at `url`.
    pub fn builder(url: &str) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.to_owned(),
            prefix: "cacheops".to_owned(),
            pool: PoolOptions::default(),
            local: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn layout(&self) -> &Layout {
        &self.commands.layout
    }

    /// Runs `op` on a pooled connection (see `pool.rs`).
    pub(crate) fn run<T>(
        &self,
        doing: Doing<'_>,
        op: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T> {
        self.pool.run(doing, op).map_err(|failure| match failure {
            Failure::Connect(e) => e,
            Failure::Command(e) => {
                // A script may have run and published news whose reply we lost:
                // our listener skips our own news, so nothing local is trusted.
                if let Some(local) = &self.local {
                    local.drop_all();
                }
                e
            }
        })
    }

    /// Applies news of `keys` to the local tier at once: the writer's own reads
    /// must not wait for the subscription to deliver it.
    fn news<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        if let Some(local) = &self.local {
            local.news(keys);
        }
    }

    fn ticket(&self) -> Option<(&Local, Ticket)> {
        let local = self.local.as_deref()?;
        Some((local, local.ticket()?))
    }

    /// The lookup command of `key` with `deps`, built the first time.
    fn lookup_cmd(&self, key: CacheKey, deps: &Deps) -> Arc<LookupCmd> {
        match self.lookups.get(&key) {
            Some(cmd) if cmd.deps == *deps => cmd,
            _ => {
                let cmd = Arc::new(self.commands.lookup(key, deps));
                self.lookups.insert(key, cmd.clone());
                cmd
            }
        }
    }

    /// A Redis lookup whose hit the local tier keeps: the value's remaining TTL is
    /// read in the same round trip, so the copy never outlives the original.
    fn lookup_and_keep(
        &self,
        key: CacheKey,
        cmd: &LookupCmd,
        (local, ticket): (&Local, Ticket),
    ) -> Result<Option<Vec<u8>>> {
        let (values, pttl) = self.run(Doing::LOOKUP, |con| cmd.mget_pttl(con))?;
        let found = layout::unframe(values);
        if let (Some(payload), Ok(ms)) = (&found, u64::try_from(pttl)) {
            let ttl = Duration::from_millis(ms);
            local.keep(key, ticket, payload, cmd.ids.clone(), ttl);
        }
        Ok(found)
    }

    /// Deletes `keys` and publishes them as news, in one round trip.
    fn delete_with_news(&self, doing: Doing<'_>, keys: &[String]) -> Result<()> {
        let pipe = self.commands.delete_with_news(keys);
        self.run(doing, |con| pipe.exec(con))?;
        self.news(keys.iter().map(String::as_bytes));
        Ok(())
    }
}

impl QueryStore for RedisStore {
    fn lookup(&self, key: CacheKey, deps: &Deps) -> Result<Option<Vec<u8>>> {
        if let Some(found) = self.local.as_ref().and_then(|l| l.get(key)) {
            return Ok(Some(found));
        }
        let ticket = self.ticket();
        let cmd = self.lookup_cmd(key, deps);
        if let Some(ticket) = ticket {
            return self.lookup_and_keep(key, &cmd, ticket);
        }
        let values = self.run(Doing::LOOKUP, |con| cmd.mget(con))?;
        Ok(layout::unframe(values))
    }

    fn fence(&self, deps: &Deps, ttl: Duration) -> Result<Fence> {
        let mut fence = Fence {
            keys: Vec::new(),
            stamps: Vec::new(),
        };
        if deps.tables.is_empty() {
            return Ok(fence);
        }
        let candidate = layout::new_stamp();
        let args = (layout::millis(layout::stamp_ttl(ttl)), candidate.as_str());
        let pipe = self.commands.fence(deps, args, &mut fence.keys);
        let wanted = fence.keys.len();
        fence.stamps = self.run(Doing::FENCE, |con| read_stamps(con, &pipe, wanted))?;
        // A stamp equal to the candidate was created: its key was missing (maybe
        // evicted, with no news), so local copies kept with the old one are dead.
        let created = fence.keys.iter().zip(&fence.stamps);
        self.news(
            created
                .filter(|(_, s)| **s == candidate.as_bytes())
                .map(|(k, _)| k.as_bytes()),
        );
        Ok(fence)
    }

    fn store(&self, key: CacheKey, fence: &Fence, payload: &[u8], ttl: Duration) -> Result<bool> {
        let framed = layout::frame(fence.stamps.iter().map(Vec::as_slice), payload);
        let doing = Doing::store(framed.len());
        let value_key = self.commands.layout.value_key(key);
        let cmd = self
            .commands
            .store(&value_key, fence, layout::millis(ttl), framed);
        let ticket = self.ticket();
        let stored: i64 = self.run(doing, |con| with_script(con, &STORE, &cmd))?;
        if let (1, Some((local, ticket))) = (stored, ticket) {
            let ids = fence.keys.iter().map(|k| key_id(k.as_bytes())).collect();
            local.keep(key, ticket, payload, with_value_key(ids, &value_key), ttl);
        }
        Ok(stored == 1)
    }

    fn invalidate_rows(&self, table: &str, rows: &[RowState<'_>]) -> Result<()> {
        check_rows(table, rows)?;
        if rows.is_empty() {
            return Ok(());
        }
        let rows: Vec<EncodedRow> = rows.iter().map(layout::encode_row).collect();
        self.invalidate_encoded(table, &rows)
    }

    fn invalidate_table(&self, table: &str) -> Result<()> {
        let layout = &self.commands.layout;
        let keys = [
            layout.table_key(table, "gen"),
            layout.table_key(table, "all"),
        ];
        self.delete_with_news(Doing::invalidate_table(table), &keys)
    }

    fn invalidate_all(&self) -> Result<()> {
        let patterns = self.commands.layout.scan_patterns();
        let publish = self.commands.publish_all();
        self.run(Doing::INVALIDATE_ALL, |con| {
            patterns
                .iter()
                .try_for_each(|p| self.commands.unlink_owned(con, p))?;
            publish.exec(con)
        })?;
        if let Some(local) = &self.local {
            local.drop_all();
        }
        Ok(())
    }

    fn delete(&self, key: CacheKey) -> Result<()> {
        let value_key = self.commands.layout.value_key(key);
        self.delete_with_news(Doing::DELETE, &[value_key])
    }

    fn local_tier(&self) -> Option<LocalStats> {
        self.local.as_ref().map(|local| LocalStats {
            hits: local.hits(),
            bytes: local.weighted_size(),
            ready: local.is_listening(),
        })
    }
}

impl SimpleStore for RedisStore {
    fn simple_get(&self, key: CacheKey) -> Result<Option<Vec<u8>>> {
        let cmd = self.commands.simple_get(key);
        self.run(Doing::SIMPLE_GET, |con| cmd.query(con))
    }

    fn simple_set(&self, key: CacheKey, payload: &[u8], ttl: Duration) -> Result<()> {
        let cmd = self.commands.simple_set(key, payload, layout::millis(ttl));
        self.run(Doing::simple_set(payload.len()), |con| cmd.exec(con))
    }

    fn simple_delete(&self, key: CacheKey) -> Result<()> {
        let cmd = self.commands.simple_delete(key);
        self.run(Doing::SIMPLE_DELETE, |con| cmd.exec(con))
    }
}

impl LockStore for RedisStore {
    fn try_lock(&self, key: CacheKey, token: &str, ttl: Duration) -> Result<bool> {
        let cmd = self.commands.try_lock(key, token, layout::millis(ttl));
        let taken: Option<String> = self.run(Doing::LOCK, |con| cmd.query(con))?;
        Ok(taken.is_some())
    }

    fn unlock(&self, key: CacheKey, token: &str) -> Result<()> {
        let cmd = self.commands.unlock(key, token);
        self.run(Doing::UNLOCK, |con| with_script::<i64>(con, &UNLOCK, &cmd))?;
        Ok(())
    }
}
