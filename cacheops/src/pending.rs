//! Invalidations owed by a write, held until its transaction commits.

use crate::error::Result;
use crate::model::ModelInfo;
use crate::runtime::Cacheops;
use crate::value::Value;

/// One invalidation a write owes, with the handle that will send it.
pub(crate) struct Pending {
    pub(crate) handle: Cacheops,
    pub(crate) what: Owed,
}

/// What a write invalidates.
pub(crate) enum Owed {
    /// Rows of a model, each with every column in the model's order (helpers).
    Rows(&'static ModelInfo, Vec<Vec<Value>>),
    /// Everything that depends on these tables (writes it could not analyse finer).
    Tables(Vec<String>),
    /// Everything under the prefix (raw SQL it could not analyse at all).
    All,
}

impl Pending {
    /// Sends the invalidation now.
    pub(crate) fn send(self) -> Result<()> {
        let handle = self.handle;
        match self.what {
            Owed::Rows(model, rows) => handle.invalidate_values(model, rows),
            Owed::Tables(tables) => tables.iter().try_for_each(|t| handle.invalidate_table(t)),
            Owed::All => handle.invalidate_all(),
        }
    }
}

/// Sends every pending invalidation, even after one fails (each failure is
/// remembered by its handle), and returns the first error.
pub(crate) fn send_all(pending: Vec<Pending>) -> Result<()> {
    let mut first_error = None;
    for p in pending {
        if let Err(e) = p.send() {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
