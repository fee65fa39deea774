//! The Lua scripts of `lua/`, run by their SHA (EVALSHA) and loaded into the
//! server only when it answers NOSCRIPT (first use, restart, SCRIPT FLUSH): a
//! script's text crosses the network once per server, not once per call.

use std::sync::LazyLock;

use redis::{Cmd, RedisResult, Script, Value};

use super::link::{Body, Failure, Link};
use crate::store::failure::Doing;

/// A script: its text, and the SHA it is run by.
pub(super) struct Lua {
    source: &'static str,
    script: Script,
}

impl Lua {
    fn new(source: &'static str) -> Lua {
        Lua {
            source,
            script: Script::new(source),
        }
    }

    /// `SCRIPT LOAD` of its text.
    fn load(&self) -> Cmd {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(self.source);
        cmd
    }
}

/// Reads or creates a table's stamps and registers its schemes (`fence.lua`).
pub(super) static FENCE: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("../lua/fence.lua")));
/// Stores a value if its stamps are unchanged (`store.lua`).
pub(super) static STORE: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("../lua/store.lua")));
/// Deletes the conjunction keys that rows hit (`invalidate.lua`).
pub(super) static INVALIDATE: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("../lua/invalidate.lua")));
/// Releases a lock its token holds (`unlock.lua`).
pub(super) static UNLOCK: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("../lua/unlock.lua")));

/// `EVALSHA <sha> <numkeys>`, ready for keys and arguments.
pub(super) fn evalsha(lua: &Lua, numkeys: usize) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(lua.script.get_hash()).arg(numkeys);
    cmd
}

/// Sends a command or pipeline of EVALSHAs of `lua`, loading the script once if
/// the server does not know it.
pub(super) async fn with_script<L: Link, T: Send>(
    link: &L,
    doing: Doing<'_>,
    lua: &Lua,
    body: Body<'_>,
    read: impl Fn(Value) -> RedisResult<T> + Send + Sync,
) -> Result<T, Failure> {
    match link.send(doing, body, &read).await {
        Err(Failure::NoScript(_)) => {
            link.send(doing, Body::Cmd(&lua.load()), |_| Ok(())).await?;
            link.send(doing, body, &read).await
        }
        result => result,
    }
}
