//! The async [`Link`]: one multiplexed tokio connection that every task shares
//! (redis-rs pipelines their requests on it), connected on first use and again
//! after it was lost. Like the blocking pool, it connects one caller at a time,
//! fails fast for `retry_after` after a failed connect, and PINGs a new
//! connection. Nothing here blocks a thread: the locks held across an await are
//! tokio's, and the std lock around the connection is held only to clone it.
//!
//! A multiplexed connection's driver runs as a task of the runtime it connected
//! on; if that runtime shuts down, the connection reads as lost and the next
//! request connects again on its own runtime.

use std::sync::{PoisonError, RwLock};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult, Value};

use super::link::{in_step, Body, Down, Failure, Link};
use super::pool::PoolOptions;
use crate::error::Error;
use crate::store::failure::{Doing, Phase};

/// The async link to one server.
pub(super) struct Multiplexed {
    client: redis::Client,
    pub(super) options: PoolOptions,
    con: RwLock<Option<MultiplexedConnection>>,
    /// Held while connecting (see [`Down`]).
    connecting: tokio::sync::Mutex<()>,
    down: Down,
}

impl Multiplexed {
    /// A link that has not connected yet.
    pub(super) fn new(client: redis::Client, options: PoolOptions) -> Multiplexed {
        Multiplexed {
            client,
            options,
            con: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            down: Down::default(),
        }
    }

    fn current(&self) -> Option<MultiplexedConnection> {
        self.con
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, con: Option<MultiplexedConnection>) {
        *self.con.write().unwrap_or_else(PoisonError::into_inner) = con;
    }

    /// The shared connection, connected if there is none.
    async fn connection(&self, doing: Doing<'_>) -> Result<MultiplexedConnection, Error> {
        if let Some(con) = self.current() {
            return Ok(con);
        }
        let _one = self.connecting.lock().await;
        if let Some(con) = self.current() {
            return Ok(con);
        }
        self.down.check(doing, &self.options)?;
        let connected = self.open().await;
        let con = self.down.record(connected, doing, &self.options)?;
        self.set(Some(con.clone()));
        Ok(con)
    }

    /// A new connection Redis has answered (see `pool::open_connection`).
    async fn open(&self) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout))
            .set_response_timeout(Some(self.options.io_timeout));
        let mut con = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("PING").exec_async(&mut con).await?;
        Ok(con)
    }
}

impl Link for Multiplexed {
    async fn send<T: Send>(
        &self,
        doing: Doing<'_>,
        body: Body<'_>,
        read: impl Fn(Value) -> RedisResult<T> + Send + Sync,
    ) -> Result<T, Failure> {
        let mut con = self.connection(doing).await.map_err(Failure::Connect)?;
        let sent = match body {
            Body::Cmd(cmd) => cmd.query_async(&mut con).await,
            Body::Pipe(pipe) => pipe.query_async(&mut con).await,
            Body::Lookup(lookup, false) => lookup.mget().query_async(&mut con).await,
            Body::Lookup(lookup, true) => lookup.mget_pttl().query_async(&mut con).await,
        };
        sent.and_then(read).map_err(|e| {
            if !in_step(&e) {
                // Lost, or out of step: the next request connects afresh.
                self.set(None);
            }
            let phase = Phase::Command(self.options.io_timeout);
            Failure::of_command(e, |e| doing.failed(e, phase))
        })
    }
}
