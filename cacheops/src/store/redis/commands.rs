//! What the Redis store sends, and how it reads the replies: every command and
//! pipeline is built here, from the key names of [`Layout`] and the store's news
//! channel and origin. The store decides when to send them and what their
//! replies mean for the local tier.
//!
//! A lookup's command is packed once per key ([`LookupCmd`]): a hit then builds
//! no key names and packs no command. Nothing here touches a connection: the
//! store sends what is built here through its link (`link.rs`).

use std::sync::Arc;

use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisResult, Value};

use super::scripts::{evalsha, FENCE, INVALIDATE, STORE, UNLOCK};
use crate::deps::{Deps, TableDeps};
use crate::protocol::layout::{self, EncodedRow, Layout};
use crate::store::local::{key_id, KeyId};
use crate::store::{news, CacheKey, Fence};

/// Keys per SCAN step and per UNLINK batch in [`Commands::unlink_owned`].
const SCAN_BATCH: usize = 1000;

/// The builder of one store's commands.
pub(super) struct Commands {
    pub(super) layout: Layout,
    /// Where invalidation news is published (`P:news`).
    channel: String,
    /// The first line of the news this store publishes: its own listener skips
    /// it, since the store applied the same news when it published it.
    origin: String,
}

/// What a lookup of one key sends, packed once per key and dependencies.
pub(super) struct LookupCmd {
    /// The dependencies it was built for: a key's entry serves only lookups with
    /// equal ones (function caching may pair one key with other samples).
    pub(super) deps: Deps,
    /// `MGET <value key> <stamp keys>`, then `PTTL <value key>`.
    packed: Box<[u8]>,
    /// Where the MGET ends: a lookup whose value the local tier cannot keep sends
    /// only the MGET.
    mget_len: usize,
    /// The stamp keys and the value key, as the local tier knows them.
    pub(super) ids: Arc<[KeyId]>,
    /// The MGET, and the MGET with the PTTL, as pipelines (the async link's).
    #[cfg(feature = "async")]
    mget: Cmd,
    #[cfg(feature = "async")]
    both: Pipeline,
}

impl LookupCmd {
    /// The MGET alone, packed.
    pub(super) fn mget_packed(&self) -> &[u8] {
        &self.packed[..self.mget_len]
    }

    /// The MGET and the PTTL, packed.
    pub(super) fn packed(&self) -> &[u8] {
        &self.packed
    }

    /// The MGET, for a link that sends commands rather than packed bytes (the
    /// async one).
    #[cfg(feature = "async")]
    pub(super) fn mget(&self) -> &Cmd {
        &self.mget
    }

    /// The MGET and the PTTL as a pipeline, for the async link.
    #[cfg(feature = "async")]
    pub(super) fn mget_pttl(&self) -> &Pipeline {
        &self.both
    }
}

/// The values of the MGET alone: the value key's, then the stamps'.
pub(super) fn mget_reply(reply: Value) -> RedisResult<Vec<Option<Vec<u8>>>> {
    mget_values(reply)
}

/// The values of the MGET, and the value's remaining time to live in ms
/// (negative if it has none).
pub(super) fn mget_pttl_reply(reply: Value) -> RedisResult<(Vec<Option<Vec<u8>>>, i64)> {
    let Value::Array(replies) = reply else {
        return Err(unexpected("a lookup's MGET and PTTL"));
    };
    let mut replies = replies.into_iter();
    let (Some(values), Some(pttl)) = (replies.next(), replies.next()) else {
        return Err(unexpected("a lookup's MGET and PTTL"));
    };
    Ok((mget_values(values)?, i64::from_redis_value(pttl)?))
}

impl Commands {
    /// The commands of the keys of `layout`, publishing news as `origin`.
    pub(super) fn new(layout: Layout, origin: String) -> Commands {
        let channel = layout.news_channel();
        Commands {
            layout,
            channel,
            origin,
        }
    }

    /// The news channel, for the local tier's listener.
    pub(super) fn channel(&self) -> &str {
        &self.channel
    }

    /// The origin line of this store's news, which its own listener skips.
    pub(super) fn origin(&self) -> &str {
        &self.origin
    }

    /// The lookup of `key` with `deps`.
    pub(super) fn lookup(&self, key: CacheKey, deps: &Deps) -> LookupCmd {
        let value_key = self.layout.value_key(key);
        let mut mget = redis::cmd("MGET");
        mget.arg(value_key.as_str());
        let mut ids = Vec::new();
        self.layout.for_each_stamp_key(deps, |k| {
            mget.arg(k);
            ids.push(key_id(k.as_bytes()));
        });
        let mut packed = mget.get_packed_command();
        let mget_len = packed.len();
        let mut pttl = redis::cmd("PTTL");
        pttl.arg(value_key.as_str());
        pttl.write_packed_command(&mut packed);
        LookupCmd {
            deps: deps.clone(),
            packed: packed.into(),
            mget_len,
            ids: with_value_key(ids, &value_key),
            #[cfg(feature = "async")]
            both: {
                let mut both = redis::pipe();
                both.add_command(mget.clone()).add_command(pttl);
                both
            },
            #[cfg(feature = "async")]
            mget,
        }
    }

    /// The EVALSHAs of `fence.lua`, one per table of `deps`, with `(stamp ttl in
    /// ms, candidate stamp)`; appends their stamp keys to `keys`.
    pub(super) fn fence(&self, deps: &Deps, args: (u64, &str), keys: &mut Vec<String>) -> Pipeline {
        let mut pipe = redis::pipe();
        for (table, table_deps) in &deps.tables {
            pipe.add_command(self.fence_table(table, table_deps, args, keys));
        }
        pipe
    }

    fn fence_table(
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
        cmd.arg(self.schemes_key(table)).arg(&keys[first..]);
        cmd.arg(args.0)
            .arg(args.1)
            .arg(&self.channel)
            .arg(&self.origin);
        cmd.arg(layout::schemes(deps));
        cmd
    }

    /// The EVALSHA of `store.lua`: `framed` under `value_key` if `fence` holds.
    pub(super) fn store(
        &self,
        value_key: &str,
        fence: &Fence,
        ttl_ms: u64,
        framed: Vec<u8>,
    ) -> Cmd {
        let mut cmd = evalsha(&STORE, 1 + fence.keys.len());
        cmd.arg(value_key).arg(&fence.keys);
        cmd.arg(ttl_ms).arg(&fence.stamps).arg(framed);
        cmd
    }

    /// `invalidate.lua` for `rows` of `table`, then `SMEMBERS` of its schemes.
    /// With `reply_keys`, the script replies with the stamp keys it deleted.
    pub(super) fn invalidate_by_script(
        &self,
        table: &str,
        rows: &[EncodedRow],
        reply_keys: bool,
    ) -> Pipeline {
        let mut pipe = redis::pipe();
        pipe.add_command(self.invalidate_cmd(table, rows, reply_keys));
        pipe.cmd("SMEMBERS").arg(self.schemes_key(table));
        pipe
    }

    fn invalidate_cmd(&self, table: &str, rows: &[EncodedRow], reply_keys: bool) -> Cmd {
        let mut cmd = evalsha(&INVALIDATE, 3);
        for suffix in ["schemes", "gen", "all", "j:"] {
            cmd.arg(self.layout.table_key(table, suffix));
        }
        let reply_keys = if reply_keys { "1" } else { "0" };
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

    /// `MULTI`, `SMEMBERS` of `table`'s schemes, `DEL` and `PUBLISH` of `keys`,
    /// `EXEC`: deletes as the script would, and reads the schemes where it deletes.
    pub(super) fn invalidate_known(&self, table: &str, keys: &[String]) -> Pipeline {
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("SMEMBERS").arg(self.schemes_key(table));
        pipe.cmd("DEL").arg(keys).ignore();
        self.publish(&mut pipe, keys);
        pipe
    }

    /// `DEL` of `keys` and `PUBLISH` of them as news, in one round trip.
    pub(super) fn delete_with_news(&self, keys: &[String]) -> Pipeline {
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(keys).ignore();
        self.publish(&mut pipe, keys);
        pipe
    }

    fn publish(&self, pipe: &mut Pipeline, keys: &[String]) {
        let message = news::message(&self.origin, keys.iter().map(String::as_bytes));
        pipe.cmd("PUBLISH").arg(&self.channel).arg(message).ignore();
    }

    /// `PUBLISH` of the news that drops every local entry.
    pub(super) fn publish_all(&self) -> Cmd {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel)
            .arg(news::message(&self.origin, [news::ALL]));
        cmd
    }

    /// One `SCAN` step for `pattern` from `cursor`.
    pub(super) fn scan(&self, cursor: u64, pattern: &str) -> Cmd {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor).arg("MATCH").arg(pattern);
        cmd.arg("COUNT").arg(SCAN_BATCH);
        cmd
    }

    /// `UNLINK` of the keys of a SCAN step this prefix owns, if any.
    pub(super) fn unlink_owned(&self, keys: &[Vec<u8>]) -> Option<Cmd> {
        let owned = |k: &&Vec<u8>| std::str::from_utf8(k).is_ok_and(|k| self.layout.owns(k));
        let ours: Vec<&Vec<u8>> = keys.iter().filter(owned).collect();
        if ours.is_empty() {
            return None;
        }
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(ours);
        Some(cmd)
    }

    /// `GET` of the simple cache's `key`.
    pub(super) fn simple_get(&self, key: CacheKey) -> Cmd {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.layout.simple_key(key));
        cmd
    }

    /// `SET ... PX` of the simple cache's `key`.
    pub(super) fn simple_set(&self, key: CacheKey, payload: &[u8], ttl_ms: u64) -> Cmd {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.layout.simple_key(key)).arg(payload);
        cmd.arg("PX").arg(ttl_ms);
        cmd
    }

    /// `DEL` of the simple cache's `key`.
    pub(super) fn simple_delete(&self, key: CacheKey) -> Cmd {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.layout.simple_key(key));
        cmd
    }

    /// `SET ... NX PX` of the lock of `key`.
    pub(super) fn try_lock(&self, key: CacheKey, token: &str, ttl_ms: u64) -> Cmd {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.layout.lock_key(key)).arg(token);
        cmd.arg("NX").arg("PX").arg(ttl_ms);
        cmd
    }

    /// The EVALSHA of `unlock.lua` for the lock of `key`.
    pub(super) fn unlock(&self, key: CacheKey, token: &str) -> Cmd {
        let mut cmd = evalsha(&UNLOCK, 1);
        cmd.arg(self.layout.lock_key(key)).arg(token);
        cmd
    }

    fn schemes_key(&self, table: &str) -> String {
        self.layout.table_key(table, "schemes")
    }
}

/// A local copy's dependencies: its stamps `ids`, and its value key (deleted by
/// `QueryStore::delete`).
pub(super) fn with_value_key(mut ids: Vec<KeyId>, value_key: &str) -> Arc<[KeyId]> {
    ids.push(key_id(value_key.as_bytes()));
    ids.into()
}

/// The values of an MGET reply, moved out of it in one pass (a hit's reply holds
/// its payload: no copy, no conversion pass).
fn mget_values(reply: Value) -> RedisResult<Vec<Option<Vec<u8>>>> {
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

/// The stamps of a fence's reply, `wanted` of them in all.
pub(super) fn stamps_reply(reply: Value, wanted: usize) -> RedisResult<Vec<Vec<u8>>> {
    let stamps: Vec<Vec<Vec<u8>>> = FromRedisValue::from_redis_value(reply)?;
    let stamps: Vec<Vec<u8>> = stamps.into_iter().flatten().collect();
    match stamps.len() == wanted {
        true => Ok(stamps),
        false => Err(unexpected("fence.lua's stamps, one per key")),
    }
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
