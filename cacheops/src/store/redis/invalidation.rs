//! How the Redis store invalidates rows: by a script, or by keys it computes
//! itself from the schemes it knows.
//!
//! `invalidate.lua` reads a table's schemes and deletes the conjunction keys the
//! rows hit (~13 µs of server time for a save's two rows). The store keeps the
//! schemes the script read; the next invalidation of the table computes the keys
//! from them here and sends one MULTI/EXEC of SMEMBERS, DEL and PUBLISH (~2 µs).
//! If the SMEMBERS answer differs from the schemes used (a new scheme was
//! registered, or the set was lost), what it deleted is a subset of what the
//! script deletes, and the script runs after it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use redis::FromRedisValue;

use super::link::{typed, Body, Link};
use super::scripts::INVALIDATE;
use super::server::Server;
use crate::error::Result;
use crate::protocol::layout::{self, EncodedRow};
use crate::store::failure::Doing;

/// Each table's schemes as last read (sorted, with the sentinel): row
/// invalidations of the table use them, and check them where they delete.
#[derive(Default)]
pub(super) struct KnownSchemes(Mutex<HashMap<String, Arc<[String]>>>);

impl KnownSchemes {
    /// The schemes last read for `table`, if any.
    fn get(&self, table: &str) -> Option<Arc<[String]>> {
        self.lock().get(table).cloned()
    }

    /// Keeps the `schemes` (sorted) just read for `table`; forgets the table's if
    /// they were lost (no sentinel): the next invalidation needs the script again.
    fn update(&self, table: &str, schemes: Vec<String>) {
        let mut known = self.lock();
        match schemes.iter().any(|s| s == layout::SENTINEL) {
            true => known.insert(table.to_owned(), schemes.into()),
            false => known.remove(table),
        };
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<[String]>>> {
        // Plain inserts and removals: poisoning is harmless.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<L: Link> Server<L> {
    /// Invalidates `rows` (not empty) of `table` the cheapest way that is exact.
    pub(super) async fn invalidate_encoded(&self, table: &str, rows: &[EncodedRow]) -> Result<()> {
        if let Some(known) = self.shared.schemes.get(table) {
            if self.invalidate_known(table, &known, rows).await? {
                return Ok(());
            }
        }
        // Schemes not read yet, or changed since: what the first try deleted was
        // a subset of the script's deletes, which now finish the job.
        self.invalidate_by_script(table, rows).await
    }

    /// Invalidates `rows` of `table` by the schemes `known` for it, in one
    /// MULTI/EXEC that also reads the schemes as they are where it deletes: when
    /// they are the ones used, the deletes were exactly the script's, without the
    /// script's cost. Returns whether they were (or covered the whole table).
    async fn invalidate_known(
        &self,
        table: &str,
        known: &[String],
        rows: &[EncodedRow],
    ) -> Result<bool> {
        let commands = &self.shared.commands;
        let dropped = commands.layout.dropped_by(table, known, rows);
        let pipe = commands.invalidate_known(table, &dropped.keys);
        let doing = Doing::invalidate_rows(table);
        let (mut current,): (Vec<String>,) = self.send(doing, Body::Pipe(&pipe), typed).await?;
        self.news(dropped.keys.iter().map(String::as_bytes));
        current.sort_unstable();
        Ok(dropped.whole_table || current == known)
    }

    /// Invalidates `rows` of `table` by `invalidate.lua`, which reads the schemes
    /// where it deletes, then keeps the schemes for the next invalidation.
    async fn invalidate_by_script(&self, table: &str, rows: &[EncodedRow]) -> Result<()> {
        // Only a local tier needs to know which keys the script deleted.
        let keep_news = self.shared.local.is_some();
        let pipe = self
            .shared
            .commands
            .invalidate_by_script(table, rows, keep_news);
        let read = |reply| {
            let (reply, schemes): (redis::Value, Vec<String>) = typed(reply)?;
            let dropped = match keep_news {
                true => Vec::<Vec<u8>>::from_redis_value(reply)?,
                false => Vec::new(),
            };
            Ok((dropped, schemes))
        };
        let doing = Doing::invalidate_rows(table);
        let body = Body::Pipe(&pipe);
        let (dropped, mut schemes) = self.send_script(doing, &INVALIDATE, body, read).await?;
        self.news(dropped.iter().map(Vec::as_slice));
        schemes.sort_unstable();
        self.shared.schemes.update(table, schemes);
        Ok(())
    }
}
