//! Redis store. (Stub: being written.)

/// A store in Redis.
#[derive(Debug)]
pub struct RedisStore;
