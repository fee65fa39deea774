//! The blog schema and models, generated once per backend by `blog!`.

/// Schema, models and seeding helpers of the blog, for one backend.
macro_rules! blog {
    ($backend:ty, uid: $uid_sql:ty => $uid:ty, $new_uid:expr) => {
        use diesel::prelude::*;
        use serde::{Deserialize, Serialize};

        pub mod schema {
            diesel::table! {
                categories (id) {
                    id -> Integer,
                    name -> Varchar,
                }
            }
            diesel::table! {
                articles (id) {
                    id -> Integer,
                    category_id -> Integer,
                    title -> Varchar,
                    published -> Bool,
                    views -> Integer,
                    body -> Nullable<Text>,
                    created_at -> Timestamp,
                    uid -> $uid_sql,
                    score -> Double,
                }
            }
            diesel::joinable!(articles -> categories (category_id));
            diesel::allow_tables_to_appear_in_same_query!(articles, categories);
        }

        pub use schema::{articles, categories};

        #[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, AsChangeset)]
        #[derive(Serialize, Deserialize, cacheops::Cacheable)]
        #[diesel(table_name = categories)]
        #[cacheops(app = "blog")]
        pub struct Category {
            pub id: i32,
            pub name: String,
        }

        #[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, AsChangeset)]
        #[derive(Serialize, Deserialize, cacheops::Cacheable)]
        #[diesel(table_name = articles, treat_none_as_null = true)]
        #[cacheops(app = "blog")]
        pub struct Article {
            pub id: i32,
            pub category_id: i32,
            pub title: String,
            pub published: bool,
            pub views: i32,
            pub body: Option<String>,
            pub created_at: chrono::NaiveDateTime,
            pub uid: $uid,
            pub score: f64,
        }

        #[derive(Debug, Clone, Insertable)]
        #[diesel(table_name = articles)]
        pub struct NewArticle {
            pub category_id: i32,
            pub title: String,
            pub published: bool,
            pub views: i32,
            pub body: Option<String>,
            pub uid: $uid,
        }

        impl NewArticle {
            /// A published article with no body and no views.
            pub fn new(category_id: i32, title: &str) -> NewArticle {
                NewArticle {
                    category_id,
                    title: title.to_string(),
                    published: true,
                    views: 0,
                    body: None,
                    uid: $new_uid,
                }
            }
        }

        /// Inserts `n` categories named `c1..cn` (ids 1..n) and `per` articles in
        /// each, titled `a<cat>-<i>`, the even ones published.
        pub fn seed(conn: &mut Conn, n: i32, per: i32) {
            let cats: Vec<_> = (1..=n).map(|i| categories::name.eq(format!("c{i}"))).collect();
            diesel::insert_into(categories::table).values(&cats).execute(conn).unwrap();
            let arts: Vec<NewArticle> = (1..=n)
                .flat_map(|c| (0..per).map(move |i| (c, i)))
                .map(|(c, i)| NewArticle {
                    published: i % 2 == 0,
                    ..NewArticle::new(c, &format!("a{c}-{i}"))
                })
                .collect();
            diesel::insert_into(articles::table).values(&arts).execute(conn).unwrap();
        }

        /// Articles of category `c`, by id: the query most scenarios cache.
        pub fn in_category(c: i32) -> articles::BoxedQuery<'static, $backend> {
            articles::table
                .filter(articles::category_id.eq(c))
                .order(articles::id)
                .into_boxed()
        }
    };
}

/// PostgreSQL: `uid` is a real UUID.
pub mod pg {
    pub type Conn = diesel::pg::PgConnection;
    pub type AsyncConn = diesel_async::AsyncPgConnection;
    pub type Backend = diesel::pg::Pg;
    blog!(diesel::pg::Pg, uid: diesel::sql_types::Uuid => uuid::Uuid, uuid::Uuid::new_v4());
}

/// SQLite: `uid` is text.
pub mod sqlite {
    pub type Conn = diesel::sqlite::SqliteConnection;
    pub type AsyncConn = diesel_async::sync_connection_wrapper::SyncConnectionWrapper<
        diesel::sqlite::SqliteConnection,
    >;
    pub type Backend = diesel::sqlite::Sqlite;
    blog!(diesel::sqlite::Sqlite, uid: diesel::sql_types::Text => String, uuid::Uuid::new_v4().to_string());
}
