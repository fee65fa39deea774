//! The read-through algorithm every cached computation goes through.
//!
//! Hit: one round trip. Miss: the dependency stamps are read (or created)
//! *before* the computation runs, and the result is stored only if they are all
//! unchanged afterwards. An invalidation that lands while it runs therefore
//! refuses the fill, which closes the read-miss-then-stale-write race. The fence
//! vouches only for a computation that reads the data committed when it runs; one
//! that read an older snapshot reports it (see [`Storable`]) and its result is
//! served but not stored.
//!
//! A computed result is never lost to the cache: one over the maximum value size
//! is not sent, and one the store fails to take (Redis down, or refusing a value
//! over its `proto-max-bulk-len`) is logged and counted; both are returned. Each
//! call is counted once (hit or miss, per table too) in the handle's tally.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::core::Core;
use super::io::{block_on, Io};
use super::lock::{self, QUERY_LOCK_TTL};
use super::store::{CacheKey, Fence};
use crate::codec;
use crate::deps::Deps;
use crate::error::Result;

/// What a cacheable computation resolved to: where its result lives, what it
/// depends on, and for how long.
pub(crate) struct Plan {
    pub(crate) key: CacheKey,
    /// Shared: a query's dependencies are a function of its key, kept per key.
    pub(crate) deps: Arc<Deps>,
    pub(crate) ttl: Duration,
    /// Concurrent misses of `key` compute once; the others wait (see `lock.rs`).
    pub(crate) lock: bool,
}

/// Whether a computed miss may be stored. The read-through asks for it just
/// before computing a fill; the computation answers once it has run, `false` when
/// it read a snapshot older than the fence taken before it (a REPEATABLE READ
/// transaction, say). Asked only then, so that a hit or an uncached read never
/// pays for finding out. Atomic, so that an async computation holding it is `Send`.
#[derive(Debug, Default)]
pub(crate) struct Storable {
    asked: AtomicBool,
    refused: AtomicBool,
}

impl Storable {
    /// Whether the read-through asked (a fill is being computed): the answer is
    /// then to be found and given with [`Storable::answer`].
    pub(crate) fn asked(&self) -> bool {
        self.asked.load(Ordering::Relaxed)
    }

    /// Records the computation's answer, found by `may_store`, if it was asked.
    pub(crate) fn answer(&self, may_store: impl FnOnce() -> bool) {
        if self.asked() {
            self.refused.store(!may_store(), Ordering::Relaxed);
        }
    }

    fn ask(&self) {
        self.asked.store(true, Ordering::Relaxed);
    }

    fn refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }
}

/// [`read_through_with`] for a blocking computation on the handle's blocking
/// store, which tells through `storable` whether its result may be stored.
pub(crate) fn read_through_storable<R>(
    core: &Core,
    plan: Option<Plan>,
    storable: &Storable,
    compute: impl FnOnce() -> Result<R>,
) -> Result<R>
where
    R: Serialize + DeserializeOwned,
{
    let io = core.blocking();
    block_on(read_through_with(core, &io, plan, storable, async {
        compute()
    }))
}

/// [`read_through_with`] for an async computation on a database connection
/// (a diesel-async query): the computation is boxed, and the read-through too.
/// Inline, the computation's state would be laid out in each branch of the
/// read-through that may run it, and the read-through's in each future that
/// awaits it: every call's future (hits too) was 75 KB, moved as it was built.
#[cfg(feature = "async")]
pub(crate) async fn read_through_boxed<R>(
    core: &Core,
    io: &impl Io,
    plan: Option<Plan>,
    storable: &Storable,
    compute: impl Future<Output = Result<R>>,
) -> Result<R>
where
    R: Serialize + DeserializeOwned,
{
    let compute = Box::pin(compute);
    Box::pin(read_through_with(core, io, plan, storable, compute)).await
}

/// The read-through algorithm for any computation with a plan: serve the cached
/// result if its stamps are intact, else fence, compute, and store unless an
/// invalidation landed meanwhile. `None` (or a plan whose tables have a pending
/// invalidation) computes without the cache. `compute` is not polled before the
/// cache has missed.
///
/// Dropped at an await (async callers): before the fence, nothing happened; after
/// it, the fill is simply not stored; the store itself is one atomic operation
/// that either stored a value its fence vouched for or did nothing.
pub(crate) async fn read_through_with<R>(
    core: &Core,
    io: &impl Io,
    plan: Option<Plan>,
    storable: &Storable,
    compute: impl Future<Output = Result<R>>,
) -> Result<R>
where
    R: Serialize + DeserializeOwned,
{
    let plan = match plan {
        Some(plan) if core.may_read(io, &plan.deps).await => plan,
        _ => return uncached(core, None, compute).await,
    };
    match io.lookup(plan.key, &plan.deps).await {
        Ok(Some(bytes)) => {
            if let Some(value) = codec::decode(&bytes) {
                core.tally.read(Some(&plan.deps), true);
                return Ok(value);
            }
        }
        Ok(None) => {}
        Err(e) => {
            core.store_failed(e, "cache read")?;
            return uncached(core, None, compute).await;
        }
    }
    if plan.lock {
        return locked_fill(core, io, compute, &plan, storable).await;
    }
    fill_miss(core, io, compute, &plan, storable).await
}

/// A miss under stampede protection: one caller fills through the fence, the
/// others are served the value it stored (read, like any hit, with its stamps
/// checked) or fill through the fence themselves after the bounded wait.
async fn locked_fill<R>(
    core: &Core,
    io: &impl Io,
    compute: impl Future<Output = Result<R>>,
    plan: &Plan,
    storable: &Storable,
) -> Result<R>
where
    R: Serialize + DeserializeOwned,
{
    let probe = || async {
        let found = io.lookup(plan.key, &plan.deps).await?;
        let value = found.and_then(|bytes| codec::decode(&bytes));
        if value.is_some() {
            core.tally.read(Some(&plan.deps), true);
        }
        Ok(value)
    };
    let fill = fill_miss(core, io, compute, plan, storable);
    lock::compute_once(io, plan.key, QUERY_LOCK_TTL, probe, fill).await
}

async fn fill_miss<R: Serialize>(
    core: &Core,
    io: &impl Io,
    compute: impl Future<Output = Result<R>>,
    plan: &Plan,
    storable: &Storable,
) -> Result<R> {
    let fence = match io.fence(&plan.deps, plan.ttl).await {
        Ok(fence) => fence,
        Err(e) => {
            core.store_failed(e, "cache fence")?;
            return uncached(core, Some(&plan.deps), compute).await;
        }
    };
    storable.ask();
    let result = compute.await?;
    core.tally.read(Some(&plan.deps), false);
    core.run_fill_hook();
    if !storable.refused() {
        // Encoded first: nothing borrowed from the result is held across the
        // store's await (an async fill stays `Send` for any result type).
        let stored = match encode_fill(core, &result) {
            Ok(payload) => store_fill(core, io, plan, &fence, &payload).await,
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            core.not_stored(&e);
        }
    }
    Ok(result)
}

/// A fill's result encoded, if it fits the maximum value size.
fn encode_fill<R: Serialize>(core: &Core, result: &R) -> Result<Vec<u8>> {
    let payload = codec::encode(result)?;
    core.check_size(payload.len(), format_args!("a cached value"))?;
    Ok(payload)
}

/// Stores a fill's encoded result if the fence holds.
async fn store_fill(
    core: &Core,
    io: &impl Io,
    plan: &Plan,
    fence: &Fence,
    payload: &[u8],
) -> Result<()> {
    if !io.store(plan.key, fence, payload, plan.ttl).await? {
        core.tally.refused();
    }
    Ok(())
}

/// A read that does not use the cache: a miss (of `deps`' tables when it has a
/// plan the cache could not serve).
async fn uncached<R>(
    core: &Core,
    deps: Option<&Deps>,
    compute: impl Future<Output = Result<R>>,
) -> Result<R> {
    core.tally.read(deps, false);
    compute.await
}
