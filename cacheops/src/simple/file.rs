//! The file-system backend of the simple cache.
//!
//! One file per key, named by the 32-hex hash of the key. A file is:
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `cchops\x01\n` (the format version is its 7th byte) |
//! | 8 | expiry, milliseconds since the Unix epoch, little-endian |
//! | 4 | key length, then the key (told apart from another key of the same hash) |
//! | 8 | payload length, then the payload (MessagePack) |
//! | 8 | xxh3-64 of everything before |
//!
//! Writes go to a temporary file in the same directory, then `rename` over the
//! entry: a reader sees the old file or the new one, never half of one. An expired,
//! truncated or corrupted file is a miss and is removed. Expiry uses the wall clock,
//! since the files outlive the process.
//!
//! Locks (`lock = true`) are `<hex>.lock` files holding an expiry and a token,
//! created with all their content at once (hard link of a complete temporary file,
//! which fails if the lock exists). Taking over an expired lock is best effort
//! across processes: two waiters may both remove it and compute, never more.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, ErrorKind, Result};
use crate::protocol::layout::new_stamp;
use crate::store::CacheKey;

/// Default timeout of a file cache.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

const MAGIC: &[u8; 8] = b"cchops\x01\n";
const HEADER_LEN: usize = 16;
const CHECKSUM_LEN: usize = 8;

/// Temporary files older than this belong to a writer that died: `cleanup`
/// removes them.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// A directory of cache entries.
#[derive(Clone, Debug)]
pub(super) struct FileCache {
    dir: Arc<PathBuf>,
}

impl FileCache {
    /// The cache in `dir`, which is created if missing.
    pub(super) fn open(dir: PathBuf) -> Result<FileCache> {
        fs::create_dir_all(&dir).map_err(|e| io_error("cannot create", &dir, e))?;
        Ok(FileCache { dir: Arc::new(dir) })
    }

    /// The payload stored for `key`, unless missing, expired or unreadable.
    pub(super) fn read(&self, key: &str, hashed: CacheKey) -> Result<Option<Vec<u8>>> {
        let path = self.entry_path(hashed, "");
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("cannot read", &path, e)),
        };
        let Some(entry) = Entry::decode(&bytes) else {
            tracing::warn!(path = %path.display(), "cacheops: corrupted cache file treated as a miss");
            remove_quietly(&path);
            return Ok(None);
        };
        if entry.expires <= now_millis() {
            remove_quietly(&path);
            return Ok(None);
        }
        // Another key with the same hash: not ours, and not to be removed.
        Ok((entry.key == key.as_bytes()).then(|| entry.payload.to_vec()))
    }

    /// Stores `payload` for `key` until `ttl` from now, atomically.
    pub(super) fn write(
        &self,
        key: &str,
        hashed: CacheKey,
        payload: &[u8],
        ttl: Duration,
    ) -> Result<()> {
        let expires = now_millis().saturating_add(millis(ttl));
        let bytes = Entry {
            expires,
            key: key.as_bytes(),
            payload,
        }
        .encode();
        let path = self.entry_path(hashed, "");
        let temp = self.write_temp(hashed, &bytes)?;
        fs::rename(&temp, &path).map_err(|e| {
            remove_quietly(&temp);
            io_error("cannot rename into", &path, e)
        })
    }

    /// Removes the entry of `hashed`, if any.
    pub(super) fn remove(&self, hashed: CacheKey) -> Result<()> {
        let path = self.entry_path(hashed, "");
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_error("cannot remove", &path, e))
            }
            _ => Ok(()),
        }
    }

    /// Removes expired and unreadable entries, expired locks and stale temporary
    /// files; returns how many files it removed.
    pub(super) fn cleanup(&self) -> Result<usize> {
        let dir = fs::read_dir(&*self.dir).map_err(|e| io_error("cannot list", &self.dir, e))?;
        let now = now_millis();
        let mut removed = 0;
        for item in dir.flatten() {
            let path = item.path();
            if is_removable(&path, now) && fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Takes the lock of `hashed` unless a live one exists (an expired lock is
    /// taken over).
    pub(super) fn try_lock(&self, hashed: CacheKey, token: &str, ttl: Duration) -> Result<bool> {
        let path = self.entry_path(hashed, ".lock");
        let mut content = now_millis()
            .saturating_add(millis(ttl))
            .to_le_bytes()
            .to_vec();
        content.extend_from_slice(token.as_bytes());
        let temp = self.write_temp(hashed, &content)?;
        let linked = link_lock(&temp, &path);
        remove_quietly(&temp);
        linked
    }

    /// Releases the lock of `hashed` if `token` holds it.
    pub(super) fn unlock(&self, hashed: CacheKey, token: &str) -> Result<()> {
        let path = self.entry_path(hashed, ".lock");
        if read_lock(&path).is_some_and(|(_, held_by)| held_by == token.as_bytes()) {
            remove_quietly(&path);
        }
        Ok(())
    }

    fn entry_path(&self, hashed: CacheKey, suffix: &str) -> PathBuf {
        self.dir.join(format!("{hashed:032x}{suffix}"))
    }

    /// Writes `bytes` to a fresh temporary file next to the entries.
    fn write_temp(&self, hashed: CacheKey, bytes: &[u8]) -> Result<PathBuf> {
        let temp = self.entry_path(hashed, &format!(".{}.tmp", new_stamp()));
        fs::write(&temp, bytes).map_err(|e| {
            remove_quietly(&temp);
            io_error("cannot write", &temp, e)
        })?;
        Ok(temp)
    }
}

/// Links the complete lock file `temp` to `path`, replacing an expired lock once.
fn link_lock(temp: &Path, path: &Path) -> Result<bool> {
    for _ in 0..2 {
        match fs::hard_link(temp, path) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let live = read_lock(path).is_some_and(|(expires, _)| expires > now_millis());
                if live {
                    return Ok(false);
                }
                remove_quietly(path);
            }
            Err(e) => return Err(io_error("cannot create lock", path, e)),
        }
    }
    Ok(false)
}

/// The expiry and token of a lock file.
fn read_lock(path: &Path) -> Option<(u64, Vec<u8>)> {
    let bytes = fs::read(path).ok()?;
    let (expires, token) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*expires), token.to_vec()))
}

/// Whether `cleanup` should remove `path`: an expired or unreadable entry, an
/// expired lock, a stale temporary file. Files not named like ours are left alone.
fn is_removable(path: &Path, now: u64) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let Some(hex) = name
        .get(..32)
        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
    else {
        return false;
    };
    match &name[hex.len()..] {
        "" => read_expiry(path).is_none_or(|expires| expires <= now),
        ".lock" => read_lock(path).is_none_or(|(expires, _)| expires <= now),
        rest if rest.ends_with(".tmp") => is_stale(path),
        _ => false,
    }
}

/// The expiry in an entry's header, `None` if the header is not ours.
fn read_expiry(path: &Path) -> Option<u64> {
    let mut header = [0u8; HEADER_LEN];
    File::open(path).ok()?.read_exact(&mut header).ok()?;
    let (magic, rest) = header.split_first_chunk::<8>()?;
    let expires = rest.first_chunk::<8>()?;
    (magic == MAGIC).then(|| u64::from_le_bytes(*expires))
}

fn is_stale(path: &Path) -> bool {
    let modified = fs::metadata(path).and_then(|m| m.modified());
    modified.is_ok_and(|at| at.elapsed().is_ok_and(|age| age > STALE_TEMP))
}

/// One cache file, borrowed from its bytes.
#[derive(Debug, PartialEq, Eq)]
struct Entry<'a> {
    expires: u64,
    key: &'a [u8],
    payload: &'a [u8],
}

impl<'a> Entry<'a> {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + self.key.len() + self.payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.expires.to_le_bytes());
        // Keys longer than 4 GiB are not a thing; a truncated length would only
        // make the entry unreadable (a miss).
        out.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        out.extend_from_slice(self.key);
        out.extend_from_slice(&(self.payload.len() as u64).to_le_bytes());
        out.extend_from_slice(self.payload);
        out.extend_from_slice(&xxh3_64(&out).to_le_bytes());
        out
    }

    /// The entry in `bytes`; `None` if they are truncated, corrupted or not ours.
    fn decode(bytes: &'a [u8]) -> Option<Entry<'a>> {
        let (body, checksum) = bytes.split_at_checked(bytes.len().checked_sub(CHECKSUM_LEN)?)?;
        if xxh3_64(body).to_le_bytes() != checksum {
            return None;
        }
        let mut rest = body.strip_prefix(MAGIC)?;
        let expires = u64::from_le_bytes(*take::<8>(&mut rest)?);
        let key_len = u32::from_le_bytes(*take::<4>(&mut rest)?);
        let key = take_slice(&mut rest, usize::try_from(key_len).ok()?)?;
        let payload_len = u64::from_le_bytes(*take::<8>(&mut rest)?);
        let payload = take_slice(&mut rest, usize::try_from(payload_len).ok()?)?;
        rest.is_empty().then_some(Entry {
            expires,
            key,
            payload,
        })
    }
}

fn take<'a, const N: usize>(rest: &mut &'a [u8]) -> Option<&'a [u8; N]> {
    let (head, tail) = rest.split_first_chunk::<N>()?;
    *rest = tail;
    Some(head)
}

fn take_slice<'a>(rest: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    let (head, tail) = rest.split_at_checked(len)?;
    *rest = tail;
    Some(head)
}

fn now_millis() -> u64 {
    // A clock before 1970 reads as the epoch: entries then look fresh until the
    // clock is fixed, which beats failing every read.
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    millis(since_epoch)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Removes a file we no longer want; failing leaves a miss for later, no error.
fn remove_quietly(path: &Path) {
    let _ = fs::remove_file(path);
}

fn io_error(what: &str, path: &Path, e: io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{what} {}", path.display())).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trip_and_every_truncation() {
        let entry = Entry {
            expires: 123,
            key: b"key",
            payload: b"payload",
        };
        let bytes = entry.encode();
        assert_eq!(Entry::decode(&bytes), Some(entry));
        for len in 0..bytes.len() {
            assert_eq!(Entry::decode(&bytes[..len]), None, "truncated at {len}");
        }
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert_eq!(Entry::decode(&flipped), None);
    }
}
