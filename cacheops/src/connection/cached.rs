//! [`CachedConnection`]: a Diesel connection that sees every statement, so every
//! write invalidates, whatever API made it, and transactions are tracked exactly.

use diesel::connection::{
    CacheSize, Connection, ConnectionSealed, Instrumentation, LoadConnection, SimpleConnection,
    TransactionManager, TransactionManagerStatus,
};
use diesel::expression::QueryMetadata;
use diesel::query_builder::{Query, QueryFragment, QueryId};
use diesel::result::{ConnectionError, ConnectionResult, QueryResult};

use super::effect::{self, Effect};
use super::tracked::Tracked;
use super::CacheConnection;
use crate::automatic::{self, CachedCursor, CachedRow};
use crate::backend::CacheBackend;
use crate::pending::{send_all, Owed, Pending};
use crate::runtime::Cacheops;

/// A connection wrapper that invalidates after every write and tracks transactions.
///
/// Put it where your connection was (`CachedConnection<PgConnection>`,
/// `CachedConnection<SqliteConnection>`). Every statement is classified before it
/// runs: writes made with the cacheops helpers invalidate granularly as usual; a
/// plain INSERT or DELETE of one table through `execute()` runs with `RETURNING *`
/// appended and invalidates exactly the rows it touched; any other write (UPDATE,
/// upserts, `get_results` with its own RETURNING, `sql_query`, `batch_execute`)
/// invalidates every cached query of the tables it writes, and SQL it cannot
/// analyse invalidates everything under the prefix. Inside a
/// transaction, invalidations wait for the outermost COMMIT and reads use the cache
/// only until the transaction first writes.
///
/// Extra cost: rendering each statement's SQL once more to classify it (no round
/// trip); one Redis round trip per written table after a write outside a
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
/// (cached only through `.cached()`), locking reads (`FOR UPDATE`), reads inside a
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
/// from bytes there (see [`crate::NoReplay`]); `.cached()` works as everywhere.
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
    /// Wraps `inner`; invalidations go to `handle`.
    pub fn new(inner: C, handle: Cacheops) -> Self {
        CachedConnection {
            inner,
            tracked: Tracked::new(handle),
        }
    }

    /// The handle this connection invalidates through.
    pub fn cache(&self) -> &Cacheops {
        &self.tracked.handle
    }

    /// The wrapped connection. Statements run on it directly are not seen.
    pub fn inner(&mut self) -> &mut C {
        &mut self.inner
    }

    /// Runs a statement's write effect through the transaction rules.
    fn record(&mut self, effect: Effect) -> QueryResult<()> {
        if effect == Effect::Read {
            return Ok(());
        }
        let pending = pending_of(&self.tracked, effect);
        match self.tracked.wrote(pending) {
            Some(now) => now.send().map_err(into_diesel),
            None => Ok(()),
        }
    }

    /// The write effect of a statement, and the table whose affected rows it can
    /// return (see [`effect::returning_target`]).
    fn effect_and_target<T: QueryFragment<C::Backend> + ?Sized>(
        &self,
        source: &T,
    ) -> (Effect, Option<String>) {
        if self.tracked.in_helper() {
            return (Effect::Read, None);
        }
        match <C::Backend as CacheBackend>::render_sql(source) {
            Ok(sql) => {
                let effect = effect::of_sql(&sql, <C::Backend as CacheBackend>::DIALECT);
                let target = effect::returning_target(&sql, &effect);
                (effect, target)
            }
            Err(_) => (Effect::Unknown, None),
        }
    }

    /// The write effect of a statement, unless a cacheops helper is running it, and
    /// its SQL when it was rendered.
    fn effect_and_sql<T: QueryFragment<C::Backend> + ?Sized>(
        &self,
        source: &T,
    ) -> (Effect, Option<String>) {
        if self.tracked.in_helper() {
            return (Effect::Read, None);
        }
        match <C::Backend as CacheBackend>::render_sql(source) {
            Ok(sql) => (
                effect::of_sql(&sql, <C::Backend as CacheBackend>::DIALECT),
                Some(sql),
            ),
            Err(_) => (Effect::Unknown, None),
        }
    }

    /// Brings the frames in line with the levels the database still has open.
    fn keep_open_levels(&mut self) {
        let status = C::TransactionManager::transaction_manager_status_mut(&mut self.inner);
        if let Ok(depth) = status.transaction_depth() {
            self.tracked
                .keep_levels(depth.map_or(0, |d| d.get() as usize));
        }
    }
}

impl<C: CacheConnection + LoadConnection> CachedConnection<C> {
    /// Runs `source` with `RETURNING *` and invalidates the rows it returns.
    fn execute_returning_rows<T>(&mut self, source: &T, table: String) -> QueryResult<usize>
    where
        T: QueryFragment<C::Backend> + QueryId,
    {
        let rows = returned_rows::<C, T>(&mut self.inner, source)?;
        let count = rows.len();
        if count > 0 {
            let pending = Pending {
                handle: self.tracked.handle.clone(),
                what: Owed::Named(table, rows),
            };
            if let Some(now) = self.tracked.wrote(pending) {
                now.send().map_err(into_diesel)?;
            }
        }
        Ok(count)
    }
}

/// Every row `source` returns with `RETURNING *` appended, as `(column, value)`.
fn returned_rows<C, T>(conn: &mut C, source: &T) -> QueryResult<Vec<Vec<(String, crate::Value)>>>
where
    C: CacheConnection + LoadConnection,
    T: QueryFragment<C::Backend> + QueryId,
{
    let mut rows = Vec::new();
    for row in conn.load(ReturningAll(source))? {
        let row = row?;
        rows.push(named_values::<C::Backend, _>(&row)?);
    }
    Ok(rows)
}

fn named_values<'a, DB, R>(row: &R) -> QueryResult<Vec<(String, crate::Value)>>
where
    DB: CacheBackend,
    R: diesel::row::Row<'a, DB>,
{
    (0..row.field_count())
        .filter_map(|i| row.get(i))
        .map(|field| {
            let name = diesel::row::Field::field_name(&field)
                .unwrap_or_default()
                .to_string();
            let value = DB::raw_value(diesel::row::Field::value(&field)).map_err(into_diesel)?;
            Ok((name, value))
        })
        .collect()
}

/// A write statement with `RETURNING *` appended.
struct ReturningAll<'a, T>(&'a T);

impl<T> Query for ReturningAll<'_, T> {
    type SqlType = diesel::sql_types::Untyped;
}

impl<T> QueryId for ReturningAll<'_, T> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<T: QueryFragment<DB>, DB: diesel::backend::Backend> QueryFragment<DB> for ReturningAll<'_, T> {
    fn walk_ast<'b>(
        &'b self,
        mut pass: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        self.0.walk_ast(pass.reborrow())?;
        pass.push_sql(" RETURNING *");
        Ok(())
    }
}

/// A cacheops error where Diesel expects its own.
fn into_diesel(e: crate::Error) -> diesel::result::Error {
    e.into_diesel()
}

impl<C: CacheConnection + LoadConnection> CacheConnection for CachedConnection<C> {
    fn __tracked(&mut self) -> Option<&mut Tracked> {
        Some(&mut self.tracked)
    }
}

impl<C: Connection> ConnectionSealed for CachedConnection<C> {}

impl<C: CacheConnection> SimpleConnection for CachedConnection<C> {
    fn batch_execute(&mut self, query: &str) -> QueryResult<()> {
        let effect = match self.tracked.in_helper() {
            true => Effect::Read,
            false => effect::of_sql(query, <C::Backend as CacheBackend>::DIALECT),
        };
        self.inner.batch_execute(query)?;
        self.record(effect)
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

    /// A plain INSERT or DELETE of one table runs with `RETURNING *` appended, so
    /// that exactly the rows it created or removed are invalidated (granular, no
    /// extra statement); other writes invalidate their tables.
    fn execute_returning_count<T>(&mut self, source: &T) -> QueryResult<usize>
    where
        T: QueryFragment<Self::Backend> + QueryId,
    {
        let (effect, target) = self.effect_and_target(source);
        if let Some(table) = target {
            return self.execute_returning_rows(source, table);
        }
        let count = self.inner.execute_returning_count(source)?;
        self.record(effect)?;
        Ok(count)
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
        let (effect, sql) = self.effect_and_sql(&source);
        let plan = match (&effect, sql) {
            (Effect::Read, Some(sql)) => automatic::plan(&self.tracked, sql, &source),
            _ => None,
        };
        if let Some(plan) = plan {
            let inner = &mut self.inner;
            let run = || LoadConnection::<B>::load(inner, source);
            let rows = automatic::serve::<C::Backend, _, _>(&self.tracked, plan, run)?;
            return Ok(SettlingCursor::new(
                CachedCursor::Replayed(rows.into_iter()),
                None,
            ));
        }
        let owed = match effect {
            Effect::Read => None,
            effect => self.tracked.wrote(pending_of(&self.tracked, effect)),
        };
        let inner = LoadConnection::<B>::load(&mut self.inner, source)?;
        Ok(SettlingCursor::new(CachedCursor::Live(inner), owed))
    }
}

/// The rows `C`'s backend replays from the cache.
type Replayed<C> = <<C as Connection>::Backend as CacheBackend>::Replayed;

fn pending_of(tracked: &Tracked, effect: Effect) -> Pending {
    let what = match effect {
        Effect::Tables(tables) => Owed::Tables(tables),
        Effect::Read | Effect::Unknown => Owed::All,
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

    /// Sends what the statement owes. A failure cannot be returned from here: the
    /// handle remembers the tables (reads of them bypass the cache until a
    /// table-wide invalidation succeeds) and it is logged.
    fn settle(&mut self) {
        if let Some(owed) = self.owed.take() {
            if let Err(e) = owed.send() {
                tracing::error!(error = %e, "cacheops: invalidation after a RETURNING write failed");
            }
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
        send_all(conn.tracked.committed()).map_err(into_diesel)
    }

    fn transaction_manager_status_mut(
        conn: &mut CachedConnection<C>,
    ) -> &mut TransactionManagerStatus {
        C::TransactionManager::transaction_manager_status_mut(&mut conn.inner)
    }
}
