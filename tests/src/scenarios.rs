//! Scenario bodies, written once and run for every backend × store pair, on
//! the blocking path (Diesel's connections) and on the async one
//! (diesel-async's, awaited on a tokio runtime).
//!
//! "Served from the cache" is always checked by counting the statements the
//! test's connection ran, never assumed.
//!
//! One body serves both paths: where they differ, it says so with the mode's
//! tokens. `$($as)?` is `async` on the async path (before a `fn` or a closure)
//! and `$(.$aw)?` is `.await` (after a call); `.cache()` on the async path is
//! [`AsyncCache::cache`], `cache_async()` under the blocking builder's name; a
//! write helper goes through `hw!`, which names its async twin.

use cacheops::{AsyncCachedQueryDsl, CachedAsync};
use diesel::query_builder::AsQuery;

/// `.cache()` for the async scenarios: the async builder under the name the
/// bodies use.
pub trait AsyncCache<C>: AsyncCachedQueryDsl<C> {
    fn cache(self) -> CachedAsync<'static, Self, C> {
        self.cache_async()
    }
}

impl<Q: AsQuery, C> AsyncCache<C> for Q {}

/// A write helper's call: as written on the blocking path (`[]`), its `_async`
/// twin awaited on the async one (`[await]`).
macro_rules! hw {
    ([], $($call:tt)*) => { $($call)* };
    ([await], $h:ident . insert $($rest:tt)*) => { $h.insert_async $($rest)* .await };
    ([await], $h:ident . save $($rest:tt)*) => { $h.save_async $($rest)* .await };
    ([await], $h:ident . update $($rest:tt)*) => { $h.update_async $($rest)* .await };
    ([await], $h:ident . delete $($rest:tt)*) => { $h.delete_async $($rest)* .await };
    ([await], $h:ident . write_returning $($rest:tt)*) => {
        $h.write_returning_async $($rest)* .await
    };
}

/// Items only the blocking path has (a scenario driven by threads).
macro_rules! blocking_only {
    ([], $($item:item)*) => { $($item)* };
    ([await], $($item:item)*) => {};
}

/// Instantiates every scenario for one backend (`$blog` fixtures, `$db`
/// database), one store and one path (see the module doc).
macro_rules! scenarios {
    ($name:ident, $blog:ident, $db:ty, $store:expr, $ctx:ident, [$($test:tt)*],
     [$($as:tt)?], [$($aw:tt)?], [$($dsl:tt)*], [$($run:tt)*], $connect:ident) => {
        mod $name {
            use crate::ctx::*;
            use crate::fixtures::$blog::*;
            use cacheops::{Ops, OptionalExtension};
            use diesel::dsl::{exists, max, not};
            use diesel::prelude::*;
            // Shadow the glob's: one `cache()` and one `RunQueryDsl` per path.
            #[allow(unused_imports)]
            use $($dsl)*;
            #[allow(unused_imports)]
            use $($run)*;

            $($as)? fn ctx() -> $ctx<$db> {
                $ctx::seeded($store, |c| seed(c, 3, 4))$(.$aw)?
            }

            $($as)? fn load_cat(ctx: &mut $ctx<$db>, c: i32) -> (Vec<Article>, usize) {
                ctx.counted($($as)? |conn, h| in_category(c).cache().using(h).load(conn)$(.$aw)?.unwrap())$(.$aw)?
            }

            $($as)? fn one(ctx: &mut $ctx<$db>, cat: i32) -> Article {
                let (rows, _) = load_cat(ctx, cat)$(.$aw)?;
                rows[0].clone()
            }

            $($as)? fn insert(ctx: &mut $ctx<$db>, new: NewArticle) -> Article {
                let (rows, _) =
                    ctx.counted($($as)? |conn, h| hw!([$($aw)?], h.insert::<Article, _, _>(conn, &new)).unwrap())$(.$aw)?;
                rows.into_iter().next().unwrap()
            }

            /// Caches each query, then returns how many statements reading them again ran.
            $($as)? fn cached_cats(ctx: &mut $ctx<$db>, cats: &[i32]) {
                for &c in cats {
                    load_cat(ctx, c)$(.$aw)?;
                }
            }

            /// How many statements reading each category ran.
            $($as)? fn counts(ctx: &mut $ctx<$db>, cats: &[i32]) -> Vec<usize> {
                let mut counts = Vec::new();
                for &c in cats {
                    counts.push(load_cat(ctx, c)$(.$aw)?.1);
                }
                counts
            }

            /// Statements a save or update by primary key runs outside a transaction:
            /// one on PostgreSQL; on SQLite BEGIN IMMEDIATE, the old row, the UPDATE, COMMIT.
            fn save_statements() -> usize {
                match <Backend as cacheops::CacheBackend>::DIALECT {
                    cacheops::Dialect::Postgres => 1,
                    cacheops::Dialect::Sqlite => 4,
                }
            }

            #[$($test)*]
            $($as)? fn second_fetch_is_served_from_cache() {
                let mut ctx = ctx()$(.$aw)?;
                let (first, n1) = load_cat(&mut ctx, 1)$(.$aw)?;
                let (second, n2) = load_cat(&mut ctx, 1)$(.$aw)?;
                assert_eq!((first.len(), n1, n2), (4, 1, 0));
                assert_eq!(first, second);
                assert_eq!(ctx.cache.stats().hits, 1);
            }

            #[$($test)*]
            $($as)? fn get_first_count_exists_and_aggregates_are_cached() {
                let mut ctx = ctx()$(.$aw)?;
                let id = one(&mut ctx, 2)$(.$aw)?.id;
                for _ in 0..2 {
                    let (row, n) = ctx.counted($($as)? |c, h| {
                        articles::table
                            .find(id)
                            .cache()
                            .using(h)
                            .get_result::<Article>(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?;
                    assert_eq!(row.id, id);
                    let (first, m) = ctx.counted($($as)? |c, h| {
                        articles::table
                            .order(articles::id.desc())
                            .cache()
                            .using(h)
                            .first::<Article>(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?;
                    assert_eq!(first.id, 12);
                    let (count, k) = ctx.counted($($as)? |c, h| {
                        articles::table
                            .filter(articles::category_id.eq(2))
                            .cache()
                            .using(h)
                            .count(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?;
                    assert_eq!(count, 4);
                    let (found, e) = ctx.counted($($as)? |c, h| {
                        articles::table
                            .filter(articles::title.eq("a3-1"))
                            .cache()
                            .using(h)
                            .exists(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?;
                    assert!(found);
                    let (top, a) = ctx.counted($($as)? |c, h| {
                        articles::table
                            .select(max(articles::id))
                            .cache()
                            .using(h)
                            .aggregate::<Option<i32>>(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?;
                    assert_eq!(top, Some(12));
                    let total = n + m + k + e + a;
                    assert!(total == 5 || total == 0, "5 statements, then none: {total}");
                }
                assert_eq!(ctx.cache.stats().hits, 5);
            }

            #[$($test)*]
            $($as)? fn not_found_is_cached_too() {
                let mut ctx = ctx()$(.$aw)?;
                for expected in [1, 0] {
                    let (row, n) = ctx.counted($($as)? |c, h| {
                        articles::table
                            .find(999)
                            .cache()
                            .using(h)
                            .get_result::<Article>(c)$(.$aw)?
                            .optional()
                            .unwrap()
                    })$(.$aw)?;
                    assert_eq!((row, n), (None, expected));
                }
                let mut conn = ctx.db.$connect()$(.$aw)?;
                let err = articles::table
                    .find(999)
                    .cache()
                    .using(&ctx.cache)
                    .get_result::<Article>(&mut conn)$(.$aw)?;
                assert!(matches!(
                    err.unwrap_err().as_diesel(),
                    Some(diesel::result::Error::NotFound)
                ));
            }

            #[$($test)*]
            $($as)? fn insert_invalidates_only_its_category() {
                let mut ctx = ctx()$(.$aw)?;
                cached_cats(&mut ctx, &[1, 2])$(.$aw)?;
                let new = insert(&mut ctx, NewArticle::new(1, "fresh"))$(.$aw)?;
                assert_eq!(load_cat(&mut ctx, 2)$(.$aw)?.1, 0);
                let (rows, n) = load_cat(&mut ctx, 1)$(.$aw)?;
                assert_eq!(n, 1);
                assert_eq!(rows.last(), Some(&new));
            }

            // diesel-async's SQLite (`SyncConnectionWrapper`) has no batch insert with
            // RETURNING: the async path checks it on PostgreSQL (`nonblocking.rs`).
            blocking_only! { [$($aw)?],
            #[$($test)*]
            $($as)? fn insert_many_invalidates_every_new_row() {
                let mut ctx = ctx()$(.$aw)?;
                cached_cats(&mut ctx, &[1, 2, 3])$(.$aw)?;
                let news = vec![NewArticle::new(1, "x"), NewArticle::new(3, "y")];
                let (rows, _) = ctx.counted($($as)? |c, h| hw!([$($aw)?], h.insert::<Article, _, _>(c, &news)).unwrap())$(.$aw)?;
                assert_eq!(rows.len(), 2);
                let counts = counts(&mut ctx, &[1, 2, 3])$(.$aw)?;
                assert_eq!(counts, vec![1, 0, 1]);
            }
            }

            #[$($test)*]
            $($as)? fn save_invalidates_old_and_new_state() {
                let mut ctx = ctx()$(.$aw)?;
                cached_cats(&mut ctx, &[1, 2, 3])$(.$aw)?;
                let mut moved = one(&mut ctx, 1)$(.$aw)?;
                moved.category_id = 2;
                let (saved, n) = ctx.counted($($as)? |c, h| hw!([$($aw)?], h.save(c, &moved)).unwrap())$(.$aw)?;
                assert_eq!((saved, n), (moved.clone(), save_statements()));
                assert_eq!(load_cat(&mut ctx, 3)$(.$aw)?.1, 0);
                let (cat1, n1) = load_cat(&mut ctx, 1)$(.$aw)?;
                let (cat2, n2) = load_cat(&mut ctx, 2)$(.$aw)?;
                assert_eq!((n1, n2), (1, 1));
                assert!(!cat1.contains(&moved) && cat2.contains(&moved));
            }

            #[$($test)*]
            $($as)? fn save_that_cannot_match_leaves_queries_cached() {
                let mut ctx = ctx()$(.$aw)?;
                cached_cats(&mut ctx, &[1, 2])$(.$aw)?;
                let mut article = one(&mut ctx, 1)$(.$aw)?;
                article.views += 10;
                ctx.counted($($as)? |c, h| hw!([$($aw)?], h.save(c, &article)).unwrap())$(.$aw)?;
                assert_eq!(load_cat(&mut ctx, 2)$(.$aw)?.1, 0);
                let (cat1, n) = load_cat(&mut ctx, 1)$(.$aw)?;
                assert_eq!(n, 1);
                assert!(cat1.contains(&article));
            }

            #[$($test)*]
            $($as)? fn update_by_primary_key_invalidates() {
                let mut ctx = ctx()$(.$aw)?;
                let id = one(&mut ctx, 3)$(.$aw)?.id;
                let find = $($as)? |ctx: &mut $ctx<$db>| {
                    ctx.counted($($as)? |c, h| {
                        articles::table
                            .find(id)
                            .cache()
                            .using(h)
                            .get_result::<Article>(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?
                };
                find(&mut ctx)$(.$aw)?;
                let (new, n) = ctx.counted($($as)? |c, h| {
                    hw!([$($aw)?], h.update::<Article, _, _, _>(c, id, articles::views.eq(100)))
                        .unwrap()
                })$(.$aw)?;
                assert_eq!(n, save_statements());
                let (row, n) = find(&mut ctx)$(.$aw)?;
                assert_eq!((row.views, n, new.views), (100, 1, 100));
            }

            #[$($test)*]
            $($as)? fn delete_invalidates_the_old_state() {
                let mut ctx = ctx()$(.$aw)?;
                cached_cats(&mut ctx, &[1, 2])$(.$aw)?;
                let gone = one(&mut ctx, 1)$(.$aw)?;
                let (deleted, _) = ctx.counted($($as)? |c, h| hw!([$($aw)?], h.delete(c, &gone)).unwrap())$(.$aw)?;
                assert_eq!(deleted.as_ref(), Some(&gone));
                assert_eq!(load_cat(&mut ctx, 2)$(.$aw)?.1, 0);
                let (cat1, n) = load_cat(&mut ctx, 1)$(.$aw)?;
                assert_eq!((cat1.len(), n), (3, 1));
            }

            #[$($test)*]
            $($as)? fn mass_delete_with_returning_invalidates_each_old_row() {
                let mut ctx = ctx()$(.$aw)?;
                cached_cats(&mut ctx, &[1, 2, 3])$(.$aw)?;
                let (gone, _) = ctx.counted($($as)? |c, h| {
                    let doomed = articles::table.filter(articles::title.like("a1-%"));
                    hw!([$($aw)?], h.write_returning::<Article, _, _>(c, diesel::delete(doomed)))
                        .unwrap()
                })$(.$aw)?;
                assert_eq!(gone.len(), 4);
                let counts = counts(&mut ctx, &[1, 2, 3])$(.$aw)?;
                assert_eq!(counts, vec![1, 0, 0]);
                assert!(load_cat(&mut ctx, 1)$(.$aw)?.0.is_empty());
            }

            #[$($test)*]
            $($as)? fn in_list_is_granular() {
                let mut ctx = ctx()$(.$aw)?;
                let q = $($as)? |ctx: &mut $ctx<$db>| {
                    ctx.counted($($as)? |c, h| {
                        articles::table
                            .filter(articles::category_id.eq_any(vec![1, 2]))
                            .cache()
                            .using(h)
                            .count(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?
                };
                assert_eq!(q(&mut ctx)$(.$aw)?, (8, 1));
                insert(&mut ctx, NewArticle::new(3, "elsewhere"))$(.$aw)?;
                assert_eq!(q(&mut ctx)$(.$aw)?, (8, 0));
                insert(&mut ctx, NewArticle::new(2, "inside"))$(.$aw)?;
                assert_eq!(q(&mut ctx)$(.$aw)?, (9, 1));
            }

            #[$($test)*]
            $($as)? fn or_is_granular() {
                let mut ctx = ctx()$(.$aw)?;
                let q = $($as)? |ctx: &mut $ctx<$db>| {
                    ctx.counted($($as)? |c, h| {
                        articles::table
                            .filter(articles::category_id.eq(1).or(articles::title.eq("x")))
                            .cache()
                            .using(h)
                            .count(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?
                };
                assert_eq!(q(&mut ctx)$(.$aw)?, (4, 1));
                insert(&mut ctx, NewArticle::new(2, "y"))$(.$aw)?;
                assert_eq!(q(&mut ctx)$(.$aw)?, (4, 0));
                insert(&mut ctx, NewArticle::new(3, "x"))$(.$aw)?;
                assert_eq!(q(&mut ctx)$(.$aw)?, (5, 1));
            }

            #[$($test)*]
            $($as)? fn is_null_is_granular_and_not_null_widens() {
                let mut ctx = ctx()$(.$aw)?;
                let null = $($as)? |ctx: &mut $ctx<$db>| {
                    ctx.counted($($as)? |c, h| {
                        articles::table
                            .filter(articles::body.is_null())
                            .cache()
                            .using(h)
                            .count(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?
                };
                let not_null = $($as)? |ctx: &mut $ctx<$db>| {
                    ctx.counted($($as)? |c, h| {
                        articles::table
                            .filter(articles::body.is_not_null())
                            .cache()
                            .using(h)
                            .count(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?
                };
                assert_eq!((null(&mut ctx)$(.$aw)?, not_null(&mut ctx)$(.$aw)?), ((12, 1), (0, 1)));
                insert(
                    &mut ctx,
                    NewArticle {
                        body: Some("text".into()),
                        ..NewArticle::new(1, "b")
                    },
                )$(.$aw)?;
                assert_eq!((null(&mut ctx)$(.$aw)?, not_null(&mut ctx)$(.$aw)?), ((12, 0), (1, 1)));
                insert(&mut ctx, NewArticle::new(1, "no body"))$(.$aw)?;
                assert_eq!(null(&mut ctx)$(.$aw)?, (13, 1));
            }

            #[$($test)*]
            $($as)? fn joins_propagate_equalities() {
                let mut ctx = ctx()$(.$aw)?;
                let q = $($as)? |ctx: &mut $ctx<$db>| {
                    ctx.counted($($as)? |c, h| {
                        articles::table
                            .inner_join(categories::table)
                            .filter(categories::id.eq(1))
                            .select((articles::title, categories::name))
                            .order(articles::id)
                            .cache()
                            .using(h)
                            .load::<(String, String)>(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?
                };
                assert_eq!(q(&mut ctx)$(.$aw)?.1, 1);
                let mut other = Category {
                    id: 2,
                    name: "renamed".into(),
                };
                ctx.counted($($as)? |c, h| hw!([$($aw)?], h.save(c, &other)).unwrap())$(.$aw)?;
                insert(&mut ctx, NewArticle::new(2, "elsewhere"))$(.$aw)?;
                assert_eq!(
                    q(&mut ctx)$(.$aw)?.1,
                    0,
                    "changes in category 2 cannot affect category 1"
                );
                insert(&mut ctx, NewArticle::new(1, "joined"))$(.$aw)?;
                let (rows, n) = q(&mut ctx)$(.$aw)?;
                assert_eq!((rows.len(), n), (5, 1));
                other.id = 1;
                ctx.counted($($as)? |c, h| hw!([$($aw)?], h.save(c, &other)).unwrap())$(.$aw)?;
                let (rows, n) = q(&mut ctx)$(.$aw)?;
                assert_eq!((rows[0].1.as_str(), n), ("renamed", 1));
            }

            #[$($test)*]
            $($as)? fn subquery_tables_are_dependencies() {
                let mut ctx = ctx()$(.$aw)?;
                let q = $($as)? |ctx: &mut $ctx<$db>| {
                    ctx.counted($($as)? |c, h| {
                        let named_c1 = categories::table
                            .filter(categories::name.eq("c1"))
                            .select(categories::id);
                        articles::table
                            .filter(articles::category_id.eq_any(named_c1))
                            .cache()
                            .using(h)
                            .count(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?
                };
                assert_eq!(q(&mut ctx)$(.$aw)?, (4, 1));
                let renamed = Category {
                    id: 3,
                    name: "c1".into(),
                };
                ctx.counted($($as)? |c, h| hw!([$($aw)?], h.save(c, &renamed)).unwrap())$(.$aw)?;
                assert_eq!(q(&mut ctx)$(.$aw)?, (8, 1));
            }

            #[$($test)*]
            $($as)? fn exists_subquery_tables_are_dependencies() {
                let mut ctx = ctx()$(.$aw)?;
                let q = $($as)? |ctx: &mut $ctx<$db>| {
                    ctx.counted($($as)? |c, h| {
                        let has_new = articles::table
                            .filter(articles::category_id.eq(categories::id))
                            .filter(articles::title.eq("new"));
                        categories::table
                            .filter(exists(has_new))
                            .select(categories::id)
                            .cache()
                            .using(h)
                            .load::<i32>(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?
                };
                assert_eq!(q(&mut ctx)$(.$aw)?, (vec![], 1));
                insert(&mut ctx, NewArticle::new(2, "new"))$(.$aw)?;
                assert_eq!(q(&mut ctx)$(.$aw)?, (vec![2], 1));
            }

            #[$($test)*]
            $($as)? fn distinct_group_by_limit_and_offset_are_cached_and_invalidated() {
                let mut ctx = ctx()$(.$aw)?;
                let grouped = $($as)? |ctx: &mut $ctx<$db>| {
                    ctx.counted($($as)? |c, h| {
                        articles::table
                            .filter(articles::published.eq(true))
                            .group_by(articles::category_id)
                            .select((articles::category_id, diesel::dsl::count_star()))
                            .order(articles::category_id)
                            .cache()
                            .using(h)
                            .load::<(i32, i64)>(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?
                };
                let page = $($as)? |ctx: &mut $ctx<$db>| {
                    ctx.counted($($as)? |c, h| {
                        articles::table
                            .select(articles::category_id)
                            .distinct()
                            .order(articles::category_id)
                            .limit(2)
                            .offset(1)
                            .cache()
                            .using(h)
                            .load::<i32>(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?
                };
                assert_eq!(grouped(&mut ctx)$(.$aw)?, (vec![(1, 2), (2, 2), (3, 2)], 1));
                assert_eq!(page(&mut ctx)$(.$aw)?, (vec![2, 3], 1));
                assert_eq!((grouped(&mut ctx)$(.$aw)?.1, page(&mut ctx)$(.$aw)?.1), (0, 0));
                insert(&mut ctx, NewArticle::new(2, "published"))$(.$aw)?;
                assert_eq!(grouped(&mut ctx)$(.$aw)?, (vec![(1, 2), (2, 3), (3, 2)], 1));
                assert_eq!(
                    page(&mut ctx)$(.$aw)?,
                    (vec![2, 3], 1),
                    "LIMIT/OFFSET do not narrow"
                );
            }

            #[$($test)*]
            $($as)? fn not_widens_to_the_table() {
                let mut ctx = ctx()$(.$aw)?;
                let q = $($as)? |ctx: &mut $ctx<$db>| {
                    ctx.counted($($as)? |c, h| {
                        articles::table
                            .filter(not(articles::category_id.eq(1)))
                            .cache()
                            .using(h)
                            .count(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?
                };
                assert_eq!(q(&mut ctx)$(.$aw)?, (8, 1));
                insert(&mut ctx, NewArticle::new(3, "any"))$(.$aw)?;
                assert_eq!(q(&mut ctx)$(.$aw)?, (9, 1));
            }

            #[$($test)*]
            $($as)? fn contradiction_is_untouched_by_rows_but_not_by_model_invalidation() {
                let mut ctx = ctx()$(.$aw)?;
                let q = $($as)? |ctx: &mut $ctx<$db>| {
                    ctx.counted($($as)? |c, h| {
                        articles::table
                            .filter(articles::id.eq(1))
                            .filter(articles::id.eq(2))
                            .cache()
                            .using(h)
                            .count(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?
                };
                assert_eq!(q(&mut ctx)$(.$aw)?, (0, 1));
                insert(&mut ctx, NewArticle::new(1, "any"))$(.$aw)?;
                assert_eq!(q(&mut ctx)$(.$aw)?, (0, 0));
                ctx.cache.invalidate_model::<Article>().unwrap();
                assert_eq!(q(&mut ctx)$(.$aw)?, (0, 1));
            }

            #[$($test)*]
            $($as)? fn in_lists_with_commas_do_not_collide() {
                let mut ctx = ctx()$(.$aw)?;
                for title in ["a", "b", "a, b"] {
                    insert(&mut ctx, NewArticle::new(1, title))$(.$aw)?;
                }
                let q = $($as)? |ctx: &mut $ctx<$db>, titles: Vec<&'static str>| {
                    ctx.counted($($as)? |c, h| {
                        articles::table
                            .filter(articles::title.eq_any(titles))
                            .select(articles::title)
                            .order(articles::title)
                            .cache()
                            .using(h)
                            .load::<String>(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?
                };
                for expected_queries in [1, 0] {
                    assert_eq!(
                        q(&mut ctx, vec!["a", "b"])$(.$aw)?,
                        (vec!["a".to_string(), "b".into()], expected_queries)
                    );
                    assert_eq!(
                        q(&mut ctx, vec!["a, b"])$(.$aw)?,
                        (vec!["a, b".to_string()], expected_queries)
                    );
                }
            }

            #[derive(Debug, PartialEq, Queryable, serde::Serialize, serde::Deserialize)]
            struct IdTitle {
                id: i32,
                title: String,
            }

            #[$($test)*]
            $($as)? fn another_result_type_never_reads_an_entry_of_the_old_shape() {
                let mut ctx = ctx()$(.$aw)?;
                let q = || {
                    articles::table
                        .filter(articles::id.eq(1))
                        .select((articles::id, articles::title))
                };
                let (tuple, n) =
                    ctx.counted($($as)? |c, h| q().cache().using(h).load::<(i32, String)>(c)$(.$aw)?.unwrap())$(.$aw)?;
                assert_eq!(n, 1);
                for expected in [1, 0] {
                    let (rows, n) =
                        ctx.counted($($as)? |c, h| q().cache().using(h).load::<IdTitle>(c)$(.$aw)?.unwrap())$(.$aw)?;
                    assert_eq!(
                        (rows[0].id, &rows[0].title, n),
                        (tuple[0].0, &tuple[0].1, expected)
                    );
                }
            }

            #[$($test)*]
            $($as)? fn inexact_columns_widen() {
                let mut ctx = ctx()$(.$aw)?;
                let q = $($as)? |ctx: &mut $ctx<$db>| {
                    ctx.counted($($as)? |c, h| {
                        articles::table
                            .filter(articles::score.eq(0.0))
                            .cache()
                            .using(h)
                            .count(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?
                };
                assert_eq!(q(&mut ctx)$(.$aw)?, (12, 1));
                insert(&mut ctx, NewArticle::new(2, "float"))$(.$aw)?;
                assert_eq!(
                    q(&mut ctx)$(.$aw)?,
                    (13, 1),
                    "a float condition depends on the whole table"
                );
            }

            #[$($test)*]
            $($as)? fn bypass_ops_and_disabled_config_go_to_the_database() {
                let mut ctx = ctx()$(.$aw)?;
                for _ in 0..2 {
                    assert_eq!(
                        ctx.counted($($as)? |c, h| in_category(1)
                            .cache()
                            .using(h)
                            .bypass()
                            .load::<Article>(c)$(.$aw)?
                            .unwrap())$(.$aw)?
                            .1,
                        1
                    );
                    let (_, n) = ctx.counted($($as)? |c, h| {
                        in_category(1)
                            .cache()
                            .using(h)
                            .ops(Ops::COUNT)
                            .load::<Article>(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?;
                    assert_eq!(n, 1);
                }
                let off = cacheops::Cacheops::new(
                    cacheops::Config::builder()
                        .url("memory://")
                        .enabled(false)
                        .build(),
                )
                .unwrap();
                for _ in 0..2 {
                    assert_eq!(
                        ctx.counted($($as)? |c, _| in_category(1)
                            .cache()
                            .using(&off)
                            .load::<Article>(c)$(.$aw)?
                            .unwrap())$(.$aw)?
                            .1,
                        1
                    );
                }
            }

            #[$($test)*]
            $($as)? fn per_call_timeout_expires() {
                let mut ctx = ctx()$(.$aw)?;
                let q = $($as)? |ctx: &mut $ctx<$db>| {
                    ctx.counted($($as)? |c, h| {
                        in_category(1)
                            .cache()
                            .using(h)
                            .timeout(std::time::Duration::from_secs(1))
                            .load::<Article>(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?
                    .1
                };
                assert_eq!((q(&mut ctx)$(.$aw)?, q(&mut ctx)$(.$aw)?), (1, 0));
                std::thread::sleep(std::time::Duration::from_millis(2100));
                assert_eq!(q(&mut ctx)$(.$aw)?, 1);
            }

            #[$($test)*]
            $($as)? fn model_without_profile_is_refused() {
                let mut ctx = ctx()$(.$aw)?;
                let bare =
                    cacheops::Cacheops::new(cacheops::Config::builder().url("memory://").build())
                        .unwrap();
                let err = in_category(1)
                    .cache()
                    .using(&bare)
                    .load::<Article>(&mut ctx.conn)$(.$aw)?
                    .unwrap_err();
                assert_eq!(err.kind(), cacheops::ErrorKind::NotCacheable);
                assert!(err.to_string().contains("blog.Article"), "{err}");
            }

            #[$($test)*]
            $($as)? fn writes_outside_helpers_need_manual_invalidation() {
                let mut ctx = ctx()$(.$aw)?;
                let old = one(&mut ctx, 1)$(.$aw)?;
                cached_cats(&mut ctx, &[1, 2])$(.$aw)?;
                diesel::update(articles::table.find(old.id))
                    .set(articles::category_id.eq(2))
                    .execute(&mut ctx.conn)$(.$aw)?
                    .unwrap();
                assert_eq!(
                    load_cat(&mut ctx, 1)$(.$aw)?.1,
                    0,
                    "a plain Diesel write does not invalidate by itself"
                );
                let new = articles::table
                    .find(old.id)
                    .first::<Article>(&mut ctx.conn)$(.$aw)?
                    .unwrap();
                ctx.cache
                    .invalidate_objs::<Backend, _>(&[old, new])
                    .unwrap();
                assert_eq!(
                    (load_cat(&mut ctx, 1)$(.$aw)?.0.len(), load_cat(&mut ctx, 2)$(.$aw)?.0.len()),
                    (3, 5)
                );
            }

            #[$($test)*]
            $($as)? fn invalidate_all_is_scoped_to_the_prefix() {
                let mut ctx = ctx()$(.$aw)?;
                let other = handle($store, &unique("cacheops_other"));
                let q = $($as)? |ctx: &mut $ctx<$db>| {
                    ctx.counted($($as)? |c, _| {
                        in_category(1)
                            .cache()
                            .using(&other)
                            .load::<Article>(c)$(.$aw)?
                            .unwrap()
                    })$(.$aw)?
                    .1
                };
                q(&mut ctx)$(.$aw)?;
                load_cat(&mut ctx, 1)$(.$aw)?;
                ctx.cache.invalidate_all().unwrap();
                assert_eq!(q(&mut ctx)$(.$aw)?, 0);
                assert_eq!(load_cat(&mut ctx, 1)$(.$aw)?.1, 1);
                other.invalidate_all().unwrap();
            }

            blocking_only! { [$($aw)?],
            #[$($test)*]
            $($as)? fn stale_fill_is_refused_when_a_write_lands_during_the_sql() {
                let mut ctx = ctx()$(.$aw)?;
                let (sql_done, wait_sql) = std::sync::mpsc::channel::<()>();
                let (write_done, wait_write) = std::sync::mpsc::channel::<()>();
                let wait_write = std::sync::Mutex::new(wait_write);
                let fired = std::sync::atomic::AtomicBool::new(false);
                ctx.cache.__set_fill_hook(Some(std::sync::Arc::new(move || {
                    if !fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        sql_done.send(()).unwrap();
                        wait_write.lock().unwrap().recv().unwrap();
                    }
                })));
                let mut reader_conn = ctx.db.$connect()$(.$aw)?;
                let reader_cache = ctx.cache.clone();
                let reader = std::thread::spawn(move || {
                    in_category(1)
                        .cache()
                        .using(&reader_cache)
                        .load::<Article>(&mut reader_conn)$(.$aw)?
                        .unwrap()
                });
                wait_sql.recv().unwrap();
                let new = insert(&mut ctx, NewArticle::new(1, "during the read"))$(.$aw)?;
                write_done.send(()).unwrap();
                let stale = reader.join().unwrap();
                ctx.cache.__set_fill_hook(None);
                assert!(
                    !stale.contains(&new),
                    "the reader's SQL ran before the write"
                );
                assert_eq!(ctx.cache.stats().refused_fills, 1);
                let (fresh, n) = load_cat(&mut ctx, 1)$(.$aw)?;
                assert_eq!(n, 1, "the stale result was not stored");
                assert!(fresh.contains(&new));
            }
            }
        }
    };
}

/// The blocking path of every scenario, per backend and store.
macro_rules! blocking_scenarios {
    ($name:ident, $blog:ident, $db:ty, $store:expr) => {
        scenarios!(
            $name,
            $blog,
            $db,
            $store,
            Ctx,
            [test],
            [],
            [],
            [cacheops::CachedQueryDsl],
            [diesel::RunQueryDsl],
            connect
        );
    };
}

/// The async path of every scenario, per backend and store: two worker
/// threads, as a service would run.
macro_rules! async_scenarios {
    ($name:ident, $blog:ident, $db:ty, $store:expr) => {
        scenarios!($name, $blog, $db, $store, AsyncCtx,
            [tokio::test(flavor = "multi_thread", worker_threads = 2)], [async], [await],
            [crate::scenarios::AsyncCache], [diesel_async::RunQueryDsl], connect_async);
    };
}

blocking_scenarios!(pg_redis, pg, PgDb, StoreKind::Redis);
blocking_scenarios!(pg_memory, pg, PgDb, StoreKind::Memory);
blocking_scenarios!(sqlite_redis, sqlite, SqliteDb, StoreKind::Redis);
blocking_scenarios!(sqlite_memory, sqlite, SqliteDb, StoreKind::Memory);
async_scenarios!(pg_redis_async, pg, PgDb, StoreKind::Redis);
async_scenarios!(pg_memory_async, pg, PgDb, StoreKind::Memory);
async_scenarios!(sqlite_redis_async, sqlite, SqliteDb, StoreKind::Redis);
async_scenarios!(sqlite_memory_async, sqlite, SqliteDb, StoreKind::Memory);
