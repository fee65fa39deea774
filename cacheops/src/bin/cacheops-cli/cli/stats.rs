//! `stats`: per-model counters the applications published, and the Redis memory
//! of our keys.

use std::collections::BTreeMap;
use std::io::Write;

use super::{redis_connection, say, CliError, CliResult, Settings};
use cacheops::__private::Layout;
use cacheops::registry;
use cacheops::ModelStats;

/// Keys per SCAN step and per `MEMORY USAGE` pipeline.
const BATCH: usize = 500;

/// Runs the command.
pub(super) fn run(
    settings: &Settings,
    max_keys: usize,
    reset: bool,
    out: &mut dyn Write,
) -> CliResult {
    let mut con = redis_connection(settings)?;
    let counters = read_counters(&mut con, &settings.prefix)?;
    say(
        out,
        format!(
            "{:<32} {:>10} {:>10} {:>14} {:>6}",
            "model", "hits", "misses", "invalidations", "hit%"
        ),
    )?;
    for (label, s) in &counters {
        let reads = s.hits + s.misses;
        let ratio = match reads {
            0 => "-".to_string(),
            n => format!("{:.1}", s.hits as f64 * 100.0 / n as f64),
        };
        say(
            out,
            format!(
                "{label:<32} {:>10} {:>10} {:>14} {ratio:>6}",
                s.hits, s.misses, s.invalidations
            ),
        )?;
    }
    let memory = measure(&mut con, &settings.prefix, max_keys)
        .map_err(|e| CliError::caused("cannot measure memory", e))?;
    memory.report(out)?;
    if reset {
        // Counts flushed between the read above and this DEL are lost: acceptable
        // for counters an operator resets by hand.
        redis::cmd("DEL")
            .arg(registry::stats_key(&settings.prefix))
            .exec(&mut con)
            .map_err(|e| CliError::caused("cannot reset the counters", e))?;
        say(out, "counters reset")?;
    }
    Ok(())
}

/// Published counters by label, with every registered model listed (zeros included).
pub(super) fn read_counters(
    con: &mut redis::Connection,
    prefix: &str,
) -> CliResult<BTreeMap<String, ModelStats>> {
    let failed = |e| CliError::caused("cannot read stats", e);
    let mut out: BTreeMap<String, ModelStats> = BTreeMap::new();
    for model in registry::read(con, prefix).map_err(failed)? {
        out.entry(model.label).or_default();
    }
    let raw: Vec<(String, u64)> = redis::cmd("HGETALL")
        .arg(registry::stats_key(prefix))
        .query(con)
        .map_err(|e| failed(e.into()))?;
    for (field, n) in raw {
        let Some((label, event)) = field.rsplit_once(':') else {
            continue;
        };
        let entry = out.entry(label.to_string()).or_default();
        match event {
            "hits" => entry.hits += n,
            "misses" => entry.misses += n,
            "invalidations" => entry.invalidations += n,
            _ => {}
        }
    }
    Ok(out)
}

/// Bytes and key counts, by group: cached values, then each table's stamps.
#[derive(Default)]
struct Memory {
    groups: BTreeMap<String, (u64, u64)>,
    keys: usize,
    truncated: bool,
}

impl Memory {
    fn add(&mut self, group: String, bytes: u64) {
        let entry = self.groups.entry(group).or_default();
        entry.0 += 1;
        entry.1 += bytes;
        self.keys += 1;
    }

    fn report(&self, out: &mut dyn Write) -> CliResult {
        say(out, "")?;
        say(
            out,
            format!("{:<32} {:>10} {:>14}", "redis memory", "keys", "bytes"),
        )?;
        for (group, (keys, bytes)) in &self.groups {
            say(out, format!("{group:<32} {keys:>10} {bytes:>14}"))?;
        }
        let total: u64 = self.groups.values().map(|g| g.1).sum();
        say(
            out,
            format!("{:<32} {:>10} {total:>14}", "total", self.keys),
        )?;
        if self.truncated {
            say(
                out,
                format!(
                    "(stopped after {} keys: totals are lower bounds; see --max-keys)",
                    self.keys
                ),
            )?;
        }
        Ok(())
    }
}

/// SCANs the prefix's keys (at most `max_keys`) and sums their `MEMORY USAGE`.
fn measure(con: &mut redis::Connection, prefix: &str, max_keys: usize) -> cacheops::Result<Memory> {
    let layout = Layout::new(prefix);
    let mut memory = Memory::default();
    let extra = [registry::models_key(prefix), registry::stats_key(prefix)];
    for (key, bytes) in extra.iter().zip(usage(con, &extra)?) {
        if let Some(bytes) = bytes {
            memory.add(format!("({})", &key[layout.prefix().len() + 1..]), bytes);
        }
    }
    for pattern in layout.scan_patterns() {
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(BATCH)
                .query(con)?;
            let ours: Vec<String> = keys.into_iter().filter(|k| layout.owns(k)).collect();
            let room = max_keys.saturating_sub(memory.keys);
            memory.truncated |= ours.len() > room;
            let ours = &ours[..ours.len().min(room)];
            for (key, bytes) in ours.iter().zip(usage(con, ours)?) {
                memory.add(group_of(&layout, key), bytes.unwrap_or(0));
            }
            if next == 0 || memory.truncated {
                break;
            }
            cursor = next;
        }
    }
    Ok(memory)
}

/// `MEMORY USAGE` of each key, in one pipeline; `None` for a key gone meanwhile.
fn usage(con: &mut redis::Connection, keys: &[String]) -> cacheops::Result<Vec<Option<u64>>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd("MEMORY").arg("USAGE").arg(key);
    }
    Ok(pipe.query(con)?)
}

/// `cached values` for `P:q:..`, `table <T> stamps` for `{P:T}:..`.
fn group_of(layout: &Layout, key: &str) -> String {
    let table = key
        .strip_prefix('{')
        .and_then(|k| k.strip_prefix(layout.prefix()))
        .and_then(|k| k.strip_prefix(':'))
        .and_then(|k| k.split_once('}'))
        .map(|(table, _)| table);
    match table {
        Some(table) => format!("table {table} stamps"),
        None => "cached values".to_string(),
    }
}
