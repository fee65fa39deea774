use diesel::prelude::*;
use diesel::pg::Pg;
use diesel::sqlite::Sqlite;
use crate::backend::CacheBackend;
use crate::deps::*;
use crate::Dialect;

fn show(deps: &Deps) -> String {
    let conj = |c: &Conj| c.0.iter().map(|(k, v)| format!("{k}={}", v.bytes.as_ref().map_or("NULL".to_string(), |b| b.iter().map(|x| format!("{x:02x}")).collect()))).collect::<Vec<_>>().join(" & ");
    deps.tables.iter().map(|(t, d)| match d {
        TableDeps::Any => format!("{t}: *"),
        TableDeps::Conjs(v) if v.is_empty() => format!("{t}: none"),
        TableDeps::Conjs(v) => format!("{t}: {}", v.iter().map(conj).collect::<Vec<_>>().join(" | ")),
    }).collect::<Vec<_>>().join("; ")
}
fn p(r: crate::Rendered, d: Dialect) {
    let t = Template::parse(&r.sql, d);
    match t {
        Ok(t) => println!("{}\n   => {:?} main={:?} {}", r.sql, t.tables(), t.main_table(), show(&t.instantiate(&r.binds, &Policy::default()))),
        Err(e) => println!("{}\n   => ERR {e}", r.sql),
    }
}


mod schema {
    diesel::table! {
        categories (id) {
            id -> Int4,
            name -> Text,
        }
    }
    diesel::table! {
        articles (id) {
            id -> Int4,
            category_id -> Int4,
            title -> Text,
            published -> Bool,
            views -> Int4,
            body -> Nullable<Text>,
            created_at -> Timestamp,
            uid -> Uuid,
            score -> Double,
        }
    }
    diesel::table! {
        tags (id) {
            id -> Int4,
            article_id -> Int4,
            label -> Text,
        }
    }
    diesel::joinable!(articles -> categories (category_id));
    diesel::joinable!(tags -> articles (article_id));
    diesel::allow_tables_to_appear_in_same_query!(categories, articles, tags);
}
use schema::*;

#[test]
fn explore() {
    let q = articles::table.filter(articles::category_id.eq(3).and(articles::published.eq(true))).order(articles::id).limit(5);
    p(<Pg as CacheBackend>::render(&q).unwrap(), Dialect::Postgres);
    let q = articles::table.inner_join(categories::table).filter(categories::id.eq(3)).select(articles::id);
    p(<Pg as CacheBackend>::render(&q).unwrap(), Dialect::Postgres);
    let q = articles::table.left_join(categories::table).inner_join(tags::table).filter(categories::id.eq(3)).select(articles::id);
    p(<Pg as CacheBackend>::render(&q).unwrap(), Dialect::Postgres);
    let q = articles::table.filter(articles::id.eq_any(vec![1, 2])).select(articles::id);
    p(<Pg as CacheBackend>::render(&q).unwrap(), Dialect::Postgres);
    p(<Sqlite as CacheBackend>::render(&q).unwrap(), Dialect::Sqlite);
    let q = articles::table.filter(articles::id.eq_any(Vec::<i32>::new())).select(articles::id);
    p(<Pg as CacheBackend>::render(&q).unwrap(), Dialect::Postgres);
    p(<Sqlite as CacheBackend>::render(&q).unwrap(), Dialect::Sqlite);
    let q = articles::table.filter(articles::category_id.eq_any(categories::table.select(categories::id).filter(categories::name.eq("x")))).select(articles::id);
    p(<Pg as CacheBackend>::render(&q).unwrap(), Dialect::Postgres);
    p(<Sqlite as CacheBackend>::render(&q).unwrap(), Dialect::Sqlite);
    let q = articles::table.filter(diesel::dsl::exists(tags::table.filter(tags::article_id.eq(articles::id)))).select(articles::id);
    p(<Pg as CacheBackend>::render(&q).unwrap(), Dialect::Postgres);
    let q = articles::table.find(4);
    p(<Pg as CacheBackend>::render(&q).unwrap(), Dialect::Postgres);
    let q = articles::table.select(articles::id).union(categories::table.select(categories::id).filter(categories::name.eq("a")));
    p(<Pg as CacheBackend>::render(&q).unwrap(), Dialect::Postgres);
    p(<Sqlite as CacheBackend>::render(&q).unwrap(), Dialect::Sqlite);
    let q = articles::table.filter(articles::body.is_null()).filter(diesel::dsl::not(articles::published)).or_filter(articles::views.gt(3)).count();
    p(<Pg as CacheBackend>::render(&q).unwrap(), Dialect::Postgres);
    let q = articles::table.group_by(articles::category_id).select((articles::category_id, diesel::dsl::count(articles::id))).having(diesel::dsl::count(articles::id).gt(1)).distinct();
    p(<Pg as CacheBackend>::render(&q).unwrap(), Dialect::Postgres);
}
