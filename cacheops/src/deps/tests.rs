//! Dependency extraction on SQL rendered by Diesel itself, plus hand-written shapes.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use diesel::dsl::{count_star, exists, max, not, sql};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::QueryFragment;
use diesel::sql_types::{Bool, Double, Integer, Text};
use diesel::sqlite::Sqlite;

use super::*;
use crate::backend::{encode_value, CacheBackend};
use crate::value::Equality;
use crate::ErrorKind;

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

use schema::{articles as a, categories as c, tags as t};

// ---- helpers ------------------------------------------------------------------

fn hex(value: &Value) -> String {
    match &value.bytes {
        None => "NULL".into(),
        Some(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// `table: col=hex & col=hex | ...; table: *` (`*`: any change, `none`: no row).
fn show(deps: &Deps) -> String {
    let conj = |c: &Conj| {
        c.0.iter()
            .map(|(k, v)| format!("{k}={}", hex(v)))
            .collect::<Vec<_>>()
            .join(" & ")
    };
    let table = |(name, d): &(Arc<str>, TableDeps)| match d {
        TableDeps::Any => format!("{name}: *"),
        TableDeps::Conjs(v) if v.is_empty() => format!("{name}: none"),
        TableDeps::Conjs(v) => format!(
            "{name}: {}",
            v.iter().map(conj).collect::<Vec<_>>().join(" | ")
        ),
    };
    deps.tables.iter().map(table).collect::<Vec<_>>().join("; ")
}

fn deps_of(sql: &str, dialect: Dialect, binds: &[Value], policy: &Policy<'_>) -> String {
    let template = Template::parse(sql, dialect).unwrap_or_else(|e| panic!("{sql}: {e}"));
    show(&template.instantiate(binds, policy))
}

fn pg_with<Q: QueryFragment<Pg>>(query: &Q, policy: &Policy<'_>) -> String {
    let rendered = <Pg as CacheBackend>::render(query).unwrap();
    deps_of(&rendered.sql, Dialect::Postgres, &rendered.binds, policy)
}

fn pg<Q: QueryFragment<Pg>>(query: &Q) -> String {
    pg_with(query, &Policy::default())
}

fn lite<Q: QueryFragment<Sqlite>>(query: &Q) -> String {
    let rendered = <Sqlite as CacheBackend>::render(query).unwrap();
    deps_of(
        &rendered.sql,
        Dialect::Sqlite,
        &rendered.binds,
        &Policy::default(),
    )
}

fn template_pg<Q: QueryFragment<Pg>>(query: &Q) -> Template {
    let rendered = <Pg as CacheBackend>::render(query).unwrap();
    Template::parse(&rendered.sql, Dialect::Postgres).unwrap()
}

/// Hex of PostgreSQL int4 `n`, as a bind of `col.eq(n)` serialises it.
fn i4(n: i32) -> String {
    hex(&encode_value::<Pg, Integer, i32>(&n).unwrap())
}

fn txt(s: &str) -> String {
    hex(&encode_value::<Pg, Text, str>(s).unwrap())
}

fn boolean(b: bool) -> String {
    hex(&encode_value::<Pg, Bool, bool>(&b).unwrap())
}

fn li(n: i32) -> String {
    hex(&encode_value::<Sqlite, Integer, i32>(&n).unwrap())
}

fn lt(s: &str) -> String {
    hex(&encode_value::<Sqlite, Text, str>(s).unwrap())
}

fn trust_all(_: &str, _: &str, _: &Value) -> bool {
    true
}

// ---- single table ---------------------------------------------------------------

#[test]
fn find_by_primary_key() {
    assert_eq!(pg(&a::table.find(4)), format!("articles: id={}", i4(4)));
}

#[test]
fn no_where_is_whole_table() {
    assert_eq!(pg(&a::table.select(a::id)), "articles: *");
    assert_eq!(lite(&c::table.select(c::name)), "categories: *");
}

#[test]
fn and_makes_one_conjunction_sorted_by_column() {
    let q = a::table.filter(a::published.eq(true).and(a::category_id.eq(3)));
    assert_eq!(
        pg(&q),
        format!(
            "articles: category_id={} & published={}",
            i4(3),
            boolean(true)
        )
    );
}

#[test]
fn chained_filters_are_and() {
    let q = a::table
        .filter(a::category_id.eq(3))
        .filter(a::title.eq("x"))
        .filter(a::published.eq(false));
    let expected = format!(
        "articles: category_id={} & published={} & title={}",
        i4(3),
        boolean(false),
        txt("x")
    );
    assert_eq!(pg(&q), expected);
}

#[test]
fn or_is_union() {
    let q = a::table.filter(a::id.eq(1).or(a::category_id.eq(2)));
    assert_eq!(
        pg(&q),
        format!("articles: category_id={} | id={}", i4(2), i4(1))
    );
}

#[test]
fn or_filter_chain_is_union() {
    let q = a::table
        .filter(a::id.eq(1))
        .or_filter(a::id.eq(2))
        .or_filter(a::title.eq("t"));
    assert_eq!(
        pg(&q),
        format!("articles: id={} | id={} | title={}", i4(1), i4(2), txt("t"))
    );
}

#[test]
fn and_over_or_distributes() {
    let q = a::table
        .filter(a::published.eq(true))
        .filter(a::id.eq(1).or(a::id.eq(2)));
    let (p, one, two) = (boolean(true), i4(1), i4(2));
    assert_eq!(
        pg(&q),
        format!("articles: id={one} & published={p} | id={two} & published={p}")
    );
}

#[test]
fn eq_any_vec_pg_is_union_of_array_elements() {
    let q = a::table.filter(a::id.eq_any(vec![3, 1, 2]));
    assert_eq!(
        pg(&q),
        format!("articles: id={} | id={} | id={}", i4(1), i4(2), i4(3))
    );
}

#[test]
fn eq_any_vec_sqlite_is_in_list() {
    let q = a::table.filter(a::id.eq_any(vec![2, 1]));
    assert_eq!(lite(&q), format!("articles: id={} | id={}", li(1), li(2)));
}

#[test]
fn eq_any_empty_reads_nothing() {
    let q = a::table.filter(a::id.eq_any(Vec::<i32>::new()));
    assert_eq!(pg(&q), "articles: none");
    assert_eq!(lite(&q), "articles: none"); // rendered as `1=0`
}

#[test]
fn eq_any_too_many_values_widens() {
    let q = a::table.filter(a::id.eq_any((0..40).collect::<Vec<i32>>()));
    assert_eq!(pg(&q), "articles: *");
    assert_eq!(lite(&q), "articles: *");
}

#[test]
fn eq_any_with_null_element_skips_it() {
    let q = a::table.filter(a::body.eq_any(vec![Some("a"), None]));
    assert_eq!(pg(&q), format!("articles: body={}", txt("a")));
}

#[test]
fn contradiction_reads_nothing() {
    let q = a::table.filter(a::id.eq(1)).filter(a::id.eq(2));
    assert_eq!(pg(&q), "articles: none");
    assert_eq!(lite(&q), "articles: none");
}

#[test]
fn repeated_equal_term_is_kept_once() {
    let q = a::table.filter(a::id.eq(1)).filter(a::id.eq(1));
    assert_eq!(pg(&q), format!("articles: id={}", i4(1)));
}

#[test]
fn contradiction_only_drops_its_own_conjunction() {
    let q = a::table
        .filter(a::id.eq(1))
        .filter(a::id.eq(2).or(a::title.eq("t")));
    assert_eq!(
        pg(&q),
        format!("articles: id={} & title={}", i4(1), txt("t"))
    );
}

#[test]
fn ranges_and_patterns_widen() {
    assert_eq!(pg(&a::table.filter(a::views.gt(10))), "articles: *");
    assert_eq!(pg(&a::table.filter(a::views.between(1, 5))), "articles: *");
    assert_eq!(pg(&a::table.filter(a::title.like("a%"))), "articles: *");
    assert_eq!(pg(&a::table.filter(a::title.ne("a"))), "articles: *");
    assert_eq!(
        lite(&a::table.filter(a::title.not_like("a%"))),
        "articles: *"
    );
}

#[test]
fn unknown_and_known_keeps_the_known_term() {
    let q = a::table
        .filter(a::views.gt(10))
        .filter(a::category_id.eq(5));
    assert_eq!(pg(&q), format!("articles: category_id={}", i4(5)));
}

#[test]
fn unknown_or_known_widens() {
    let q = a::table.filter(a::views.gt(10).or(a::category_id.eq(5)));
    assert_eq!(pg(&q), "articles: *");
}

#[test]
fn is_null_is_a_null_term() {
    let q = a::table
        .filter(a::body.is_null())
        .filter(a::category_id.eq(1));
    assert_eq!(
        pg(&q),
        format!("articles: body=NULL & category_id={}", i4(1))
    );
    assert_eq!(
        lite(&a::table.filter(a::body.is_null())),
        "articles: body=NULL"
    );
}

#[test]
fn is_null_and_a_value_contradict() {
    let q = a::table.filter(a::body.is_null()).filter(a::body.eq("x"));
    assert_eq!(pg(&q), "articles: none");
}

#[test]
fn is_not_null_widens_but_its_negation_is_null() {
    assert_eq!(pg(&a::table.filter(a::body.is_not_null())), "articles: *");
    assert_eq!(
        pg(&a::table.filter(not(a::body.is_not_null()))),
        "articles: body=NULL"
    );
}

#[test]
fn eq_null_bind_reads_nothing() {
    let q = a::table.filter(a::body.eq(None::<String>));
    assert_eq!(pg(&q), "articles: none");
}

#[test]
fn is_not_distinct_from_null_is_a_null_term() {
    let q = a::table.filter(a::body.is_not_distinct_from(None::<String>));
    assert_eq!(pg(&q), "articles: body=NULL");
    let q = a::table.filter(a::body.is_not_distinct_from(Some("b")));
    assert_eq!(pg(&q), format!("articles: body={}", txt("b")));
}

#[test]
fn not_widens() {
    assert_eq!(pg(&a::table.filter(not(a::id.eq(1)))), "articles: *");
    let mixed = not(a::id.eq_any(vec![1, 2]).and(a::body.is_not_null()));
    assert_eq!(pg(&a::table.filter(mixed.clone())), "articles: *");
    assert_eq!(lite(&a::table.filter(mixed)), "articles: *");
}

#[test]
fn not_of_not_equal_is_equal() {
    let q = a::table.filter(not(a::id.ne(7)));
    assert_eq!(pg(&q), format!("articles: id={}", i4(7)));
}

#[test]
fn not_of_or_pushes_down() {
    // NOT (id <> 1 OR title <> 't') = id = 1 AND title = 't'
    let q = a::table.filter(not(a::id.ne(1).or(a::title.ne("t"))));
    assert_eq!(
        pg(&q),
        format!("articles: id={} & title={}", i4(1), txt("t"))
    );
}

#[test]
fn not_in_widens() {
    let q = a::table.filter(a::id.ne_all(vec![1, 2]));
    assert_eq!(pg(&q), "articles: *");
    assert_eq!(lite(&q), "articles: *");
}

#[test]
fn bare_boolean_column_widens() {
    assert_eq!(pg(&a::table.filter(a::published)), "articles: *");
    assert_eq!(pg(&a::table.filter(not(a::published))), "articles: *");
    assert_eq!(
        pg(&a::table.filter(a::published.eq(false))),
        format!("articles: published={}", boolean(false))
    );
}

#[test]
fn raw_sql_literals_widen() {
    assert_eq!(
        pg(&a::table.filter(sql::<Bool>("\"articles\".\"id\" = 5"))),
        "articles: *"
    );
    assert_eq!(
        pg(&a::table.filter(sql::<Bool>("articles.title = 'x'"))),
        "articles: *"
    );
    let q = a::table
        .filter(sql::<Bool>("articles.views > 10"))
        .filter(a::id.eq(2));
    assert_eq!(pg(&q), format!("articles: id={}", i4(2)));
    assert_eq!(
        lite(&a::table.filter(sql::<Bool>("`articles`.`id` = 5"))),
        "articles: *"
    );
}

#[test]
fn raw_sql_with_a_bind_is_granular() {
    let q = a::table.filter(sql::<Bool>("articles.views = ").bind::<Integer, _>(9));
    assert_eq!(pg(&q), format!("articles: views={}", i4(9)));
}

#[test]
fn float_column_widens_by_default() {
    assert_eq!(pg(&a::table.filter(a::score.eq(1.5))), "articles: *");
    let trusting = Policy {
        column_is_exact: &trust_all,
        ..Policy::default()
    };
    let bytes = hex(&encode_value::<Pg, Double, f64>(&1.5).unwrap());
    assert_eq!(
        pg_with(&a::table.filter(a::score.eq(1.5)), &trusting),
        format!("articles: score={bytes}")
    );
}

#[test]
fn policy_can_veto_a_column() {
    let no_title =
        |_: &str, column: &str, v: &Value| column != "title" && v.equality == Equality::Exact;
    let policy = Policy {
        column_is_exact: &no_title,
        ..Policy::default()
    };
    let q = a::table.filter(a::title.eq("x")).filter(a::id.eq(1));
    assert_eq!(pg_with(&q, &policy), format!("articles: id={}", i4(1)));
    assert_eq!(
        pg_with(&a::table.filter(a::title.eq("x")), &policy),
        "articles: *"
    );
}

#[test]
fn policy_veto_of_one_array_element_widens() {
    let not_two = |_: &str, _: &str, v: &Value| hex(v) != i4(2);
    let policy = Policy {
        column_is_exact: &not_two,
        ..Policy::default()
    };
    assert_eq!(
        pg_with(&a::table.filter(a::id.eq_any(vec![1, 2])), &policy),
        "articles: *"
    );
}

#[test]
fn timestamps_are_granular_and_now_is_not() {
    use diesel::data_types::PgTimestamp;
    let q = a::table.filter(a::created_at.eq(PgTimestamp(0)));
    let bytes = hex(&encode_value::<Pg, diesel::sql_types::Timestamp, _>(&PgTimestamp(0)).unwrap());
    assert_eq!(pg(&q), format!("articles: created_at={bytes}"));
    assert_eq!(
        pg(&a::table.filter(a::created_at.lt(diesel::dsl::now))),
        "articles: *"
    );
}

// ---- shape of the query: aggregates, ordering, boxing --------------------------

#[test]
fn count_and_aggregates_narrow_like_the_where() {
    let expected = format!("articles: category_id={}", i4(3));
    assert_eq!(pg(&a::table.filter(a::category_id.eq(3)).count()), expected);
    assert_eq!(
        pg(&a::table.filter(a::category_id.eq(3)).select(max(a::views))),
        expected
    );
    assert_eq!(
        pg(&a::table.filter(a::category_id.eq(3)).select(count_star())),
        expected
    );
}

#[test]
fn order_limit_offset_distinct_do_not_narrow() {
    let q = a::table
        .filter(a::category_id.eq(3))
        .order(a::views.desc())
        .limit(5)
        .offset(10)
        .distinct();
    assert_eq!(pg(&q), format!("articles: category_id={}", i4(3)));
    let q = a::table
        .filter(a::category_id.eq(3))
        .order(a::views.desc())
        .limit(5)
        .offset(10);
    assert_eq!(lite(&q), format!("articles: category_id={}", li(3)));
}

#[test]
fn distinct_on_is_fine() {
    let q = a::table
        .filter(a::published.eq(true))
        .distinct_on(a::category_id)
        .order(a::category_id);
    assert_eq!(pg(&q), format!("articles: published={}", boolean(true)));
}

#[test]
fn group_by_having_does_not_narrow() {
    let q = a::table
        .filter(a::published.eq(true))
        .group_by(a::category_id)
        .select((a::category_id, diesel::dsl::count(a::id)))
        .having(diesel::dsl::count(a::id).gt(1));
    assert_eq!(pg(&q), format!("articles: published={}", boolean(true)));
}

#[test]
fn boxed_query_with_conditional_filters() {
    let mut q = a::table.into_boxed::<Pg>();
    for id in [1, 2] {
        q = q.or_filter(a::id.eq(id));
    }
    assert_eq!(
        pg(&q.filter(a::published.eq(true))),
        format!(
            "articles: id={0} & published={2} | id={1} & published={2}",
            i4(1),
            i4(2),
            boolean(true)
        )
    );
}

#[test]
fn for_update_is_fine() {
    let q = a::table.filter(a::id.eq(1)).for_update();
    assert_eq!(pg(&q), format!("articles: id={}", i4(1)));
}

// ---- joins ----------------------------------------------------------------------

#[test]
fn inner_join_propagates_from_the_joined_table() {
    let q = a::table
        .inner_join(c::table)
        .filter(c::id.eq(3))
        .select(a::id);
    assert_eq!(
        pg(&q),
        format!("articles: category_id={0}; categories: id={0}", i4(3))
    );
}

#[test]
fn inner_join_propagates_to_the_joined_table() {
    let q = a::table
        .inner_join(c::table)
        .filter(a::category_id.eq(3))
        .filter(c::name.eq("n"));
    assert_eq!(
        pg(&q),
        format!(
            "articles: category_id={0}; categories: id={0} & name={1}",
            i4(3),
            txt("n")
        )
    );
    assert_eq!(
        lite(&q),
        format!(
            "articles: category_id={0}; categories: id={0} & name={1}",
            li(3),
            lt("n")
        )
    );
}

#[test]
fn join_without_condition_on_a_table_widens_it() {
    let q = a::table.inner_join(c::table).filter(c::name.eq("n"));
    assert_eq!(
        pg(&q),
        format!("articles: *; categories: name={}", txt("n"))
    );
}

#[test]
fn join_propagation_detects_cross_table_contradiction() {
    let q = a::table
        .inner_join(c::table)
        .filter(c::id.eq(1))
        .filter(a::category_id.eq(2));
    assert_eq!(pg(&q), "articles: none; categories: none");
}

#[test]
fn join_equality_under_or_does_not_propagate() {
    let q = a::table
        .inner_join(c::table)
        .filter(c::id.eq(1).or(c::name.eq("n")));
    assert_eq!(
        pg(&q),
        format!("articles: *; categories: id={} | name={}", i4(1), txt("n"))
    );
}

#[test]
fn three_table_join() {
    let q = t::table
        .inner_join(a::table.inner_join(c::table))
        .filter(c::id.eq(2))
        .filter(t::label.eq("l"));
    let expected = format!(
        "articles: category_id={0}; categories: id={0}; tags: label={1}",
        i4(2),
        txt("l")
    );
    assert_eq!(pg(&q), expected);
}

#[test]
fn left_join_keeps_the_left_table_whole_for_on_terms() {
    let q = a::table.left_join(c::table).filter(a::published.eq(true));
    assert_eq!(
        pg(&q),
        format!("articles: published={}; categories: *", boolean(true))
    );
}

#[test]
fn left_join_right_side_is_narrowed_only_by_its_on() {
    // `WHERE categories.name IS NULL` is met by NULL-extended rows: it cannot narrow.
    let q = a::table
        .left_join(c::table)
        .filter(c::name.is_null())
        .filter(a::id.eq(1));
    assert_eq!(pg(&q), format!("articles: id={}; categories: *", i4(1)));
}

#[test]
fn left_join_with_null_rejecting_where_is_an_inner_join() {
    let q = a::table
        .left_join(c::table)
        .filter(c::id.eq(4))
        .select(a::id);
    assert_eq!(
        pg(&q),
        format!("articles: category_id={0}; categories: id={0}", i4(4))
    );
    assert_eq!(
        lite(&q),
        format!("articles: category_id={0}; categories: id={0}", li(4))
    );
}

#[test]
fn left_join_nullable_side_is_narrowed_through_on_by_the_preserved_sides_where() {
    let q = c::table.left_join(a::table).filter(c::id.eq(3));
    assert_eq!(
        pg(&q),
        format!("articles: category_id={0}; categories: id={0}", i4(3))
    );
    // A condition on the nullable side that NULL rows meet does not stop it.
    let q = c::table
        .left_join(a::table)
        .filter(c::id.eq(3))
        .filter(a::title.is_null());
    assert_eq!(
        lite(&q),
        format!("articles: category_id={0}; categories: id={0}", li(3))
    );
}

#[test]
fn left_join_widens_where_narrowing_is_not_sound() {
    // An OR across the sides is no condition on the preserved row alone.
    let q = c::table
        .left_join(a::table)
        .filter(c::id.eq(3).or(a::title.eq("x")));
    assert_eq!(pg(&q), "articles: *; categories: *");
    // FULL joins preserve both sides: nothing narrows.
    let sql = "SELECT * FROM categories FULL JOIN articles ON articles.category_id = categories.id WHERE categories.id = $1";
    assert_eq!(
        deps_of(
            sql,
            Dialect::Postgres,
            &[encode_value::<Pg, Integer, i32>(&3).unwrap()],
            &Policy::default()
        ),
        "articles: *; categories: *"
    );
    // Two levels: the second nullable side is joined to the first, not pinned.
    let sql = "SELECT * FROM categories LEFT JOIN articles ON articles.category_id = categories.id LEFT JOIN tags ON tags.article_id = articles.id WHERE categories.id = $1";
    assert_eq!(
        deps_of(
            sql,
            Dialect::Postgres,
            &[encode_value::<Pg, Integer, i32>(&3).unwrap()],
            &Policy::default()
        ),
        format!(
            "articles: category_id={0}; categories: id={0}; tags: *",
            i4(3)
        )
    );
}

#[test]
fn left_join_then_inner_join() {
    let q = a::table
        .left_join(c::table)
        .inner_join(t::table)
        .filter(a::id.eq(1))
        .select(a::id);
    assert_eq!(
        pg(&q),
        format!(
            "articles: id={0}; categories: *; tags: article_id={0}",
            i4(1)
        )
    );
}

#[test]
fn left_join_on_clause_narrows_the_right_side() {
    let sql = r#"SELECT "articles"."id" FROM "articles" LEFT JOIN "categories" ON "categories"."id" = "articles"."category_id" AND "categories"."name" = $1 WHERE "articles"."views" = $2"#;
    let binds = [
        encode_value::<Pg, Text, str>("n").unwrap(),
        encode_value::<Pg, Integer, i32>(&1).unwrap(),
    ];
    let expected = format!("articles: views={}; categories: name={}", i4(1), txt("n"));
    assert_eq!(
        deps_of(sql, Dialect::Postgres, &binds, &Policy::default()),
        expected
    );
}

#[test]
fn right_and_full_joins_widen() {
    let right = r#"SELECT 1 FROM "articles" RIGHT JOIN "categories" ON "categories"."id" = "articles"."category_id" WHERE "categories"."name" = $1"#;
    let binds = [encode_value::<Pg, Text, str>("n").unwrap()];
    let expected = format!("articles: *; categories: name={}", txt("n"));
    assert_eq!(
        deps_of(right, Dialect::Postgres, &binds, &Policy::default()),
        expected
    );
    let full = right.replace("RIGHT", "FULL");
    assert_eq!(
        deps_of(&full, Dialect::Postgres, &binds, &Policy::default()),
        "articles: *; categories: *"
    );
}

// ---- subqueries, EXISTS, set operations --------------------------------------------

#[test]
fn eq_any_subquery_widens_outer_and_analyses_inner() {
    let sub = c::table.select(c::id).filter(c::name.eq("x"));
    let q = a::table
        .filter(a::category_id.eq_any(sub))
        .filter(a::published.eq(true));
    assert_eq!(
        pg(&q),
        format!(
            "articles: published={}; categories: name={}",
            boolean(true),
            txt("x")
        )
    );
    assert_eq!(
        lite(&q),
        format!(
            "articles: published={}; categories: name={}",
            li_bool(true),
            lt("x")
        )
    );
}

fn li_bool(b: bool) -> String {
    hex(&encode_value::<Sqlite, Bool, bool>(&b).unwrap())
}

#[test]
fn subquery_tables_in_not_in_widen_outer() {
    let sub = c::table.select(c::id);
    let q = a::table
        .filter(a::category_id.ne_all(sub))
        .filter(a::id.eq(1));
    assert_eq!(pg(&q), format!("articles: id={}; categories: *", i4(1)));
}

#[test]
fn correlated_exists_widens_the_inner_table() {
    let q = a::table
        .filter(exists(t::table.filter(t::article_id.eq(a::id))))
        .select(a::id);
    assert_eq!(pg(&q), "articles: *; tags: *");
    let q = a::table.filter(not(exists(
        t::table
            .filter(t::article_id.eq(a::id))
            .filter(t::label.eq("l")),
    )));
    assert_eq!(pg(&q), format!("articles: *; tags: label={}", txt("l")));
}

#[test]
fn exists_in_the_select_list() {
    let q = a::table
        .select((a::id, exists(t::table.filter(t::label.eq("l")))))
        .filter(a::id.eq(3));
    assert_eq!(
        pg(&q),
        format!("articles: id={}; tags: label={}", i4(3), txt("l"))
    );
}

#[test]
fn scalar_subquery_in_the_select_list() {
    let name = c::table
        .select(c::name)
        .filter(c::id.eq(a::category_id))
        .single_value();
    let q = a::table.select((a::id, name)).filter(a::id.eq(1));
    assert_eq!(pg(&q), format!("articles: id={}; categories: *", i4(1)));
}

#[test]
fn union_analyses_each_branch() {
    let q = a::table
        .select(a::id)
        .filter(a::id.eq(1))
        .union(c::table.select(c::id).filter(c::name.eq("a")));
    assert_eq!(
        pg(&q),
        format!("articles: id={}; categories: name={}", i4(1), txt("a"))
    );
    // SQLite wraps each branch in a derived table.
    assert_eq!(
        lite(&q),
        format!("articles: id={}; categories: name={}", li(1), lt("a"))
    );
}

#[test]
fn union_of_the_same_table_is_the_union_of_branches() {
    let q = a::table
        .select(a::id)
        .filter(a::id.eq(1))
        .union_all(a::table.select(a::id).filter(a::views.gt(2)));
    assert_eq!(pg(&q), "articles: *");
    let q = a::table
        .select(a::id)
        .filter(a::id.eq(1))
        .except(a::table.select(a::id).filter(a::id.eq(2)));
    assert_eq!(pg(&q), format!("articles: id={} | id={}", i4(1), i4(2)));
}

// ---- the cap ----------------------------------------------------------------------

/// `(t.c0 = $1 OR t.c0 = $2) AND (t.c1 = $3 OR ...)`: 2^pairs conjunctions.
fn or_pairs(pairs: usize) -> (String, Vec<Value>) {
    let terms: Vec<String> = (0..pairs)
        .map(|i| format!("(t.c{i} = ${} OR t.c{i} = ${})", 2 * i + 1, 2 * i + 2))
        .collect();
    let binds = (0..2 * pairs as i32).collect::<Vec<_>>();
    (
        format!("SELECT * FROM t WHERE {}", terms.join(" AND ")),
        int_binds(&binds),
    )
}

#[test]
fn ten_and_ed_or_pairs_widen_quickly() {
    let (sql, binds) = or_pairs(10);
    let template = Template::parse(&sql, Dialect::Postgres).unwrap();
    let start = std::time::Instant::now();
    let deps = template.instantiate(&binds, &Policy::default());
    assert!(
        start.elapsed() < std::time::Duration::from_millis(50),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(show(&deps), "t: *");
    // Under the cap, the product is complete: 2^5 conjunctions of 5 terms.
    let (sql, binds) = or_pairs(5);
    let TableDeps::Conjs(conjs) = &Template::parse(&sql, Dialect::Postgres)
        .unwrap()
        .instantiate(&binds, &Policy::default())
        .tables[0]
        .1
    else {
        panic!("expected conjunctions");
    };
    assert_eq!(conjs.len(), 32);
    assert!(conjs.iter().all(|c| c.0.len() == 5));
}

#[test]
fn forty_and_ed_or_pairs_stay_fast() {
    let (sql, binds) = or_pairs(40);
    let template = Template::parse(&sql, Dialect::Postgres).unwrap();
    let start = std::time::Instant::now();
    assert_eq!(
        show(&template.instantiate(&binds, &Policy::default())),
        "t: *"
    );
    assert!(
        start.elapsed() < std::time::Duration::from_millis(50),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn diesel_or_pairs_on_seven_columns_widen() {
    use diesel::data_types::PgTimestamp;
    let q = a::table
        .filter(a::id.eq(1).or(a::id.eq(2)))
        .filter(a::category_id.eq(1).or(a::category_id.eq(2)))
        .filter(a::title.eq("a").or(a::title.eq("b")))
        .filter(a::published.eq(true).or(a::published.eq(false)))
        .filter(a::views.eq(1).or(a::views.eq(2)))
        .filter(a::body.eq("a").or(a::body.eq("b")))
        .filter(
            a::created_at
                .eq(PgTimestamp(0))
                .or(a::created_at.eq(PgTimestamp(1))),
        );
    assert_eq!(pg(&q), "articles: *");
}

#[test]
fn diesel_or_pairs_on_one_column_contradict() {
    // (id = i OR views = i) for i in 0..10: no row can meet all ten.
    let mut q = a::table.into_boxed::<Pg>();
    for i in 0..10 {
        q = q.filter(a::id.eq(i).or(a::views.eq(i)));
    }
    assert_eq!(pg(&q), "articles: none");
    // (category_id = i OR title = 't') for 40 values of i: title = 't' absorbs the rest.
    let mut q = a::table.into_boxed::<Sqlite>();
    for i in 0..40 {
        q = q.filter(a::category_id.eq(i).or(a::title.eq("t")));
    }
    assert_eq!(lite(&q), format!("articles: title={}", lt("t")));
}

#[test]
fn a_smaller_cap_widens_an_in_list() {
    let policy = Policy {
        max_conjunctions: 3,
        ..Policy::default()
    };
    assert_eq!(
        pg_with(&a::table.filter(a::id.eq_any(vec![1, 2, 3, 4])), &policy),
        "articles: *"
    );
    let expected = format!("articles: id={} | id={} | id={}", i4(1), i4(2), i4(3));
    assert_eq!(
        pg_with(&a::table.filter(a::id.eq_any(vec![1, 2, 3])), &policy),
        expected
    );
}

#[test]
fn cap_applies_per_table() {
    let policy = Policy {
        max_conjunctions: 2,
        ..Policy::default()
    };
    let q = a::table
        .inner_join(c::table)
        .filter(a::id.eq_any(vec![1, 2, 3]))
        .filter(c::name.eq("n"));
    assert_eq!(
        pg_with(&q, &policy),
        format!("articles: *; categories: name={}", txt("n"))
    );
}

// ---- templates: tables, main table, reuse, errors ------------------------------------------

#[test]
fn tables_and_main_table() {
    let sub = c::table.select(c::id).filter(c::name.eq("x"));
    let template = template_pg(
        &t::table
            .inner_join(a::table)
            .filter(a::category_id.eq_any(sub))
            .select(t::id),
    );
    let tables: Vec<&str> = template.tables().iter().map(|t| &**t).collect();
    assert_eq!(tables, ["articles", "categories", "tags"]);
    assert_eq!(template.main_table(), Some("tags"));
    let template = Template::parse("SELECT 1", Dialect::Postgres).unwrap();
    assert!(template.tables().is_empty());
    assert_eq!(template.main_table(), None);
}

#[test]
fn one_template_serves_many_binds() {
    let template = template_pg(&a::table.filter(a::id.eq(0)));
    for n in [5, 6] {
        let binds = [encode_value::<Pg, Integer, i32>(&n).unwrap()];
        assert_eq!(
            show(&template.instantiate(&binds, &Policy::default())),
            format!("articles: id={}", i4(n))
        );
    }
}

#[test]
fn missing_or_malformed_binds_widen_without_panicking() {
    let template = template_pg(&a::table.filter(a::id.eq(1)));
    assert_eq!(
        show(&template.instantiate(&[], &Policy::default())),
        "articles: *"
    );
    let template = template_pg(&a::table.filter(a::id.eq_any(vec![1])));
    let junk = Value {
        ty: 1007,
        equality: Equality::PgArray,
        bytes: Some(vec![0, 0, 0, 1, 0].into()),
    };
    assert_eq!(
        show(&template.instantiate(&[junk], &Policy::default())),
        "articles: *"
    );
}

#[test]
fn multi_dimensional_array_widens() {
    let template = Template::parse(
        r#"SELECT 1 FROM "articles" WHERE "articles"."id" = ANY($1)"#,
        Dialect::Postgres,
    )
    .unwrap();
    let mut bytes = vec![0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 23];
    bytes.extend([
        0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 9,
    ]);
    let array = Value {
        ty: 1007,
        equality: Equality::PgArray,
        bytes: Some(bytes.into()),
    };
    assert_eq!(
        show(&template.instantiate(&[array], &Policy::default())),
        "articles: *"
    );
}

#[test]
fn malformed_sql_is_an_sql_error() {
    for sql in [
        "SELECT FROM WHERE",
        "SELECT * FROM \"articles\" WHERE (",
        "",
        "SELEC 1",
        "SELECT 'unterminated",
    ] {
        let err = Template::parse(sql, Dialect::Postgres).expect_err(sql);
        assert_eq!(err.kind(), ErrorKind::Sql, "{sql}");
    }
}

#[test]
fn statements_other_than_queries_are_errors() {
    for sql in [
        "UPDATE articles SET views = 1",
        "DELETE FROM articles",
        "SELECT 1; SELECT 2",
    ] {
        assert_eq!(
            Template::parse(sql, Dialect::Sqlite).expect_err(sql).kind(),
            ErrorKind::Sql
        );
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let sql = format!(
        "SELECT 1 FROM t WHERE {}1 = 1{}",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    assert_eq!(
        Template::parse(&sql, Dialect::Postgres)
            .expect_err("deep")
            .kind(),
        ErrorKind::Sql
    );
}

#[test]
fn long_chains_cost_no_stack() {
    let long = format!(
        "SELECT 1 FROM t WHERE {}",
        vec!["t.a = $1"; 5000].join(" AND ")
    );
    assert_eq!(hand(&long, &[1]), format!("t: a={}", i4(1)));
    let union = vec!["SELECT 1 FROM t WHERE t.a = $1"; 5000].join(" UNION ");
    assert_eq!(hand(&union, &[1]), format!("t: a={}", i4(1)));
    let mut q = a::table.into_boxed::<Pg>();
    for i in 0..300 {
        q = q.filter(a::id.eq(i).or(a::views.gt(i)));
    }
    assert_eq!(pg(&q), "articles: *");
}

// ---- hand-written SQL -------------------------------------------------------------------

fn int_binds(values: &[i32]) -> Vec<Value> {
    values
        .iter()
        .map(|v| encode_value::<Pg, Integer, i32>(v).unwrap())
        .collect()
}

fn hand(sql: &str, values: &[i32]) -> String {
    deps_of(
        sql,
        Dialect::Postgres,
        &int_binds(values),
        &Policy::default(),
    )
}

#[test]
fn aliases_resolve_to_their_table() {
    let sql =
        "SELECT x.id FROM articles AS x JOIN categories c ON c.id = x.category_id WHERE c.id = $1";
    assert_eq!(
        hand(sql, &[7]),
        format!("articles: category_id={0}; categories: id={0}", i4(7))
    );
}

#[test]
fn schema_qualified_names_use_the_last_part() {
    let sql = "SELECT * FROM public.articles WHERE public.articles.id = $1 AND articles.views = $2";
    assert_eq!(
        hand(sql, &[1, 2]),
        format!("articles: id={} & views={}", i4(1), i4(2))
    );
    let template = Template::parse(sql, Dialect::Postgres).unwrap();
    assert_eq!(template.main_table(), Some("articles"));
}

#[test]
fn unquoted_names_fold_to_lower_case() {
    assert_eq!(
        hand("SELECT * FROM Articles WHERE ARTICLES.Id = $1", &[1]),
        format!("articles: id={}", i4(1))
    );
}

#[test]
fn unqualified_columns_resolve_with_a_single_table() {
    assert_eq!(
        hand("SELECT id FROM articles WHERE id = $1", &[1]),
        format!("articles: id={}", i4(1))
    );
    let sql = "SELECT 1 FROM articles, categories WHERE id = $1";
    assert_eq!(hand(sql, &[1]), "articles: *; categories: *");
    let sqlite = deps_of(
        "SELECT id FROM articles WHERE id IN (?, ?)",
        Dialect::Sqlite,
        &[],
        &Policy::default(),
    );
    assert_eq!(sqlite, "articles: *"); // binds missing: unknown
}

#[test]
fn sqlite_output_alias_is_not_a_column() {
    let binds = [encode_value::<Sqlite, Integer, i32>(&1).unwrap()];
    let sql = "SELECT views + 1 AS id FROM articles WHERE id = ?";
    assert_eq!(
        deps_of(sql, Dialect::Sqlite, &binds, &Policy::default()),
        "articles: *"
    );
}

#[test]
fn sqlite_placeholders_are_numbered_in_order() {
    let binds = [
        encode_value::<Sqlite, Integer, i32>(&1).unwrap(),
        encode_value::<Sqlite, Text, str>("x").unwrap(),
    ];
    let sql = "SELECT * FROM articles WHERE articles.id = ? AND articles.title = ?";
    assert_eq!(
        deps_of(sql, Dialect::Sqlite, &binds, &Policy::default()),
        format!("articles: id={} & title={}", li(1), lt("x"))
    );
}

#[test]
fn cte_name_is_not_a_table_and_its_body_is_analysed() {
    let sql = "WITH recent AS (SELECT * FROM articles WHERE articles.category_id = $1) \
               SELECT * FROM recent JOIN tags ON tags.article_id = recent.id WHERE recent.id = $2";
    assert_eq!(
        hand(sql, &[3, 4]),
        format!(
            "articles: category_id={}; tags: article_id={}",
            i4(3),
            i4(4)
        )
    );
    let template = Template::parse(sql, Dialect::Postgres).unwrap();
    assert_eq!(template.main_table(), Some("articles"));
}

#[test]
fn cte_shadowing_a_table_name_still_records_the_table() {
    let sql =
        "WITH articles AS (SELECT * FROM articles WHERE articles.id = $1) SELECT * FROM articles";
    assert_eq!(hand(sql, &[1]), format!("articles: id={}", i4(1)));
    let recursive = "WITH RECURSIVE tree AS (SELECT id FROM categories WHERE categories.id = $1 \
                     UNION ALL SELECT c.id FROM categories c JOIN tree ON c.id = tree.id) SELECT * FROM tree";
    assert_eq!(hand(recursive, &[1]), "categories: *");
    let template = Template::parse(recursive, Dialect::Postgres).unwrap();
    assert_eq!(template.main_table(), Some("categories"));
}

#[test]
fn derived_table_is_analysed_as_its_own_block() {
    let sql = "SELECT d.n FROM (SELECT count(*) AS n FROM articles WHERE articles.category_id = $1) AS d WHERE d.n = $2";
    assert_eq!(
        hand(sql, &[3, 0]),
        format!("articles: category_id={}", i4(3))
    );
}

#[test]
fn self_join_unions_both_occurrences() {
    let sql = "SELECT 1 FROM articles a1 JOIN articles a2 ON a2.category_id = a1.category_id WHERE a1.id = $1 AND a2.id = $2";
    assert_eq!(
        hand(sql, &[1, 2]),
        format!("articles: id={} | id={}", i4(1), i4(2))
    );
}

#[test]
fn literals_in_hand_written_sql_widen() {
    assert_eq!(
        hand("SELECT * FROM articles WHERE articles.id = 5", &[]),
        "articles: *"
    );
    assert_eq!(
        hand("SELECT * FROM articles WHERE articles.id IN (1, $1)", &[2]),
        "articles: *"
    );
    assert_eq!(
        hand(
            "SELECT * FROM articles WHERE 1 = 1 AND articles.id = $1",
            &[2]
        ),
        format!("articles: id={}", i4(2))
    );
    assert_eq!(
        hand(
            "SELECT * FROM articles WHERE articles.id = $1 AND false",
            &[2]
        ),
        "articles: none"
    );
}

#[test]
fn subquery_in_having_and_order_by_is_recorded() {
    let sql = "SELECT a.category_id FROM articles a GROUP BY a.category_id \
               HAVING count(*) > (SELECT count(*) FROM tags WHERE tags.label = $1) ORDER BY (SELECT 1 FROM categories LIMIT 1)";
    let binds = [encode_value::<Pg, Text, str>("l").unwrap()];
    let expected = format!("articles: *; categories: *; tags: label={}", txt("l"));
    assert_eq!(
        deps_of(sql, Dialect::Postgres, &binds, &Policy::default()),
        expected
    );
}

#[test]
fn subquery_in_function_arguments_and_case_is_recorded() {
    let sql = "SELECT coalesce((SELECT max(tags.id) FROM tags), 0), \
               CASE WHEN EXISTS (SELECT 1 FROM categories) THEN 1 END FROM articles";
    assert_eq!(hand(sql, &[]), "articles: *; categories: *; tags: *");
}

// ---- more Diesel shapes ------------------------------------------------------------

#[test]
fn diesel_alias_self_join() {
    let other = diesel::alias!(a as other);
    let q = a::table
        .inner_join(other.on(other.field(a::category_id).eq(a::category_id)))
        .filter(other.field(a::id).eq(5))
        .select(a::id);
    // One occurrence is narrowed (id = 5), the other is not: the union is the table.
    assert_eq!(pg(&q), "articles: *");
    let rendered = <Pg as CacheBackend>::render(&q).unwrap();
    assert!(
        rendered.sql.contains(r#""articles" AS "other""#),
        "{}",
        rendered.sql
    );
}

#[test]
fn explicit_on_clause_with_a_bind() {
    let q = a::table
        .inner_join(c::table.on(c::id.eq(a::category_id).and(c::name.eq("n"))))
        .filter(a::id.eq(1))
        .select(a::id);
    assert_eq!(
        pg(&q),
        format!("articles: id={}; categories: name={}", i4(1), txt("n"))
    );
}

#[test]
fn comparison_with_a_scalar_subquery() {
    let latest = a::table
        .select(max(a::id))
        .filter(a::category_id.eq(2))
        .single_value();
    let q = t::table
        .filter(t::article_id.nullable().eq(latest))
        .filter(t::label.eq("l"));
    assert_eq!(
        pg(&q),
        format!("articles: category_id={}; tags: label={}", i4(2), txt("l"))
    );
}

#[test]
fn case_when_in_the_select_list() {
    let label = diesel::dsl::case_when(a::views.gt(10), a::title).otherwise(a::title);
    let q = a::table.select((a::id, label)).filter(a::category_id.eq(1));
    assert_eq!(pg(&q), format!("articles: category_id={}", i4(1)));
}

#[test]
fn sqlite_shapes() {
    let cat = format!("articles: category_id={}", li(3));
    assert_eq!(lite(&a::table.filter(a::category_id.eq(3)).count()), cat);
    assert_eq!(
        lite(
            &a::table
                .filter(a::category_id.eq(3))
                .select(a::views)
                .distinct()
        ),
        cat
    );
    let grouped = a::table
        .filter(a::category_id.eq(3))
        .group_by(a::published)
        .select(a::published);
    assert_eq!(lite(&grouped), cat);
    let q = a::table
        .filter(a::id.eq(1).or(a::id.eq(2)))
        .filter(a::title.eq("t"));
    let expected = format!(
        "articles: id={} & title={t} | id={} & title={t}",
        li(1),
        li(2),
        t = lt("t")
    );
    assert_eq!(lite(&q), expected);
    let q = a::table
        .filter(exists(t::table.filter(t::label.eq("l"))))
        .select(a::id);
    assert_eq!(lite(&q), format!("articles: *; tags: label={}", lt("l")));
    assert_eq!(lite(&a::table.filter(not(a::id.eq(1)))), "articles: *");
    assert_eq!(
        lite(&a::table.filter(a::body.eq(None::<String>))),
        "articles: none"
    );
}

#[test]
fn templates_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Template>();
    shared::<Deps>();
}
