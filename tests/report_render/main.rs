//! The report's renderings, from a realistic report built in code: its JSON against
//! `docs/report.schema.json`, and its HTML page opened in headless Chromium (the one in
//! `LIFEBOAT_TEST_CHROMIUM`, else `/usr/bin/chromium`, which scripts/test.sh installs).
//!
//! The report holds three sources (`hive` passes; `pg-main` has a 7 h gap against its
//! 6 h RPO and a trial restore whose counts differ; `graph` has no backup at all) and two
//! DR plans (`region-failover`, drilled twice, the newest drill failed; `node0-sqlite`,
//! never drilled in the window).

mod browser;
#[path = "../support/chromium.rs"]
mod chromium;
mod schema;

use chrono::{DateTime, Duration, TimeZone, Utc};
use lifeboat::report::model::{
    Breach, CheckSummary, CountPair, Coverage, DestinationState, DrillSummary, FORMAT, Gap,
    ObjectiveSummary, PlanReport, Point, Report, SourceReport, StepSpan, TrialSummary, Window,
};
use rstest::fixture;
use std::collections::BTreeMap;

/// The report's time; the window is the week before it.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 8, 11, 0, 0).unwrap()
}

fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, day, hour, minute, 0).unwrap()
}

fn point(prefix: &str, t: DateTime<Utc>, repositories: &[&str], verification: &str) -> Point {
    Point {
        backup_id: format!("{prefix}-{}", t.format("%Y%m%dT%H%M%SZ")),
        at: t,
        repositories: repositories.iter().map(|r| r.to_string()).collect(),
        verification: verification.into(),
        anomaly: false,
    }
}

fn hours(h: i64) -> i64 {
    h * 3600
}

/// `hive` (sqlite): every 4 h, newest verified, trial restore passed.
fn hive() -> SourceReport {
    let since = now() - Duration::days(7);
    let mut timeline: Vec<Point> = (0..)
        .map(|i| at(1, 14, 0) + Duration::hours(4 * i))
        .take_while(|t| *t <= at(8, 10, 0))
        .map(|t| point("hive", t, &["local", "s3"], "unverified"))
        .collect();
    assert!(timeline[0].at > since);
    // Nightly verification: the 02:00 backups were read back and matched.
    for p in timeline
        .iter_mut()
        .filter(|p| p.at.format("%H").to_string() == "02")
    {
        p.verification = "verified".into();
    }
    timeline.last_mut().unwrap().verification = "verified".into();
    timeline[20].anomaly = true;
    let newest = timeline.last().cloned().unwrap();
    SourceReport {
        name: "hive".into(),
        kind: "sqlite".into(),
        schedule: Some("0 2/4 * * * (UTC)".into()),
        rpo_secs: Some(hours(6)),
        rpo: Some("6h".into()),
        exposure_secs: Some((now() - newest.at).num_seconds()),
        worst_gap: Some(Gap {
            from: at(1, 14, 0),
            to: at(1, 18, 0),
            secs: hours(4),
            length: "4h".into(),
        }),
        within_target: Some(1.0),
        rpo_verdict: "PASS".into(),
        newest_verified: Some(newest.clone()),
        last_check: Some(CheckSummary {
            backup_id: newest.backup_id.clone(),
            repository: "s3".into(),
            at: at(8, 10, 12),
            ok: true,
            problems: vec![],
        }),
        last_trial: Some(TrialSummary {
            backup_id: newest.backup_id.clone(),
            repository: "s3".into(),
            at: at(8, 10, 20),
            ok: true,
            counts: BTreeMap::from([
                ("rows.tasks".into(), pair(88_310, 88_310)),
                ("rows.users".into(), pair(1_204, 1_204)),
                ("tables".into(), pair(7, 7)),
            ]),
            problems: vec![],
            duration_secs: 12.4,
        }),
        coverage: Coverage {
            oldest_restorable: Some(at(1, 14, 0) - Duration::days(7)),
            reach_secs: Some((now() - (at(1, 14, 0) - Duration::days(7))).num_seconds()),
            target_secs: Some(14 * 86_400),
            verdict: "PASS".into(),
        },
        destinations: vec![
            destination("local", timeline.len() + 42, Some(newest.at), "ok"),
            destination("s3", timeline.len() + 42, Some(newest.at), "ok"),
        ],
        failed_runs: 0,
        flags: vec!["backup hive-20260504T220000Z was flagged as an anomaly (size -38 %)".into()],
        breaches: vec![],
        verdict: "PASS".into(),
        newest: Some(newest),
        timeline,
    }
}

/// The breach texts of `pg-main`, as the report states them.
pub const PG_GAP_BREACH: &str =
    "RPO 6h exceeded: no backup from 2026-05-05T06:00:00Z to 2026-05-05T13:00:00Z (7h)";
/// See [`PG_GAP_BREACH`].
pub const PG_TRIAL_BREACH: &str = "trial restore of pg-main-20260508T060000Z failed: rows.public.orders expected 1204551, found 1204498";
/// The breach of `graph`.
pub const GRAPH_BREACH: &str = "no backup (RPO 1d)";
/// The breach of `region-failover`.
pub const PLAN_BREACH: &str = "newest drill dr-20260507T140000Z-7f3a failed: step integrity integrity-failed, RTO not measured";

/// `pg-main` (postgres): every 6 h, but one run failed and its retry came an hour late
/// (a 7 h gap against the 6 h RPO); the newest backup is not verified yet and its trial
/// restore found fewer rows than the manifest counts.
fn pg_main() -> SourceReport {
    let mut timeline: Vec<Point> = (0..)
        .map(|i| at(1, 12, 0) + Duration::hours(6 * i))
        .take_while(|t| *t <= at(8, 6, 0))
        .filter(|t| *t != at(5, 12, 0))
        .map(|t| point("pg-main", t, &["local", "s3"], "unverified"))
        .collect();
    timeline.push(point(
        "pg-main",
        at(5, 13, 0),
        &["local", "s3"],
        "unverified",
    ));
    timeline.sort_by_key(|p| p.at);
    for p in timeline
        .iter_mut()
        .filter(|p| p.at.format("%H").to_string() == "06")
    {
        p.verification = "verified".into();
    }
    let newest_idx = timeline.len() - 1;
    timeline[newest_idx].verification = "unverified".into();
    timeline[newest_idx].repositories = vec!["local".into()];
    let newest = timeline[newest_idx].clone();
    let verified = timeline
        .iter()
        .rev()
        .find(|p| p.verification == "verified")
        .cloned()
        .unwrap();
    // A verification of an older backup failed once on a chunk hash.
    let failed = timeline.iter_mut().find(|p| p.at == at(3, 18, 0)).unwrap();
    failed.verification = "failed".into();
    SourceReport {
        name: "pg-main".into(),
        kind: "postgres".into(),
        schedule: Some("0 */6 * * * (UTC)".into()),
        rpo_secs: Some(hours(6)),
        rpo: Some("6h".into()),
        exposure_secs: Some((now() - newest.at).num_seconds()),
        worst_gap: Some(Gap {
            from: at(5, 6, 0),
            to: at(5, 13, 0),
            secs: hours(7),
            length: "7h".into(),
        }),
        within_target: Some(166.0 / 167.0),
        rpo_verdict: "FAIL".into(),
        newest_verified: Some(verified.clone()),
        last_check: Some(CheckSummary {
            backup_id: verified.backup_id.clone(),
            repository: "s3".into(),
            at: verified.at + Duration::minutes(40),
            ok: true,
            problems: vec![],
        }),
        last_trial: Some(TrialSummary {
            backup_id: newest.backup_id.clone(),
            repository: "local".into(),
            at: at(8, 7, 30),
            ok: false,
            counts: BTreeMap::from([
                ("rows.public.orders".into(), pair(1_204_551, 1_204_498)),
                ("rows.public.users".into(), pair(8_812, 8_812)),
                (
                    "sequences".into(),
                    CountPair {
                        expected: Some(12),
                        actual: None,
                    },
                ),
                ("tables".into(), pair(42, 42)),
            ]),
            problems: vec![
                "rows.public.orders: expected 1204551, found 1204498".into(),
                "sequences: not counted in the restored copy".into(),
            ],
            duration_secs: 318.7,
        }),
        coverage: Coverage {
            oldest_restorable: Some(at(1, 12, 0) - Duration::days(14)),
            reach_secs: Some((now() - (at(1, 12, 0) - Duration::days(14))).num_seconds()),
            target_secs: Some(14 * 86_400),
            verdict: "PASS".into(),
        },
        destinations: vec![
            destination("local", timeline.len(), Some(newest.at), "ok"),
            destination("s3", timeline.len() - 1, Some(at(8, 0, 0)), "behind"),
        ],
        failed_runs: 1,
        flags: vec!["s3 lacks the newest backup".into()],
        breaches: vec![PG_GAP_BREACH.into(), PG_TRIAL_BREACH.into()],
        verdict: "FAIL".into(),
        newest: Some(newest),
        timeline,
    }
}

/// `graph` (neo4j): scheduled nightly, every run failed, nothing was ever committed.
fn graph() -> SourceReport {
    SourceReport {
        name: "graph".into(),
        kind: "neo4j".into(),
        schedule: Some("0 3 * * * (Europe/Berlin)".into()),
        rpo_secs: Some(86_400),
        rpo: Some("1d".into()),
        newest: None,
        exposure_secs: None,
        worst_gap: None,
        within_target: None,
        rpo_verdict: "FAIL".into(),
        newest_verified: None,
        last_check: None,
        last_trial: None,
        coverage: Coverage {
            oldest_restorable: None,
            reach_secs: None,
            target_secs: None,
            verdict: "N/A".into(),
        },
        destinations: vec![destination("s3", 0, None, "empty")],
        failed_runs: 7,
        flags: vec![],
        breaches: vec![GRAPH_BREACH.into()],
        verdict: "FAIL".into(),
        timeline: vec![],
    }
}

fn pair(expected: u64, actual: u64) -> CountPair {
    CountPair {
        expected: Some(expected),
        actual: Some(actual),
    }
}

fn destination(
    repository: &str,
    backups: usize,
    newest: Option<DateTime<Utc>>,
    state: &str,
) -> DestinationState {
    DestinationState {
        repository: repository.into(),
        backups,
        newest,
        state: state.into(),
    }
}

fn step(id: &str, kind: &str, state: &str, span: Option<(DateTime<Utc>, i64)>) -> StepSpan {
    StepSpan {
        id: id.into(),
        kind: kind.into(),
        state: state.into(),
        started_at: span.map(|(t, _)| t),
        finished_at: span.map(|(t, secs)| t + Duration::seconds(secs)),
    }
}

fn objective(target_secs: i64, achieved_secs: Option<i64>) -> ObjectiveSummary {
    ObjectiveSummary {
        target_secs,
        achieved_secs,
        verdict: match achieved_secs {
            Some(a) if a <= target_secs => "PASS",
            _ => "FAIL",
        }
        .into(),
    }
}

fn region_failover() -> PlanReport {
    let t = at(7, 14, 0);
    let newest = DrillSummary {
        run_id: "dr-20260507T140000Z-7f3a".into(),
        mode: "drill".into(),
        started_at: t,
        status: "failed".into(),
        rto: objective(900, None),
        rpo: objective(3600, Some(2_460)),
        verdict: "FAIL".into(),
        slowest_step: Some(("restore-pg".into(), 412.0)),
        steps: vec![
            step("scale-down", "command", "skipped", Some((t, 0))),
            step(
                "rds-restore",
                "rds_restore",
                "succeeded",
                Some((t + Duration::seconds(2), 288)),
            ),
            step(
                "restore-pg",
                "restore",
                "succeeded",
                Some((t + Duration::seconds(2), 412)),
            ),
            step(
                "integrity",
                "integrity",
                "integrity-failed",
                Some((t + Duration::seconds(414), 19)),
            ),
            step("helm-upgrade", "helm", "blocked", None),
            step("dns-failover", "route53", "blocked", None),
        ],
    };
    let t = at(2, 14, 0);
    let older = DrillSummary {
        run_id: "dr-20260502T140000Z-1c9e".into(),
        mode: "drill".into(),
        started_at: t,
        status: "succeeded".into(),
        rto: objective(900, Some(655)),
        rpo: objective(3600, Some(1_320)),
        verdict: "PASS".into(),
        slowest_step: Some(("restore-pg".into(), 377.5)),
        steps: vec![
            step("scale-down", "command", "skipped", Some((t, 0))),
            step(
                "rds-restore",
                "rds_restore",
                "succeeded",
                Some((t + Duration::seconds(1), 301)),
            ),
            step(
                "restore-pg",
                "restore",
                "succeeded",
                Some((t + Duration::seconds(1), 378)),
            ),
            step(
                "integrity",
                "integrity",
                "succeeded",
                Some((t + Duration::seconds(379), 21)),
            ),
            step(
                "helm-upgrade",
                "helm",
                "succeeded",
                Some((t + Duration::seconds(400), 190)),
            ),
            step(
                "dns-failover",
                "route53",
                "succeeded",
                Some((t + Duration::seconds(590), 65)),
            ),
        ],
    };
    PlanReport {
        name: "region-failover".into(),
        rto_secs: 900,
        rpo_secs: 3600,
        drills: vec![newest, older],
        verdict: "FAIL".into(),
        flags: vec![],
    }
}

fn node0_sqlite() -> PlanReport {
    PlanReport {
        name: "node0-sqlite".into(),
        rto_secs: 300,
        rpo_secs: 3600,
        drills: vec![],
        verdict: "N/A".into(),
        flags: vec!["no drill in the window".into()],
    }
}

/// The realistic report every test here renders.
#[fixture]
pub fn report() -> Report {
    let since = now() - Duration::days(7);
    Report {
        format: FORMAT.into(),
        generated_at: now(),
        window: Window {
            since,
            until: now(),
            secs: (now() - since).num_seconds(),
        },
        verdict: "FAIL".into(),
        breaches: vec![
            breach("source graph", GRAPH_BREACH),
            breach("source pg-main", PG_GAP_BREACH),
            breach("source pg-main", PG_TRIAL_BREACH),
            breach("plan region-failover", PLAN_BREACH),
        ],
        sources: vec![graph(), hive(), pg_main()],
        plans: vec![node0_sqlite(), region_failover()],
        exit_code: 5,
    }
}

fn breach(subject: &str, what: &str) -> Breach {
    Breach {
        subject: subject.into(),
        what: what.into(),
    }
}
