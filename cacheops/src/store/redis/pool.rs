//! The Redis store's connections: blocking `redis::Connection`s kept in a small
//! idle pool. An operation takes one (or connects) and gives it back unless the
//! connection may be out of step with the server (I/O error, timeout).
//!
//! Nothing connects before the first operation, so an application starts while
//! Redis is down; after a failed connect, operations fail fast for a short while
//! (`retry_after`) instead of each waiting for the connect timeout. A new
//! connection is checked with a PING (see [`open_connection`]).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::{Connection, RedisError, RedisResult};

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

/// Why [`Pool::run`] failed: the caller must know whether a command may have
/// reached Redis (its effects, and any news it published, are then unknown).
pub(super) enum Failure {
    /// No connection: nothing was sent.
    Connect(Error),
    /// A command was sent and failed, or its reply was lost.
    Command(Error),
}

/// Idle connections to one server, and the last failed connect.
pub(super) struct Pool {
    client: redis::Client,
    pub(super) options: PoolOptions,
    idle: Mutex<Vec<Connection>>,
    /// Until when operations fail at once, with the error of the failed connect.
    down_until: Mutex<Option<(Instant, RedisError)>>,
}

impl Pool {
    /// A pool that has not connected yet.
    pub(super) fn new(client: redis::Client, options: PoolOptions) -> Pool {
        Pool {
            client,
            options,
            idle: Mutex::new(Vec::new()),
            down_until: Mutex::new(None),
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
                Err(Failure::Command(doing.failed(e, phase)))
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
