//! A link to the Redis server: what the store's logic (`server.rs`) sends its
//! requests through. The blocking link is the connection pool (`pool.rs`); the
//! async one is a multiplexed tokio connection (`multiplexed.rs`, feature
//! `async`). Each sends one request and hands back its raw reply, so that every
//! command is built, and every reply read, by one piece of code for both.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisResult, ServerErrorKind, Value};

use super::commands::LookupCmd;
use super::pool::PoolOptions;
use crate::error::Error;
use crate::store::failure::{Doing, Phase};

/// One request: a command, a pipeline (its reply is the array of the replies not
/// ignored), or a lookup, packed once per key.
#[derive(Clone, Copy)]
pub(super) enum Body<'a> {
    Cmd(&'a Cmd),
    Pipe(&'a Pipeline),
    /// The MGET of a lookup alone, or (`true`) with the value's PTTL: then the
    /// reply is the array of both replies.
    Lookup(&'a LookupCmd, bool),
}

/// Why a request failed: the caller must know whether it may have reached Redis
/// (its effects, and any news it published, are then unknown).
#[derive(Debug)]
pub(super) enum Failure {
    /// No connection: nothing was sent.
    Connect(Error),
    /// A request was sent and failed, or its reply was lost.
    Command(Error),
    /// An EVALSHA of a script the server does not know (first use, restart,
    /// SCRIPT FLUSH): nothing ran; load the script and send it again.
    NoScript(Error),
}

impl Failure {
    /// The failure of a sent request, described as `doing`.
    pub(super) fn of_command(e: RedisError, described: impl FnOnce(RedisError) -> Error) -> Self {
        match e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) {
            true => Failure::NoScript(described(e)),
            false => Failure::Command(described(e)),
        }
    }

    /// The error to report.
    pub(super) fn into_error(self) -> Error {
        match self {
            Failure::Connect(e) | Failure::Command(e) | Failure::NoScript(e) => e,
        }
    }
}

/// Where requests go: sends one and reads its reply.
pub(super) trait Link: Send + Sync + 'static {
    /// Sends `body` and reads its reply with `read` (a reply it cannot read is a
    /// failure of the request); a failure is described as `doing`.
    fn send<T: Send>(
        &self,
        doing: Doing<'_>,
        body: Body<'_>,
        read: impl Fn(Value) -> RedisResult<T> + Send + Sync,
    ) -> impl Future<Output = Result<T, Failure>> + Send;
}

/// Reads a reply as a `T`.
pub(super) fn typed<T: FromRedisValue>(reply: Value) -> RedisResult<T> {
    Ok(T::from_redis_value(reply)?)
}

/// Whether the connection is still in step with the server after `e`: a server's
/// error reply was read whole; an I/O error or timeout may leave a reply unread.
pub(super) fn in_step(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::Server(_)
            | redis::ErrorKind::Extension
            | redis::ErrorKind::UnexpectedReturnType
    )
}

/// The last failed connect of a link: for `retry_after`, requests fail at once
/// with its error instead of each waiting for the connect timeout. A link
/// connects one caller at a time, so that while Redis is down one waits for the
/// timeout and the others fail fast right after.
#[derive(Default)]
pub(super) struct Down(Mutex<Option<(Instant, RedisError)>>);

impl Down {
    /// The error to fail with now, if the last connect failed recently.
    pub(super) fn check(&self, doing: Doing<'_>, options: &PoolOptions) -> Result<(), Error> {
        let down = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match &*down {
            Some((until, e)) if Instant::now() < *until => {
                let phase = Phase::Waiting {
                    connect: options.connect_timeout,
                    retry_after: options.retry_after,
                };
                Err(doing.failed(e.clone(), phase))
            }
            _ => Ok(()),
        }
    }

    /// Records how a connect went, and describes its failure as `doing`.
    pub(super) fn record<C>(
        &self,
        connected: RedisResult<C>,
        doing: Doing<'_>,
        options: &PoolOptions,
    ) -> Result<C, Error> {
        let mut down = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match connected {
            Ok(con) => {
                *down = None;
                Ok(con)
            }
            Err(e) => {
                *down = Some((Instant::now() + options.retry_after, e.clone()));
                Err(doing.failed(e, Phase::Connect(options.connect_timeout)))
            }
        }
    }
}
