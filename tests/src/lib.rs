//! Integration tests of cacheops against real Redis, PostgreSQL and SQLite.
//!
//! `fixtures` defines the blog schema and models once, for each backend;
//! `ctx` gives every test its own database schema (or file), its own Redis prefix
//! and a counter of the queries its connection ran. Scenario bodies are written
//! once and instantiated for every backend × store pair.
#![allow(missing_docs)]

pub mod ctx;
pub mod fixtures;
pub mod redis_server;

#[cfg(test)]
mod async_connection;
#[cfg(test)]
mod automatic;
#[cfg(test)]
mod cached_as;
/// The binary's own CLI modules, included by path so the tests drive it in
/// process (they use only `cacheops`'s public and `__private` items).
#[cfg(test)]
#[path = "../../cacheops/src/bin/cacheops-cli/cli/mod.rs"]
mod cacheops_cli;
#[cfg(test)]
mod cli;
#[cfg(test)]
mod connection;
#[cfg(test)]
mod failures;
#[cfg(test)]
mod feed;
#[cfg(test)]
mod fragments;
#[cfg(test)]
mod friction;
#[cfg(test)]
mod hardening;
#[cfg(test)]
mod hooks;
#[cfg(test)]
mod lazy_pool;
#[cfg(test)]
mod local_tier;
#[cfg(test)]
mod nonblocking;
#[cfg(test)]
mod nonblocking_functions;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod simple;
#[cfg(test)]
mod transactions;
#[cfg(test)]
mod ui;
