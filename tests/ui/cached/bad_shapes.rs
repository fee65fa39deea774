struct Thing;

impl Thing {
    #[cacheops::cached]
    fn method(&self) -> cacheops::Result<i32> {
        Ok(1)
    }
}

#[cacheops::cached]
const fn constant(n: i32) -> cacheops::Result<i32> {
    Ok(n)
}

#[cacheops::cached]
fn generic<T: Clone>(t: T) -> cacheops::Result<i32> {
    let _ = t;
    Ok(1)
}

#[cacheops::cached]
fn pattern((a, b): (i32, i32), ref c: i32) -> cacheops::Result<i32> {
    Ok(a + b + c)
}

#[cacheops::cached]
fn opaque(n: impl Clone) -> cacheops::Result<i32> {
    let _ = n;
    Ok(1)
}

#[cacheops::cached]
fn no_return(n: i32) {
    let _ = n;
}

#[cacheops::cached]
fn not_a_result(n: i32) -> i32 {
    n
}

fn main() {
    // The functions and their modules still exist: no error here.
    let _ = constant::key(1);
    let _ = not_a_result::invalidate(1);
}
