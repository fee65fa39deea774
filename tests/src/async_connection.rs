//! `AsyncCachedConnection`: every write through it invalidates (granularly
//! where `CachedConnection` does), transactions queue invalidations until the
//! outermost COMMIT, ordinary reads are cached by profile, and pools of it work.

use cacheops::connection::AsyncCachedConnection;
use cacheops::{AsyncCachedQueryDsl, Cacheops};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};

use crate::ctx::*;
use crate::fixtures::pg::*;

/// A seeded schema, a handle on Redis and a wrapped connection whose
/// statements are counted.
struct Setup {
    conn: AsyncCachedConnection<AsyncConn>,
    cache: Cacheops,
    queries: QueryCounter,
    db: PgDb,
}

impl Setup {
    async fn new() -> Setup {
        let db = PgDb::open();
        seed(&mut db.connect(), 3, 4);
        let cache = handle(StoreKind::Redis, &unique("cacheops_async_conn"));
        let mut inner = db.connect_async().await;
        let queries = QueryCounter::default();
        queries.instrument_async(&mut inner);
        let conn = AsyncCachedConnection::new(inner, cache.clone()).await;
        Setup {
            conn,
            cache,
            queries,
            db,
        }
    }

    /// Category `c` by an ordinary diesel-async read (cached automatically).
    async fn read(&mut self, c: i32) -> (Vec<Article>, usize) {
        self.queries.take();
        let rows = in_category(c).load(&mut self.conn).await.unwrap();
        (rows, self.queries.take())
    }

    /// Category `c` through `.cached_async()`.
    async fn cached(&mut self, c: i32) -> (Vec<Article>, usize) {
        self.queries.take();
        let rows = in_category(c)
            .cache_async()
            .using(&self.cache)
            .load(&mut self.conn)
            .await
            .unwrap();
        (rows, self.queries.take())
    }

    /// How many statements reading each category ran (automatic caching).
    async fn reads(&mut self, cats: &[i32]) -> Vec<usize> {
        let mut counts = Vec::new();
        for &c in cats {
            counts.push(self.read(c).await.1);
        }
        counts
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.cache.invalidate_all();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_reads_are_cached_by_profile() {
    let mut s = Setup::new().await;
    assert_eq!(s.read(1).await.1, 1);
    let (rows, n) = s.read(1).await;
    assert_eq!((rows.len(), n), (4, 0));
    assert_eq!(s.cached(2).await.1, 1);
    assert_eq!(s.cached(2).await.1, 0);
    assert_eq!(
        s.read(2).await.1,
        1,
        "the typed entry and the rows entry are apart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_writes_invalidate_granularly() {
    let mut s = Setup::new().await;
    assert_eq!(s.reads(&[1, 2, 3]).await, vec![1, 1, 1]);
    // UPDATE moving one row from category 1 to 3: old and new state, one statement.
    let id = s.read(1).await.0[0].id;
    s.queries.take();
    diesel::update(articles::table.find(id))
        .set(articles::category_id.eq(3))
        .execute(&mut s.conn)
        .await
        .unwrap();
    assert_eq!(s.queries.take(), 1, "one rewritten statement");
    assert_eq!(s.reads(&[1, 2, 3]).await, vec![1, 0, 1]);
    // INSERT into 2 and DELETE from 3: their categories only.
    diesel::insert_into(articles::table)
        .values(&NewArticle::new(2, "new"))
        .execute(&mut s.conn)
        .await
        .unwrap();
    assert_eq!(s.reads(&[1, 2, 3]).await, vec![0, 1, 0]);
    diesel::delete(articles::table.find(id))
        .execute(&mut s.conn)
        .await
        .unwrap();
    assert_eq!(s.reads(&[1, 2, 3]).await, vec![0, 0, 1]);
    let (three, _) = s.read(3).await;
    assert!(three.iter().all(|a| a.id != id));
}

/// An UPDATE naming its table with the schema is granular once the catalog
/// said that table has the model's primary key (asked once); another schema's
/// table of the same name without it is not rewritten by that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_qualified_update_is_granular_after_one_catalog_check() {
    let mut s = Setup::new().await;
    assert_eq!(s.reads(&[1, 2, 3]).await, vec![1, 1, 1]);
    let ids: Vec<i32> = s.read(1).await.0.iter().map(|a| a.id).collect();
    let schema = s.db.schema.clone();
    let update = |id: i32| format!("UPDATE {schema}.articles SET views = 7 WHERE id = {id}");
    s.queries.take();
    assert_eq!(
        diesel::sql_query(update(ids[0]))
            .execute(&mut s.conn)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.queries.take(),
        2,
        "the catalog check, then the rewritten UPDATE"
    );
    assert_eq!(
        s.reads(&[1, 2, 3]).await,
        vec![1, 0, 0],
        "its row's category only"
    );
    diesel::sql_query(update(ids[1]))
        .execute(&mut s.conn)
        .await
        .unwrap();
    assert_eq!(s.queries.take(), 1, "the check is remembered");
    assert_eq!(s.reads(&[1, 2, 3]).await, vec![1, 0, 0]);
    assert!(s.read(1).await.0.iter().take(2).all(|a| a.views == 7));

    let other = unique("other");
    s.conn
        .batch_execute(&format!(
            "CREATE SCHEMA {other}; CREATE TABLE {other}.articles (code TEXT PRIMARY KEY, views INT); \
             INSERT INTO {other}.articles VALUES ('a', 1)"
        ))
        .await
        .unwrap();
    let sql = format!("UPDATE {other}.articles SET views = 2 WHERE code = 'a'");
    assert_eq!(
        diesel::sql_query(&sql).execute(&mut s.conn).await.unwrap(),
        1
    );
    s.conn
        .batch_execute(&format!("DROP SCHEMA {other} CASCADE"))
        .await
        .unwrap();
}

/// A miss inside a READ COMMITTED transaction that has not written is stored
/// (the isolation asked once per transaction, by a miss), as on
/// `CachedConnection`; one at REPEATABLE READ reads an older snapshot: served,
/// not stored. Explicit `.cache_async()` reads, and ordinary ones cached
/// automatically.
async fn misses_inside_transactions(automatic: bool) {
    let mut s = Setup::new().await;
    let read = async |s: &mut Setup, c: i32| match automatic {
        true => s.read(c).await.1,
        false => s.cached(c).await.1,
    };
    s.conn.batch_execute("BEGIN").await.unwrap();
    assert_eq!(read(&mut s, 1).await, 2, "the isolation, then the SQL");
    assert_eq!(read(&mut s, 1).await, 0, "stored inside the transaction");
    assert_eq!(read(&mut s, 3).await, 1, "asked once per transaction");
    s.conn.batch_execute("COMMIT").await.unwrap();
    assert_eq!(read(&mut s, 1).await, 0);

    let begin = "BEGIN ISOLATION LEVEL REPEATABLE READ";
    s.conn.batch_execute(begin).await.unwrap();
    assert_eq!(read(&mut s, 2).await, 2);
    assert_eq!(
        read(&mut s, 2).await,
        1,
        "an older snapshot's rows are not stored"
    );
    s.conn.batch_execute("COMMIT").await.unwrap();
    assert_eq!(read(&mut s, 2).await, 1);
    assert_eq!(read(&mut s, 2).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_inside_a_read_committed_transaction_is_stored() {
    misses_inside_transactions(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automatic_miss_inside_a_read_committed_transaction_is_stored() {
    misses_inside_transactions(true).await;
}

/// A `SET search_path` sent through `execute` is followed at once: the next
/// ordinary reads read the new schema, are cached under its key, and are never
/// served the old schema's entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_sent_through_execute_is_followed_at_once() {
    let mut s = Setup::new().await;
    let other = PgDb::open();
    seed(&mut other.connect(), 3, 2);
    assert_eq!(s.read(1).await.0.len(), 4);
    let set = format!("SET search_path TO {}", other.schema);
    diesel::sql_query(set).execute(&mut s.conn).await.unwrap();
    let (rows, n) = s.read(1).await;
    assert_eq!(
        (rows.len(), n),
        (2, 1),
        "the other schema's rows, by a miss"
    );
    let (rows, n) = s.read(1).await;
    assert_eq!((rows.len(), n), (2, 0), "cached under its key at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_sql_and_batches_invalidate_their_tables() {
    let mut s = Setup::new().await;
    s.reads(&[1, 2]).await;
    s.conn
        .batch_execute("UPDATE articles SET views = 7 WHERE title = 'a1-0'")
        .await
        .unwrap();
    assert_eq!(
        s.reads(&[1, 2]).await,
        vec![1, 1],
        "a batch widens to its table"
    );
    diesel::sql_query("UPDATE articles SET views = 8")
        .execute(&mut s.conn)
        .await
        .unwrap();
    let (rows, n) = s.read(1).await;
    assert_eq!(n, 1);
    assert!(rows.iter().all(|a| a.views == 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helpers_through_the_wrapper_invalidate_once_and_granularly() {
    let mut s = Setup::new().await;
    s.reads(&[1, 2, 3]).await;
    let mut moved = s.read(1).await.0[0].clone();
    moved.category_id = 2;
    let cache = s.cache.clone();
    s.queries.take();
    cache.save_async(&mut s.conn, &moved).await.unwrap();
    assert_eq!(s.queries.take(), 1);
    assert_eq!(s.reads(&[1, 2, 3]).await, vec![1, 1, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_queue_invalidations_until_commit() {
    let mut s = Setup::new().await;
    let mut other = Setup::new_reader(&s).await;
    s.reads(&[1, 2]).await;
    other.read(1).await;
    let cache = s.cache.clone();
    s.conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            diesel::update(articles::table.filter(articles::category_id.eq(1)))
                .set(articles::views.eq(5))
                .execute(conn)
                .await?;
            // Dirty: this transaction's reads bypass the cache.
            let rows: Vec<Article> = in_category(1).load(conn).await?;
            assert!(rows.iter().all(|a| a.views == 5));
            Ok(())
        })
        .await
        .unwrap();
    let (rows, n) = other.read(1).await;
    assert_eq!(n, 1, "invalidated at COMMIT");
    assert!(rows.iter().all(|a| a.views == 5));
    assert_eq!(s.reads(&[2]).await, vec![0], "granular: category 2 kept");
    // A rolled-back transaction invalidates nothing.
    let rolled = s
        .conn
        .transaction::<(), diesel::result::Error, _>(async |conn| {
            diesel::delete(articles::table).execute(conn).await?;
            Err(diesel::result::Error::RollbackTransaction)
        })
        .await;
    assert!(rolled.is_err());
    assert_eq!(s.reads(&[1, 2]).await, vec![0, 0]);
    drop(cache);
}

impl Setup {
    /// A second connection on `s`'s schema and handle, counted on its own.
    async fn new_reader(s: &Setup) -> Reader {
        let mut inner = s.db.connect_async().await;
        let queries = QueryCounter::default();
        queries.instrument_async(&mut inner);
        Reader {
            conn: AsyncCachedConnection::new(inner, s.cache.clone()).await,
            queries,
        }
    }
}

struct Reader {
    conn: AsyncCachedConnection<AsyncConn>,
    queries: QueryCounter,
}

impl Reader {
    async fn read(&mut self, c: i32) -> (Vec<Article>, usize) {
        self.queries.take();
        let rows = in_category(c).load(&mut self.conn).await.unwrap();
        (rows, self.queries.take())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_never_share_entries() {
    let mut a = Setup::new().await;
    let mut b = Setup::new().await;
    // Same handle prefix for both: only the session's identity keeps them apart.
    let mut inner = b.db.connect_async().await;
    inner.batch_execute("SELECT 1").await.unwrap();
    let mut b_on_a_cache = AsyncCachedConnection::new(inner, a.cache.clone()).await;
    a.read(1).await;
    diesel::delete(articles::table)
        .execute(b.conn.inner())
        .await
        .unwrap();
    let rows: Vec<Article> = in_category(1).load(&mut b_on_a_cache).await.unwrap();
    assert!(
        rows.is_empty(),
        "b's schema is empty: a's entry was not served"
    );
    b.read(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadpool_pool_of_wrapped_connections_serves_and_invalidates() {
    use diesel_async::pooled_connection::deadpool::Pool;
    let s = Setup::new().await;
    let manager = wrapped_manager(&s.db.schema, &s.cache, None);
    let pool = Pool::builder(manager).max_size(2).build().unwrap();
    let read = async |pool: &Pool<AsyncCachedConnection<AsyncConn>>| {
        let mut conn = pool.get().await.unwrap();
        in_category(1).load::<Article>(&mut *conn).await.unwrap()
    };
    assert_eq!(read(&pool).await.len(), 4);
    {
        let mut conn = pool.get().await.unwrap();
        diesel::insert_into(articles::table)
            .values(&NewArticle::new(1, "pooled"))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    assert_eq!(read(&pool).await.len(), 5, "the pooled write invalidated");
}

/// SQLite's async connection that sees every statement: a plain write through
/// it invalidates, a read is served from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writes_through_the_wrapped_connection_invalidate() {
    use crate::fixtures::sqlite;
    use cacheops::connection::AsyncCachedSqliteConnection;
    use cacheops::CachedConnection;
    let db = SqliteDb::open();
    sqlite::seed(&mut db.connect(), 3, 4);
    let cache = handle(StoreKind::Memory, &unique("cacheops_async_sqlite"));
    let queries = QueryCounter::default();
    let mut inner = db.connect();
    queries.instrument(&mut inner);
    let mut conn = AsyncCachedSqliteConnection::new(CachedConnection::new(inner, cache.clone()));
    let read = async |conn: &mut AsyncCachedSqliteConnection| {
        queries.take();
        let rows: Vec<sqlite::Article> = sqlite::in_category(1)
            .cache_async()
            .using(&cache)
            .load(conn)
            .await
            .unwrap();
        (rows.len(), queries.take())
    };
    assert_eq!(read(&mut conn).await, (4, 1));
    assert_eq!(read(&mut conn).await, (4, 0));
    diesel::delete(sqlite::articles::table.filter(sqlite::articles::category_id.eq(1)))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        read(&mut conn).await,
        (0, 1),
        "the plain DELETE invalidated"
    );
}

/// Raw transaction control whose future is dropped before it was followed
/// leaves the transaction state unknown: the connection refuses every later
/// statement (and a pool discards it, `is_broken`), and what the batch may have
/// written is owed (the next read of its table re-invalidates first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_transaction_control_statement_breaks_the_connection() {
    use diesel_async::pooled_connection::PoolableConnection;
    let mut s = Setup::new().await;
    s.read(1).await;
    let batch = "BEGIN; UPDATE articles SET views = 1; SELECT pg_sleep(2); COMMIT";
    let dropped = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        s.conn.batch_execute(batch),
    )
    .await;
    assert!(dropped.is_err(), "the batch was still running");
    assert!(s.conn.is_broken());
    let refused = in_category(1).load::<Article>(&mut s.conn).await;
    assert!(
        matches!(
            refused,
            Err(diesel::result::Error::BrokenTransactionManager)
        ),
        "{refused:?}"
    );
    // Another connection: the table is owed, so its read is not served from the
    // entry cached before the batch.
    let mut other = Setup::new_reader(&s).await;
    assert_eq!(other.read(1).await.1, 1);
}
