//! A short run of the stress program (`examples/stress.rs`) as part of the suite:
//! readers and writers on PostgreSQL and Redis, no stale read allowed.

#[allow(dead_code)]
#[path = "../examples/stress.rs"]
mod stress;

#[test]
fn a_short_stress_run_sees_no_stale_read() {
    let args = stress::Args {
        seconds: 3,
        readers: 3,
        writers: 2,
        redis_restart: false,
    };
    let report = stress::run(&args);
    assert!(report.reads > 100 && report.writes > 50, "{report:?}");
    assert_eq!(
        (report.stale_reads, report.stale_after_quiesce),
        (0, 0),
        "{report:?}"
    );
}
