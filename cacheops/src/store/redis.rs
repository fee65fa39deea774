//! Redis store: the layout of [`super::layout`] in a Redis server, changed by the
//! scripts in `lua/` (run with EVALSHA, reloaded after NOSCRIPT) and by MULTI/EXEC
//! transactions that read, where they write, what they relied on.
//!
//! Row invalidation: `invalidate.lua` reads a table's schemes and deletes the
//! conjunction keys the rows hit (~13 µs of server time for a save's two rows).
//! The store keeps the schemes the script read; the next invalidation of the
//! table computes the keys from them here and sends one MULTI/EXEC of SMEMBERS,
//! DEL and PUBLISH (~2 µs). If the SMEMBERS answer differs from the schemes used
//! (a new scheme was registered, or the set was lost), what it deleted is a subset
//! of what the script deletes, and the script runs after it.
//!
//! Connections are blocking `redis::Connection`s kept in a small idle pool: an
//! operation takes one (or connects), and gives it back unless the connection may
//! be out of step with the server (I/O error, timeout). Nothing connects before the
//! first operation, so an application starts while Redis is down; after a failed
//! connect, operations fail fast for a short while instead of each waiting for the
//! connect timeout. A new connection is checked with a PING (see
//! [`open_connection`]). Every failure is described by what the operation was
//! doing ([`Doing`], `failure.rs`).
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

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::{
    Cmd, Connection, ConnectionLike, FromRedisValue, RedisError, RedisResult, Script,
    ServerErrorKind,
};

use super::failure::{Doing, Phase};
use super::layout::{self, EncodedRow, Layout};
use super::local::{key_id, KeyId, Local, LocalTier, Ticket};
use super::memory::check_rows;
use super::news;
use super::{CacheKey, Fence, LocalStats, RowState, Store};
use crate::deps::{Deps, TableDeps};
use crate::error::{Error, ErrorKind, Result};
use crate::memo::ByKey;

static FENCE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/fence.lua")));
static STORE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/store.lua")));
static INVALIDATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/invalidate.lua")));
static UNLOCK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/unlock.lua")));

/// Keys per SCAN step and per UNLINK batch in [`Store::invalidate_all`].
const SCAN_BATCH: usize = 1000;

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
    connect_timeout: Duration,
    io_timeout: Duration,
    max_idle: usize,
    retry_after: Duration,
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
        self.connect_timeout = timeout;
        self
    }

    /// How long one read or write on a connection may take (default 1 s).
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// How many idle connections are kept for reuse (default 16). More threads may
    /// work at once; their extra connections are closed after use.
    pub fn max_idle_connections(mut self, max: usize) -> Self {
        self.max_idle = max;
        self
    }

    /// After a failed connection attempt, operations fail at once for this long
    /// (default 1 s), so a down Redis does not cost every query a connect timeout.
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = delay;
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
        let layout = Layout::new(&self.prefix);
        let channel = layout.news_channel();
        let origin = news::new_origin();
        let local = self.local.map(|tier| Arc::new(Local::new(tier)));
        if let Some(local) = &local {
            news::listen(client.clone(), channel.clone(), origin.clone(), local);
        }
        Ok(RedisStore {
            client,
            layout,
            channel,
            origin,
            local,
            options: self,
            idle: Mutex::new(Vec::new()),
            down_until: Mutex::new(None),
            lookups: ByKey::default(),
            schemes: Mutex::default(),
        })
    }
}

/// A store in a Redis server (7.0 or later).
///
/// ```no_run
/// use cacheops::store::{RedisStore, Store};
/// let store = RedisStore::open("redis://127.0.0.1:6379/", "myapp")?;
/// store.invalidate_table("posts")?;
/// # Ok::<(), cacheops::Error>(())
/// ```
pub struct RedisStore {
    client: redis::Client,
    layout: Layout,
    /// Where invalidation news is published (`P:news`).
    channel: String,
    /// The first line of the news this store publishes: its own listener skips
    /// it, since the store applied the same news when it published it.
    origin: String,
    local: Option<Arc<Local>>,
    options: RedisStoreBuilder,
    idle: Mutex<Vec<Connection>>,
    /// Until when operations fail at once, with the error of the failed connect.
    down_until: Mutex<Option<(Instant, RedisError)>>,
    /// What a lookup of each key sends, built once (see [`LookupCmd`]).
    lookups: ByKey<Arc<LookupCmd>>,
    /// Each table's schemes as last read (sorted, with the sentinel): row
    /// invalidations of the table use them, and check them where they delete.
    schemes: Mutex<HashMap<String, Arc<[String]>>>,
}

/// What a lookup of one key sends, packed once per key and dependencies: a hit
/// then builds no key names and packs no command.
struct LookupCmd {
    /// The dependencies it was built for: a key's entry serves only lookups with
    /// equal ones (function caching may pair one key with other samples).
    deps: Deps,
    /// `MGET <value key> <stamp keys>`, then `PTTL <value key>`.
    packed: Box<[u8]>,
    /// Where the MGET ends: a lookup whose value the local tier cannot keep sends
    /// only the MGET.
    mget_len: usize,
    /// The stamp keys and the value key, as the local tier knows them.
    ids: Arc<[KeyId]>,
}

impl LookupCmd {
    fn new(layout: &Layout, key: CacheKey, deps: &Deps) -> LookupCmd {
        let value_key = layout.value_key(key);
        let mut mget = redis::cmd("MGET");
        mget.arg(value_key.as_str());
        let mut ids = Vec::new();
        layout.for_each_stamp_key(deps, |k| {
            mget.arg(k);
            ids.push(key_id(k.as_bytes()));
        });
        let mut packed = mget.get_packed_command();
        let mget_len = packed.len();
        redis::cmd("PTTL")
            .arg(value_key.as_str())
            .write_packed_command(&mut packed);
        LookupCmd {
            deps: deps.clone(),
            packed: packed.into(),
            mget_len,
            ids: with_value_key(ids, &value_key),
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.layout.prefix())
            .field("connect_timeout", &self.options.connect_timeout)
            .field("io_timeout", &self.options.io_timeout)
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
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
            max_idle: 16,
            retry_after: Duration::from_secs(1),
            local: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
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
                let cmd = Arc::new(LookupCmd::new(&self.layout, key, deps));
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
        let (values, pttl) = self.run(Doing::LOOKUP, |con| {
            let mut replies = con.req_packed_commands(&cmd.packed, 0, 2)?.into_iter();
            let (Some(values), Some(pttl)) = (replies.next(), replies.next()) else {
                return Err(unexpected("a lookup's MGET and PTTL"));
            };
            Ok((mget_values(values)?, i64::from_redis_value(pttl)?))
        })?;
        let found = layout::unframe(values);
        if let (Some(payload), Ok(ms)) = (&found, u64::try_from(pttl)) {
            let ttl = Duration::from_millis(ms);
            local.keep(key, ticket, payload, cmd.ids.clone(), ttl);
        }
        Ok(found)
    }

    /// Runs `op` on a connection; a failure is described as `doing` (see
    /// `failure.rs`). A pooled connection the server closed while idle gets one
    /// retry on a fresh one; every operation here is safe to repeat.
    pub(crate) fn run<T>(
        &self,
        doing: Doing<'_>,
        mut op: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T> {
        let (mut con, pooled) = self.checkout(doing)?;
        let mut result = op(&mut con);
        if pooled
            && result
                .as_ref()
                .is_err_and(RedisError::is_connection_dropped)
        {
            // The others idled as long: probably closed too.
            self.lock_idle().clear();
            con = self.connect(doing)?;
            result = op(&mut con);
        }
        match result {
            Ok(value) => {
                self.checkin(con);
                Ok(value)
            }
            Err(e) => {
                if in_step(&e) {
                    self.checkin(con);
                }
                // A script may have run and published news whose reply we lost:
                // our listener skips our own news, so nothing local is trusted.
                if let Some(local) = &self.local {
                    local.drop_all();
                }
                Err(doing.failed(e, Phase::Command(self.options.io_timeout)))
            }
        }
    }

    fn checkout(&self, doing: Doing<'_>) -> Result<(Connection, bool)> {
        if let Some(con) = self.lock_idle().pop() {
            return Ok((con, true));
        }
        Ok((self.connect(doing)?, false))
    }

    fn checkin(&self, con: Connection) {
        let mut idle = self.lock_idle();
        if idle.len() < self.options.max_idle {
            idle.push(con);
        }
    }

    fn connect(&self, doing: Doing<'_>) -> Result<Connection> {
        let options = &self.options;
        let mut down_until = self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((until, e)) = &*down_until {
            if Instant::now() < *until {
                let phase = Phase::Waiting {
                    connect: options.connect_timeout,
                    retry_after: options.retry_after,
                };
                return Err(doing.failed(e.clone(), phase));
            }
        }
        // Connecting under the lock: when Redis is down, one thread waits for the
        // timeout and the others fail fast right after.
        let timeouts = (options.connect_timeout, options.io_timeout);
        let con = open_connection(&self.client, timeouts).map_err(|e| {
            *down_until = Some((Instant::now() + options.retry_after, e.clone()));
            doing.failed(e, Phase::Connect(options.connect_timeout))
        })?;
        *down_until = None;
        Ok(con)
    }

    fn lock_idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        // A Vec of connections is consistent at every step: poisoning is harmless.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The EVALSHA of `fence.lua` for one table; appends its stamp keys to `keys`.
    fn fence_cmd(
        &self,
        table: &str,
        deps: &TableDeps,
        args: (u64, &str),
        keys: &mut Vec<String>,
    ) -> Cmd {
        let first = keys.len();
        let mut buf = String::with_capacity(64);
        let mut push = |k: &str| keys.push(k.to_owned());
        self.layout
            .for_each_table_stamp(&mut buf, table, deps, &mut push);
        let mut cmd = evalsha(&FENCE, 1 + keys.len() - first);
        cmd.arg(self.layout.table_key(table, "schemes"))
            .arg(&keys[first..]);
        cmd.arg(args.0)
            .arg(args.1)
            .arg(&self.channel)
            .arg(&self.origin);
        cmd.arg(layout::schemes(deps));
        cmd
    }

    /// The EVALSHA of `invalidate.lua` for `rows` of `table`.
    fn invalidate_cmd(&self, table: &str, rows: &[EncodedRow]) -> Cmd {
        let mut cmd = evalsha(&INVALIDATE, 3);
        for suffix in ["schemes", "gen", "all", "j:"] {
            cmd.arg(self.layout.table_key(table, suffix));
        }
        let reply_keys = if self.local.is_some() { "1" } else { "0" };
        cmd.arg(&self.channel).arg(&self.origin).arg(reply_keys);
        cmd.arg(rows.len());
        for row in rows {
            cmd.arg(row.len());
            row.iter().for_each(|(column, term)| {
                cmd.arg(column).arg(term);
            });
        }
        cmd
    }

    /// Invalidates `rows` of `table` by the schemes `known` for it, in one
    /// MULTI/EXEC that also reads the schemes as they are where it deletes: when
    /// they are the ones used, the deletes were exactly the script's, without the
    /// script's cost. Returns whether they were (or covered the whole table).
    fn invalidate_known(&self, table: &str, known: &[String], rows: &[EncodedRow]) -> Result<bool> {
        let dropped = self.layout.dropped_by(table, known, rows);
        let keys = || dropped.keys.iter().map(String::as_bytes);
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("SMEMBERS")
            .arg(self.layout.table_key(table, "schemes"));
        pipe.cmd("DEL").arg(&dropped.keys).ignore();
        let message = news::message(&self.origin, keys());
        pipe.cmd("PUBLISH").arg(&self.channel).arg(message).ignore();
        let doing = Doing::invalidate_rows(table);
        let (mut current,): (Vec<String>,) = self.run(doing, |con| pipe.query(con))?;
        self.news(keys());
        current.sort_unstable();
        Ok(dropped.whole_table || current == known)
    }

    /// Invalidates `rows` of `table` by `invalidate.lua`, which reads the schemes
    /// where it deletes, then keeps the schemes for the next invalidation.
    fn invalidate_by_script(&self, table: &str, rows: &[EncodedRow]) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.add_command(self.invalidate_cmd(table, rows));
        pipe.cmd("SMEMBERS")
            .arg(self.layout.table_key(table, "schemes"));
        let keep_news = self.local.is_some();
        let (dropped, mut schemes) = self.run(Doing::invalidate_rows(table), |con| {
            let (reply, schemes): (redis::Value, Vec<String>) =
                with_script(con, &INVALIDATE, &pipe)?;
            let dropped = match keep_news {
                true => Vec::<Vec<u8>>::from_redis_value(reply)?,
                false => Vec::new(),
            };
            Ok((dropped, schemes))
        })?;
        self.news(dropped.iter().map(Vec::as_slice));
        schemes.sort_unstable();
        let mut known = self.schemes.lock().unwrap_or_else(PoisonError::into_inner);
        match schemes.iter().any(|s| s == layout::SENTINEL) {
            true => known.insert(table.to_owned(), schemes.into()),
            // Lost: the next invalidation needs the script again.
            false => known.remove(table),
        };
        Ok(())
    }

    /// The schemes last read for `table`, if any.
    fn known_schemes(&self, table: &str) -> Option<Arc<[String]>> {
        let known = self.schemes.lock().unwrap_or_else(PoisonError::into_inner);
        known.get(table).cloned()
    }

    /// Deletes `keys` and publishes them as news, in one round trip.
    fn delete_with_news(&self, doing: Doing<'_>, keys: &[String]) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(keys).ignore();
        let message = news::message(&self.origin, keys.iter().map(String::as_bytes));
        pipe.cmd("PUBLISH").arg(&self.channel).arg(message).ignore();
        self.run(doing, |con| pipe.exec(con))?;
        self.news(keys.iter().map(String::as_bytes));
        Ok(())
    }

    /// SCANs for `pattern` and unlinks the keys this prefix owns.
    fn unlink_matching(&self, con: &mut Connection, pattern: &str) -> RedisResult<()> {
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH)
                .query(con)?;
            let owned = |k: &&Vec<u8>| std::str::from_utf8(k).is_ok_and(|k| self.layout.owns(k));
            let ours: Vec<&Vec<u8>> = keys.iter().filter(owned).collect();
            if !ours.is_empty() {
                redis::cmd("UNLINK").arg(ours).exec(con)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

impl Store for RedisStore {
    fn lookup(&self, key: CacheKey, deps: &Deps) -> Result<Option<Vec<u8>>> {
        if let Some(found) = self.local.as_ref().and_then(|l| l.get(key)) {
            return Ok(Some(found));
        }
        let ticket = self.ticket();
        let cmd = self.lookup_cmd(key, deps);
        if let Some(ticket) = ticket {
            return self.lookup_and_keep(key, &cmd, ticket);
        }
        let mget = &cmd.packed[..cmd.mget_len];
        let values = self.run(Doing::LOOKUP, |con| {
            con.req_packed_command(mget).and_then(mget_values)
        })?;
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
        let ttl = layout::millis(layout::stamp_ttl(ttl));
        let candidate = layout::new_stamp();
        let mut pipe = redis::pipe();
        for (table, table_deps) in &deps.tables {
            pipe.add_command(self.fence_cmd(table, table_deps, (ttl, &candidate), &mut fence.keys));
        }
        let wanted = fence.keys.len();
        fence.stamps = self.run(Doing::FENCE, |con| {
            let stamps: Vec<Vec<Vec<u8>>> = with_script(con, &FENCE, &pipe)?;
            let stamps: Vec<Vec<u8>> = stamps.into_iter().flatten().collect();
            match stamps.len() == wanted {
                true => Ok(stamps),
                false => Err(unexpected("fence.lua's stamps, one per key")),
            }
        })?;
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
        let value_key = self.layout.value_key(key);
        let mut cmd = evalsha(&STORE, 1 + fence.keys.len());
        cmd.arg(&value_key).arg(&fence.keys);
        cmd.arg(layout::millis(ttl)).arg(&fence.stamps).arg(framed);
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
        if let Some(known) = self.known_schemes(table) {
            if self.invalidate_known(table, &known, &rows)? {
                return Ok(());
            }
        }
        // Schemes not read yet, or changed since: what the first try deleted was
        // a subset of the script's deletes, which now finish the job.
        self.invalidate_by_script(table, &rows)
    }

    fn invalidate_table(&self, table: &str) -> Result<()> {
        let keys = [
            self.layout.table_key(table, "gen"),
            self.layout.table_key(table, "all"),
        ];
        self.delete_with_news(Doing::invalidate_table(table), &keys)
    }

    fn invalidate_all(&self) -> Result<()> {
        let patterns = self.layout.scan_patterns();
        self.run(Doing::INVALIDATE_ALL, |con| {
            patterns
                .iter()
                .try_for_each(|p| self.unlink_matching(con, p))?;
            redis::cmd("PUBLISH")
                .arg(&self.channel)
                .arg(news::message(&self.origin, [news::ALL]))
                .exec(con)
        })?;
        if let Some(local) = &self.local {
            local.drop_all();
        }
        Ok(())
    }

    fn delete(&self, key: CacheKey) -> Result<()> {
        self.delete_with_news(Doing::DELETE, &[self.layout.value_key(key)])
    }

    fn simple_get(&self, key: CacheKey) -> Result<Option<Vec<u8>>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.layout.simple_key(key));
        self.run(Doing::SIMPLE_GET, |con| cmd.query(con))
    }

    fn simple_set(&self, key: CacheKey, payload: &[u8], ttl: Duration) -> Result<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.layout.simple_key(key)).arg(payload);
        cmd.arg("PX").arg(layout::millis(ttl));
        self.run(Doing::simple_set(payload.len()), |con| cmd.exec(con))
    }

    fn simple_delete(&self, key: CacheKey) -> Result<()> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.layout.simple_key(key));
        self.run(Doing::SIMPLE_DELETE, |con| cmd.exec(con))
    }

    fn try_lock(&self, key: CacheKey, token: &str, ttl: Duration) -> Result<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.layout.lock_key(key)).arg(token);
        cmd.arg("NX").arg("PX").arg(layout::millis(ttl));
        let taken: Option<String> = self.run(Doing::LOCK, |con| cmd.query(con))?;
        Ok(taken.is_some())
    }

    fn unlock(&self, key: CacheKey, token: &str) -> Result<()> {
        let mut cmd = evalsha(&UNLOCK, 1);
        cmd.arg(self.layout.lock_key(key)).arg(token);
        self.run(Doing::UNLOCK, |con| with_script::<i64>(con, &UNLOCK, &cmd))?;
        Ok(())
    }

    fn local_tier(&self) -> Option<LocalStats> {
        self.local.as_ref().map(|local| LocalStats {
            hits: local.hits(),
            bytes: local.weighted_size(),
            ready: local.is_listening(),
        })
    }
}

/// A local copy's dependencies: its stamps `ids`, and its value key (deleted by
/// `Store::delete`).
fn with_value_key(mut ids: Vec<KeyId>, value_key: &str) -> Arc<[KeyId]> {
    ids.push(key_id(value_key.as_bytes()));
    ids.into()
}

/// The values of an MGET reply, moved out of it in one pass (a hit's reply holds
/// its payload: no copy, no conversion pass).
fn mget_values(reply: redis::Value) -> RedisResult<Vec<Option<Vec<u8>>>> {
    use redis::Value;
    let items = match reply {
        Value::Array(items) => items,
        Value::ServerError(e) => return Err(e.into()),
        _ => return Err(unexpected("an MGET's values")),
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::BulkString(bytes) => Ok(Some(bytes)),
            Value::Nil => Ok(None),
            Value::ServerError(e) => Err(e.into()),
            _ => Err(unexpected("an MGET's values")),
        })
        .collect()
}

/// A reply that is not what the operation expects (`wanted`).
fn unexpected(wanted: &'static str) -> RedisError {
    (
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected reply",
        wanted.to_owned(),
    )
        .into()
}

/// A connection with these `(connect, io)` timeouts that Redis has answered: a
/// PING checks that it serves us, so that a missing password is reported as such
/// (an unauthenticated connection's setup ignores the NOAUTH replies, and Redis
/// closes one that sends a large command, which reads as a lost connection).
pub(crate) fn open_connection(
    client: &redis::Client,
    (connect, io): (Duration, Duration),
) -> RedisResult<Connection> {
    let mut con = client.get_connection_with_timeout(connect)?;
    con.set_read_timeout(Some(io))?;
    con.set_write_timeout(Some(io))?;
    redis::cmd("PING").exec(&mut con)?;
    Ok(con)
}

/// `EVALSHA <sha> <numkeys>`, ready for keys and arguments.
fn evalsha(script: &Script, numkeys: usize) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(numkeys);
    cmd
}

/// Runs a command or pipeline of EVALSHAs of `script`, loading the script once if
/// the server does not know it (first use, restart, SCRIPT FLUSH).
fn with_script<T: redis::FromRedisValue>(
    con: &mut Connection,
    script: &Script,
    query: &impl Query,
) -> RedisResult<T> {
    match query.run(con) {
        Err(e) if e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) => {
            script.load(con)?;
            query.run(con)
        }
        result => result,
    }
}

/// A command or a pipeline.
trait Query {
    fn run<T: redis::FromRedisValue>(&self, con: &mut Connection) -> RedisResult<T>;
}

impl Query for Cmd {
    fn run<T: redis::FromRedisValue>(&self, con: &mut Connection) -> RedisResult<T> {
        self.query(con)
    }
}

impl Query for redis::Pipeline {
    fn run<T: redis::FromRedisValue>(&self, con: &mut Connection) -> RedisResult<T> {
        self.query(con)
    }
}

/// Whether the connection is still in step with the server after `e`: a server's
/// error reply was read whole; an I/O error or timeout may leave a reply unread.
fn in_step(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::Server(_)
            | redis::ErrorKind::Extension
            | redis::ErrorKind::UnexpectedReturnType
    )
}
