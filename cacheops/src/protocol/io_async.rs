//! The protocol's I/O for async callers (feature `async`): every operation is a
//! future of the handle's [`AsyncStore`], and a stampede lock's waiter pauses on
//! a tokio timer, so no thread is ever blocked.

use std::sync::Arc;
use std::time::Duration;

use super::io::Io;
use super::lock::{released, Locks};
use super::store::{AsyncStore, CacheKey, Fence, RowState};
use crate::deps::Deps;
use crate::error::Result;

/// The protocol's I/O on an [`AsyncStore`].
#[derive(Clone, Copy)]
pub(crate) struct Async<'s>(pub(crate) &'s Arc<dyn AsyncStore>);

impl Io for Async<'_> {
    async fn lookup(&self, key: CacheKey, deps: &Deps) -> Result<Option<Vec<u8>>> {
        self.0.lookup(key, deps).await
    }

    async fn fence(&self, deps: &Deps, ttl: Duration) -> Result<Fence> {
        self.0.fence(deps, ttl).await
    }

    async fn store(
        &self,
        key: CacheKey,
        fence: &Fence,
        payload: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        self.0.store(key, fence, payload, ttl).await
    }

    async fn invalidate_rows(&self, table: &str, rows: &[RowState<'_>]) -> Result<()> {
        self.0.invalidate_rows(table, rows).await
    }

    async fn invalidate_table(&self, table: &str) -> Result<()> {
        self.0.invalidate_table(table).await
    }

    async fn invalidate_all(&self) -> Result<()> {
        self.0.invalidate_all().await
    }

    async fn delete(&self, key: CacheKey) -> Result<()> {
        self.0.delete(key).await
    }

    async fn simple_get(&self, key: CacheKey) -> Result<Option<Vec<u8>>> {
        self.0.simple_get(key).await
    }

    async fn simple_set(&self, key: CacheKey, payload: &[u8], ttl: Duration) -> Result<()> {
        self.0.simple_set(key, payload, ttl).await
    }

    async fn simple_delete(&self, key: CacheKey) -> Result<()> {
        self.0.simple_delete(key).await
    }
}

impl Locks for Async<'_> {
    async fn try_lock(&self, key: CacheKey, token: &str, ttl: Duration) -> Result<bool> {
        self.0.try_lock(key, token, ttl).await
    }

    async fn unlock(&self, key: CacheKey, token: &str) -> Result<()> {
        self.0.unlock(key, token).await
    }

    /// In a task of its own on the current runtime; with no runtime (it is
    /// shutting down), the lock expires by itself.
    fn unlock_later(&self, key: CacheKey, token: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = Arc::clone(self.0);
        runtime.spawn(async move { released(store.unlock(key, &token).await) });
    }

    async fn pause(&self, pause: Duration) {
        tokio::time::sleep(pause).await
    }
}
