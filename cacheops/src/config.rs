//! Configuration: where the cache lives, and which models cache which operations.
//!
//! Profiles are matched by model label, the way django-cacheops users know them:
//! `"blog.Article"` beats `"blog.*"`, which beats `"*.*"`. A model's own
//! `#[cacheops(ops = "...", timeout = N)]` attribute beats every pattern.

use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// The default maximum value size: 64 MiB. Far below Redis' default
/// `proto-max-bulk-len` (512 MB), so a default server never refuses (and drops
/// the connection of) a value cacheops sends; far above any result worth caching,
/// since a value that large costs Redis, single-threaded, tens of milliseconds
/// to receive, send and free, and every hit as long to decode.
pub(crate) const DEFAULT_MAX_VALUE_SIZE: usize = 64 << 20;

/// The operations a profile caches automatically (a small bit set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Ops(u8);

impl Ops {
    /// No operation.
    pub const NONE: Ops = Ops(0);
    /// Fetching one row (`.first()`, `.get_result()`, `find`).
    pub const GET: Ops = Ops(1);
    /// Fetching rows (`.load()`).
    pub const FETCH: Ops = Ops(2);
    /// Counting rows.
    pub const COUNT: Ops = Ops(4);
    /// `EXISTS` checks.
    pub const EXISTS: Ops = Ops(8);
    /// Single-value aggregates (`max`, `sum`, ...).
    pub const AGGREGATE: Ops = Ops(16);
    /// Every operation.
    pub const ALL: Ops = Ops(31);

    /// Whether every op of `other` is in `self`.
    pub fn contains(self, other: Ops) -> bool {
        self.0 & other.0 == other.0
    }

    /// Parses `"get,fetch"`, `"all"`, or `""`/`"just_enable"` (no automatic op).
    pub fn parse(text: &str) -> Result<Ops> {
        text.split([',', ' '])
            .filter(|w| !w.is_empty())
            .try_fold(Ops::NONE, |ops, word| Ok(ops | Ops::parse_one(word)?))
    }

    fn parse_one(word: &str) -> Result<Ops> {
        Ok(match word {
            "get" => Ops::GET,
            "fetch" => Ops::FETCH,
            "count" => Ops::COUNT,
            "exists" => Ops::EXISTS,
            "aggregate" => Ops::AGGREGATE,
            "all" => Ops::ALL,
            "just_enable" => Ops::NONE,
            _ => return Err(config_error(format!("unknown cache op `{word}`"))),
        })
    }
}

impl std::ops::BitOr for Ops {
    type Output = Ops;
    fn bitor(self, other: Ops) -> Ops {
        Ops(self.0 | other.0)
    }
}

/// How one model (or a pattern of models) is cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Ops cached automatically (through `CachedConnection`); explicit `.cached()`
    /// calls cache whatever the ops, as long as the model has a profile.
    pub ops: Ops,
    /// How long a cached result lives.
    pub timeout: Duration,
}

impl Profile {
    /// A profile caching `ops` for `timeout`.
    pub fn new(ops: Ops, timeout: Duration) -> Profile {
        Profile { ops, timeout }
    }

    /// Parses `"ops:seconds"`, e.g. `"get,count:900"` or `"all:3600"`.
    pub fn parse(text: &str) -> Result<Profile> {
        let (ops, secs) = text
            .rsplit_once(':')
            .ok_or_else(|| config_error(format!("profile `{text}` is not `ops:seconds`")))?;
        let secs: u64 = secs
            .trim()
            .parse()
            .map_err(|_| config_error(format!("bad timeout in profile `{text}`")))?;
        Ok(Profile::new(Ops::parse(ops)?, Duration::from_secs(secs)))
    }
}

/// Everything cacheops needs to run. Build it with [`Config::builder`] or
/// [`Config::from_env`], then [`crate::install`] it or make a [`crate::Cacheops`].
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
    pub(crate) enabled: bool,
    pub(crate) degrade_on_failure: bool,
    pub(crate) profiles: Vec<(String, Profile)>,
    pub(crate) max_conjunctions: usize,
    pub(crate) max_in_values: usize,
    pub(crate) redis_timeout: Duration,
    pub(crate) local_tier: Option<LocalTier>,
    pub(crate) max_value_size: usize,
    /// The hash of the database this handle's plain connections read (see
    /// [`ConfigBuilder::database`]); 0 when not given.
    pub(crate) database: u128,
    /// A change-feed consumer to run with the handle: database URL, outbox schema.
    pub(crate) change_feed: Option<(String, String)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "cacheops".into(),
            timeout: Duration::from_secs(3600),
            enabled: true,
            degrade_on_failure: false,
            profiles: Vec::new(),
            max_conjunctions: 64,
            max_in_values: 32,
            redis_timeout: Duration::from_secs(1),
            local_tier: None,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            database: 0,
            change_feed: None,
        }
    }
}

impl Config {
    /// A builder starting from the defaults: `redis://127.0.0.1:6379`, prefix
    /// `cacheops`, timeout one hour, enabled, no degrading, no profiles.
    ///
    /// ```
    /// use cacheops::{Config, Ops, Profile};
    /// use std::time::Duration;
    ///
    /// let config = Config::builder()
    ///     .url("memory://")
    ///     .profile("blog.*", Profile::new(Ops::ALL, Duration::from_secs(600)))
    ///     .degrade_on_failure(true)
    ///     .build();
    /// assert_eq!(config.profile_for("blog.Article").unwrap().ops, Ops::ALL);
    /// ```
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Config::default())
    }

    /// Reads the configuration from the environment:
    /// `CACHEOPS_REDIS_URL` (or `REDIS_URL`; `memory://` for the in-process store),
    /// `CACHEOPS_PREFIX`, `CACHEOPS_TIMEOUT` (seconds), `CACHEOPS_ENABLED`,
    /// `CACHEOPS_DEGRADE_ON_FAILURE` (`1`/`true`), `CACHEOPS_PROFILES`
    /// (`pattern=ops:seconds;...`, e.g. `blog.*=all:3600;*.*=count:900`),
    /// `CACHEOPS_LOCAL_TIER_MB` (the local tier's size in MiB; unset or `0`: none),
    /// and `CACHEOPS_MAX_VALUE_SIZE` (bytes; see [`ConfigBuilder::max_value_size`]).
    pub fn from_env() -> Result<Config> {
        Config::from_vars(|name| std::env::var(name).ok())
    }

    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let mut builder = Config::builder();
        if let Some(url) = var("CACHEOPS_REDIS_URL").or_else(|| var("REDIS_URL")) {
            builder = builder.url(url);
        }
        if let Some(prefix) = var("CACHEOPS_PREFIX") {
            builder = builder.prefix(prefix);
        }
        if let Some(secs) = var("CACHEOPS_TIMEOUT") {
            let secs = secs
                .parse()
                .map_err(|_| config_error(format!("CACHEOPS_TIMEOUT `{secs}` is not seconds")))?;
            builder = builder.timeout(Duration::from_secs(secs));
        }
        if let Some(flag) = var("CACHEOPS_ENABLED") {
            builder = builder.enabled(parse_flag("CACHEOPS_ENABLED", &flag)?);
        }
        if let Some(flag) = var("CACHEOPS_DEGRADE_ON_FAILURE") {
            builder = builder.degrade_on_failure(parse_flag("CACHEOPS_DEGRADE_ON_FAILURE", &flag)?);
        }
        if let Some(mb) = var("CACHEOPS_LOCAL_TIER_MB") {
            let mb: u64 = mb.parse().map_err(|_| {
                config_error(format!("CACHEOPS_LOCAL_TIER_MB `{mb}` is not a number"))
            })?;
            if mb > 0 {
                builder = builder.local_tier(LocalTier::new(mb << 20));
            }
        }
        if let Some(url) = var("DATABASE_URL") {
            builder = builder.database(url);
        }
        if let Some(bytes) = var("CACHEOPS_MAX_VALUE_SIZE") {
            let bytes = bytes.parse().map_err(|_| {
                config_error(format!("CACHEOPS_MAX_VALUE_SIZE `{bytes}` is not bytes"))
            })?;
            builder = builder.max_value_size(bytes);
        }
        for entry in var("CACHEOPS_PROFILES").iter().flat_map(|p| p.split(';')) {
            let Some((pattern, profile)) = entry.split_once('=') else {
                continue;
            };
            builder = builder.profile(pattern.trim(), Profile::parse(profile)?);
        }
        Ok(builder.build())
    }

    /// The profile of a model label: exact label, then `app.*`, then `*.*`
    /// (labels compare case-insensitively, as in django-cacheops).
    pub fn profile_for(&self, label: &str) -> Option<Profile> {
        let app = label.split('.').next().unwrap_or(label);
        let wanted = [label.to_string(), format!("{app}.*"), "*.*".to_string()];
        wanted.iter().find_map(|pattern| {
            self.profiles
                .iter()
                .find(|(p, _)| p.eq_ignore_ascii_case(pattern))
                .map(|(_, profile)| *profile)
        })
    }

    /// The store URL: `redis://...` or `memory://`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

fn parse_flag(name: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(config_error(format!("{name} `{value}` is not a boolean"))),
    }
}

pub(crate) fn config_error(message: String) -> Error {
    Error::new(ErrorKind::Config, message)
}

/// Builds a [`Config`]; see [`Config::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct ConfigBuilder(Config);

impl ConfigBuilder {
    /// Where the cache lives: `redis://host:port/db`, `rediss://...`, or `memory://`
    /// for the in-process store (single process only: several processes with their
    /// own memory stores would serve each other's stale data).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.0.url = url.into();
        self
    }

    /// Prefix of every key cacheops writes; `invalidate_all` touches only these.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.0.prefix = prefix.into();
        self
    }

    /// Timeout of cached results when neither the call nor a profile sets one.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.0.timeout = timeout;
        self
    }

    /// Turns caching off entirely (queries go straight to the database).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.0.enabled = enabled;
        self
    }

    /// On a Redis error, log a warning and answer from the database instead of
    /// returning the error.
    ///
    /// Whatever this setting, a result the database (or a cached function)
    /// returned is never lost to a failure to store it: that failure is logged and
    /// counted in [`Stats::errors`](crate::Stats::errors), and the result returned.
    pub fn degrade_on_failure(mut self, degrade: bool) -> Self {
        self.0.degrade_on_failure = degrade;
        self
    }

    /// Adds a profile for a label pattern: `app.Model`, `app.*` or `*.*`.
    pub fn profile(mut self, pattern: impl Into<String>, profile: Profile) -> Self {
        self.0.profiles.push((pattern.into(), profile));
        self
    }

    /// Past this many conjunctions on one table, a query depends on the whole table.
    pub fn max_conjunctions(mut self, max: usize) -> Self {
        self.0.max_conjunctions = max;
        self
    }

    /// Past this many values in one `IN` list, the condition is not granular.
    pub fn max_in_values(mut self, max: usize) -> Self {
        self.0.max_in_values = max;
        self
    }

    /// Connect, read and write timeout of Redis calls.
    pub fn redis_timeout(mut self, timeout: Duration) -> Self {
        self.0.redis_timeout = timeout;
        self
    }

    /// An in-process tier in front of Redis (see [`LocalTier`]): hits there cost
    /// no round trip, and entries die with the invalidation news of their stamps.
    /// Redis stores only; ignored for `memory://`.
    ///
    /// ```
    /// use cacheops::{store::LocalTier, Config};
    /// let config = Config::builder().local_tier(LocalTier::new(64 << 20)).build();
    /// # let _ = config;
    /// ```
    pub fn local_tier(mut self, tier: LocalTier) -> Self {
        self.0.local_tier = Some(tier);
        self
    }

    /// The largest encoded value cacheops stores, in bytes (default
    /// 64 MiB; env `CACHEOPS_MAX_VALUE_SIZE`). A
    /// computed result over it is returned to the caller and not stored, counted
    /// in [`Stats::too_large`](crate::Stats::too_large); an explicit
    /// [`SimpleCache::set`](crate::SimpleCache::set) of one fails with
    /// [`ErrorKind::TooLarge`]. Keep it below the Redis server's
    /// `proto-max-bulk-len`, which makes Redis drop the connection of a larger value.
    ///
    /// ```
    /// let config = cacheops::Config::builder().max_value_size(8 << 20).build();
    /// # let _ = config;
    /// ```
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.0.max_value_size = bytes;
        self
    }

    /// Which database this handle's plain connections read (a URL or any name;
    /// `DATABASE_URL` in [`Config::from_env`]), made part of every cache key, so
    /// that two databases behind one Redis and one prefix never share entries.
    /// Only its hash is kept. A [`crate::CachedConnection`] also adds the database,
    /// user and `search_path` it reads (learned when it is wrapped), so tenants in
    /// different schemas never share entries on one handle; a plain connection
    /// cannot tell them apart: use a handle per tenant there.
    pub fn database(mut self, database: impl AsRef<str>) -> Self {
        self.0.database = xxhash_rust::xxh3::xxh3_128(database.as_ref().as_bytes());
        self
    }

    /// Runs a change-feed consumer (see [`crate::feed`]) with every handle made
    /// from this configuration, on a thread of its own, applying the outbox in
    /// `schema` of the database at `database_url` (a `postgres://` URL, or a
    /// SQLite path; for SQLite `schema` prefixes the outbox tables' names); it
    /// ends once the handle and all its clones are dropped, or with a logged
    /// error when the database holds no outbox of this version.
    pub fn change_feed(
        mut self,
        database_url: impl Into<String>,
        schema: impl Into<String>,
    ) -> Self {
        self.0.change_feed = Some((database_url.into(), schema.into()));
        self
    }

    /// The finished configuration.
    pub fn build(self) -> Config {
        self.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_urls_name_their_database() {
        use super::DatabaseUrl::{Postgres, Sqlite};
        let parse = super::DatabaseUrl::parse;
        assert_eq!(parse("postgres://h/db"), Some(Postgres("postgres://h/db")));
        assert_eq!(
            parse("host=db dbname=app"),
            Some(Postgres("host=db dbname=app"))
        );
        assert_eq!(parse("sqlite:///tmp/a.db"), Some(Sqlite("/tmp/a.db")));
        assert_eq!(parse("/tmp/a.db"), Some(Sqlite("/tmp/a.db")));
        assert_eq!(parse("mysql://h/db"), None);
    }

    use super::*;

    #[test]
    fn profiles_match_most_specific_first() {
        let config = Config::builder()
            .profile("*.*", Profile::parse("count:900").unwrap())
            .profile("blog.*", Profile::parse("all:3600").unwrap())
            .profile("blog.Tag", Profile::parse("just_enable:60").unwrap())
            .build();
        assert_eq!(config.profile_for("blog.tag").unwrap().ops, Ops::NONE);
        assert_eq!(config.profile_for("blog.Article").unwrap().ops, Ops::ALL);
        assert_eq!(config.profile_for("shop.Item").unwrap().ops, Ops::COUNT);
    }

    #[test]
    fn ops_parse_and_reject() {
        assert_eq!(Ops::parse("get, count").unwrap(), Ops::GET | Ops::COUNT);
        assert!(Ops::parse("all").unwrap().contains(Ops::AGGREGATE));
        assert_eq!(Ops::parse("fetchh").unwrap_err().kind(), ErrorKind::Config);
        assert!(Profile::parse("all").is_err());
    }

    #[test]
    fn reads_environment() {
        let vars = |name: &str| match name {
            "CACHEOPS_REDIS_URL" => Some("memory://".to_string()),
            "CACHEOPS_PROFILES" => Some("blog.*=get,fetch:60; *.*=count:5".to_string()),
            "CACHEOPS_DEGRADE_ON_FAILURE" => Some("true".to_string()),
            "CACHEOPS_MAX_VALUE_SIZE" => Some("1048576".to_string()),
            _ => None,
        };
        let config = Config::from_vars(vars).unwrap();
        assert_eq!(config.url(), "memory://");
        assert!(config.degrade_on_failure);
        assert_eq!(config.max_value_size, 1 << 20);
        assert_eq!(Config::default().max_value_size, DEFAULT_MAX_VALUE_SIZE);
        let blog = config.profile_for("blog.Post").unwrap();
        assert_eq!(
            (blog.ops, blog.timeout),
            (Ops::GET | Ops::FETCH, Duration::from_secs(60))
        );
        let bad = |name: &str| (name == "CACHEOPS_ENABLED").then(|| "maybe".to_string());
        assert!(Config::from_vars(bad).is_err());
        let bad = |name: &str| (name == "CACHEOPS_MAX_VALUE_SIZE").then(|| "64MB".to_string());
        assert!(Config::from_vars(bad).is_err());
    }
}

/// The database a URL names, by its scheme: `postgres://` / `postgresql://` (or
/// a libpq keyword string, `host=db dbname=app`), or SQLite (`sqlite://path`, or
/// a path with no scheme and no `=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseUrl<'a> {
    /// A PostgreSQL URL, whole.
    Postgres(&'a str),
    /// A SQLite database's path.
    Sqlite(&'a str),
}

impl DatabaseUrl<'_> {
    /// What `url` names; `None` for another scheme.
    pub fn parse(url: &str) -> Option<DatabaseUrl<'_>> {
        // A libpq keyword string (`host=db dbname=app`) is PostgreSQL too.
        let keywords = !url.contains("://") && url.contains('=');
        if url.starts_with("postgres://") || url.starts_with("postgresql://") || keywords {
            Some(DatabaseUrl::Postgres(url))
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            Some(DatabaseUrl::Sqlite(path))
        } else {
            (!url.contains("://")).then_some(DatabaseUrl::Sqlite(url))
        }
    }
}

/// Options of the local tier: how much memory it may hold and how long an
/// entry may live in it at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTier {
    pub(crate) max_bytes: u64,
    pub(crate) max_ttl: Duration,
}

impl LocalTier {
    /// A tier holding at most `max_bytes` of payloads (with bookkeeping), whose
    /// entries live at most 60 s (and never past their value's own timeout).
    pub fn new(max_bytes: u64) -> LocalTier {
        LocalTier {
            max_bytes,
            max_ttl: Duration::from_secs(60),
        }
    }

    /// The longest an entry may stay in the tier (default 60 s).
    pub fn max_ttl(mut self, ttl: Duration) -> LocalTier {
        self.max_ttl = ttl;
        self
    }
}
