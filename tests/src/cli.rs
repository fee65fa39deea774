//! `cacheops-cli`, driven in-process through the binary's own `cli` modules (included by path) against real
//! Redis and databases: each invalidate form invalidates what it says and nothing
//! else (checked by counting the statements cached queries run again), bad input
//! fails with status 2, stats show what the application counted, and the CLI's
//! row encoding equals the application's.

use crate::cacheops_cli::{parse_args, run, CliError};

use crate::ctx::{database_url, redis_url, PgDb, SqliteDb};

/// Runs the CLI with `args` and no environment; its stdout, or its error.
pub fn cli(args: &[&str]) -> Result<String, CliError> {
    let mut argv = vec!["cacheops-cli"];
    argv.extend_from_slice(args);
    let args = parse_args(argv)?;
    let mut out = Vec::new();
    run(&args, &|_| None, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A URL the CLI can reach the test's PostgreSQL schema with.
pub fn pg_url(db: &PgDb) -> String {
    let base = database_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-csearch_path%3D{}", db.schema)
}

pub fn sqlite_url(db: &SqliteDb) -> String {
    db.path.clone()
}

macro_rules! cli_tests {
    ($name:ident, $blog:ident, $db:ty, $url:path) => {
        mod $name {
            use super::*;
            use crate::ctx::*;
            use crate::fixtures::$blog::*;
            use cacheops::registry::ModelEntry;
            use cacheops::{CacheRow, Cacheable, CachedQueryDsl};
            use diesel::prelude::*;

            fn ctx() -> Ctx<$db> {
                let mut ctx = Ctx::new(StoreKind::Redis);
                seed(&mut ctx.conn, 2, 3);
                ctx.cache.publish_registry().unwrap();
                ctx
            }

            fn prefix(ctx: &Ctx<$db>) -> String {
                ctx.cache.config().prefix().to_string()
            }

            /// The CLI on the test's Redis prefix and database.
            fn run_cli(ctx: &Ctx<$db>, args: &[&str]) -> Result<String, CliError> {
                let (prefix, url, db) = (prefix(ctx), redis_url(), $url(&ctx.db));
                let mut all = vec![
                    "--redis-url",
                    &url,
                    "--prefix",
                    &prefix,
                    "--database-url",
                    &db,
                ];
                all.extend_from_slice(args);
                cli(&all)
            }

            /// The CLI without a database.
            fn run_cli_no_db(ctx: &Ctx<$db>, args: &[&str]) -> Result<String, CliError> {
                let (prefix, url) = (prefix(ctx), redis_url());
                let mut all = vec!["--redis-url", &url, "--prefix", &prefix];
                all.extend_from_slice(args);
                cli(&all)
            }

            /// Statements each probe ran: articles of category 1, of category 2, and
            /// all categories. 0 means served from the cache.
            fn probe(ctx: &mut Ctx<$db>) -> [usize; 3] {
                let (_, a) =
                    ctx.counted(|c, h| in_category(1).cache().using(h).load::<Article>(c).unwrap());
                let (_, b) =
                    ctx.counted(|c, h| in_category(2).cache().using(h).load::<Article>(c).unwrap());
                let (_, d) = ctx.counted(|c, h| {
                    categories::table
                        .order(categories::id)
                        .cache()
                        .using(h)
                        .load::<Category>(c)
                        .unwrap()
                });
                [a, b, d]
            }

            fn warm(ctx: &mut Ctx<$db>) {
                probe(ctx);
                assert_eq!(probe(ctx), [0, 0, 0]);
            }

            fn first_of(ctx: &mut Ctx<$db>, cat: i32) -> Article {
                articles::table
                    .filter(articles::category_id.eq(cat))
                    .order(articles::id)
                    .first(&mut ctx.conn)
                    .unwrap()
            }

            #[test]
            fn row_invalidation_hits_only_queries_matching_the_row() {
                let mut ctx = ctx();
                warm(&mut ctx);
                let id = first_of(&mut ctx, 1).id.to_string();
                let out = run_cli(&ctx, &["invalidate", &format!("blog.Article.{id}")]).unwrap();
                assert!(out.contains("invalidated blog.Article"), "{out}");
                assert_eq!(probe(&mut ctx), [1, 0, 0]);
            }

            #[test]
            fn model_app_and_all_invalidate_what_they_name() {
                let mut ctx = ctx();
                warm(&mut ctx);
                run_cli(&ctx, &["invalidate", "blog.Category"]).unwrap();
                assert_eq!(probe(&mut ctx), [0, 0, 1]);
                run_cli(&ctx, &["invalidate", "blog.article"]).unwrap();
                assert_eq!(probe(&mut ctx), [1, 1, 0]);
                run_cli(&ctx, &["invalidate", "blog"]).unwrap();
                assert_eq!(probe(&mut ctx), [1, 1, 1]);
                run_cli(&ctx, &["invalidate", "all"]).unwrap();
                assert_eq!(probe(&mut ctx), [1, 1, 1]);
            }

            #[test]
            fn all_leaves_other_prefixes_and_the_registry() {
                let ctx = ctx();
                let mut con = redis::Client::open(redis_url())
                    .unwrap()
                    .get_connection()
                    .unwrap();
                let other = format!("{}x:q:{}", prefix(&ctx), "0".repeat(32));
                redis::cmd("SET")
                    .arg(&other)
                    .arg("v")
                    .exec(&mut con)
                    .unwrap();
                run_cli(&ctx, &["invalidate", "all"]).unwrap();
                let left: bool = redis::cmd("EXISTS").arg(&other).query(&mut con).unwrap();
                redis::cmd("DEL").arg(&other).exec(&mut con).unwrap();
                assert!(left);
                assert!(run_cli(&ctx, &["invalidate", "blog.Article"]).is_ok());
            }

            #[test]
            fn row_without_database_needs_model_wide() {
                let mut ctx = ctx();
                warm(&mut ctx);
                let err = run_cli_no_db(&ctx, &["invalidate", "blog.Article.1"]).unwrap_err();
                assert_eq!(err.exit_code(), 2);
                assert!(err.message().contains("--model-wide"), "{err}");
                assert_eq!(probe(&mut ctx), [0, 0, 0]);
                run_cli_no_db(&ctx, &["invalidate", "--model-wide", "blog.Article.1"]).unwrap();
                assert_eq!(probe(&mut ctx), [1, 1, 0]);
                // A row the database does not have: its old state is unknown too.
                run_cli(&ctx, &["invalidate", "--model-wide", "blog.Article.999999"]).unwrap();
                assert_eq!(probe(&mut ctx), [1, 1, 0]);
            }

            #[test]
            fn bad_input_fails_with_a_message_and_invalidates_nothing() {
                let mut ctx = ctx();
                warm(&mut ctx);
                let cases: &[(&[&str], &str)] = &[
                    (&["invalidate", "blog.Nope"], "unknown model label"),
                    (&["invalidate", "shop"], "unknown app"),
                    // PostgreSQL refuses the cast; SQLite compares and finds nothing.
                    (
                        &["invalidate", "blog.Article.abc"],
                        "cannot read blog.Article abc|no row blog.Article.abc",
                    ),
                    (
                        &["invalidate", "blog.Article.1,2"],
                        "cannot read blog.Article 1,2|no row blog.Article.1,2",
                    ),
                    (&["invalidate", "blog.Article."], "malformed id"),
                    (&["invalidate", "blog.Article.999999"], "no row"),
                    (&["invalidate", "blog..3"], "malformed target"),
                ];
                for (args, expected) in cases {
                    let err = run_cli(&ctx, args).unwrap_err();
                    let found = expected.split('|').any(|e| err.message().contains(e));
                    assert!(found, "{args:?}: {err}");
                }
                assert_eq!(probe(&mut ctx), [0, 0, 0]);
                let err =
                    cli(&["--redis-url", "redis://127.0.0.1:1", "invalidate", "blog"]).unwrap_err();
                assert!(err.message().contains("cannot reach Redis"), "{err}");
                let err = cli(&[
                    "--redis-url",
                    &redis_url(),
                    "--prefix",
                    &prefix(&ctx),
                    "--database-url",
                    "postgres://nobody@127.0.0.1:1/x",
                    "invalidate",
                    "blog.Article.1",
                ])
                .unwrap_err();
                assert!(
                    err.message().contains("cannot connect to the database"),
                    "{err}"
                );
            }

            #[test]
            fn stats_show_counted_hits_and_memory() {
                let mut ctx = ctx();
                warm(&mut ctx);
                probe(&mut ctx);
                let mine = ctx.cache.model_stats();
                assert_eq!(mine["blog.Article"].hits, 4);
                assert_eq!(mine["blog.Category"].misses, 1);
                ctx.cache.publish_stats().unwrap();
                let out = run_cli(&ctx, &["stats"]).unwrap();
                let line = out.lines().find(|l| l.starts_with("blog.Article")).unwrap();
                let fields: Vec<&str> = line.split_whitespace().collect();
                assert_eq!(&fields[1..4], ["4", "2", "0"], "{out}");
                assert!(out.contains("cached values"), "{out}");
                assert!(out.contains("table articles stamps"), "{out}");
                assert!(run_cli(&ctx, &["stats", "--reset"])
                    .unwrap()
                    .contains("counters reset"));
                let out = run_cli(&ctx, &["stats"]).unwrap();
                let line = out.lines().find(|l| l.starts_with("blog.Article")).unwrap();
                assert_eq!(line.split_whitespace().nth(1), Some("0"), "{out}");
            }

            /// The CLI reads rows raw; its values must be the application's, or a
            /// granular invalidation from the CLI would silently miss.
            #[test]
            fn cli_row_encoding_equals_the_applications() {
                let mut ctx = ctx();
                let a = first_of(&mut ctx, 1);
                diesel::update(articles::table.find(a.id))
                    .set((
                        articles::body.eq(Some("x, \"y\"\n")),
                        articles::score.eq(1.25),
                        articles::published.eq(true),
                    ))
                    .execute(&mut ctx.conn)
                    .unwrap();
                let b = first_of(&mut ctx, 2);
                for article in [first_of(&mut ctx, 1), b] {
                    let app = CacheRow::<Backend>::row_values(&article).unwrap();
                    let entry = ModelEntry::of(Article::INFO);
                    let mut db =
                        crate::cacheops_cli::db::Database::connect(&$url(&ctx.db)).unwrap();
                    let id = article.id.to_string();
                    let cli = db.read_row(&entry, &[&id]).unwrap().unwrap();
                    assert_eq!(app.len(), cli.len());
                    for ((column, app), cli) in entry.columns.iter().zip(&app).zip(&cli) {
                        assert_eq!(app.bytes, cli.bytes, "{column}");
                        // Conjunction keys hold only the bytes; the type tag may differ
                        // (Diesel binds Varchar as text, the column says varchar), but
                        // the equality class must not.
                        if !app.is_null() {
                            assert_eq!(app.equality, cli.equality, "{column}");
                        }
                    }
                }
            }
        }
    };
}

cli_tests!(pg, pg, PgDb, pg_url);
cli_tests!(sqlite, sqlite, SqliteDb, sqlite_url);

/// Without any explicit call, a Redis handle publishes its models when it starts
/// and its counters within a second, including the last ones after it is dropped.
#[test]
fn a_redis_handle_publishes_registry_and_counters_by_itself() {
    use crate::ctx::{handle, unique, StoreKind};
    let prefix = unique("cli_publisher");
    let cache = handle(StoreKind::Redis, &prefix);
    cache.invalidate_table("articles").unwrap();
    cache.invalidate_table("articles").unwrap();
    drop(cache);
    let stats = || cli(&["--redis-url", &redis_url(), "--prefix", &prefix, "stats"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let line = loop {
        let out = stats().unwrap();
        let line = out
            .lines()
            .find(|l| l.starts_with("blog.Article"))
            .map(str::to_string);
        match line {
            Some(l) if l.split_whitespace().nth(3) == Some("2") => break l,
            _ if std::time::Instant::now() > deadline => panic!("not published: {out}"),
            _ => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    };
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>()[1..4],
        ["0", "0", "2"]
    );
    let mut con = redis::Client::open(redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys = [format!("{prefix}:models"), format!("{prefix}:stats")];
    redis::cmd("DEL").arg(&keys).exec(&mut con).unwrap();
}

/// `explain` names the per-column overrides the registry holds for its tables.
#[test]
fn explain_shows_column_overrides_from_the_registry() {
    use cacheops::registry::{models_key, ModelEntry};
    let prefix = crate::ctx::unique("cli_explain");
    let entry = ModelEntry {
        label: "shop.Item".into(),
        table: "items".into(),
        primary_key: vec!["id".into()],
        columns: vec!["id".into(), "name".into()],
        equality: vec!["by_type".into(), "inexact".into()],
        cacheops_version: String::new(),
    };
    let mut con = redis::Client::open(redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let key = models_key(&prefix);
    redis::cmd("HSET")
        .arg(&key)
        .arg(&entry.label)
        .arg(entry.encode().unwrap())
        .exec(&mut con)
        .unwrap();
    let sql = r#"SELECT * FROM "items" WHERE "items"."name" = $1"#;
    let out = cli(&[
        "--redis-url",
        &redis_url(),
        "--prefix",
        &prefix,
        "explain",
        sql,
    ]);
    redis::cmd("DEL").arg(&key).exec(&mut con).unwrap();
    let out = out.unwrap();
    assert!(out.contains("scheme (name): name = $1"), "{out}");
    assert!(
        out.contains("items.name is marked inexact in shop.Item: terms on it never narrow"),
        "{out}"
    );
}
