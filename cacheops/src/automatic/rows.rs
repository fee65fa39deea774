//! Rows as the database sent them: the payload of automatic caching.
//!
//! Each column keeps its name and type tag (a PostgreSQL type OID), each cell the
//! backend's raw bytes or NULL: enough to hand Diesel the very values it would have
//! read from the database, whatever Rust type it deserialises them into. So the key
//! needs no result-type fingerprint. A payload whose rows do not fit its columns
//! fails to decode, which the read path treats as a miss.

use std::fmt;
use std::num::NonZeroU32;

use diesel::row::{Field, Row};
use diesel::QueryResult;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

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

/// Every row of one result, each cell its raw bytes or NULL.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Unchecked")]
pub struct RawRows {
    pub(crate) columns: Vec<Column>,
    pub(crate) rows: Vec<Vec<Option<Bytes>>>,
}

/// [`RawRows`] as decoded, before [`RawRows::check`].
#[derive(Deserialize)]
struct Unchecked {
    columns: Vec<Column>,
    rows: Vec<Vec<Option<Bytes>>>,
}

impl TryFrom<Unchecked> for RawRows {
    type Error = &'static str;

    fn try_from(raw: Unchecked) -> Result<RawRows, &'static str> {
        let rows = RawRows {
            columns: raw.columns,
            rows: raw.rows,
        };
        rows.check()?;
        Ok(rows)
    }
}

impl RawRows {
    /// Reads `cursor` to its end.
    pub(crate) fn capture<'r, DB, R>(cursor: impl Iterator<Item = QueryResult<R>>) -> Result<Self>
    where
        DB: CacheBackend,
        R: Row<'r, DB>,
    {
        let mut raw = RawRows {
            columns: Vec::new(),
            rows: Vec::new(),
        };
        for row in cursor {
            raw.push::<DB, R>(&row?)?;
        }
        raw.check().map_err(|e| Error::new(ErrorKind::Encode, e))?;
        Ok(raw)
    }

    /// Adds one row; the first one names the columns.
    fn push<'r, DB, R>(&mut self, row: &R) -> Result<()>
    where
        DB: CacheBackend,
        R: Row<'r, DB>,
    {
        if self.rows.is_empty() {
            self.columns = (0..row.field_count()).map(|i| column(row, i)).collect();
        }
        let mut cells = Vec::with_capacity(self.columns.len());
        for (i, column) in self.columns.iter_mut().enumerate() {
            let field = row.get(i).ok_or_else(|| {
                Error::new(ErrorKind::Encode, "a row has fewer fields than the first")
            })?;
            let value = DB::raw_value(field.value())?;
            if value.bytes.is_some() && column.oid.is_none() {
                column.oid = NonZeroU32::new(value.ty);
            }
            cells.push(value.bytes.map(Bytes));
        }
        self.rows.push(cells);
        Ok(())
    }

    /// Every row has one cell per column, and a column holding a value has a type.
    fn check(&self) -> Result<(), &'static str> {
        let fits = |row: &Vec<Option<Bytes>>| {
            row.len() == self.columns.len()
                && row
                    .iter()
                    .zip(&self.columns)
                    .all(|(cell, column)| cell.is_none() || column.oid.is_some())
        };
        match self.rows.iter().all(fits) {
            true => Ok(()),
            false => Err("cached rows do not fit their columns"),
        }
    }
}

/// Column `i` of `row`, its type still unknown.
fn column<'r, DB: CacheBackend, R: Row<'r, DB>>(row: &R, i: usize) -> Column {
    let name = row.get(i).and_then(|f| f.field_name().map(str::to_owned));
    Column { name, oid: None }
}

/// A cell's bytes, encoded as one MessagePack `bin` rather than an array of numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bytes(pub(crate) Box<[u8]>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

struct BytesVisitor;

impl Visitor<'_> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes(v.into()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes(v.into_boxed_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    fn sample() -> RawRows {
        RawRows {
            columns: vec![
                Column {
                    name: Some("id".into()),
                    oid: NonZeroU32::new(23),
                },
                Column {
                    name: Some("body".into()),
                    oid: None,
                },
            ],
            rows: vec![
                vec![Some(Bytes([0, 0, 0, 1].into())), None],
                vec![Some(Bytes([0, 0, 0, 2].into())), None],
            ],
        }
    }

    #[test]
    fn round_trip_keeps_nulls_and_bytes() {
        let bytes = codec::encode(&sample()).unwrap();
        assert_eq!(codec::decode::<RawRows>(&bytes), Some(sample()));
        let empty = RawRows {
            columns: vec![],
            rows: vec![],
        };
        let bytes = codec::encode(&empty).unwrap();
        assert_eq!(codec::decode::<RawRows>(&bytes), Some(empty));
    }

    #[test]
    fn rows_that_do_not_fit_are_undecodable() {
        let mut short = sample();
        short.rows[1].pop();
        let untyped = RawRows {
            rows: vec![vec![None, Some(Bytes([1].into()))]],
            ..sample()
        };
        for bad in [short, untyped] {
            let bytes = codec::encode(&bad).unwrap();
            assert_eq!(codec::decode::<RawRows>(&bytes), None);
        }
        assert_eq!(codec::decode::<RawRows>(b"\x92\x90\xc1"), None);
        assert_eq!(codec::decode::<RawRows>(&[]), None);
    }
}
