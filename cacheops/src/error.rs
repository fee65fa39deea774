//! The one error type of cacheops.

use std::fmt;

/// What went wrong, in a form a caller can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Redis could not be reached or answered with an error.
    Redis,
    /// The database failed; the query's own error.
    Database,
    /// A value could not be encoded for the cache.
    Encode,
    /// SQL that cacheops could not analyse.
    Sql,
    /// The configuration is invalid or was installed twice.
    Config,
    /// The model or label is unknown, or the model has no cache profile.
    NotCacheable,
    /// Nothing is cached under the key (the simple cache's `get`): django's `CacheMiss`.
    CacheMiss,
    /// The file-system cache could not read or write its directory.
    Io,
    /// A transaction cacheops cannot follow (see [`on_commit`](crate::on_commit)).
    Transaction,
    /// A write committed but its invalidation could not reach the store: never a
    /// statement's error, only what [`Cacheops::on_missed_invalidation`] is told.
    ///
    /// [`Cacheops::on_missed_invalidation`]: crate::Cacheops::on_missed_invalidation
    MissedInvalidation,
    /// A value the caller asked to store ([`SimpleCache::set`](crate::SimpleCache::set))
    /// is larger than the maximum value size
    /// ([`ConfigBuilder::max_value_size`](crate::ConfigBuilder::max_value_size)). A
    /// computed result over it is never an error: it is returned, not stored.
    TooLarge,
}

/// An error of cacheops: a kind and a message, plus the source error if any and a
/// hint of what to do about it. Displayed as `message: source. Hint: hint`.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    hint: Option<&'static str>,
}

/// `Result` with cacheops' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
            hint: None,
        }
    }

    /// Attaches the error that caused this one.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Attaches what the user can do about this error.
    pub(crate) fn with_hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }

    /// What the user can do about this error, when cacheops knows (every Redis
    /// failure has one: check the URL's password, raise a timeout...).
    pub fn hint(&self) -> Option<&str> {
        self.hint
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether Redis failed (unreachable, timed out, or answered an error).
    pub fn is_redis(&self) -> bool {
        self.kind == ErrorKind::Redis
    }

    /// Whether Redis did not answer (or accept a connection) in time: a Redis
    /// error whose cause is the I/O timeout.
    pub fn is_timeout(&self) -> bool {
        self.is_redis()
            && self
                .redis_cause()
                .is_some_and(redis::RedisError::is_timeout)
    }

    /// Whether a value was not stored because it is larger than the maximum value
    /// size ([`ErrorKind::TooLarge`]).
    pub fn is_too_large(&self) -> bool {
        self.kind == ErrorKind::TooLarge
    }

    /// The Redis client's error this one wraps, if any.
    fn redis_cause(&self) -> Option<&redis::RedisError> {
        self.source.as_ref()?.downcast_ref()
    }

    /// Whether this is a miss of the simple cache ([`ErrorKind::CacheMiss`]).
    pub fn is_miss(&self) -> bool {
        self.kind == ErrorKind::CacheMiss
    }

    /// Whether the database failed.
    pub fn is_database(&self) -> bool {
        self.kind == ErrorKind::Database
    }

    /// The database's own error, when this error came from the database.
    pub fn as_diesel(&self) -> Option<&diesel::result::Error> {
        self.source.as_ref()?.downcast_ref()
    }

    /// This error where Diesel expects its own: the database's error itself when it
    /// came from the database (so `NotFound` stays `NotFound`), else wrapped as a
    /// `QueryBuilderError`.
    pub(crate) fn into_diesel(self) -> diesel::result::Error {
        let Some(source) = self.source else {
            return diesel::result::Error::QueryBuilderError(Box::new(self));
        };
        match source.downcast::<diesel::result::Error>() {
            Ok(diesel) => *diesel,
            Err(other) => diesel::result::Error::QueryBuilderError(Box::new(Error {
                source: Some(other),
                ..self
            })),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(source) = &self.source {
            let source = source.to_string();
            // Redis' own messages may end in a period; the hint adds one.
            match self.hint {
                Some(_) => write!(f, ": {}", source.trim_end_matches('.'))?,
                None => write!(f, ": {source}")?,
            }
        }
        if let Some(hint) = self.hint {
            write!(f, ". Hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        Error::new(ErrorKind::Database, "database error").with_source(e)
    }
}

/// A cacheops error where Diesel expects its own, so that `?` works inside
/// `conn.transaction(|conn| ...)` with `diesel::result::Error`: the database's
/// error itself when it came from the database (a `DatabaseError` keeps its kind,
/// constraint name and details; `NotFound` stays `NotFound`), anything else
/// wrapped as a `QueryBuilderError` holding this error.
///
/// ```no_run
/// # use diesel::prelude::*;
/// # diesel::table! { tags (id) { id -> Integer, name -> Text } }
/// # #[derive(Queryable, Insertable, Identifiable, AsChangeset, cacheops::Cacheable, serde::Serialize, serde::Deserialize)]
/// # #[diesel(table_name = tags)]
/// # #[cacheops(app = "blog")]
/// # struct Tag { id: i32, name: String }
/// # fn run(cache: &cacheops::Cacheops, conn: &mut PgConnection, tag: &Tag) -> QueryResult<()> {
/// conn.transaction(|conn| {
///     cache.insert::<Tag, _, _>(conn, tag)?;
///     diesel::delete(tags::table.filter(tags::name.eq("old"))).execute(conn)?;
///     Ok(())
/// })
/// # }
/// ```
impl From<Error> for diesel::result::Error {
    fn from(e: Error) -> Self {
        e.into_diesel()
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Error::new(ErrorKind::Redis, "redis error").with_source(e)
    }
}

/// `.optional()` on cacheops results, like Diesel's: a `NotFound` becomes `None`.
///
/// ```
/// use cacheops::OptionalExtension;
/// let missing: cacheops::Result<i32> = Err(diesel::result::Error::NotFound.into());
/// assert_eq!(missing.optional().unwrap(), None);
/// ```
pub trait OptionalExtension<T> {
    /// `Ok(None)` for a `NotFound` error, everything else unchanged.
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(e) if matches!(e.as_diesel(), Some(diesel::result::Error::NotFound)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn into_diesel_gives_back_the_database_error() {
        let not_found = Error::from(diesel::result::Error::NotFound).into_diesel();
        assert!(matches!(not_found, diesel::result::Error::NotFound));
        let redis = Error::new(ErrorKind::Redis, "down").into_diesel();
        let diesel::result::Error::QueryBuilderError(inner) = redis else {
            panic!("a cacheops error is wrapped");
        };
        assert_eq!(inner.to_string(), "down");
    }
}
