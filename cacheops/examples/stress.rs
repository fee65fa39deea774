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
//!
//! `--async` (feature `async`) runs the readers and writers as tokio tasks, many on
//! two worker threads, each on an `AsyncCachedConnection`, with the same operations
//! (written once for both paths) and the same checks: e.g. `--async --readers 64
//! --writers 8`.
#![allow(missing_docs, unreachable_pub, clippy::unwrap_used)] // a load program: any failure aborts the run

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/outside_writes.rs"]
mod outside_writes;
#[path = "support/private_redis.rs"]
mod private_redis;
use outside_writes::OutsideWrites;
use private_redis::PrivateRedis;

#[cfg(feature = "async")]
use cacheops::connection::AsyncCachedConnection;
use cacheops::store::LocalTier;
use cacheops::{Cacheable, CachedConnection, Cacheops, Config, OptionalExtension};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
#[cfg(feature = "async")]
use diesel_async::AsyncPgConnection;
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
    Debug,
    Clone,
    PartialEq,
    Queryable,
    QueryableByName,
    Identifiable,
    AsChangeset,
    Cacheable,
    Serialize,
    Deserialize,
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
/// Authors 1..=AUTHORS are deleted (their articles by cascade) by outside writers;
/// rows cacheops' writers insert belong to author 0, never deleted, so that no
/// foreign key check of theirs meets an author being deleted and put back.
const AUTHORS: i32 = 8;
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
    /// Writers on bare connections (no cacheops at all), moving rows and deleting
    /// whole categories by cascade: seen through the change feed only.
    pub outside_writers: usize,
    /// Stop the change feed's consumer and start it again every second or so.
    pub restart_feed: bool,
    /// Readers and writers as tokio tasks (two worker threads) on
    /// `AsyncCachedConnection`s, reading through the async store.
    pub asynchronous: bool,
}

impl Args {
    fn parse() -> Args {
        let mut args = Args {
            seconds: 5,
            readers: 4,
            writers: 2,
            redis_restart: std::env::args().any(|a| a == "--redis-restart"),
            local: std::env::args().any(|a| a == "--local"),
            outside_writers: 0,
            restart_feed: std::env::args().any(|a| a == "--restart-feed"),
            asynchronous: std::env::args().any(|a| a == "--async"),
        };
        let words: Vec<String> = std::env::args().collect();
        for pair in words.windows(2) {
            let value = || pair[1].parse().unwrap_or(0);
            match pair[0].as_str() {
                "--seconds" => args.seconds = value() as u64,
                "--readers" => args.readers = value(),
                "--writers" => args.writers = value(),
                "--outside-writers" => args.outside_writers = value(),
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
    /// Outside writes: commit to applied by the feed, µs.
    pub feed_lag_p50_us: f64,
    pub feed_lag_p99_us: f64,
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

/// The schema of the change feed's outbox in `--outside-writers` runs.
const FEED: &str = "cacheops_stress_feed";

fn setup(cache: &Cacheops, truth: &Truth, feed: bool) {
    let mut conn = PgConnection::establish(&database_url()).unwrap();
    conn.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS cacheops_stress CASCADE; CREATE SCHEMA cacheops_stress;
         DROP SCHEMA IF EXISTS {FEED} CASCADE;
         SET search_path TO cacheops_stress;
         CREATE TABLE authors (id INT PRIMARY KEY);
         INSERT INTO authors SELECT generate_series(0, {AUTHORS});
         CREATE TABLE articles (id SERIAL PRIMARY KEY, category_id INT NOT NULL, title TEXT NOT NULL,
           version INT NOT NULL, author_id INT NOT NULL DEFAULT 0 REFERENCES authors (id) ON DELETE CASCADE);
         INSERT INTO articles (category_id, title, version, author_id)
           SELECT i % {CATEGORIES}, 'a' || i, 0, 1 + i % {AUTHORS} FROM generate_series(1, {ARTICLES}) i;"
    ))
    .unwrap();
    if feed {
        cacheops::feed::install(&mut conn, FEED).unwrap();
    }
    cache.invalidate_all().unwrap();
    let rows: Vec<Article> = articles::table.load(&mut conn).unwrap();
    truth.enter(&rows, &[]);
}

/// An id read by raw SQL.
#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    id: i32,
}

/// One write on a bare connection (cacheops sees nothing of it): a row moved
/// to another category, or an author deleted, their articles going by cascade
/// (the author comes back at once, with as many new articles). Entered into the
/// truth once the change feed has applied it.
fn write_outside(
    conn: &mut PgConnection,
    truth: &Arc<Truth>,
    outside: &OutsideWrites,
    dice: &mut Dice,
) {
    truth.begun.fetch_add(1, Ordering::SeqCst);
    let (id, to) = (1 + dice.roll(ARTICLES), dice.roll(CATEGORIES));
    let done = conn.transaction::<_, diesel::result::Error, _>(|conn| match dice.roll(4) {
        0 => {
            // The author first: no row can join it meanwhile, so the rows read
            // here are exactly those the cascade deletes.
            let author = 1 + dice.roll(AUTHORS);
            conn.batch_execute(&format!(
                "SELECT id FROM authors WHERE id = {author} FOR UPDATE"
            ))?;
            let gone: Vec<i32> = diesel::sql_query(format!(
                "SELECT id FROM articles WHERE author_id = {author} FOR UPDATE"
            ))
            .load::<Id>(conn)?
            .into_iter()
            .map(|r| r.id)
            .collect();
            conn.batch_execute(&format!(
                "DELETE FROM authors WHERE id = {author}; INSERT INTO authors VALUES ({author})"
            ))?;
            // As many new rows (new ids) for the author: the table keeps its size.
            let back: Vec<Article> = diesel::sql_query(format!(
                "INSERT INTO articles (category_id, title, version, author_id) \
                 SELECT {to}, 'back', 0, {author} FROM generate_series(1, {}) RETURNING *",
                gone.len()
            ))
            .load(conn)?;
            Ok((back, gone))
        }
        _ => Ok((moved(id, to).get_results(conn)?, Vec::new())),
    });
    let last_seq = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
        "(SELECT coalesce(max(seq), 0) FROM {FEED}.outbox)"
    )))
    .get_result::<i64>(conn);
    let truth = truth.clone();
    match (done, last_seq) {
        (Ok((rows, gone)), Ok(seq)) => outside.committed(seq, move || {
            truth.enter(&rows, &gone);
            truth.finished.fetch_add(1, Ordering::SeqCst);
        }),
        _ => {
            truth.finished.fetch_add(1, Ordering::SeqCst);
        }
    }
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

/// The writers' and readers' operations, written once for the blocking path
/// (Diesel, `CachedConnection`) and the async one (diesel-async,
/// `AsyncCachedConnection`): `$($as)?` is `async` and `$(.$aw)?` `.await` on the
/// latter, and each path brings its own `cache()` and `RunQueryDsl`.
macro_rules! ops {
    ($name:ident, $conn:ty, [$($as:tt)?], [$($aw:tt)?], [$($dsl:tt)*], [$($run:tt)*], [$($simple:tt)*]) => {
        mod $name {
            use super::*;
            #[allow(unused_imports)]
            use $($dsl)*;
            #[allow(unused_imports)]
            use $($run)*;
            #[allow(unused_imports)]
            use $($simple)*;

pub $($as)? fn write_once(conn: &mut $conn, cache: &Cacheops, truth: &Truth, dice: &mut Dice) {
    truth.begun.fetch_add(1, Ordering::SeqCst);
    write_some(conn, cache, truth, dice)$(.$aw)?;
    truth.finished.fetch_add(1, Ordering::SeqCst);
}

$($as)? fn write_some(conn: &mut $conn, cache: &Cacheops, truth: &Truth, dice: &mut Dice) {
    let id = 1 + dice.roll(ARTICLES);
    let to = dice.roll(CATEGORIES);
    match dice.roll(7) {
        0 => {
            // Through the helper (granular), on a row read FOR UPDATE in the same
            // transaction: a save of a row read earlier could lose another writer's
            // update and move the version backwards, which the truth (versions only
            // move forward) would then report as a stale read of the cache.
            let saved = conn.transaction::<_, cacheops::Error, _>($($as)? |conn| {
                let found = articles::table.find(id).for_update().first::<Article>(conn)$(.$aw)?;
                let Some(mut a) = diesel::OptionalExtension::optional(found)? else {
                    return Ok(None);
                };
                a.version += 1;
                a.category_id = to;
                save!([$($aw)?], cache, conn, &a).map(Some)
            })$(.$aw)?;
            if let Some(saved) = saved.unwrap() {
                truth.enter(&[saved], &[]);
            }
        }
        1 => {
            // Plain Diesel, one row, moved between categories.
            let rows = moved(id, to).get_results(conn)$(.$aw)?.unwrap();
            truth.enter(&rows, &[]);
        }
        2 => {
            // Plain Diesel mass update of a whole category.
            let rows: Vec<Article> =
                diesel::update(articles::table.filter(articles::category_id.eq(to)))
                    .set(articles::version.eq(articles::version + 1))
                    .get_results(conn)$(.$aw)?
                    .unwrap();
            truth.enter(&rows, &[]);
        }
        3 | 4 => {
            // A transaction that commits or rolls back.
            let commit = dice.roll(2) == 0;
            let result = conn.transaction::<_, diesel::result::Error, _>($($as)? |conn| {
                let rows = moved(id, to).get_results(conn)$(.$aw)??;
                match commit {
                    true => Ok(rows),
                    false => Err(diesel::result::Error::RollbackTransaction),
                }
            })$(.$aw)?;
            if let Ok(rows) = result {
                truth.enter(&rows, &[]);
            }
        }
        5 => {
            // A transaction begun and ended by raw SQL, committed or rolled back:
            // its write must wait for the raw COMMIT, and what a reader in another
            // connection caches meanwhile must not survive it.
            let commit = dice.roll(2) == 0;
            conn.batch_execute("BEGIN")$(.$aw)?.unwrap();
            let rows = moved(id, to).get_results(conn)$(.$aw)?.unwrap();
            conn.batch_execute(if commit { "COMMIT" } else { "ROLLBACK" })$(.$aw)?
                .unwrap();
            if commit {
                truth.enter(&rows, &[]);
            }
        }
        _ => {
            // Delete a row and insert it back under a new id, plain Diesel.
            let gone = diesel::delete(articles::table.find(id))
                .execute(conn)$(.$aw)?
                .unwrap();
            if gone == 1 {
                truth.enter(&[], &[id]);
                let back: Article = diesel::insert_into(articles::table)
                    .values((
                        articles::category_id.eq(to),
                        articles::title.eq("again"),
                        articles::version.eq(0),
                    ))
                    .get_result(conn)$(.$aw)?
                    .unwrap();
                truth.enter(&[back], &[]);
            }
        }
    }
}

/// Reads once through the cache; true if the read was stale.
pub $($as)? fn read_once(conn: &mut $conn, cache: &Cacheops, truth: &Truth, dice: &mut Dice) -> bool {
    let (before, epoch) = truth.snapshot();
    let c = dice.roll(CATEGORIES);
    match dice.roll(3) {
        0 => {
            let ids: Vec<i32> = before.keys().copied().collect();
            if ids.is_empty() {
                return false;
            }
            let id = ids[dice.roll(ids.len() as i32) as usize];
            let row = articles::table
                .find(id)
                .cache()
                .using(cache)
                .get_result::<Article>(conn)$(.$aw)?
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
                .load::<Article>(conn)$(.$aw)?
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
                .count(conn)$(.$aw)?
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

        }
    };
}

/// A save through the helper: `save` blocking (`[]`), `save_async` awaited (`[await]`).
macro_rules! save {
    ([], $cache:expr, $conn:expr, $a:expr) => {
        $cache.save($conn, $a)
    };
    ([await], $cache:expr, $conn:expr, $a:expr) => {
        $cache.save_async($conn, $a).await
    };
}

ops!(blocking, CachedConnection<PgConnection>, [], [], [cacheops::CachedQueryDsl],
    [diesel::RunQueryDsl], [diesel::connection::{Connection, SimpleConnection}]);
#[cfg(feature = "async")]
ops!(nonblocking, AsyncCachedConnection<AsyncPgConnection>, [async], [await], [super::async_cache::AsyncCache],
    [diesel_async::RunQueryDsl], [diesel_async::{AsyncConnection, SimpleAsyncConnection}]);

/// `.cache()` on the async path: the async builder under the blocking one's name,
/// so that the operations above are written once (in a module of its own, so
/// that the blocking path's glob import does not see it).
#[cfg(feature = "async")]
mod async_cache {
    pub trait AsyncCache<C>: cacheops::AsyncCachedQueryDsl<C> {
        fn cache(self) -> cacheops::CachedAsync<'static, Self, C> {
            self.cache_async()
        }
    }

    impl<Q: diesel::query_builder::AsQuery, C> AsyncCache<C> for Q {}
}

/// What [`moved`] sets: the version one up, the category.
type Moves = (
    diesel::dsl::Eq<articles::version, diesel::dsl::Add<articles::version, i32>>,
    diesel::dsl::Eq<articles::category_id, i32>,
);

/// A plain Diesel update of one row, moved to category `to`, version one up.
fn moved(id: i32, to: i32) -> diesel::dsl::Update<diesel::dsl::Find<articles::table, i32>, Moves> {
    diesel::update(articles::table.find(id)).set((
        articles::version.eq(articles::version + 1),
        articles::category_id.eq(to),
    ))
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
    use cacheops::CachedQueryDsl;
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

/// What the readers, writers and the run share.
#[derive(Default)]
struct Counters {
    stop: AtomicBool,
    /// After each restart the writers pause, so that whatever the outage left in
    /// Redis is exposed to the readers instead of being swept by the next write.
    paused: AtomicBool,
    reads: AtomicU64,
    writes: AtomicU64,
    stale: AtomicU64,
}

/// `--async`: the readers and writers as tokio tasks, many on two threads.
#[cfg(feature = "async")]
fn async_workers(args: &Args, cache: Cacheops, truth: Arc<Truth>, counters: Arc<Counters>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..args.writers {
            let (cache, truth, counters) = (cache.clone(), truth.clone(), counters.clone());
            tasks.spawn(async move {
                let mut conn = connect_async(&cache).await;
                let mut dice = Dice(0x9e37_79b9 + w as u64);
                while !counters.stop.load(Ordering::Relaxed) {
                    if counters.paused.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    nonblocking::write_once(&mut conn, &cache, &truth, &mut dice).await;
                    counters.writes.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for r in 0..args.readers {
            let (cache, truth, counters) = (cache.clone(), truth.clone(), counters.clone());
            tasks.spawn(async move {
                let mut conn = connect_async(&cache).await;
                let mut dice = Dice(0x51_7cc1 + r as u64);
                while !counters.stop.load(Ordering::Relaxed) {
                    if nonblocking::read_once(&mut conn, &cache, &truth, &mut dice).await {
                        counters.stale.fetch_add(1, Ordering::Relaxed);
                    }
                    counters.reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    });
}

#[cfg(not(feature = "async"))]
fn async_workers(_: &Args, _: Cacheops, _: Arc<Truth>, _: Arc<Counters>) {
    eprintln!("--async needs the `async` feature: cargo run --release --example stress --features async -- --async");
    std::process::exit(2);
}

/// An async connection on the stress schema that sees every statement.
#[cfg(feature = "async")]
async fn connect_async(cache: &Cacheops) -> AsyncCachedConnection<AsyncPgConnection> {
    use diesel_async::{AsyncConnection, SimpleAsyncConnection};
    let mut conn = AsyncPgConnection::establish(&database_url()).await.unwrap();
    conn.batch_execute("SET search_path TO cacheops_stress")
        .await
        .unwrap();
    AsyncCachedConnection::new(conn, cache.clone()).await
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
    let feed = args.outside_writers > 0;
    setup(&cache, &truth, feed);
    let outside = OutsideWrites::default();
    let consumer =
        std::sync::Mutex::new(feed.then(|| cache.start_change_feed(&database_url(), FEED)));
    let counters = Arc::new(Counters::default());
    let Counters {
        stop,
        paused,
        reads,
        writes,
        stale,
    } = &*counters;
    std::thread::scope(|scope| {
        if args.asynchronous {
            let (cache, truth, counters) = (cache.clone(), truth.clone(), counters.clone());
            scope.spawn(move || async_workers(args, cache, truth, counters));
        }
        for w in (0..args.writers).filter(|_| !args.asynchronous) {
            let (cache, truth, stop, writes, paused) = (&cache, &truth, &stop, &writes, &paused);
            scope.spawn(move || {
                let mut conn = connect(cache);
                let mut dice = Dice(0x9e37_79b9 + w as u64);
                while !stop.load(Ordering::Relaxed) {
                    if paused.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    blocking::write_once(&mut conn, cache, truth, &mut dice);
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for w in 0..args.outside_writers {
            let (truth, stop, writes, outside) = (&truth, &stop, &writes, &outside);
            scope.spawn(move || {
                let mut conn = PgConnection::establish(&database_url()).unwrap();
                conn.batch_execute("SET search_path TO cacheops_stress")
                    .unwrap();
                let mut dice = Dice(0x2545_f491 + w as u64);
                while !stop.load(Ordering::Relaxed) {
                    write_outside(&mut conn, truth, outside, &mut dice);
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        if feed {
            let (stop, outside, consumer, cache) = (&stop, &outside, &consumer, &cache);
            let restart = args.restart_feed;
            scope.spawn(move || {
                let mut conn = PgConnection::establish(&database_url()).unwrap();
                let mut since = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    outside.look(&mut conn, FEED);
                    if restart && since.elapsed() > Duration::from_millis(1200) {
                        let mut running = consumer.lock().unwrap();
                        // Stopped, or started again: the outbox waits meanwhile.
                        *running = match running.take() {
                            Some(_stopped) => None,
                            None => Some(cache.start_change_feed(&database_url(), FEED)),
                        };
                        since = Instant::now();
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
            });
        }
        for r in (0..args.readers).filter(|_| !args.asynchronous) {
            let (cache, truth, stop, reads, stale) = (&cache, &truth, &stop, &reads, &stale);
            scope.spawn(move || {
                let mut conn = connect(cache);
                let mut dice = Dice(0x51_7cc1 + r as u64);
                while !stop.load(Ordering::Relaxed) {
                    if blocking::read_once(&mut conn, cache, truth, &mut dice) {
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
    if feed {
        // The consumer (running again) applies what the outside writes left.
        let mut running = consumer.lock().unwrap();
        running.get_or_insert_with(|| cache.start_change_feed(&database_url(), FEED));
        drop(running);
        let mut conn = PgConnection::establish(&database_url()).unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        while !outside.drained() && Instant::now() < until {
            outside.look(&mut conn, FEED);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let (feed_lag_p50_us, feed_lag_p99_us) = outside.lag_percentiles();
    let report = Report {
        restarts,
        store_errors: cache.stats().errors,
        reads: reads.load(Ordering::Relaxed),
        writes: writes.load(Ordering::Relaxed),
        hits: cache.stats().hits,
        local_hits: cache.stats().local_hits,
        stale_reads: stale.load(Ordering::Relaxed),
        stale_after_quiesce: quiesce(&cache),
        feed_lag_p50_us,
        feed_lag_p99_us,
    };
    drop(consumer);
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
        "{{\"async\": {}, \"seconds\": {}, \"readers\": {}, \"writers\": {}, \"outside_writers\": {}, \"restart_feed\": {}, \"local\": {}, \"redis_restarts\": {}, \"store_errors_degraded\": {}, \"reads\": {}, \"writes\": {}, \"hits\": {}, \"local_hits\": {}, \"stale_reads\": {}, \"stale_reads_beyond_lag\": {}, \"stale_after_quiesce\": {}, \"feed_lag_p50_us\": {:.0}, \"feed_lag_p99_us\": {:.0}}}",
        args.asynchronous, args.seconds, args.readers, args.writers, args.outside_writers, args.restart_feed, args.local, r.restarts, r.store_errors, r.reads, r.writes, r.hits, r.local_hits, r.stale_reads, r.stale_reads, r.stale_after_quiesce, r.feed_lag_p50_us, r.feed_lag_p99_us
    );
    if r.stale_reads != 0 || r.stale_after_quiesce != 0 {
        std::process::exit(1);
    }
}
