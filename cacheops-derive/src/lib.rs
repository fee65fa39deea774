//! Derive macros for cacheops. (Stub: being written.)
