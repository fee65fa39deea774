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
pub(crate) fn pg_equality(oid: u32) -> Equality {
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

/// Kinds of values that compare by byte equality once canonical, whatever the
/// exact type inside the kind: integers of every width (conjunction keys spell
/// them as 8 bytes, see `protocol/layout.rs`), text and varchar, and so on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    Int,
    Text,
    Bool,
    Binary,
    Float,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Uuid,
}

/// Whether a type tag is an SQLite storage class (1–6) rather than a PostgreSQL
/// OID (built-in types start at 16, stand-ins for custom ones at `0x8000_0000`).
pub(crate) fn is_sqlite_tag(ty: u32) -> bool {
    (1..=6).contains(&ty)
}

/// The family of a value's type tag; `None` for types without one (NULL, custom
/// types, arrays, ...).
pub(crate) fn family_of_tag(ty: u32) -> Option<Family> {
    Some(match ty {
        1 | 20 | 21 | 23 => Family::Int,
        3 | 19 | 25 | 1043 => Family::Text,
        2 | 700 | 701 => Family::Float,
        4 | 17 => Family::Binary,
        16 => Family::Bool,
        1082 => Family::Date,
        1083 => Family::Time,
        1114 => Family::Timestamp,
        1184 => Family::Timestamptz,
        2950 => Family::Uuid,
        _ => return None,
    })
}

/// The family a column of this Diesel SQL type (its `std::any::type_name`) holds
/// on PostgreSQL, or on SQLite, where a column stores integers, reals, text or
/// blobs (booleans as integers, dates and times as text).
pub(crate) fn family_of_sql_type(type_name: &str, sqlite: bool) -> Option<Family> {
    let inner = type_name
        .strip_prefix("diesel::sql_types::Nullable<")
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(type_name);
    let name = inner.rsplit("::").next()?;
    let pg = match name {
        "SmallInt" | "Integer" | "BigInt" => Family::Int,
        "Text" => Family::Text,
        "Bool" => Family::Bool,
        "Binary" => Family::Binary,
        "Float" | "Double" => Family::Float,
        "Date" => Family::Date,
        "Time" => Family::Time,
        "Timestamp" => Family::Timestamp,
        "Timestamptz" | "TimestamptzSqlite" => Family::Timestamptz,
        "Uuid" => Family::Uuid,
        _ => return None,
    };
    Some(match (sqlite, pg) {
        (false, family) => family,
        (true, Family::Int | Family::Bool) => Family::Int,
        (true, Family::Float | Family::Binary) => pg,
        (true, _) => Family::Text,
    })
}

/// The canonical form of an integer's bytes in conjunction keys: PostgreSQL's
/// `int2`/`int4`/`int8` as the 8 bytes of the same `i64`, so an `Integer` bind
/// against a `BIGINT` column matches the column's values. `None`: keep the bytes.
pub(crate) fn canonical_int(value: &Value) -> Option<[u8; 8]> {
    let bytes = value.bytes.as_deref()?;
    let n = match (value.ty, bytes.len()) {
        (21, 2) => i64::from(i16::from_be_bytes(bytes.try_into().ok()?)),
        (23, 4) => i64::from(i32::from_be_bytes(bytes.try_into().ok()?)),
        (20, 8) => i64::from_be_bytes(bytes.try_into().ok()?),
        _ => return None,
    };
    Some(n.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(ty: u32, bytes: &[u8]) -> Value {
        Value {
            ty,
            equality: pg_equality(ty),
            bytes: Some(bytes.into()),
        }
    }

    #[test]
    fn integers_of_every_width_are_one_canonical_value() {
        let small = canonical_int(&pg(21, &(-3i16).to_be_bytes()));
        let int = canonical_int(&pg(23, &(-3i32).to_be_bytes()));
        let big = canonical_int(&pg(20, &(-3i64).to_be_bytes()));
        assert_eq!(small, big);
        assert_eq!(int, big);
        assert_eq!(canonical_int(&pg(25, b"-3")), None);
    }

    #[test]
    fn sql_types_have_their_backends_families() {
        let nullable_big = "diesel::sql_types::Nullable<diesel::sql_types::BigInt>";
        assert_eq!(family_of_sql_type(nullable_big, false), Some(Family::Int));
        assert_eq!(
            family_of_sql_type("diesel::sql_types::Bool", true),
            Some(Family::Int)
        );
        assert_eq!(
            family_of_sql_type("diesel::sql_types::Timestamp", true),
            Some(Family::Text)
        );
        assert_eq!(
            family_of_sql_type("diesel::sql_types::Numeric", false),
            None
        );
        assert_eq!(family_of_tag(23), family_of_tag(20));
        assert_ne!(family_of_tag(3), family_of_tag(1));
    }
}
