#![allow(missing_docs)]
//! A small axum service on the async path: a deadpool pool of connections that
//! see every statement, routes that read articles through the cache and write
//! them through the helpers. Each request takes a `Lazy` checkout of the pool
//! (`cacheops::pool`): a read served from the cache holds no connection, so
//! the pool's size bounds only the misses and writes in flight.
//!
//! ```text
//! cargo run --example axum_app --features async,deadpool
//! curl 'localhost:3000/articles?category=3'           # a miss, then hits
//! curl -X POST localhost:3000/articles -H 'content-type: application/json' \
//!      -d '{"category_id": 3, "title": "fresh"}'       # invalidates category 3 only
//! curl -X PUT localhost:3000/articles/1 -H 'content-type: application/json' -d '{"title": "renamed"}'
//! curl localhost:3000/articles/1
//! curl localhost:3000/stats
//! ```
//!
//! With no environment it runs on SQLite (a file in the temporary directory) and
//! the in-process store. Set `DATABASE_URL=postgres://...` for PostgreSQL and
//! `REDIS_URL=redis://...` for Redis; `PORT` picks the port (default 3000).
//! `?uncached=1` on the list route bypasses the cache, for comparison.
//!
//! `-- --load 5` serves on a spare port and drives it itself for 5 seconds a
//! route, 32 keep-alive HTTP/1.1 clients at once: the list route served from the
//! cache, then uncached, printing requests/s of each (in release builds:
//! `cargo run --release --example axum_app --features async,deadpool -- --load 5`).

use std::error::Error;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cacheops::connection::{AsyncCachedConnection, AsyncCachedSqliteConnection};
use cacheops::pool::CachedPool;
use cacheops::{AsyncCachedQueryDsl, Cacheable, Cacheops, Config};
use diesel::prelude::*;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use serde::{Deserialize, Serialize};

diesel::table! {
    axum_articles (id) {
        id -> Integer,
        category_id -> Integer,
        title -> Text,
    }
}

#[derive(
    Debug,
    Clone,
    Queryable,
    Selectable,
    Identifiable,
    AsChangeset,
    Cacheable,
    Serialize,
    Deserialize,
)]
#[diesel(table_name = axum_articles)]
#[cacheops(app = "blog", ops = "all", timeout = 600)]
struct Article {
    id: i32,
    category_id: i32,
    title: String,
}

#[derive(Debug, Deserialize, Insertable)]
#[diesel(table_name = axum_articles)]
struct NewArticle {
    category_id: i32,
    title: String,
}

#[derive(Deserialize)]
struct ListQuery {
    category: i32,
    #[serde(default)]
    uncached: u8,
}

#[derive(Deserialize)]
struct Rename {
    title: String,
}

/// The pool of the backend the service runs on.
#[derive(Clone)]
enum Db {
    Pg(CachedPool<AsyncCachedConnection<AsyncPgConnection>>),
    Sqlite(CachedPool<AsyncCachedSqliteConnection>),
}

#[derive(Clone)]
struct App {
    db: Db,
    cache: Cacheops,
}

/// Runs `$body` with `$conn` a lazy checkout of whichever backend's pool runs
/// (a macro: the two connection types differ, the code does not). Reads take
/// `$conn` as it is; writes ask it for its connection.
macro_rules! with_conn {
    ($app:expr, |$conn:ident| $body:expr) => {
        match &$app.db {
            Db::Pg(pool) => {
                let $conn = &mut pool.lazy();
                $body
            }
            Db::Sqlite(pool) => {
                let $conn = &mut pool.lazy();
                $body
            }
        }
    };
}

/// Articles of a category, by id, through the cache.
async fn list(State(app): State<App>, Query(q): Query<ListQuery>) -> Result<Response, AppError> {
    let rows: Vec<Article> = with_conn!(app, |conn| {
        let cached = axum_articles::table
            .filter(axum_articles::category_id.eq(q.category))
            .order(axum_articles::id)
            .select(Article::as_select())
            .cache_async()
            .using(&app.cache);
        let cached = match q.uncached {
            0 => cached,
            _ => cached.bypass(),
        };
        cached.load(conn).await?
    });
    Ok(Json(rows).into_response())
}

/// One article by primary key, through the cache (op `get`).
async fn show(State(app): State<App>, Path(id): Path<i32>) -> Result<Response, AppError> {
    let row: Article = with_conn!(app, |conn| {
        axum_articles::table
            .find(id)
            .select(Article::as_select())
            .cache_async()
            .using(&app.cache)
            .get_result(conn)
            .await?
    });
    Ok(Json(row).into_response())
}

/// A new article: the helper invalidates the cached reads its row can affect.
async fn create(State(app): State<App>, Json(new): Json<NewArticle>) -> Result<Response, AppError> {
    let rows: Vec<Article> = with_conn!(app, |conn| {
        let conn = conn.connection().await?;
        app.cache.insert_async::<Article, _, _>(conn, &new).await?
    });
    Ok((StatusCode::CREATED, Json(rows)).into_response())
}

/// A new title: old and new state invalidated, one statement.
async fn rename(
    State(app): State<App>,
    Path(id): Path<i32>,
    Json(body): Json<Rename>,
) -> Result<Response, AppError> {
    let row: Article = with_conn!(app, |conn| {
        let title = axum_articles::title.eq(body.title);
        let conn = conn.connection().await?;
        app.cache
            .update_async::<Article, _, _, _>(conn, id, title)
            .await?
    });
    Ok(Json(row).into_response())
}

async fn stats(State(app): State<App>) -> String {
    format!("{:?}\n", app.cache.stats())
}

/// An error as the service answers it: 404 for a missing row, 500 otherwise.
struct AppError(StatusCode, String);

impl From<cacheops::Error> for AppError {
    fn from(e: cacheops::Error) -> AppError {
        let status = match e.as_diesel() {
            Some(diesel::result::Error::NotFound) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        AppError(status, e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// The pool of the configured backend, its table created and seeded.
async fn database() -> Result<Db, Box<dyn Error>> {
    let seed = "INSERT INTO axum_articles (category_id, title) \
                SELECT n % 10, 'article ' || n FROM generate_series(1, 1000) AS g(n)";
    match std::env::var("DATABASE_URL") {
        Ok(url) => {
            println!("Database: PostgreSQL ({url})");
            let manager =
                AsyncDieselConnectionManager::<AsyncCachedConnection<AsyncPgConnection>>::new(url);
            let pool = CachedPool::new(Pool::builder(manager).max_size(8).build()?);
            let mut conn = pool.get().await?;
            conn.batch_execute(
                "DROP TABLE IF EXISTS axum_articles; CREATE TABLE axum_articles \
                 (id SERIAL PRIMARY KEY, category_id INT NOT NULL, title TEXT NOT NULL)",
            )
            .await?;
            conn.batch_execute(seed).await?;
            drop(conn);
            Ok(Db::Pg(pool))
        }
        Err(_) => {
            let path = std::env::temp_dir().join("cacheops_axum_app.sqlite");
            let _ = std::fs::remove_file(&path);
            let path = path.to_string_lossy().into_owned();
            println!("Database: SQLite ({path})");
            let manager = AsyncDieselConnectionManager::<AsyncCachedSqliteConnection>::new(path);
            let pool = CachedPool::new(Pool::builder(manager).max_size(4).build()?);
            let mut conn = pool.get().await?;
            conn.batch_execute(
                "PRAGMA journal_mode = WAL; CREATE TABLE axum_articles \
                 (id INTEGER PRIMARY KEY AUTOINCREMENT, category_id INT NOT NULL, title TEXT NOT NULL)",
            )
            .await?;
            let sqlite_seed = "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 1000) \
                 INSERT INTO axum_articles (category_id, title) SELECT n % 10, 'article ' || n FROM g";
            conn.batch_execute(sqlite_seed).await?;
            drop(conn);
            Ok(Db::Sqlite(pool))
        }
    }
}

/// The service's routes.
fn routes(app: App) -> Router {
    Router::new()
        .route("/articles", get(list).post(create))
        .route("/articles/{id}", get(show).put(rename))
        .route("/stats", get(stats))
        .with_state(app)
}

/// `--load SECONDS`: the list route's requests/s from the cache and uncached.
async fn load(app: App, seconds: u64) -> Result<(), Box<dyn Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, routes(app)).await });
    for (label, path) in [
        ("cached", "/articles?category=3"),
        ("uncached", "/articles?category=3&uncached=1"),
    ] {
        let rate = requests_per_second(address, path, seconds).await?;
        println!("list route, {label:<8} {rate:>9.0} requests/s (32 clients, {seconds} s)");
    }
    Ok(())
}

/// Requests/s of 32 clients, each one keep-alive connection sending `path` in
/// a loop for `seconds`.
async fn requests_per_second(
    address: std::net::SocketAddr,
    path: &str,
    seconds: u64,
) -> Result<f64, Box<dyn Error>> {
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let request = request.clone();
        clients.spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(address).await?;
            let mut done = 0u64;
            while tokio::time::Instant::now() < until {
                one_request(&mut stream, request.as_bytes()).await?;
                done += 1;
            }
            Ok::<u64, std::io::Error>(done)
        });
    }
    let mut total = 0;
    while let Some(done) = clients.join_next().await {
        total += done??;
    }
    Ok(total as f64 / seconds as f64)
}

/// Sends one request and reads its whole response (headers, then as many body
/// bytes as `content-length` says).
async fn one_request(stream: &mut tokio::net::TcpStream, request: &[u8]) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await?;
    let mut buf = Vec::with_capacity(16 << 10);
    let mut chunk = [0u8; 16 << 10];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            return Ok(());
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "memory://".into());
    let config = Config::builder()
        .url(&url)
        .prefix("cacheops_axum_app")
        .build();
    // Pools connect with the process-wide handle.
    cacheops::install(config)?;
    let cache = cacheops::global()?.clone();
    cache.invalidate_all()?;
    println!("Model {}; cache at {url}", Article::INFO.label);
    let app = App {
        db: database().await?,
        cache,
    };
    let words: Vec<String> = std::env::args().collect();
    if let Some(at) = words.iter().position(|w| w == "--load") {
        let seconds = words.get(at + 1).and_then(|s| s.parse().ok()).unwrap_or(5);
        return load(app, seconds).await;
    }
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("Listening on http://{}", listener.local_addr()?);
    axum::serve(listener, routes(app)).await?;
    Ok(())
}
