//! Proof under load: readers and writers on PostgreSQL and Redis, every read
//! checked against the writes that had returned before it started.
//!
//! ```text
//! cargo run --release --example stress -- --seconds 60 [--readers 4 --writers 2] [--redis-restart] [--local]
//! ```
//!
//! Writers, each on its own `CachedConnection`, save articles through the helper,
//! update them with plain Diesel (single rows and whole categories, moving rows
//! between categories), insert and delete, some inside transactions that commit
//! and some that roll back (Diesel's, and raw `BEGIN` ... `COMMIT`/`ROLLBACK` sent
//! as SQL). A write is entered into the shared "truth" only once it
//! has returned (committed and invalidated). Readers read through the cache by
//! primary key, by category, and counts; a read is stale when it shows an article
//! older than the truth at the moment the read started, or misses one that the
//! truth had in that category and that did not change while the read ran. After
//! the writers stop, every category and article is read through the cache once more
//! and compared with the database. The last line is one JSON object; the exit
//! status is 1 if either stale count is not 0.
//!
//! `--redis-restart` runs against a private redis-server on a spare port that is
//! stopped (saving its data) and restarted every two seconds, with
//! degrade-on-failure: no error may reach the program (any would abort it), and
//! the entries it kept across an outage must never be served stale.
//!
//! `--local` puts the local tier (64 MiB) in front of Redis: readers are served
//! from process memory, and a write must drop the copies it makes stale before it
//! returns.
#![allow(missing_docs, unreachable_pub, clippy::unwrap_used)] // a load program: any failure aborts the run

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/private_redis.rs"]
mod private_redis;
use private_redis::PrivateRedis;

use cacheops::store::LocalTier;
use cacheops::{Cacheable, CachedConnection, CachedQueryDsl, Cacheops, Config, OptionalExtension};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    articles (id) {
        id -> Integer,
        category_id -> Integer,
        title -> Text,
        version -> Integer,
    }
}

#[derive(
    Debug, Clone, PartialEq, Queryable, Identifiable, AsChangeset, Cacheable, Serialize, Deserialize,
)]
#[diesel(table_name = articles)]
#[cacheops(app = "stress", ops = "all", timeout = 600)]
pub struct Article {
    id: i32,
    category_id: i32,
    title: String,
    version: i32,
}

const CATEGORIES: i32 = 8;
const ARTICLES: i32 = 160;

/// Options of one run.
#[derive(Debug, Clone)]
pub struct Args {
    pub seconds: u64,
    pub readers: usize,
    pub writers: usize,
    /// Run against a private redis-server that is stopped and restarted (keeping
    /// its data) every couple of seconds, with degrade-on-failure.
    pub redis_restart: bool,
    /// A local tier in front of Redis.
    pub local: bool,
}

impl Args {
    fn parse() -> Args {
        let mut args = Args {
            seconds: 5,
            readers: 4,
            writers: 2,
            redis_restart: std::env::args().any(|a| a == "--redis-restart"),
            local: std::env::args().any(|a| a == "--local"),
        };
        let words: Vec<String> = std::env::args().collect();
        for pair in words.windows(2) {
            let value = || pair[1].parse().unwrap_or(0);
            match pair[0].as_str() {
                "--seconds" => args.seconds = value() as u64,
                "--readers" => args.readers = value(),
                "--writers" => args.writers = value(),
                _ => {}
            }
        }
        args
    }
}

/// The figures of a run.
#[derive(Debug, Default)]
pub struct Report {
    pub restarts: u64,
    pub local_hits: u64,
    pub store_errors: u64,
    pub reads: u64,
    pub writes: u64,
    pub hits: u64,
    pub stale_reads: u64,
    pub stale_after_quiesce: u64,
}

/// What every write that has returned left in the database: id → (category, version).
#[derive(Default)]
struct Truth {
    rows: Mutex<HashMap<i32, (i32, i32)>>,
    /// Deleted ids (ids are never reused): a write that returned before a delete
    /// but is entered after it must not bring the row back.
    deleted: Mutex<std::collections::HashSet<i32>>,
    /// Writes begun and finished: a read during which no write was under way saw
    /// a quiet database and must equal the truth exactly.
    begun: AtomicU64,
    finished: AtomicU64,
}

impl Truth {
    /// The truth now, and whether no write is under way.
    ///
    /// `finished` is read before the rows and `begun` after them: equal, no write
    /// was under way from before the copy until after it, so the copy is complete.
    fn snapshot(&self) -> (HashMap<i32, (i32, i32)>, Option<u64>) {
        let finished = self.finished.load(Ordering::SeqCst);
        let rows = self.rows.lock().unwrap().clone();
        let begun = self.begun.load(Ordering::SeqCst);
        (rows, (finished == begun).then_some(begun))
    }

    /// Whether the database stayed quiet since `snapshot` said it was.
    fn still_quiet(&self, since: Option<u64>) -> bool {
        since == Some(self.begun.load(Ordering::SeqCst))
    }

    /// Enters what a write that has returned left. Writers enter in any order, so
    /// a row only moves forward: every write bumps its version, and a deleted id
    /// stays deleted.
    fn enter(&self, rows: &[Article], deleted: &[i32]) {
        let mut truth = self.rows.lock().unwrap();
        let mut gone = self.deleted.lock().unwrap();
        gone.extend(deleted);
        for id in deleted {
            truth.remove(id);
        }
        for a in rows.iter().filter(|a| !gone.contains(&a.id)) {
            let newer = truth.get(&a.id).is_none_or(|(_, v)| a.version > *v);
            if newer {
                truth.insert(a.id, (a.category_id, a.version));
            }
        }
    }
}

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1/test".into())
}

fn connect(cache: &Cacheops) -> CachedConnection<PgConnection> {
    let mut conn = PgConnection::establish(&database_url()).unwrap();
    conn.batch_execute("SET search_path TO cacheops_stress")
        .unwrap();
    CachedConnection::new(conn, cache.clone())
}

fn setup(cache: &Cacheops, truth: &Truth) {
    let mut conn = PgConnection::establish(&database_url()).unwrap();
    conn.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS cacheops_stress CASCADE; CREATE SCHEMA cacheops_stress;
         SET search_path TO cacheops_stress;
         CREATE TABLE articles (id SERIAL PRIMARY KEY, category_id INT NOT NULL, title TEXT NOT NULL, version INT NOT NULL);
         INSERT INTO articles (category_id, title, version)
           SELECT i % {CATEGORIES}, 'a' || i, 0 FROM generate_series(1, {ARTICLES}) i;"
    ))
    .unwrap();
    cache.invalidate_all().unwrap();
    let rows: Vec<Article> = articles::table.load(&mut conn).unwrap();
    truth.enter(&rows, &[]);
}

/// A small deterministic generator, so runs need no extra crate.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, n: i32) -> i32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as i32
    }
}

fn write_once(
    conn: &mut CachedConnection<PgConnection>,
    cache: &Cacheops,
    truth: &Truth,
    dice: &mut Dice,
) {
    truth.begun.fetch_add(1, Ordering::SeqCst);
    write_some(conn, cache, truth, dice);
    truth.finished.fetch_add(1, Ordering::SeqCst);
}

/// A plain Diesel update of one row, moved to category `to`, version one up.
fn move_row(
    conn: &mut CachedConnection<PgConnection>,
    id: i32,
    to: i32,
) -> QueryResult<Vec<Article>> {
    diesel::update(articles::table.find(id))
        .set((
            articles::version.eq(articles::version + 1),
            articles::category_id.eq(to),
        ))
        .get_results(conn)
}

fn write_some(
    conn: &mut CachedConnection<PgConnection>,
    cache: &Cacheops,
    truth: &Truth,
    dice: &mut Dice,
) {
    let id = 1 + dice.roll(ARTICLES);
    let to = dice.roll(CATEGORIES);
    match dice.roll(7) {
        0 => {
            // Through the helper (granular), on a row read FOR UPDATE in the same
            // transaction: a save of a row read earlier could lose another writer's
            // update and move the version backwards, which the truth (versions only
            // move forward) would then report as a stale read of the cache.
            let saved = conn.transaction(|conn| {
                let found = articles::table.find(id).for_update().first::<Article>(conn);
                let Some(mut a) = diesel::OptionalExtension::optional(found)? else {
                    return Ok(None);
                };
                a.version += 1;
                a.category_id = to;
                cache.save(conn, &a).map(Some)
            });
            if let Some(saved) = saved.unwrap() {
                truth.enter(&[saved], &[]);
            }
        }
        1 => {
            // Plain Diesel, one row, moved between categories.
            let rows = move_row(conn, id, to).unwrap();
            truth.enter(&rows, &[]);
        }
        2 => {
            // Plain Diesel mass update of a whole category.
            let rows: Vec<Article> =
                diesel::update(articles::table.filter(articles::category_id.eq(to)))
                    .set(articles::version.eq(articles::version + 1))
                    .get_results(conn)
                    .unwrap();
            truth.enter(&rows, &[]);
        }
        3 | 4 => {
            // A transaction that commits or rolls back.
            let commit = dice.roll(2) == 0;
            let result = conn.transaction(|conn| {
                let rows = move_row(conn, id, to)?;
                match commit {
                    true => Ok(rows),
                    false => Err(diesel::result::Error::RollbackTransaction),
                }
            });
            if let Ok(rows) = result {
                truth.enter(&rows, &[]);
            }
        }
        5 => {
            // A transaction begun and ended by raw SQL, committed or rolled back:
            // its write must wait for the raw COMMIT, and what a reader in another
            // connection caches meanwhile must not survive it.
            let commit = dice.roll(2) == 0;
            conn.batch_execute("BEGIN").unwrap();
            let rows = move_row(conn, id, to).unwrap();
            conn.batch_execute(if commit { "COMMIT" } else { "ROLLBACK" })
                .unwrap();
            if commit {
                truth.enter(&rows, &[]);
            }
        }
        _ => {
            // Delete a row and insert it back under a new id, plain Diesel.
            let gone = diesel::delete(articles::table.find(id))
                .execute(conn)
                .unwrap();
            if gone == 1 {
                truth.enter(&[], &[id]);
                let back: Article = diesel::insert_into(articles::table)
                    .values((
                        articles::category_id.eq(to),
                        articles::title.eq("again"),
                        articles::version.eq(0),
                    ))
                    .get_result(conn)
                    .unwrap();
                truth.enter(&[back], &[]);
            }
        }
    }
}

/// Reads once through the cache; true if the read was stale.
fn read_once(
    conn: &mut CachedConnection<PgConnection>,
    cache: &Cacheops,
    truth: &Truth,
    dice: &mut Dice,
) -> bool {
    let (before, epoch) = truth.snapshot();
    let c = dice.roll(CATEGORIES);
    match dice.roll(3) {
        0 => {
            let ids: Vec<i32> = before.keys().copied().collect();
            let id = ids[dice.roll(ids.len() as i32) as usize];
            let row = articles::table
                .find(id)
                .cache()
                .using(cache)
                .get_result::<Article>(conn)
                .optional()
                .unwrap();
            let unchanged = truth.still_quiet(epoch);
            let stale = match &row {
                Some(a) => {
                    a.version < before[&id].1 || (unchanged && a.category_id != before[&id].0)
                }
                None => unchanged,
            };
            if stale && std::env::var("STRESS_DEBUG").is_ok() {
                eprintln!(
                    "pk {id}: got {row:?}, truth {:?}, quiet {unchanged}",
                    before[&id]
                );
            }
            stale
        }
        1 => {
            let rows = articles::table
                .filter(articles::category_id.eq(c))
                .order(articles::id)
                .cache()
                .using(cache)
                .load::<Article>(conn)
                .unwrap();
            let unchanged = truth.still_quiet(epoch);
            let stale = list_is_stale(&rows, &before, |cat| cat == c, unchanged);
            if stale && std::env::var("STRESS_DEBUG").is_ok() {
                let older: Vec<_> = rows
                    .iter()
                    .filter(|a| before.get(&a.id).is_some_and(|(_, v)| a.version < *v))
                    .map(|a| (a.id, a.version, before[&a.id]))
                    .collect();
                let expected = before.values().filter(|(cat, _)| *cat == c).count();
                eprintln!(
                    "cat {c}: {} rows, expected {expected}, quiet {unchanged}, older {older:?}",
                    rows.len()
                );
            }
            stale
        }
        _ => {
            let n = articles::table
                .filter(articles::category_id.eq_any(vec![c, (c + 1) % CATEGORIES]))
                .cache()
                .using(cache)
                .count(conn)
                .unwrap();
            let unchanged = truth.still_quiet(epoch);
            let expected = before
                .values()
                .filter(|(cat, _)| *cat == c || *cat == (c + 1) % CATEGORIES)
                .count();
            unchanged && n as usize != expected
        }
    }
}

/// A list is stale if it holds an article older than the truth, or (when nothing
/// changed during the read) differs from the truth at all.
fn list_is_stale(
    rows: &[Article],
    before: &HashMap<i32, (i32, i32)>,
    wanted: impl Fn(i32) -> bool,
    unchanged: bool,
) -> bool {
    let older = rows
        .iter()
        .any(|a| before.get(&a.id).is_some_and(|(_, v)| a.version < *v));
    let expected = before.iter().filter(|(_, (cat, _))| wanted(*cat)).count();
    older || (unchanged && rows.len() != expected)
}

/// After the writers stopped: every category and article, through the cache, must
/// equal the database.
fn quiesce(cache: &Cacheops) -> u64 {
    let mut conn = connect(cache);
    let mut stale = 0;
    for c in 0..CATEGORIES {
        let q = || {
            articles::table
                .filter(articles::category_id.eq(c))
                .order(articles::id)
        };
        let cached = q().cache().using(cache).load::<Article>(&mut conn).unwrap();
        let fresh = q().load::<Article>(conn.inner()).unwrap();
        stale += u64::from(cached != fresh);
    }
    let ids: Vec<i32> = articles::table
        .select(articles::id)
        .load(conn.inner())
        .unwrap();
    for id in ids {
        let cached = articles::table
            .find(id)
            .cache()
            .using(cache)
            .get_result::<Article>(&mut conn)
            .unwrap();
        let fresh = articles::table
            .find(id)
            .first::<Article>(conn.inner())
            .unwrap();
        stale += u64::from(cached != fresh);
    }
    stale
}

/// One run; usable from a test.
pub fn run(args: &Args) -> Report {
    let mut private = args.redis_restart.then(PrivateRedis::start);
    let redis = match &private {
        Some(server) => server.url(),
        None => std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    };
    let mut config = Config::builder()
        .url(redis)
        .prefix("cacheops_stress")
        .degrade_on_failure(args.redis_restart)
        .redis_timeout(Duration::from_millis(200));
    if args.local {
        config = config.local_tier(LocalTier::new(64 << 20));
    }
    let cache = Cacheops::new(config.build()).unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while args.local && !cache.stats().local_ready && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut restarts = 0;
    let truth = Arc::new(Truth::default());
    setup(&cache, &truth);
    let stop = AtomicBool::new(false);
    // After each restart the writers pause, so that whatever the outage left in
    // Redis is exposed to the readers instead of being swept by the next write.
    let paused = AtomicBool::new(false);
    let (reads, writes, stale) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|scope| {
        for w in 0..args.writers {
            let (cache, truth, stop, writes, paused) = (&cache, &truth, &stop, &writes, &paused);
            scope.spawn(move || {
                let mut conn = connect(cache);
                let mut dice = Dice(0x9e37_79b9 + w as u64);
                while !stop.load(Ordering::Relaxed) {
                    if paused.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    write_once(&mut conn, cache, truth, &mut dice);
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for r in 0..args.readers {
            let (cache, truth, stop, reads, stale) = (&cache, &truth, &stop, &reads, &stale);
            scope.spawn(move || {
                let mut conn = connect(cache);
                let mut dice = Dice(0x51_7cc1 + r as u64);
                while !stop.load(Ordering::Relaxed) {
                    if read_once(&mut conn, cache, truth, &mut dice) {
                        stale.fetch_add(1, Ordering::Relaxed);
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let until = Instant::now() + Duration::from_secs(args.seconds);
        while Instant::now() < until {
            match private.as_mut() {
                Some(server) => {
                    std::thread::sleep(Duration::from_millis(1500));
                    server.stop_keeping_data();
                    std::thread::sleep(Duration::from_millis(700));
                    server.restart();
                    restarts += 1;
                    paused.store(true, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1500));
                    paused.store(false, Ordering::Relaxed);
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    if private.is_some() {
        // Past the store's reconnect back-off, so that the final comparison reads
        // through Redis again (and not through the degraded path).
        std::thread::sleep(Duration::from_millis(1500));
    }
    let report = Report {
        restarts,
        store_errors: cache.stats().errors,
        reads: reads.load(Ordering::Relaxed),
        writes: writes.load(Ordering::Relaxed),
        hits: cache.stats().hits,
        local_hits: cache.stats().local_hits,
        stale_reads: stale.load(Ordering::Relaxed),
        stale_after_quiesce: quiesce(&cache),
    };
    if private.is_none() {
        cache.invalidate_all().unwrap();
    }
    report
}

#[allow(dead_code)]
fn main() {
    let args = Args::parse();
    let r = run(&args);
    println!(
        "{{\"seconds\": {}, \"readers\": {}, \"writers\": {}, \"local\": {}, \"redis_restarts\": {}, \"store_errors_degraded\": {}, \"reads\": {}, \"writes\": {}, \"hits\": {}, \"local_hits\": {}, \"stale_reads\": {}, \"stale_after_quiesce\": {}}}",
        args.seconds, args.readers, args.writers, args.local, r.restarts, r.store_errors, r.reads, r.writes, r.hits, r.local_hits, r.stale_reads, r.stale_after_quiesce
    );
    if r.stale_reads != 0 || r.stale_after_quiesce != 0 {
        std::process::exit(1);
    }
}
