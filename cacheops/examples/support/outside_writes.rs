//! For the stress program: writes made outside cacheops (bare connections) are
//! entered into the truth only once the change feed has applied them, and their
//! lag (commit to applied) is measured.
//!
//! A write is applied once its outbox row is gone: the consumer invalidates
//! before it deletes, in the same transaction. So a read that starts after that
//! must see the write; one that returns older data is stale beyond the lag.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use diesel::pg::PgConnection;
use diesel::RunQueryDsl;

type Apply = Box<dyn FnOnce() + Send>;

/// Outside writes committed, waiting for the feed to apply them.
#[derive(Default)]
pub struct OutsideWrites {
    /// The write's last outbox row, when it committed, and what entering it into
    /// the truth does.
    pending: Mutex<VecDeque<(i64, Instant, Apply)>>,
    /// Microseconds from commit to applied, one per write.
    lags: Mutex<Vec<f64>>,
}

impl OutsideWrites {
    /// A write committed, its last outbox row `seq`; `apply` enters it into the truth.
    pub fn committed(&self, seq: i64, apply: impl FnOnce() + Send + 'static) {
        let entry = (seq, Instant::now(), Box::new(apply) as Apply);
        self.pending.lock().unwrap().push_back(entry);
    }

    /// One look at the outbox of `schema`: every pending write whose rows are
    /// gone is entered into the truth, and its lag recorded.
    pub fn look(&self, conn: &mut PgConnection, schema: &str) {
        let sql = format!("(SELECT coalesce(min(seq), 9223372036854775807) FROM {schema}.outbox)");
        let Ok(oldest) = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&sql))
            .get_result::<i64>(conn)
        else {
            return;
        };
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap();
        // Writers push in any order: every applied one is taken, wherever it is.
        let (applied, waiting): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut *pending)
            .into_iter()
            .partition(|(seq, _, _)| *seq < oldest);
        *pending = waiting;
        drop(pending);
        let mut lags = self.lags.lock().unwrap();
        for (_, committed, apply) in applied {
            lags.push(now.duration_since(committed).as_secs_f64() * 1e6);
            apply();
        }
    }

    /// Whether every write was applied.
    pub fn drained(&self) -> bool {
        self.pending.lock().unwrap().is_empty()
    }

    /// p50 and p99 of the lags, in µs.
    pub fn lag_percentiles(&self) -> (f64, f64) {
        let mut lags = self.lags.lock().unwrap().clone();
        lags.sort_by(f64::total_cmp);
        let at = |q: f64| {
            lags.get(((lags.len() as f64 * q) as usize).min(lags.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0)
        };
        (at(0.5), at(0.99))
    }
}
