//! The change feed: writes the application does not make (cascades, triggers,
//! `psql`, other services) invalidate too. PostgreSQL and SQLite.
//!
//! Triggers installed by [`install`] record every committed row change of the
//! tables of registered models in an outbox table, in the same transaction as the
//! change; a consumer ([`apply_once`], [`ChangeFeed`], `cacheops-cli feed run`)
//! reads outbox rows in order, invalidates the old and the new state of each row
//! exactly as a write through cacheops would, and only then deletes them. If
//! Redis fails, nothing is deleted: the rows wait for the next try. A consumer
//! that was down finds them all on restart. States that no longer read as the
//! table's rows (the schema changed since) invalidate their whole table: the feed
//! widens, it never skips.
//!
//! - PostgreSQL (`postgres.rs`): consumers claim rows with `FOR UPDATE SKIP
//!   LOCKED` (several share the work, none applies a row twice) and wake on the
//!   triggers' `NOTIFY`.
//! - SQLite (`sqlite.rs`): consumers read, apply, then delete what they read in a
//!   short write transaction (two consumers may apply a row twice, harmlessly; the
//!   database's write lock is never held across Redis), and poll
//!   `PRAGMA data_version`, which moves when another connection commits.
//!
//! The application's own writes are recorded too and invalidated a second time:
//! harmless (a stamp deleted twice), and measured in the benchmark. Skipping them
//! is not safe: the triggers cannot tell a statement cacheops invalidated from the
//! cascade or trigger it set off in the same session.

mod plan;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[doc(hidden)]
pub use plan::quote;
pub use plan::{refuse_problems, Modelled, Plan, DEFAULT_SCHEMA, VERSION};
#[cfg(feature = "postgres")]
pub use postgres::{install_sql, uninstall_sql};

use crate::error::{Error, ErrorKind, Result};
use crate::runtime::Cacheops;
use crate::value::Value;

/// Outbox rows one transaction of the consumer claims at most.
pub const BATCH: usize = 1000;

/// A database the change feed runs on: `PgConnection` or `SqliteConnection`
/// (sealed).
pub trait FeedConnection: sealed::Feed {}

#[cfg(feature = "postgres")]
impl FeedConnection for diesel::pg::PgConnection {}
#[cfg(feature = "sqlite")]
impl FeedConnection for diesel::sqlite::SqliteConnection {}

pub(crate) mod sealed {
    use std::sync::atomic::AtomicBool;

    use super::{Modelled, Plan};
    use crate::error::Result;
    use crate::runtime::Cacheops;

    /// What each database does for the feed; not nameable outside the crate.
    pub trait Feed: diesel::Connection + Sized + 'static {
        /// See [`super::plan_for`].
        fn plan(&mut self, schema: &str, models: &[Modelled]) -> Result<Plan>;
        /// Fails with a [`crate::ErrorKind::Config`] error unless the outbox of
        /// `schema` is the one this version reads.
        fn check_installed(&mut self, schema: &str) -> Result<()>;
        /// See [`super::apply_once`].
        fn apply_once(&mut self, handle: &Cacheops, schema: &str) -> Result<usize>;
        /// Makes the connection ready to [`Feed::wait`] on.
        fn listen(&mut self, schema: &str) -> Result<()>;
        /// Waits for news of outbox rows (a second at most, or until `stop`).
        fn wait(&mut self, stop: &AtomicBool);
    }
}

/// Which tables of this program's registered models `conn`'s database has (the
/// rest skipped, each with the reason), what stands in the way, and the SQL that
/// installs and removes the feed.
///
/// ```no_run
/// use cacheops::feed;
/// use diesel::Connection;
/// let mut conn = diesel::pg::PgConnection::establish("postgres://localhost/app")?;
/// let plan = feed::plan(&mut conn, feed::DEFAULT_SCHEMA)?;
/// println!("{}", plan.sql); // to review, or to paste into a Diesel migration
/// feed::refuse_problems(&plan)?; // a model column the table lacks, a foreign outbox
/// feed::install(&mut conn, feed::DEFAULT_SCHEMA)?;
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
pub fn plan<C: FeedConnection>(conn: &mut C, schema: &str) -> Result<Plan> {
    let models: Vec<Modelled> = crate::model::models().map(Modelled::from).collect();
    plan_for(conn, schema, &models)
}

/// [`plan`] for `models` (the CLI's come from the registry in Redis).
pub fn plan_for<C: FeedConnection>(
    conn: &mut C,
    schema: &str,
    models: &[Modelled],
) -> Result<Plan> {
    conn.plan(schema, models)
}

/// Installs the feed for every table of a registered model that `conn`'s
/// database has, in one transaction; the plan it ran. Refuses a plan with
/// problems ([`Plan::problems`]).
pub fn install<C: FeedConnection>(conn: &mut C, schema: &str) -> Result<Plan> {
    let plan = plan(conn, schema)?;
    refuse_problems(&plan)?;
    apply_sql(conn, &plan.sql)?;
    Ok(plan)
}

/// Removes what [`install`] created (outbox rows not yet applied go with it: run
/// a consumer first).
pub fn uninstall<C: FeedConnection>(conn: &mut C, schema: &str) -> Result<Plan> {
    let plan = plan(conn, schema)?;
    apply_sql(conn, &plan.uninstall_sql)?;
    Ok(plan)
}

/// Runs `sql` (an install or uninstall script) in one transaction.
pub fn apply_sql<C: FeedConnection>(conn: &mut C, sql: &str) -> Result<()> {
    conn.batch_execute(&format!("BEGIN;\n{sql}COMMIT;"))
        .map_err(|e| {
            let _ = conn.batch_execute("ROLLBACK");
            Error::new(ErrorKind::Database, "installing the change feed failed").with_source(e)
        })
}

/// Applies up to [`BATCH`] outbox rows of the feed in `schema` through `handle`:
/// read, invalidated, deleted. How many rows it applied; an error leaves every
/// row it read in the outbox.
pub fn apply_once<C: FeedConnection>(
    conn: &mut C,
    handle: &Cacheops,
    schema: &str,
) -> Result<usize> {
    conn.apply_once(handle, schema)
}

/// What one table's outbox rows invalidate.
enum Invalidation {
    /// These states of its rows, as `(column, value)` pairs.
    Rows(Vec<Vec<(String, Value)>>),
    /// The whole table: a TRUNCATE, or states that cannot be read.
    Table,
}

/// `changes` in runs of one table (by `table`), each turned into its table's
/// name and invalidation by `invalidation`.
fn per_table<T>(
    changes: &[T],
    table: impl Fn(&T) -> &str,
    mut invalidation: impl FnMut(&[T]) -> (String, Invalidation),
) -> Vec<(String, Invalidation)> {
    changes
        .chunk_by(|a, b| table(a) == table(b))
        .map(&mut invalidation)
        .collect()
}

/// Sends each table's invalidation through `handle`.
fn send(handle: &Cacheops, claimed: Vec<(String, Invalidation)>) -> Result<()> {
    use crate::protocol::invalidate::{named, send_rows, send_table};
    let core = handle.core();
    for (table, invalidation) in claimed {
        match invalidation {
            Invalidation::Rows(rows) => send_rows(core, &table, &named(&table, &rows))?,
            Invalidation::Table => send_table(core, &table)?,
        }
    }
    Ok(())
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

/// How long a consumer waits between looks at an empty outbox; news from the
/// triggers (PostgreSQL) or of a commit (SQLite) cuts the wait short.
const POLL: Duration = Duration::from_millis(5);

/// Runs a consumer until `stop` is set: connects to `database_url` (a
/// `postgres://` URL, or a SQLite path), applies the outbox, waits for news of
/// more, reconnects after a transient failure (a second later). Logs what it
/// does. Returns an [`ErrorKind::Config`] error, without claiming a row, when
/// `schema` holds no outbox or one of another version: that needs an operator,
/// not a retry.
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

/// Connects to `url` with the connection type its scheme names, then consumes.
fn run_connected(
    handle: &dyn Fn() -> Option<Cacheops>,
    url: &str,
    schema: &str,
    stop: &AtomicBool,
) -> Result<()> {
    use crate::config::DatabaseUrl;
    match DatabaseUrl::parse(url) {
        #[cfg(feature = "postgres")]
        Some(DatabaseUrl::Postgres(url)) => {
            return consume(
                connect::<diesel::pg::PgConnection>(url)?,
                handle,
                schema,
                stop,
            )
        }
        #[cfg(feature = "sqlite")]
        Some(DatabaseUrl::Sqlite(path)) => {
            let conn = connect::<diesel::sqlite::SqliteConnection>(path)?;
            return consume(conn, handle, schema, stop);
        }
        _ => {}
    }
    Err(Error::new(
        ErrorKind::Config,
        format!("change feed: unsupported database URL `{url}` (postgres:// or a SQLite path)"),
    ))
}

fn connect<C: FeedConnection>(url: &str) -> Result<C> {
    C::establish(url)
        .map_err(|e| Error::new(ErrorKind::Database, "change feed: cannot connect").with_source(e))
}

/// Applies the outbox batch after batch, waiting for news when it is drained.
fn consume<C: FeedConnection>(
    mut conn: C,
    handle: &dyn Fn() -> Option<Cacheops>,
    schema: &str,
    stop: &AtomicBool,
) -> Result<()> {
    conn.check_installed(schema)?;
    conn.listen(schema)?;
    while !stop.load(Ordering::Relaxed) {
        // Held only while a batch is applied: the handle may go away between.
        let Some(current) = handle() else {
            return Ok(());
        };
        let applied = conn.apply_once(&current, schema)?;
        drop(current);
        if applied < BATCH {
            conn.wait(stop);
        }
    }
    Ok(())
}

inventory::submit!(crate::runtime::OnStart(start_configured));

/// Starts the consumer a [`crate::ConfigBuilder::change_feed`] asks for, if any.
fn start_configured(handle: &Cacheops) {
    if let Some((url, schema)) = handle.config().change_feed.clone() {
        spawn_weak(handle.downgrade(), url, schema);
    }
}

/// Starts a consumer that ends once every clone of the handle is gone.
fn spawn_weak(handle: crate::runtime::WeakCacheops, url: String, schema: String) {
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
