//! `explain "<SQL>"` / `explain --query-file F`.

use std::io::Write;
use std::path::Path;

use super::{say, CliError, CliResult, SqlDialectArg};
use crate::backend::Dialect;

/// Prints the dependencies of one statement.
pub(super) fn run(
    sql: Option<&str>,
    file: Option<&Path>,
    dialect: SqlDialectArg,
    out: &mut dyn Write,
) -> CliResult {
    let sql = match (sql, file) {
        (Some(sql), _) => sql.to_string(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| CliError::caused(&format!("cannot read {}", path.display()), e))?,
        (None, None) => return Err(CliError::new("explain needs SQL or --query-file")),
    };
    let dialect = match dialect {
        SqlDialectArg::Postgres => Dialect::Postgres,
        SqlDialectArg::Sqlite => Dialect::Sqlite,
    };
    let explanation = crate::deps::explain(sql.trim(), dialect).map_err(|e| {
        CliError::caused("cannot analyse the SQL (such a query is never cached)", e)
    })?;
    write!(out, "{explanation}").map_err(|e| CliError::caused("cannot write the report", e))?;
    if dialect == Dialect::Sqlite {
        say(out, "($n is the n-th `?` placeholder)")?;
    }
    Ok(())
}
