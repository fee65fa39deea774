//! The command line, as clap parses it.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Operator's tool for cacheops: invalidation, stats, dependency analysis.
#[derive(Debug, Clone, Parser)]
#[command(name = "cacheops-cli", version)]
pub(crate) struct Args {
    /// Redis URL [env: CACHEOPS_REDIS_URL, REDIS_URL; default redis://127.0.0.1:6379]
    #[arg(long, global = true)]
    pub(crate) redis_url: Option<String>,
    /// Key prefix the application uses [env: CACHEOPS_PREFIX; default cacheops]
    #[arg(long, global = true)]
    pub(crate) prefix: Option<String>,
    /// Database to read rows from: postgres://... or an SQLite path / sqlite://path
    /// [env: DATABASE_URL]
    #[arg(long, global = true)]
    pub(crate) database_url: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum Command {
    /// Invalidate `app.Model.<id>` (one row), `app.Model`, `app`, or `all` (every key
    /// under the prefix, and nothing else).
    Invalidate {
        /// `app.Model.<id>` (composite keys: `app.Model.1,2`), `app.Model`, `app` or `all`.
        target: String,
        /// When the row cannot be read (no database given, or no such row), widen
        /// to its whole model instead of failing.
        #[arg(long)]
        model_wide: bool,
    },
    /// Hits, misses and invalidations per model, and the Redis memory of our keys.
    Stats {
        /// Stop measuring memory after this many keys.
        #[arg(long, default_value_t = 100_000)]
        max_keys: usize,
        /// After printing, reset the published counters to zero.
        #[arg(long)]
        reset: bool,
    },
    /// The tables and conjunctions a SELECT depends on, and why it is (not) granular.
    Explain {
        /// The SQL (or use --query-file).
        sql: Option<String>,
        /// Read the SQL from this file.
        #[arg(long, conflicts_with = "sql")]
        query_file: Option<PathBuf>,
        /// The dialect the SQL is written in.
        #[arg(long, value_enum, default_value_t = SqlDialectArg::Postgres)]
        dialect: SqlDialectArg,
    },
    /// The change feed (PostgreSQL, SQLite): writes made outside cacheops invalidate too.
    Feed {
        /// The schema of the outbox.
        #[arg(long, default_value = "cacheops")]
        schema: String,
        /// What to do.
        #[command(subcommand)]
        command: FeedCommand,
    },
}

/// What `feed` does.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum FeedCommand {
    /// Install the outbox and triggers on every table of the models registered
    /// in Redis (or print the SQL with --dry-run).
    Install {
        /// Print the SQL, run nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove the triggers and the outbox (or print the SQL with --dry-run).
    Uninstall {
        /// Print the SQL, run nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Apply the outbox until stopped: a long-running consumer (reconnects on
    /// failures; exits 2 only on a bad setting).
    Run,
}

/// `--dialect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SqlDialectArg {
    /// PostgreSQL: `$n` placeholders.
    Postgres,
    /// SQLite: `?` placeholders.
    Sqlite,
}
