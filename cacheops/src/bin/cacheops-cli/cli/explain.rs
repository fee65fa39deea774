//! `explain "<SQL>"` / `explain --query-file F`.

use std::io::Write;
use std::path::Path;

use super::{say, CliError, CliResult, Settings, SqlDialectArg};
use cacheops::deps::Explanation;
use cacheops::registry::{self, ModelEntry};
use cacheops::Dialect;

/// Prints the dependencies of one statement.
pub(super) fn run(
    settings: &Settings,
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
    let explanation = cacheops::deps::explain(sql.trim(), dialect).map_err(|e| {
        CliError::caused("cannot analyse the SQL (such a query is never cached)", e)
    })?;
    write!(out, "{explanation}").map_err(|e| CliError::caused("cannot write the report", e))?;
    if dialect == Dialect::Sqlite {
        say(out, "($n is the n-th `?` placeholder)")?;
    }
    overrides(settings, &explanation, out)
}

/// Per-column equality overrides of the tables involved, from the registry: a
/// column marked `inexact` never narrows, whatever the SQL says. Best effort:
/// explain works without Redis, and then only says it could not look.
fn overrides(settings: &Settings, explanation: &Explanation, out: &mut dyn Write) -> CliResult {
    let timeout = std::time::Duration::from_millis(500);
    let models = registry::connect(&settings.redis_url, timeout)
        .and_then(|mut con| registry::read(&mut con, &settings.prefix));
    let models = match models {
        Ok(models) => models,
        Err(e) => {
            return say(
                out,
                format!("(model registry not read, column overrides not shown: {e})"),
            )
        }
    };
    let involved = |m: &&ModelEntry| explanation.tables.iter().any(|t| t.table == m.table);
    for model in models.iter().filter(involved) {
        let marked = model
            .columns
            .iter()
            .zip(&model.equality)
            .filter(|(_, e)| *e != "by_type");
        for (column, equality) in marked {
            let effect = match equality.as_str() {
                "inexact" => "terms on it never narrow",
                _ => "terms on it narrow whatever its type",
            };
            let (table, label) = (&model.table, &model.label);
            say(
                out,
                format!("{table}.{column} is marked {equality} in {label}: {effect}"),
            )?;
        }
    }
    Ok(())
}
