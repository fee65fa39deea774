//! Reading a row's current state from the application's database, in the same
//! canonical form the application's own invalidations use.
//!
//! The CLI has no Rust types for the model, so it reads raw column values:
//! - PostgreSQL: Diesel receives results in the binary format, which is byte for byte
//!   what the bind collector sends for the same value; the value's type OID comes
//!   with it. (Custom types get a stand-in OID in the application; conjunction keys
//!   hold only the bytes, so the OID does not matter for matching.)
//! - SQLite: each value is re-encoded through [`cacheops::__private::encode_value`] as its storage
//!   class (integer, real, text, blob, NULL), which is exactly the normalised form
//!   the application's binds take.

use diesel::connection::{DefaultLoadingMode, LoadConnection};
use diesel::row::{Field, Row};

use super::{CliError, CliResult};
use cacheops::__private::quote;
use cacheops::__private::DatabaseUrl;
use cacheops::registry::ModelEntry;
use cacheops::Value;

/// A database the CLI can read from, chosen by the URL's scheme.
pub(crate) enum Database {
    /// `postgres://` or `postgresql://`.
    #[cfg(feature = "postgres")]
    Pg(diesel::pg::PgConnection),
    /// `sqlite://path`, `file:...`, or a path.
    #[cfg(feature = "sqlite")]
    Sqlite(diesel::sqlite::SqliteConnection),
}

impl Database {
    /// Connects to `url`.
    pub(crate) fn connect(url: &str) -> CliResult<Database> {
        use diesel::Connection;
        let failed =
            |e: diesel::ConnectionError| CliError::caused("cannot connect to the database", e);
        match DatabaseUrl::parse(url) {
            #[cfg(feature = "postgres")]
            Some(DatabaseUrl::Postgres(url)) => {
                return Ok(Database::Pg(
                    diesel::pg::PgConnection::establish(url).map_err(failed)?,
                ))
            }
            #[cfg(feature = "sqlite")]
            Some(DatabaseUrl::Sqlite(path)) => {
                return Ok(Database::Sqlite(
                    diesel::sqlite::SqliteConnection::establish(path).map_err(failed)?,
                ))
            }
            _ => {}
        }
        Err(CliError::new(format!(
            "unsupported database URL `{url}` (this build reads postgres:// and SQLite paths)"
        )))
    }

    /// The current values of every column of `model` for the row whose primary key
    /// is `id` (given as text, one part per key column); `None` if no such row.
    pub(crate) fn read_row(
        &mut self,
        model: &ModelEntry,
        id: &[&str],
    ) -> CliResult<Option<Vec<Value>>> {
        if id.len() != model.primary_key.len() {
            return Err(CliError::new(format!(
                "malformed id: {} has {} primary key column(s) ({}), got {} value(s)",
                model.label,
                model.primary_key.len(),
                model.primary_key.join(", "),
                id.len()
            )));
        }
        let read = match self {
            #[cfg(feature = "postgres")]
            Database::Pg(conn) => read_pg_row(conn, model, id),
            #[cfg(feature = "sqlite")]
            Database::Sqlite(conn) => read_sqlite_row(conn, model, id),
        };
        read.map_err(|e| {
            CliError::caused(&format!("cannot read {} {}", model.label, id.join(",")), e)
        })
    }
}

/// `SELECT "c1", "c2" FROM "t" WHERE "k1" = <p1> AND ...`, `placeholder(i)` giving
/// the i-th key condition's right side.
fn select_row(model: &ModelEntry, placeholder: impl Fn(usize) -> String) -> String {
    let columns: Vec<String> = model.columns.iter().map(|c| quote(c)).collect();
    let keys: Vec<String> = model
        .primary_key
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{} = {}", quote(k), placeholder(i)))
        .collect();
    format!(
        "SELECT {} FROM {} WHERE {}",
        columns.join(", "),
        quote(&model.table),
        keys.join(" AND ")
    )
}

/// Reads one row from PostgreSQL. Each key value is bound as text and cast to the
/// key column's own type (read from the catalog), so the primary key index is used
/// and `034` finds row 34 of an integer key.
#[cfg(feature = "postgres")]
pub(crate) fn read_pg_row(
    conn: &mut diesel::pg::PgConnection,
    model: &ModelEntry,
    id: &[&str],
) -> cacheops::Result<Option<Vec<Value>>> {
    use diesel::sql_types::Text;
    let types = model
        .primary_key
        .iter()
        .map(|k| pg_column_type(conn, &model.table, k))
        .collect::<cacheops::Result<Vec<String>>>()?;
    let sql = select_row(model, |i| format!("${}::{}", i + 1, types[i]));
    let mut query = diesel::sql_query(sql).into_boxed::<diesel::pg::Pg>();
    for part in id {
        query = query.bind::<Text, _>(part.to_string());
    }
    let mut rows =
        <diesel::pg::PgConnection as LoadConnection<DefaultLoadingMode>>::load(conn, query)?;
    let Some(row) = rows.next().transpose()? else {
        return Ok(None);
    };
    (0..model.columns.len())
        .map(|i| pg_value(row.get(i)))
        .collect::<cacheops::Result<Vec<_>>>()
        .map(Some)
}

#[cfg(feature = "postgres")]
fn pg_value<'a, F: Field<'a, diesel::pg::Pg>>(field: Option<F>) -> cacheops::Result<Value> {
    use cacheops::CacheBackend;
    let field = field.ok_or_else(missing_column)?;
    diesel::pg::Pg::raw_value(field.value())
}

fn missing_column() -> cacheops::Error {
    cacheops::Error::new(
        cacheops::ErrorKind::Database,
        "the row has fewer columns than asked",
    )
}

/// The SQL type of `table.column` as PostgreSQL spells it (`integer`,
/// `character varying(255)`), through the connection's search path.
#[cfg(feature = "postgres")]
fn pg_column_type(
    conn: &mut diesel::pg::PgConnection,
    table: &str,
    column: &str,
) -> cacheops::Result<String> {
    use diesel::sql_types::Text;
    use diesel::{OptionalExtension as _, RunQueryDsl as _};
    #[derive(diesel::QueryableByName)]
    struct Type {
        #[diesel(sql_type = Text)]
        ty: String,
    }
    let sql = "SELECT format_type(a.atttypid, a.atttypmod) AS ty FROM pg_attribute a \
               WHERE a.attrelid = to_regclass($1) AND a.attname = $2 \
               AND a.attnum > 0 AND NOT a.attisdropped";
    let found = diesel::sql_query(sql)
        .bind::<Text, _>(quote(table))
        .bind::<Text, _>(column)
        .get_result::<Type>(conn)
        .optional()?;
    found.map(|t| t.ty).ok_or_else(|| {
        cacheops::Error::new(
            cacheops::ErrorKind::Database,
            format!("no column {column} in table {table} (check the database URL and search_path)"),
        )
    })
}

/// Reads one row from SQLite. Key values are bound as text: SQLite applies the key
/// column's affinity, so `34` finds the integer 34.
#[cfg(feature = "sqlite")]
pub(crate) fn read_sqlite_row(
    conn: &mut diesel::sqlite::SqliteConnection,
    model: &ModelEntry,
    id: &[&str],
) -> cacheops::Result<Option<Vec<Value>>> {
    use diesel::sql_types::Text;
    let sql = select_row(model, |_| "?".to_string());
    let mut query = diesel::sql_query(sql).into_boxed::<diesel::sqlite::Sqlite>();
    for part in id {
        query = query.bind::<Text, _>(part.to_string());
    }
    let mut rows = <diesel::sqlite::SqliteConnection as LoadConnection<DefaultLoadingMode>>::load(
        conn, query,
    )?;
    let Some(row) = rows.next().transpose()? else {
        return Ok(None);
    };
    (0..model.columns.len())
        .map(|i| sqlite_value(row.get(i)))
        .collect::<cacheops::Result<Vec<_>>>()
        .map(Some)
}

/// A value re-encoded as its storage class, through the application's encoder.
#[cfg(feature = "sqlite")]
fn sqlite_value<'a, F: Field<'a, diesel::sqlite::Sqlite>>(
    field: Option<F>,
) -> cacheops::Result<Value> {
    use cacheops::CacheBackend;
    let field = field.ok_or_else(missing_column)?;
    diesel::sqlite::Sqlite::raw_value(field.value())
}
