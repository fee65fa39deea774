//! The blocking [`Link`]: `redis::Connection`s kept in a small idle pool. An operation takes one (or connects) and gives it back unless the
//! connection may be out of step with the server (I/O error, timeout).
//!
//! Nothing connects before the first operation, so an application starts while
//! Redis is down; after a failed connect, operations fail fast for a short while
//! (`retry_after`) instead of each waiting for the connect timeout. A new
//! connection is checked with a PING (see [`open_connection`]).

use std::future::{ready, Future};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::{Connection, ConnectionLike, RedisError, RedisResult, Value};

use super::link::{in_step, Body, Down, Failure, Link};
use crate::error::Error;
use crate::store::failure::{Doing, Phase};

/// How the pool connects and how long it waits, set by the store's builder.
#[derive(Clone, Copy, Debug)]
pub(super) struct PoolOptions {
    /// How long a connection attempt may take.
    pub(super) connect_timeout: Duration,
    /// How long one read or write on a connection may take.
    pub(super) io_timeout: Duration,
    /// How many idle connections are kept for reuse.
    pub(super) max_idle: usize,
    /// After a failed connect, how long operations fail at once.
    pub(super) retry_after: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
            max_idle: 16,
            retry_after: Duration::from_secs(1),
        }
    }
}

/// Idle connections to one server, and the last failed connect.
pub(super) struct Pool {
    pub(super) client: redis::Client,
    pub(super) options: PoolOptions,
    idle: Mutex<Vec<Connection>>,
    /// Held while connecting (see [`Down`]).
    connecting: Mutex<()>,
    down: Down,
}

impl Pool {
    /// A pool that has not connected yet.
    pub(super) fn new(client: redis::Client, options: PoolOptions) -> Pool {
        Pool {
            client,
            options,
            idle: Mutex::new(Vec::new()),
            connecting: Mutex::new(()),
            down: Down::default(),
        }
    }

    /// Runs `op` on a connection; a failure is described as `doing` (see
    /// `failure.rs`). A pooled connection the server closed while idle gets one
    /// retry on a fresh one; every operation of the store is safe to repeat.
    pub(super) fn run<T>(
        &self,
        doing: Doing<'_>,
        mut op: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, Failure> {
        let (mut con, pooled) = self.checkout(doing).map_err(Failure::Connect)?;
        let mut result = op(&mut con);
        if pooled
            && result
                .as_ref()
                .is_err_and(RedisError::is_connection_dropped)
        {
            // The others idled as long: probably closed too.
            self.lock_idle().clear();
            con = self.connect(doing).map_err(Failure::Connect)?;
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
                let phase = Phase::Command(self.options.io_timeout);
                Err(Failure::of_command(e, |e| doing.failed(e, phase)))
            }
        }
    }

    /// An idle connection (`true`: it may have been closed meanwhile), or a new one.
    fn checkout(&self, doing: Doing<'_>) -> Result<(Connection, bool), Error> {
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

    fn connect(&self, doing: Doing<'_>) -> Result<Connection, Error> {
        let options = &self.options;
        let _one = self
            .connecting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.down.check(doing, options)?;
        let timeouts = (options.connect_timeout, options.io_timeout);
        let connected = open_connection(&self.client, timeouts);
        self.down.record(connected, doing, options)
    }

    fn lock_idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        // A Vec of connections is consistent at every step: poisoning is harmless.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
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

impl Link for Pool {
    fn send<T: Send>(
        &self,
        doing: Doing<'_>,
        body: Body<'_>,
        read: impl Fn(Value) -> RedisResult<T> + Send + Sync,
    ) -> impl Future<Output = Result<T, Failure>> + Send {
        ready(self.run(doing, |con| send_body(con, body).and_then(&read)))
    }
}

/// Sends `body` on a blocking connection.
fn send_body(con: &mut Connection, body: Body<'_>) -> RedisResult<Value> {
    match body {
        Body::Cmd(cmd) => cmd.query(con),
        Body::Pipe(pipe) => pipe.query(con),
        Body::Lookup(lookup, false) => con.req_packed_command(lookup.mget_packed()),
        Body::Lookup(lookup, true) => con
            .req_packed_commands(lookup.packed(), 0, 2)
            .map(Value::Array),
    }
}
