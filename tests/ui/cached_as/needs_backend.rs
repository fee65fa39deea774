use cacheops::cached_as;

diesel::table! { articles (id) { id -> Integer } }

#[cached_as(articles::table, object(&n))]
fn needs_backend(n: i32) -> cacheops::Result<i32> {
    Ok(n)
}

fn main() {}
