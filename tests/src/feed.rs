//! The change feed (PostgreSQL): writes cacheops does not see (cascades,
//! triggers, bare connections, TRUNCATE) invalidate once the outbox is applied.
//! Each test first shows the entry served stale without the feed, then fresh.

use crate::ctx::*;
use crate::fixtures::pg::*;
use cacheops::{feed, CachedConnection, CachedQueryDsl};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;

/// A seeded schema with the feed installed, its outbox in the test's own schema
/// (tests run in parallel), and foreign keys that cascade.
fn setup() -> Ctx<PgDb> {
    let mut ctx: Ctx<PgDb> = Ctx::new(StoreKind::Redis);
    seed(&mut ctx.conn, 3, 3);
    ctx.conn
        .batch_execute(
            "ALTER TABLE articles DROP CONSTRAINT articles_category_id_fkey, \
             ADD FOREIGN KEY (category_id) REFERENCES categories (id) \
             ON DELETE CASCADE ON UPDATE CASCADE",
        )
        .unwrap();
    let plan = feed::install(&mut ctx.conn, &ctx.db.schema).unwrap();
    assert!(
        plan.tables.iter().any(|t| t.ends_with(".articles")),
        "{:?}",
        plan.tables
    );
    ctx
}

fn read(ctx: &mut Ctx<PgDb>, c: i32) -> (Vec<Article>, usize) {
    let (rows, n) = ctx.counted(|conn, h| in_category(c).cache().using(h).load::<Article>(conn));
    (rows.unwrap(), n)
}

fn apply(ctx: &mut Ctx<PgDb>) -> usize {
    let schema = ctx.db.schema.clone();
    let mut conn = ctx.db.connect();
    feed::apply_once(&mut conn, &ctx.cache, &schema).unwrap()
}

/// Waits (10 s at most, else fails with `what`) until `done`.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn outbox_len(ctx: &mut Ctx<PgDb>) -> i64 {
    let sql = format!("(SELECT count(*) FROM {}.outbox)", ctx.db.schema);
    diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&sql))
        .get_result(&mut ctx.conn)
        .unwrap()
}

#[test]
fn a_cascading_delete_invalidates_the_children_granularly() {
    let mut ctx = setup();
    read(&mut ctx, 1);
    read(&mut ctx, 2);
    let mut conn = CachedConnection::new(ctx.db.connect(), ctx.cache.clone());
    diesel::delete(categories::table.find(1))
        .execute(&mut conn)
        .unwrap();
    let (stale, n) = read(&mut ctx, 1);
    assert_eq!(
        (stale.len(), n),
        (3, 0),
        "the cascade is not seen without the feed"
    );
    assert_eq!(apply(&mut ctx), 4, "the category and its three articles");
    assert_eq!(read(&mut ctx, 1), (vec![], 1));
    assert_eq!(
        read(&mut ctx, 2).1,
        0,
        "another parent's children stay cached"
    );
    assert_eq!(outbox_len(&mut ctx), 0, "applied rows are deleted");
}

#[test]
fn a_cascading_update_invalidates_old_and_new_parents() {
    let mut ctx = setup();
    read(&mut ctx, 2);
    read(&mut ctx, 20);
    ctx.conn
        .batch_execute("UPDATE categories SET id = 20 WHERE id = 2")
        .unwrap();
    assert_eq!(read(&mut ctx, 2).0.len(), 3, "stale without the feed");
    apply(&mut ctx);
    assert_eq!(read(&mut ctx, 2), (vec![], 1));
    assert_eq!(read(&mut ctx, 20).0.len(), 3);
}

#[test]
fn bare_connections_truncate_and_writable_ctes_invalidate() {
    let mut ctx = setup();
    let (before, _) = read(&mut ctx, 1);
    ctx.conn
        .batch_execute(&format!(
            "UPDATE articles SET title = 'psql' WHERE id = {}",
            before[0].id
        ))
        .unwrap();
    assert_eq!(read(&mut ctx, 1).0, before, "stale without the feed");
    apply(&mut ctx);
    assert_eq!(read(&mut ctx, 1).0[0].title, "psql");
    ctx.conn
        .batch_execute("WITH x AS (UPDATE articles SET views = 9 WHERE category_id = 1 RETURNING *) SELECT count(*) FROM x")
        .unwrap();
    apply(&mut ctx);
    assert!(read(&mut ctx, 1).0.iter().all(|a| a.views == 9));
    ctx.conn.batch_execute("TRUNCATE articles").unwrap();
    assert_eq!(read(&mut ctx, 1).0.len(), 3, "stale without the feed");
    apply(&mut ctx);
    assert_eq!(read(&mut ctx, 1), (vec![], 1));
}

#[test]
fn a_trigger_maintained_table_invalidates() {
    let mut ctx = setup();
    ctx.conn
        .batch_execute(
            "UPDATE categories SET name = '0'; \
             CREATE FUNCTION count_article() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN UPDATE categories SET name = (name::int + 1)::text WHERE id = NEW.category_id; RETURN NULL; END $$; \
             CREATE TRIGGER count_article AFTER INSERT ON articles FOR EACH ROW EXECUTE FUNCTION count_article()",
        )
        .unwrap();
    apply(&mut ctx);
    let name = |ctx: &mut Ctx<PgDb>| {
        let (c, n) = ctx.counted(|conn, h| {
            categories::table
                .find(3)
                .cache()
                .using(h)
                .first::<Category>(conn)
        });
        (c.unwrap().name, n)
    };
    assert_eq!(name(&mut ctx).0, "0");
    let cache = ctx.cache.clone();
    cache
        .insert::<Article, _, _>(&mut ctx.conn, &NewArticle::new(3, "counted"))
        .unwrap();
    assert_eq!(
        name(&mut ctx),
        ("0".to_string(), 0),
        "the trigger's write is not seen"
    );
    apply(&mut ctx);
    assert_eq!(name(&mut ctx), ("1".to_string(), 1));
}

#[test]
fn a_stopped_consumer_catches_up_and_several_share_the_outbox() {
    let mut ctx = setup();
    read(&mut ctx, 1);
    let url = database_url_of(&ctx);
    let (schema, cache) = (ctx.db.schema.clone(), ctx.cache.clone());
    // Written while no consumer runs: the rows wait in the outbox.
    ctx.conn
        .batch_execute("UPDATE articles SET views = 5 WHERE category_id = 1")
        .unwrap();
    assert_eq!(outbox_len(&mut ctx), 3);
    assert!(
        read(&mut ctx, 1).0.iter().all(|a| a.views != 5),
        "stale until applied"
    );
    let feeds = [
        cache.start_change_feed(&url, &schema),
        cache.start_change_feed(&url, &schema),
    ];
    eventually("the consumers never caught up", || {
        outbox_len(&mut ctx) == 0
    });
    assert!(read(&mut ctx, 1).0.iter().all(|a| a.views == 5));
    for views in 6..30 {
        ctx.conn
            .batch_execute(&format!(
                "UPDATE articles SET views = {views} WHERE category_id = 1"
            ))
            .unwrap();
    }
    eventually("the consumers never caught up", || {
        outbox_len(&mut ctx) == 0
    });
    assert!(read(&mut ctx, 1).0.iter().all(|a| a.views == 29));
    drop(feeds);
}

/// The database URL of the test's schema, for a consumer's own connection.
fn database_url_of(ctx: &Ctx<PgDb>) -> String {
    crate::cli::pg_url(&ctx.db)
}

/// `cacheops-cli feed install --dry-run` prints the SQL for the models the
/// application registered in Redis, `install` runs it, `uninstall` removes it.
#[test]
fn the_cli_installs_and_removes_the_feed() {
    let ctx: Ctx<PgDb> = Ctx::new(StoreKind::Redis);
    // The CLI reads the models from Redis: publish them now, not within a second.
    ctx.cache.publish_registry().unwrap();
    let (url, prefix) = (
        database_url_of(&ctx),
        ctx.cache.config().prefix().to_string(),
    );
    let redis = redis_url();
    let feed = |args: &[&str]| {
        let mut all = vec![
            "--redis-url",
            &redis,
            "--prefix",
            &prefix,
            "--database-url",
            &url,
            "feed",
            "--schema",
        ];
        all.push(&ctx.db.schema);
        all.extend_from_slice(args);
        crate::cli::cli(&all)
    };
    let dry = feed(&["install", "--dry-run"]).unwrap();
    let on_articles = format!(
        "AFTER INSERT OR UPDATE OR DELETE ON {}.articles",
        ctx.db.schema
    );
    assert!(dry.contains(&on_articles), "{dry}");
    assert!(dry.contains("-- skipped counters: no such table"), "{dry}");
    let mut conn = ctx.db.connect();
    let outbox = |conn: &mut PgConnection| outbox_exists(conn, &ctx.db.schema);
    assert!(!outbox(&mut conn), "a dry run changes nothing");
    assert!(feed(&["install"])
        .unwrap()
        .contains("installed on 2 table(s)"));
    assert!(outbox(&mut conn));
    feed(&["uninstall"]).unwrap();
    assert!(!outbox(&mut conn));
    let no_db = crate::cli::cli(&["--redis-url", &redis, "--prefix", &prefix, "feed", "run"]);
    assert!(no_db
        .unwrap_err()
        .message()
        .contains("needs a --database-url"));
}

/// Outbox rows recorded before the table changed shape no longer read as its
/// rows: the consumer widens to the whole table, and never drops them unapplied.
#[test]
fn rows_of_an_older_table_shape_widen_to_the_table() {
    let mut ctx = setup();
    read(&mut ctx, 1);
    read(&mut ctx, 2);
    ctx.conn
        .batch_execute("UPDATE articles SET views = 3 WHERE category_id = 1")
        .unwrap();
    ctx.conn
        .batch_execute("ALTER TABLE articles ADD COLUMN extra INT")
        .unwrap();
    assert_eq!(apply(&mut ctx), 3);
    assert!(read(&mut ctx, 1).0.iter().all(|a| a.views == 3));
    assert_eq!(read(&mut ctx, 2).1, 1, "the whole table was invalidated");
}

/// `ConfigBuilder::change_feed`: the handle runs its consumer, which ends once
/// every clone of the handle is gone.
#[test]
fn a_configured_feed_runs_with_its_handle_and_ends_with_it() {
    use cacheops::{Cacheops, Config, Ops, Profile};
    let mut ctx = setup();
    let all = Profile::new(Ops::ALL, std::time::Duration::from_secs(60));
    let config = Config::builder()
        .url(redis_url())
        .prefix(unique("cacheops_feed_cfg"))
        .profile("*.*", all)
        .change_feed(database_url_of(&ctx), ctx.db.schema.clone())
        .build();
    let handle = Cacheops::new(config).unwrap();
    let read = |ctx: &mut Ctx<PgDb>, h: &Cacheops| {
        in_category(1)
            .cache()
            .using(h)
            .load::<Article>(&mut ctx.conn)
            .unwrap()
    };
    read(&mut ctx, &handle);
    ctx.conn
        .batch_execute("UPDATE articles SET views = 77 WHERE category_id = 1")
        .unwrap();
    eventually("the configured consumer never applied it", || {
        read(&mut ctx, &handle).iter().all(|a| a.views == 77)
    });
    let _ = handle.invalidate_all();
    drop(handle);
    // The consumer sees the handle gone within its wait (a second at most).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    ctx.conn
        .batch_execute("UPDATE articles SET views = 78 WHERE category_id = 1")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(outbox_len(&mut ctx), 3, "no consumer is left");
}

/// A model's column the table lacks (renamed or dropped): the installer names
/// it and installs nothing, the CLI exits with it, a dry run prints both.
#[test]
fn a_renamed_column_stops_the_install_with_its_name() {
    let mut ctx: Ctx<PgDb> = Ctx::new(StoreKind::Redis);
    ctx.conn
        .batch_execute("ALTER TABLE articles RENAME COLUMN title TO headline")
        .unwrap();
    let err = feed::install(&mut ctx.conn, &ctx.db.schema).unwrap_err();
    assert_eq!(err.kind(), cacheops::ErrorKind::Config);
    let message = err.to_string();
    assert!(
        message.contains("column `title` of model blog.Article is not in the table"),
        "{message}"
    );
    assert!(
        !outbox_exists(&mut ctx.conn, &ctx.db.schema),
        "nothing was installed"
    );
}

/// An outbox of another version: `feed install` refuses it, a consumer stops at
/// once with the reason and claims nothing; its rows stay for the right consumer.
#[test]
fn an_outbox_of_another_version_is_refused_and_kept() {
    let mut ctx = setup();
    ctx.conn
        .batch_execute(&format!(
            "UPDATE articles SET views = 9 WHERE category_id = 1; \
             COMMENT ON TABLE {}.outbox IS 'cacheops change feed, outbox version 0'",
            ctx.db.schema
        ))
        .unwrap();
    let problems = feed::plan(&mut ctx.conn, &ctx.db.schema).unwrap().problems;
    assert!(
        problems[0].contains("another version of cacheops"),
        "{problems:?}"
    );
    assert!(feed::install(&mut ctx.conn, &ctx.db.schema).is_err());
    let never = std::sync::atomic::AtomicBool::new(false);
    let url = database_url_of(&ctx);
    let err = feed::run(&ctx.cache, &url, &ctx.db.schema, &never).unwrap_err();
    assert_eq!(err.kind(), cacheops::ErrorKind::Config);
    assert!(err.to_string().contains("outbox version 0"), "{err}");
    let consumer = ctx.cache.start_change_feed(&url, &ctx.db.schema);
    eventually("the consumer goes on with a foreign outbox", || {
        consumer.has_ended()
    });
    assert!(consumer.stop().is_err());
    let (redis, prefix) = (redis_url(), ctx.cache.config().prefix().to_string());
    let args = [
        "--redis-url",
        &redis,
        "--prefix",
        &prefix,
        "--database-url",
        &url,
    ];
    let schema = ["feed", "--schema", &ctx.db.schema, "run"];
    let cli = crate::cli::cli(&[&args[..], &schema[..]].concat()).unwrap_err();
    assert!(
        cli.message().contains("another version"),
        "{}",
        cli.message()
    );
    assert_eq!(outbox_len(&mut ctx), 3, "no row was claimed");
}

/// Triggers capture whole rows: a table without a primary key is fed like any.
#[test]
fn a_table_without_a_primary_key_is_fed() {
    let mut ctx = setup();
    ctx.conn
        .batch_execute("ALTER TABLE categories DROP CONSTRAINT categories_pkey CASCADE")
        .unwrap();
    let names = |ctx: &mut Ctx<PgDb>| {
        let (rows, n) = ctx.counted(|conn, h| {
            categories::table
                .filter(categories::id.eq(2))
                .cache()
                .using(h)
                .load::<Category>(conn)
        });
        (rows.unwrap()[0].name.clone(), n)
    };
    let before = names(&mut ctx).0;
    let mut bare = ctx.db.connect();
    bare.batch_execute("UPDATE categories SET name = 'renamed' WHERE id = 2")
        .unwrap();
    assert_eq!(names(&mut ctx), (before, 0), "stale without the feed");
    assert_eq!(apply(&mut ctx), 1);
    assert_eq!(names(&mut ctx).0, "renamed");
}

fn outbox_exists(conn: &mut PgConnection, schema: &str) -> bool {
    let sql = format!("(SELECT to_regclass('{schema}.outbox') IS NOT NULL)");
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&sql))
        .get_result(conn)
        .unwrap()
}

/// The same feed on SQLite: another connection (or process) writing the file,
/// cascades and triggers; the consumer polls.
mod on_sqlite {
    use super::eventually;
    use crate::ctx::*;
    use crate::fixtures::sqlite::*;
    use cacheops::{feed, CachedConnection, CachedQueryDsl};
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;

    /// Foreign keys on (SQLite's are off per connection by default).
    fn connect(ctx: &Ctx<SqliteDb>) -> SqliteConnection {
        let mut conn = ctx.db.connect();
        conn.batch_execute("PRAGMA foreign_keys = ON").unwrap();
        conn
    }

    /// Seeded, with articles cascading from categories, and the feed installed.
    fn setup() -> Ctx<SqliteDb> {
        let mut ctx: Ctx<SqliteDb> = Ctx::new(StoreKind::Redis);
        ctx.conn
            .batch_execute(
                "PRAGMA foreign_keys = ON; \
                 CREATE TABLE articles_new (id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, \
                 category_id INTEGER NOT NULL REFERENCES categories (id) ON DELETE CASCADE, \
                 title VARCHAR(200) NOT NULL, published BOOLEAN NOT NULL DEFAULT 0, \
                 views INTEGER NOT NULL DEFAULT 0, body TEXT, \
                 created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, uid TEXT NOT NULL, \
                 score DOUBLE NOT NULL DEFAULT 0); \
                 DROP TABLE articles; ALTER TABLE articles_new RENAME TO articles;",
            )
            .unwrap();
        seed(&mut ctx.conn, 3, 3);
        let plan = feed::install(&mut ctx.conn, feed::DEFAULT_SCHEMA).unwrap();
        assert_eq!(plan.tables, ["articles", "categories"], "{plan:?}");
        ctx
    }

    fn read(ctx: &mut Ctx<SqliteDb>, c: i32) -> (Vec<Article>, usize) {
        let (rows, n) =
            ctx.counted(|conn, h| in_category(c).cache().using(h).load::<Article>(conn));
        (rows.unwrap(), n)
    }

    fn apply(ctx: &mut Ctx<SqliteDb>) -> usize {
        feed::apply_once(&mut connect(ctx), &ctx.cache, feed::DEFAULT_SCHEMA).unwrap()
    }

    #[test]
    fn a_cascading_delete_invalidates_the_children_granularly() {
        let mut ctx = setup();
        read(&mut ctx, 1);
        read(&mut ctx, 2);
        let mut conn = CachedConnection::new(connect(&ctx), ctx.cache.clone());
        diesel::delete(categories::table.find(1))
            .execute(&mut conn)
            .unwrap();
        assert_eq!(read(&mut ctx, 1).0.len(), 3, "stale without the feed");
        assert_eq!(apply(&mut ctx), 4, "the category and its three articles");
        assert_eq!(read(&mut ctx, 1), (vec![], 1));
        assert_eq!(
            read(&mut ctx, 2).1,
            0,
            "another parent's children stay cached"
        );
        assert_eq!(apply(&mut ctx), 0, "applied rows are deleted");
    }

    /// Another connection updates, a trigger keeps a count, `DELETE FROM` empties
    /// a table; a consumer started after the writes catches up, polling.
    #[test]
    fn outside_writes_and_triggers_reach_a_polling_consumer() {
        let mut ctx = setup();
        let mut other = connect(&ctx);
        other
            .batch_execute(
                "UPDATE categories SET name = '0'; \
                 CREATE TRIGGER count_article AFTER INSERT ON articles BEGIN \
                 UPDATE categories SET name = CAST(name AS INTEGER) + 1 WHERE id = NEW.category_id; END;",
            )
            .unwrap();
        apply(&mut ctx);
        let (before, _) = read(&mut ctx, 1);
        let name = |ctx: &mut Ctx<SqliteDb>| {
            let (c, n) = ctx.counted(|conn, h| {
                categories::table
                    .find(3)
                    .cache()
                    .using(h)
                    .first::<Category>(conn)
            });
            (c.unwrap().name, n)
        };
        assert_eq!(name(&mut ctx).0, "0");
        let sql = format!(
            "UPDATE articles SET title = 'other' WHERE id = {}",
            before[0].id
        );
        other.batch_execute(&sql).unwrap();
        let cache = ctx.cache.clone();
        cache
            .insert::<Article, _, _>(&mut ctx.conn, &NewArticle::new(3, "counted"))
            .unwrap();
        assert_eq!(read(&mut ctx, 1).0, before, "stale without the feed");
        assert_eq!(
            name(&mut ctx),
            ("0".to_string(), 0),
            "the trigger's write is not seen"
        );
        let consumer = ctx
            .cache
            .start_change_feed(&ctx.db.path, feed::DEFAULT_SCHEMA);
        eventually("the consumer never caught up", || {
            read(&mut ctx, 1).0[0].title == "other" && name(&mut ctx).0 == "1"
        });
        other.batch_execute("DELETE FROM articles").unwrap();
        eventually("DELETE FROM never reached the cache", || {
            read(&mut ctx, 2).0.is_empty()
        });
        assert!(!consumer.has_ended());
        consumer.stop().unwrap();
    }

    /// `INSERT OR REPLACE` deletes the row it conflicts with without firing
    /// delete triggers: the feed records that row all the same.
    #[test]
    fn a_replaced_row_invalidates_its_old_state() {
        let mut ctx = setup();
        let (before, _) = read(&mut ctx, 1);
        let mut other = connect(&ctx);
        other
            .batch_execute(&format!(
                "INSERT OR REPLACE INTO articles (id, category_id, title, uid) \
                 VALUES ({}, 2, 'moved', 'u')",
                before[0].id
            ))
            .unwrap();
        assert_eq!(read(&mut ctx, 1).0, before, "stale without the feed");
        apply(&mut ctx);
        assert_eq!(read(&mut ctx, 1).0.len(), before.len() - 1);
        assert!(read(&mut ctx, 2).0.iter().any(|a| a.title == "moved"));
    }

    /// The CLI plans and installs for a SQLite path; a consumer refuses a file
    /// whose outbox is of another version.
    #[test]
    fn the_cli_installs_and_a_foreign_outbox_is_refused() {
        let mut ctx: Ctx<SqliteDb> = Ctx::new(StoreKind::Redis);
        ctx.cache.publish_registry().unwrap();
        let (redis, prefix) = (redis_url(), ctx.cache.config().prefix().to_string());
        let path = ctx.db.path.clone();
        let cli = |command: &str, dry: bool| {
            let mut args = vec!["--redis-url", &redis, "--prefix", &prefix, "--database-url"];
            args.extend([path.as_str(), "feed", command]);
            if dry {
                args.push("--dry-run");
            }
            crate::cli::cli(&args)
        };
        let dry = cli("install", true).unwrap();
        assert!(dry.contains("AFTER DELETE ON \"articles\""), "{dry}");
        assert!(cli("install", false)
            .unwrap()
            .contains("installed on 2 table(s)"));
        ctx.conn
            .batch_execute("UPDATE cacheops_outbox_version SET version = 'version 0'")
            .unwrap();
        let err = cli("run", false).unwrap_err();
        assert!(
            err.message().contains("another version"),
            "{}",
            err.message()
        );
        cli("uninstall", false).unwrap();
        let left: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "(SELECT count(*) FROM sqlite_schema WHERE name LIKE 'cacheops%')",
        ))
        .get_result(&mut ctx.conn)
        .unwrap();
        assert_eq!(left, 0, "uninstall leaves nothing");
    }
}
