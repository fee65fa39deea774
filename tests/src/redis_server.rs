//! A private redis-server on a spare port, for tests that stop and restart it.
//! The same helper the stress program uses.

#[path = "../../cacheops/examples/support/private_redis.rs"]
mod private_redis;

pub use private_redis::PrivateRedis;
