// `async fn`s are accepted by both attributes: each stays async, its future is
// `Send`, and its module's invalidations return `Send` futures that borrow
// nothing.

#[cacheops::cached(timeout = 5, lock)]
async fn cached_len<'a>(word: &'a str) -> cacheops::Result<usize> {
    Ok(word.len())
}

#[cacheops::cached_as(table("words"), lock = true, handle = cache)]
async fn cached_as_len<'a>(cache: &cacheops::Cacheops, word: &'a str) -> cacheops::Result<usize> {
    if word.is_empty() {
        return Ok(0);
    }
    let n: usize = word.len().to_string().parse().map_err(|_| {
        cacheops::Error::new(cacheops::ErrorKind::Encode, "not a number")
    })?;
    Ok(n)
}

fn send<T: Send>(_: T) {}

fn main() {
    let config = cacheops::Config::builder().url("memory://").build();
    let cache = cacheops::Cacheops::new(config).unwrap();
    send(cached_len("a"));
    send(cached_as_len(&cache, "a"));
    let word = String::from("a");
    let invalidate = cached_len::invalidate(&word);
    let invalidate_as = cached_as_len::invalidate_using(&cache, &word);
    drop(word); // the futures borrow nothing
    send(invalidate);
    send(invalidate_as);
    send(cached_as_len::invalidate("a"));
    let _: fn(&str) -> cacheops::Result<String> = cached_len::key;
    let _: fn(&str) -> cacheops::Result<cacheops::store::CacheKey> = cached_as_len::key;
}
