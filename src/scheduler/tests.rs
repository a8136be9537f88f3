//! The scheduler's semantics on paused tokio time: a test job records when each run
//! started and ended (in the daemon's clock) and takes as long as told.

use super::*;
use crate::clock::TokioClock;
use chrono::TimeZone;
use std::sync::Mutex;

fn at(y: i32, m: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, mi, 0).unwrap()
}

#[derive(Debug, Clone)]
struct Run {
    source: String,
    scheduled: DateTime<Utc>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    cancelled: bool,
}

/// A job that takes `took` (per source) and records its runs.
struct TestJob {
    clock: Arc<dyn Clock>,
    took: BTreeMap<String, std::time::Duration>,
    runs: Mutex<Vec<Run>>,
    in_flight: Mutex<(usize, usize)>,
}

impl TestJob {
    fn new(clock: Arc<dyn Clock>, took: &[(&str, u64)]) -> Arc<TestJob> {
        Arc::new(TestJob {
            clock,
            took: took
                .iter()
                .map(|(n, s)| (n.to_string(), std::time::Duration::from_secs(*s)))
                .collect(),
            runs: Mutex::default(),
            in_flight: Mutex::default(),
        })
    }

    fn runs(&self, source: &str) -> Vec<Run> {
        self.runs
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.source == source)
            .cloned()
            .collect()
    }

    fn max_in_flight(&self) -> usize {
        self.in_flight.lock().unwrap().1
    }
}

#[async_trait]
impl Job for TestJob {
    async fn run(&self, source: &str, scheduled: DateTime<Utc>, cancel: CancelFlag) -> Outcome {
        {
            let mut f = self.in_flight.lock().unwrap();
            f.0 += 1;
            f.1 = f.1.max(f.0);
        }
        let start = self.clock.now();
        let took = self.took.get(source).copied().unwrap_or_default();
        // Work in small steps, checking for cancellation as the backup reader does.
        let mut left = took;
        let mut cancelled = false;
        while !left.is_zero() {
            if cancel.load(Ordering::SeqCst) {
                cancelled = true;
                break;
            }
            let step = left.min(std::time::Duration::from_secs(1));
            tokio::time::sleep(step).await;
            left -= step;
        }
        let end = self.clock.now();
        self.in_flight.lock().unwrap().0 -= 1;
        self.runs.lock().unwrap().push(Run {
            source: source.to_string(),
            scheduled,
            start,
            end,
            cancelled,
        });
        Outcome {
            source: source.to_string(),
            scheduled,
            result: if cancelled {
                RunResult::Cancelled
            } else {
                RunResult::Success
            },
            backup_id: None,
            detail: String::new(),
            started: start,
            finished: end,
        }
    }
}

fn plan(name: &str, schedule: &str) -> Planned {
    Planned {
        name: name.to_string(),
        schedule: Schedule::parse(schedule).unwrap(),
        jitter: None,
    }
}

/// Run the daemon from `origin` for `span` of (paused) time, then shut it down.
async fn run_for(
    origin: DateTime<Utc>,
    span: std::time::Duration,
    plans: Vec<Planned>,
    newest: BTreeMap<String, DateTime<Utc>>,
    took: &[(&str, u64)],
    max_concurrent: usize,
) -> (Arc<TestJob>, Vec<Outcome>) {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(origin));
    let job = TestJob::new(clock.clone(), took);
    let daemon = Daemon {
        clock,
        max_concurrent,
        grace: std::time::Duration::from_secs(30),
    };
    let (tx, rx) = mpsc::channel(4);
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(span).await;
        tx.send(Control::Shutdown).await.unwrap();
    });
    let outcomes = daemon.run(job.clone(), plans, &newest, rx).await;
    stopper.await.unwrap();
    (job, outcomes)
}

const DAY: u64 = 24 * 3600;

#[tokio::test(start_paused = true)]
async fn monday_0300_fires_on_mondays_only() {
    // 2026-11-22 is a Sunday. A backup from last Monday is on record, so nothing is
    // missed at start.
    let newest = BTreeMap::from([("db".to_string(), at(2026, 11, 16, 3, 0))]);
    let (job, _) = run_for(
        at(2026, 11, 22, 12, 0),
        std::time::Duration::from_secs(15 * DAY),
        vec![plan("db", "0 3 * * 1")],
        newest,
        &[("db", 60)],
        2,
    )
    .await;
    let starts: Vec<DateTime<Utc>> = job.runs("db").iter().map(|r| r.start).collect();
    assert_eq!(
        starts,
        vec![
            at(2026, 11, 23, 3, 0),
            at(2026, 11, 30, 3, 0),
            at(2026, 12, 7, 3, 0)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_dst_change_runs_each_wall_time_once() {
    // Europe/Berlin: 02:30 is repeated on 2026-10-25 and skipped on 2027-03-28.
    let berlin = chrono_tz::Europe::Berlin;
    let mut p = plan("db", "30 2 * * *");
    p.schedule = p.schedule.in_timezone(berlin);
    let newest = BTreeMap::from([("db".to_string(), at(2026, 10, 24, 0, 30))]);
    let (job, _) = run_for(
        at(2026, 10, 24, 12, 0),
        std::time::Duration::from_secs(3 * DAY),
        vec![p.clone()],
        newest,
        &[("db", 10)],
        2,
    )
    .await;
    let starts: Vec<DateTime<Utc>> = job.runs("db").iter().map(|r| r.start).collect();
    assert_eq!(
        starts,
        vec![
            at(2026, 10, 25, 0, 30),
            at(2026, 10, 26, 1, 30),
            at(2026, 10, 27, 1, 30)
        ]
    );
    let newest = BTreeMap::from([("db".to_string(), at(2027, 3, 27, 1, 30))]);
    let (job, _) = run_for(
        at(2027, 3, 27, 12, 0),
        std::time::Duration::from_secs(2 * DAY),
        vec![p],
        newest,
        &[("db", 10)],
        2,
    )
    .await;
    let starts: Vec<DateTime<Utc>> = job.runs("db").iter().map(|r| r.start).collect();
    // 02:30 does not exist on 2027-03-28: it runs once, at 03:00 CEST.
    assert_eq!(starts, vec![at(2027, 3, 28, 1, 0), at(2027, 3, 29, 0, 30)]);
}

#[tokio::test(start_paused = true)]
async fn a_run_that_outlasts_its_interval_never_overlaps_the_next() {
    // Every minute, each run taking 150 s.
    let newest = BTreeMap::from([("db".to_string(), at(2026, 11, 30, 2, 59))]);
    let (job, _) = run_for(
        at(2026, 11, 30, 2, 59),
        std::time::Duration::from_secs(20 * 60),
        vec![plan("db", "* * * * *")],
        newest,
        &[("db", 150)],
        4,
    )
    .await;
    let runs = job.runs("db");
    assert!(runs.len() >= 5, "{runs:?}");
    for w in runs.windows(2) {
        assert!(w[1].start >= w[0].end, "overlap: {w:?}");
        // The next run is the first scheduled minute after the previous one ended.
        assert!(w[1].start - w[0].end <= Duration::seconds(60), "{w:?}");
    }
    assert_eq!(job.max_in_flight(), 1);
}

#[tokio::test(start_paused = true)]
async fn after_downtime_a_missed_run_is_made_up_exactly_once() {
    // Hourly; the newest backup is three days old: 72 runs were missed.
    let origin = at(2026, 11, 30, 12, 20);
    let newest = BTreeMap::from([("db".to_string(), at(2026, 11, 27, 12, 0))]);
    let (job, _) = run_for(
        origin,
        std::time::Duration::from_secs(2 * 3600 + 60),
        vec![plan("db", "0 * * * *")],
        newest,
        &[("db", 30)],
        2,
    )
    .await;
    let runs = job.runs("db");
    let starts: Vec<DateTime<Utc>> = runs.iter().map(|r| r.start).collect();
    assert_eq!(
        starts,
        vec![origin, at(2026, 11, 30, 13, 0), at(2026, 11, 30, 14, 0)]
    );
    // The catch-up serves the last missed time, 12:00.
    assert_eq!(runs[0].scheduled, at(2026, 11, 30, 12, 0));
    // With a backup since 12:00 on record, nothing is made up.
    let newest = BTreeMap::from([("db".to_string(), at(2026, 11, 30, 12, 0))]);
    let (job, _) = run_for(
        origin,
        std::time::Duration::from_secs(30 * 60),
        vec![plan("db", "0 * * * *")],
        newest,
        &[("db", 30)],
        2,
    )
    .await;
    assert!(job.runs("db").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_source_never_backed_up_runs_at_start() {
    let origin = at(2026, 11, 30, 12, 20);
    let (job, _) = run_for(
        origin,
        std::time::Duration::from_secs(60),
        vec![plan("db", "0 3 * * *")],
        BTreeMap::new(),
        &[("db", 5)],
        2,
    )
    .await;
    let runs = job.runs("db");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].start, origin);
    assert_eq!(runs[0].scheduled, at(2026, 11, 30, 3, 0));
}

#[tokio::test(start_paused = true)]
async fn at_most_max_concurrent_backups_run_at_once() {
    let origin = at(2026, 11, 30, 12, 0);
    let plans: Vec<Planned> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| plan(n, "*/10 * * * *"))
        .collect();
    let newest: BTreeMap<String, DateTime<Utc>> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| (n.to_string(), origin))
        .collect();
    let (job, _) = run_for(
        origin,
        std::time::Duration::from_secs(35 * 60),
        plans,
        newest,
        &[("a", 120), ("b", 120), ("c", 120), ("d", 120)],
        2,
    )
    .await;
    assert_eq!(job.max_in_flight(), 2);
    // Every source still ran at each of its three times.
    for n in ["a", "b", "c", "d"] {
        assert_eq!(job.runs(n).len(), 3, "{n}");
    }
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_a_run_within_its_bound() {
    let origin = at(2026, 11, 30, 12, 0);
    let mut p = plan("db", "0 * * * *");
    p.jitter = Some(Duration::seconds(30));
    let newest = BTreeMap::from([("db".to_string(), origin)]);
    let (job, _) = run_for(
        origin,
        std::time::Duration::from_secs(5 * 3600 + 60),
        vec![p],
        newest,
        &[("db", 1)],
        2,
    )
    .await;
    let runs = job.runs("db");
    assert_eq!(runs.len(), 5);
    for r in runs {
        let delay = r.start - r.scheduled;
        assert!(
            delay >= Duration::zero() && delay < Duration::seconds(31),
            "{r:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_a_short_run_finish_and_cancels_a_long_one_after_the_grace_period() {
    let origin = at(2026, 11, 30, 12, 0);
    // Both start at once (never backed up); the daemon is stopped 10 s later with a
    // 30 s grace period: `short` (20 s) finishes, `long` (1 h) is cancelled.
    let (job, outcomes) = run_for(
        origin,
        std::time::Duration::from_secs(10),
        vec![plan("short", "0 3 * * *"), plan("long", "0 3 * * *")],
        BTreeMap::new(),
        &[("short", 20), ("long", 3600)],
        2,
    )
    .await;
    let short = &job.runs("short")[0];
    assert!(!short.cancelled);
    let long = &job.runs("long")[0];
    assert!(long.cancelled);
    // Cancelled when the grace period ended, 10 + 30 s after start (the run checks
    // its flag once a second).
    let ended = long.end - origin;
    assert!(
        ended >= Duration::seconds(40) && ended <= Duration::seconds(41),
        "{ended}"
    );
    let results: BTreeMap<&str, RunResult> = outcomes
        .iter()
        .map(|o| (o.source.as_str(), o.result))
        .collect();
    assert_eq!(results["short"], RunResult::Success);
    assert_eq!(results["long"], RunResult::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn a_reload_replaces_the_plans() {
    let origin = at(2026, 11, 30, 12, 0);
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(origin));
    let job = TestJob::new(clock.clone(), &[]);
    let daemon = Daemon {
        clock,
        max_concurrent: 2,
        grace: std::time::Duration::from_secs(30),
    };
    let (tx, rx) = mpsc::channel(4);
    let newest = BTreeMap::from([("a".to_string(), origin), ("b".to_string(), origin)]);
    let ctl = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(3600 + 60)).await;
        // `a` goes, `b` comes.
        tx.send(Control::Reload(vec![plan("b", "0 * * * *")]))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(2 * 3600)).await;
        tx.send(Control::Shutdown).await.unwrap();
    });
    daemon
        .run(job.clone(), vec![plan("a", "0 * * * *")], &newest, rx)
        .await;
    ctl.await.unwrap();
    assert_eq!(job.runs("a").len(), 1);
    assert_eq!(job.runs("b").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn run_once_runs_only_what_is_due() {
    let now = at(2026, 11, 30, 3, 0) + Duration::seconds(2);
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(now));
    let job = TestJob::new(clock.clone(), &[]);
    let daemon = Daemon {
        clock,
        max_concurrent: 2,
        grace: std::time::Duration::from_secs(30),
    };
    let newest = BTreeMap::from([
        ("fresh".to_string(), at(2026, 11, 30, 3, 0)),
        ("stale".to_string(), at(2026, 11, 29, 3, 0)),
    ]);
    let plans = vec![
        plan("fresh", "0 3 * * *"),
        plan("stale", "0 3 * * *"),
        plan("never", "0 3 * * *"),
    ];
    let outcomes = daemon.run_once(job.clone(), &plans, &newest).await;
    let mut ran: Vec<&str> = outcomes.iter().map(|o| o.source.as_str()).collect();
    ran.sort();
    assert_eq!(ran, ["never", "stale"]);
    assert!(
        outcomes
            .iter()
            .all(|o| o.scheduled == at(2026, 11, 30, 3, 0))
    );
}

#[test]
fn missed_compares_the_previous_time_with_the_newest_backup() {
    let s = Schedule::parse("0 3 * * *").unwrap();
    let now = at(2026, 11, 30, 12, 0);
    assert_eq!(missed(&s, None, now), Some(at(2026, 11, 30, 3, 0)));
    assert_eq!(
        missed(&s, Some(at(2026, 11, 30, 2, 59)), now),
        Some(at(2026, 11, 30, 3, 0))
    );
    assert_eq!(missed(&s, Some(at(2026, 11, 30, 3, 0)), now), None);
    // Exactly at the scheduled time, that time is the one due.
    assert_eq!(
        missed(&s, Some(at(2026, 11, 29, 3, 0)), at(2026, 11, 30, 3, 0)),
        Some(at(2026, 11, 30, 3, 0))
    );
}
