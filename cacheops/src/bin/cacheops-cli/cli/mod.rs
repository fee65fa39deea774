//! `cacheops-cli`, the operator's tool: invalidate rows, models, apps or
//! everything; show per-model stats and Redis memory; explain a statement's
//! dependencies.
//!
//! ```text
//! cacheops-cli invalidate blog.Article.34      # that row's current state (reads DATABASE_URL)
//! cacheops-cli invalidate blog.Article.34 --model-wide   # no database: the whole model
//! cacheops-cli invalidate blog.Article         # every cached query on the model's table
//! cacheops-cli invalidate blog                 # every model of the app
//! cacheops-cli invalidate all                  # every key under our prefix (never FLUSHDB)
//! cacheops-cli stats [--max-keys N] [--reset]  # hits/misses/invalidations per model, memory
//! cacheops-cli explain 'SELECT ... WHERE "t"."c" = $1'   # or --query-file F, --dialect sqlite
//! cacheops-cli feed install [--dry-run] | uninstall [--dry-run] | run   # the change feed
//! ```
//!
//! Settings: `--redis-url` (else `CACHEOPS_REDIS_URL`, `REDIS_URL`), `--prefix`
//! (else `CACHEOPS_PREFIX`, `cacheops`), `--database-url` (else `DATABASE_URL`;
//! `postgres://...`, or an SQLite path / `sqlite://path`).
//!
//! Labels resolve through the registry every Redis-backed handle publishes when it
//! starts (see [`cacheops::registry`]); the CLI needs no access to the application's
//! types. A row is read with every column of its model and invalidated in the
//! application's canonical encoding (see [`db`]), so it reaches exactly the cached
//! queries its current values match. Without a database the CLI cannot know the
//! row's other columns: it refuses, or widens to the model with `--model-wide`.
//!
//! The binary only calls [`main`]. [`run`] is the same program with its arguments,
//! environment and output passed in, so tests drive it in-process.
//!
//! Exit status: 0 on success, 2 on any error (bad arguments, unknown label,
//! malformed id, unreachable Redis or database, SQL that does not parse, a partial
//! invalidation), with the reason on stderr.

mod args;
pub(crate) mod db;
mod explain;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod feed;
mod invalidate;
mod stats;

use std::fmt;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser as _;

pub(crate) use args::{Args, Command, SqlDialectArg};

/// Why the CLI failed: a message for stderr. Every failure exits with status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CliError {
    message: String,
}

impl CliError {
    /// A failure with this message.
    pub(crate) fn new(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
        }
    }

    /// A failure of `what`, caused by `error`.
    pub(crate) fn caused(what: &str, error: impl fmt::Display) -> CliError {
        CliError::new(format!("{what}: {error}"))
    }

    /// The message printed on stderr.
    // Read by the integration tests, which include these files.
    #[allow(dead_code)]
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The exit status: always 2.
    pub(crate) fn exit_code(&self) -> u8 {
        2
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The result of a command.
pub(crate) type CliResult<T = ()> = std::result::Result<T, CliError>;

/// Settings every command shares, after flags and environment are merged.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// `--redis-url`, else `CACHEOPS_REDIS_URL`, else `REDIS_URL`, else the default.
    pub(crate) redis_url: String,
    /// `--prefix`, else `CACHEOPS_PREFIX`, else `cacheops`.
    pub(crate) prefix: String,
    /// `--database-url`, else `DATABASE_URL`.
    pub(crate) database_url: Option<String>,
}

impl Settings {
    /// Merges the flags with the environment `env` reads.
    pub(crate) fn resolve(args: &Args, env: &dyn Fn(&str) -> Option<String>) -> Settings {
        let redis_url = args
            .redis_url
            .clone()
            .or_else(|| env("CACHEOPS_REDIS_URL"))
            .or_else(|| env("REDIS_URL"))
            .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
        Settings {
            redis_url,
            prefix: args
                .prefix
                .clone()
                .or_else(|| env("CACHEOPS_PREFIX"))
                .unwrap_or_else(|| "cacheops".into()),
            database_url: args.database_url.clone().or_else(|| env("DATABASE_URL")),
        }
    }
}

/// The binary's entry point: process arguments and environment, stdout, stderr.
// The tests, which include these files, drive `run` instead.
#[cfg_attr(test, allow(dead_code))]
pub(crate) fn main() -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    let args = match Args::try_parse() {
        Ok(args) => args,
        // Help and version exit 0; usage errors exit 2 (clap's convention, and ours).
        Err(e) => e.exit(),
    };
    let mut out = std::io::stdout().lock();
    match run(&args, &env, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = out.flush();
            eprintln!("cacheops-cli: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs one command with settings from `args` and `env`, writing its report to `out`.
pub(crate) fn run(
    args: &Args,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> CliResult {
    let settings = Settings::resolve(args, env);
    match &args.command {
        Command::Invalidate { target, model_wide } => {
            invalidate::run(&settings, target, *model_wide, out)
        }
        Command::Stats { max_keys, reset } => stats::run(&settings, *max_keys, *reset, out),
        Command::Explain {
            sql,
            query_file,
            dialect,
        } => explain::run(
            &settings,
            sql.as_deref(),
            query_file.as_deref(),
            *dialect,
            out,
        ),
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        Command::Feed { schema, command } => feed::run(&settings, schema, command, out),
        #[cfg(not(any(feature = "postgres", feature = "sqlite")))]
        Command::Feed { .. } => Err(CliError::new(
            "the change feed needs the `postgres` or `sqlite` feature",
        )),
    }
}

/// Parses a command line (first item: the program name) as the binary does.
// Called by the integration tests, which include these files; `main` parses its own.
#[allow(dead_code)]
pub(crate) fn parse_args<I, T>(args: I) -> CliResult<Args>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Args::try_parse_from(args).map_err(|e| CliError::new(e.to_string()))
}

/// Writes a line of a report; a closed stdout is an error like any other.
fn say(out: &mut dyn Write, line: impl fmt::Display) -> CliResult {
    writeln!(out, "{line}").map_err(|e| CliError::caused("cannot write the report", e))
}

/// A Redis connection for a command, with a message naming the URL on failure.
fn redis_connection(settings: &Settings) -> CliResult<redis::Connection> {
    let timeout = std::time::Duration::from_secs(2);
    cacheops::registry::connect(&settings.redis_url, timeout)
        .map_err(|e| CliError::caused(&format!("cannot reach Redis at {}", settings.redis_url), e))
}
