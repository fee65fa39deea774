#![allow(missing_docs)]
//! A page whose article list is a cached template fragment (minijinja).
//!
//! ```text
//! cargo run --example fragments --features minijinja
//! ```
//!
//! SQLite in memory and the in-process store by default; set `REDIS_URL` to cache
//! in Redis. The page is rendered three times: a miss (the fragment's SQL runs),
//! a hit (no SQL, the fragment comes from the cache), then, after an article is
//! added through the write helper, a miss again showing the new article.

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cacheops::{fragment, Cacheable, Cacheops, Config, Sample};
use diesel::connection::InstrumentationEvent;
use diesel::prelude::*;
use diesel::sqlite::Sqlite;
use minijinja::{context, Environment, Value};
use serde::{Deserialize, Serialize};

diesel::table! {
    articles (id) {
        id -> Integer,
        category_id -> Integer,
        title -> Text,
    }
}

#[derive(Debug, Clone, Queryable, Identifiable, Cacheable, Serialize, Deserialize)]
#[diesel(table_name = articles)]
#[cacheops(app = "blog", ops = "all", timeout = 600)]
struct Article {
    id: i32,
    category_id: i32,
    title: String,
}

const PAGE: &str = "\
<h1>Category {{ category }}</h1>
<ul>
{%- call cached_as(deps, timeout=600, extra=category) %}
{%- for article in articles() %}
  <li>{{ article.title }}</li>
{%- endfor %}
{%- endcall %}
</ul>";

type Shared = Arc<Mutex<SqliteConnection>>;

fn in_category(category: i32) -> articles::BoxedQuery<'static, Sqlite> {
    articles::table
        .filter(articles::category_id.eq(category))
        .order(articles::id)
        .into_boxed()
}

/// Renders the page of `category`; the articles are loaded from inside the
/// fragment, so a cache hit runs no SQL at all.
fn render(
    env: &Environment<'_>,
    cache: &Cacheops,
    conn: &Shared,
    category: i32,
) -> Result<String, Box<dyn Error>> {
    let deps = fragment::deps(cache, &[Sample::query::<Sqlite, _>(in_category(category))])?;
    let conn = conn.clone();
    let articles = Value::from_function(move || -> Result<Value, minijinja::Error> {
        let mut conn = conn
            .lock()
            .map_err(|_| jinja_error("connection poisoned"))?;
        let rows: Vec<Article> = in_category(category)
            .load(&mut *conn)
            .map_err(|e| jinja_error(&e.to_string()))?;
        Ok(Value::from(minijinja::value::Serde(rows)))
    });
    let page = env.get_template("page.html")?;
    Ok(page.render(context! { category, deps, articles })?)
}

fn jinja_error(message: &str) -> minijinja::Error {
    minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message.to_owned())
}

/// Counts the statements a connection runs, to show which renders hit the database.
fn count_queries(conn: &mut SqliteConnection) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if matches!(event, InstrumentationEvent::StartQuery { .. }) {
            seen.fetch_add(1, Ordering::Relaxed);
        }
    });
    count
}

fn setup() -> Result<Shared, Box<dyn Error>> {
    let mut conn = SqliteConnection::establish(":memory:")?;
    diesel::connection::SimpleConnection::batch_execute(
        &mut conn,
        "CREATE TABLE articles (id INTEGER PRIMARY KEY AUTOINCREMENT, \
         category_id INT NOT NULL, title TEXT NOT NULL);
         INSERT INTO articles (category_id, title) VALUES
           (1, 'Caching in Rust'), (1, 'Granular invalidation'), (2, 'Elsewhere');",
    )?;
    Ok(Arc::new(Mutex::new(conn)))
}

fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "memory://".into());
    let config = Config::builder()
        .url(&url)
        .prefix("cacheops_fragments")
        .build();
    let cache = Cacheops::new(config)?;
    cache.invalidate_all()?;
    let conn = setup()?;
    let queries = count_queries(&mut *conn.lock().map_err(|_| "poisoned")?);
    let mut env = Environment::new();
    fragment::register(&mut env, &cache);
    fragment::add_template(&mut env, "page.html", PAGE)?;
    println!(
        "Model {} (table `{}`), cache at {url}",
        Article::INFO.label,
        Article::INFO.table
    );

    for label in ["first render (miss)", "second render (hit)"] {
        queries.store(0, Ordering::Relaxed);
        let html = render(&env, &cache, &conn, 1)?;
        println!(
            "--- {label}: {} statement(s)\n{html}",
            queries.load(Ordering::Relaxed)
        );
    }

    let new = (
        articles::category_id.eq(1),
        articles::title.eq("Fresh from the database"),
    );
    let added: Vec<Article> = {
        let mut conn = conn.lock().map_err(|_| "poisoned")?;
        cache.insert(&mut *conn, new)?
    };
    println!(
        "--- added {:?} through cache.insert (invalidates category 1)",
        added[0].title
    );

    queries.store(0, Ordering::Relaxed);
    let html = render(&env, &cache, &conn, 1)?;
    println!(
        "--- third render (miss): {} statement(s)\n{html}",
        queries.load(Ordering::Relaxed)
    );
    println!("Stats: {:?}", cache.stats());
    Ok(())
}
