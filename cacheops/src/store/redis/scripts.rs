//! The Lua scripts of `lua/`, run by their SHA (EVALSHA) and loaded into the
//! server only when it answers NOSCRIPT (first use, restart, SCRIPT FLUSH): a
//! script's text crosses the network once per server, not once per call.

use std::sync::LazyLock;

use redis::{Cmd, Connection, RedisResult, Script, ServerErrorKind};

/// Reads or creates a table's stamps and registers its schemes (`fence.lua`).
pub(super) static FENCE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/fence.lua")));
/// Stores a value if its stamps are unchanged (`store.lua`).
pub(super) static STORE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/store.lua")));
/// Deletes the conjunction keys that rows hit (`invalidate.lua`).
pub(super) static INVALIDATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/invalidate.lua")));
/// Releases a lock its token holds (`unlock.lua`).
pub(super) static UNLOCK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/unlock.lua")));

/// `EVALSHA <sha> <numkeys>`, ready for keys and arguments.
pub(super) fn evalsha(script: &Script, numkeys: usize) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(numkeys);
    cmd
}

/// Runs a command or pipeline of EVALSHAs of `script`, loading the script once if
/// the server does not know it.
pub(super) fn with_script<T: redis::FromRedisValue>(
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

/// A command or a pipeline: what [`with_script`] may have to send twice.
pub(super) trait Query {
    /// Sends it and reads the reply.
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
