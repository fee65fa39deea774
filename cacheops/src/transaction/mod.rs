//! Transaction levels and what they owe at COMMIT, for every kind of connection.
//!
//! [`queue`] holds what one level owes (invalidations, then after-commit hooks);
//! [`frames`] the one stack of levels and its rules (release merges, rollback
//! drops, the outermost commit settles); [`plain`] keeps one such stack per plain
//! connection for [`crate::Cacheops::transaction`]. `CachedConnection` keeps its own
//! stack (`connection/tracked.rs`) and maps the statements it sees onto it.
//!
//! This module sits below `connection/`: it never names a connection trait of
//! cacheops, so the dispatch between the two kinds (`on_commit`, a helper's write)
//! lives above it.

mod frames;
mod plain;
mod queue;

pub(crate) use frames::{Frames, Opened};
pub(crate) use plain::{conn_id, in_transaction, plain_on_commit, plain_wrote};
pub(crate) use queue::{Hook, Owed, Pending, Queue};
