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
        outside_writers: 0,
        restart_feed: false,
        asynchronous: false,
    };
    let report = stress::run(&args);
    assert!(report.reads > 100 && report.writes > 50, "{report:?}");
    assert_fresh(&report);
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
    assert_fresh(&report);
    // Writers outside cacheops (bare connections, cascade deletes), seen through
    // the change feed, whose consumer is stopped and started again.
    let outside = stress::Args {
        seconds: 4,
        redis_restart: false,
        outside_writers: 2,
        restart_feed: true,
        ..args.clone()
    };
    let report = stress::run(&outside);
    assert!(report.feed_lag_p50_us > 0.0, "{report:?}");
    assert_fresh(&report);
    // The local tier in front, across restarts too.
    let args = stress::Args {
        local: true,
        ..args
    };
    let report = stress::run(&args);
    assert!(report.local_hits > 0, "{report:?}");
    assert_fresh(&report);
    // The async path (tokio tasks on AsyncCachedConnection), across restarts.
    #[cfg(feature = "async")]
    {
        let args = stress::Args {
            readers: 16,
            writers: 4,
            local: false,
            asynchronous: true,
            ..args
        };
        let report = stress::run(&args);
        assert!(report.reads > 100 && report.restarts >= 1, "{report:?}");
        assert_fresh(&report);
    }
}

/// No read was stale, during the run or after it.
fn assert_fresh(report: &stress::Report) {
    assert_eq!(
        (report.stale_reads, report.stale_after_quiesce),
        (0, 0),
        "{report:?}"
    );
}
