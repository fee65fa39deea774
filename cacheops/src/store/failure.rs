//! The words of a Redis failure. Every Redis error of cacheops is built here, by
//! [`Doing::failed`]: what cacheops was doing, on which class of keys, what went
//! wrong in plain words, and what the user can do about it. The Redis client's own
//! error stays chained as the source.
//!
//! The client's errors alone say too little ("Resource temporarily unavailable",
//! "unexpected end of file", "Connection reset by peer"); the cause is read from
//! the error's kind and code, from what the operation sent (a connection that
//! Redis drops while receiving a large value is, most likely, Redis refusing a
//! value over its `proto-max-bulk-len`) and from the timeout that applied.

use std::time::Duration;

use redis::{RedisError, ServerErrorKind};

use crate::error::{Error, ErrorKind};

/// The smallest `proto-max-bulk-len` Redis accepts (`1mb`): a connection dropped
/// while sending a smaller value was not dropped for its size.
const SMALLEST_BULK_LIMIT: usize = 1 << 20;

/// What cacheops was doing with Redis: the start of an error's message. Cheap to
/// make: built for every operation, read only when one fails.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Doing<'a> {
    /// What, in words: "reading a cached value and its stamps".
    what: &'static str,
    /// The table it was about, said after `what`.
    table: Option<&'a str>,
    /// The class of keys it touched ("value key and stamps"); empty for none.
    keys: &'static str,
    /// Bytes of the value it sent (0: none).
    sent: usize,
}

impl Doing<'static> {
    /// A cache lookup.
    pub(crate) const LOOKUP: Doing<'static> =
        Doing::new("reading a cached value and its stamps", "value key, stamps");
    /// Reading (or creating) the stamps of a query before it runs.
    pub(crate) const FENCE: Doing<'static> = Doing::new(
        "reading the stamps of a query before running it",
        "stamps, schemes sets",
    );
    /// Deleting one cached value.
    pub(crate) const DELETE: Doing<'static> = Doing::new("deleting a cached value", "value key");
    /// `invalidate_all`.
    pub(crate) const INVALIDATE_ALL: Doing<'static> = Doing::new(
        "dropping every cached key of the prefix",
        "every key of the prefix",
    );
    /// The simple cache's `get`.
    pub(crate) const SIMPLE_GET: Doing<'static> =
        Doing::new("reading a simple-cache value", "simple-cache key");
    /// The simple cache's `delete`.
    pub(crate) const SIMPLE_DELETE: Doing<'static> =
        Doing::new("deleting a simple-cache value", "simple-cache key");
    /// Taking a stampede lock.
    pub(crate) const LOCK: Doing<'static> = Doing::new("taking a stampede lock", "lock");
    /// Releasing a stampede lock.
    pub(crate) const UNLOCK: Doing<'static> = Doing::new("releasing a stampede lock", "lock");
    /// Opening a connection outside of any operation (registry, stats, CLI).
    pub(crate) const CONNECT: Doing<'static> = Doing::new("connecting to Redis", "");
    /// The local tier's subscription.
    pub(crate) const NEWS: Doing<'static> =
        Doing::new("listening to invalidation news", "news channel");
    /// Publishing the per-model counters.
    pub(crate) const PUBLISH_STATS: Doing<'static> =
        Doing::new("publishing per-model stats", "stats hash");
    /// Publishing the model registry.
    pub(crate) const PUBLISH_REGISTRY: Doing<'static> =
        Doing::new("publishing the model registry", "registry hash");
    /// Raw commands of the store's tests.
    #[cfg(test)]
    pub(crate) const TEST: Doing<'static> = Doing::new("running a test command", "");

    const fn new(what: &'static str, keys: &'static str) -> Doing<'static> {
        Doing {
            what,
            table: None,
            keys,
            sent: 0,
        }
    }

    /// Storing a cached value of `sent` bytes.
    pub(crate) fn store(sent: usize) -> Doing<'static> {
        Doing::new("storing a cached value", "value key").sending(sent)
    }

    /// The simple cache's `set` of `sent` bytes.
    pub(crate) fn simple_set(sent: usize) -> Doing<'static> {
        Doing::new("storing a simple-cache value", "simple-cache key").sending(sent)
    }
}

impl<'a> Doing<'a> {
    /// A row invalidation of `table`.
    pub(crate) fn invalidate_rows(table: &'a str) -> Doing<'a> {
        Doing::new("invalidating rows of table", "schemes set, stamps").of(table)
    }

    /// A table-wide invalidation of `table`.
    pub(crate) fn invalidate_table(table: &'a str) -> Doing<'a> {
        Doing::new("invalidating table", "table stamps").of(table)
    }

    fn of<'t>(self, table: &'t str) -> Doing<'t> {
        Doing {
            table: Some(table),
            ..self
        }
    }

    fn sending(self, bytes: usize) -> Doing<'a> {
        Doing {
            sent: bytes,
            ..self
        }
    }

    /// The error of this operation failing with `e` during `phase`.
    pub(crate) fn failed(self, e: RedisError, phase: Phase) -> Error {
        let (cause, hint) = explain(&e, self.sent, phase);
        let cause = match phase {
            Phase::Waiting { retry_after, .. } => format!(
                "not retried for {} ms after a connection attempt failed: {cause}",
                retry_after.as_millis()
            ),
            _ => cause,
        };
        Error::new(ErrorKind::Redis, format!("{self}: {cause}"))
            .with_source(e)
            .with_hint(hint)
    }
}

impl std::fmt::Display for Doing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redis failed while {}", self.what)?;
        if let Some(table) = self.table {
            write!(f, " {table}")?;
        }
        if !self.keys.is_empty() {
            write!(f, " (keys: {})", self.keys)?;
        }
        Ok(())
    }
}

/// Where in an operation Redis failed, with the timeout that applied.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Phase {
    /// Opening a connection.
    Connect(Duration),
    /// Sending a command or reading its reply.
    Command(Duration),
    /// Not trying: a connection attempt (with this timeout) failed less than
    /// `retry_after` ago, and the error is that attempt's.
    Waiting {
        connect: Duration,
        retry_after: Duration,
    },
}

/// The cause of `e` in plain words, and what the user can do about it.
fn explain(e: &RedisError, sent: usize, phase: Phase) -> (String, &'static str) {
    if e.is_timeout() {
        return (timed_out(phase), hint::TIMEOUT);
    }
    if let Some((cause, hint)) = server_cause(e) {
        return (cause.to_owned(), hint);
    }
    if refused_for_size(e, sent) {
        let mib = sent as f64 / (1 << 20) as f64;
        let cause = format!(
            "value too large: Redis refused or dropped a value of {sent} bytes ({mib:.1} MiB), \
             likely over its proto-max-bulk-len"
        );
        return (cause, hint::TOO_LARGE);
    }
    let (cause, hint) = other_cause(e);
    (cause.to_owned(), hint)
}

/// "no answer within 300 ms (timeout)", or "no connection..." while connecting.
fn timed_out(phase: Phase) -> String {
    let (what, timeout) = match phase {
        Phase::Connect(timeout) => ("connection", timeout),
        Phase::Waiting { connect, .. } => ("connection", connect),
        Phase::Command(timeout) => ("answer", timeout),
    };
    format!("no {what} within {} ms (timeout)", timeout.as_millis())
}

/// Whether Redis refused a value for its size: it says so when it reads the
/// length before the connection breaks, else it closes the connection while
/// the value is being sent.
fn refused_for_size(e: &RedisError, sent: usize) -> bool {
    let said = e
        .detail()
        .is_some_and(|d| d.contains("invalid bulk length"));
    said || (e.is_connection_dropped() && sent >= SMALLEST_BULK_LIMIT)
}

/// The cause of a failure neither a timeout nor named by Redis.
fn other_cause(e: &RedisError) -> (&'static str, &'static str) {
    use redis::ErrorKind::{Extension, Io, Server};
    if e.is_connection_refusal() {
        ("connection refused", hint::REFUSED)
    } else if e.is_connection_dropped() {
        ("connection closed or reset by Redis", hint::DROPPED)
    } else if e.kind() == Io {
        ("I/O error", hint::DROPPED)
    } else if matches!(e.kind(), Server(_) | Extension) {
        ("Redis answered an error", hint::SERVER)
    } else {
        ("unexpected reply", hint::UNEXPECTED)
    }
}

/// The causes Redis names in an error reply (or the client names for one).
fn server_cause(e: &RedisError) -> Option<(&'static str, &'static str)> {
    use redis::ErrorKind::{AuthenticationFailed, Server};
    // A pipeline's error carries its codes only in its text.
    let text = e.to_string();
    let has = |code: &str| e.code() == Some(code) || text.contains(&format!("\"{code}\""));
    Some(match e.kind() {
        _ if has("NOAUTH") => ("Redis requires a password", hint::AUTH),
        AuthenticationFailed => ("Redis refused the user or password", hint::AUTH),
        _ if has("WRONGPASS") => ("Redis refused the user or password", hint::AUTH),
        Server(ServerErrorKind::NoPerm) => ("permission denied by Redis' ACL", hint::NOPERM),
        _ if has("OOM") => ("Redis is out of memory (maxmemory)", hint::OOM),
        Server(ServerErrorKind::ReadOnly) => ("Redis is a read-only replica", hint::READONLY),
        Server(ServerErrorKind::BusyLoading) => ("Redis is loading its data", hint::LOADING),
        _ => return None,
    })
}

/// What the user can do, by cause.
mod hint {
    pub(super) const TIMEOUT: &str = "Redis may be down, paused, overloaded or far away: \
        check it, raise the timeout (Config::redis_timeout), or set degrade_on_failure(true) \
        to answer from the database meanwhile";
    pub(super) const AUTH: &str = "put the right password in the Redis URL (CACHEOPS_REDIS_URL \
        or Config::url): redis://:password@host:port/db, or redis://user:password@host:port/db \
        for an ACL user";
    pub(super) const NOPERM: &str = "grant the Redis user of the URL the commands cacheops \
        runs and the keys of its prefix";
    pub(super) const OOM: &str = "raise Redis' maxmemory, or give it an evicting \
        maxmemory-policy (allkeys-lru, volatile-ttl...)";
    pub(super) const READONLY: &str =
        "point the Redis URL (CACHEOPS_REDIS_URL or Config::url) at the master";
    pub(super) const LOADING: &str = "wait for Redis to finish loading, or set \
        degrade_on_failure(true) to answer from the database meanwhile";
    pub(super) const TOO_LARGE: &str = "raise Redis' proto-max-bulk-len (redis.conf or CONFIG \
        SET), or lower cacheops' max value size below it (Config::max_value_size or \
        CACHEOPS_MAX_VALUE_SIZE): larger values are then returned without being stored";
    pub(super) const REFUSED: &str = "check that Redis runs and that the Redis URL \
        (CACHEOPS_REDIS_URL or Config::url) points at it, or set degrade_on_failure(true) to \
        answer from the database while it is down";
    pub(super) const DROPPED: &str = "Redis restarted or closed the connection (see its log: \
        timeout, maxclients, client-output-buffer-limit, CLIENT KILL); set \
        degrade_on_failure(true) to answer from the database when it fails";
    pub(super) const SERVER: &str = "see Redis' error; set degrade_on_failure(true) to answer \
        from the database when Redis fails";
    pub(super) const UNEXPECTED: &str =
        "check that the Redis URL points at a Redis server, version 7 or later";
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    const MS_300: Duration = Duration::from_millis(300);

    fn io_error(kind: io::ErrorKind) -> RedisError {
        io::Error::from(kind).into()
    }

    fn server_error(code: &str, detail: &str) -> RedisError {
        let reply = format!("-{code} {detail}\r\n");
        let value = redis::parse_redis_value(reply.as_bytes()).expect("an error reply");
        match value {
            redis::Value::ServerError(e) => e.into(),
            other => panic!("not an error: {other:?}"),
        }
    }

    fn message(doing: Doing<'_>, e: RedisError, phase: Phase) -> String {
        doing.failed(e, phase).to_string()
    }

    #[test]
    fn a_timeout_says_what_how_long_and_what_to_do() {
        let error =
            Doing::LOOKUP.failed(io_error(io::ErrorKind::WouldBlock), Phase::Command(MS_300));
        assert!(error.is_redis() && error.is_timeout());
        let text = error.to_string();
        assert!(text.starts_with(
            "Redis failed while reading a cached value and its stamps (keys: value key, stamps): \
             no answer within 300 ms (timeout)"
        ), "{text}");
        assert!(text.contains("Config::redis_timeout") && text.contains("degrade_on_failure"));
        let connecting = message(
            Doing::FENCE,
            io_error(io::ErrorKind::TimedOut),
            Phase::Connect(MS_300),
        );
        assert!(
            connecting.contains("no connection within 300 ms"),
            "{connecting}"
        );
    }

    #[test]
    fn authentication_points_at_the_url() {
        let table = Doing::invalidate_rows("articles");
        let noauth = message(
            table,
            server_error("NOAUTH", "Authentication required."),
            Phase::Command(MS_300),
        );
        assert!(noauth.starts_with(
            "Redis failed while invalidating rows of table articles (keys: schemes set, stamps): \
             Redis requires a password"
        ), "{noauth}");
        assert!(noauth.contains("CACHEOPS_REDIS_URL"), "{noauth}");
        let refused: RedisError = (
            redis::ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        )
            .into();
        let wrong = message(Doing::LOOKUP, refused, Phase::Connect(MS_300));
        assert!(
            wrong.contains("Redis refused the user or password"),
            "{wrong}"
        );
    }

    #[test]
    fn a_large_value_dropped_or_refused_is_too_large() {
        let big = Doing::store(8 << 20);
        let reset = message(
            big,
            io_error(io::ErrorKind::ConnectionReset),
            Phase::Command(MS_300),
        );
        assert!(
            reset.contains("value too large") && reset.contains("8388608 bytes"),
            "{reset}"
        );
        assert!(reset.contains("proto-max-bulk-len") && reset.contains("CACHEOPS_MAX_VALUE_SIZE"));
        let invalid = server_error("ERR", "Protocol error: invalid bulk length");
        let refused = message(Doing::simple_set(2 << 20), invalid, Phase::Command(MS_300));
        assert!(refused.starts_with("Redis failed while storing a simple-cache value (keys: simple-cache key): value too large"), "{refused}");
        // A small value is not dropped for its size.
        let small = message(
            Doing::store(100),
            io_error(io::ErrorKind::ConnectionReset),
            Phase::Command(MS_300),
        );
        assert!(
            small.contains("connection closed or reset by Redis"),
            "{small}"
        );
    }

    #[test]
    fn every_cause_has_a_hint_and_keeps_its_source() {
        let causes = [
            io_error(io::ErrorKind::ConnectionRefused),
            io_error(io::ErrorKind::UnexpectedEof),
            server_error("OOM", "command not allowed when used memory > 'maxmemory'."),
            server_error("READONLY", "You can't write against a read only replica."),
            server_error("ERR", "unknown command"),
            (redis::ErrorKind::UnexpectedReturnType, "odd").into(),
        ];
        for cause in causes {
            let raw = cause.to_string();
            let error = Doing::LOCK.failed(cause, Phase::Command(MS_300));
            assert!(error.hint().is_some_and(|h| !h.is_empty()), "{error}");
            let source = std::error::Error::source(&error).expect("chained");
            assert_eq!(source.to_string(), raw);
        }
    }

    #[test]
    fn waiting_says_why_it_did_not_try() {
        let phase = Phase::Waiting {
            connect: MS_300,
            retry_after: Duration::from_secs(1),
        };
        let text = message(
            Doing::LOOKUP,
            io_error(io::ErrorKind::ConnectionRefused),
            phase,
        );
        assert!(
            text.contains(
                "not retried for 1000 ms after a connection attempt failed: connection refused"
            ),
            "{text}"
        );
    }
}
