use cacheops::cached_as;

struct Opaque;

#[cached_as(table("things"))]
fn opaque(thing: Opaque) -> cacheops::Result<i32> {
    let _ = thing;
    Ok(1)
}

#[cached_as(table("things"))]
fn wrong_error(n: i32) -> Result<i32, std::fmt::Error> {
    Ok(n)
}

fn main() {}
