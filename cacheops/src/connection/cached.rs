//! [`CachedConnection`]: a Diesel connection that sees every statement, so every
//! write invalidates, whatever API made it, and transactions are tracked exactly.

use std::sync::{Arc, LazyLock};

use diesel::connection::{
    CacheSize, Connection, ConnectionSealed, Instrumentation, LoadConnection, SimpleConnection,
    TransactionManager, TransactionManagerStatus,
};
use diesel::expression::QueryMetadata;
use diesel::query_builder::{Query, QueryFragment, QueryId};
use diesel::result::{ConnectionError, ConnectionResult, QueryResult};

use super::effect::{self, Analysis, Effect, Step};
use super::touched::{self, Granular};
use super::tracked::Tracked;
use super::CacheConnection;
use crate::automatic::{self, CachedCursor, CachedRow, RawRows, ReplayBackend};
use crate::backend::{CacheBackend, Dialect};
use crate::deps::functions::Volatility;
use crate::memo::Memo;
use crate::protocol::read_through::Storable;
use crate::runtime::Cacheops;
use crate::transaction::{Owed, Pending, Queue};

/// A connection wrapper that invalidates after every write and tracks transactions.
///
/// Put it where your connection was (`CachedConnection<PgConnection>`,
/// `CachedConnection<SqliteConnection>`). Every statement is classified before it
/// runs:
/// - writes made with the cacheops helpers invalidate granularly, as usual;
/// - a plain INSERT or DELETE of one table through `execute()` runs with
///   `RETURNING *` (`RETURNING target.*` for `DELETE ... USING`) set on its parsed
///   statement and invalidates exactly the rows it touched;
/// - a plain UPDATE of one table through `execute()` (any filter, mass updates
///   included) is rewritten to return the old and the new state of every row it
///   changes, and invalidates both: a row moved from category 3 to 5 invalidates
///   queries on 3 and on 5, not those on 9. PostgreSQL needs the table's primary key
///   from its `#[derive(Cacheable)]` model for this;
/// - any other write (upserts, `UPDATE ... FROM`, statements with their own
///   RETURNING, `get_result(s)`, an UPDATE of a table without a model on
///   PostgreSQL, `batch_execute`, `sql_query` it cannot parse) invalidates every
///   cached query of the tables it writes, and SQL it cannot analyse invalidates
///   everything under the prefix, as does a statement calling a function that may
///   write (a user-defined `VOLATILE` one, `SELECT f()` included);
/// - transaction control sent as SQL (`BEGIN`, `SAVEPOINT`, `COMMIT`, ...) is
///   followed like Diesel's own transactions; `LOCK`, `SET`, `SHOW`, `ANALYZE`,
///   `VACUUM` and the like invalidate nothing.
///
/// A committed write returns `Ok` even when its invalidation cannot reach Redis
/// (see [`Cacheops::on_missed_invalidation`]).
///
/// Inside a transaction, invalidations wait for the outermost COMMIT and reads use
/// the cache only until the transaction first writes. A miss there is stored only
/// if the transaction reads the latest committed data at each statement
/// (PostgreSQL's READ COMMITTED, asked once per transaction on its first miss); a
/// REPEATABLE READ, SERIALIZABLE or SQLite transaction reads a snapshot that may be
/// older than the race fence, so its misses are served but not stored.
///
/// Extra cost, per statement: its SQL rendered once more and parsed (no round
/// trip). Statements per write path:
/// - INSERT / DELETE: the statement itself, returning its rows;
/// - UPDATE on PostgreSQL: one statement, `UPDATE ... FROM (SELECT ... FOR UPDATE)
///   ... RETURNING` old and new rows (no transaction needed);
/// - UPDATE on SQLite: `SELECT` of the old rows by the UPDATE's own WHERE, then
///   `UPDATE ... RETURNING`; inside your transaction that is two statements, outside
///   one it adds `BEGIN IMMEDIATE` and `COMMIT` (four round trips in all);
/// - other writes: the statement itself.
///
/// Then one Redis round trip per written table after a write outside a
/// transaction, or per queued write after COMMIT.
///
/// # Automatic caching (PostgreSQL)
///
/// Ordinary reads (`.load()`, `.first()`, `.get_result()`, `.count()`, `sql_query`)
/// are served from the cache, without `.cached()`, when the profile of the model
/// they are about enables their op. Diesel sends them all through `load`, so the
/// op is inferred from the SQL (once per distinct SQL text):
///
/// | SQL | op |
/// |---|---|
/// | `SELECT EXISTS (...)` | `exists` (model of the subquery's main table) |
/// | one `COUNT(...)`, no GROUP BY | `count` |
/// | only aggregate calls (`MAX`, `SUM`, ...), no GROUP BY | `aggregate` |
/// | one table, no join, every primary-key column pinned by `=` in the WHERE (`find(k)`, `.first()` or not) | `get` |
/// | anything else | `fetch` |
///
/// The model is the main table's (first of the outermost FROM). Reads of tables
/// without a model or profile, ops the profile leaves out, `just_enable` models
/// (cached only through `.cached()`), locking reads (`FOR UPDATE`), reads calling
/// a function whose result varies (`random()`, `now()`, ...), reads inside a
/// transaction once it has written, and the statements of `.cached()` calls and
/// cacheops helpers go straight to the database. The entry holds the rows as the
/// database sent them (names, type OIDs, bytes, NULLs), so every Rust type they are
/// loaded into shares it; it is read and filled exactly like `.cached()`'s (same
/// race fence, failure handling and stats) under keys of its own. Cost of a hit:
/// the SQL rendered and binds collected, one Redis round trip, the rows decoded.
/// A miss reads every row before handing the first one over (also in
/// row-by-row loading mode), since the result is stored whole.
///
/// On SQLite no read is cached automatically: Diesel cannot be handed a row rebuilt
/// from bytes there (see [`crate::connection::NoReplay`]); `.cached()` works as everywhere.
///
/// ```no_run
/// use cacheops::CachedConnection;
/// use diesel::prelude::*;
/// # diesel::table! { articles (id) { id -> Integer, views -> Integer } }
/// # fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = cacheops::Cacheops::new(cacheops::Config::from_env()?)?;
/// let mut conn = CachedConnection::new(PgConnection::establish("postgres://localhost/app")?, cache);
/// let views: i32 = articles::table.find(1).select(articles::views).first(&mut conn)?; // op get
/// diesel::sql_query("UPDATE articles SET views = 0").execute(&mut conn)?; // invalidates `articles`
/// # Ok(()) }
/// ```
pub struct CachedConnection<C> {
    inner: C,
    tracked: Tracked,
}

impl<C: CacheConnection> CachedConnection<C> {
    /// Wraps `inner`; invalidations go to `handle`. Asks the database once which
    /// database, user and schema search path the session reads (one statement),
    /// so that cache entries are never shared with a connection that reads other
    /// tables under the same names; it asks again after a statement that may
    /// change them (`SET`, `RESET`, `DISCARD`, `set_config`). The first session
    /// of each identity on a handle also reads which columns are collated other
    /// than by bytes (one more statement): conditions on them widen.
    pub fn new(inner: C, handle: Cacheops) -> Self {
        let mut conn = CachedConnection {
            inner,
            tracked: Tracked::new(handle),
        };
        conn.identity();
        conn
    }

    /// The session's hashed database identity, learned when unknown. When the
    /// database cannot tell, a fresh one each time: nothing read then is shared.
    fn identity(&mut self) -> u128 {
        if let Some(known) = self.tracked.identity {
            return known;
        }
        let identity = self.inner.__database_identity();
        let inner = &mut self.inner;
        learned_identity(&mut self.tracked, identity, || inner.__inexact_columns())
    }

    /// Whether `table` (as written) has the `columns` a rewrite relies on, asked
    /// of the catalog once per handle and session identity; "no" when it cannot
    /// tell (the write then widens to its table).
    fn has_columns(&mut self, table: &str, columns: &[&str]) -> bool {
        let identity = self.identity();
        let handle = self.tracked.handle.clone();
        let inner = &mut self.inner;
        handle
            .catalog()
            .has_columns(identity, table, || inner.__has_columns(table, columns))
    }

    /// The handle this connection invalidates through: an owned, cheap clone (a
    /// reference count), so that it can be used with the connection itself.
    ///
    /// ```no_run
    /// # use diesel::prelude::*;
    /// # diesel::table! { tags (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Insertable, Identifiable, AsChangeset, cacheops::Cacheable, serde::Serialize, serde::Deserialize)]
    /// # #[diesel(table_name = tags)]
    /// # #[cacheops(app = "blog")]
    /// # struct Tag { id: i32, name: String }
    /// # use cacheops::CachedQueryDsl;
    /// # fn run(conn: &mut cacheops::CachedConnection<PgConnection>, tag: &Tag) -> cacheops::Result<()> {
    /// conn.cache().insert::<Tag, _, _>(conn, tag)?;
    /// let all: Vec<Tag> = tags::table.cache().using(&conn.cache()).load(conn)?;
    /// # Ok(()) }
    /// ```
    pub fn cache(&self) -> Cacheops {
        self.tracked.handle.clone()
    }

    /// The wrapped connection. Statements run on it directly are not seen.
    pub fn inner(&mut self) -> &mut C {
        &mut self.inner
    }

    /// Runs a statement's effect through the transaction rules (see [`record`]).
    fn record(&mut self, effect: Effect) {
        settle(record(&mut self.tracked, effect));
    }

    /// A statement holding a COMMIT or ROLLBACK failed: the database is asked
    /// whether the transaction is still open. If not (or it cannot tell), every
    /// level ended, committed or not: what they owed is sent (widening is safe).
    fn failed_end(&mut self) {
        if self.inner.__transaction_open() != Some(true) {
            self.tracked.end_all().settle_uncertain();
        }
    }

    /// After a statement failed: a failed COMMIT or ROLLBACK ended the transaction
    /// (its levels are dropped), and a batch may have committed some of its writes
    /// before the failing one (SQLite runs each in turn), so its writes are
    /// invalidated anyway; widening is safe.
    fn record_failed(&mut self, effect: Effect) {
        if effect.ends_transaction() {
            self.failed_end();
        }
        self.record(writes_of(effect));
    }

    /// [`classify`] of `source` on this connection's backend.
    fn classify<T: QueryFragment<C::Backend> + ?Sized>(
        &self,
        source: &T,
    ) -> (Arc<Classified>, Option<String>) {
        classify::<C::Backend, T>(&self.tracked, source)
    }

    /// [`effect_of`] with functions unknown to cacheops looked up in the catalog.
    fn effect_of(&mut self, classified: &Classified) -> (Effect, Volatility) {
        let inner = &mut self.inner;
        let dialect = <C::Backend as CacheBackend>::DIALECT;
        effect_of(&self.tracked.handle, classified, dialect, |schema, own| {
            inner.__catalog_functions(schema, own)
        })
    }

    fn ran(&mut self, classified: &Classified, calls: Volatility) {
        ran(&mut self.tracked, classified, calls);
    }

    /// Brings the frames in line with the levels the database still has open.
    fn keep_open_levels(&mut self) {
        if let Some(depth) = diesel_depth::<C>(&mut self.inner) {
            self.tracked.keep_levels(depth);
        }
    }
}

impl<C: CacheConnection + LoadConnection> CachedConnection<C> {
    /// Runs `source` so that it returns the rows it touches, and invalidates them.
    fn execute_granular<T>(&mut self, source: &T, granular: &Granular) -> QueryResult<usize>
    where
        T: QueryFragment<C::Backend> + QueryId,
    {
        if let Granular::Update {
            table,
            check: Some((target, pk)),
            ..
        } = granular
        {
            if !self.has_columns(target, pk) {
                let count = self.inner.execute_returning_count(source)?;
                self.record(Effect::Tables(vec![table.clone()]));
                return Ok(count);
            }
        }
        let open = self.tracked.in_transaction();
        let (count, what) = touched::execute(&mut self.inner, source, granular, open)?;
        if count > 0 {
            let pending = Pending {
                handle: self.tracked.handle.clone(),
                what,
            };
            if let Some(now) = self.tracked.wrote(pending) {
                now.send_committed();
            }
        }
        Ok(count)
    }
}

impl<C: CacheConnection + LoadConnection> CacheConnection for CachedConnection<C> {
    fn __tracked(&mut self) -> Option<&mut Tracked> {
        Some(&mut self.tracked)
    }

    /// The wrapped connection's kind of write transaction, with a frame of ours.
    fn __begin_write(&mut self) -> QueryResult<()> {
        self.inner.__begin_write()?;
        self.tracked.begin();
        Ok(())
    }

    fn __identity(&mut self) -> Option<u128> {
        Some(self.identity())
    }

    fn __in_transaction(&mut self) -> bool {
        self.tracked.in_transaction() || self.inner.__in_transaction()
    }

    fn __statements_read_latest(&mut self) -> bool {
        self.inner.__statements_read_latest()
    }

    fn __catalog_functions(
        &mut self,
        schema: Option<&str>,
        name: &str,
    ) -> Option<Vec<(String, String)>> {
        self.inner.__catalog_functions(schema, name)
    }

    fn __fills_may_store(&mut self) -> bool {
        let open = self.tracked.in_transaction();
        Tracked::fills_may_store(open, &self.tracked.reads_latest, &mut self.inner)
    }
}

impl<C: Connection> ConnectionSealed for CachedConnection<C> {}

/// What diesel-async's `SyncConnectionWrapper` needs of a connection: so that
/// `SyncConnectionWrapper<CachedConnection<SqliteConnection>>` is SQLite's
/// async connection that sees every statement.
impl<C> diesel::connection::WithMetadataLookup for CachedConnection<C>
where
    C: CacheConnection + LoadConnection + diesel::connection::WithMetadataLookup,
{
    fn metadata_lookup(
        &mut self,
    ) -> &mut <C::Backend as diesel::sql_types::TypeMetadata>::MetadataLookup {
        self.inner.metadata_lookup()
    }
}

impl<C: CacheConnection> SimpleConnection for CachedConnection<C> {
    fn batch_execute(&mut self, query: &str) -> QueryResult<()> {
        let classified = match self.tracked.in_helper() {
            true => Classified::read(),
            false => classified(query, <C::Backend as CacheBackend>::DIALECT),
        };
        let (effect, calls) = self.effect_of(&classified);
        match self.inner.batch_execute(query) {
            Ok(()) => {
                self.ran(&classified, calls);
                self.record(effect);
                Ok(())
            }
            Err(e) => {
                self.record_failed(effect);
                Err(e)
            }
        }
    }
}

impl<C: CacheConnection + LoadConnection> Connection for CachedConnection<C> {
    type Backend = C::Backend;
    type TransactionManager = CachedTransactionManager;

    /// Connects with the process-wide handle ([`crate::global`]), as pools do.
    fn establish(database_url: &str) -> ConnectionResult<Self> {
        let handle = crate::global().map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
        Ok(CachedConnection::new(
            C::establish(database_url)?,
            handle.clone(),
        ))
    }

    /// A plain INSERT or DELETE of one table runs with `RETURNING *` set on it, so
    /// that exactly the rows it created or removed are invalidated (granular, no
    /// extra statement); other writes invalidate their tables.
    fn execute_returning_count<T>(&mut self, source: &T) -> QueryResult<usize>
    where
        T: QueryFragment<Self::Backend> + QueryId,
    {
        let (classified, _) = self.classify(source);
        let (effect, calls) = self.effect_of(&classified);
        match &classified.granular {
            Some(granular) if calls != Volatility::MayWrite => {
                return self.execute_granular(source, granular)
            }
            _ => {}
        }
        let count = self.inner.execute_returning_count(source);
        match count {
            Ok(_) => {
                self.ran(&classified, calls);
                self.record(effect);
            }
            Err(_) if effect.ends_transaction() => self.failed_end(),
            Err(_) => {}
        }
        count
    }

    fn transaction_state(&mut self) -> &mut Tracked {
        &mut self.tracked
    }

    fn instrumentation(&mut self) -> &mut dyn Instrumentation {
        self.inner.instrumentation()
    }

    fn set_instrumentation(&mut self, instrumentation: impl Instrumentation) {
        self.inner.set_instrumentation(instrumentation);
    }

    fn set_prepared_statement_cache_size(&mut self, size: CacheSize) {
        self.inner.set_prepared_statement_cache_size(size);
    }
}

impl<C, B> LoadConnection<B> for CachedConnection<C>
where
    C: CacheConnection + LoadConnection + LoadConnection<B>,
{
    type Cursor<'conn, 'query>
        = SettlingCursor<CachedCursor<<C as LoadConnection<B>>::Cursor<'conn, 'query>, Replayed<C>>>
    where
        Self: 'conn;
    type Row<'conn, 'query>
        = CachedRow<<C as LoadConnection<B>>::Row<'conn, 'query>, Replayed<C>>
    where
        Self: 'conn;

    /// A read its model's profile caches automatically is served from the cache
    /// (see [`CachedConnection`]). A statement that writes through `load`
    /// (`... RETURNING`) may run only while its rows are read (SQLite steps
    /// lazily), so outside a transaction its invalidation is sent when the cursor
    /// is exhausted or dropped; inside one it is queued at once.
    fn load<'conn, 'query, T>(
        &'conn mut self,
        source: T,
    ) -> QueryResult<Self::Cursor<'conn, 'query>>
    where
        T: Query + QueryFragment<Self::Backend> + QueryId + 'query,
        Self::Backend: QueryMetadata<T::SqlType>,
    {
        let (classified, sql) = self.classify(&source);
        let (effect, calls) = self.effect_of(&classified);
        // A read whose result varies from call to call is never cached unasked.
        let plan = match (&effect, sql, calls) {
            (Effect::Read, Some(sql), Volatility::Stable) => {
                let identity = crate::protocol::key::identity(
                    self.tracked.handle.config().database,
                    Some(self.identity()),
                );
                let eligible = self.tracked.reads_may_be_automatic();
                automatic::plan(&self.tracked.handle, eligible, identity, sql, &source)
            }
            _ => None,
        };
        self.ran(&classified, calls);
        if let Some(plan) = plan {
            let open = self.tracked.in_transaction();
            let (inner, reads_latest) = (&mut self.inner, &self.tracked.reads_latest);
            let run = |storable: &Storable| {
                let rows = RawRows::capture::<C::Backend, _>(LoadConnection::<B>::load(
                    &mut *inner,
                    source,
                )?)?;
                storable.answer(|| Tracked::fills_may_store(open, reads_latest, inner));
                Ok(rows)
            };
            let rows = automatic::serve::<C::Backend>(&self.tracked.handle, plan, run)?;
            return Ok(SettlingCursor::new(
                CachedCursor::Replayed(rows.into_iter()),
                None,
            ));
        }
        let owed = match effect {
            Effect::Read => None,
            // Raw transaction control read as rows: followed once it has run.
            Effect::Steps(_) => {
                let inner = LoadConnection::<B>::load(&mut self.inner, source)?;
                settle(record(&mut self.tracked, effect));
                return Ok(SettlingCursor::new(CachedCursor::Live(inner), None));
            }
            effect => self.tracked.wrote(pending_of(&self.tracked, effect)),
        };
        let inner = LoadConnection::<B>::load(&mut self.inner, source)?;
        Ok(SettlingCursor::new(CachedCursor::Live(inner), owed))
    }
}

/// After a statement that ran: one that may have changed the session's
/// database identity makes it learned again before the next cached read.
pub(crate) fn ran(tracked: &mut Tracked, classified: &Classified, calls: Volatility) {
    let analysis = &classified.analysis;
    if analysis.session || changed_by(classified, calls) {
        tracked.session_changed();
    }
    if analysis.temp {
        tracked.made_private();
    }
}

/// Whether a statement may change which database, user or schemas the
/// session reads (its identity), other than by a session statement: one not
/// understood, or calling a function that may write (it may also set the
/// search path with `set_config`).
fn changed_by(classified: &Classified, calls: Volatility) -> bool {
    classified.analysis.effect == Effect::Unknown || calls == Volatility::MayWrite
}

/// Whether running `classified` may leave the session's identity to be
/// learned again (see [`ran`]).
#[cfg(all(feature = "async", feature = "postgres"))]
pub(crate) fn changes_session(classified: &Classified, calls: Volatility) -> bool {
    let analysis = &classified.analysis;
    analysis.session || analysis.temp || changed_by(classified, calls)
}

/// The write effect of a statement, and how to run it so that it returns the
/// rows it touches (see [`touched::granular`]); its SQL when it was rendered.
/// Inside a helper every statement is a read: the helper invalidates itself.
pub(crate) fn classify<DB: CacheBackend, T: QueryFragment<DB> + ?Sized>(
    tracked: &Tracked,
    source: &T,
) -> (Arc<Classified>, Option<String>) {
    if tracked.in_helper() {
        return (Classified::read(), None);
    }
    match DB::render_sql(source) {
        Ok(sql) => (classified(&sql, DB::DIALECT), Some(sql)),
        Err(_) => (Classified::of(Effect::Unknown), None),
    }
}

/// The effect of a statement once the functions it calls are judged (built-ins
/// by name, others from the catalog through `lookup`, once per handle; one it
/// cannot look up may write): a function that may write makes it a write of
/// anything. Also the worst of those functions.
pub(crate) fn effect_of(
    handle: &Cacheops,
    classified: &Classified,
    dialect: Dialect,
    mut lookup: impl FnMut(Option<&str>, &str) -> Option<Vec<(String, String)>>,
) -> (Effect, Volatility) {
    let judge = |name: &String| handle.catalog().volatility(name, dialect, &mut lookup);
    let calls = classified.analysis.calls.iter().map(judge).max();
    let calls = calls.unwrap_or(Volatility::Stable);
    let effect = classified.analysis.effect.clone();
    match calls {
        Volatility::MayWrite => (effect.with_unknown_writes(), calls),
        _ => (effect, calls),
    }
}

/// The hashed identity of a session whose database reported `identity` (see
/// [`CachedConnection::new`]), kept in `tracked`; the first session of each
/// database on a handle also learns its collations through `inexact`. `None`
/// (the database could not tell): a fresh identity, not kept, so nothing read
/// then is shared (asked again next time: an aborted transaction, say).
pub(crate) fn learned_identity(
    tracked: &mut Tracked,
    identity: Option<String>,
    inexact: impl FnOnce() -> Option<Vec<(String, String)>>,
) -> u128 {
    let Some(identity) = identity else {
        return crate::protocol::layout::unique();
    };
    let learned = xxhash_rust::xxh3::xxh3_128(identity.as_bytes()) ^ tracked.private_salt();
    tracked.identity = Some(learned);
    let database = collations_of(&identity);
    tracked.handle.catalog().learn_collations(database, inexact);
    learned
}

/// The database whose collations a session reporting `identity` reads:
/// collations are the database's, whatever schemas a session reads.
pub(crate) fn collations_of(identity: &str) -> u128 {
    let database = identity.split('\u{1f}').next().unwrap_or_default();
    xxhash_rust::xxh3::xxh3_128(database.as_bytes())
}

/// How many levels Diesel's transaction manager counts on `conn`; `None` when
/// its status is broken (it cannot tell).
fn diesel_depth<C: CacheConnection>(conn: &mut C) -> Option<usize> {
    let status = C::TransactionManager::transaction_manager_status_mut(conn);
    let depth = status.transaction_depth().ok()?;
    Some(depth.map_or(0, |d| d.get() as usize))
}

/// The rows `C`'s backend replays from the cache.
type Replayed<C> = <<C as Connection>::Backend as ReplayBackend>::Replayed;

/// What a statement does to the data, and how to run it so that it returns the
/// rows it touches; worked out once per SQL text (parsing a write costs more than
/// the database takes to run it).
#[derive(Debug)]
pub(crate) struct Classified {
    /// Its effect, the functions it calls, what it does to the session.
    pub(crate) analysis: Analysis,
    pub(crate) granular: Option<Granular>,
}

impl Classified {
    /// An effect known without looking at SQL (no granular way to run it).
    pub(crate) fn of(effect: Effect) -> Arc<Classified> {
        Classified::shared(Analysis::of(effect))
    }

    fn shared(analysis: Analysis) -> Arc<Classified> {
        Arc::new(Classified {
            analysis,
            granular: None,
        })
    }

    /// A statement that changes no rows (shared: every read gets it).
    pub(crate) fn read() -> Arc<Classified> {
        static READ: LazyLock<Arc<Classified>> = LazyLock::new(|| Classified::of(Effect::Read));
        READ.clone()
    }

    /// `SET`, `RESET` or `DISCARD`: no rows, but maybe the session's schemas.
    fn session() -> Arc<Classified> {
        static SESSION: LazyLock<Arc<Classified>> = LazyLock::new(|| {
            let analysis = Analysis::of(Effect::Read);
            Classified::shared(Analysis {
                session: true,
                ..analysis
            })
        });
        SESSION.clone()
    }
}

pub(crate) fn classified(sql: &str, dialect: Dialect) -> Arc<Classified> {
    static MEMO: LazyLock<Memo<Arc<Classified>>> = LazyLock::new(Memo::default);
    // A read that cannot call a function is told by its text: it needs no memo,
    // and does not fill the memo with every distinct SELECT text.
    match effect::unparsed(sql) {
        // A temporary table makes the session private: worked out below, once.
        Some(read) if !read.temp => {
            return match read.session {
                true => Classified::session(),
                false => Classified::read(),
            }
        }
        _ => {}
    }
    MEMO.get_or(sql, dialect, || {
        let mut analysis = effect::analyse(sql, dialect);
        let granular = touched::granular(sql, &analysis.effect, dialect);
        analysis.session |= analysis.calls.iter().any(|c| c.ends_with("set_config"));
        Arc::new(Classified { analysis, granular })
    })
}

/// Runs a statement's effect through the transaction rules: its writes'
/// invalidations (due now outside a transaction: the statement has committed),
/// and the levels raw transaction control opened or ended. What is due now is
/// sent by the caller, blocking ([`settle`]) or async.
pub(crate) fn record(tracked: &mut Tracked, effect: Effect) -> Vec<Due> {
    let mut due = Vec::new();
    record_into(tracked, effect, &mut due);
    due
}

fn record_into(tracked: &mut Tracked, effect: Effect, due: &mut Vec<Due>) {
    match effect {
        Effect::Read => {}
        Effect::Steps(steps) => steps.into_iter().for_each(|s| step(tracked, s, due)),
        write => {
            if let Some(now) = tracked.wrote(pending_of(tracked, write)) {
                due.push(Due::Write(now));
            }
        }
    }
}

fn step(tracked: &mut Tracked, step: Step, due: &mut Vec<Due>) {
    match step {
        Step::Write(effect) => record_into(tracked, effect, due),
        control => {
            if let Some(committed) = tracked.control(&control) {
                due.push(Due::Committed(committed));
            }
        }
    }
}

/// What a statement that ran leaves to send now.
pub(crate) enum Due {
    /// A write outside any transaction: committed.
    Write(Pending),
    /// What a raw COMMIT ended owes.
    Committed(Queue),
}

/// Sends what is due, blocking.
fn settle(due: Vec<Due>) {
    for due in due {
        match due {
            Due::Write(now) => now.send_committed(),
            Due::Committed(queue) => queue.settle(),
        }
    }
}

/// [`settle`] on the async stores: every invalidation due, then the hooks of
/// what committed. Dropped part-way, what it had not sent is owed.
#[cfg(all(feature = "async", feature = "postgres"))]
pub(crate) async fn settle_async(due: Vec<Due>) {
    let mut queue = Queue::default();
    for due in due {
        match due {
            Due::Write(now) => queue.push(now),
            Due::Committed(committed) => queue.append(committed),
        }
    }
    queue.settle_async().await;
}

/// The writes among `steps` (a batch that failed part-way may have committed
/// some of them; widening is safe).
pub(crate) fn writes_of(effect: Effect) -> Effect {
    match effect {
        Effect::Steps(steps) => Effect::Steps(
            steps
                .into_iter()
                .filter(|s| matches!(s, Step::Write(_)))
                .collect(),
        ),
        other => other,
    }
}

pub(crate) fn pending_of(tracked: &Tracked, effect: Effect) -> Pending {
    let what = match effect {
        Effect::Tables(tables) => Owed::Tables(tables),
        Effect::Read | Effect::Unknown | Effect::Steps(_) => Owed::All,
    };
    Pending {
        handle: tracked.handle.clone(),
        what,
    }
}

/// The cursor of [`CachedConnection`]: the wrapped connection's, plus the
/// invalidation a writing statement owes once it has run.
pub struct SettlingCursor<I> {
    inner: I,
    owed: Option<Pending>,
}

impl<I> SettlingCursor<I> {
    fn new(inner: I, owed: Option<Pending>) -> Self {
        SettlingCursor { inner, owed }
    }

    /// Sends what the committed statement owes (a failure is reported by the
    /// handle, see [`Pending::send_committed`]).
    fn settle(&mut self) {
        if let Some(owed) = self.owed.take() {
            owed.send_committed();
        }
    }
}

impl<I: Iterator> Iterator for SettlingCursor<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next();
        if item.is_none() {
            self.settle();
        }
        item
    }
}

impl<I> Drop for SettlingCursor<I> {
    fn drop(&mut self) {
        self.settle();
    }
}

/// The transaction manager of [`CachedConnection`]: the wrapped connection's own,
/// plus the frames of invalidations each level owes.
#[derive(Debug, Default)]
pub struct CachedTransactionManager;

impl<C: CacheConnection + LoadConnection> TransactionManager<CachedConnection<C>>
    for CachedTransactionManager
{
    type TransactionStateData = Tracked;

    fn begin_transaction(conn: &mut CachedConnection<C>) -> QueryResult<()> {
        C::TransactionManager::begin_transaction(&mut conn.inner)?;
        conn.tracked.begin();
        Ok(())
    }

    fn rollback_transaction(conn: &mut CachedConnection<C>) -> QueryResult<()> {
        let result = C::TransactionManager::rollback_transaction(&mut conn.inner);
        conn.keep_open_levels();
        result
    }

    fn commit_transaction(conn: &mut CachedConnection<C>) -> QueryResult<()> {
        if let Err(e) = C::TransactionManager::commit_transaction(&mut conn.inner) {
            conn.keep_open_levels();
            return Err(e);
        }
        let depth = diesel_depth::<C>(&mut conn.inner).unwrap_or(0);
        conn.tracked.committed(depth).settle();
        Ok(())
    }

    fn transaction_manager_status_mut(
        conn: &mut CachedConnection<C>,
    ) -> &mut TransactionManagerStatus {
        C::TransactionManager::transaction_manager_status_mut(&mut conn.inner)
    }
}
