#![allow(missing_docs)]
//! The tour: misses, hits, and a granular invalidation, with timings.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! With no environment it runs on SQLite (in memory) and the in-process store, so
//! it works on a fresh machine. Set `DATABASE_URL=postgres://...` to use
//! PostgreSQL and `REDIS_URL=redis://...` to use Redis.

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cacheops::{Cacheable, CachedQueryDsl, Cacheops, Config};
use diesel::connection::InstrumentationEvent;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    articles (id) {
        id -> Integer,
        category_id -> Integer,
        title -> Text,
        views -> Integer,
    }
}

#[derive(Debug, Clone, Queryable, Identifiable, AsChangeset, Cacheable, Serialize, Deserialize)]
#[diesel(table_name = articles)]
#[cacheops(app = "blog", ops = "all", timeout = 600)]
struct Article {
    id: i32,
    category_id: i32,
    title: String,
    views: i32,
}

#[derive(Insertable)]
#[diesel(table_name = articles)]
struct NewArticle {
    category_id: i32,
    title: String,
    views: i32,
}

/// Counts the statements a connection runs, to show which reads hit the database.
fn count_queries<C: Connection>(conn: &mut C) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if matches!(event, InstrumentationEvent::StartQuery { .. }) {
            seen.fetch_add(1, Ordering::Relaxed);
        }
    });
    count
}

/// Runs `f`, printing how long it took and how many statements it sent.
fn timed<T>(label: &str, queries: &AtomicUsize, f: impl FnOnce() -> T) -> T {
    queries.store(0, Ordering::Relaxed);
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    let sent = queries.load(Ordering::Relaxed);
    println!(
        "  {label:<44} {:>9.1} µs   {sent} statement(s)",
        micros(took)
    );
    out
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The tour itself, for any backend (a macro, since the connection types differ).
macro_rules! tour {
    ($conn:expr, $cache:expr, $ddl:expr) => {{
        let conn = &mut $conn;
        let cache: &Cacheops = $cache;
        diesel::connection::SimpleConnection::batch_execute(conn, $ddl)?;
        let rows: Vec<NewArticle> = (0..1000)
            .map(|i| NewArticle {
                category_id: i % 10,
                title: format!("article {i}"),
                views: i,
            })
            .collect();
        diesel::insert_into(articles::table)
            .values(&rows)
            .execute(conn)?;
        cache.invalidate_all()?;
        let queries = count_queries(conn);
        let in_cat = |c: i32| {
            articles::table
                .filter(articles::category_id.eq(c))
                .order(articles::id)
        };
        let of_cat = |c: i32| articles::table.filter(articles::category_id.eq(c));

        println!("Reads:");
        let first = timed("category 3, first read (miss)", &queries, || {
            in_cat(3).cache().using(cache).load::<Article>(conn)
        })?;
        timed("category 3, second read (hit)", &queries, || {
            in_cat(3).cache().using(cache).load::<Article>(conn)
        })?;
        timed("count of category 7 (miss)", &queries, || {
            of_cat(7).cache().using(cache).count(conn)
        })?;
        timed("count of category 7 (hit)", &queries, || {
            of_cat(7).cache().using(cache).count(conn)
        })?;

        println!("A write through the helper invalidates what it can affect, nothing else:");
        let mut article = first[0].clone();
        article.title = "renamed".into();
        timed("save one article of category 3", &queries, || {
            cache.save(conn, &article)
        })?;
        let after = timed("category 3 again (invalidated: miss)", &queries, || {
            in_cat(3).cache().using(cache).load::<Article>(conn)
        })?;
        timed("count of category 7 (untouched: hit)", &queries, || {
            of_cat(7).cache().using(cache).count(conn)
        })?;
        println!("  category 3 now starts with {:?}", after[0].title);
        println!("Stats: {:?}", cache.stats());
    }};
}

fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "memory://".into());
    let config = Config::builder()
        .url(&url)
        .prefix("cacheops_quickstart")
        .build();
    let cache = Cacheops::new(config)?;
    println!(
        "Model {} on table `{}`; cache at {url}",
        Article::INFO.label,
        Article::INFO.table
    );
    match std::env::var("DATABASE_URL") {
        Ok(db) => {
            println!("Database: PostgreSQL ({db})");
            let mut conn = PgConnection::establish(&db)?;
            let ddl =
                "CREATE TEMP TABLE articles (id SERIAL PRIMARY KEY, category_id INT NOT NULL, \
                       title TEXT NOT NULL, views INT NOT NULL)";
            tour!(conn, &cache, ddl);
        }
        Err(_) => {
            println!("Database: SQLite (in memory)");
            let mut conn = SqliteConnection::establish(":memory:")?;
            let ddl = "CREATE TABLE articles (id INTEGER PRIMARY KEY AUTOINCREMENT, category_id INT NOT NULL, \
                       title TEXT NOT NULL, views INT NOT NULL)";
            tour!(conn, &cache, ddl);
        }
    }
    Ok(())
}
