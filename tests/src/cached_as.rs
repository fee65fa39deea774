//! `cached_as`, as a function and as an attribute, for every backend × store pair.
//!
//! Hits are proven by counting runs of the cached closure (and the statements the
//! test's connection ran), never assumed.

macro_rules! cached_as_scenarios {
    ($name:ident, $blog:ident, $db:ty, $store:expr) => {
        mod $name {
            use std::cell::Cell;

            use crate::ctx::*;
            use crate::fixtures::$blog::*;
            use cacheops::{cached_as, Cacheops, Options, Sample};
            use diesel::prelude::*;

            type B = Backend;

            fn ctx() -> Ctx<$db> {
                let mut ctx = Ctx::new($store);
                seed(&mut ctx.conn, 3, 4);
                ctx
            }

            thread_local! {
                static RUNS: Cell<usize> = const { Cell::new(0) };
            }

            fn runs() -> usize {
                RUNS.with(Cell::get)
            }

            fn ran() {
                RUNS.with(|r| r.set(r.get() + 1));
            }

            fn titles_of(rows: Vec<Article>) -> Vec<String> {
                rows.into_iter().map(|a| a.title).collect()
            }

            /// Titles of category `cat`, cached as the category's query, keyed by
            /// `cat` and `extra`.
            fn titles(ctx: &mut Ctx<$db>, cat: i32, extra: i32) -> Vec<String> {
                let Ctx { conn, cache, .. } = ctx;
                let sample = Sample::query::<Backend, _>(in_category(cat));
                let options = Options::new().extra(&extra);
                cache
                    .cached_as(&[sample], "titles", &cat, &options, || {
                        ran();
                        Ok::<_, cacheops::Error>(titles_of(in_category(cat).load(conn)?))
                    })
                    .unwrap()
            }

            #[test]
            fn second_call_is_served_from_the_cache() {
                let mut ctx = ctx();
                let before = runs();
                ctx.queries.take();
                let a = titles(&mut ctx, 1, 0);
                let n1 = ctx.queries.take();
                let b = titles(&mut ctx, 1, 0);
                let n2 = ctx.queries.take();
                assert_eq!(a, b);
                assert_eq!(a.len(), 4);
                assert_eq!((runs() - before, n1, n2), (1, 1, 0));
                assert_eq!(ctx.cache.stats().hits, 1);
            }

            #[test]
            fn a_write_matching_the_query_sample_invalidates_granularly() {
                let mut ctx = ctx();
                let before = runs();
                titles(&mut ctx, 1, 0);
                titles(&mut ctx, 2, 0);
                let cache = ctx.cache.clone();
                cache
                    .insert::<Article, _, _>(&mut ctx.conn, &NewArticle::new(2, "fresh"))
                    .unwrap();
                titles(&mut ctx, 1, 0);
                assert_eq!(runs() - before, 2, "category 1 stays cached");
                let two = titles(&mut ctx, 2, 0);
                assert_eq!(runs() - before, 3, "category 2 is recomputed");
                assert!(two.contains(&"fresh".to_string()));
            }

            /// The title of one article, cached as that object.
            fn headline(ctx: &mut Ctx<$db>, article: &Article) -> String {
                let Ctx { conn, cache, .. } = ctx;
                let id = article.id;
                let sample = Sample::object::<Backend, _>(article);
                cache
                    .cached_as(&[sample], "headline", &id, &Options::new(), || {
                        ran();
                        let row: Article = articles::table.find(id).first(conn)?;
                        Ok::<_, cacheops::Error>(row.title)
                    })
                    .unwrap()
            }

            #[test]
            fn an_object_sample_is_invalidated_by_its_row_only() {
                let mut ctx = ctx();
                let rows: Vec<Article> = in_category(1).load(&mut ctx.conn).unwrap();
                let (mine, other) = (rows[0].clone(), rows[1].clone());
                let before = runs();
                headline(&mut ctx, &mine);
                let cache = ctx.cache.clone();
                let changed = Article {
                    title: "other".into(),
                    ..other
                };
                cache.save(&mut ctx.conn, &changed).unwrap();
                headline(&mut ctx, &mine);
                assert_eq!(runs() - before, 1, "another row's change leaves it cached");
                let renamed = Article {
                    title: "renamed".into(),
                    ..mine.clone()
                };
                cache.save(&mut ctx.conn, &renamed).unwrap();
                assert_eq!(headline(&mut ctx, &mine), "renamed");
                assert_eq!(runs() - before, 2);
            }

            /// How many categories there are, cached as the whole model.
            fn category_count(ctx: &mut Ctx<$db>) -> i64 {
                let Ctx { conn, cache, .. } = ctx;
                let sample = Sample::model::<Category>();
                cache
                    .cached_as(&[sample], "category_count", &(), &Options::new(), || {
                        ran();
                        Ok::<_, cacheops::Error>(categories::table.count().get_result(conn)?)
                    })
                    .unwrap()
            }

            #[test]
            fn a_model_sample_is_invalidated_by_any_write_to_its_table() {
                let mut ctx = ctx();
                let before = runs();
                assert_eq!(category_count(&mut ctx), 3);
                let cache = ctx.cache.clone();
                cache
                    .insert::<Article, _, _>(&mut ctx.conn, &NewArticle::new(1, "x"))
                    .unwrap();
                category_count(&mut ctx);
                assert_eq!(runs() - before, 1, "articles are not categories");
                let new = categories::name.eq("c4");
                cache.insert::<Category, _, _>(&mut ctx.conn, new).unwrap();
                assert_eq!(category_count(&mut ctx), 4);
                assert_eq!(runs() - before, 2);
            }

            #[test]
            fn different_arguments_or_extra_are_different_entries() {
                let mut ctx = ctx();
                let before = runs();
                for _ in 0..2 {
                    titles(&mut ctx, 1, 0);
                    titles(&mut ctx, 2, 0);
                    titles(&mut ctx, 1, 1);
                }
                assert_eq!(runs() - before, 3);
            }

            // One line: rustfmt re-indents a wrapped attribute inside `macro_rules!`.
            #[cached_as(in_category(cat), model(Category), extra = limit, backend = B, handle = h)]
            fn first_titles(
                h: &Cacheops,
                conn: &mut Conn,
                cat: i32,
                limit: i64,
            ) -> cacheops::Result<Vec<String>> {
                ran();
                let rows: Vec<Article> = in_category(cat).limit(limit).load(conn)?;
                Ok(titles_of(rows))
            }

            #[test]
            fn a_decorated_function_caches_and_has_key_and_invalidate() {
                let mut ctx = ctx();
                let before = runs();
                let cache = ctx.cache.clone();
                let a = first_titles(&cache, &mut ctx.conn, 1, 2).unwrap();
                let b = first_titles(&cache, &mut ctx.conn, 1, 2).unwrap();
                assert_eq!((a.len(), a == b, runs() - before), (2, true, 1));
                let key = first_titles::key(1, 2).unwrap();
                assert_eq!(key, first_titles::key(1, 2).unwrap());
                assert_ne!(key, first_titles::key(1, 3).unwrap());
                assert_ne!(key, first_titles::key(2, 2).unwrap());
                first_titles::invalidate_using(&cache, 1, 2).unwrap();
                first_titles(&cache, &mut ctx.conn, 1, 2).unwrap();
                assert_eq!(runs() - before, 2, "invalidate(args) dropped the entry");
                let new = categories::name.eq("c4");
                cache.insert::<Category, _, _>(&mut ctx.conn, new).unwrap();
                first_titles(&cache, &mut ctx.conn, 1, 2).unwrap();
                assert_eq!(runs() - before, 3, "the model sample invalidated it");
            }

            #[cached_as(object(article), backend = B, handle = cache, timeout = 60)]
            fn views_of(
                cache: &Cacheops,
                conn: &mut Conn,
                article: &Article,
            ) -> cacheops::Result<i32> {
                ran();
                let row: Article = articles::table.find(article.id).first(conn)?;
                Ok(row.views)
            }

            #[test]
            fn a_decorated_function_with_an_object_sample() {
                let mut ctx = ctx();
                let before = runs();
                let cache = ctx.cache.clone();
                let rows: Vec<Article> = in_category(3).load(&mut ctx.conn).unwrap();
                let art = rows[0].clone();
                views_of(&cache, &mut ctx.conn, &art).unwrap();
                views_of(&cache, &mut ctx.conn, &art).unwrap();
                assert_eq!(runs() - before, 1);
                let viewed = Article {
                    views: 7,
                    ..art.clone()
                };
                cache.save(&mut ctx.conn, &viewed).unwrap();
                assert_eq!(views_of(&cache, &mut ctx.conn, &art).unwrap(), 7);
                assert_eq!(runs() - before, 2);
            }

            #[test]
            fn stale_fill_is_refused_when_a_write_lands_during_the_computation() {
                let mut ctx = ctx();
                let (computed, wait_computed) = std::sync::mpsc::channel::<()>();
                let (write_done, wait_write) = std::sync::mpsc::channel::<()>();
                let wait_write = std::sync::Mutex::new(wait_write);
                let fired = std::sync::atomic::AtomicBool::new(false);
                ctx.cache.__set_fill_hook(Some(std::sync::Arc::new(move || {
                    if !fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        computed.send(()).unwrap();
                        wait_write.lock().unwrap().recv().unwrap();
                    }
                })));
                let mut reader_conn = ctx.db.connect();
                let reader_cache = ctx.cache.clone();
                let reader = std::thread::spawn(move || {
                    first_titles(&reader_cache, &mut reader_conn, 1, 100).unwrap()
                });
                wait_computed.recv().unwrap();
                let cache = ctx.cache.clone();
                cache
                    .insert::<Article, _, _>(&mut ctx.conn, &NewArticle::new(1, "during"))
                    .unwrap();
                write_done.send(()).unwrap();
                let stale = reader.join().unwrap();
                ctx.cache.__set_fill_hook(None);
                assert!(!stale.contains(&"during".to_string()));
                assert_eq!(ctx.cache.stats().refused_fills, 1);
                let before = runs();
                let fresh = first_titles(&cache, &mut ctx.conn, 1, 100).unwrap();
                assert_eq!(runs() - before, 1, "the stale result was not stored");
                assert!(fresh.contains(&"during".to_string()));
            }
        }
    };
}

cached_as_scenarios!(pg_redis, pg, PgDb, StoreKind::Redis);
cached_as_scenarios!(pg_memory, pg, PgDb, StoreKind::Memory);
cached_as_scenarios!(sqlite_redis, sqlite, SqliteDb, StoreKind::Redis);
cached_as_scenarios!(sqlite_memory, sqlite, SqliteDb, StoreKind::Memory);
