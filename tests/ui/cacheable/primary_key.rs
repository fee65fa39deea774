diesel::table! { tags (code) { code -> Text, name -> Text } }

// Diesel's default primary key is `id`.
#[derive(cacheops::Cacheable)]
#[diesel(table_name = tags)]
struct NoId {
    code: String,
    name: String,
}

#[derive(cacheops::Cacheable)]
#[diesel(table_name = tags, primary_key(code, slug))]
struct KeyNotAField {
    code: String,
    name: String,
}

fn main() {}
