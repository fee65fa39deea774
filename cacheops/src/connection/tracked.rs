//! Transaction tracking of a connection that sees every statement. (Filled in by
//! `CachedConnection`.)

/// Per-connection transaction frames. Not public API.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Tracked {
    _private: (),
}
