diesel::table! { tags (id) { id -> Integer } }

#[derive(cacheops::Cacheable)]
#[diesel(table_name = tags)]
#[cacheops(ops = all)]
struct OpsNotAString {
    id: i32,
}

#[derive(cacheops::Cacheable)]
#[diesel(table_name = tags)]
#[cacheops(timeout = "600")]
struct TimeoutAString {
    id: i32,
}

#[derive(cacheops::Cacheable)]
#[diesel(table_name = tags)]
#[cacheops(timeout = -1)]
struct TimeoutNegative {
    id: i32,
}

#[derive(cacheops::Cacheable)]
#[diesel(table_name = tags)]
#[cacheops(timeout = 100000000000000000000)]
struct TimeoutTooLarge {
    id: i32,
}

#[derive(cacheops::Cacheable)]
#[diesel(table_name = tags)]
#[cacheops(app = blog, label = "blog.Tag")]
struct AppNotAString {
    id: i32,
}

fn main() {}
