//! The cells of a result, in one buffer.
//!
//! Every cell's bytes lie back to back in `data`, and `ends` says where each cell
//! ends, so a result of any size is two allocations, and a cell is a slice of
//! them: decoding a large hit costs in proportion to its bytes, not to its
//! number of fields. Stored as a MessagePack pair of `bin`s, `[lengths, data]`:
//! `lengths` holds a varint per cell (0 for NULL, else the length plus one),
//! `data` the bytes as they are.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

/// Set on the end of a NULL cell. A `Vec` holds at most `isize::MAX` bytes, so no
/// real end has this bit.
const NULL: usize = 1 << (usize::BITS - 1);

/// The cells of a result in row order: their bytes and where each ends.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Cells {
    data: Vec<u8>,
    /// Where each cell ends in `data` (a cell starts where the one before ends),
    /// with [`NULL`] set for NULL.
    ends: Vec<usize>,
}

impl Cells {
    /// Adds a cell: its bytes, or `None` for NULL.
    pub(crate) fn push(&mut self, cell: Option<&[u8]>) {
        match cell {
            Some(bytes) => {
                self.data.extend_from_slice(bytes);
                self.ends.push(self.data.len());
            }
            None => self.ends.push(self.data.len() | NULL),
        }
    }

    /// How many cells there are.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Cell `i`: `None` past the last one, `Some(None)` for NULL.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<Option<&[u8]>> {
        let end = *self.ends.get(i)?;
        if end & NULL != 0 {
            return Some(None);
        }
        let start = match i.checked_sub(1) {
            Some(before) => self.ends.get(before)? & !NULL,
            None => 0,
        };
        self.data.get(start..end).map(Some)
    }

    /// The lengths as stored: a varint per cell.
    fn lengths(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.ends.len());
        let mut start = 0;
        for &end in &self.ends {
            match end & NULL {
                0 => {
                    push_varint(&mut out, end - start + 1);
                    start = end;
                }
                _ => push_varint(&mut out, 0),
            }
        }
        out
    }

    /// The cells of stored `lengths` and `data`; an error unless the lengths are
    /// well formed and add up to the data's length.
    fn from_stored(mut lengths: &[u8], data: Vec<u8>) -> Result<Cells, &'static str> {
        const BAD: &str = "cached cell lengths do not fit their data";
        // Every cell takes at least one byte of `lengths`: one allocation, exact
        // while cells are shorter than 127 bytes.
        let mut ends = Vec::with_capacity(lengths.len());
        let mut end = 0usize;
        while !lengths.is_empty() {
            let tag;
            (tag, lengths) = read_varint(lengths).ok_or(BAD)?;
            match tag.checked_sub(1) {
                None => ends.push(end | NULL),
                Some(len) => {
                    end = end
                        .checked_add(len)
                        .filter(|&e| e <= data.len())
                        .ok_or(BAD)?;
                    ends.push(end);
                }
            }
        }
        match end == data.len() {
            true => Ok(Cells { data, ends }),
            false => Err(BAD),
        }
    }
}

/// Appends `value` as a LEB128 varint: seven bits a byte, low bits first, the
/// high bit set on every byte but the last.
fn push_varint(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The varint `bytes` starts with, and the bytes after it; `None` if it is cut
/// short or does not fit a `usize`.
fn read_varint(bytes: &[u8]) -> Option<(usize, &[u8])> {
    // Most cells are shorter than 127 bytes: one byte, checked once.
    if let Some((&byte, rest)) = bytes.split_first().filter(|(&b, _)| b < 0x80) {
        return Some((usize::from(byte), rest));
    }
    let mut value = 0usize;
    for (i, &byte) in bytes.iter().enumerate() {
        let shift = 7 * i as u32;
        let bits = usize::from(byte & 0x7f);
        if shift >= usize::BITS || (bits << shift) >> shift != bits {
            return None;
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// A byte string serialised as one MessagePack `bin`, not an array of numbers.
pub(super) struct Bin<'a>(pub(super) &'a [u8]);

impl Serialize for Bin<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl Serialize for Cells {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut pair = serializer.serialize_tuple(2)?;
        pair.serialize_element(&Bin(&self.lengths()))?;
        pair.serialize_element(&Bin(&self.data))?;
        pair.end()
    }
}

impl<'de> Deserialize<'de> for Cells {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_tuple(2, CellsVisitor)
    }
}

struct CellsVisitor;

impl<'de> Visitor<'de> for CellsVisitor {
    type Value = Cells;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cell lengths and data")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cells, A::Error> {
        let missing = || de::Error::custom("cached cells cut short");
        let Lengths(lengths) = seq.next_element()?.ok_or_else(missing)?;
        let Data(data) = seq.next_element()?.ok_or_else(missing)?;
        Cells::from_stored(&lengths, data).map_err(de::Error::custom)
    }
}

/// The stored lengths, borrowed from the payload when the decoder can lend them.
struct Lengths<'de>(std::borrow::Cow<'de, [u8]>);

impl<'de> Deserialize<'de> for Lengths<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(LengthsVisitor)
    }
}

struct LengthsVisitor;

impl<'de> Visitor<'de> for LengthsVisitor {
    type Value = Lengths<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Lengths<'de>, E> {
        Ok(Lengths(v.into()))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Lengths<'de>, E> {
        Ok(Lengths(v.to_vec().into()))
    }
}

/// The stored data: copied once out of the payload.
struct Data(Vec<u8>);

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(DataVisitor)
    }
}

struct DataVisitor;

impl Visitor<'_> for DataVisitor {
    type Value = Data;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Data, E> {
        Ok(Data(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Data, E> {
        Ok(Data(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    fn cells(of: &[Option<&[u8]>]) -> Cells {
        let mut cells = Cells::default();
        of.iter().for_each(|cell| cells.push(*cell));
        cells
    }

    #[test]
    fn cells_keep_nulls_empties_and_bytes() {
        let long = [7u8; 300];
        let of: [Option<&[u8]>; 5] = [Some(b"ab"), None, Some(b""), Some(&long), None];
        let cells = cells(&of);
        assert_eq!(cells.len(), 5);
        for (i, cell) in of.iter().enumerate() {
            assert_eq!(cells.get(i), Some(*cell));
        }
        assert_eq!(cells.get(5), None);
        let bytes = codec::encode(&cells).unwrap();
        assert_eq!(codec::decode::<Cells>(&bytes), Some(cells));
        let none = Cells::default();
        let bytes = codec::encode(&none).unwrap();
        assert_eq!(codec::decode::<Cells>(&bytes), Some(none));
    }

    #[test]
    fn varints_round_trip_and_reject_garbage() {
        for value in [0, 1, 127, 128, 300, u32::MAX as usize, usize::MAX] {
            let mut out = Vec::new();
            push_varint(&mut out, value);
            assert_eq!(read_varint(&out), Some((value, &[][..])));
            assert_eq!(read_varint(&out[..out.len() - 1]), None, "cut short");
        }
        assert_eq!(read_varint(&[0xff; 11]), None, "too long for a usize");
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            None
        );
    }

    #[test]
    fn lengths_that_do_not_fit_the_data_are_errors() {
        assert!(Cells::from_stored(&[3, 0, 1], b"ab".to_vec()).is_ok());
        assert!(
            Cells::from_stored(&[4], b"ab".to_vec()).is_err(),
            "past the end"
        );
        assert!(
            Cells::from_stored(&[2], b"ab".to_vec()).is_err(),
            "bytes left over"
        );
        assert!(
            Cells::from_stored(&[0x83], b"ab".to_vec()).is_err(),
            "cut short"
        );
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(
            Cells::from_stored(&huge, vec![]).is_err(),
            "length overflows"
        );
        for garbage in [
            &b"\x92\xc4\x01\x03"[..],
            b"\x91\xc4\x00",
            b"\x93\xc4\x00\xc4\x00\xc0",
            b"\x92\x01\x02",
        ] {
            assert_eq!(codec::decode::<Cells>(garbage), None);
        }
    }
}
