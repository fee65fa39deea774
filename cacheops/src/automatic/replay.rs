//! Rows Diesel deserialises without knowing where they came from: a live row of
//! the wrapped connection, or a row replayed from cached bytes.
//!
//! `LoadConnection` has one row type, so [`CachedRow`] is an enum of the two. A
//! backend says how it replays through [`ReplayBackend`]'s `Replayed` type
//! (implemented here): [`ReplayedRow`] on PostgreSQL, the uninhabited [`NoReplay`]
//! on SQLite, where the replayed variant therefore cannot exist.

use std::num::NonZeroU32;

use diesel::backend::Backend;
use diesel::row::{Field, PartialRow, Row, RowIndex, RowSealed};
use diesel::QueryResult;

use super::rows::RawRows;
use super::ReplayBackend;
use crate::error::Result;

/// How a backend turns cached [`RawRows`] back into rows. Sealed.
pub trait Replay: Sized {
    /// Whether this backend can rebuild rows at all.
    const POSSIBLE: bool;

    /// The rows of `raw`; `None` when this backend cannot rebuild rows.
    fn replay(raw: RawRows) -> Option<Vec<Self>>;
}

/// A row read through [`crate::CachedConnection`]: from the database, or replayed
/// from the cache by automatic caching.
#[derive(Debug)]
pub enum CachedRow<L, R> {
    /// A row of the wrapped connection.
    Live(L),
    /// A row served from the cache.
    Replayed(R),
}

/// A field of a [`CachedRow`].
#[derive(Debug)]
pub enum CachedField<L, R> {
    /// A field of a live row.
    Live(L),
    /// A field of a replayed row.
    Replayed(R),
}

/// The rows of one statement through [`crate::CachedConnection`]: the wrapped
/// connection's cursor, or rows from the cache.
#[derive(Debug)]
pub enum CachedCursor<I, R> {
    /// The wrapped connection's cursor.
    Live(I),
    /// Rows from the cache (or just stored in it).
    Replayed(std::vec::IntoIter<R>),
}

impl<I, L, R> Iterator for CachedCursor<I, R>
where
    I: Iterator<Item = QueryResult<L>>,
{
    type Item = QueryResult<CachedRow<L, R>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            CachedCursor::Live(cursor) => Some(cursor.next()?.map(CachedRow::Live)),
            CachedCursor::Replayed(rows) => Some(Ok(CachedRow::Replayed(rows.next()?))),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            CachedCursor::Live(cursor) => cursor.size_hint(),
            CachedCursor::Replayed(rows) => rows.size_hint(),
        }
    }
}

impl<L, R> RowSealed for CachedRow<L, R> {}

impl<'a, DB, L, R> Row<'a, DB> for CachedRow<L, R>
where
    DB: Backend,
    L: Row<'a, DB>,
    R: Row<'a, DB>,
{
    type Field<'f>
        = CachedField<L::Field<'f>, R::Field<'f>>
    where
        'a: 'f,
        Self: 'f;
    type InnerPartialRow = Self;

    fn field_count(&self) -> usize {
        match self {
            CachedRow::Live(row) => row.field_count(),
            CachedRow::Replayed(row) => row.field_count(),
        }
    }

    fn get<'b, I>(&'b self, idx: I) -> Option<Self::Field<'b>>
    where
        'a: 'b,
        Self: RowIndex<I>,
    {
        let idx = self.idx(idx)?;
        match self {
            CachedRow::Live(row) => row.get(idx).map(CachedField::Live),
            CachedRow::Replayed(row) => row.get(idx).map(CachedField::Replayed),
        }
    }

    fn partial_row(&self, range: std::ops::Range<usize>) -> PartialRow<'_, Self> {
        PartialRow::new(self, range)
    }
}

impl<I, L: RowIndex<I>, R: RowIndex<I>> RowIndex<I> for CachedRow<L, R> {
    fn idx(&self, idx: I) -> Option<usize> {
        match self {
            CachedRow::Live(row) => row.idx(idx),
            CachedRow::Replayed(row) => row.idx(idx),
        }
    }
}

impl<'f, DB, L, R> Field<'f, DB> for CachedField<L, R>
where
    DB: Backend,
    L: Field<'f, DB>,
    R: Field<'f, DB>,
{
    fn field_name(&self) -> Option<&str> {
        match self {
            CachedField::Live(field) => field.field_name(),
            CachedField::Replayed(field) => field.field_name(),
        }
    }

    fn value(&self) -> Option<DB::RawValue<'_>> {
        match self {
            CachedField::Live(field) => field.value(),
            CachedField::Replayed(field) => field.value(),
        }
    }
}

#[cfg(feature = "postgres")]
pub use pg::{ReplayedField, ReplayedRow};

#[cfg(feature = "postgres")]
mod pg {
    use std::fmt;
    use std::sync::Arc;

    use diesel::pg::{Pg, PgValue};

    use super::super::rows::Column;
    use super::*;

    impl ReplayBackend for Pg {
        type Replayed = ReplayedRow;

        fn raw_cell<'v>(raw: &<Pg as Backend>::RawValue<'v>) -> Result<(NonZeroU32, &'v [u8])> {
            Ok((raw.get_oid(), raw.as_bytes()))
        }
    }

    /// A row replayed from the cache: one row of a result shared by all of its
    /// rows, so that replaying copies no cell.
    #[derive(Clone)]
    pub struct ReplayedRow {
        raw: Arc<RawRows>,
        row: usize,
    }

    /// A field of a [`ReplayedRow`].
    #[derive(Debug, Clone, Copy)]
    pub struct ReplayedField<'f> {
        column: &'f Column,
        cell: Option<&'f [u8]>,
    }

    impl ReplayedRow {
        /// The rows of `raw`.
        fn all(raw: RawRows) -> Vec<ReplayedRow> {
            let raw = Arc::new(raw);
            let row = |row| ReplayedRow {
                raw: raw.clone(),
                row,
            };
            (0..raw.len()).map(row).collect()
        }
    }

    /// This row's cells, not the whole result's.
    impl fmt::Debug for ReplayedRow {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let cells = (0..self.raw.columns.len()).map(|i| self.raw.cell(self.row, i));
            f.debug_struct("ReplayedRow")
                .field("columns", &self.raw.columns)
                .field("cells", &cells.collect::<Vec<_>>())
                .finish()
        }
    }

    impl RowSealed for ReplayedRow {}

    // `#[inline]` on what Diesel calls once per field: its deserialisation is
    // generic over the row, so it is compiled in the application's crate, where
    // these would otherwise stay calls.
    impl RowIndex<usize> for ReplayedRow {
        #[inline]
        fn idx(&self, idx: usize) -> Option<usize> {
            (idx < self.raw.columns.len()).then_some(idx)
        }
    }

    impl RowIndex<&str> for ReplayedRow {
        fn idx(&self, name: &str) -> Option<usize> {
            self.raw
                .columns
                .iter()
                .position(|c| c.name.as_deref() == Some(name))
        }
    }

    /// PostgreSQL values are their wire bytes plus a type OID, and Diesel lets
    /// third-party code build them (`PgValue::new`): rows replay exactly.
    impl Replay for ReplayedRow {
        const POSSIBLE: bool = true;

        fn replay(raw: RawRows) -> Option<Vec<Self>> {
            Some(ReplayedRow::all(raw))
        }
    }

    impl<'a> Row<'a, Pg> for ReplayedRow {
        type Field<'f>
            = ReplayedField<'f>
        where
            'a: 'f,
            Self: 'f;
        type InnerPartialRow = Self;

        #[inline]
        fn field_count(&self) -> usize {
            self.raw.columns.len()
        }

        fn get<'b, I>(&'b self, idx: I) -> Option<ReplayedField<'b>>
        where
            'a: 'b,
            Self: RowIndex<I>,
        {
            let idx = self.idx(idx)?;
            Some(ReplayedField {
                column: self.raw.columns.get(idx)?,
                cell: self.raw.cell(self.row, idx)?,
            })
        }

        fn partial_row(&self, range: std::ops::Range<usize>) -> PartialRow<'_, Self> {
            PartialRow::new(self, range)
        }
    }

    impl<'f> Field<'f, Pg> for ReplayedField<'f> {
        #[inline]
        fn field_name(&self) -> Option<&str> {
            self.column.name.as_deref()
        }

        /// A cell holding bytes always has a typed column: decoding checked it.
        #[inline]
        fn value(&self) -> Option<PgValue<'_>> {
            let oid = self.column.oid.as_ref()?;
            Some(PgValue::new(self.cell?, oid))
        }
    }
}

/// The replayed row of a backend that cannot replay rows: no value exists.
///
/// SQLite: Diesel's `SqliteValue` (`diesel-2.3.14/src/sqlite/connection/sqlite_value.rs`)
/// wraps a live `sqlite3_value` pointer and has no public constructor even with
/// the `i-implement-a-third-party-backend-and-opt-into-breaking-changes` feature:
/// `SqliteValue::new`, `from_owned_row` and `from_function_row` are `pub(super)`,
/// and so are `OwnedSqliteValue` and its fields. The rows that could hold such
/// values, `SqliteRow` (`row.rs`: fields and `PrivateSqliteRow` `pub(super)`) and
/// `OwnedSqliteRow` (`owned_row.rs`: `new` and `values` `pub(super)`), cannot be
/// built outside Diesel either. So a cached SQLite row can never be handed back
/// to Diesel's `FromSql`: SQLite reads are not cached automatically, and
/// `.cached()` (which stores typed results) is the way to cache them.
#[derive(Debug, Clone, Copy)]
pub enum NoReplay {}

impl Replay for NoReplay {
    const POSSIBLE: bool = false;

    fn replay(_: RawRows) -> Option<Vec<Self>> {
        None
    }
}

#[cfg(feature = "sqlite")]
impl ReplayBackend for diesel::sqlite::Sqlite {
    type Replayed = NoReplay;

    /// Never called: SQLite reads are not cached automatically (see [`NoReplay`]).
    fn raw_cell<'v>(_: &<Self as Backend>::RawValue<'v>) -> Result<(NonZeroU32, &'v [u8])> {
        Err(crate::Error::new(
            crate::ErrorKind::NotCacheable,
            "SQLite rows cannot be replayed",
        ))
    }
}

impl RowSealed for NoReplay {}

impl<I> RowIndex<I> for NoReplay {
    fn idx(&self, _: I) -> Option<usize> {
        match *self {}
    }
}

impl<'a, DB: Backend> Row<'a, DB> for NoReplay {
    type Field<'f>
        = NoReplay
    where
        'a: 'f,
        Self: 'f;
    type InnerPartialRow = Self;

    fn field_count(&self) -> usize {
        match *self {}
    }

    fn get<'b, I>(&'b self, _: I) -> Option<NoReplay>
    where
        'a: 'b,
        Self: RowIndex<I>,
    {
        match *self {}
    }

    fn partial_row(&self, _: std::ops::Range<usize>) -> PartialRow<'_, Self> {
        match *self {}
    }
}

impl<DB: Backend> Field<'_, DB> for NoReplay {
    fn field_name(&self) -> Option<&str> {
        match *self {}
    }

    fn value(&self) -> Option<DB::RawValue<'_>> {
        match *self {}
    }
}

/// An owned copy of a row read through a `CachedConnection` on SQLite, where no
/// row is ever replayed: what diesel-async's `SyncConnectionWrapper` hands from
/// its blocking thread to async code.
impl<'a, DB, L> diesel::row::IntoOwnedRow<'a, DB> for CachedRow<L, NoReplay>
where
    DB: Backend,
    L: diesel::row::IntoOwnedRow<'a, DB>,
{
    type OwnedRow = L::OwnedRow;
    type Cache = L::Cache;

    fn into_owned(self, cache: &mut Self::Cache) -> Self::OwnedRow {
        match self {
            CachedRow::Live(row) => row.into_owned(cache),
            CachedRow::Replayed(never) => match never {},
        }
    }
}
