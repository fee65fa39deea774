//! The cache protocol, with no database connection in sight: keys
//! (`key.rs`, `shape.rs`), the key and stamp layout both stores implement
//! (`layout.rs`), the store interface (`store.rs`), what it runs on (`core.rs`:
//! the store, counters in `stats.rs`, failure state in `failures.rs`), the
//! read-through with its fence (`read_through.rs`), invalidation
//! (`invalidate.rs`), and stampede locks (`lock.rs`), each written once as
//! `async` code over the I/O of `io.rs`, which blocking callers drive to
//! completion in one poll.

pub(crate) mod core;
pub(crate) mod failures;
pub(crate) mod invalidate;
pub(crate) mod io;
#[cfg(feature = "async")]
pub(crate) mod io_async;
pub(crate) mod key;
pub(crate) mod layout;
pub(crate) mod lock;
pub(crate) mod read_through;
pub(crate) mod shape;
pub(crate) mod stats;
pub(crate) mod store;
