//! `cacheops-cli`: the operator's tool (see `cli/mod.rs` for its commands).
//!
//! Its modules use only the `cacheops` library's public API and its doc-hidden
//! `__private` items, so that the integration tests can include the same files
//! (`tests/src/cli.rs`) and drive the CLI in process.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
