//! What installing the change feed would do, on either database: the tables it
//! covers, the ones it skips, and what stands in the way.

use crate::error::{Error, ErrorKind, Result};

/// The outbox's default schema (PostgreSQL) or table-name prefix (SQLite).
pub const DEFAULT_SCHEMA: &str = "cacheops";

/// The outbox's version mark (PostgreSQL: the table's comment; SQLite: the row
/// of `<prefix>_outbox_version`), naming the shape this version of cacheops
/// writes and reads: an outbox made by another version is refused, never misread.
pub const VERSION: &str = "cacheops change feed, outbox version 1";

/// What [`plan`](super::plan) found: the SQL to run, the tables it leaves out,
/// and what stops it from being installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The statements that install the feed, in order.
    pub sql: String,
    /// The statements that remove it again.
    pub uninstall_sql: String,
    /// Tables of registered models the database does not have, and why.
    pub skipped: Vec<String>,
    /// Tables the triggers are installed on.
    pub tables: Vec<String>,
    /// Why the feed must not be installed as it stands (a model's column the
    /// table lacks, an outbox of another version); [`install`](super::install)
    /// refuses while there is any.
    pub problems: Vec<String>,
}

impl Plan {
    pub(super) fn empty() -> Plan {
        Plan {
            sql: String::new(),
            uninstall_sql: String::new(),
            skipped: Vec::new(),
            tables: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Notes `table`'s place in the plan: skipped if the database lacks it (its
    /// `columns` are `None`), else covered, with a problem for each column of a
    /// model of it that the table lacks.
    pub(super) fn add(
        &mut self,
        models: &[Modelled],
        name: &str,
        found: Option<(String, &[String])>,
    ) {
        let Some((table, present)) = found else {
            self.skipped
                .push(format!("{name}: no such table in this database"));
            return;
        };
        for model in models.iter().filter(|m| m.table == name) {
            self.problems
                .extend(missing_columns(model, &table, present));
        }
        self.tables.push(table);
    }
}

/// What the feed needs of a model: its label, table and columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modelled {
    /// `app.Model`.
    pub label: String,
    /// The table, as the model names it.
    pub table: String,
    /// The model's columns.
    pub columns: Vec<String>,
}

impl From<&crate::model::ModelInfo> for Modelled {
    fn from(m: &crate::model::ModelInfo) -> Modelled {
        Modelled {
            label: m.label.to_string(),
            table: m.table.to_string(),
            columns: m.columns.iter().map(|c| c.to_string()).collect(),
        }
    }
}

impl From<&crate::registry::ModelEntry> for Modelled {
    fn from(m: &crate::registry::ModelEntry) -> Modelled {
        Modelled {
            label: m.label.clone(),
            table: m.table.clone(),
            columns: m.columns.clone(),
        }
    }
}

/// The models' tables, each once, in order.
pub(super) fn table_names(models: &[Modelled]) -> Vec<&str> {
    let mut names: Vec<&str> = models.iter().map(|m| m.table.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// A model's columns its table does not have, one problem each.
fn missing_columns(model: &Modelled, table: &str, present: &[String]) -> Vec<String> {
    model
        .columns
        .iter()
        .filter(|c| !present.contains(c))
        .map(|c| {
            format!(
                "{table}: column `{c}` of model {} is not in the table (renamed or dropped? \
                 update the model or the table first)",
                model.label
            )
        })
        .collect()
}

/// What the database holds where the outbox belongs.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outbox {
    /// No outbox: the feed is not installed there.
    Missing,
    /// The outbox this version reads.
    Current,
    /// An outbox of another version, with its mark.
    Other(String),
}

impl Outbox {
    /// The outbox found by its version mark (`None`: no outbox at all).
    pub(super) fn of(mark: Option<Option<String>>) -> Outbox {
        match mark {
            None => Outbox::Missing,
            Some(Some(m)) if m == VERSION => Outbox::Current,
            Some(m) => Outbox::Other(m.unwrap_or_default()),
        }
    }

    /// The problem a plan reports for this outbox, if any.
    pub(super) fn problem(&self, place: &str) -> Option<String> {
        match self {
            Outbox::Other(found) => Some(format!(
                "{place} was made by another version of cacheops (its mark: {found:?}; this \
                 one reads {VERSION:?}): apply its rows with that version's consumer, then \
                 run `feed uninstall` and `feed install`"
            )),
            _ => None,
        }
    }

    /// Fails with a clear [`ErrorKind::Config`] error unless this is the outbox
    /// this version reads: what a consumer checks before it claims a row.
    pub(super) fn check(&self, place: &str) -> Result<()> {
        let message = match self {
            Outbox::Current => return Ok(()),
            Outbox::Missing => {
                format!("no outbox {place}: run `cacheops-cli feed install` first")
            }
            other => other.problem(place).unwrap_or_default(),
        };
        Err(Error::new(
            ErrorKind::Config,
            format!("change feed: {message}"),
        ))
    }
}

/// An [`ErrorKind::Config`] error listing the plan's problems, if it has any.
pub fn refuse_problems(plan: &Plan) -> Result<()> {
    match plan.problems.is_empty() {
        true => Ok(()),
        false => Err(Error::new(
            ErrorKind::Config,
            format!(
                "the change feed cannot be installed: {}",
                plan.problems.join("; ")
            ),
        )),
    }
}

/// An identifier, double-quoted (inner quotes doubled): table and column names
/// come from models and the registry, never from SQL.
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A string literal, single-quoted.
pub(super) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
