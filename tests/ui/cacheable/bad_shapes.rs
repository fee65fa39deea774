diesel::table! { tags (id) { id -> Integer, name -> Text } }

#[derive(cacheops::Cacheable)]
#[diesel(table_name = tags)]
enum AnEnum {
    A,
}

#[derive(cacheops::Cacheable)]
#[diesel(table_name = tags)]
struct Tuple(i32, String);

#[derive(cacheops::Cacheable)]
#[diesel(table_name = tags)]
struct Generic<T> {
    id: i32,
    name: T,
}

#[derive(cacheops::Cacheable)]
#[diesel(table_name = tags)]
struct Embedded {
    id: i32,
    #[diesel(embed)]
    name: String,
}

fn main() {}
