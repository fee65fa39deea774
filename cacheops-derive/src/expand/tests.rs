use proc_macro2::TokenStream;

fn expand_str(attr: &str, item: &str) -> String {
    let attr: TokenStream = attr.parse().unwrap();
    super::function::<super::CachedAttr>(attr, item.parse().unwrap()).to_string()
}

fn expand_as_str(attr: &str, item: &str) -> String {
    let attr: TokenStream = attr.parse().unwrap();
    super::function::<super::CachedAsAttr>(attr, item.parse().unwrap()).to_string()
}

/// The messages of the `compile_error!`s in an expansion.
fn messages(out: &str) -> Vec<String> {
    out.split("compile_error !")
        .skip(1)
        .map(|e| e.split('"').nth(1).unwrap_or_default().to_owned())
        .collect()
}

fn errors(attr: &str, item: &str) -> Vec<String> {
    messages(&expand_str(attr, item))
}

#[test]
fn expands_wrapper_and_module() {
    let out = expand_str(
        "timeout = 600, extra = lang, lock",
        "pub fn top(mut cat: i32, lang: &str) -> cacheops::Result<Vec<u8>> { Ok(vec![]) }",
    );
    assert!(!out.contains("compile_error"), "{out}");
    for part in [
        "pub mod top",
        "pub fn key (cat : i32 , lang : & str)",
        "pub fn invalidate",
        "const FUNCTION",
        "from_secs (600)",
        ". extra (& (lang))",
        ". lock (true)",
        "move || -> cacheops :: Result < Vec < u8 > >",
    ] {
        assert!(out.contains(part), "missing `{part}` in {out}");
    }
}

#[test]
fn private_fn_gets_module_items_visible_to_its_module() {
    let out = expand_str("", "fn f() -> Result<(), E> { Ok(()) }");
    assert!(
        out.contains("mod f") && out.contains("pub (super) fn key"),
        "{out}"
    );
}

#[test]
fn rejects_what_cannot_be_keyed_or_wrapped() {
    let cases = [
        (
            "",
            "const fn f() -> cacheops::Result<()> { Ok(()) }",
            "const",
        ),
        (
            "",
            "fn f(&self) -> cacheops::Result<()> { Ok(()) }",
            "method",
        ),
        ("", "fn f() -> u32 { 1 }", "must return"),
        ("", "fn f() {}", "must return"),
        (
            "",
            "fn f((a, b): (i32, i32)) -> cacheops::Result<()> { Ok(()) }",
            "plain argument names",
        ),
        (
            "",
            "fn f<T>(t: T) -> cacheops::Result<()> { Ok(()) }",
            "generic",
        ),
        (
            "ttl = 5",
            "fn f() -> cacheops::Result<()> { Ok(()) }",
            "unknown",
        ),
        (
            "lock = \"yes\"",
            "fn f() -> cacheops::Result<()> { Ok(()) }",
            "literal",
        ),
        ("", "struct S;", "goes on a function"),
    ];
    for (attr, item, expected) in cases {
        let found = errors(attr, item);
        assert!(
            found.iter().any(|e| e.contains(expected)),
            "{attr} {item}: expected `{expected}` in {found:?}"
        );
    }
}

#[test]
fn reports_every_error_at_once_and_keeps_the_fn() {
    let item = "const fn f(&self) -> u32 { 1 }";
    assert_eq!(errors("", item).len(), 3, "{:?}", errors("", item));
    assert!(
        expand_str("", item).contains("const fn f"),
        "the fn is kept"
    );
}

/// One rule set: each shape is refused by both attributes, with one message
/// that differs only in the attribute's name.
#[test]
fn both_attributes_refuse_the_same_shapes() {
    let shapes = [
        "const fn f() -> Result<(), E> { Ok(()) }",
        "const async fn f() -> Result<(), E> { Ok(()) }",
        "fn f<T>() -> Result<(), E> { Ok(()) }",
        "fn f<const N: usize>() -> Result<(), E> { Ok(()) }",
        "fn f(&self) -> Result<(), E> { Ok(()) }",
        "fn f((a, b): (i32, i32)) -> Result<(), E> { Ok(()) }",
        "fn f(ref a: i32) -> Result<(), E> { Ok(()) }",
        "fn f(a: impl Clone) -> Result<(), E> { Ok(()) }",
        "fn f() {}",
    ];
    for item in shapes {
        let cached = messages(&expand_str("", item));
        let cached_as = messages(&expand_as_str("table(\"t\")", item));
        let renamed: Vec<String> = cached_as
            .iter()
            .map(|m| m.replace("#[cached_as]", "#[cached]"))
            .collect();
        assert_eq!(cached.len(), 1, "{item}: {cached:?}");
        assert_eq!(cached, renamed, "{item}");
    }
}

#[test]
fn both_attributes_take_lifetimes_and_mut_names() {
    let item = "fn f<'a>(mut a: &'a str) -> Result<(), E> { Ok(()) }";
    let cached = expand_str("", item);
    let cached_as = expand_as_str("table(\"t\")", item);
    for out in [&cached, &cached_as] {
        assert!(!out.contains("compile_error"), "{out}");
        assert!(out.contains("fn key < 'a > (a : & 'a str)"), "{out}");
    }
}

#[test]
fn an_error_keeps_the_module_as_a_stub_except_on_a_method() {
    let out = expand_as_str("colour = 3", "fn f(n: i32) -> Result<i32, E> { Ok(n) }");
    assert_eq!(messages(&out).len(), 1, "{out}");
    assert!(
        out.contains("mod f") && out.contains("unimplemented"),
        "{out}"
    );
    let method = expand_str("", "fn f(&self) -> Result<i32, E> { Ok(1) }");
    assert!(!method.contains("mod f"), "{method}");
}

/// An `async fn` is accepted by both attributes: its body becomes a future
/// typed as the function's result, run by the runtime's `_async` call and
/// awaited; its module's invalidations return futures.
#[test]
fn an_async_fn_expands_to_the_async_path() {
    let item = "pub async fn f<'a>(conn: &mut C, word: &'a str) -> Result<u8, E> { Ok(1) }";
    let cached = expand_str("lock", item);
    let cached_as = expand_as_str("table(\"t\")", item);
    for out in [&cached, &cached_as] {
        assert!(!out.contains("compile_error"), "{out}");
        for part in [
            "pub async fn f",
            "async_body :: < Result < u8 , E > , _ > (async",
            "_async (",
            ". await",
            "impl :: core :: future :: Future < Output = :: cacheops :: Result < () > > + :: core :: marker :: Send + use < >",
        ] {
            assert!(out.contains(part), "missing `{part}` in {out}");
        }
    }
    assert!(
        cached.contains("__cached_fn_async") && cached.contains("async move {"),
        "{cached}"
    );
    assert!(cached.contains("__invalidate_fn_async"), "{cached}");
    assert!(
        cached_as.contains("run_async") && cached_as.contains("(async {"),
        "{cached_as}"
    );
    assert!(cached_as.contains("invalidate_async"), "{cached_as}");
    let blocking = expand_as_str("table(\"t\")", "fn f(n: i32) -> Result<u8, E> { Ok(1) }");
    assert!(
        !blocking.contains("async") && !blocking.contains("await"),
        "{blocking}"
    );
}

/// An async function with an error keeps its module, whose stubbed
/// invalidations are futures too (so that `.await` on them adds no error).
#[test]
fn an_async_fn_with_an_error_keeps_a_future_stub() {
    let out = expand_as_str(
        "colour = 3",
        "async fn f(n: i32) -> Result<i32, E> { Ok(n) }",
    );
    assert_eq!(messages(&out).len(), 1, "{out}");
    assert!(
        out.contains("ready :: < :: cacheops :: Result < () >>"),
        "{out}"
    );
}
