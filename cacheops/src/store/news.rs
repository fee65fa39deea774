//! Invalidation news: every script that deletes or re-creates stamp or value keys
//! publishes their names on the prefix's channel (`P:news`), and the local tier of
//! each process listens there.
//!
//! A message is the touched key names joined by `\n` (key names never contain a
//! newline: table and column names are escaped, values are hex), or [`ALL`] after
//! `invalidate_all`. Pub/sub delivers at most once: a listener that loses its
//! connection cannot know what it missed, so the tier stops serving and drops
//! everything until it is subscribed again (see `local.rs`).

use std::sync::{Arc, Weak};
use std::thread;
use std::time::Duration;

use redis::{Client, RedisResult};

use super::local::Local;

/// The message that drops every entry.
pub(crate) const ALL: &[u8] = b"*";

/// How often a quiet listener checks that its tier still exists.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Waits between reconnection attempts, doubling up to the last.
const BACKOFF: [Duration; 4] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
];

/// The keys of a news message, or `None` for [`ALL`].
pub(crate) fn keys_of(message: &[u8]) -> Option<impl Iterator<Item = &[u8]>> {
    (message != ALL).then(|| message.split(|&b| b == b'\n').filter(|k| !k.is_empty()))
}

/// Applies one message to `local`.
pub(crate) fn apply(local: &Local, message: &[u8]) {
    match keys_of(message) {
        Some(keys) => local.news(keys),
        None => local.drop_all(),
    }
}

/// Starts the thread that feeds `local` from `channel`. It ends once the tier is
/// dropped (checked at least every [`IDLE_CHECK`]).
pub(crate) fn listen(client: Client, channel: String, local: &Arc<Local>) {
    let local = Arc::downgrade(local);
    let spawned = thread::Builder::new()
        .name("cacheops-news".into())
        .spawn(move || run(&client, &channel, &local));
    if let Err(e) = spawned {
        // Without a listener the tier never starts serving: correct, only slower.
        tracing::error!(error = %e, "cacheops: cannot start the local tier's listener");
    }
}

fn run(client: &Client, channel: &str, local: &Weak<Local>) {
    let mut failures = 0;
    while local.strong_count() > 0 {
        if let Err(e) = subscribe_and_apply(client, channel, local) {
            tracing::warn!(error = %e, "cacheops: local tier stopped serving (news lost)");
        }
        if let Some(local) = local.upgrade() {
            if local.is_listening() {
                failures = 0;
            }
            local.set_listening(false);
        }
        thread::sleep(BACKOFF[failures.min(BACKOFF.len() - 1)]);
        failures += 1;
    }
}

/// Subscribes, then applies messages until the connection fails or the tier is gone.
fn subscribe_and_apply(client: &Client, channel: &str, local: &Weak<Local>) -> RedisResult<()> {
    let mut con = client.get_connection_with_timeout(IDLE_CHECK)?;
    let mut pubsub = con.as_pubsub();
    pubsub.subscribe(channel)?;
    pubsub.set_read_timeout(Some(IDLE_CHECK))?;
    match local.upgrade() {
        Some(local) => local.set_listening(true),
        None => return Ok(()),
    }
    loop {
        match pubsub.get_message() {
            Ok(message) => match local.upgrade() {
                Some(local) => apply(&local, message.get_payload_bytes()),
                None => return Ok(()),
            },
            Err(e) if e.is_timeout() => {
                if local.strong_count() == 0 {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_into_keys() {
        let keys: Vec<&[u8]> = keys_of(b"{p:t}:gen\n{p:t}:all").unwrap().collect();
        assert_eq!(keys, [&b"{p:t}:gen"[..], &b"{p:t}:all"[..]]);
        assert!(keys_of(ALL).is_none());
        assert_eq!(keys_of(b"").unwrap().count(), 0);
    }
}
