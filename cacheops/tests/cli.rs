//! The `cacheops-cli` binary as a process: exit statuses and messages. Commands
//! that need the blog models run in-process in the `cacheops-tests` crate.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cacheops-cli"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("CACHEOPS_PREFIX")
        .output()
        .unwrap()
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn explain_prints_tables_schemes_and_widened_conditions() {
    let sql = r#"SELECT "articles"."id" FROM ("articles" INNER JOIN "categories" ON ("articles"."category_id" = "categories"."id")) WHERE (("categories"."id" = $1) AND ("articles"."title" LIKE $2))"#;
    let out = cli(&["explain", sql]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains(
            "table articles: granular, 1 conjunction(s)\n  scheme (category_id): category_id = $1"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("table categories: granular, 1 conjunction(s)\n  scheme (id): id = $1"),
        "{stdout}"
    );
    assert!(stdout.contains(r#""articles"."title" LIKE $2"#), "{stdout}");
}

#[test]
fn explain_reads_a_query_file_and_sqlite_placeholders() {
    let path = std::env::temp_dir().join(format!("cacheops-cli-{}.sql", std::process::id()));
    std::fs::write(
        &path,
        "SELECT * FROM t WHERE a = ? AND (b = ? OR b IS NULL) AND c > ?",
    )
    .unwrap();
    let out = cli(&[
        "explain",
        "--dialect",
        "sqlite",
        "--query-file",
        path.to_str().unwrap(),
    ]);
    std::fs::remove_file(&path).unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("scheme (a, b): a = $1 AND b = $2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("scheme (a, b): a = $1 AND b IS NULL"),
        "{stdout}"
    );
    assert!(stdout.contains("c > $3"), "{stdout}");
}

#[test]
fn explain_of_a_non_granular_query_says_why() {
    let out = cli(&["explain", "SELECT count(*) FROM t WHERE lower(name) = $1"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("table t: any change (no usable condition narrows it)"),
        "{stdout}"
    );
    assert!(stdout.contains("lower(name) = $1"), "{stdout}");
}

#[test]
fn errors_exit_2_with_a_message() {
    let unreachable = ["--redis-url", "redis://127.0.0.1:1"];
    let prefix = format!("cli_empty_{}", std::process::id());
    let url = redis_url();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["explain", "SELEC 1"], "cannot analyse the SQL"),
        (vec!["explain", "DELETE FROM t"], "cannot analyse the SQL"),
        (vec!["explain"], "explain needs SQL"),
        (
            [&unreachable[..], &["stats"]].concat(),
            "cannot reach Redis",
        ),
        (
            [&unreachable[..], &["invalidate", "all"]].concat(),
            "cannot reach Redis",
        ),
        (
            vec![
                "--redis-url",
                &url,
                "--prefix",
                &prefix,
                "invalidate",
                "blog.Article.3",
            ],
            "unknown model label `blog.Article`",
        ),
        (
            vec!["--redis-url", &url, "invalidate", "a..3"],
            "malformed target",
        ),
        (vec!["frobnicate"], "unrecognized subcommand"),
    ];
    for (args, message) in cases {
        let out = cli(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn help_exits_0() {
    let out = cli(&["--help"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("invalidate"));
}
