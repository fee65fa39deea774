//! Invalidation news: every script that deletes or re-creates stamp or value keys
//! publishes their names on the prefix's channel (`P:news`), and the local tier of
//! each process listens there.
//!
//! A message is the publishing store's origin line (`@<token>`), then the touched
//! key names, joined by `\n` (key names never contain a newline: table and column
//! names are escaped, values are hex), or [`ALL`] after `invalidate_all`. A store
//! applies its own news when it publishes it, so its listener skips messages of its
//! own origin: an echo would only void entries kept since. Pub/sub delivers at most once: a listener that loses its
//! connection cannot know what it missed, so the tier stops serving and drops
//! everything until it is subscribed again (see `local.rs`).

use std::sync::{Arc, Weak};
use std::thread;
use std::time::Duration;

use redis::{Client, RedisResult};

use super::failure::{Doing, Phase};
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

/// A fresh origin line for one store.
pub(crate) fn new_origin() -> String {
    format!("@{}", crate::protocol::layout::new_stamp())
}

/// The message of `origin` announcing `keys`.
pub(crate) fn message<'k>(origin: &str, keys: impl IntoIterator<Item = &'k [u8]>) -> Vec<u8> {
    let mut out = origin.as_bytes().to_vec();
    for key in keys {
        out.push(b'\n');
        out.extend_from_slice(key);
    }
    out
}

/// The origin of a message and its body (keys, or [`ALL`]).
fn split_origin(message: &[u8]) -> (&[u8], &[u8]) {
    match message.iter().position(|&b| b == b'\n') {
        Some(at) if message.starts_with(b"@") => (&message[..at], &message[at + 1..]),
        _ => (&[], message),
    }
}

/// The keys of a message body, or `None` for [`ALL`].
fn keys_of(body: &[u8]) -> Option<impl Iterator<Item = &[u8]>> {
    (body != ALL).then(|| body.split(|&b| b == b'\n').filter(|k| !k.is_empty()))
}

/// Applies one message to `local`, unless `own` published it.
fn apply(local: &Local, own: &str, message: &[u8]) {
    let (origin, body) = split_origin(message);
    if origin == own.as_bytes() {
        return;
    }
    match keys_of(body) {
        Some(keys) => local.news(keys),
        None => local.drop_all(),
    }
}

/// Starts the thread that feeds `local` from `channel`. It ends once the tier is
/// dropped (checked at least every [`IDLE_CHECK`]).
pub(crate) fn listen(client: Client, channel: String, origin: String, local: &Arc<Local>) {
    let local = Arc::downgrade(local);
    let spawned = thread::Builder::new()
        .name("cacheops-news".into())
        .spawn(move || run(&client, (&channel, &origin), &local));
    if let Err(e) = spawned {
        // Without a listener the tier never starts serving: correct, only slower.
        tracing::error!(error = %e, "cacheops: cannot start the local tier's listener");
    }
}

/// `(channel, own origin)`.
type Feed<'a> = (&'a str, &'a str);

fn run(client: &Client, feed: Feed<'_>, local: &Weak<Local>) {
    let mut failures = 0;
    while local.strong_count() > 0 {
        if let Err(e) = subscribe_and_apply(client, feed, local) {
            let error = Doing::NEWS.failed(e, Phase::Command(IDLE_CHECK));
            tracing::warn!(%error, "cacheops: local tier stopped serving (news lost)");
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
fn subscribe_and_apply(client: &Client, feed: Feed<'_>, local: &Weak<Local>) -> RedisResult<()> {
    let (channel, origin) = feed;
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
                Some(local) => apply(&local, origin, message.get_payload_bytes()),
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
    fn messages_split_into_origin_and_keys() {
        let message = message("@ab", [&b"{p:t}:gen"[..], b"{p:t}:all"]);
        let (origin, body) = split_origin(&message);
        assert_eq!(origin, b"@ab");
        let keys: Vec<&[u8]> = keys_of(body).unwrap().collect();
        assert_eq!(keys, [&b"{p:t}:gen"[..], &b"{p:t}:all"[..]]);
        assert!(keys_of(split_origin(&super::message("@ab", [ALL])).1).is_none());
    }

    #[test]
    fn own_news_is_skipped_and_others_applied() {
        use super::super::local::{key_id, LocalTier};
        let local = Local::new(LocalTier::new(1 << 20));
        local.set_listening(true);
        let keep = |local: &Local| {
            let ticket = local.ticket().unwrap();
            local.keep(
                1,
                ticket,
                b"x",
                vec![key_id(b"k")].into(),
                Duration::from_secs(60),
            );
        };
        keep(&local);
        apply(&local, "@me", &message("@me", [&b"k"[..]]));
        assert!(local.get(1).is_some(), "an echo of our own news");
        apply(&local, "@me", &message("@other", [&b"k"[..]]));
        assert!(local.get(1).is_none());
    }
}
