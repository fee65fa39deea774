diesel::table! { tags (id) { id -> Integer, name -> Text } }

#[derive(cacheops::Cacheable)]
#[diesel(table_name = tags)]
#[cacheops(app = "blog", opz = "all")]
struct Tag {
    id: i32,
    #[cacheops(exactly)]
    name: String,
}

fn main() {
    // The model still implements `Cacheable`: no error here.
    let _ = <Tag as cacheops::Cacheable>::INFO;
}
