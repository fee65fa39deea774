use cacheops::cached_as;

struct Thing;

impl Thing {
    #[cached_as(table("things"))]
    fn method(&self) -> cacheops::Result<i32> {
        Ok(1)
    }
}

#[cached_as(table("things"), colour = 3)]
async fn asynchronous(n: i32) -> cacheops::Result<i32> {
    Ok(n)
}

#[cached_as(table("things"), skip(missing))]
fn generic<T: Clone>((a, b): (i32, i32)) -> cacheops::Result<i32> {
    Ok(a + b)
}

#[cached_as(table("things"))]
fn no_result(n: i32) -> i32 {
    n
}

fn main() {
    // An async function with a bad option keeps its module; its invalidations
    // are futures.
    let _ = async { asynchronous::invalidate(1).await };
    let _ = asynchronous::key(1);
}
