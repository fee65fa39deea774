//! Sending invalidations: rows matched against cached conditions, whole tables,
//! everything. A failure is remembered ([`Failures`](super::failures::Failures))
//! so that what it names bypasses the cache until an invalidation gets through.

use super::core::Core;
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
    match owed {
        Owed::Rows(model, rows) => send_rows(core, model.table, &of_model(model, rows)),
        Owed::Named(table, rows) => send_rows(core, &table, &named(&table, &rows)),
        Owed::Tables(tables) => {
            let sent: Vec<Result<()>> = tables.iter().map(|t| send_table(core, t)).collect();
            sent.into_iter().collect()
        }
        Owed::All => send_all(core),
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
    core.tally.invalidated(Some(table));
    let sent = core.store().invalidate_rows(table, rows);
    remembered(core, sent, table)
}

/// Invalidates everything that depends on `table`; a failure is remembered and
/// returned.
pub(crate) fn send_table(core: &Core, table: &str) -> Result<()> {
    core.tally.invalidated(Some(table));
    let sent = core.store().invalidate_table(table);
    remembered(core, sent, table)
}

/// Drops everything under the prefix, and nothing else (an operator's action:
/// a failure is returned, not remembered).
pub(crate) fn drop_all(core: &Core) -> Result<()> {
    core.tally.invalidated(None);
    core.store().invalidate_all()
}

/// [`drop_all`] for a write that may have changed anything: a failure is
/// remembered (nothing is served until it gets through) and returned.
pub(crate) fn send_all(core: &Core) -> Result<()> {
    drop_all(core).inspect_err(|_| core.failures.owe_all())
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
