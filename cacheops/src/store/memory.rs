//! In-process store. (Stub: being written.)

/// A store in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryStore;
impl MemoryStore {
    /// Stub.
    pub fn new(_prefix: &str) -> Self {
        MemoryStore
    }
}
use super::*; use crate::deps::Deps; use crate::error::Result; use std::time::Duration;
impl Store for MemoryStore {
    fn lookup(&self, _: CacheKey, _: &Deps) -> Result<Option<Vec<u8>>> { Err(stub()) }
    fn fence(&self, _: &Deps, _: Duration) -> Result<Fence> { Err(stub()) }
    fn store(&self, _: CacheKey, _: &Fence, _: &[u8], _: Duration) -> Result<bool> { Err(stub()) }
    fn invalidate_rows(&self, _: &str, _: &[RowState<'_>]) -> Result<()> { Err(stub()) }
    fn invalidate_table(&self, _: &str) -> Result<()> { Err(stub()) }
    fn invalidate_all(&self) -> Result<()> { Err(stub()) }
    fn delete(&self, _: CacheKey) -> Result<()> { Err(stub()) }
}
fn stub() -> crate::Error { crate::Error::new(crate::ErrorKind::Redis, "stub") }
