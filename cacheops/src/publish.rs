//! Publishing to Redis what other processes read: a background thread per
//! Redis-backed handle sends the per-model counters to the hash `P:stats` at most
//! once per second (`HINCRBY` of what accumulated since the last flush, one
//! pipeline), so `cacheops-cli stats` can show them; a hit never waits for it. The
//! same thread publishes the model registry first (see `registry.rs`).

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::protocol::stats::ModelCounters;
use crate::store::{Doing, Phase};

/// Sends the pending per-model counts to `target`'s `P:stats` in one pipeline; on
/// failure they stay pending for the next flush.
pub(crate) fn flush(
    counters: &ModelCounters,
    con: &mut redis::Connection,
    target: &crate::registry::Target,
) -> Result<()> {
    let pending = counters.take_pending();
    if pending.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    let stats_key = target.stats_key();
    for (field, n) in &pending {
        pipe.hincr(&stats_key, field, *n).ignore();
    }
    pipe.exec(con).map_err(|e| {
        counters.restore_pending(&pending);
        Doing::PUBLISH_STATS.failed(e, Phase::Command(target.timeout))
    })
}

/// How often the publisher flushes.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Starts the publisher thread of a Redis-backed handle: it publishes the model
/// registry once, then flushes the counters every second. Once the handle is gone
/// (the thread holds the last reference) it flushes one last time and ends.
/// Failures are logged and retried; they never reach the application.
pub(crate) fn spawn_publisher(target: crate::registry::Target, counters: Arc<ModelCounters>) {
    let spawned = std::thread::Builder::new()
        .name("cacheops-stats".into())
        .spawn(move || publisher_loop(&target, &counters));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cacheops: could not start the stats publisher");
    }
}

fn publisher_loop(target: &crate::registry::Target, counters: &Arc<ModelCounters>) {
    let mut con = None;
    let mut registry_published = false;
    loop {
        if !registry_published {
            registry_published = attempt(target, &mut con, "publishing the model registry", |c| {
                crate::registry::publish(c, target)
            });
        }
        std::thread::sleep(FLUSH_EVERY);
        let last = Arc::strong_count(counters) == 1;
        attempt(target, &mut con, "publishing stats", |c| {
            flush(counters, c, target)
        });
        if last {
            return;
        }
    }
}

/// Runs `f` on the publisher's connection (opened if needed). A failure is logged
/// at DEBUG (Redis being down is reported by the cache itself) and drops the
/// connection, which may be out of step.
fn attempt(
    target: &crate::registry::Target,
    con: &mut Option<redis::Connection>,
    what: &str,
    f: impl FnOnce(&mut redis::Connection) -> Result<()>,
) -> bool {
    match target.connection(con).and_then(f) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "cacheops: {what} failed; will retry");
            *con = None;
            false
        }
    }
}
