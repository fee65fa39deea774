//! The Redis store's logic, written once over a [`Link`]: what each store
//! operation sends (built by `commands.rs`), how its reply is read, and what it
//! means for the local tier. [`RedisStore`](super::RedisStore) runs it over the
//! blocking pool, `AsyncRedisStore` over a multiplexed tokio connection; the two
//! twins of one handle share everything here but the link.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;

use super::commands::{
    mget_pttl_reply, mget_reply, stamps_reply, with_value_key, Commands, LookupCmd,
};
use super::invalidation::KnownSchemes;
use super::link::{typed, Body, Failure, Link};
use super::scripts::{with_script, Lua, STORE, UNLOCK};
use crate::deps::Deps;
use crate::error::Result;
use crate::memo::ByKey;
use crate::protocol::layout::{self, EncodedRow};
use crate::store::failure::Doing;
use crate::store::local::{key_id, Local, Ticket};
use crate::store::memory::check_rows;
use crate::store::{CacheKey, Fence, LocalStats, RowState};

/// What the twins of one store share: the commands (and so the news origin),
/// the local tier, the packed lookups and the known schemes.
pub(super) struct Shared {
    pub(super) commands: Commands,
    pub(super) local: Option<Arc<Local>>,
    /// What a lookup of each key sends, built once (see [`LookupCmd`]).
    lookups: ByKey<Arc<LookupCmd>>,
    pub(super) schemes: KnownSchemes,
}

impl Shared {
    pub(super) fn new(commands: Commands, local: Option<Arc<Local>>) -> Shared {
        Shared {
            commands,
            local,
            lookups: ByKey::default(),
            schemes: KnownSchemes::default(),
        }
    }
}

/// The store's logic over `link`.
pub(super) struct Server<L> {
    pub(super) link: L,
    pub(super) shared: Arc<Shared>,
}

impl<L: Link> Server<L> {
    fn commands(&self) -> &Commands {
        &self.shared.commands
    }

    /// Sends `body` and reads its reply with `read` (see [`Link::send`]).
    pub(super) async fn send<T: Send>(
        &self,
        doing: Doing<'_>,
        body: Body<'_>,
        read: impl Fn(Value) -> redis::RedisResult<T> + Send + Sync,
    ) -> Result<T> {
        let sent = self.link.send(doing, body, read).await;
        sent.map_err(|failure| self.failed(failure))
    }

    /// [`Server::send`] of EVALSHAs of `lua`, loaded on NOSCRIPT.
    pub(super) async fn send_script<T: Send>(
        &self,
        doing: Doing<'_>,
        lua: &Lua,
        body: Body<'_>,
        read: impl Fn(Value) -> redis::RedisResult<T> + Send + Sync,
    ) -> Result<T> {
        let sent = with_script(&self.link, doing, lua, body, read).await;
        sent.map_err(|failure| self.failed(failure))
    }

    fn failed(&self, failure: Failure) -> crate::Error {
        if !matches!(failure, Failure::Connect(_)) {
            // A script may have run and published news whose reply we lost:
            // our listener skips our own news, so nothing local is trusted.
            if let Some(local) = &self.shared.local {
                local.drop_all();
            }
        }
        failure.into_error()
    }

    /// Applies news of `keys` to the local tier at once: the writer's own reads
    /// must not wait for the subscription to deliver it.
    pub(super) fn news<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        if let Some(local) = &self.shared.local {
            local.news(keys);
        }
    }

    fn ticket(&self) -> Option<(&Local, Ticket)> {
        let local = self.shared.local.as_deref()?;
        Some((local, local.ticket()?))
    }

    /// The lookup command of `key` with `deps`, built the first time.
    fn lookup_cmd(&self, key: CacheKey, deps: &Deps) -> Arc<LookupCmd> {
        let lookups = &self.shared.lookups;
        match lookups.get(&key) {
            Some(cmd) if cmd.deps == *deps => cmd,
            _ => {
                let cmd = Arc::new(self.commands().lookup(key, deps));
                lookups.insert(key, cmd.clone());
                cmd
            }
        }
    }

    /// Deletes `keys` and publishes them as news, in one round trip.
    async fn delete_with_news(&self, doing: Doing<'_>, keys: &[String]) -> Result<()> {
        let pipe = self.commands().delete_with_news(keys);
        self.send(doing, Body::Pipe(&pipe), |_| Ok(())).await?;
        self.news(keys.iter().map(String::as_bytes));
        Ok(())
    }

    pub(super) async fn lookup(&self, key: CacheKey, deps: &Deps) -> Result<Option<Vec<u8>>> {
        if let Some(found) = self.shared.local.as_ref().and_then(|l| l.get(key)) {
            return Ok(Some(found));
        }
        let ticket = self.ticket();
        let cmd = self.lookup_cmd(key, deps);
        let Some((local, ticket)) = ticket else {
            let body = Body::Lookup(&cmd, false);
            let values = self.send(Doing::LOOKUP, body, mget_reply).await?;
            return Ok(layout::unframe(values));
        };
        // The hit the local tier keeps: the value's remaining TTL is read in the
        // same round trip, so the copy never outlives the original.
        let body = Body::Lookup(&cmd, true);
        let (values, pttl) = self.send(Doing::LOOKUP, body, mget_pttl_reply).await?;
        let found = layout::unframe(values);
        if let (Some(payload), Ok(ms)) = (&found, u64::try_from(pttl)) {
            let ttl = Duration::from_millis(ms);
            local.keep(key, ticket, payload, cmd.ids.clone(), ttl);
        }
        Ok(found)
    }

    pub(super) async fn fence(&self, deps: &Deps, ttl: Duration) -> Result<Fence> {
        let mut fence = Fence {
            keys: Vec::new(),
            stamps: Vec::new(),
        };
        if deps.tables.is_empty() {
            return Ok(fence);
        }
        let candidate = layout::new_stamp();
        let args = (layout::millis(layout::stamp_ttl(ttl)), candidate.as_str());
        let pipe = self.commands().fence(deps, args, &mut fence.keys);
        let wanted = fence.keys.len();
        let read = |reply| stamps_reply(reply, wanted);
        let body = Body::Pipe(&pipe);
        fence.stamps = self
            .send_script(Doing::FENCE, &super::scripts::FENCE, body, read)
            .await?;
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

    pub(super) async fn store(
        &self,
        key: CacheKey,
        fence: &Fence,
        payload: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        let framed = layout::frame(fence.stamps.iter().map(Vec::as_slice), payload);
        let doing = Doing::store(framed.len());
        let value_key = self.commands().layout.value_key(key);
        let cmd = self
            .commands()
            .store(&value_key, fence, layout::millis(ttl), framed);
        let ticket = self.ticket();
        let stored: i64 = self
            .send_script(doing, &STORE, Body::Cmd(&cmd), typed)
            .await?;
        if let (1, Some((local, ticket))) = (stored, ticket) {
            let ids = fence.keys.iter().map(|k| key_id(k.as_bytes())).collect();
            local.keep(key, ticket, payload, with_value_key(ids, &value_key), ttl);
        }
        Ok(stored == 1)
    }

    pub(super) async fn invalidate_rows(&self, table: &str, rows: &[RowState<'_>]) -> Result<()> {
        check_rows(table, rows)?;
        if rows.is_empty() {
            return Ok(());
        }
        let rows: Vec<EncodedRow> = rows.iter().map(layout::encode_row).collect();
        self.invalidate_encoded(table, &rows).await
    }

    pub(super) async fn invalidate_table(&self, table: &str) -> Result<()> {
        let layout = &self.commands().layout;
        let keys = [
            layout.table_key(table, "gen"),
            layout.table_key(table, "all"),
        ];
        self.delete_with_news(Doing::invalidate_table(table), &keys)
            .await
    }

    pub(super) async fn invalidate_all(&self) -> Result<()> {
        for pattern in self.commands().layout.scan_patterns() {
            self.unlink_owned(&pattern).await?;
        }
        let publish = self.commands().publish_all();
        let doing = Doing::INVALIDATE_ALL;
        self.send(doing, Body::Cmd(&publish), |_| Ok(())).await?;
        if let Some(local) = &self.shared.local {
            local.drop_all();
        }
        Ok(())
    }

    /// SCANs for `pattern` and unlinks the keys this prefix owns.
    async fn unlink_owned(&self, pattern: &str) -> Result<()> {
        let doing = Doing::INVALIDATE_ALL;
        let mut cursor = 0u64;
        loop {
            let scan = self.commands().scan(cursor, pattern);
            let (next, keys): (u64, Vec<Vec<u8>>) =
                self.send(doing, Body::Cmd(&scan), typed).await?;
            if let Some(unlink) = self.commands().unlink_owned(&keys) {
                self.send(doing, Body::Cmd(&unlink), |_| Ok(())).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    pub(super) async fn delete(&self, key: CacheKey) -> Result<()> {
        let value_key = self.commands().layout.value_key(key);
        self.delete_with_news(Doing::DELETE, &[value_key]).await
    }

    pub(super) fn local_tier(&self) -> Option<LocalStats> {
        self.shared.local.as_ref().map(|local| LocalStats {
            hits: local.hits(),
            bytes: local.weighted_size(),
            ready: local.is_listening(),
        })
    }

    pub(super) async fn simple_get(&self, key: CacheKey) -> Result<Option<Vec<u8>>> {
        let cmd = self.commands().simple_get(key);
        self.send(Doing::SIMPLE_GET, Body::Cmd(&cmd), typed).await
    }

    pub(super) async fn simple_set(
        &self,
        key: CacheKey,
        payload: &[u8],
        ttl: Duration,
    ) -> Result<()> {
        let cmd = self
            .commands()
            .simple_set(key, payload, layout::millis(ttl));
        let doing = Doing::simple_set(payload.len());
        self.send(doing, Body::Cmd(&cmd), |_| Ok(())).await
    }

    pub(super) async fn simple_delete(&self, key: CacheKey) -> Result<()> {
        let cmd = self.commands().simple_delete(key);
        let doing = Doing::SIMPLE_DELETE;
        self.send(doing, Body::Cmd(&cmd), |_| Ok(())).await
    }

    pub(super) async fn try_lock(&self, key: CacheKey, token: &str, ttl: Duration) -> Result<bool> {
        let cmd = self.commands().try_lock(key, token, layout::millis(ttl));
        let taken: Option<String> = self.send(Doing::LOCK, Body::Cmd(&cmd), typed).await?;
        Ok(taken.is_some())
    }

    pub(super) async fn unlock(&self, key: CacheKey, token: &str) -> Result<()> {
        let cmd = self.commands().unlock(key, token);
        let body = Body::Cmd(&cmd);
        self.send_script(Doing::UNLOCK, &UNLOCK, body, |_| Ok(()))
            .await
    }
}
