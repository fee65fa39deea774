//! Template fragments cached with minijinja, for every backend × store pair.
//!
//! The fragment body calls `body()`, a function that counts its calls: a hit is a
//! render that did not call it (and ran no SQL).

macro_rules! fragment_scenarios {
    ($name:ident, $blog:ident, $db:ty, $store:expr) => {
        mod $name {
            use std::sync::atomic::{AtomicUsize, Ordering};
            use std::sync::Arc;

            use crate::ctx::*;
            use crate::fixtures::$blog::*;
            use cacheops::{fragment, Sample};
            use diesel::prelude::*;
            use minijinja::{context, Environment};

            const PAGE: &str = "<ul>{% call cached_as(deps, timeout=600, extra=cat) %}\
                {{ body() }}{% for t in titles() %}<li>{{ t }}</li>{% endfor %}\
                {% endcall %}</ul>";

            struct Page {
                ctx: Ctx<$db>,
                env: Environment<'static>,
                bodies: Arc<AtomicUsize>,
            }

            impl Page {
                fn new(source: &str) -> Page {
                    let mut ctx = Ctx::new($store);
                    seed(&mut ctx.conn, 2, 3);
                    let mut env = Environment::new();
                    fragment::register(&mut env, &ctx.cache);
                    fragment::add_template(&mut env, "page.html", source).unwrap();
                    let bodies = Arc::new(AtomicUsize::new(0));
                    let seen = bodies.clone();
                    env.add_function("body", move || {
                        seen.fetch_add(1, Ordering::SeqCst);
                        String::new()
                    });
                    Page { ctx, env, bodies }
                }

                /// Renders category `cat`; titles are loaded lazily, from inside
                /// the fragment, so a hit runs no SQL. Returns (html, SQL count).
                fn render(&mut self, cat: i32) -> (String, usize) {
                    self.ctx.queries.take();
                    let deps = fragment::deps(
                        &self.ctx.cache,
                        &[Sample::query::<Backend, _>(in_category(cat))],
                    )
                    .unwrap();
                    let db = Arc::new(std::sync::Mutex::new(self.ctx.db.connect()));
                    let queries = self.ctx.queries.clone();
                    queries.instrument(&mut *db.lock().unwrap());
                    let load = move || -> Vec<String> {
                        let rows: Vec<Article> =
                            in_category(cat).load(&mut *db.lock().unwrap()).unwrap();
                        rows.into_iter().map(|a| a.title).collect()
                    };
                    let mut env = self.env.clone();
                    env.add_function("titles", load);
                    let template = env.get_template("page.html").unwrap();
                    let html = template.render(context! { deps, cat }).unwrap();
                    (html, self.ctx.queries.take())
                }

                fn bodies(&self) -> usize {
                    self.bodies.load(Ordering::SeqCst)
                }
            }

            #[test]
            fn second_render_does_not_call_the_body() {
                let mut page = Page::new(PAGE);
                let (first, n1) = page.render(1);
                let (second, n2) = page.render(1);
                assert_eq!(first, second);
                assert!(first.contains("<li>a1-0</li>"), "{first}");
                assert_eq!((page.bodies(), n1, n2), (1, 1, 0));
            }

            #[test]
            fn a_write_invalidates_the_fragment_of_its_category_only() {
                let mut page = Page::new(PAGE);
                page.render(1);
                page.render(2);
                let cache = page.ctx.cache.clone();
                cache
                    .insert::<Article, _, _>(&mut page.ctx.conn, &NewArticle::new(2, "fresh"))
                    .unwrap();
                let (one, n1) = page.render(1);
                assert_eq!((page.bodies(), n1), (2, 0), "category 1 stays cached");
                assert!(!one.contains("fresh"));
                let (two, n2) = page.render(2);
                assert_eq!((page.bodies(), n2), (3, 1));
                assert!(two.contains("<li>fresh</li>"), "{two}");
            }

            #[test]
            fn two_fragments_in_one_template_have_distinct_keys() {
                let source = "{% call cached(timeout=60) %}A{{ body() }}{% endcall %}|\
                              {% call cached(timeout=60) %}B{{ body() }}{% endcall %}";
                let mut page = Page::new(source);
                let (first, _) = page.render(1);
                let (second, _) = page.render(1);
                assert_eq!((first.as_str(), second.as_str()), ("A|B", "A|B"));
                assert_eq!(page.bodies(), 2, "each fragment rendered once");
            }

            #[test]
            fn a_model_dependency_is_invalidated_by_any_write_to_the_model() {
                let source = "{% call cached_as(cats) %}{{ body() }}{% endcall %}";
                let mut page = Page::new(source);
                let render = |page: &mut Page| {
                    let template = page.env.get_template("page.html").unwrap();
                    let cats = fragment::model::<Category>();
                    template.render(context! { cats }).unwrap()
                };
                render(&mut page);
                render(&mut page);
                assert_eq!(page.bodies(), 1);
                let cache = page.ctx.cache.clone();
                let new = categories::name.eq("c9");
                cache
                    .insert::<Category, _, _>(&mut page.ctx.conn, new)
                    .unwrap();
                render(&mut page);
                assert_eq!(page.bodies(), 2);
            }
        }
    };
}

fragment_scenarios!(pg_redis, pg, PgDb, StoreKind::Redis);
fragment_scenarios!(pg_memory, pg, PgDb, StoreKind::Memory);
fragment_scenarios!(sqlite_redis, sqlite, SqliteDb, StoreKind::Redis);
fragment_scenarios!(sqlite_memory, sqlite, SqliteDb, StoreKind::Memory);
