//! In-process store. (Stub: being written.)

/// A store in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryStore;
