//! What a new user writes on the first day: cacheops errors inside Diesel
//! transactions, the handle used beside the connection it came from, partial row
//! types on one table.

use crate::ctx::*;
use crate::fixtures::pg::*;
use cacheops::{CachedConnection, CachedQueryDsl};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

/// A partial row type of `articles`, beside the full `Article`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Queryable,
    Selectable,
    Identifiable,
    AsChangeset,
    Serialize,
    Deserialize,
    cacheops::Cacheable,
)]
#[diesel(table_name = articles)]
#[cacheops(app = "friction")]
pub struct ArticleTitle {
    pub id: i32,
    pub title: String,
}

fn setup() -> Ctx<PgDb> {
    let mut ctx: Ctx<PgDb> = Ctx::new(StoreKind::Redis);
    seed(&mut ctx.conn, 2, 3);
    ctx
}

/// `?` on a cacheops error inside `conn.transaction` with Diesel's error type,
/// keeping the database's error whole.
#[test]
fn cacheops_errors_convert_into_diesels_losslessly() {
    let mut ctx = setup();
    let cache = ctx.cache.clone();
    let failed = ctx
        .conn
        .transaction::<(), diesel::result::Error, _>(|conn| {
            let taken = (categories::id.eq(1), categories::name.eq("again"));
            let insert = diesel::insert_into(categories::table).values(taken);
            cache.write_returning::<Category, _, _>(conn, insert)?;
            Ok(())
        });
    let Err(diesel::result::Error::DatabaseError(kind, info)) = failed else {
        panic!("the database's own error: {failed:?}");
    };
    assert!(matches!(
        kind,
        diesel::result::DatabaseErrorKind::UniqueViolation
    ));
    assert_eq!(info.constraint_name(), Some("categories_pkey"));
    let missing: Result<Article, diesel::result::Error> = cache
        .update::<Article, _, _, _>(&mut ctx.conn, 999, articles::views.eq(1))
        .map_err(Into::into);
    assert!(matches!(missing, Err(diesel::result::Error::NotFound)));
}

/// `Cacheops::transaction` with `diesel::result::Error`, as `Connection::transaction`.
#[test]
fn cacheops_transactions_take_diesels_error_type() {
    let mut ctx = setup();
    let cache = ctx.cache.clone();
    let (before, _) = ctx.counted(|c, h| in_category(1).cache().using(h).load::<Article>(c));
    let mut first = before.unwrap()[0].clone();
    first.title = "in a transaction".into();
    let saved: QueryResult<Article> = cache.transaction(&mut ctx.conn, |conn| {
        let saved = cache.save(conn, &first)?;
        diesel::update(categories::table.find(1))
            .set(categories::name.eq("renamed"))
            .execute(conn)?;
        Ok(saved)
    });
    assert_eq!(saved.unwrap().title, "in a transaction");
    let (after, n) = ctx.counted(|c, h| in_category(1).cache().using(h).load::<Article>(c));
    assert_eq!(n, 1, "invalidated after COMMIT");
    assert_eq!(after.unwrap()[0].title, "in a transaction");
}

/// The handle of a `CachedConnection` is owned: the helpers and `.using` take it
/// beside the connection itself.
#[test]
fn the_handle_is_used_beside_its_connection() {
    let ctx = setup();
    let mut conn = CachedConnection::new(ctx.db.connect(), ctx.cache.clone());
    let new = NewArticle::new(1, "beside");
    let created: Vec<Article> = conn.cache().insert(&mut conn, &new).unwrap();
    let read = in_category(1)
        .cache()
        .using(&conn.cache())
        .load::<Article>(&mut conn);
    assert!(read.unwrap().contains(&created[0]));
}

/// A partial row type beside the full one: both registered, reads through either
/// cached, writes through the full one's helpers invalidate the partial reads,
/// and invalidating through the partial one (its row lacks `category_id`) widens
/// the conditions it cannot check to the whole table.
#[test]
fn several_row_types_share_one_table() {
    let mut ctx = setup();
    // `blog.Article` is registered twice: once per backend's fixtures.
    let mut labels: Vec<_> = cacheops::models_of_table("articles")
        .iter()
        .map(|m| m.label)
        .collect();
    labels.dedup();
    assert_eq!(labels, ["blog.Article", "friction.ArticleTitle"]);
    let (rows, _) = ctx.counted(|c, h| in_category(1).cache().using(h).load::<Article>(c));
    let mut first = rows.unwrap()[0].clone();
    let titles = |ctx: &mut Ctx<PgDb>| {
        ctx.counted(|c, h| {
            let q = articles::table
                .select(ArticleTitle::as_select())
                .filter(articles::id.eq(first.id));
            q.cache().using(h).load::<ArticleTitle>(c).unwrap()
        })
    };
    titles(&mut ctx);
    assert_eq!(titles(&mut ctx).1, 0, "the partial type's read is cached");
    first.title = "renamed".into();
    let cache = ctx.cache.clone();
    cache.save(&mut ctx.conn, &first).unwrap();
    let (seen, n) = titles(&mut ctx);
    assert_eq!((seen[0].title.as_str(), n), ("renamed", 1));
    let partial = ArticleTitle {
        id: first.id,
        title: first.title.clone(),
    };
    cache.invalidate_obj::<diesel::pg::Pg, _>(&partial).unwrap();
    let (_, n) = ctx.counted(|c, h| in_category(1).cache().using(h).load::<Article>(c));
    assert_eq!(n, 1, "a row without category_id invalidates queries on it");
}

pub mod conflicting {
    use serde::{Deserialize, Serialize};

    diesel::table! {
        drafts (id) {
            id -> Integer,
            body -> Text,
        }
    }

    #[derive(Debug, diesel::Queryable, Serialize, Deserialize, cacheops::Cacheable)]
    #[diesel(table_name = drafts)]
    #[cacheops(app = "friction", ops = "get", timeout = 60)]
    pub struct Draft {
        pub id: i32,
        pub body: String,
    }

    #[derive(Debug, diesel::Queryable, Serialize, Deserialize, cacheops::Cacheable)]
    #[diesel(table_name = drafts)]
    #[cacheops(app = "friction", ops = "all", timeout = 600)]
    pub struct DraftBody {
        pub id: i32,
        pub body: String,
    }
}

/// Two row types of one table with different profiles: refused, naming both.
#[test]
fn different_profiles_on_one_table_are_refused_by_name() {
    use conflicting::*;
    use diesel::connection::SimpleConnection;
    let mut ctx = setup();
    ctx.conn
        .batch_execute("CREATE TABLE drafts (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .unwrap();
    let (read, _) = ctx.counted(|c, h| drafts::table.cache().using(h).load::<Draft>(c));
    let message = read.unwrap_err().to_string();
    assert!(
        message.contains("friction.Draft") && message.contains("friction.DraftBody"),
        "{message}"
    );
}

/// `categories LEFT JOIN articles ... WHERE categories.id = $1`: a new article of
/// another category leaves the entry alone; one of this category invalidates it.
#[test]
fn left_join_narrows_the_nullable_side_through_on() {
    let mut ctx = setup();
    let cache = ctx.cache.clone();
    let read = |ctx: &mut Ctx<PgDb>| {
        ctx.counted(|c, h| {
            let q = categories::table
                .left_join(articles::table)
                .filter(categories::id.eq(1))
                .select((categories::id, articles::id.nullable()));
            q.cache()
                .using(h)
                .load::<(i32, Option<i32>)>(c)
                .unwrap()
                .len()
        })
    };
    assert_eq!(read(&mut ctx), (3, 1));
    cache
        .insert::<Article, _, _>(&mut ctx.conn, &NewArticle::new(2, "elsewhere"))
        .unwrap();
    assert_eq!(
        read(&mut ctx),
        (3, 0),
        "another category's article changes nothing"
    );
    cache
        .insert::<Article, _, _>(&mut ctx.conn, &NewArticle::new(1, "here"))
        .unwrap();
    assert_eq!(read(&mut ctx), (4, 1));
}
