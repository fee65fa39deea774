#[cacheops::cached(ttl = 5)]
fn unknown(n: i32) -> cacheops::Result<i32> {
    Ok(n)
}

#[cacheops::cached(lock = "yes")]
fn lock_not_a_bool(n: i32) -> cacheops::Result<i32> {
    Ok(n)
}

#[cacheops::cached(timeout)]
fn timeout_without_value(n: i32) -> cacheops::Result<i32> {
    Ok(n)
}

#[cacheops::cached(timeout = 5 extra = n)]
fn missing_comma(n: i32) -> cacheops::Result<i32> {
    Ok(n)
}

#[cacheops::cached(timeout = 5)]
struct NotAFunction;

// An async function with a bad option: one error, and its module (whose
// `invalidate` returns a future) still exists.
#[cacheops::cached(lock = 1)]
async fn asynchronous(n: i32) -> cacheops::Result<i32> {
    Ok(n)
}

fn main() {
    // The functions and their modules still exist: no error here.
    let _ = unknown(1);
    let _ = unknown::key(1);
    let _ = lock_not_a_bool::invalidate(1);
    let _ = asynchronous(1);
    let _ = asynchronous::key(1);
    let _ = async { asynchronous::invalidate(1).await };
}
