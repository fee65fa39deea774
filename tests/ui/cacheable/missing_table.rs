// No `#[diesel(table_name = ..)]`: Diesel's default is `tags`, which is not
// declared here.
#[derive(cacheops::Cacheable)]
struct Tag {
    id: i32,
    name: String,
}

fn main() {}
