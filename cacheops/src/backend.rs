//! The backends cacheops supports, and how it reads a query's SQL and binds.
//!
//! Both come from Diesel's own machinery: the backend's query builder renders the
//! SQL, its bind collector serialises the binds. A model's column values go through
//! the same collector (see [`encode_value`]), so conditions and rows compare bytes.

use diesel::backend::Backend;
use diesel::query_builder::{QueryBuilder, QueryFragment};
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;

use crate::error::{Error, ErrorKind, Result};
use crate::value::Value;

/// The SQL dialect a backend renders, for the dependency parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL: `$n` placeholders, `= ANY($n)` array binds.
    Postgres,
    /// SQLite: `?` placeholders, `IN (?, ?)` lists.
    Sqlite,
}

/// A query rendered for caching: its SQL text and its canonical binds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The SQL exactly as Diesel sends it.
    pub sql: String,
    /// The binds in placeholder order.
    pub binds: Vec<Value>,
}

mod sealed {
    pub trait Sealed {}
}

/// A Diesel backend cacheops can cache queries of. Sealed: implemented for the
/// backends enabled by Cargo features.
pub trait CacheBackend:
    Backend<QueryBuilder: Default> + Default + sealed::Sealed + 'static
{
    /// Short name, part of every cache key.
    const NAME: &'static str;
    /// The dialect of the SQL this backend renders.
    const DIALECT: Dialect;
    /// Appended to a SELECT to lock the rows it reads until the transaction ends.
    const ROW_LOCK: &'static str;

    /// The canonical binds of a query fragment.
    fn collect_binds<Q: QueryFragment<Self> + ?Sized>(query: &Q) -> Result<Vec<Value>>;

    /// The SQL of a query fragment, as Diesel renders it for this backend.
    fn render_sql<Q: QueryFragment<Self> + ?Sized>(query: &Q) -> Result<String> {
        let mut builder = <Self as Backend>::QueryBuilder::default();
        query
            .to_sql(&mut builder, &Self::default())
            .map_err(sql_error)?;
        Ok(builder.finish())
    }

    /// The canonical value of a column as the database returned it in a row:
    /// equal to what [`encode_value`] gives for the same value.
    fn raw_value(raw: Option<<Self as Backend>::RawValue<'_>>) -> Result<Value>;

    /// SQL and binds of a query fragment.
    fn render<Q: QueryFragment<Self> + ?Sized>(query: &Q) -> Result<Rendered> {
        Ok(Rendered {
            sql: Self::render_sql(query)?,
            binds: Self::collect_binds(query)?,
        })
    }
}

fn sql_error(e: diesel::result::Error) -> Error {
    Error::new(ErrorKind::Encode, "could not render the query").with_source(e)
}

/// One value bound as SQL type `ST`: the same bind a query's `col.eq(value)` makes.
struct BindOne<'a, ST, T: ?Sized>(&'a T, std::marker::PhantomData<ST>);

impl<ST, T, DB> QueryFragment<DB> for BindOne<'_, ST, T>
where
    DB: Backend + HasSqlType<ST>,
    T: ToSql<ST, DB> + ?Sized,
{
    fn walk_ast<'b>(
        &'b self,
        mut pass: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> diesel::QueryResult<()> {
        pass.push_bind_param::<ST, T>(self.0)
    }
}

/// The canonical value of `value` as a column of SQL type `ST`.
///
/// This is what a model's generated code calls for each column; it is byte-equal to
/// the bind of `column.eq(value)` in a query.
pub fn encode_value<DB, ST, T>(value: &T) -> Result<Value>
where
    DB: CacheBackend + HasSqlType<ST>,
    T: ToSql<ST, DB> + ?Sized,
{
    let mut binds = DB::collect_binds(&BindOne::<ST, T>(value, std::marker::PhantomData))?;
    binds
        .pop()
        .ok_or_else(|| Error::new(ErrorKind::Encode, "a value produced no bind"))
}

#[cfg(feature = "postgres")]
mod pg {
    use super::*;
    use crate::value::pg_equality;
    use diesel::pg::{Pg, PgMetadataLookup, PgTypeMetadata};
    use diesel::query_builder::bind_collector::RawBytesBindCollector;

    impl sealed::Sealed for Pg {}

    impl CacheBackend for Pg {
        const NAME: &'static str = "pg";
        const DIALECT: Dialect = Dialect::Postgres;
        const ROW_LOCK: &'static str = " FOR UPDATE";

        fn raw_value(raw: Option<diesel::pg::PgValue<'_>>) -> Result<Value> {
            Ok(match raw {
                None => Value {
                    ty: 0,
                    equality: crate::value::Equality::Exact,
                    bytes: None,
                },
                Some(raw) => {
                    let ty = raw.get_oid().get();
                    Value {
                        ty,
                        equality: pg_equality(ty),
                        bytes: Some(raw.as_bytes().into()),
                    }
                }
            })
        }

        fn collect_binds<Q: QueryFragment<Self> + ?Sized>(query: &Q) -> Result<Vec<Value>> {
            let mut collector = RawBytesBindCollector::<Pg>::new();
            query
                .collect_binds(&mut collector, &mut StableOids, &Pg)
                .map_err(|e| {
                    Error::new(ErrorKind::Encode, "could not collect binds").with_source(e)
                })?;
            let values = collector.binds.into_iter().zip(collector.metadata);
            Ok(values
                .map(|(bytes, meta)| {
                    let ty = meta.oid().unwrap_or(CUSTOM_OID_BIT);
                    Value {
                        ty,
                        equality: pg_equality(ty),
                        bytes: bytes.map(Vec::into_boxed_slice),
                    }
                })
                .collect())
        }
    }

    /// Custom type OIDs change whenever the type is recreated, so keys must not hold
    /// them. Custom types get a stand-in OID from their name instead; such values are
    /// never sent to the server, only hashed and compared.
    struct StableOids;

    /// Set on every stand-in OID; real OIDs of built-in types are far below it.
    pub(super) const CUSTOM_OID_BIT: u32 = 0x8000_0000;

    impl PgMetadataLookup for StableOids {
        fn lookup_type(&mut self, type_name: &str, schema: Option<&str>) -> PgTypeMetadata {
            let name = format!("{}.{type_name}", schema.unwrap_or(""));
            let hash = xxhash_rust::xxh3::xxh3_64(name.as_bytes()) as u32;
            let oid = CUSTOM_OID_BIT | (hash & 0x3fff_ffff);
            PgTypeMetadata::new(oid, oid | 0x4000_0000)
        }
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use crate::value::Equality;
    use diesel::query_builder::bind_collector::MoveableBindCollector;
    use diesel::sqlite::Sqlite;

    impl sealed::Sealed for Sqlite {}

    impl CacheBackend for Sqlite {
        const NAME: &'static str = "sqlite";
        const DIALECT: Dialect = Dialect::Sqlite;
        const ROW_LOCK: &'static str = "";

        /// Re-encoded by storage class through the application's own encoder.
        fn raw_value(raw: Option<diesel::sqlite::SqliteValue<'_, '_, '_>>) -> Result<Value> {
            use diesel::sql_types::{BigInt, Binary, Double, Nullable, Text};
            use diesel::sqlite::SqliteType;
            let Some(mut raw) = raw else {
                return encode_value::<Sqlite, Nullable<Text>, _>(&None::<String>);
            };
            match raw.value_type() {
                Some(SqliteType::Long) => encode_value::<Sqlite, BigInt, _>(&raw.read_long()),
                Some(SqliteType::Double) => encode_value::<Sqlite, Double, _>(&raw.read_double()),
                Some(SqliteType::Binary) => encode_value::<Sqlite, Binary, _>(raw.read_blob()),
                Some(_) => encode_value::<Sqlite, Text, _>(raw.read_text()),
                None => encode_value::<Sqlite, Nullable<Text>, _>(&None::<String>),
            }
        }

        fn collect_binds<Q: QueryFragment<Self> + ?Sized>(query: &Q) -> Result<Vec<Value>> {
            let mut collector = <Sqlite as Backend>::BindCollector::default();
            query
                .collect_binds(&mut collector, &mut (), &Sqlite)
                .map_err(|e| {
                    Error::new(ErrorKind::Encode, "could not collect binds").with_source(e)
                })?;
            // SQLite's collector keeps its values private; its debug form is the one
            // public, lossless view of them (`I32(3)`, `String("a")`, `Null`).
            let data = collector.moveable();
            let mut shown: Vec<Box<dyn std::fmt::Debug>> = Vec::new();
            <<Sqlite as Backend>::BindCollector<'_> as MoveableBindCollector<Sqlite>>::push_debug_binds(&data, &mut shown);
            Ok(shown
                .iter()
                .map(|v| sqlite_value(&format!("{v:?}")))
                .collect())
        }
    }

    /// A value from its debug form: the variant names the storage class. Integers
    /// are normalised to their decimal digits, so an `Integer` bind and a `BigInt`
    /// column holding the same number compare equal, as they do in SQLite.
    fn sqlite_value(shown: &str) -> Value {
        let (variant, inner) = match shown.split_once('(') {
            Some((variant, rest)) => (variant, rest.strip_suffix(')').unwrap_or(rest)),
            None => (shown, ""),
        };
        let (ty, equality, bytes) = match variant {
            "I32" | "I64" => (1, Equality::Exact, inner),
            "F64" => (2, Equality::Inexact, inner),
            "String" => (3, Equality::Exact, inner),
            "Binary" => (4, Equality::Exact, inner),
            "Null" => {
                return Value {
                    ty: 5,
                    equality: Equality::Exact,
                    bytes: None,
                }
            }
            _ => (6, Equality::Inexact, shown),
        };
        Value {
            ty,
            equality,
            bytes: Some(bytes.as_bytes().into()),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use diesel::sql_types::{BigInt, Integer, Nullable, Text};

        #[test]
        fn integers_of_any_width_encode_alike() {
            let small = encode_value::<Sqlite, Integer, _>(&3i32).unwrap();
            let big = encode_value::<Sqlite, BigInt, _>(&3i64).unwrap();
            assert_eq!(small, big);
            assert_eq!(small.bytes.as_deref(), Some(&b"3"[..]));
        }

        #[test]
        fn text_null_and_empty_differ() {
            let empty = encode_value::<Sqlite, Text, _>("").unwrap();
            let null = encode_value::<Sqlite, Nullable<Text>, _>(&None::<String>).unwrap();
            let comma = encode_value::<Sqlite, Text, _>("a, b").unwrap();
            assert!(null.is_null() && !empty.is_null());
            assert_ne!(comma, encode_value::<Sqlite, Text, _>("a").unwrap());
        }
    }
}
