//! The peer workload (`../shared/peer-bench/README.md`) on our side, with the
//! physical limits measured in the same run.
//!
//! ```text
//! cargo run --release --example bench [--features async] -- [--json] [--compare] [--scaling] [--throughput] [--local] [--large] [--report DIR]
//! ```
//!
//! Needs PostgreSQL (`DATABASE_URL`, default `postgres://postgres@127.0.0.1/test`)
//! and Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`). It drops and
//! recreates the schema `cacheops_bench`. Env: `N_CAT`, `N_ART`, `REPS`, and
//! `BENCH_STORE=memory://` to time the library without Redis round trips.
//! Prints figures in µs (median, and p99 in the table), then one JSON line of medians
//! with the peer's keys plus `redis_get_rtt` and `redis_mget_rtt`. `--compare` then runs
//! `../shared/peer-bench/run` (or `$PEER_BENCH`) and prints both sides with ratios;
//! `--scaling` times saves with 1k/10k/100k cached queries (about a minute to fill);
//! `--throughput` measures cached reads/s and plain GETs/s with 1, 2, 4, 8 threads;
//! `--local` adds the local tier: `local_hit_*` (hits served from process memory),
//! `local_news_lag` (from another handle's save returning until this one stops
//! serving its copy: the cross-process staleness window) and, with
//! `--throughput`, local-tier reads/s;
//! `--large` (also part of the full run) times hits of 1k- and 50k-row results,
//! automatic (`auto_hit_*`) and `.cache()` (`cached_hit_*`), next to the uncached
//! load (`db_load_*`), and runs nothing else (`LARGE_ONLY=auto|cached|db` times
//! only that one, for perf);
//! profiling aids: `--cpu` (CPU µs per hit, plain GET, plain MGET, fetch20 hit, GET of
//! its size and decoding it), `--gets-only`,
//! `--saves-only`, `--throughput-only` (one phase, for perf/strace);
//! `--feed` adds the change feed's cost on a save and its lag (`--feed-only`: that
//! phase alone);
//! with the `async` feature, the async section (`support/bench_async.rs`, also part
//! of the full run; `--async-only`: that phase alone) adds `async_hit_get_pk` next
//! to `async_redis_get_rtt` and `async_redis_mget_rtt` (`.cache_async()` on
//! diesel-async and a plain GET/MGET on a tokio multiplexed connection, in turns)
//! and reads/s of 64 and 256 tasks on 2 runtime workers: cached reads, plain GETs,
//! and MGETs holding a pooled connection (a hit's work without cacheops);
//! `ASYNC_POOL` sets the cached reads' pool of connections (default 16);
//! `--report DIR` writes `DIR/bench.md` (the README's table) and `DIR/bench.png`
//! (its chart) from the run. The README's figures come from
//! `cargo run --release -p cacheops --example bench -- --compare --scaling --throughput --local --report docs`.
#![allow(missing_docs, clippy::unwrap_used)] // a benchmark: any failure aborts the run

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use cacheops::store::LocalTier;
use cacheops::{Cacheable, CachedConnection, CachedQueryDsl, Cacheops, Config};
use diesel::connection::{InstrumentationEvent, SimpleConnection};
use diesel::dsl;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "async")]
#[path = "support/bench_async.rs"]
mod bench_async;
#[path = "support/bench_report.rs"]
mod bench_report;

diesel::table! {
    articles (id) {
        id -> Integer,
        category_id -> Integer,
        title -> Varchar,
        published -> Bool,
        views -> Integer,
    }
}

#[derive(Debug, Clone, Queryable, Identifiable, AsChangeset, Cacheable, Serialize, Deserialize)]
#[diesel(table_name = articles)]
#[cacheops(app = "bench", ops = "all", timeout = 3600)]
struct Article {
    id: i32,
    category_id: i32,
    title: String,
    published: bool,
    views: i32,
}

diesel::table! {
    wide_rows (id) {
        id -> Integer,
        grp -> Integer,
        code -> BigInt,
        name -> Text,
        email -> Text,
        note -> Nullable<Text>,
        flag -> Bool,
        score -> Double,
        created -> BigInt,
        views -> Integer,
    }
}

/// A row of `--large`'s table: ten columns, three of them text (one NULL in four
/// rows), about 120 bytes cached.
#[derive(Debug, PartialEq, Queryable, Identifiable, Cacheable, Serialize, Deserialize)]
#[diesel(table_name = wide_rows)]
#[cacheops(app = "bench", ops = "all", timeout = 3600)]
struct Wide {
    id: i32,
    grp: i32,
    code: i64,
    name: String,
    email: String,
    note: Option<String>,
    flag: bool,
    score: f64,
    created: i64,
    views: i32,
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median and 99th percentile of `reps` timed calls, in µs.
fn timed(reps: usize, mut f: impl FnMut(usize)) -> (f64, f64) {
    percentiles((0..reps).map(|i| micros(|| f(i))).collect())
}

/// `timed` for two operations run alternately in one loop.
fn timed_pair(
    reps: usize,
    mut f: impl FnMut(usize),
    mut g: impl FnMut(usize),
) -> ((f64, f64), (f64, f64)) {
    let [a, b] = timed_each(reps, |i, k| if k == 0 { f(i) } else { g(i) });
    (a, b)
}

/// `timed` for `N` operations run in turn in one loop (`f(i, k)` runs the k-th),
/// so that all see the same machine: loopback and fsync latency drift here by
/// tens to hundreds of µs between phases. Each round starts with the next
/// operation, so none always follows the same one.
fn timed_each<const N: usize>(reps: usize, mut f: impl FnMut(usize, usize)) -> [(f64, f64); N] {
    let mut out: [Vec<f64>; N] = std::array::from_fn(|_| Vec::with_capacity(reps));
    for i in 0..reps {
        for k in (0..N).map(|j| (i + j) % N) {
            out[k].push(micros(|| f(i, k)));
        }
    }
    out.map(percentiles)
}

fn micros(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64() * 1e6
}

fn percentiles(mut out: Vec<f64>) -> (f64, f64) {
    out.sort_by(f64::total_cmp);
    let at = |q: f64| out[((out.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

const SCHEMA: &str = "
    DROP SCHEMA IF EXISTS cacheops_bench CASCADE;
    CREATE SCHEMA cacheops_bench;
    SET search_path TO cacheops_bench;
    CREATE TABLE categories (id SERIAL PRIMARY KEY, name VARCHAR(100) NOT NULL);
    CREATE TABLE articles (id SERIAL PRIMARY KEY, category_id INT NOT NULL REFERENCES categories,
        title VARCHAR(200) NOT NULL, published BOOL NOT NULL, views INT NOT NULL);
    CREATE INDEX ON articles (category_id);";

/// `--large`'s table, created only when that phase runs (filling it takes a while).
const WIDE_SCHEMA: &str = "
    CREATE TABLE wide_rows (id SERIAL PRIMARY KEY, grp INT NOT NULL, code BIGINT NOT NULL,
        name TEXT NOT NULL, email TEXT NOT NULL, note TEXT, flag BOOL NOT NULL,
        score FLOAT8 NOT NULL, created BIGINT NOT NULL, views INT NOT NULL);
    INSERT INTO wide_rows (grp, code, name, email, note, flag, score, created, views)
    SELECT i % 100, i * 7919, 'name number ' || i, 'user' || i || '@example.com',
        CASE WHEN i % 4 = 0 THEN NULL ELSE 'a note about row ' || i || ' of the table' END,
        i % 2 = 0, i * 0.5, 1700000000 + i, i % 1000
    FROM generate_series(1, 50000) i;
    ANALYZE wide_rows;";

/// `--large`'s result sizes, each with its keys: automatic hit, `.cache()` hit,
/// uncached load.
const LARGE: [(i32, [&str; 3]); 2] = [
    (1_000, ["auto_hit_1k", "cached_hit_1k", "db_load_1k"]),
    (50_000, ["auto_hit_50k", "cached_hit_50k", "db_load_50k"]),
];

/// The peer's "fetch 20": one category's published articles, newest first.
type Fetch20 = dsl::Limit<
    dsl::Order<
        dsl::Filter<
            articles::table,
            dsl::And<dsl::Eq<articles::category_id, i32>, dsl::Eq<articles::published, bool>>,
        >,
        dsl::Desc<articles::id>,
    >,
>;

struct Bench {
    conn: PgConnection,
    cache: Cacheops,
    queries: Arc<AtomicUsize>,
    cats: Vec<i32>,
    ids: Vec<i32>,
    reps: usize,
    figures: Vec<(&'static str, f64, f64)>,
    /// `--local --throughput`: local-tier reads/s per thread count.
    local_reads: Vec<(usize, f64)>,
}

impl Bench {
    fn setup() -> Result<Bench, Box<dyn Error>> {
        let db = database_url();
        let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let (n_cat, n_art) = (env_num("N_CAT", 100), env_num("N_ART", 10_000));
        let mut conn = PgConnection::establish(&db)?;
        conn.batch_execute(SCHEMA)?;
        let names: Vec<String> = (0..n_cat).map(|i| format!("c{i}")).collect();
        let rows: Vec<_> = names.iter().map(|n| format!("('{n}')")).collect();
        conn.batch_execute(&format!(
            "INSERT INTO categories (name) VALUES {}",
            rows.join(",")
        ))?;
        conn.batch_execute(&format!(
            "INSERT INTO articles (category_id, title, published, views)
             SELECT (i % {n_cat}) + 1, 't' || i, i % 3 <> 0, (i * 7919) % 1000 FROM generate_series(0, {n_art} - 1) i"
        ))?;
        let cats = (1..=n_cat as i32).collect();
        let ids = articles::table
            .select(articles::id)
            .order(articles::id)
            .load(&mut conn)?;
        // `BENCH_STORE=memory://` times the library without Redis round trips.
        let store = std::env::var("BENCH_STORE").unwrap_or(redis);
        let cache = Cacheops::new(
            Config::builder()
                .url(store)
                .prefix("cacheops_bench")
                .build(),
        )?;
        cache.invalidate_all()?;
        let queries = Arc::new(AtomicUsize::new(0));
        let seen = queries.clone();
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if matches!(event, InstrumentationEvent::StartQuery { .. }) {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        });
        let reps = env_num("REPS", 2000);
        Ok(Bench {
            conn,
            cache,
            queries,
            cats,
            ids,
            reps,
            figures: Vec::new(),
            local_reads: Vec::new(),
        })
    }

    fn pick(&self, i: usize) -> i32 {
        self.ids[(i * 7919) % self.ids.len()]
    }

    fn cat(&self, i: usize) -> i32 {
        self.cats[(i * 31) % self.cats.len()]
    }

    fn record(&mut self, key: &'static str, (p50, p99): (f64, f64)) {
        self.figures.push((key, p50, p99));
    }

    fn gets(&mut self) {
        let reps = self.reps;
        let ids = self.ids.clone();
        let t = timed(reps, |i| {
            articles::table
                .find(self.pick(i))
                .first::<Article>(&mut self.conn)
                .unwrap();
        });
        self.record("db_get_pk", t);
        let t = timed(reps.min(ids.len()), |i| {
            let q = articles::table.find(ids[i % ids.len()]);
            q.cache()
                .using(&self.cache)
                .get_result::<Article>(&mut self.conn)
                .unwrap();
        });
        self.record("miss_get_pk", t);
        let hot = &ids[..200.min(ids.len())];
        for id in hot {
            let q = articles::table.find(*id);
            q.cache()
                .using(&self.cache)
                .get_result::<Article>(&mut self.conn)
                .unwrap();
        }
        // The hit, a plain GET of its payload's size and a plain MGET of that value
        // and two stamps (what a hit sends) take turns in one loop, so that all see
        // the same machine: loopback latency here drifts by tens of µs between phases.
        let mut redis = self.plain_redis().unwrap();
        let [hit, get, mget] = timed_each(reps, |i, k| match k {
            0 => {
                let q = articles::table.find(hot[i % hot.len()]);
                q.cache()
                    .using(&self.cache)
                    .get_result::<Article>(&mut self.conn)
                    .unwrap();
            }
            1 => plain_get(&mut redis, RTT_KEYS[0]),
            _ => plain_mget(&mut redis),
        });
        self.record("hit_get_pk", hit);
        self.record("redis_get_rtt", get);
        self.record("redis_mget_rtt", mget);
    }

    /// A plain connection, with `RTT_KEYS` holding a value of the hit payload's size
    /// and two stamps.
    fn plain_redis(&mut self) -> Result<redis::Connection, Box<dyn Error>> {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let mut redis = redis::Client::open(url)?.get_connection()?;
        let row: Article = articles::table.first(&mut self.conn)?;
        let size = rmp_serde::to_vec(&Some(row))?.len() + 16;
        redis::cmd("SET")
            .arg(RTT_KEYS[0])
            .arg(vec![7u8; size])
            .exec(&mut redis)?;
        for k in &RTT_KEYS[1..] {
            redis::cmd("SET")
                .arg(k)
                .arg("0123456789abcdef")
                .exec(&mut redis)?;
        }
        Ok(redis)
    }

    fn fetch20(&self, i: usize) -> Fetch20 {
        articles::table
            .filter(
                articles::category_id
                    .eq(self.cat(i))
                    .and(articles::published.eq(true)),
            )
            .order(articles::id.desc())
            .limit(20)
    }

    fn fetches_and_counts(&mut self) {
        let reps = self.reps;
        let t = timed(reps, |i| {
            self.fetch20(i).load::<Article>(&mut self.conn).unwrap();
        });
        self.record("db_fetch20", t);
        // Each hit alternates with a plain GET of a value of its payload's size.
        let page: Vec<Article> = self.fetch20(0).load(&mut self.conn).unwrap();
        let mut redis = self.sized_value(RTT_FETCH20, rmp_serde::to_vec(&page).unwrap().len());
        let (hit, get) = timed_pair(
            reps,
            |i| {
                self.fetch20(i)
                    .cache()
                    .using(&self.cache)
                    .load::<Article>(&mut self.conn)
                    .unwrap();
            },
            |_| plain_get(&mut redis, RTT_FETCH20),
        );
        self.record("hit_fetch20", hit);
        self.record("redis_get_rtt_fetch20", get);
        let t = timed(reps, |i| {
            let q = articles::table.filter(articles::category_id.eq(self.cat(i)));
            q.count().get_result::<i64>(&mut self.conn).unwrap();
        });
        self.record("db_count", t);
        for c in self.cats.clone() {
            articles::table
                .filter(articles::category_id.eq(c))
                .cache()
                .using(&self.cache)
                .count(&mut self.conn)
                .unwrap();
        }
        let mut redis = self.sized_value(RTT_COUNT, rmp_serde::to_vec(&100i64).unwrap().len());
        let (hit, get) = timed_pair(
            reps,
            |i| {
                let q = articles::table.filter(articles::category_id.eq(self.cat(i)));
                q.cache().using(&self.cache).count(&mut self.conn).unwrap();
            },
            |_| plain_get(&mut redis, RTT_COUNT),
        );
        self.record("hit_count", hit);
        self.record("redis_get_rtt_count", get);
    }

    /// A plain connection with `key` holding a value of `payload` bytes plus the
    /// frame a cached value carries (its stamps' checksum).
    fn sized_value(&self, key: &str, payload: usize) -> redis::Connection {
        let mut redis = redis::Client::open(redis_url())
            .unwrap()
            .get_connection()
            .unwrap();
        redis::cmd("SET")
            .arg(key)
            .arg(vec![7u8; payload + 16])
            .exec(&mut redis)
            .unwrap();
        redis
    }

    fn cache_per_category(&mut self, limits: std::ops::RangeInclusive<i64>) {
        for c in self.cats.clone() {
            for lim in limits.clone() {
                let q = articles::table
                    .filter(articles::category_id.eq(c))
                    .order(articles::id)
                    .limit(lim);
                q.cache()
                    .using(&self.cache)
                    .load::<Article>(&mut self.conn)
                    .unwrap();
            }
        }
    }

    /// A save next to the uncached UPDATEs it is measured against, in one loop:
    /// `db_update_pk` (one column, no RETURNING: the target is this plus two round
    /// trips) and `db_update_returning` (what Diesel's own `save_changes` runs: every
    /// column, RETURNING). Each works on its own rows.
    fn saves(&mut self) {
        self.cache_per_category(1..=10);
        let mut objs: Vec<Article> = articles::table
            .order(articles::id)
            .limit(400)
            .load(&mut self.conn)
            .unwrap();
        let (plain, saved) = objs.split_at_mut(200);
        // A plain GET takes turns with them: the round trip a save's budget is
        // counted in, measured on the machine as the saves see it.
        let mut redis = self.sized_value(RTT_KEYS[0], 0);
        let [update, returning, save, get] = timed_each(self.reps, |i, k| {
            let (conn, obj) = (&mut self.conn, i % 200);
            match k {
                0 => {
                    let id = self.ids[(400 + obj) % self.ids.len()];
                    diesel::update(articles::table.find(id))
                        .set(articles::views.eq(articles::views + 1))
                        .execute(conn)
                        .unwrap();
                }
                1 => {
                    plain[obj].views += 1;
                    diesel::update(&plain[obj])
                        .set(&plain[obj])
                        .get_result::<Article>(conn)
                        .unwrap();
                }
                2 => {
                    saved[obj].views += 1;
                    self.cache.save(conn, &saved[obj]).unwrap();
                }
                _ => plain_get(&mut redis, RTT_KEYS[0]),
            }
        });
        self.record("db_update_pk", update);
        self.record("db_update_returning", returning);
        self.record("save_with_invalidation", save);
        self.record("redis_get_rtt_saves", get);
        // The invalidation alone (one round trip), to tell the two halves of a save apart.
        let obj: Article = articles::table.first(&mut self.conn).unwrap();
        let t = timed(self.reps, |_| {
            self.cache
                .invalidate_obj::<diesel::pg::Pg, _>(&obj)
                .unwrap()
        });
        self.record("invalidate_row", t);
    }

    /// The consumer's work on the application's own saves (already invalidated
    /// by the save itself): per outbox row, batches of 50 applied by `apply_once`.
    fn feed_double_work(&mut self, outbox: &str, objs: &mut [Article]) {
        let mut per_row = Vec::new();
        for _ in 0..8 {
            for obj in objs.iter_mut() {
                obj.views += 1;
                self.cache.save(&mut self.conn, &*obj).unwrap();
            }
            let mut applied = 0;
            let t = micros(|| {
                applied = cacheops::feed::apply_once(&mut self.conn, &self.cache, outbox).unwrap()
            });
            per_row.push(t / applied.max(1) as f64);
        }
        self.record("feed_apply_own_row", percentiles(per_row));
    }

    /// `--feed`: the change feed's cost on a save (the same saves with and
    /// without the triggers, by turns in rounds) and its lag: with a consumer
    /// thread running, from a bare UPDATE's commit to its outbox row applied
    /// (invalidated and deleted), polled on a connection of its own.
    fn feed(&mut self) {
        const OUTBOX: &str = "cacheops_bench_feed";
        let mut objs: Vec<Article> = articles::table
            .order(articles::id)
            .limit(50)
            .load(&mut self.conn)
            .unwrap();
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for round in 0..8 {
            let on = round % 2 == 1;
            match on {
                true => drop(cacheops::feed::install(&mut self.conn, OUTBOX).unwrap()),
                false => drop(cacheops::feed::uninstall(&mut self.conn, OUTBOX).unwrap()),
            }
            for obj in &mut objs {
                obj.views += 1;
                let t = micros(|| drop(self.cache.save(&mut self.conn, &*obj).unwrap()));
                if on {
                    with.push(t)
                } else {
                    without.push(t)
                }
            }
        }
        self.record("save_feed_off", percentiles(without));
        self.record("save_feed_on", percentiles(with));
        cacheops::feed::install(&mut self.conn, OUTBOX).unwrap();
        self.feed_double_work(OUTBOX, &mut objs);
        let consumer = self.cache.start_change_feed(&database_url(), OUTBOX);
        let mut probe = PgConnection::establish(&database_url()).unwrap();
        let pending = format!("(SELECT count(*) FROM {OUTBOX}.outbox)");
        let lags: Vec<f64> = (0..self.reps.min(300))
            .map(|i| {
                let id = self.ids[i % self.ids.len()];
                diesel::update(articles::table.find(id))
                    .set(articles::views.eq(articles::views + 1))
                    .execute(&mut self.conn)
                    .unwrap();
                micros(|| {
                    while diesel::select(dsl::sql::<diesel::sql_types::BigInt>(&pending))
                        .get_result::<i64>(&mut probe)
                        .unwrap()
                        > 0
                    {}
                })
            })
            .collect();
        self.record("feed_lag", percentiles(lags));
        drop(consumer);
        cacheops::feed::uninstall(&mut self.conn, OUTBOX).unwrap();
        self.conn
            .batch_execute(&format!("DROP SCHEMA {OUTBOX} CASCADE"))
            .unwrap();
    }

    /// `--large`: hits of large results (1k and 50k rows of `wide_rows`) served
    /// automatically (a `CachedConnection`, raw rows), by `.cache()` (typed rows)
    /// and the same load uncached, taking turns in one loop. Fewer repetitions
    /// than the other phases: a 50k-row load takes tens of ms.
    fn large(&mut self) {
        self.conn.batch_execute(WIDE_SCHEMA).unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let mut auto = self.cached_connection(seen.clone());
        // Each path leaves the allocator in a state the next one sees: profile
        // one alone with `LARGE_ONLY=auto|cached|db` (the others then read 0).
        let only = std::env::var("LARGE_ONLY")
            .ok()
            .and_then(|v| ["auto", "cached", "db"].iter().position(|p| *p == v));
        for (rows, [auto_key, cached_key, db_key]) in LARGE {
            let load = || {
                wide_rows::table
                    .filter(wide_rows::id.le(rows))
                    .order(wide_rows::id)
            };
            let cached = |conn: &mut PgConnection| {
                let q = load().cache().using(&self.cache);
                q.load::<Wide>(conn).unwrap()
            };
            // Fills both entries, and checks that both paths read the same rows.
            let first = load().load::<Wide>(&mut auto).unwrap();
            assert_eq!(first, cached(&mut self.conn));
            seen.store(0, Ordering::Relaxed);
            let reps = (self.reps * 500 / rows as usize).clamp(10, 200);
            let [a, c, d] = timed_each(reps, |_, k| match k {
                _ if only.is_some_and(|o| o != k) => {}
                0 => drop(load().load::<Wide>(&mut auto).unwrap()),
                1 => drop(cached(&mut self.conn)),
                _ => drop(load().load::<Wide>(&mut self.conn).unwrap()),
            });
            assert_eq!(seen.load(Ordering::Relaxed), 0, "automatic hits ran SQL");
            self.record(auto_key, a);
            self.record(cached_key, c);
            self.record(db_key, d);
        }
    }

    /// A `CachedConnection` on the bench's schema and handle; `seen` counts the
    /// statements it sends to the database.
    fn cached_connection(&self, seen: Arc<AtomicUsize>) -> CachedConnection<PgConnection> {
        let mut conn = PgConnection::establish(&database_url()).unwrap();
        conn.batch_execute("SET search_path TO cacheops_bench")
            .unwrap();
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if matches!(event, InstrumentationEvent::StartQuery { .. }) {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        });
        CachedConnection::new(conn, self.cache.clone())
    }

    /// `--scaling`: the same save with 1k, 10k and 100k queries of the table cached;
    /// invalidation is O(condition schemes), so it must stay flat.
    fn scaling(&mut self) {
        let cats = self.cats.len();
        let per_cat = |n: usize| (n / cats) as i64;
        for (key, n) in [
            ("save_with_invalidation_1k", 1_000),
            ("save_with_invalidation_10k", 10_000),
            ("save_with_invalidation_100k", 100_000),
        ] {
            self.cache.invalidate_all().unwrap();
            self.cache_counts_per_category(per_cat(n));
            let t = self.time_saves(self.reps.min(1000));
            self.record(key, t);
        }
    }

    /// `per` small cached queries per category (counts, so that 100k of them fit).
    fn cache_counts_per_category(&mut self, per: i64) {
        for c in self.cats.clone() {
            for k in 0..per {
                let q = articles::table
                    .filter(articles::category_id.eq(c))
                    .filter(articles::views.lt(k as i32));
                q.cache().using(&self.cache).count(&mut self.conn).unwrap();
            }
        }
    }

    fn time_saves(&mut self, reps: usize) -> (f64, f64) {
        let n = reps.min(self.ids.len());
        let mut objs: Vec<Article> = articles::table
            .order(articles::id)
            .limit(n as i64)
            .load(&mut self.conn)
            .unwrap();
        timed(reps, |i| {
            let obj = &mut objs[i % n];
            obj.views += 1;
            self.cache.save(&mut self.conn, &*obj).unwrap();
        })
    }

    /// `--throughput`: cached reads per second with 1, 2, 4 and 8 threads, next to
    /// the same number of threads doing plain GETs of the hit payload's size.
    fn throughput(&mut self, local: Option<&Cacheops>) -> Vec<(usize, f64, f64)> {
        let hot: Vec<i32> = self.ids[..200.min(self.ids.len())].to_vec();
        let url = database_url();
        let mut probe = self.plain_redis().unwrap();
        let _: () = redis::cmd("PING").query(&mut probe).unwrap();
        let plain_gets = |_| {
            let mut redis = redis::Client::open(redis_url())
                .unwrap()
                .get_connection()
                .unwrap();
            move |_: usize| plain_get(&mut redis, RTT_KEYS[0])
        };
        [1, 2, 4, 8]
            .into_iter()
            .map(|threads| {
                if let Some(local) = local {
                    let reads = per_second(threads, |_| hot_reads(&url, local, &hot));
                    self.local_reads.push((threads, reads));
                }
                // Seconds of cached reads and of plain GETs take turns, three of
                // each, and each side reports its median second.
                let (mut cached, mut plain) = (Vec::new(), Vec::new());
                for _ in 0..3 {
                    cached.push(per_second(threads, |_| hot_reads(&url, &self.cache, &hot)));
                    plain.push(per_second(threads, plain_gets));
                }
                (threads, median(cached), median(plain))
            })
            .collect()
    }

    fn granularity(&mut self) -> usize {
        self.cache.invalidate_all().unwrap();
        let q = |c: i32| {
            articles::table
                .filter(
                    articles::category_id
                        .eq(c)
                        .and(articles::published.eq(true)),
                )
                .order(articles::id.desc())
                .limit(20)
        };
        for c in self.cats.clone() {
            q(c).cache()
                .using(&self.cache)
                .load::<Article>(&mut self.conn)
                .unwrap();
        }
        let mut a: Article = q(self.cats[0]).first(&mut self.conn).unwrap();
        a.views += 1;
        self.cache.save(&mut self.conn, &a).unwrap();
        self.queries.store(0, Ordering::Relaxed);
        for c in self.cats.clone() {
            q(c).cache()
                .using(&self.cache)
                .load::<Article>(&mut self.conn)
                .unwrap();
        }
        self.queries.load(Ordering::Relaxed)
    }

    /// A handle with a local tier on the same Redis and prefix, once it serves.
    fn local_handle(&self) -> Cacheops {
        let config = Config::builder()
            .url(redis_url())
            .prefix("cacheops_bench")
            .local_tier(LocalTier::new(256 << 20))
            .build();
        let local = Cacheops::new(config).unwrap();
        while !local.stats().local_ready {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        local
    }

    /// `--local`: hits served by the local tier, and how long news from another
    /// handle (standing for another process) takes to drop a copy.
    fn local_tier(&mut self) -> Cacheops {
        let local = self.local_handle();
        let (reps, n_cats) = (self.reps, self.cats.len());
        let hot: Vec<i32> = self.ids[..200.min(self.ids.len())].to_vec();
        let get = |conn: &mut PgConnection, id: i32| {
            let q = articles::table.find(id);
            q.cache().using(&local).get_result::<Article>(conn).unwrap();
        };
        hot.iter().for_each(|id| get(&mut self.conn, *id));
        let t = timed(reps, |i| get(&mut self.conn, hot[i % hot.len()]));
        self.record("local_hit_get_pk", t);
        let mut fetch = |i: usize| {
            let q = self.fetch20(i);
            q.cache()
                .using(&local)
                .load::<Article>(&mut self.conn)
                .unwrap();
        };
        (0..n_cats).for_each(&mut fetch);
        let t = timed(reps, fetch);
        self.record("local_hit_fetch20", t);
        let mut count = |i: usize| {
            let q = articles::table.filter(articles::category_id.eq(self.cat(i)));
            q.cache().using(&local).count(&mut self.conn).unwrap();
        };
        (0..n_cats).for_each(&mut count);
        let t = timed(reps, count);
        self.record("local_hit_count", t);
        let t = self.news_lag(&local, hot[0]);
        self.record("local_news_lag", t);
        local
    }

    /// From a save through `self.cache` returning until `local` stops serving its
    /// copy of the saved row (it polls with local reads, ~1 µs each, yielding in
    /// between).
    fn news_lag(&mut self, local: &Cacheops, id: i32) -> (f64, f64) {
        let mut obj: Article = articles::table.find(id).first(&mut self.conn).unwrap();
        let mut lags = Vec::new();
        for _ in 0..self.reps.min(500) {
            let q = || articles::table.find(id);
            q().cache()
                .using(local)
                .get_result::<Article>(&mut self.conn)
                .unwrap();
            obj.views += 1;
            self.cache.save(&mut self.conn, &obj).unwrap();
            let start = Instant::now();
            loop {
                let before = local.stats().local_hits;
                q().cache()
                    .using(local)
                    .get_result::<Article>(&mut self.conn)
                    .unwrap();
                if local.stats().local_hits == before {
                    break;
                }
                // A busy poll would keep the listener thread off this core.
                std::thread::yield_now();
            }
            lags.push(start.elapsed().as_secs_f64() * 1e6);
        }
        percentiles(lags)
    }

    /// `--cpu`: CPU time (this thread's, user + system, from /proc) per cached hit,
    /// plain GET and plain MGET of the same keys, and per fetch20 hit, GET of its
    /// payload's size and decode of that payload, 50k of each in turn. On this
    /// 2-core machine throughput is CPU-bound, so these ratios bound it.
    fn cpu_per_op(&mut self) {
        let hot = self.ids[..200].to_vec();
        let mut redis = self.plain_redis().unwrap();
        let page: Vec<Article> = self.fetch20(0).load(&mut self.conn).unwrap();
        let payload = rmp_serde::to_vec(&page).unwrap();
        let mut redis20 = self.sized_value(RTT_FETCH20, payload.len());
        let n = 50_000;
        let ops = [
            "hit",
            "get",
            "mget",
            "hit_fetch20",
            "get_fetch20",
            "decode_fetch20",
        ];
        for &what in ops.iter().chain(&ops) {
            let (cpu0, wall0) = (thread_cpu_micros(), Instant::now());
            for i in 0..n {
                match what {
                    "hit" => {
                        let q = articles::table.find(hot[i % hot.len()]);
                        q.cache()
                            .using(&self.cache)
                            .get_result::<Article>(&mut self.conn)
                            .unwrap();
                    }
                    "get" => plain_get(&mut redis, RTT_KEYS[0]),
                    "mget" => plain_mget(&mut redis),
                    "hit_fetch20" => {
                        self.fetch20(i)
                            .cache()
                            .using(&self.cache)
                            .load::<Article>(&mut self.conn)
                            .unwrap();
                    }
                    "get_fetch20" => plain_get(&mut redis20, RTT_FETCH20),
                    // What a fetch20 hit does that a GET does not: decode 20 rows.
                    _ => drop(rmp_serde::from_slice::<Vec<Article>>(&payload).unwrap()),
                }
            }
            let cpu = (thread_cpu_micros() - cpu0) / n as f64;
            let wall = wall0.elapsed().as_secs_f64() * 1e6 / n as f64;
            println!("{what}: cpu {cpu:.2} µs/op, wall {wall:.2} µs/op");
        }
    }

    /// The async section (feature `async`): the hit's latency next to async
    /// GET/MGET (recorded), and reads/s of many tasks next to plain GETs and
    /// MGETs (and through `local`'s local tier, if given).
    #[cfg(feature = "async")]
    fn nonblocking(&mut self, local: Option<&Cacheops>) -> Vec<bench_report::AsyncReads> {
        drop(self.plain_redis().unwrap()); // the GET's and MGET's values
        let hot = &self.ids[..200.min(self.ids.len())];
        let figures = bench_async::run(&self.cache, local, hot, self.reps).unwrap();
        for (key, t) in figures.latency {
            self.record(key, t);
        }
        self.drop_rtt_keys().unwrap();
        figures.reads
    }

    /// Deletes the keys the plain GETs and MGETs read.
    fn drop_rtt_keys(&mut self) -> Result<(), Box<dyn Error>> {
        let mut redis = self.plain_redis()?;
        redis::cmd("DEL")
            .arg(&RTT_KEYS[..])
            .arg(RTT_FETCH20)
            .arg(RTT_COUNT)
            .exec(&mut redis)?;
        Ok(())
    }
}

/// One thread's cached reads by primary key of the `hot` ids, through `cache`.
fn hot_reads(db: &str, cache: &Cacheops, hot: &[i32]) -> impl FnMut(usize) + Send {
    let mut conn = PgConnection::establish(db).unwrap();
    conn.batch_execute("SET search_path TO cacheops_bench")
        .unwrap();
    let (cache, hot) = (cache.clone(), hot.to_vec());
    move |i: usize| {
        let q = articles::table.find(hot[i % hot.len()]);
        q.cache()
            .using(&cache)
            .get_result::<Article>(&mut conn)
            .unwrap();
    }
}

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1/test".into())
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Operations per second of `threads` threads, each running the closure `make`
/// builds for it, for one second.
fn per_second<F>(threads: usize, make: impl Fn(usize) -> F) -> f64
where
    F: FnMut(usize) + Send,
{
    let stop = std::sync::atomic::AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let workers: Vec<F> = (0..threads).map(&make).collect();
    std::thread::scope(|scope| {
        for mut work in workers {
            let (stop, done) = (&stop, &done);
            scope.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    work(i);
                    i += 1;
                }
                done.fetch_add(i, Ordering::Relaxed);
            });
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
    });
    done.load(Ordering::Relaxed) as f64
}

fn plain_get(redis: &mut redis::Connection, key: &str) {
    let _: Vec<u8> = redis::cmd("GET").arg(key).query(redis).unwrap();
}

/// What a hit sends: an MGET of a value and two stamps.
fn plain_mget(redis: &mut redis::Connection) {
    let _: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&RTT_KEYS[..]).query(redis).unwrap();
}

/// This thread's CPU time (user + system) in µs, from `/proc/thread-self/stat`
/// (clock ticks of 10 ms: meaningful over seconds).
fn thread_cpu_micros() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let after_name = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks * 10_000.0
}

const RTT_FETCH20: &str = "cacheops_bench:rtt:f20";
const RTT_COUNT: &str = "cacheops_bench:rtt:cnt";
const RTT_KEYS: [&str; 3] = [
    "cacheops_bench:rtt:v",
    "cacheops_bench:rtt:s1",
    "cacheops_bench:rtt:s2",
];

fn main() -> Result<(), Box<dyn Error>> {
    let json_only = std::env::args().any(|a| a == "--json");
    let mut bench = Bench::setup()?;
    if std::env::args().any(|a| a == "--saves-only") {
        // For tracing the save path: `strace -f -T ... bench --saves-only`.
        bench.saves();
        println!("{:?}", bench.figures);
        return Ok(());
    }
    if std::env::args().any(|a| a == "--throughput-only") {
        // For profiling reads under threads: `perf record ... bench --throughput-only`.
        for (threads, cached, plain) in bench.throughput(None) {
            println!("threads {threads}: cached reads {cached:>8.0}/s, plain GETs {plain:>8.0}/s");
        }
        return Ok(());
    }
    #[cfg(feature = "async")]
    if std::env::args().any(|a| a == "--async-only") {
        // For profiling the async path: `perf record ... bench --async-only`.
        let local = match std::env::args().any(|a| a == "--local") {
            true => Some(bench.local_handle()),
            false => None,
        };
        let reads = bench.nonblocking(local.as_ref());
        println!("{:?}", bench.figures);
        print_async_reads(&reads);
        return Ok(());
    }
    if std::env::args().any(|a| a == "--feed-only") {
        bench.feed();
        for (key, p50, p99) in &bench.figures {
            println!("{key:<24} {p50:>10.1} {p99:>10.1}");
        }
        return Ok(());
    }
    if std::env::args().any(|a| a == "--large") {
        // For profiling large hits: `perf record ... bench --large`.
        bench.large();
        bench.cache.invalidate_all()?;
        for (key, p50, p99) in &bench.figures {
            println!("{key:<24} {p50:>10.1} {p99:>10.1}");
        }
        return Ok(());
    }
    bench.gets();
    if std::env::args().any(|a| a == "--cpu") {
        bench.cpu_per_op();
        return Ok(());
    }
    if std::env::args().any(|a| a == "--gets-only") {
        // For profiling the hit path: `perf record ... bench --gets-only`.
        println!("{:?}", bench.figures);
        return Ok(());
    }
    bench.fetches_and_counts();
    bench.saves();
    let after_one_save = bench.granularity();
    bench.drop_rtt_keys()?;
    bench.large();
    if std::env::args().any(|a| a == "--scaling") {
        bench.scaling();
    }
    if std::env::args().any(|a| a == "--feed") {
        bench.feed();
    }
    let local = match std::env::args().any(|a| a == "--local") {
        true => Some(bench.local_tier()),
        false => None,
    };
    let throughput = match std::env::args().any(|a| a == "--throughput") {
        true => bench.throughput(local.as_ref()),
        false => Vec::new(),
    };
    #[cfg(feature = "async")]
    let async_reads = bench.nonblocking(local.as_ref());
    #[cfg(not(feature = "async"))]
    let async_reads = Vec::new();
    bench.cache.invalidate_all()?;
    if !json_only {
        println!("{:<24} {:>10} {:>10}", "op (µs)", "p50", "p99");
        for (key, p50, p99) in &bench.figures {
            println!("{key:<24} {p50:>10.1} {p99:>10.1}");
        }
        println!("{:<24} {after_one_save:>10}", "queries_after_one_save");
        for (threads, cached, plain) in &throughput {
            let share = 100.0 * cached / plain;
            println!("threads {threads}: cached reads {cached:>8.0}/s, plain GETs {plain:>8.0}/s ({share:.0}%)");
        }
        for (threads, reads) in &bench.local_reads {
            println!("threads {threads}: local-tier reads {reads:>8.0}/s");
        }
        print_async_reads(&async_reads);
    }
    let mut fields: Vec<String> = bench
        .figures
        .iter()
        .map(|(k, p50, _)| format!("\"{k}\": {p50:.1}"))
        .collect();
    fields.push(format!("\"queries_after_one_save\": {after_one_save}"));
    fields.push(format!("\"categories\": {}", bench.cats.len()));
    for (threads, cached, plain) in &throughput {
        fields.push(format!("\"cached_reads_per_s_{threads}t\": {cached:.0}, \"plain_gets_per_s_{threads}t\": {plain:.0}"));
    }
    for (threads, reads) in &bench.local_reads {
        fields.push(format!("\"local_reads_per_s_{threads}t\": {reads:.0}"));
    }
    for r in &async_reads {
        let t = r.tasks;
        fields.push(format!("\"cached_async_reads_per_s_{t}tasks\": {:.0}, \"checkout_async_reads_per_s_{t}tasks\": {:.0}, \"plain_async_gets_per_s_{t}tasks\": {:.0}, \"plain_async_mgets_per_s_{t}tasks\": {:.0}", r.lazy, r.checkout, r.gets, r.mgets));
        if let Some(local) = r.local {
            fields.push(format!("\"local_async_reads_per_s_{t}tasks\": {local:.0}"));
        }
    }
    println!("{{{}}}", fields.join(", "));
    let peer = match std::env::args().any(|a| a == "--compare") {
        true => {
            let mut ours: Vec<(String, f64)> = bench
                .figures
                .iter()
                .map(|(k, p50, _)| (k.to_string(), *p50))
                .collect();
            ours.push(("queries_after_one_save".into(), after_one_save as f64));
            compare(&ours)?
        }
        false => Vec::new(),
    };
    let ours: Vec<(String, f64, f64)> = bench
        .figures
        .iter()
        .map(|(k, p50, p99)| (k.to_string(), *p50, *p99))
        .collect();
    let report = bench_report::Report {
        ours: &ours,
        peer: &peer,
        throughput: &throughput,
        local_reads: &bench.local_reads,
        async_reads: &async_reads,
    };
    if !json_only {
        for (target, measured, holds) in report.targets() {
            let verdict = if holds { "holds" } else { "DOES NOT HOLD" };
            println!("target {target}: {measured}: {verdict}");
        }
    }
    if let Some(dir) = arg_value("--report") {
        std::fs::create_dir_all(&dir)?;
        let markdown = format!("{}\n{}", report.markdown(), report.targets_markdown());
        std::fs::write(format!("{dir}/bench.md"), markdown)?;
        report.chart(&format!("{dir}/bench.png"))?;
        println!("report: {dir}/bench.md, {dir}/bench.png");
    }
    Ok(())
}

/// The async reads/s, one line per task count.
fn print_async_reads(reads: &[bench_report::AsyncReads]) {
    for r in reads {
        let share = |x: f64| 100.0 * x / r.gets;
        let local = r.local.map_or(String::new(), |l| {
            format!(", local tier {l:.0}/s ({:.0}%)", share(l))
        });
        println!(
            "tasks {}: cached async reads {:.0}/s ({:.0}% of plain async GETs {:.0}/s), holding a connection {:.0}/s ({:.0}%), plain MGETs {:.0}/s ({:.0}%){local}",
            r.tasks, r.lazy, share(r.lazy), r.gets, r.checkout, share(r.checkout), r.mgets, share(r.mgets)
        );
    }
}

/// The value following `flag` on the command line.
fn arg_value(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).cloned()
}
/// `--compare`: runs the peer workload (`../shared/peer-bench/run`, django-cacheops
/// on the same Redis and PostgreSQL), prints both sides with ratios and returns
/// the peer's figures.
fn compare(ours: &[(String, f64)]) -> Result<Vec<(String, f64)>, Box<dyn Error>> {
    let script = std::env::var("PEER_BENCH").unwrap_or_else(|_| "../shared/peer-bench/run".into());
    let out = std::process::Command::new(&script).output()?;
    if !out.status.success() {
        return Err(format!("{script} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let text = String::from_utf8(out.stdout)?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or("the peer printed no JSON")?;
    let peer = parse_flat_json(line);
    println!(
        "{:<26} {:>12} {:>16} {:>10}",
        "op (median µs)", "cacheops", "django-cacheops", "peer/ours"
    );
    for (key, value) in ours {
        let Some(theirs) = peer.iter().find(|(k, _)| k == key).map(|(_, v)| *v) else {
            continue;
        };
        println!(
            "{key:<26} {value:>12.1} {theirs:>16.1} {:>9.1}x",
            theirs / value
        );
    }
    println!("peer: {line}");
    Ok(peer)
}

/// `{"a": 1.5, "b": 2}` → pairs; enough for the peer's one flat line of numbers.
fn parse_flat_json(line: &str) -> Vec<(String, f64)> {
    line.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once(':')?;
            Some((
                k.trim().trim_matches('"').to_string(),
                v.trim().parse().ok()?,
            ))
        })
        .collect()
}
