//! Sending invalidations: rows matched against cached conditions, whole tables,
//! everything. A failure is remembered ([`Failures`](super::failures::Failures))
//! so that what it names bypasses the cache until an invalidation gets through.
//!
//! Each function is `async` over the protocol's [`Io`], with a blocking twin of
//! the same name without `_with`. An async caller that drops one before the store
//! acknowledged it leaves what it names owed, exactly as if it had failed: the
//! invalidation may or may not have reached the store, and reads of what it names
//! bypass the cache until a retry gets through.

use super::core::Core;
use super::io::{block_on, Io};
use super::store::RowState;
use crate::error::{Error, Result};
use crate::model::ModelInfo;
use crate::value::Value;

/// What a write invalidates.
pub(crate) enum Owed {
    /// Rows of a model, each with every column in the model's order (helpers).
    Rows(&'static ModelInfo, Vec<Vec<Value>>),
    /// Rows of a table as the database returned them, `(column, value)` each.
    Named(String, Vec<Vec<(String, Value)>>),
    /// Everything that depends on these tables (writes it could not analyse finer).
    Tables(Vec<String>),
    /// Everything under the prefix (raw SQL it could not analyse at all).
    All,
}

/// Sends everything `owed` names (every table, even after one failed); what
/// failed is remembered, and the first failure returned.
pub(crate) fn send(core: &Core, owed: Owed) -> Result<()> {
    block_on(send_with(core, &core.blocking(), owed))
}

/// [`send`] through `io`.
pub(crate) async fn send_with(core: &Core, io: &impl Io, owed: Owed) -> Result<()> {
    match owed {
        Owed::Rows(model, rows) => {
            send_rows_with(core, io, model.table, &of_model(model, rows)).await
        }
        Owed::Named(table, rows) => send_rows_with(core, io, &table, &named(&table, &rows)).await,
        Owed::Tables(tables) => {
            let mut sent = Ok(());
            for table in &tables {
                let result = send_table_with(core, io, table).await;
                sent = sent.and(result);
            }
            sent
        }
        Owed::All => send_all_with(core, io).await,
    }
}

/// Rows given as values of every column of `model`, in order (moved, not copied).
pub(crate) fn of_model(model: &'static ModelInfo, rows: Vec<Vec<Value>>) -> Vec<RowState<'static>> {
    let row = |values: Vec<Value>| RowState {
        table: model.table,
        columns: model.columns.iter().copied().zip(values).collect(),
    };
    rows.into_iter().map(row).collect()
}

/// Rows of `table` given as `(column, value)` pairs.
pub(crate) fn named<'a>(table: &'a str, rows: &'a [Vec<(String, Value)>]) -> Vec<RowState<'a>> {
    let row = |row: &'a Vec<(String, Value)>| RowState {
        table,
        columns: row.iter().map(|(c, v)| (c.as_str(), v.clone())).collect(),
    };
    rows.iter().map(row).collect()
}

/// Invalidates every cached value whose conditions one of `rows` (of `table`)
/// matches; a failure is remembered and returned.
pub(crate) fn send_rows(core: &Core, table: &str, rows: &[RowState<'_>]) -> Result<()> {
    block_on(send_rows_with(core, &core.blocking(), table, rows))
}

/// [`send_rows`] through `io`.
pub(crate) async fn send_rows_with(
    core: &Core,
    io: &impl Io,
    table: &str,
    rows: &[RowState<'_>],
) -> Result<()> {
    core.tally.invalidated(Some(table));
    let owing = Owing::Table(core, table);
    let sent = io.invalidate_rows(table, rows).await;
    owing.settled();
    remembered(core, sent, table)
}

/// Invalidates everything that depends on `table`; a failure is remembered and
/// returned.
pub(crate) fn send_table(core: &Core, table: &str) -> Result<()> {
    block_on(send_table_with(core, &core.blocking(), table))
}

/// [`send_table`] through `io`.
pub(crate) async fn send_table_with(core: &Core, io: &impl Io, table: &str) -> Result<()> {
    core.tally.invalidated(Some(table));
    let owing = Owing::Table(core, table);
    let sent = io.invalidate_table(table).await;
    owing.settled();
    remembered(core, sent, table)
}

/// Drops everything under the prefix, and nothing else (an operator's action:
/// a failure is returned, not remembered).
pub(crate) fn drop_all(core: &Core) -> Result<()> {
    block_on(drop_all_with(core, &core.blocking()))
}

/// [`drop_all`] through `io`.
pub(crate) async fn drop_all_with(core: &Core, io: &impl Io) -> Result<()> {
    core.tally.invalidated(None);
    io.invalidate_all().await
}

/// [`drop_all`] for a write that may have changed anything: a failure is
/// remembered (nothing is served until it gets through) and returned.
pub(crate) async fn send_all_with(core: &Core, io: &impl Io) -> Result<()> {
    let owing = Owing::All(core);
    let sent = drop_all_with(core, io).await;
    owing.settled();
    sent.inspect_err(|_| core.failures.owe_all())
}

/// What an invalidation in flight names, or a write whose invalidation is not
/// sent or queued yet: owed if it is dropped before it is settled (an async
/// caller's future dropped at an await, or a panic), so that a write the
/// database may have committed never leaves a stale entry served here.
pub(crate) enum Owing<'a> {
    Table(&'a Core, &'a str),
    All(&'a Core),
}

impl Owing<'_> {
    /// The store answered, or the invalidation was queued: the caller handles a
    /// failure itself.
    pub(crate) fn settled(self) {
        // Holds only references: forgetting it leaks nothing.
        std::mem::forget(self);
    }
}

impl Drop for Owing<'_> {
    fn drop(&mut self) {
        match self {
            Owing::Table(core, table) => core.failures.owe_tables([*table]),
            Owing::All(core) => core.failures.owe_all(),
        }
    }
}

/// `sent`, after remembering a failure: reads of `table` then bypass the cache
/// until a table-wide invalidation of it gets through.
fn remembered(core: &Core, sent: Result<()>, table: &str) -> Result<()> {
    sent.inspect_err(|_| core.failures.owe_tables([table]))
}

/// A failed invalidation the caller asked for: returned, or degraded (logged,
/// `Ok`) when the handle degrades on failure.
pub(crate) fn degraded(core: &Core, sent: Result<()>) -> Result<()> {
    sent.or_else(|e: Error| core.store_failed(e, "invalidation"))
}
