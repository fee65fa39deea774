// The body of a cached `async fn` must be `Send` (its future is, for
// `tokio::spawn` and axum): one holding an `Rc` across an await is refused.
use std::rc::Rc;

#[cacheops::cached_as(table("things"))]
async fn not_send(n: i32) -> cacheops::Result<i32> {
    let shared = Rc::new(n);
    std::future::ready(()).await;
    Ok(*shared)
}

fn main() {}
