//! [`AsyncCachedConnection`]: diesel-async's PostgreSQL connection seeing every
//! statement, as [`CachedConnection`](super::CachedConnection) does for
//! Diesel's: the same classification, granular rewrites, transaction frames and
//! automatic caching (`cached.rs`, `touched.rs`, `tracked.rs`), driven by
//! futures, with invalidations on the handle's async store.

use std::future::Future;

use diesel::connection::{CacheSize, Instrumentation, TransactionManagerStatus};
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::{AsQuery, CollectedQuery, QueryFragment, QueryId};
use diesel::result::{ConnectionError, ConnectionResult, QueryResult};
use diesel::sql_types::Text;
use diesel_async::{
    AnsiTransactionManager, AsyncConnection, AsyncConnectionCore, AsyncPgConnection, RunQueryDsl,
    SimpleAsyncConnection, TransactionManager,
};
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};

use super::cached::{
    changes_session, classify, collations_of, effect_of, learned_identity, pending_of, ran, record,
    settle_async, Classified,
};
use super::catalog::{
    columns_found, functions_found, pairs, pg_columns, pg_functions, reads_latest_at, Count,
    Functions, PG_IDENTITY, PG_INEXACT_COLUMNS, PG_ISOLATION,
};
use super::effect::{Effect, Step};
use super::touched::{DecodeRow, Granular, Named, Pair, WithSql};
use super::tracked::Tracked;
use super::AsyncCacheConnection;
use crate::automatic::{self, CachedRow, RawRows, ReplayBackend};
use crate::backend::Dialect;
use crate::connection::rewrite::UpdatePlan;
use crate::deps::functions::Volatility;
use crate::error::Error;
use crate::runtime::Cacheops;
use crate::transaction::{Owed, Pending};

type PgRow = <AsyncPgConnection as AsyncConnectionCore>::Row<'static, 'static>;
type Replayed = <diesel::pg::Pg as ReplayBackend>::Replayed;

/// An async connection wrapper that invalidates after every write and tracks
/// transactions: [`CachedConnection`](super::CachedConnection) for
/// diesel-async's `AsyncPgConnection`, with the same rules (read its docs):
/// every write through `diesel_async::RunQueryDsl`, `batch_execute` or
/// `sql_query` invalidates (INSERT/DELETE/UPDATE of one table granularly, in one
/// statement), transactions queue invalidations until the outermost COMMIT
/// (`conn.transaction(...)`, raw `BEGIN`/`COMMIT` too), and ordinary reads are
/// cached automatically by their model's profile.
///
/// Differences, each widening, never narrowing: functions cacheops does not
/// know by name are not looked up in the catalog (a statement calling one is a
/// write of anything, and a read calling one is not cached); an UPDATE of a
/// schema-qualified table invalidates its table; a miss inside a transaction is
/// served but not stored; after a COMMIT that failed, the transaction's writes
/// are invalidated as if it had committed.
///
/// ```no_run
/// use cacheops::connection::AsyncCachedConnection;
/// use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
/// # async fn run(cache: cacheops::Cacheops) -> Result<(), Box<dyn std::error::Error>> {
/// let inner = AsyncPgConnection::establish("postgres://localhost/app").await?;
/// let mut conn = AsyncCachedConnection::new(inner, cache).await;
/// diesel::sql_query("UPDATE articles SET views = 0").execute(&mut conn).await?;
/// # Ok(()) }
/// ```
pub struct AsyncCachedConnection<C> {
    inner: C,
    tracked: Tracked,
}

impl AsyncCachedConnection<AsyncPgConnection> {
    /// Wraps `inner`; invalidations go to `handle`. Asks the database which
    /// database, user and schema search path the session reads, and which
    /// columns compare by a collation other than bytes (two statements), as
    /// [`CachedConnection::new`](super::CachedConnection::new) does.
    pub async fn new(inner: AsyncPgConnection, handle: Cacheops) -> Self {
        let mut conn = AsyncCachedConnection {
            inner,
            tracked: Tracked::new(handle),
        };
        learn_identity(&mut conn.inner, &mut conn.tracked).await;
        conn
    }

    /// The handle this connection invalidates through (a cheap clone).
    pub fn cache(&self) -> Cacheops {
        self.tracked.handle.clone()
    }

    /// The wrapped connection. Statements run on it directly are not seen.
    pub fn inner(&mut self) -> &mut AsyncPgConnection {
        &mut self.inner
    }

    /// An error for every statement once the transaction state is unknown.
    fn refused(&self) -> Option<diesel::result::Error> {
        self.tracked
            .broken
            .then_some(diesel::result::Error::BrokenTransactionManager)
    }

    /// `source` as an owned statement (rendered as `sql`), when the catalog
    /// has to be asked about it first, as `classified` says (functions the
    /// handle has not judged, or whether the schema-qualified table an UPDATE
    /// names has its model's primary key): it is asked
    /// ([`AsyncCachedConnection::judge`]), then the owned statement runs,
    /// classified with the answers. `None` when nothing is left to ask, or when
    /// its binds cannot be owned (a custom type: it then runs with what is
    /// unknown taken widely).
    fn judge_first<T: QueryFragment<diesel::pg::Pg> + ?Sized>(
        &self,
        classified: &Classified,
        source: &T,
        sql: &Option<String>,
    ) -> Option<Owned> {
        let catalog = self.tracked.handle.catalog();
        let calls = &classified.analysis.calls;
        let unjudged = !catalog.unjudged(calls, Dialect::Postgres).is_empty();
        let check = self.column_check(classified);
        let unchecked = check.is_some_and(|(_, _, known)| known.is_none());
        if !unjudged && !unchecked {
            return None;
        }
        owned(source, sql.clone()?)
    }

    /// The schema-qualified target of a granular UPDATE, the primary key its
    /// rewrite relies on, and whether the catalog said that table has it
    /// (`None`: not asked yet). `None` when there is nothing to check, or the
    /// session's identity (which keys the answer) is unknown.
    fn column_check<'c>(
        &self,
        classified: &'c Classified,
    ) -> Option<(&'c str, &'static [&'static str], Option<bool>)> {
        let Some(Granular::Update {
            check: Some((target, pk)),
            ..
        }) = &classified.granular
        else {
            return None;
        };
        let identity = self.tracked.identity?;
        let known = self
            .tracked
            .handle
            .catalog()
            .knows_columns(identity, target);
        Some((target, pk, known))
    }

    /// Asks the catalog what [`AsyncCachedConnection::judge_first`] found
    /// unknown, and remembers the answers in the handle's catalog.
    async fn judge(&mut self, classified: &Classified) {
        judge_functions(&mut self.inner, &self.tracked.handle, classified).await;
        let (Some((target, pk, None)), Some(identity)) =
            (self.column_check(classified), self.tracked.identity)
        else {
            return;
        };
        let found = pg_columns(target, pk)
            .get_result::<Count>(&mut self.inner)
            .await;
        let found = found.ok().and_then(|count| columns_found(count, pk));
        self.tracked
            .handle
            .catalog()
            .has_columns(identity, target, || found);
    }

    /// How a statement is classified here (its functions judged as far as the
    /// handle's catalog knows them: see [`judge_functions`]).
    fn classified<T: QueryFragment<diesel::pg::Pg> + ?Sized>(
        &self,
        source: &T,
    ) -> (
        std::sync::Arc<Classified>,
        Option<String>,
        Effect,
        Volatility,
    ) {
        let (classified, sql) = classify::<diesel::pg::Pg, T>(&self.tracked, source);
        let dialect = Dialect::Postgres;
        let (effect, calls) = effect_of(&self.tracked.handle, &classified, dialect, |_, _| None);
        (classified, sql, effect, calls)
    }
}

/// Asks PostgreSQL what each function `classified` calls and `handle` has not
/// judged does, and remembers the answers in the handle's catalog (a failed
/// question is not remembered: the function may then write anything). The
/// blocking connection asks inside the judging; an async one asks first.
async fn judge_functions(
    inner: &mut AsyncPgConnection,
    handle: &Cacheops,
    classified: &Classified,
) {
    let catalog = handle.catalog();
    for name in catalog.unjudged(&classified.analysis.calls, Dialect::Postgres) {
        let (schema, own) = crate::deps::functions::schema_and_name(&name);
        let found = pg_functions(schema, own)
            .get_result::<Functions>(inner)
            .await;
        let found = found.ok().map(functions_found);
        catalog.volatility(&name, Dialect::Postgres, |_, _| found);
    }
}

/// Whether the open transaction's statements read the latest committed data
/// (its isolation asked: one round trip).
async fn reads_latest(inner: &mut AsyncPgConnection) -> bool {
    reads_latest_at(text(inner, PG_ISOLATION).await.as_deref())
}

/// Learns the session's identity when it is unknown (see [`learned_identity`]).
async fn learn_identity(inner: &mut AsyncPgConnection, tracked: &mut Tracked) {
    if tracked.identity.is_some() {
        return;
    }
    let identity = text(inner, PG_IDENTITY).await;
    // Asked once per database, as the blocking connection does (a lookup
    // cannot await inside `learned_identity`'s closure).
    let catalog = tracked.handle.catalog();
    let inexact = match &identity {
        Some(id) if !catalog.knows_collations(collations_of(id)) => {
            text(inner, PG_INEXACT_COLUMNS).await.map(|j| pairs(&j))
        }
        _ => None,
    };
    learned_identity(tracked, identity, || inexact);
}

/// The one text value `expression` selects; `None` when the query fails.
async fn text(conn: &mut AsyncPgConnection, expression: &str) -> Option<String> {
    let expression = diesel::dsl::sql::<Text>(expression);
    let select = diesel::select(expression);
    select.get_result::<String>(conn).await.ok()
}

/// After a statement ran: the session rules, then what it owes is queued or
/// sent. An identity the statement may have changed is learned again by the
/// next statement that can ask (`batch_execute`, a transaction's BEGIN or
/// COMMIT, an explicit cached read); until then no read is cached
/// automatically (the inner connection is borrowed by the statement's future).
async fn after(tracked: &mut Tracked, classified: &Classified, calls: Volatility, effect: Effect) {
    ran(tracked, classified, calls);
    settle_async(record(tracked, effect)).await;
}

/// A statement's effect while it runs: dropped (the future with it) before
/// [`Unrecorded::recorded`], a write is queued table-wide in the open
/// transaction, or owed outside one, so a statement that may have committed
/// never goes uninvalidated. (Dropped after the statement was recorded, while
/// its invalidation is sent, that repeats it wider: safe.) Transaction control
/// sent as SQL (`BEGIN`, `COMMIT`, ...) that is dropped leaves the levels
/// unknown: every level is taken as ended and what they owed is owed (the
/// database may or may not have committed), and the connection is marked broken
/// (it refuses every later statement, and pools discard it), as diesel-async
/// does with its own transaction manager when a transaction's future is dropped:
/// a session whose transaction state is unknown cannot be followed.
struct Unrecorded<'t> {
    tracked: &'t mut Tracked,
    effect: Option<Effect>,
}

impl<'t> Unrecorded<'t> {
    fn new(tracked: &'t mut Tracked, effect: &Effect) -> Self {
        let tracked_effect = match effect {
            Effect::Read => None,
            other => Some(other.clone()),
        };
        Unrecorded {
            tracked,
            effect: tracked_effect,
        }
    }

    /// The tracking, to record the statement with.
    fn tracked(&mut self) -> &mut Tracked {
        self.tracked
    }

    /// The statement is recorded: nothing more to do when dropped.
    fn recorded(mut self) {
        self.effect = None;
    }
}

impl Drop for Unrecorded<'_> {
    fn drop(&mut self) {
        let Some(effect) = self.effect.take() else {
            return;
        };
        if let Effect::Steps(_) = effect {
            self.tracked.end_all().owe();
            self.tracked.broken = true;
        }
        let write = match &effect {
            Effect::Steps(steps) => steps.iter().any(|s| matches!(s, Step::Write(_))),
            _ => true,
        };
        if write {
            let pending = pending_of(self.tracked, effect);
            if let Some(now) = self.tracked.wrote(pending) {
                now.owe();
            }
        }
    }
}

impl SimpleAsyncConnection for AsyncCachedConnection<AsyncPgConnection> {
    fn batch_execute(&mut self, query: &str) -> impl Future<Output = QueryResult<()>> + Send {
        let refused = self.refused();
        let helper = self.tracked.in_helper();
        async move {
            if let Some(e) = refused {
                return Err(e);
            }
            let (classified, effect, calls) = match helper {
                true => (Classified::read(), Effect::Read, Volatility::Stable),
                false => {
                    let classified = super::cached::classified(query, Dialect::Postgres);
                    self.judge(&classified).await;
                    let handle = &self.tracked.handle;
                    let (effect, calls) =
                        effect_of(handle, &classified, Dialect::Postgres, |_, _| None);
                    (classified, effect, calls)
                }
            };
            let mut guard = Unrecorded::new(&mut self.tracked, &effect);
            let result = self.inner.batch_execute(query).await;
            let tracked = guard.tracked();
            match &result {
                Ok(()) => after(tracked, &classified, calls, effect).await,
                Err(_) => failed(tracked, super::cached::writes_of(effect)).await,
            }
            guard.recorded();
            learn_identity(&mut self.inner, &mut self.tracked).await;
            result
        }
    }
}

/// After a statement failed: a failed COMMIT or ROLLBACK ended the transaction
/// (cannot be asked here: every level is taken as ended), and the writes a
/// batch may have committed before its failing statement are invalidated.
async fn failed(tracked: &mut Tracked, effect: Effect) {
    if effect.ends_transaction() {
        tracked.end_all().settle_uncertain_async().await;
    }
    settle_async(record(tracked, effect)).await;
}

impl AsyncConnectionCore for AsyncCachedConnection<AsyncPgConnection> {
    type ExecuteFuture<'conn, 'query> = BoxFuture<'conn, QueryResult<usize>>;
    type LoadFuture<'conn, 'query> = BoxFuture<'conn, QueryResult<Self::Stream<'conn, 'query>>>;
    type Stream<'conn, 'query> = BoxStream<'static, QueryResult<Self::Row<'conn, 'query>>>;
    type Row<'conn, 'query> = CachedRow<PgRow, Replayed>;
    type Backend = diesel::pg::Pg;

    /// A read its model's profile caches automatically is served from the
    /// cache; a statement that writes through `load` (`... RETURNING`) is read
    /// to its end and invalidated before its rows are handed over.
    fn load<'conn, 'query, T>(&'conn mut self, source: T) -> Self::LoadFuture<'conn, 'query>
    where
        T: AsQuery + 'query,
        T::Query: QueryFragment<Self::Backend> + QueryId + 'query,
    {
        if let Some(e) = self.refused() {
            return Box::pin(std::future::ready(Err(e)));
        }
        let source = source.as_query();
        let (classified, sql, effect, calls) = self.classified(&source);
        if let Some(owned) = self.judge_first(&classified, &source, &sql) {
            return Box::pin(async move {
                self.judge(&classified).await;
                AsyncConnectionCore::load(self, owned).await
            });
        }
        let plan = match (&effect, sql, calls, self.tracked.identity) {
            (Effect::Read, Some(sql), Volatility::Stable, Some(known)) => {
                let database = self.tracked.handle.config().database;
                let identity = crate::protocol::key::identity(database, Some(known));
                let eligible = self.tracked.reads_may_be_automatic();
                let handle = &self.tracked.handle;
                automatic::plan(handle, eligible, identity, sql.clone(), &source)
                    .map(|plan| (plan, sql))
            }
            _ => None,
        };
        if let Some((plan, sql)) = plan {
            // Sent only on a miss: an owned copy of the statement (the SQL
            // rendered above, and its binds), so that a hit neither sends nor
            // reports a query that never ran.
            // Inside a transaction, a miss asks its isolation first (once per
            // transaction), as a blocking one does: READ COMMITTED fills are
            // stored.
            let ask = self.tracked.in_transaction() && self.tracked.reads_latest.get().is_none();
            let (inner, tracked) = (&mut self.inner, &mut self.tracked);
            let rows: BoxFuture<'conn, _> = match owned(&source, sql) {
                Some(owned) => Box::pin(async move {
                    let latest = match ask {
                        true => Some(reads_latest(inner).await),
                        false => None,
                    };
                    Ok((AsyncConnectionCore::load(inner, owned).await?, latest))
                }),
                None => {
                    let rows = AsyncConnectionCore::load(inner, source);
                    Box::pin(async move { Ok((rows.await?, None)) })
                }
            };
            return Box::pin(served(tracked, plan, classified, calls, rows));
        }
        let rows = AsyncConnectionCore::load(&mut self.inner, source);
        let tracked = &mut self.tracked;
        Box::pin(async move {
            if let Effect::Read = effect {
                ran(tracked, &classified, calls);
                let live = rows.await?.map_ok(CachedRow::Live);
                return Ok(live.boxed());
            }
            let mut guard = Unrecorded::new(tracked, &effect);
            let rows: QueryResult<Vec<PgRow>> = async { rows.await?.try_collect().await }.await;
            let tracked = guard.tracked();
            match &rows {
                Ok(_) => after(tracked, &classified, calls, effect).await,
                Err(_) => failed(tracked, super::cached::writes_of(effect)).await,
            }
            guard.recorded();
            let rows = rows?.into_iter().map(|r| Ok(CachedRow::Live(r)));
            Ok(stream::iter(rows).boxed())
        })
    }

    /// A plain INSERT, DELETE or UPDATE of one table runs so that it returns
    /// the rows it touched (one statement) and invalidates exactly those; other
    /// writes invalidate their tables, or everything.
    fn execute_returning_count<'conn, 'query, T>(
        &'conn mut self,
        source: T,
    ) -> Self::ExecuteFuture<'conn, 'query>
    where
        T: QueryFragment<Self::Backend> + QueryId + 'query,
    {
        if let Some(e) = self.refused() {
            return Box::pin(std::future::ready(Err(e)));
        }
        let (classified, sql, effect, calls) = self.classified(&source);
        if let Some(owned) = self.judge_first(&classified, &source, &sql) {
            return Box::pin(async move {
                self.judge(&classified).await;
                AsyncConnectionCore::execute_returning_count(self, owned).await
            });
        }
        let checked = self
            .column_check(&classified)
            .and_then(|(_, _, known)| known);
        let granular = match (&classified.granular, calls) {
            (_, Volatility::MayWrite) => None,
            (Some(granular), _) => granular_sql(granular, checked),
            (None, _) => None,
        };
        if let Some((table, sql, paired)) = granular {
            let table = table.to_owned();
            let rows = AsyncConnectionCore::load(
                &mut self.inner,
                WithSql {
                    sql,
                    source: &source,
                    prepare: false,
                },
            );
            let tracked = &mut self.tracked;
            return Box::pin(async move {
                let mut guard = Unrecorded::new(tracked, &effect);
                let rows = async { rows.await?.try_collect::<Vec<PgRow>>().await }.await;
                let (count, owed) = touched_rows(table, paired, rows?)?;
                let tracked = guard.tracked();
                ran(tracked, &classified, calls);
                let pending = Pending {
                    handle: tracked.handle.clone(),
                    what: owed,
                };
                if let Some(now) = tracked.wrote(pending).filter(|_| count > 0) {
                    now.send_committed_async().await;
                }
                guard.recorded();
                Ok(count)
            });
        }
        // A statement that may change the session's identity (`SET`) is sent
        // as an owned copy, so that the identity is learned again right after
        // it, on the connection its future no longer holds.
        let owned = match changes_session(&classified, calls) {
            true => sql.and_then(|sql| owned(&source, sql)),
            false => None,
        };
        if let Some(owned) = owned {
            return Box::pin(async move {
                let count = AsyncConnectionCore::execute_returning_count(&mut self.inner, owned);
                let count = counted(&mut self.tracked, count, &classified, calls, effect).await;
                learn_identity(&mut self.inner, &mut self.tracked).await;
                count
            });
        }
        let count = AsyncConnectionCore::execute_returning_count(&mut self.inner, source);
        let tracked = &mut self.tracked;
        Box::pin(async move { counted(tracked, count, &classified, calls, effect).await })
    }
}

/// A statement that is not rewritten, run by `count`: recorded once it ran,
/// or, dropped before, owed (see [`Unrecorded`]).
async fn counted(
    tracked: &mut Tracked,
    count: impl Future<Output = QueryResult<usize>>,
    classified: &Classified,
    calls: Volatility,
    effect: Effect,
) -> QueryResult<usize> {
    let mut guard = Unrecorded::new(tracked, &effect);
    let count = count.await;
    let tracked = guard.tracked();
    match &count {
        Ok(_) => after(tracked, classified, calls, effect).await,
        Err(_) if effect.ends_transaction() => tracked.end_all().settle_uncertain_async().await,
        Err(_) => {}
    }
    guard.recorded();
    count
}

/// Rows of an automatically cached read: from the cache, or read by `rows`
/// (awaited only on a miss) and stored.
async fn served(
    tracked: &mut Tracked,
    plan: crate::protocol::read_through::Plan,
    classified: std::sync::Arc<Classified>,
    calls: Volatility,
    rows: impl Future<Output = QueryResult<(BoxStream<'static, QueryResult<PgRow>>, Option<bool>)>>
        + Send,
) -> QueryResult<BoxStream<'static, QueryResult<CachedRow<PgRow, Replayed>>>> {
    let handle = tracked.handle.clone();
    let (open, known) = (tracked.in_transaction(), tracked.reads_latest.get());
    ran(tracked, &classified, calls);
    // What `rows` learned of the transaction's isolation, kept once served.
    let asked = std::sync::OnceLock::new();
    let run = async {
        let (rows, latest) = rows.await.map_err(Error::from)?;
        if let Some(latest) = latest {
            let _ = asked.set(latest);
        }
        let may_store = !open || latest.or(known) == Some(true);
        Ok((capture(rows).await?, may_store))
    };
    let replayed = automatic::serve_async::<diesel::pg::Pg>(&handle, plan, run).await;
    if let Some(latest) = asked.get() {
        tracked.reads_latest.set(Some(*latest));
    }
    let rows = replayed?.into_iter().map(|r| Ok(CachedRow::Replayed(r)));
    Ok(stream::iter(rows).boxed())
}

/// `source`, rendered as `sql`, as an owned statement (that SQL and its binds),
/// to send later; `None` when a bind's type needs the connection's catalog (a
/// custom type).
fn owned<T: QueryFragment<diesel::pg::Pg> + ?Sized>(source: &T, sql: String) -> Option<Owned> {
    use diesel::query_builder::MoveableBindCollector;
    let mut binds = RawBytesBindCollector::<diesel::pg::Pg>::new();
    let mut lookup = BuiltinsOnly(false);
    source
        .collect_binds(&mut binds, &mut lookup, &diesel::pg::Pg)
        .ok()?;
    if lookup.0 {
        return None;
    }
    let safe = source.is_safe_to_cache_prepared(&diesel::pg::Pg).ok()?;
    Some(CollectedQuery::new(sql, safe, binds.moveable()))
}

type Owned = CollectedQuery<RawBytesBindCollector<diesel::pg::Pg>>;

/// A type lookup that knows no custom type: it notes that one was asked for.
struct BuiltinsOnly(bool);

impl diesel::pg::PgMetadataLookup for BuiltinsOnly {
    fn lookup_type(&mut self, type_name: &str, schema: Option<&str>) -> diesel::pg::PgTypeMetadata {
        self.0 = true;
        let key = diesel::pg::PgMetadataCacheKey::new(
            schema.map(|s| std::borrow::Cow::Owned(s.to_owned())),
            std::borrow::Cow::Owned(type_name.to_owned()),
        );
        let failed = diesel::pg::FailedToLookupTypeError::new(key);
        diesel::pg::PgTypeMetadata::from_result(Err(failed))
    }
}

/// The table and SQL of a granular write this wrapper runs in one statement,
/// and whether its rows pair old and new states; `None` for an UPDATE whose
/// rewrite needs a pre-read, or a catalog check that did not say yes
/// (`checked`): it widens to its table.
fn granular_sql(granular: &Granular, checked: Option<bool>) -> Option<(&str, &str, bool)> {
    match granular {
        Granular::Returning { table, sql } => Some((table, sql, false)),
        Granular::Update {
            table,
            plan: UpdatePlan::Paired(sql),
            check,
        } if check.is_none() || checked == Some(true) => Some((table, sql, true)),
        Granular::Update { .. } => None,
    }
}

/// The rows a granular write returned, as what it owes, and how many rows it
/// changed.
fn touched_rows(table: String, paired: bool, rows: Vec<PgRow>) -> QueryResult<(usize, Owed)> {
    let count = rows.len();
    let states = match paired {
        false => rows
            .iter()
            .map(<Named as DecodeRow<diesel::pg::Pg>>::decode)
            .collect::<QueryResult<Vec<_>>>()?,
        true => {
            let mut states = Vec::with_capacity(2 * count);
            for row in &rows {
                let (old, new) = <Pair<Named> as DecodeRow<diesel::pg::Pg>>::decode(row)?;
                states.extend([old, new]);
            }
            states
        }
    };
    Ok((count, Owed::Named(table, states)))
}

/// Every row of a read, as automatic caching stores them.
async fn capture(rows: BoxStream<'static, QueryResult<PgRow>>) -> crate::Result<RawRows> {
    let rows: Vec<PgRow> = rows.try_collect().await.map_err(Error::from)?;
    RawRows::capture::<diesel::pg::Pg, PgRow>(rows.into_iter().map(Ok))
}

impl AsyncConnection for AsyncCachedConnection<AsyncPgConnection> {
    type TransactionManager = AsyncCachedTransactionManager;

    /// Connects with the process-wide handle ([`crate::global`]), as pools do.
    async fn establish(database_url: &str) -> ConnectionResult<Self> {
        let handle = crate::global().map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
        let inner = AsyncPgConnection::establish(database_url).await?;
        Ok(AsyncCachedConnection::new(inner, handle.clone()).await)
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

impl AsyncCacheConnection for AsyncCachedConnection<AsyncPgConnection> {
    fn __in_transaction(&mut self) -> bool {
        self.tracked.in_transaction() || self.inner.__in_transaction()
    }

    fn __reads_may_use_cache(&mut self) -> bool {
        self.tracked.reads_may_use_cache()
    }

    /// Unknown (a statement may have changed it): a fresh one, so that
    /// nothing read before it is learned again is shared.
    fn __identity(&mut self) -> Option<u128> {
        Some(
            self.tracked
                .identity
                .unwrap_or_else(crate::protocol::layout::unique),
        )
    }

    /// Outside a transaction, or inside one whose statements read the latest
    /// committed data (READ COMMITTED, asked once per transaction), as
    /// `CachedConnection` answers.
    async fn __fills_may_store(&mut self) -> bool {
        if self.tracked.in_transaction() && self.tracked.reads_latest.get().is_none() {
            let latest = reads_latest(&mut self.inner).await;
            self.tracked.reads_latest.set(Some(latest));
        }
        !self.__in_transaction() || self.tracked.reads_latest.get() == Some(true)
    }

    fn __known_identity(&mut self) -> Option<Option<u128>> {
        self.tracked.identity.map(Some)
    }

    async fn __learn_identity(&mut self) {
        learn_identity(&mut self.inner, &mut self.tracked).await;
    }

    fn __tracked(&mut self) -> Option<&mut Tracked> {
        Some(&mut self.tracked)
    }
}

/// The transaction manager of [`AsyncCachedConnection`]: PostgreSQL's own, plus
/// the frames of invalidations each level owes.
#[derive(Debug, Default)]
pub struct AsyncCachedTransactionManager;

impl TransactionManager<AsyncCachedConnection<AsyncPgConnection>>
    for AsyncCachedTransactionManager
{
    type TransactionStateData = Tracked;

    async fn begin_transaction(
        conn: &mut AsyncCachedConnection<AsyncPgConnection>,
    ) -> QueryResult<()> {
        AnsiTransactionManager::begin_transaction(&mut conn.inner).await?;
        conn.tracked.begin();
        learn_identity(&mut conn.inner, &mut conn.tracked).await;
        Ok(())
    }

    async fn rollback_transaction(
        conn: &mut AsyncCachedConnection<AsyncPgConnection>,
    ) -> QueryResult<()> {
        let result = AnsiTransactionManager::rollback_transaction(&mut conn.inner).await;
        keep_open_levels(conn);
        result
    }

    async fn commit_transaction(
        conn: &mut AsyncCachedConnection<AsyncPgConnection>,
    ) -> QueryResult<()> {
        // Dropped before it is followed, the COMMIT leaves the levels unknown.
        let guard = Unrecorded::new(&mut conn.tracked, &Effect::Steps(vec![Step::Commit]));
        let committed = AnsiTransactionManager::commit_transaction(&mut conn.inner).await;
        guard.recorded();
        if let Err(e) = committed {
            keep_open_levels(conn);
            return Err(e);
        }
        let depth = depth(&mut conn.inner).unwrap_or(0);
        conn.tracked.committed(depth).settle_async().await;
        learn_identity(&mut conn.inner, &mut conn.tracked).await;
        Ok(())
    }

    fn transaction_manager_status_mut(
        conn: &mut AsyncCachedConnection<AsyncPgConnection>,
    ) -> &mut TransactionManagerStatus {
        AnsiTransactionManager::transaction_manager_status_mut(&mut conn.inner)
    }
}

/// How many levels PostgreSQL's transaction manager counts; `None` when its
/// status is broken.
fn depth(inner: &mut AsyncPgConnection) -> Option<usize> {
    let status = AnsiTransactionManager::transaction_manager_status_mut(inner);
    let depth = status.transaction_depth().ok()?;
    Some(depth.map_or(0, |d| d.get() as usize))
}

/// Brings the frames in line with the levels the database still has open.
fn keep_open_levels(conn: &mut AsyncCachedConnection<AsyncPgConnection>) {
    if let Some(depth) = depth(&mut conn.inner) {
        conn.tracked.keep_levels(depth);
    }
}

/// A connection dropped inside a transaction (a pool discarding a broken one,
/// a task cancelled) owes what its levels queued: the database may have
/// committed them.
impl<C> Drop for AsyncCachedConnection<C> {
    fn drop(&mut self) {
        if self.tracked.in_transaction() {
            self.tracked.end_all().owe();
        }
    }
}

/// Pools of [`AsyncCachedConnection`] (diesel-async's deadpool and bb8
/// managers), connecting with the process-wide handle ([`crate::global`]).
#[cfg(feature = "deadpool")]
impl diesel_async::pooled_connection::PoolableConnection
    for AsyncCachedConnection<AsyncPgConnection>
{
    fn is_broken(&mut self) -> bool {
        self.tracked.broken || self.inner.is_broken()
    }
}
