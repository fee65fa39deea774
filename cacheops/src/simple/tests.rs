//! The same bodies on the memory store, the Redis at 127.0.0.1:6379 (fresh random
//! prefix, dropped afterwards) and a temporary directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use super::{hash, CachedOptions, FnKey, SimpleCache};
use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::protocol::io::block_on;
use crate::protocol::layout::new_stamp;
use crate::protocol::lock::Locks;
use crate::runtime::Cacheops;

/// A simple cache that cleans up after itself, and knows how to corrupt an entry.
struct Fixture {
    cache: SimpleCache,
    handle: Option<Cacheops>,
    dir: Option<PathBuf>,
}

impl Fixture {
    fn store(url: &str) -> Fixture {
        let prefix = format!("cacheops-test:{}", new_stamp());
        let config = Config::builder().url(url).prefix(prefix).build();
        let handle = Cacheops::new(config).unwrap();
        Fixture {
            cache: handle.simple(),
            handle: Some(handle),
            dir: None,
        }
    }

    fn memory() -> Fixture {
        Fixture::store("memory://")
    }

    fn redis() -> Fixture {
        Fixture::store("redis://127.0.0.1:6379/")
    }

    fn file() -> Fixture {
        let dir = std::env::temp_dir().join(format!("cacheops-test-{}", new_stamp()));
        Fixture {
            cache: SimpleCache::file(&dir).unwrap(),
            handle: None,
            dir: Some(dir),
        }
    }

    /// Overwrites the entry of `key` with bytes that are not an entry.
    fn corrupt(&self, key: &str, garbage: &[u8]) {
        match (&self.handle, &self.dir) {
            (Some(handle), _) => handle
                .core()
                .store()
                .simple_set(hash(key), garbage, Duration::from_secs(60))
                .unwrap(),
            (None, Some(dir)) => {
                std::fs::write(dir.join(format!("{:032x}", hash(key))), garbage).unwrap()
            }
            (None, None) => unreachable!(),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            let _ = handle.invalidate_all();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn miss<T: std::fmt::Debug>(result: crate::Result<T>) -> bool {
    result.is_err_and(|e| e.is_miss() && e.kind() == ErrorKind::CacheMiss)
}

mod bodies {
    use super::*;

    pub(super) fn get_set_delete(f: &Fixture) {
        let c = &f.cache;
        assert!(miss(c.get::<u32>("a")));
        c.set("a", &1u32, None).unwrap();
        c.set("b", "two", Some(Duration::from_secs(60))).unwrap();
        assert_eq!(c.get::<u32>("a").unwrap(), 1);
        assert_eq!(c.get::<String>("b").unwrap(), "two");
        c.set("a", &3u32, None).unwrap();
        assert_eq!(c.get::<u32>("a").unwrap(), 3, "overwritten");
        c.delete("a").unwrap();
        c.delete("never set").unwrap();
        assert!(miss(c.get::<u32>("a")));
        assert_eq!(c.get::<String>("b").unwrap(), "two", "other keys stay");
    }

    pub(super) fn odd_keys(f: &Fixture) {
        let keys = [
            "",
            "*",
            "{x}:q:*",
            "a/../../b",
            "ключ",
            &"long".repeat(1000),
        ];
        for (i, key) in keys.iter().enumerate() {
            f.cache.set(key, &i, None).unwrap();
        }
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(f.cache.get::<usize>(key).unwrap(), i, "{key:?}");
        }
    }

    pub(super) fn expiry(f: &Fixture) {
        f.cache
            .set("brief", &1, Some(Duration::from_millis(100)))
            .unwrap();
        f.cache.set("long", &2, None).unwrap();
        let short = f.cache.clone().with_timeout(Duration::from_millis(100));
        short.set("default", &3, None).unwrap();
        thread::sleep(Duration::from_millis(250));
        assert!(miss(f.cache.get::<i32>("brief")));
        assert!(
            miss(f.cache.get::<i32>("default")),
            "with_timeout is the default"
        );
        assert_eq!(f.cache.get::<i32>("long").unwrap(), 2);
    }

    pub(super) fn corrupted_is_a_miss(f: &Fixture) {
        f.cache.set("k", &vec![1, 2, 3], None).unwrap();
        assert!(miss(f.cache.get::<String>("k")), "another type");
        for garbage in [
            &b""[..],
            b"\xc1",
            b"cchops\x01\nbut then garbage of some length",
        ] {
            f.corrupt("k", garbage);
            assert!(miss(f.cache.get::<Vec<i32>>("k")), "{garbage:?}");
        }
        f.cache.set("k", &vec![4], None).unwrap();
        assert_eq!(f.cache.get::<Vec<i32>>("k").unwrap(), [4], "rewritable");
    }

    pub(super) fn cached_counts(f: &Fixture) {
        let runs = AtomicUsize::new(0);
        let call = |arg: i32| {
            let key = FnKey::new("tests::square").arg(&arg).finish()?;
            f.cache.cached(&key, &CachedOptions::new(), || {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(arg * arg)
            })
        };
        assert_eq!(call(3).unwrap(), 9);
        assert_eq!(call(3).unwrap(), 9);
        assert_eq!(call(4).unwrap(), 16);
        assert_eq!(runs.load(Ordering::SeqCst), 2, "one run per argument");
        f.cache
            .delete(&FnKey::new("tests::square").arg(&3).finish().unwrap())
            .unwrap();
        assert_eq!(call(3).unwrap(), 9);
        assert_eq!(runs.load(Ordering::SeqCst), 3, "invalidated");
    }

    pub(super) fn errors_are_not_cached(f: &Fixture) {
        let runs = AtomicUsize::new(0);
        let fail = || {
            f.cache.cached("failing", &CachedOptions::new(), || {
                runs.fetch_add(1, Ordering::SeqCst);
                Err::<u32, _>(Error::new(ErrorKind::Database, "boom"))
            })
        };
        assert!(fail().unwrap_err().is_database());
        assert!(fail().is_err());
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    pub(super) fn stampede_computes_once(f: &Fixture) {
        let runs = AtomicUsize::new(0);
        let barrier = Barrier::new(8);
        let options = CachedOptions::new().lock(true);
        thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    barrier.wait();
                    let got = f.cache.cached("hot", &options, || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(200));
                        Ok::<_, Error>(String::from("value"))
                    });
                    assert_eq!(got.unwrap(), "value");
                });
            }
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1, "computed more than once");
    }

    pub(super) fn dead_holder_is_outwaited(f: &Fixture) {
        let ttl = Duration::from_millis(200);
        let taken = block_on(
            f.cache
                .blocking()
                .try_lock(hash("orphan"), "dead holder", ttl),
        );
        assert!(taken.unwrap());
        let options = CachedOptions::new().lock(true).lock_timeout(ttl);
        let runs = AtomicUsize::new(0);
        thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let got = f.cache.cached("orphan", &options, || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Error>(5)
                    });
                    assert_eq!(got.unwrap(), 5);
                });
            }
        });
        let runs = runs.load(Ordering::SeqCst);
        assert!((1..=4).contains(&runs), "ran {runs} times");
    }
}

macro_rules! simple_tests {
    ($module:ident, $fixture:ident) => {
        mod $module {
            use super::*;
            simple_tests!(@each $fixture: get_set_delete, odd_keys, expiry,
                corrupted_is_a_miss, cached_counts, errors_are_not_cached,
                stampede_computes_once, dead_holder_is_outwaited);
        }
    };
    (@each $fixture:ident: $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                bodies::$name(&Fixture::$fixture());
            }
        )*
    };
}

simple_tests!(memory, memory);
simple_tests!(redis, redis);
simple_tests!(file, file);

// ---- one backend ----

#[test]
fn invalidate_all_clears_simple_keys() {
    for fixture in [Fixture::memory(), Fixture::redis()] {
        fixture.cache.set("k", &1, None).unwrap();
        fixture.handle.as_ref().unwrap().invalidate_all().unwrap();
        assert!(miss(fixture.cache.get::<i32>("k")));
    }
}

#[test]
fn file_cleanup_counts_what_it_removed() {
    let f = Fixture::file();
    f.cache
        .set("old1", &1, Some(Duration::from_millis(50)))
        .unwrap();
    f.cache
        .set("old2", &2, Some(Duration::from_millis(50)))
        .unwrap();
    f.cache.set("fresh", &3, None).unwrap();
    f.corrupt("broken", b"not an entry");
    let dir = f.dir.as_ref().unwrap();
    std::fs::write(dir.join("README"), b"not ours").unwrap();
    thread::sleep(Duration::from_millis(120));
    assert_eq!(f.cache.cleanup().unwrap(), 3, "two expired, one corrupted");
    assert_eq!(f.cache.cleanup().unwrap(), 0);
    assert_eq!(f.cache.get::<i32>("fresh").unwrap(), 3);
    assert!(dir.join("README").exists(), "foreign files are left alone");
    assert_eq!(
        std::fs::read_dir(dir).unwrap().count(),
        2,
        "no temporary file left"
    );
}

#[test]
fn file_entry_of_another_key_is_a_miss() {
    let f = Fixture::file();
    f.cache.set("a", &1, None).unwrap();
    let dir = f.dir.as_ref().unwrap();
    let name = |key: &str| dir.join(format!("{:032x}", hash(key)));
    // As if "a" and "b" had the same hash.
    std::fs::copy(name("a"), name("b")).unwrap();
    assert!(miss(f.cache.get::<i32>("b")));
    assert_eq!(f.cache.get::<i32>("a").unwrap(), 1);
}

#[test]
fn store_cleanup_is_a_no_op() {
    assert_eq!(Fixture::memory().cache.cleanup().unwrap(), 0);
}

fn unreachable(degrade: bool) -> SimpleCache {
    let config = Config::builder()
        .url("redis://127.0.0.1:1/")
        .redis_timeout(Duration::from_millis(100))
        .degrade_on_failure(degrade)
        .build();
    Cacheops::new(config).unwrap().simple()
}

#[test]
fn unreachable_redis_degrades() {
    let cache = unreachable(true);
    assert!(miss(cache.get::<i32>("k")), "a failed read is a miss");
    cache.set("k", &1, None).unwrap();
    cache.delete("k").unwrap();
    let runs = AtomicUsize::new(0);
    let options = CachedOptions::new().lock(true);
    for _ in 0..2 {
        let got = cache.cached("k", &options, || {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(7)
        });
        assert_eq!(got.unwrap(), 7);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn unreachable_redis_errors_without_degrade() {
    let cache = unreachable(false);
    assert!(cache.get::<i32>("k").unwrap_err().is_redis());
    assert!(cache.set("k", &1, None).unwrap_err().is_redis());
    assert!(cache.delete("k").unwrap_err().is_redis());
    let got = cache.cached("k", &CachedOptions::new(), || Ok::<_, Error>(1));
    assert!(got.unwrap_err().is_redis());
}

#[test]
fn a_value_over_the_maximum_size_is_refused_by_set_and_returned_by_cached() {
    let config = Config::builder()
        .url("memory://")
        .max_value_size(16)
        .build();
    let handle = Cacheops::new(config).unwrap();
    let cache = handle.simple();
    let big = "x".repeat(32);
    let refused = cache.set("k", &big, None).unwrap_err();
    assert!(refused.is_too_large() && !refused.is_redis(), "{refused}");
    let text = refused.to_string();
    assert!(text.contains("the simple-cache value of \"k\""), "{text}");
    assert!(text.contains("CACHEOPS_MAX_VALUE_SIZE"), "{text}");
    let runs = AtomicUsize::new(0);
    for _ in 0..2 {
        let got = cache.cached("k", &CachedOptions::new(), || {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(big.clone())
        });
        assert_eq!(got.unwrap(), big);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2, "never stored");
    assert!(miss(cache.get::<String>("k")));
    assert_eq!(handle.stats().too_large, 3);
}

#[test]
fn disabled_cache_computes_every_time() {
    let config = Config::builder().url("memory://").enabled(false).build();
    let cache = Cacheops::new(config).unwrap().simple();
    cache.set("k", &1, None).unwrap();
    assert!(miss(cache.get::<i32>("k")));
    let runs = AtomicUsize::new(0);
    for _ in 0..2 {
        let _ = cache.cached("k", &CachedOptions::new().lock(true), || {
            Ok::<_, Error>(runs.fetch_add(1, Ordering::SeqCst))
        });
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn fn_keys_tell_parts_apart() {
    let key = |f: FnKey| f.finish().unwrap();
    let base = key(FnKey::new("f").arg(&1).arg(&2));
    assert_eq!(base, key(FnKey::new("f").arg(&1).arg(&2)));
    assert_ne!(base, key(FnKey::new("g").arg(&1).arg(&2)));
    assert_ne!(base, key(FnKey::new("f").arg(&2).arg(&1)));
    assert_ne!(
        base,
        key(FnKey::new("f").arg(&1).extra(&2)),
        "extra is not an argument"
    );
    assert_ne!(
        key(FnKey::new("f").arg("a").arg("b")),
        key(FnKey::new("f").arg("ab").arg(""))
    );
    assert_eq!(
        key(FnKey::new("f").arg("s")),
        key(FnKey::new("f").arg(&String::from("s")))
    );
    assert!(base.starts_with("f:") && base.len() == 2 + 32);
}

#[test]
fn file_readers_never_see_half_a_write() {
    let f = Fixture::file();
    let values: Vec<Vec<u64>> = (0..4).map(|i| vec![i; 50_000]).collect();
    f.cache.set("big", &values[0], None).unwrap();
    thread::scope(|s| {
        for value in &values {
            s.spawn(|| {
                for _ in 0..20 {
                    f.cache.set("big", value, None).unwrap();
                }
            });
        }
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..50 {
                    let read = f.cache.get::<Vec<u64>>("big").unwrap();
                    assert!(values.contains(&read), "a torn or corrupted value");
                }
            });
        }
    });
}

#[test]
fn file_cache_on_a_file_is_an_io_error() {
    let path = std::env::temp_dir().join(format!("cacheops-test-{}", new_stamp()));
    std::fs::write(&path, b"a file, not a directory").unwrap();
    let error = SimpleCache::file(&path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(error.kind(), ErrorKind::Io);
}
