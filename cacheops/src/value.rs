//! Canonical values: a bind or a column value as the backend serialises it.
//!
//! Query binds and row values go through the same bind collector, so "does this
//! row match this condition" is byte equality of two [`Value`]s.

/// How SQL equality on a value's type relates to byte equality.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Equality {
    /// Equal in SQL exactly when the bytes are equal: safe for granular conditions.
    Exact,
    /// SQL may call different bytes equal (floats, numeric, json, char(n), custom
    /// types such as citext): a condition on it widens to the whole table.
    Inexact,
    /// A PostgreSQL array bind (`col = ANY($1)`); its elements carry their own class.
    PgArray,
}

/// A canonical value: a type tag and the backend's bytes, or NULL.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value {
    /// Backend type tag: a PostgreSQL type OID (custom types get a stable stand-in),
    /// or the SQLite storage class.
    pub ty: u32,
    /// Whether byte equality is SQL equality for this type.
    pub equality: Equality,
    /// The serialised bytes; `None` is SQL NULL.
    pub bytes: Option<Box<[u8]>>,
}

impl Value {
    /// Whether this is SQL NULL.
    pub fn is_null(&self) -> bool {
        self.bytes.is_none()
    }
}

/// Equality class of a PostgreSQL built-in type OID. Unknown and custom OIDs are inexact.
pub fn pg_equality(oid: u32) -> Equality {
    match oid {
        // bool, bytea, "char", name, int8, int2, int4, text, oid, varchar, date,
        // time, timestamp, timestamptz, uuid
        16 | 17 | 18 | 19 | 20 | 21 | 23 | 25 | 26 | 1043 | 1082 | 1083 | 1114 | 1184 | 2950 => {
            Equality::Exact
        }
        // arrays of the above (and of anything else: elements are judged one by one)
        1000 | 1001 | 1002 | 1003 | 1005 | 1007 | 1009 | 1016 | 1015 | 1028 | 1182 | 1183
        | 1115 | 1185 | 2951 => Equality::PgArray,
        _ => Equality::Inexact,
    }
}
