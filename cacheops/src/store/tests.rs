//! The same test bodies, run on the memory store and on the Redis at
//! 127.0.0.1:6379. Every test uses a fresh random prefix and drops its keys
//! afterwards, so the shared server is left as found.

use std::sync::Arc;
use std::time::Duration;

use super::{CacheKey, MemoryStore, QueryStore, RedisStore, RowState};
use crate::deps::{Conj, Deps, TableDeps};
use crate::error::ErrorKind;
use crate::protocol::layout::{self, Layout};
use crate::value::{Equality, Value};

const REDIS_URL: &str = "redis://127.0.0.1:6379/";
const TTL: Duration = Duration::from_secs(60);

/// What the test bodies need beyond [`QueryStore`]: raw key access to simulate
/// eviction and corruption, and a second store over the same keys.
trait Harness: QueryStore + Sized {
    fn open(prefix: &str) -> Self;
    fn sibling(&self, prefix: &str) -> Self;
    fn layout(&self) -> &Layout;
    fn raw_set(&self, key: &str, value: &[u8]);
    fn raw_exists(&self, key: &str) -> bool;
    fn raw_del(&self, key: &str);
}

impl Harness for MemoryStore {
    fn open(prefix: &str) -> Self {
        MemoryStore::new(prefix)
    }
    fn sibling(&self, prefix: &str) -> Self {
        MemoryStore::sibling(self, prefix)
    }
    fn layout(&self) -> &Layout {
        MemoryStore::layout(self)
    }
    fn raw_set(&self, key: &str, value: &[u8]) {
        MemoryStore::raw_set(self, key, value)
    }
    fn raw_exists(&self, key: &str) -> bool {
        MemoryStore::raw_exists(self, key)
    }
    fn raw_del(&self, key: &str) {
        MemoryStore::raw_del(self, key)
    }
}

impl Harness for RedisStore {
    fn open(prefix: &str) -> Self {
        RedisStore::open(REDIS_URL, prefix).expect("valid URL")
    }
    fn sibling(&self, prefix: &str) -> Self {
        Harness::open(prefix)
    }
    fn layout(&self) -> &Layout {
        RedisStore::layout(self)
    }
    fn raw_set(&self, key: &str, value: &[u8]) {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(key).arg(value);
        self.run(super::Doing::TEST, |con| cmd.exec(con))
            .expect("SET");
    }
    fn raw_exists(&self, key: &str) -> bool {
        let mut cmd = ::redis::cmd("EXISTS");
        cmd.arg(key);
        self.run(super::Doing::TEST, |con| cmd.query::<i64>(con))
            .expect("EXISTS")
            == 1
    }
    fn raw_del(&self, key: &str) {
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(key);
        self.run(super::Doing::TEST, |con| cmd.exec(con))
            .expect("DEL");
    }
}

/// A store under a fresh prefix, emptied on drop (even when the test panics).
struct Ctx<S: QueryStore> {
    store: S,
    prefix: String,
}

impl<S: Harness> Ctx<S> {
    fn new() -> Self {
        let prefix = format!("cacheops-test:{}", layout::new_stamp());
        Ctx {
            store: S::open(&prefix),
            prefix,
        }
    }
}

impl<S: QueryStore> Drop for Ctx<S> {
    fn drop(&mut self) {
        let _ = self.store.invalidate_all();
    }
}

// ---- building dependencies and rows by hand ----

fn val(bytes: &[u8]) -> Value {
    Value {
        ty: 23,
        equality: Equality::Exact,
        bytes: Some(bytes.into()),
    }
}

fn int(n: i32) -> Value {
    val(&n.to_be_bytes())
}

fn null() -> Value {
    Value {
        ty: 23,
        equality: Equality::Exact,
        bytes: None,
    }
}

fn conj(terms: &[(&str, Value)]) -> Conj {
    let mut terms: Vec<_> = terms
        .iter()
        .map(|(c, v)| (Arc::from(*c), v.clone()))
        .collect();
    terms.sort();
    Conj(terms)
}

fn conjs(list: &[&[(&str, Value)]]) -> TableDeps {
    let mut list: Vec<Conj> = list.iter().map(|c| conj(c)).collect();
    list.sort();
    TableDeps::Conjs(list)
}

fn deps(tables: Vec<(&str, TableDeps)>) -> Deps {
    let mut tables: Vec<(Arc<str>, TableDeps)> =
        tables.into_iter().map(|(t, d)| (Arc::from(t), d)).collect();
    tables.sort_by(|a, b| a.0.cmp(&b.0));
    Deps { tables }
}

fn row<'a>(table: &'a str, columns: &[(&'a str, Value)]) -> RowState<'a> {
    RowState {
        table,
        columns: columns.to_vec(),
    }
}

/// Fences, stores `payload` under `key` and checks it hits.
fn cache<S: QueryStore>(store: &S, key: CacheKey, deps: &Deps, payload: &[u8]) {
    let fence = store.fence(deps, TTL).expect("fence");
    assert!(
        store.store(key, &fence, payload, TTL).expect("store"),
        "store refused"
    );
    assert_eq!(hit(store, key, deps).as_deref(), Some(payload));
}

fn hit<S: QueryStore>(store: &S, key: CacheKey, deps: &Deps) -> Option<Vec<u8>> {
    store.lookup(key, deps).expect("lookup")
}

fn post_by_id(id: i32) -> Deps {
    deps(vec![("posts", conjs(&[&[("id", int(id))]]))])
}

// ---- the bodies ----

mod bodies {
    use super::*;

    pub(super) fn fence_store_lookup_hits<S: Harness>(s: &S) {
        let d = deps(vec![
            (
                "posts",
                conjs(&[
                    &[("id", int(1))],
                    &[("category_id", int(3)), ("published", val(b"t"))],
                ]),
            ),
            ("users", TableDeps::Any),
            ("tags", TableDeps::Conjs(vec![])),
        ]);
        cache(s, 1, &d, b"payload");
        assert_eq!(hit(s, 2, &d), None, "another key");
        let again = s.fence(&d, TTL).expect("fence");
        assert_eq!(again.keys, s.layout().stamp_keys(&d), "canonical order");
        assert_eq!(again, s.fence(&d, TTL).expect("fence"), "stamps are stable");
    }

    /// A key is read with the stamps of the dependencies it is asked with (the
    /// Redis store keeps each key's command, built for the first ones): the same
    /// key with other dependencies, as function caching allows, misses.
    pub(super) fn one_key_other_deps<S: Harness>(s: &S) {
        cache(s, 1, &post_by_id(1), b"one");
        assert_eq!(hit(s, 1, &post_by_id(2)), None, "other deps, never fenced");
        s.fence(&post_by_id(2), TTL).expect("fence");
        assert_eq!(hit(s, 1, &post_by_id(2)), None, "other deps' stamps");
        assert_eq!(hit(s, 1, &post_by_id(1)).as_deref(), Some(&b"one"[..]));
        let post_one = row("posts", &[("id", int(1))]);
        s.invalidate_rows("posts", &[post_one]).expect("invalidate");
        assert_eq!(hit(s, 1, &post_by_id(1)), None, "its own stamps");
    }

    pub(super) fn empty_deps_and_payload<S: Harness>(s: &S) {
        cache(s, 7, &Deps::default(), b"");
        cache(s, 8, &post_by_id(1), b"");
    }

    pub(super) fn stale_write_refused<S: Harness>(s: &S) {
        let d = post_by_id(1);
        let fence = s.fence(&d, TTL).expect("fence");
        // The writer commits and invalidates while the reader runs its SQL.
        s.invalidate_rows("posts", &[row("posts", &[("id", int(1))])])
            .expect("invalidate");
        assert!(!s.store(1, &fence, b"stale", TTL).expect("store"));
        assert_eq!(hit(s, 1, &d), None);
        // A second reader recreated the stamp: the first one's fill is still refused.
        let fresh = s.fence(&d, TTL).expect("fence");
        assert_ne!(fresh, fence);
        assert!(!s.store(1, &fence, b"stale", TTL).expect("store"));
        assert!(s.store(1, &fresh, b"fresh", TTL).expect("store"));
        assert_eq!(hit(s, 1, &d).as_deref(), Some(&b"fresh"[..]));
    }

    pub(super) fn matching_row_only<S: Harness>(s: &S) {
        cache(s, 1, &post_by_id(1), b"one");
        cache(s, 2, &post_by_id(2), b"two");
        let saved = row("posts", &[("id", int(1)), ("title", val(b"x"))]);
        s.invalidate_rows("posts", &[saved]).expect("invalidate");
        assert_eq!(hit(s, 1, &post_by_id(1)), None);
        assert_eq!(hit(s, 2, &post_by_id(2)).as_deref(), Some(&b"two"[..]));
    }

    pub(super) fn old_and_new_state<S: Harness>(s: &S) {
        let by_cat = |c| deps(vec![("posts", conjs(&[&[("category_id", int(c))]]))]);
        for c in 1..=3 {
            cache(s, c as u128, &by_cat(c), b"cat");
        }
        let old = row("posts", &[("id", int(5)), ("category_id", int(1))]);
        let new = row("posts", &[("id", int(5)), ("category_id", int(2))]);
        s.invalidate_rows("posts", &[old, new]).expect("invalidate");
        assert_eq!(hit(s, 1, &by_cat(1)), None, "moved out");
        assert_eq!(hit(s, 2, &by_cat(2)), None, "moved in");
        assert!(hit(s, 3, &by_cat(3)).is_some(), "untouched");
    }

    pub(super) fn conjunction_needs_every_term<S: Harness>(s: &S) {
        let d = deps(vec![(
            "posts",
            conjs(&[&[("author_id", int(1)), ("published", val(b"t"))]]),
        )]);
        cache(s, 1, &d, b"v");
        let draft = row("posts", &[("author_id", int(1)), ("published", val(b"f"))]);
        s.invalidate_rows("posts", &[draft]).expect("invalidate");
        assert!(hit(s, 1, &d).is_some());
        let public = row("posts", &[("published", val(b"t")), ("author_id", int(1))]);
        s.invalidate_rows("posts", &[public]).expect("invalidate");
        assert_eq!(hit(s, 1, &d), None);
    }

    pub(super) fn any_dies_on_any_row<S: Harness>(s: &S) {
        let any = deps(vec![("posts", TableDeps::Any)]);
        let users = deps(vec![("users", TableDeps::Any)]);
        cache(s, 1, &any, b"all posts");
        cache(s, 2, &users, b"all users");
        s.invalidate_rows("posts", &[row("posts", &[("id", int(99))])])
            .expect("invalidate");
        assert_eq!(hit(s, 1, &any), None);
        assert!(hit(s, 2, &users).is_some());
    }

    pub(super) fn missing_column_is_table_wide<S: Harness>(s: &S) {
        let by_cat = deps(vec![("posts", conjs(&[&[("category_id", int(1))]]))]);
        cache(s, 1, &by_cat, b"cat");
        cache(s, 2, &post_by_id(7), b"seven");
        let partial = row("posts", &[("id", int(9))]);
        s.invalidate_rows("posts", &[partial]).expect("invalidate");
        assert_eq!(hit(s, 1, &by_cat), None, "category_id unknown: may match");
        assert_eq!(hit(s, 2, &post_by_id(7)), None, "table-wide");
    }

    pub(super) fn schemes_evicted<S: Harness>(s: &S) {
        cache(s, 1, &post_by_id(1), b"one");
        s.raw_del(&s.layout().table_key("posts", "schemes"));
        s.invalidate_rows("posts", &[row("posts", &[("id", int(2))])])
            .expect("invalidate");
        assert_eq!(hit(s, 1, &post_by_id(1)), None);
        // Lost again, then noticed by a fence rather than an invalidation.
        cache(s, 1, &post_by_id(1), b"one");
        s.raw_del(&s.layout().table_key("posts", "schemes"));
        cache(s, 2, &post_by_id(2), b"two");
        assert_eq!(hit(s, 1, &post_by_id(1)), None);
    }

    /// A store that invalidated a table before uses the schemes it read then: a
    /// scheme another store registered since, or the loss of them all, must still
    /// be honoured, and a row invalidation by known schemes stays granular.
    pub(super) fn schemes_changed_elsewhere<S: Harness>(s: &S) {
        let by_cat = deps(vec![("posts", conjs(&[&[("category_id", int(3))]]))]);
        let in_cat = |id| row("posts", &[("id", int(id)), ("category_id", int(3))]);
        let invalidate = |row| s.invalidate_rows("posts", &[row]).expect("invalidate");
        cache(s, 1, &post_by_id(1), b"one");
        invalidate(in_cat(1));
        assert_eq!(hit(s, 1, &post_by_id(1)), None);
        let other = s.sibling(s.layout().prefix());
        cache(&other, 2, &by_cat, b"cat");
        cache(s, 1, &post_by_id(1), b"one");
        invalidate(in_cat(5));
        assert_eq!(hit(s, 2, &by_cat), None, "a scheme registered elsewhere");
        assert_eq!(hit(s, 1, &post_by_id(1)).as_deref(), Some(&b"one"[..]));
        cache(&other, 2, &by_cat, b"cat");
        invalidate(in_cat(1));
        assert_eq!(
            hit(s, 1, &post_by_id(1)),
            None,
            "known schemes, matching row"
        );
        assert_eq!(hit(s, 2, &by_cat), None, "known schemes, matching row");
        cache(s, 1, &post_by_id(1), b"one");
        cache(&other, 2, &by_cat, b"cat");
        s.raw_del(&s.layout().table_key("posts", "schemes"));
        invalidate(row("posts", &[("id", int(9)), ("category_id", int(8))]));
        assert_eq!(hit(s, 1, &post_by_id(1)), None, "schemes lost: whole table");
        assert_eq!(hit(&other, 2, &by_cat), None, "schemes lost: whole table");
    }

    pub(super) fn stamp_evicted<S: Harness>(s: &S) {
        let d = post_by_id(1);
        for (i, key) in s.layout().stamp_keys(&d).iter().enumerate() {
            cache(s, i as u128, &d, b"v");
            s.raw_del(key);
            assert_eq!(hit(s, i as u128, &d), None, "{key}");
        }
    }

    pub(super) fn invalidate_table<S: Harness>(s: &S) {
        let none = deps(vec![("posts", TableDeps::Conjs(vec![]))]);
        let users = deps(vec![("users", TableDeps::Any)]);
        cache(s, 1, &post_by_id(1), b"one");
        cache(s, 2, &none, b"none");
        cache(s, 3, &users, b"users");
        s.invalidate_table("posts").expect("invalidate_table");
        assert_eq!(hit(s, 1, &post_by_id(1)), None);
        assert_eq!(hit(s, 2, &none), None);
        assert!(hit(s, 3, &users).is_some());
        // No row can reach a provably empty table's value, only the table.
        cache(s, 2, &none, b"none");
        s.invalidate_rows("posts", &[row("posts", &[("id", int(1))])])
            .expect("invalidate");
        assert!(hit(s, 2, &none).is_some());
    }

    pub(super) fn invalidate_all_only_ours<S: Harness>(s: &S) {
        let prefix = s.layout().prefix().to_owned();
        let other = s.sibling(&format!("{prefix}:x"));
        let unrelated = format!("{prefix}:unrelated");
        s.raw_set(&unrelated, b"keep me");
        cache(s, 1, &post_by_id(1), b"ours");
        cache(&other, 1, &post_by_id(1), b"theirs");
        s.invalidate_all().expect("invalidate_all");
        let still_there = s.raw_exists(&unrelated);
        let theirs = hit(&other, 1, &post_by_id(1));
        s.raw_del(&unrelated);
        other.invalidate_all().expect("invalidate_all");
        assert!(still_there, "unrelated key removed");
        assert_eq!(theirs.as_deref(), Some(&b"theirs"[..]));
        assert_eq!(hit(s, 1, &post_by_id(1)), None);
        let mut ours = s.layout().stamp_keys(&post_by_id(1));
        ours.push(s.layout().value_key(1));
        ours.push(s.layout().table_key("posts", "schemes"));
        assert!(ours.iter().all(|k| !s.raw_exists(k)), "keys left: {ours:?}");
    }

    pub(super) fn corrupt_value_is_a_miss<S: Harness>(s: &S) {
        let d = post_by_id(1);
        cache(s, 1, &d, b"v");
        let key = s.layout().value_key(1);
        for garbage in [&b""[..], b"short", b"sixteen bytes or more of garbage"] {
            s.raw_set(&key, garbage);
            assert_eq!(s.lookup(1, &d).expect("no error"), None);
        }
    }

    pub(super) fn value_ttl<S: Harness>(s: &S) {
        let d = post_by_id(1);
        let fence = s.fence(&d, TTL).expect("fence");
        assert!(s
            .store(1, &fence, b"brief", Duration::from_millis(150))
            .expect("store"));
        assert!(hit(s, 1, &d).is_some());
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(hit(s, 1, &d), None);
    }

    pub(super) fn delete_keeps_stamps<S: Harness>(s: &S) {
        let d = post_by_id(1);
        cache(s, 1, &d, b"one");
        cache(s, 2, &d, b"two");
        s.delete(1).expect("delete");
        assert_eq!(hit(s, 1, &d), None);
        assert!(hit(s, 2, &d).is_some());
    }

    pub(super) fn rows_of_another_table<S: Harness>(s: &S) {
        s.invalidate_rows("posts", &[])
            .expect("no rows: nothing to do");
        let err = s
            .invalidate_rows("posts", &[row("users", &[])])
            .expect_err("wrong table");
        assert_eq!(err.kind(), ErrorKind::Config);
    }

    pub(super) fn odd_names_and_values<S: Harness>(s: &S) {
        let table = "we{ird}:ta*ble";
        let long = [7u8; 100];
        let d = deps(vec![(
            table,
            conjs(&[&[("a,b", val(&long)), ("c=d&", null()), ("", int(1))]]),
        )]);
        cache(s, 1, &d, b"v");
        let other = [8u8; 100];
        let miss = row(
            table,
            &[("a,b", val(&other)), ("c=d&", null()), ("", int(1))],
        );
        s.invalidate_rows(table, &[miss]).expect("invalidate");
        assert!(hit(s, 1, &d).is_some(), "another long value");
        let not_null = row(
            table,
            &[("a,b", val(&long)), ("c=d&", int(0)), ("", int(1))],
        );
        s.invalidate_rows(table, &[not_null]).expect("invalidate");
        assert!(hit(s, 1, &d).is_some(), "NULL is not 0");
        let matching = row(
            table,
            &[("", int(1)), ("c=d&", null()), ("a,b", val(&long))],
        );
        s.invalidate_rows(table, &[matching]).expect("invalidate");
        assert_eq!(hit(s, 1, &d), None);
    }

    pub(super) fn many_threads<S: Harness>(s: &S) {
        std::thread::scope(|scope| {
            for t in 0..8u128 {
                scope.spawn(move || {
                    for i in 0..20 {
                        let d = post_by_id(i as i32);
                        cache(s, t * 100 + i, &d, b"v");
                    }
                });
            }
        });
    }
}

macro_rules! store_tests {
    ($module:ident, $store:ty) => {
        mod $module {
            use super::*;
            store_tests!(@each $store:
                fence_store_lookup_hits, one_key_other_deps, empty_deps_and_payload, stale_write_refused,
                matching_row_only, old_and_new_state, conjunction_needs_every_term,
                any_dies_on_any_row, missing_column_is_table_wide, schemes_evicted,
                schemes_changed_elsewhere,
                stamp_evicted, invalidate_table, invalidate_all_only_ours,
                corrupt_value_is_a_miss, value_ttl, delete_keeps_stamps,
                rows_of_another_table, odd_names_and_values, many_threads);
        }
    };
    (@each $store:ty: $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let ctx = Ctx::<$store>::new();
                assert!(ctx.prefix.starts_with("cacheops-test:"));
                bodies::$name(&ctx.store);
            }
        )*
    };
}

store_tests!(memory, MemoryStore);
store_tests!(redis, RedisStore);

// ---- Redis only ----

#[test]
fn redis_unreachable_degrades() {
    let store = RedisStore::builder("redis://127.0.0.1:1/")
        .prefix("cacheops-test:down")
        .connect_timeout(Duration::from_millis(200))
        .build()
        .expect("opening does not connect");
    let d = post_by_id(1);
    let fence = super::Fence {
        keys: vec![],
        stamps: vec![],
    };
    let errors = [
        store.lookup(1, &d).err(),
        store.fence(&d, TTL).err(),
        store.store(1, &fence, b"v", TTL).err(),
        store
            .invalidate_rows("posts", &[row("posts", &[("id", int(1))])])
            .err(),
        store.invalidate_table("posts").err(),
        store.invalidate_all().err(),
        store.delete(1).err(),
    ];
    for error in errors {
        assert!(error.is_some_and(|e| e.is_redis()));
    }
}

#[test]
fn redis_reconnects_when_an_idle_connection_was_closed() {
    let ctx = Ctx::<RedisStore>::new();
    let s = &ctx.store;
    cache(s, 1, &post_by_id(1), b"v");
    // Close the (only) pooled connection from another client, as a server-side
    // idle timeout or a restart would.
    let id: i64 = s
        .run(super::Doing::TEST, |c| {
            ::redis::cmd("CLIENT").arg("ID").query(c)
        })
        .expect("id");
    let client = ::redis::Client::open(REDIS_URL).expect("url");
    let mut other = client.get_connection().expect("connect");
    let killed: i64 = ::redis::cmd("CLIENT")
        .arg(&["KILL", "ID", &id.to_string()])
        .query(&mut other)
        .expect("kill");
    assert_eq!(killed, 1);
    assert!(
        hit(s, 1, &post_by_id(1)).is_some(),
        "retried on a fresh connection"
    );
}

#[test]
fn redis_invalid_url() {
    let err = RedisStore::open("nonsense://", "p").expect_err("invalid");
    assert_eq!(err.kind(), ErrorKind::Config);
}

/// Median latency of a `lookup` hit against a plain `GET` of the same payload.
/// `cargo test -p cacheops --release --lib store::tests::lookup_latency -- --ignored --nocapture`
#[test]
#[ignore = "benchmark"]
fn lookup_latency() {
    let ctx = Ctx::<RedisStore>::new();
    let s = &ctx.store;
    let d = deps(vec![
        ("categories", conjs(&[&[("id", int(3))]])),
        (
            "posts",
            conjs(&[&[("category_id", int(3)), ("published", val(b"t"))]]),
        ),
    ]);
    let payload = vec![42u8; 1024];
    cache(s, 1, &d, &payload);
    let plain = s.layout().value_key(2);
    s.raw_set(&plain, &payload);
    let lookup = median(|| assert!(hit(s, 1, &d).is_some()));
    let mut get = ::redis::cmd("GET");
    get.arg(&plain);
    let get = median(|| {
        assert!(s
            .run(super::Doing::TEST, |c| get.query::<Vec<u8>>(c))
            .is_ok())
    });
    println!("lookup hit (4 stamps, 1 KiB): median {lookup:?}; plain GET: median {get:?}");
}

fn median(mut f: impl FnMut()) -> Duration {
    (0..200).for_each(|_| f());
    let mut times: Vec<Duration> = (0..5000)
        .map(|_| {
            let start = std::time::Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

// ---- layout ----

#[test]
fn layout_key_names() {
    let l = Layout::new("p");
    assert_eq!(l.value_key(0xab), format!("p:q:{:032x}", 0xab));
    assert_eq!(l.table_key("posts", "gen"), "{p:posts}:gen");
    let d = deps(vec![
        ("b", TableDeps::Any),
        (
            "a",
            conjs(&[&[("y", null()), ("x", int(1))], &[("z", val(&[0; 33]))]]),
        ),
    ]);
    let z = format!("#{:032x}", xxhash_rust::xxh3::xxh3_128(&[0; 33]));
    let expected = [
        "{p:a}:gen".to_owned(),
        "{p:a}:j:x=0000000000000001&y=~".to_owned(),
        format!("{{p:a}}:j:z={z}"),
        "{p:b}:gen".to_owned(),
        "{p:b}:all".to_owned(),
    ];
    assert_eq!(l.stamp_keys(&d), expected);
}

#[test]
fn layout_escapes_names() {
    let l = Layout::new("a{b}%");
    assert_eq!(l.table_key("t:{x}", "gen"), "{a%7Bb%7D%25:t%3A%7Bx%7D}:gen");
    let c = conj(&[("a,b", null()), ("", null())]);
    assert_eq!(layout::scheme(&c), "%,a%2Cb");
}

#[test]
fn layout_owns_only_its_prefix() {
    let l = Layout::new("p");
    assert!(l.owns("p:q:0123456789abcdef0123456789abcdef"));
    assert!(l.owns("{p:posts}:j:id=01"));
    assert!(l.owns("p:s:0123456789abcdef0123456789abcdef"));
    assert!(l.owns("p:l:0123456789abcdef0123456789abcdef"));
    assert!(!l.owns("p:s:short"));
    assert!(
        !l.owns("p:q:q:0123456789abcdef0123456789abcdef"),
        "prefix p:q"
    );
    assert!(!l.owns("{p:x:posts}:gen"), "prefix p:x");
    assert!(!l.owns("{px:posts}:gen"));
    assert!(!l.owns("p:unrelated"));
    assert_eq!(
        Layout::new("a*[b]").scan_patterns(),
        ["{a\\*\\[b\\]:*", "a\\*\\[b\\]:[qsl]:*"]
    );
}

#[test]
fn layout_row_conj_key() {
    let r = layout::encode_row(&row("t", &[("b", int(2)), ("a", null())]));
    assert_eq!(
        layout::row_conj_key("P", "a,b", &r).as_deref(),
        Some("Pa=~&b=0000000000000002")
    );
    assert_eq!(layout::row_conj_key("P", "a,c", &r), None);
}

#[test]
fn layout_folds_identifier_case() {
    let l = Layout::new("P");
    assert_eq!(
        l.table_key("ARTICLES", "gen"),
        l.table_key("articles", "gen")
    );
    assert_eq!(
        layout::scheme(&conj(&[("Category_ID", null())])),
        "category_id"
    );
    let r = layout::encode_row(&row("t", &[("VIEWS", int(2))]));
    assert_eq!(
        layout::row_conj_key("P", "views", &r).as_deref(),
        Some("Pviews=0000000000000002")
    );
}

#[test]
fn layout_a_column_named_twice_with_two_values_widens() {
    // PostgreSQL's "Id" and "id" are two columns: folded, which one a condition
    // meant is unknown, so the row lacks the column (whole-table invalidation).
    let twice = layout::encode_row(&row("t", &[("Id", int(1)), ("id", int(2)), ("n", int(3))]));
    assert_eq!(layout::row_conj_key("P", "id", &twice), None);
    assert!(layout::row_conj_key("P", "n", &twice).is_some());
    let same = layout::encode_row(&row("t", &[("Id", int(1)), ("id", int(1))]));
    assert!(layout::row_conj_key("P", "id", &same).is_some());
}

#[test]
fn layout_checksum_and_framing() {
    let a = layout::checksum([&b"ab"[..], b"c"]);
    assert_ne!(a, layout::checksum([&b"a"[..], b"bc"]));
    let framed = layout::frame([&b"ab"[..], b"c"], b"payload");
    let stamps = vec![Some(b"ab".to_vec()), Some(b"c".to_vec())];
    let answer = |stamps: &[Option<Vec<u8>>]| [&[Some(framed.clone())], stamps].concat();
    assert_eq!(
        layout::unframe(answer(&stamps)).as_deref(),
        Some(&b"payload"[..])
    );
    assert_eq!(layout::unframe(answer(&stamps[..1])), None);
    assert_eq!(layout::unframe(answer(&[stamps[0].clone(), None])), None);
    assert_eq!(layout::unframe(vec![None]), None);
    assert_eq!(layout::unframe(vec![]), None);
    assert_ne!(layout::new_stamp(), layout::new_stamp());
}
