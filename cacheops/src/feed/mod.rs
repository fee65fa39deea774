//! The change feed (PostgreSQL): writes the application does not make (cascades,
//! triggers, `psql`, other services) invalidate too.
//!
//! Triggers installed by [`install`] record every committed row change of the
//! tables of registered models in an outbox table, in the same transaction as the
//! change; a consumer ([`apply_once`], [`ChangeFeed`], `cacheops-cli feed run`)
//! claims outbox rows in order (`FOR UPDATE SKIP LOCKED`: several consumers share
//! the work, none applies a row twice), invalidates the old and the new state of
//! each row exactly as a write through cacheops would, and deletes the rows in the
//! same transaction. If Redis fails, nothing is deleted: the rows wait for the
//! next try. A consumer that was down finds them all on restart. Rows whose state
//! no longer reads as the table's row type (the schema changed since) invalidate
//! their whole table: the feed widens, it never skips.
//!
//! The application's own writes are recorded too and invalidated a second time:
//! harmless (a stamp deleted twice), and measured in the benchmark.

mod install;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::{Connection, LoadConnection, SimpleConnection};
use diesel::pg::PgConnection;
use diesel::row::{Field, Row};

pub use install::{
    apply_sql, install, install_sql, plan, plan_for, refuse_problems, uninstall, uninstall_sql,
    Modelled, Plan, DEFAULT_SCHEMA, VERSION,
};

use crate::connection::{DecodeRow, Named};
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::Cacheops;
use crate::value::Value;

/// Outbox rows one transaction of the consumer claims at most.
pub const BATCH: usize = 1000;

/// One claimed outbox row.
struct Change {
    seq: i64,
    /// The table, schema-qualified and quoted (`"public"."articles"`).
    tbl: String,
    /// The table's name, as cacheops' stamps name it.
    name: String,
    truncate: bool,
    old: Option<String>,
    new: Option<String>,
}

/// Applies up to [`BATCH`] outbox rows of the feed in `schema` through `handle`,
/// in one transaction of `conn`: claimed, invalidated, deleted. How many rows it
/// applied; an error leaves every claimed row in the outbox.
pub fn apply_once(conn: &mut PgConnection, handle: &Cacheops, schema: &str) -> Result<usize> {
    conn.transaction::<_, Error, _>(|conn| {
        let changes = claim(conn, schema)?;
        for group in changes.chunk_by(|a, b| a.tbl == b.tbl) {
            apply(conn, handle, group)?;
        }
        let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
        delete(conn, schema, &seqs)?;
        Ok(changes.len())
    })
}

/// The oldest unclaimed outbox rows, locked for this transaction.
fn claim(conn: &mut PgConnection, schema: &str) -> Result<Vec<Change>> {
    let sql = format!(
        "SELECT seq, tbl, name, op::text, old, new FROM {}.outbox ORDER BY seq LIMIT {BATCH} \
         FOR UPDATE SKIP LOCKED",
        install::quote(schema)
    );
    let query = diesel::sql_query(sql);
    let mut changes = Vec::new();
    let cursor = LoadConnection::<diesel::connection::DefaultLoadingMode>::load(conn, query);
    for row in cursor.map_err(db_error("reading the outbox"))? {
        let row = row.map_err(db_error("reading the outbox"))?;
        changes.push(change(&row).ok_or_else(|| malformed("an outbox row"))?);
    }
    Ok(changes)
}

fn change<'a>(row: &impl Row<'a, diesel::pg::Pg>) -> Option<Change> {
    let text = |i: usize| -> Option<Option<String>> {
        let field = row.get(i)?;
        Some(
            field
                .value()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        )
    };
    let seq = row
        .get(0)?
        .value()?
        .as_bytes()
        .try_into()
        .ok()
        .map(i64::from_be_bytes)?;
    Some(Change {
        seq,
        tbl: text(1)??,
        name: text(2)??,
        truncate: text(3)?? == "T",
        old: text(4)?,
        new: text(5)?,
    })
}

/// Invalidates the changes of one table: their rows' old and new states, or the
/// whole table (a TRUNCATE, or states that no longer read as its row type).
fn apply(conn: &mut PgConnection, handle: &Cacheops, changes: &[Change]) -> Result<()> {
    let Some(first) = changes.first() else {
        return Ok(());
    };
    if changes.iter().any(|c| c.truncate) {
        return handle.send_table(&first.name);
    }
    let states: Vec<&str> = changes
        .iter()
        .flat_map(|c| c.old.iter().chain(&c.new))
        .map(String::as_str)
        .collect();
    // A savepoint: a state that no longer casts must not abort the claim.
    let rows =
        conn.transaction::<_, diesel::result::Error, _>(|conn| typed(conn, &first.tbl, &states));
    match rows {
        Ok(rows) => handle.send_named(&first.name, &rows),
        Err(e) => {
            tracing::warn!(error = %e, table = %first.name, "cacheops: outbox rows do not read as the table's rows; invalidating it whole");
            handle.send_table(&first.name)
        }
    }
}

/// The states (row texts) of `tbl`, cast back to its row type: `(column, value)`
/// pairs in the table's own types.
fn typed(
    conn: &mut PgConnection,
    tbl: &str,
    states: &[&str],
) -> diesel::QueryResult<Vec<Vec<(String, Value)>>> {
    let sql = format!("SELECT (CAST(x AS {tbl})).* FROM unnest($1::text[]) AS x");
    let query =
        diesel::sql_query(sql).bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(states);
    let mut rows = Vec::with_capacity(states.len());
    for row in LoadConnection::<diesel::connection::DefaultLoadingMode>::load(conn, query)? {
        rows.push(<Named as DecodeRow<diesel::pg::Pg>>::decode(&row?)?);
    }
    Ok(rows)
}

fn delete(conn: &mut PgConnection, schema: &str, seqs: &[i64]) -> Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    use diesel::RunQueryDsl;
    let sql = format!(
        "DELETE FROM {}.outbox WHERE seq = ANY($1)",
        install::quote(schema)
    );
    diesel::sql_query(sql)
        .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(seqs)
        .execute(conn)
        .map(drop)
        .map_err(db_error("deleting applied outbox rows"))
}

fn db_error(doing: &'static str) -> impl Fn(diesel::result::Error) -> Error {
    move |e| Error::new(ErrorKind::Database, format!("change feed: {doing}")).with_source(e)
}

fn malformed(what: &str) -> Error {
    Error::new(
        ErrorKind::Database,
        format!("change feed: {what} has an unexpected shape"),
    )
}

/// A consumer running on a thread of its own (see [`Cacheops::start_change_feed`]):
/// stops when dropped.
#[derive(Debug)]
pub struct ChangeFeed {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl ChangeFeed {
    /// Whether the consumer has ended on its own: a fatal error (no outbox, or
    /// one of another version), which [`ChangeFeed::stop`] returns.
    pub fn has_ended(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops the consumer and waits for it; the fatal error it ended with, if any.
    pub fn stop(mut self) -> Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(ended)) => ended,
            Some(Err(_)) => Err(Error::new(
                ErrorKind::Config,
                "change feed: the consumer thread panicked",
            )),
            None => Ok(()),
        }
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// How long a consumer waits between looks at an empty outbox; a NOTIFY from the
/// triggers cuts the wait short at the next look.
const POLL: Duration = Duration::from_millis(5);

/// Runs a consumer until `stop` is set: connects to `database_url`, applies the
/// outbox, waits for the triggers' notifications, reconnects after a transient
/// failure (a second later). Logs what it does. Returns an
/// [`ErrorKind::Config`] error, without claiming a row, when `schema` holds no
/// outbox or one of another version: that needs an operator, not a retry.
pub fn run(handle: &Cacheops, database_url: &str, schema: &str, stop: &AtomicBool) -> Result<()> {
    run_with(&|| Some(handle.clone()), database_url, schema, stop)
}

/// [`run`] with the handle taken afresh for each batch, until `handle` gives none.
fn run_with(
    handle: &dyn Fn() -> Option<Cacheops>,
    url: &str,
    schema: &str,
    stop: &AtomicBool,
) -> Result<()> {
    let live = || !stop.load(Ordering::Relaxed) && handle().is_some();
    while live() {
        match run_connected(handle, url, schema, stop) {
            Err(e) if e.kind() == ErrorKind::Config => {
                tracing::error!(error = %e, "cacheops: change feed consumer stopped");
                return Err(e);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cacheops: change feed consumer failed; retrying in 1 s");
                std::thread::sleep(Duration::from_secs(1));
            }
            Ok(()) => {}
        }
    }
    Ok(())
}

fn run_connected(
    handle: &dyn Fn() -> Option<Cacheops>,
    url: &str,
    schema: &str,
    stop: &AtomicBool,
) -> Result<()> {
    let mut conn = PgConnection::establish(url).map_err(|e| {
        Error::new(ErrorKind::Database, "change feed: cannot connect").with_source(e)
    })?;
    install::check_installed(&mut conn, schema)?;
    let listen = format!("LISTEN {}", install::quote(&install::channel(schema)));
    conn.batch_execute(&listen).map_err(db_error("listening"))?;
    while !stop.load(Ordering::Relaxed) {
        // Held only while a batch is applied: the handle may go away between.
        let Some(current) = handle() else {
            return Ok(());
        };
        let applied = apply_once(&mut conn, &current, schema)?;
        drop(current);
        if applied < BATCH {
            wait(&mut conn, stop);
        }
    }
    Ok(())
}

/// Starts the consumer a [`crate::ConfigBuilder::change_feed`] asks for: it ends
/// once every clone of the handle is gone.
pub(crate) fn spawn_weak(handle: crate::runtime::WeakCacheops, url: String, schema: String) {
    let spawned = std::thread::Builder::new()
        .name("cacheops-feed".into())
        .spawn(move || {
            let never = AtomicBool::new(false);
            // A fatal error is logged by `run_with`; the application goes on.
            let _ = run_with(&|| handle.upgrade(), &url, &schema, &never);
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cacheops: could not start the change feed consumer");
    }
}

/// Waits for a notification (or a second, or `stop`).
fn wait(conn: &mut PgConnection, stop: &AtomicBool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        // Only a query reads what the server sent; then notifications are pending.
        if conn.batch_execute("").is_err() {
            return;
        }
        if conn.notifications_iter().count() > 0 {
            return;
        }
        std::thread::sleep(POLL);
    }
}

impl Cacheops {
    /// Starts a change-feed consumer on a thread of its own, applying the outbox
    /// in `schema` (see [`install`]) of the database at `database_url` through
    /// this handle; it stops when the returned [`ChangeFeed`] is dropped.
    ///
    /// ```no_run
    /// let cache = cacheops::Cacheops::new(cacheops::Config::from_env()?)?;
    /// let _feed = cache.start_change_feed("postgres://localhost/app", cacheops::feed::DEFAULT_SCHEMA);
    /// # Ok::<_, cacheops::Error>(())
    /// ```
    pub fn start_change_feed(&self, database_url: &str, schema: &str) -> ChangeFeed {
        let stop = Arc::new(AtomicBool::new(false));
        let (handle, url, schema) = (self.clone(), database_url.to_string(), schema.to_string());
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cacheops-feed".into())
            .spawn(move || run(&handle, &url, &schema, &flag))
            .ok();
        ChangeFeed { stop, thread }
    }
}
