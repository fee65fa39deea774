//! Key names and value framing shared by every store. (Stub: being written.)
