// Lifetime parameters are accepted by both attributes, and their modules take them.

#[cacheops::cached(timeout = 5)]
fn cached_len<'a>(word: &'a str) -> cacheops::Result<usize> {
    Ok(word.len())
}

#[cacheops::cached_as(table("words"))]
fn cached_as_len<'a>(word: &'a str) -> cacheops::Result<usize> {
    Ok(word.len())
}

fn main() {
    // Compiles: not run against a store.
    let _: fn(&str) -> cacheops::Result<String> = cached_len::key;
    let _: fn(&str) -> cacheops::Result<cacheops::store::CacheKey> = cached_as_len::key;
    let _ = (cached_len as fn(&str) -> _, cached_as_len as fn(&str) -> _);
}
