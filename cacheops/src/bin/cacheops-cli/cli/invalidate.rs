//! `invalidate app.Model.<id> | app.Model | app | all`.

use std::io::Write;

use super::db::Database;
use super::{redis_connection, say, CliError, CliResult, Settings};
use cacheops::registry::{self, ModelEntry};
use cacheops::store::{QueryStore, RedisStore, RowState};

/// What to invalidate, as the user named it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Target<'a> {
    All,
    App(&'a str),
    Model(&'a str),
    /// Label and the primary key value as typed (comma-separated for composite
    /// keys; split once the model's key is known, so a text key may hold commas).
    Row(&'a str, &'a str),
}

/// Splits `app.Model.34` (the id may itself contain dots), `app.Model`, `app`, `all`.
pub(super) fn parse_target(text: &str) -> CliResult<Target<'_>> {
    if text == "all" {
        return Ok(Target::All);
    }
    let malformed = || {
        CliError::new(format!(
            "malformed target `{text}`: expected app.Model.<id>, app.Model, app or all"
        ))
    };
    let mut parts = text.splitn(3, '.');
    let app = parts
        .next()
        .filter(|a| !a.is_empty())
        .ok_or_else(malformed)?;
    let Some(model) = parts.next() else {
        return Ok(Target::App(app));
    };
    if model.is_empty() {
        return Err(malformed());
    }
    let label = &text[..app.len() + 1 + model.len()];
    match parts.next() {
        None => Ok(Target::Model(label)),
        Some("") => Err(CliError::new(format!(
            "malformed id in `{text}`: it is empty"
        ))),
        Some(id) => Ok(Target::Row(label, id)),
    }
}

/// Runs the command.
pub(super) fn run(
    settings: &Settings,
    target: &str,
    model_wide: bool,
    out: &mut dyn Write,
) -> CliResult {
    let target = parse_target(target)?;
    let mut session = Session {
        store: RedisStore::open(&settings.redis_url, &settings.prefix)
            .map_err(|e| CliError::caused("bad Redis URL", e))?,
        con: redis_connection(settings)?,
        settings,
        out,
    };
    if target == Target::All {
        return session.all();
    }
    let models = registry::read(&mut session.con, &settings.prefix)
        .map_err(|e| CliError::caused("cannot read the model registry", e))?;
    match target {
        Target::App(app) => session.tables(&of_app(&models, app)?),
        Target::Model(label) => session.tables(&[resolve(&models, label)?]),
        Target::Row(label, id) => {
            let model = resolve(&models, label)?;
            session.row(model, &key_values(model, id)?, model_wide)
        }
        Target::All => Ok(()),
    }
}

/// The key value(s) of `id`: as typed for a one-column key, else split on commas.
fn key_values<'i>(model: &ModelEntry, id: &'i str) -> CliResult<Vec<&'i str>> {
    if model.primary_key.len() == 1 {
        return Ok(vec![id]);
    }
    let parts: Vec<&str> = id.split(',').collect();
    if parts.len() != model.primary_key.len() || parts.iter().any(|p| p.is_empty()) {
        return Err(CliError::new(format!(
            "malformed id `{id}`: {} has a composite key ({}); give one value per column, comma-separated",
            model.label,
            model.primary_key.join(", ")
        )));
    }
    Ok(parts)
}

/// The registry entry of a label (case-insensitive, as profiles match labels).
fn resolve<'m>(models: &'m [ModelEntry], label: &str) -> CliResult<&'m ModelEntry> {
    models
        .iter()
        .find(|m| m.label.eq_ignore_ascii_case(label))
        .ok_or_else(|| unknown(models, &format!("model label `{label}`")))
}

fn of_app<'m>(models: &'m [ModelEntry], app: &str) -> CliResult<Vec<&'m ModelEntry>> {
    let found: Vec<_> = models
        .iter()
        .filter(|m| m.app().eq_ignore_ascii_case(app))
        .collect();
    if found.is_empty() {
        return Err(unknown(models, &format!("app `{app}`")));
    }
    Ok(found)
}

fn unknown(models: &[ModelEntry], what: &str) -> CliError {
    let known: Vec<&str> = models.iter().map(|m| m.label.as_str()).collect();
    let known = match known.is_empty() {
        true => "none: no application has published its models under this prefix \
                 (they do when a Redis-backed cacheops handle starts; check --prefix)"
            .to_string(),
        false => known.join(", "),
    };
    CliError::new(format!("unknown {what}; registered models: {known}"))
}

/// What one invalidate command works with.
struct Session<'a> {
    store: RedisStore,
    /// For the registry and the stats.
    con: redis::Connection,
    settings: &'a Settings,
    out: &'a mut dyn Write,
}

impl Session<'_> {
    fn all(&mut self) -> CliResult {
        self.store
            .invalidate_all()
            .map_err(|e| CliError::caused("invalidate all failed (some keys may remain)", e))?;
        let prefix = &self.settings.prefix;
        say(
            self.out,
            format!("invalidated every key under prefix `{prefix}`"),
        )
    }

    /// Invalidates models table-wide, one by one; a failure names what was done and
    /// what was not, and fails the command.
    fn tables(&mut self, models: &[&ModelEntry]) -> CliResult {
        for (i, model) in models.iter().enumerate() {
            if let Err(e) = self.store.invalidate_table(&model.table) {
                let labels = |ms: &[&ModelEntry]| {
                    let labels: Vec<&str> = ms.iter().map(|m| m.label.as_str()).collect();
                    labels.join(", ")
                };
                return Err(CliError::new(format!(
                    "invalidating {} failed: {e}; invalidated: [{}]; NOT invalidated: [{}]",
                    model.label,
                    labels(&models[..i]),
                    labels(&models[i..])
                )));
            }
            self.count(model);
            let (label, table) = (&model.label, &model.table);
            say(
                self.out,
                format!("invalidated {label} (table {table}, every cached query)"),
            )?;
        }
        Ok(())
    }

    /// One row: its current state from the database, matched against every scheme
    /// cached for its table. Without a database only `--model-wide` can proceed.
    fn row(&mut self, model: &ModelEntry, id: &[&str], model_wide: bool) -> CliResult {
        let Some(url) = &self.settings.database_url else {
            if !model_wide {
                return Err(needs_database(model));
            }
            say(
                self.out,
                "no database: widening to the whole model (--model-wide)",
            )?;
            return self.tables(&[model]);
        };
        let Some(values) = Database::connect(url)?.read_row(model, id)? else {
            if !model_wide {
                return Err(no_row(model, id));
            }
            say(
                self.out,
                "no such row: widening to the whole model (--model-wide)",
            )?;
            return self.tables(&[model]);
        };
        let row = RowState {
            table: &model.table,
            columns: model
                .columns
                .iter()
                .map(String::as_str)
                .zip(values)
                .collect(),
        };
        self.store
            .invalidate_rows(&model.table, &[row])
            .map_err(|e| CliError::caused(&format!("invalidating {} failed", model.label), e))?;
        self.count(model);
        let (label, id) = (&model.label, id.join(","));
        say(
            self.out,
            format!("invalidated {label} {id} (queries matching its current state)"),
        )
    }

    /// Adds the invalidation to the published stats; a failure only warns (the
    /// invalidation itself succeeded).
    fn count(&mut self, model: &ModelEntry) {
        let counted: redis::RedisResult<()> = redis::cmd("HINCRBY")
            .arg(registry::stats_key(&self.settings.prefix))
            .arg(format!("{}:invalidations", model.label))
            .arg(1)
            .exec(&mut self.con);
        if let Err(e) = counted {
            eprintln!("cacheops-cli: warning: could not count the invalidation in stats: {e}");
        }
    }
}

fn needs_database(model: &ModelEntry) -> CliError {
    CliError::new(format!(
        "invalidating one row of {} needs its column values, read from the database: \
         set DATABASE_URL or --database-url. Without one, cacheops can only invalidate \
         the whole model: pass --model-wide to do that.",
        model.label
    ))
}

fn no_row(model: &ModelEntry, id: &[&str]) -> CliError {
    CliError::new(format!(
        "no row {}.{} in the database (deleted?): its old state is unknown; \
         pass --model-wide (or run `invalidate {}`) to invalidate the whole model",
        model.label,
        id.join(","),
        model.label
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(parse_target("all").unwrap(), Target::All);
        assert_eq!(parse_target("blog").unwrap(), Target::App("blog"));
        assert_eq!(
            parse_target("blog.Article").unwrap(),
            Target::Model("blog.Article")
        );
        assert_eq!(
            parse_target("blog.Article.34").unwrap(),
            Target::Row("blog.Article", "34")
        );
        assert_eq!(
            parse_target("a.B.x.y,2").unwrap(),
            Target::Row("a.B", "x.y,2")
        );
        for bad in ["", ".x", "a..1", "a.B."] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn composite_keys_split_on_commas_single_keys_do_not() {
        let mut model = ModelEntry {
            label: "a.B".into(),
            table: "b".into(),
            primary_key: vec!["x".into()],
            columns: vec!["x".into(), "y".into()],
            equality: Vec::new(),
            cacheops_version: String::new(),
        };
        assert_eq!(key_values(&model, "1,2").unwrap(), ["1,2"]);
        model.primary_key.push("y".into());
        assert_eq!(key_values(&model, "1,2").unwrap(), ["1", "2"]);
        for bad in ["1", "1,", "1,2,3"] {
            assert!(key_values(&model, bad)
                .unwrap_err()
                .message()
                .contains("composite"));
        }
    }
}
