//! Redis store. (Stub: being written.)

/// A store in Redis.
#[derive(Debug)]
pub struct RedisStore;
impl RedisStore {
    /// Stub.
    pub fn open(_url: &str, _prefix: &str, _timeout: std::time::Duration) -> crate::Result<Self> {
        Ok(RedisStore)
    }
}
use super::*; use crate::deps::Deps; use crate::error::Result; use std::time::Duration;
impl Store for RedisStore {
    fn lookup(&self, _: CacheKey, _: &Deps) -> Result<Option<Vec<u8>>> { Err(stub()) }
    fn fence(&self, _: &Deps, _: Duration) -> Result<Fence> { Err(stub()) }
    fn store(&self, _: CacheKey, _: &Fence, _: &[u8], _: Duration) -> Result<bool> { Err(stub()) }
    fn invalidate_rows(&self, _: &str, _: &[RowState<'_>]) -> Result<()> { Err(stub()) }
    fn invalidate_table(&self, _: &str) -> Result<()> { Err(stub()) }
    fn invalidate_all(&self) -> Result<()> { Err(stub()) }
    fn delete(&self, _: CacheKey) -> Result<()> { Err(stub()) }
}
fn stub() -> crate::Error { crate::Error::new(crate::ErrorKind::Redis, "stub") }
/// Stub.
pub struct RedisStoreBuilder(String);
impl RedisStore {
    /// Stub.
    pub fn builder(url: &str) -> RedisStoreBuilder { RedisStoreBuilder(url.into()) }
}
impl RedisStoreBuilder {
    /// Stub.
    pub fn prefix(self, _: impl Into<String>) -> Self { self }
    /// Stub.
    pub fn connect_timeout(self, _: Duration) -> Self { self }
    /// Stub.
    pub fn io_timeout(self, _: Duration) -> Self { self }
    /// Stub.
    pub fn build(self) -> Result<RedisStore> { Ok(RedisStore) }
}
