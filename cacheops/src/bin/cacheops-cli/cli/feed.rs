//! `cacheops-cli feed`: install, remove or run the change feed (see
//! [`cacheops::feed`]) for the models the applications registered in Redis.

use std::io::Write;

use super::args::FeedCommand;
use super::db::Database;
use super::{redis_connection, say, CliError, CliResult, Settings};
use cacheops::feed::{self, FeedConnection};

pub(super) fn run(
    settings: &Settings,
    schema: &str,
    command: &FeedCommand,
    out: &mut dyn Write,
) -> CliResult {
    let url = settings
        .database_url
        .as_deref()
        .ok_or_else(|| CliError::new("the change feed needs a --database-url (or DATABASE_URL)"))?;
    let (dry_run, remove) = match command {
        FeedCommand::Install { dry_run } => (*dry_run, false),
        FeedCommand::Uninstall { dry_run } => (*dry_run, true),
        FeedCommand::Run => return consume(settings, url, schema, out),
    };
    match Database::connect(url)? {
        #[cfg(feature = "postgres")]
        Database::Pg(mut conn) => install(settings, &mut conn, schema, dry_run, remove, out),
        #[cfg(feature = "sqlite")]
        Database::Sqlite(mut conn) => install(settings, &mut conn, schema, dry_run, remove, out),
    }
}

/// Prints or runs the install (or uninstall) SQL for the registered tables.
fn install(
    settings: &Settings,
    conn: &mut impl FeedConnection,
    schema: &str,
    dry_run: bool,
    remove: bool,
    out: &mut dyn Write,
) -> CliResult {
    let models = cacheops::registry::read(&mut redis_connection(settings)?, &settings.prefix)
        .map_err(|e| CliError::caused("cannot read the model registry", e))?;
    if models.is_empty() {
        return Err(CliError::new(
            "no model is registered under this prefix: start the application once (it publishes its models), or check --prefix",
        ));
    }
    let models: Vec<feed::Modelled> = models.iter().map(feed::Modelled::from).collect();
    let plan = feed::plan_for(conn, schema, &models)
        .map_err(|e| CliError::caused("cannot plan the feed", e))?;
    for skipped in &plan.skipped {
        say(out, format_args!("-- skipped {skipped}"))?;
    }
    let sql = match remove {
        false => &plan.sql,
        true => &plan.uninstall_sql,
    };
    if dry_run {
        say(out, sql.trim_end())?;
    }
    if !remove {
        feed::refuse_problems(&plan).map_err(|e| CliError::new(e.to_string()))?;
    }
    if dry_run {
        return Ok(());
    }
    feed::apply_sql(conn, sql).map_err(|e| CliError::caused("cannot apply the SQL", e))?;
    let done = if remove {
        "removed from"
    } else {
        "installed on"
    };
    say(
        out,
        format_args!("change feed {done} {} table(s)", plan.tables.len()),
    )
}

/// Runs a consumer until the process is stopped.
fn consume(settings: &Settings, url: &str, schema: &str, out: &mut dyn Write) -> CliResult {
    let config = cacheops::Config::builder()
        .url(settings.redis_url.clone())
        .prefix(settings.prefix.clone())
        .build();
    let handle =
        cacheops::Cacheops::new(config).map_err(|e| CliError::caused("cannot start", e))?;
    say(
        out,
        format_args!("applying the change feed's outbox ({schema}); stop with a signal"),
    )?;
    let _ = out.flush();
    let never = std::sync::atomic::AtomicBool::new(false);
    feed::run(&handle, url, schema, &never).map_err(|e| CliError::new(e.to_string()))
}
