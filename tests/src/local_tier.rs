//! The local tier in front of Redis: hits without a round trip, dropped by news of
//! their stamps (from this process at once, from others when delivered), and
//! nothing served while news may be missed.

use std::time::{Duration, Instant};

use cacheops::store::LocalTier;
use cacheops::{CachedQueryDsl, Cacheops, Config, Ops, Profile};
use diesel::prelude::*;

use crate::ctx::*;
use crate::fixtures::pg::*;
use crate::redis_server::PrivateRedis;

fn ctx() -> Ctx<PgDb> {
    let mut ctx = Ctx::new(StoreKind::Redis);
    seed(&mut ctx.conn, 3, 3);
    ctx
}

/// A handle on `url` under `prefix`, with a local tier or without, degrading on
/// failure; waits until a local tier serves.
fn handle(url: &str, prefix: &str, local: bool) -> Cacheops {
    let mut config = Config::builder()
        .url(url)
        .prefix(prefix)
        .degrade_on_failure(true)
        .redis_timeout(Duration::from_millis(300))
        .profile("*.*", Profile::new(Ops::ALL, Duration::from_secs(600)));
    if local {
        config = config.local_tier(LocalTier::new(1 << 20));
    }
    let h = Cacheops::new(config.build()).unwrap();
    if local {
        assert!(wait_for(|| h.stats().local_ready), "the tier subscribed");
    }
    h
}

fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Reads category `c` through `h`: rows, statements run, and whether the local
/// tier served it.
fn read(ctx: &mut Ctx<PgDb>, h: &Cacheops, c: i32) -> (Vec<Article>, usize, bool) {
    let before = h.stats().local_hits;
    let (rows, n) = ctx.counted(|conn, _| in_category(c).cache().using(h).load(conn).unwrap());
    (rows, n, h.stats().local_hits > before)
}

/// Reads category `c` through `h` until it is kept locally: a miss, then a local hit.
fn kept(ctx: &mut Ctx<PgDb>, h: &Cacheops, c: i32) {
    read(ctx, h, c);
    assert!(read(ctx, h, c).2, "served by the local tier");
}

/// How many MGETs (cache lookups) the server has run.
fn lookups(redis: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(redis).unwrap();
    let line = info.lines().find(|l| l.starts_with("cmdstat_mget:"));
    let calls = line.and_then(|l| l.split(['=', ',']).nth(1)?.parse().ok());
    calls.unwrap_or(0)
}

#[test]
fn a_local_hit_costs_no_round_trip() {
    let mut ctx = ctx();
    let server = PrivateRedis::start();
    let h = handle(&server.url(), &unique("local"), true);
    let mut redis = server.client();
    assert_eq!(read(&mut ctx, &h, 1).1, 1, "miss");
    let before = lookups(&mut redis);
    let (rows, n, local) = read(&mut ctx, &h, 1);
    assert_eq!((rows.len(), n, local), (3, 0, true));
    assert_eq!(lookups(&mut redis), before, "no lookup reached Redis");
    let other = handle(&server.url(), h.config().prefix(), false);
    read(&mut ctx, &other, 1);
    assert_eq!(
        lookups(&mut redis),
        before + 1,
        "the count moves for a Redis hit"
    );
}

#[test]
fn own_writes_drop_local_copies_before_they_return() {
    let mut ctx = ctx();
    let h = handle(&redis_url(), &unique("local"), true);
    read(&mut ctx, &h, 1);
    read(&mut ctx, &h, 2);
    assert!(read(&mut ctx, &h, 1).2);
    let mut a = read(&mut ctx, &h, 1).0[0].clone();
    a.views = 41;
    h.save(&mut ctx.conn, &a).unwrap();
    let (rows, n, local) = read(&mut ctx, &h, 1);
    assert_eq!((n, local), (1, false), "dropped at once");
    assert!(rows.contains(&a));
    assert!(read(&mut ctx, &h, 2).2, "granular: category 2 kept");
}

#[test]
fn news_from_another_process_drops_local_copies() {
    let mut ctx = ctx();
    let prefix = unique("local");
    let reader = handle(&redis_url(), &prefix, true);
    let writer = handle(&redis_url(), &prefix, false);
    kept(&mut ctx, &reader, 1);
    let mut a = read(&mut ctx, &reader, 1).0[0].clone();
    a.views = 42;
    writer.save(&mut ctx.conn, &a).unwrap();
    let fresh = wait_for(|| {
        let (rows, _, local) = read(&mut ctx, &reader, 1);
        rows.contains(&a) && !local
    });
    assert!(fresh, "the news arrived and the copy was dropped");
}

#[test]
fn nothing_is_served_locally_after_the_news_connection_drops() {
    let mut ctx = ctx();
    let mut server = PrivateRedis::start();
    let h = handle(&server.url(), &unique("local"), true);
    kept(&mut ctx, &h, 1);
    server.stop_keeping_data();
    assert!(wait_for(|| !h.stats().local_ready), "the listener noticed");
    let (rows, n, local) = read(&mut ctx, &h, 1);
    assert_eq!(
        (rows.len(), n, local),
        (3, 1, false),
        "degraded to the database"
    );
    server.restart();
    assert!(wait_for(|| h.stats().local_ready), "subscribed again");
    // The data connections wait out their retry delay before they reconnect.
    let mut first_hit = None;
    wait_for(|| {
        let (_, n, local) = read(&mut ctx, &h, 1);
        first_hit = Some(local).filter(|_| n == 0);
        first_hit.is_some()
    });
    assert_eq!(
        first_hit,
        Some(false),
        "the Redis copy survived; the local one did not"
    );
    assert!(read(&mut ctx, &h, 1).2);
}

#[test]
fn a_recreated_stamp_drops_local_copies() {
    let mut ctx = ctx();
    let h = handle(&redis_url(), &unique("local"), true);
    kept(&mut ctx, &h, 1);
    // Evicted (or expired) without news: the Redis copy is dead already.
    let gen = format!("{{{}:articles}}:gen", h.config().prefix());
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("DEL").arg(&gen).exec(&mut redis).unwrap();
    read(&mut ctx, &h, 2); // a miss fences articles: gen is created again
    let (_, n, local) = read(&mut ctx, &h, 1);
    assert_eq!((n, local), (1, false), "the copy under the old gen died");
}

#[test]
fn invalidate_all_drops_every_local_copy() {
    let mut ctx = ctx();
    let h = handle(&redis_url(), &unique("local"), true);
    kept(&mut ctx, &h, 1);
    h.invalidate_all().unwrap();
    assert_eq!(read(&mut ctx, &h, 1).1, 1);
}

#[test]
fn mass_updates_through_a_cached_connection_drop_local_copies() {
    let mut ctx = ctx();
    let h = handle(&redis_url(), &unique("local"), true);
    let mut conn = cacheops::CachedConnection::new(ctx.db.connect(), h.clone());
    read(&mut ctx, &h, 1);
    read(&mut ctx, &h, 3);
    diesel::update(articles::table.filter(articles::category_id.eq(1)))
        .set(articles::views.eq(9))
        .execute(&mut conn)
        .unwrap();
    let (rows, n, _) = read(&mut ctx, &h, 1);
    assert_eq!(n, 1);
    assert!(rows.iter().all(|a| a.views == 9));
    assert!(read(&mut ctx, &h, 3).2, "category 3 was not touched");
}
