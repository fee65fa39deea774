//! Rows as the database sent them: the payload of automatic caching.
//!
//! Each column keeps its name and type tag (a PostgreSQL type OID), each cell the
//! backend's raw bytes or NULL: enough to hand Diesel the very values it would have
//! read from the database, whatever Rust type it deserialises them into. So the key
//! needs no result-type fingerprint. The cells lie in one buffer (`cells.rs`), so
//! decoding a hit allocates the same few times whatever its number of fields. A
//! payload whose cells do not fit its columns fails to decode, which the read
//! path treats as a miss.

use std::num::NonZeroU32;

use diesel::row::{Field, Row};
use diesel::QueryResult;
use serde::{Deserialize, Serialize};

use super::cells::Cells;
use super::ReplayBackend;
use crate::backend::CacheBackend;
use crate::error::{Error, ErrorKind, Result};

/// One column of a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Column {
    /// The name the database gave it.
    pub(crate) name: Option<String>,
    /// The type of its values; `None` when every value was NULL.
    pub(crate) oid: Option<NonZeroU32>,
}

/// A result of no columns still has rows, which no byte of the payload backs: a
/// decoded count above this is taken for garbage rather than replayed.
const MAX_BARE_ROWS: usize = 1 << 20;

/// Every row of one result, each cell its raw bytes or NULL. Stored as the
/// MessagePack array `[columns, rows, [lengths, data]]`.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Unchecked")]
pub struct RawRows {
    pub(crate) columns: Vec<Column>,
    rows: usize,
    /// Row after row, a cell per column.
    cells: Cells,
}

/// [`RawRows`] as decoded, before [`RawRows::check`].
#[derive(Deserialize)]
struct Unchecked {
    columns: Vec<Column>,
    rows: usize,
    cells: Cells,
}

impl TryFrom<Unchecked> for RawRows {
    type Error = &'static str;

    fn try_from(raw: Unchecked) -> Result<RawRows, &'static str> {
        let rows = RawRows {
            columns: raw.columns,
            rows: raw.rows,
            cells: raw.cells,
        };
        rows.check()?;
        Ok(rows)
    }
}

impl RawRows {
    /// Reads `cursor` to its end.
    pub(crate) fn capture<'r, DB, R>(cursor: impl Iterator<Item = QueryResult<R>>) -> Result<Self>
    where
        DB: ReplayBackend,
        R: Row<'r, DB>,
    {
        let mut raw = RawRows::default();
        for row in cursor {
            raw.push::<DB, R>(&row?)?;
        }
        raw.check().map_err(|e| Error::new(ErrorKind::Encode, e))?;
        Ok(raw)
    }

    /// Adds one row; the first one names the columns.
    fn push<'r, DB, R>(&mut self, row: &R) -> Result<()>
    where
        DB: ReplayBackend,
        R: Row<'r, DB>,
    {
        if self.rows == 0 {
            self.columns = (0..row.field_count()).map(|i| column(row, i)).collect();
        }
        for (i, column) in self.columns.iter_mut().enumerate() {
            let field = row.get(i).ok_or_else(|| {
                Error::new(ErrorKind::Encode, "a row has fewer fields than the first")
            })?;
            let value = field.value();
            let cell = match &value {
                Some(value) => {
                    let (oid, bytes) = DB::raw_cell(value)?;
                    column.oid.get_or_insert(oid);
                    Some(bytes)
                }
                None => None,
            };
            self.cells.push(cell);
        }
        self.rows += 1;
        Ok(())
    }

    /// How many rows there are.
    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    /// The cell of `row` in column `column`: `None` out of range, `Some(None)`
    /// for NULL. Inlined into Diesel's deserialisation, as `replay.rs` says.
    #[inline]
    pub(crate) fn cell(&self, row: usize, column: usize) -> Option<Option<&[u8]>> {
        if column >= self.columns.len() {
            return None;
        }
        let at = row.checked_mul(self.columns.len())?.checked_add(column)?;
        self.cells.get(at)
    }

    /// Every row has one cell per column, and a column holding a value has a type.
    fn check(&self) -> Result<(), &'static str> {
        const UNFIT: &str = "cached rows do not fit their columns";
        let width = self.columns.len();
        let fits = match width {
            0 => self.cells.len() == 0 && self.rows <= MAX_BARE_ROWS,
            _ => self.rows.checked_mul(width) == Some(self.cells.len()),
        };
        if !fits {
            return Err(UNFIT);
        }
        let untyped = self
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.oid.is_none());
        for (i, _) in untyped {
            if (0..self.rows).any(|row| self.cell(row, i) != Some(None)) {
                return Err(UNFIT);
            }
        }
        Ok(())
    }
}

/// Column `i` of `row`, its type still unknown.
fn column<'r, DB: CacheBackend, R: Row<'r, DB>>(row: &R, i: usize) -> Column {
    let name = row.get(i).and_then(|f| f.field_name().map(str::to_owned));
    Column { name, oid: None }
}

#[cfg(test)]
mod tests {
    use super::super::cells::Bin;
    use super::*;
    use crate::codec;

    /// Rows of `columns` holding `cells` (row after row), unchecked.
    fn raw(columns: Vec<Column>, rows: usize, cells: &[Option<&[u8]>]) -> RawRows {
        let mut raw = RawRows {
            columns,
            rows,
            cells: Cells::default(),
        };
        cells.iter().for_each(|cell| raw.cells.push(*cell));
        raw
    }

    fn column(name: &str, oid: u32) -> Column {
        Column {
            name: Some(name.into()),
            oid: NonZeroU32::new(oid),
        }
    }

    fn sample() -> RawRows {
        let columns = vec![column("id", 23), column("body", 0), column("title", 25)];
        let cells: [Option<&[u8]>; 6] = [
            Some(&[0, 0, 0, 1]),
            None,
            Some(b""),
            Some(&[0, 0, 0, 2]),
            None,
            Some(b"second"),
        ];
        raw(columns, 2, &cells)
    }

    #[test]
    fn round_trip_keeps_nulls_and_bytes() {
        let bytes = codec::encode(&sample()).unwrap();
        let back = codec::decode::<RawRows>(&bytes).unwrap();
        assert_eq!(back, sample());
        assert_eq!(back.len(), 2);
        assert_eq!(back.cell(0, 0), Some(Some(&[0, 0, 0, 1][..])));
        assert_eq!(back.cell(0, 1), Some(None));
        assert_eq!(back.cell(0, 2), Some(Some(&b""[..])), "empty is not NULL");
        assert_eq!(back.cell(1, 2), Some(Some(&b"second"[..])));
        assert_eq!((back.cell(2, 0), back.cell(0, 3)), (None, None));
    }

    #[test]
    fn empty_results_round_trip() {
        let no_rows = raw(vec![column("id", 23)], 0, &[]);
        let no_columns = raw(vec![], 3, &[]);
        for empty in [RawRows::default(), no_rows, no_columns] {
            let bytes = codec::encode(&empty).unwrap();
            assert_eq!(codec::decode::<RawRows>(&bytes), Some(empty));
        }
    }

    #[test]
    fn rows_that_do_not_fit_are_undecodable() {
        let columns = || sample().columns;
        let short = raw(columns(), 2, &[Some(b"a"), None, None, None, None]);
        let untyped = raw(columns(), 1, &[Some(b"a"), Some(b"b"), None]);
        let bare = raw(vec![], MAX_BARE_ROWS + 1, &[]);
        for bad in [short, untyped, bare] {
            let bytes = codec::encode(&bad).unwrap();
            assert_eq!(codec::decode::<RawRows>(&bytes), None);
        }
        assert_eq!(codec::decode::<RawRows>(b"\x92\x90\xc1"), None);
        assert_eq!(codec::decode::<RawRows>(&[]), None);
    }

    /// An entry of the first layout (`[columns, [[cell, ...], ...]]`) is a miss,
    /// should one outlive the key format bump.
    #[test]
    fn the_old_layout_is_undecodable() {
        let cell = Bin(&[0, 0, 0, 1]);
        let old = codec::encode(&(vec![column("id", 23)], [[Some(cell)]])).unwrap();
        assert_eq!(codec::decode::<RawRows>(&old), None);
    }

    /// Cut short anywhere or with any byte changed, a payload decodes to rows that
    /// fit their columns or to nothing: never a panic.
    #[test]
    fn corrupted_payloads_never_panic() {
        let bytes = codec::encode(&sample()).unwrap();
        for len in 0..bytes.len() {
            assert_eq!(
                codec::decode::<RawRows>(&bytes[..len]),
                None,
                "cut at {len}"
            );
        }
        for at in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = bytes.clone();
                bad[at] ^= flip;
                if let Some(rows) = codec::decode::<RawRows>(&bad) {
                    assert!(rows.check().is_ok());
                    let cells =
                        (0..rows.len()).flat_map(|r| (0..rows.columns.len()).map(move |c| (r, c)));
                    cells.for_each(|(r, c)| assert!(rows.cell(r, c).is_some()));
                }
            }
        }
    }
}
