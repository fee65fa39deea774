//! A short run of the stress program (`examples/stress.rs`) as part of the suite:
//! readers and writers on PostgreSQL and Redis, no stale read allowed.

#[allow(dead_code)]
#[path = "../examples/stress.rs"]
mod stress;

#[test]
fn short_stress_runs_see_no_stale_read_even_across_redis_restarts() {
    let args = stress::Args {
        seconds: 3,
        readers: 3,
        writers: 2,
        redis_restart: false,
        local: false,
    };
    let report = stress::run(&args);
    assert!(report.reads > 100 && report.writes > 50, "{report:?}");
    assert_eq!(
        (report.stale_reads, report.stale_after_quiesce),
        (0, 0),
        "{report:?}"
    );
    // The same schema and prefix: the restart run follows, never overlaps.
    let args = stress::Args {
        seconds: 5,
        redis_restart: true,
        ..args
    };
    let report = stress::run(&args);
    assert!(
        report.restarts >= 1 && report.store_errors > 0,
        "{report:?}"
    );
    assert_eq!(
        (report.stale_reads, report.stale_after_quiesce),
        (0, 0),
        "{report:?}"
    );
    // The local tier in front, across restarts too.
    let args = stress::Args {
        local: true,
        ..args
    };
    let report = stress::run(&args);
    assert!(report.local_hits > 0, "{report:?}");
    assert_eq!(
        (report.stale_reads, report.stale_after_quiesce),
        (0, 0),
        "{report:?}"
    );
}
