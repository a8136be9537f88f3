//! The report of a DR run: per-step timeline and the measured RTO and RPO, computed
//! purely from the plan, the checkpoints and the incident start.

use super::plan::{Action, Plan};
use crate::catalog::{DrRunRow, DrStepRow};
use crate::error::ErrorKind;
use crate::policy::units::{format_duration, format_duration_precise};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// Step states, as checkpointed.
pub mod state {
    /// Not started.
    pub const PENDING: &str = "pending";
    /// An attempt is under way (its effect may or may not have happened).
    pub const RUNNING: &str = "running";
    /// Done.
    pub const SUCCEEDED: &str = "succeeded";
    /// Not run in a drill (counts as done for the steps after it).
    pub const SKIPPED: &str = "skipped";
    /// Failed after its retries.
    pub const FAILED: &str = "failed";
    /// Failed on a count or query check.
    pub const INTEGRITY_FAILED: &str = "integrity-failed";
    /// Not run: a step before it failed, or the run was aborted.
    pub const BLOCKED: &str = "blocked";
    /// An approval gate waiting for `--yes`.
    pub const WAITING: &str = "waiting";
    /// Undone by a rollback.
    pub const ROLLED_BACK: &str = "rolled-back";
}

/// One objective (RTO or RPO) with what was achieved.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Objective {
    /// Target, e.g. `5m`.
    pub target: String,
    /// Target in seconds.
    pub target_secs: i64,
    /// Achieved, when it could be measured: below a minute with its fraction (`0.72s`).
    pub achieved: Option<String>,
    /// Achieved in whole seconds (rounded down).
    pub achieved_secs: Option<i64>,
    /// Achieved in milliseconds: the verdict is judged on this.
    pub achieved_ms: Option<i64>,
    /// `PASS`, `FAIL` (not measured counts as a miss), or `N/A` (the plan restores
    /// nothing, so it has no data point to measure an RPO by).
    pub verdict: &'static str,
}

impl Objective {
    fn new(target_secs: i64, achieved: Option<Duration>, applicable: bool) -> Self {
        // Judged to the millisecond: 3.4 s of lost writes miss an RPO of 3 s.
        let pass = achieved.is_some_and(|a| a.num_milliseconds() <= target_secs * 1000);
        Objective {
            target: format_duration(Duration::seconds(target_secs)),
            target_secs,
            achieved: achieved.map(format_duration_precise),
            achieved_secs: achieved.map(|a| a.num_seconds()),
            achieved_ms: achieved.map(|a| a.num_milliseconds()),
            verdict: match (applicable, pass) {
                (false, _) => "N/A",
                (true, true) => "PASS",
                (true, false) => "FAIL",
            },
        }
    }

    /// Whether the target was met (or does not apply).
    pub fn pass(&self) -> bool {
        self.verdict != "FAIL"
    }
}

/// One step in the report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct StepReport {
    /// Step id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Final state.
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// Start.
    pub started_at: Option<DateTime<Utc>>,
    /// End.
    pub finished_at: Option<DateTime<Utc>>,
    /// Duration in seconds.
    pub duration_secs: Option<f64>,
    /// The resolved effect.
    pub effect: serde_json::Value,
    /// Outputs.
    pub outputs: BTreeMap<String, String>,
    /// Error, when failed.
    pub error: Option<String>,
    /// A restore's data point: the `freshness` its integrity step read, else the
    /// backup's (or snapshot's) consistency point.
    pub data_point: Option<DateTime<Utc>>,
    /// How old that data point was at the incident start, in seconds: what this
    /// restore lost.
    pub data_age_secs: Option<f64>,
}

/// One timeline entry.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// When.
    pub at: DateTime<Utc>,
    /// Step id (empty for the run).
    pub step: String,
    /// What happened.
    pub event: String,
    /// Details.
    pub detail: String,
}

/// The report of a run or drill.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DrReport {
    /// Run id.
    pub run_id: String,
    /// Plan name.
    pub plan: String,
    /// `run` or `drill`.
    pub mode: String,
    /// Run status.
    pub status: String,
    /// Start of the run.
    pub started_at: DateTime<Utc>,
    /// Incident start (measurements count from it).
    pub incident_start: DateTime<Utc>,
    /// End of the run.
    pub finished_at: Option<DateTime<Utc>>,
    /// Steps in plan order.
    pub steps: Vec<StepReport>,
    /// Measured RTO.
    pub rto: Objective,
    /// Measured RPO.
    pub rpo: Objective,
    /// The oldest data point restored: the achieved RPO is its age at the incident
    /// start (the run lost everything written after it in that store).
    pub oldest_data_point: Option<DateTime<Utc>>,
    /// The newest data point restored.
    pub newest_data_point: Option<DateTime<Utc>>,
    /// `PASS` when the run succeeded and both objectives were met.
    pub verdict: &'static str,
    /// Process exit code (see [`exit_code`]).
    pub exit_code: i32,
    /// Every state change, oldest first.
    pub timeline: Vec<Event>,
}

/// The exit code of a finished run. Precedence, most specific first: an integrity
/// failure (4: the restored data is wrong, however fast it came back), then any other
/// failure or unfinished step (1: nothing was fully measured), then a missed RTO or RPO
/// (5), else 0.
pub fn exit_code(steps: &[StepReport], rto: &Objective, rpo: &Objective) -> i32 {
    if steps.iter().any(|s| s.state == state::INTEGRITY_FAILED) {
        return ErrorKind::Integrity.exit_code();
    }
    if steps
        .iter()
        .any(|s| !matches!(s.state.as_str(), state::SUCCEEDED | state::SKIPPED))
    {
        return ErrorKind::RunFailed.exit_code();
    }
    if !rto.pass() || !rpo.pass() {
        return ErrorKind::Breach.exit_code();
    }
    0
}

/// Build the report (pure).
pub fn build(plan: &Plan, run: &DrRunRow, rows: &[DrStepRow], events: Vec<Event>) -> DrReport {
    let by_id: BTreeMap<&str, &DrStepRow> = rows.iter().map(|r| (r.step_id.as_str(), r)).collect();
    let mut steps: Vec<StepReport> = plan
        .steps
        .iter()
        .map(|s| {
            let row = by_id.get(s.id.as_str());
            let started_at = row.and_then(|r| r.started_at);
            let finished_at = row.and_then(|r| r.finished_at);
            StepReport {
                id: s.id.clone(),
                kind: s.action.kind().to_string(),
                state: row
                    .map(|r| r.state.clone())
                    .unwrap_or_else(|| state::PENDING.into()),
                attempts: row.map(|r| r.attempts).unwrap_or(0),
                started_at,
                finished_at,
                duration_secs: started_at
                    .zip(finished_at)
                    .map(|(a, b)| (b - a).num_milliseconds() as f64 / 1000.0),
                effect: row
                    .and_then(|r| serde_json::from_str(&r.effect).ok())
                    .unwrap_or(serde_json::Value::Null),
                outputs: row
                    .and_then(|r| serde_json::from_str(&r.outputs).ok())
                    .unwrap_or_default(),
                error: row.and_then(|r| r.error.clone()),
                data_point: None,
                data_age_secs: None,
            }
        })
        .collect();
    let done = |s: &StepReport| matches!(s.state.as_str(), state::SUCCEEDED | state::SKIPPED);
    // RTO ends with the last step that restores service (all steps when none is marked).
    let marked: Vec<&StepReport> = plan
        .steps
        .iter()
        .zip(&steps)
        .filter(|(p, _)| p.restores_service)
        .map(|(_, s)| s)
        .collect();
    let service: Vec<&StepReport> = if marked.is_empty() {
        steps.iter().collect()
    } else {
        marked
    };
    let rto_achieved = if service.iter().all(|s| done(s)) {
        service
            .iter()
            .filter_map(|s| s.finished_at)
            .max()
            .map(|end| end - run.incident_start)
    } else {
        None
    };
    // RPO: per restore, the freshness its integrity step read, else the backup's (or
    // RDS snapshot's) consistency point; the run lost what was written after the
    // OLDEST of them, so that one measures the RPO (a day-old snapshot must not hide
    // behind a five-minute Redis backup).
    let mut points: Vec<(usize, DateTime<Utc>)> = Vec::new();
    for (i, (p, s)) in plan.steps.iter().zip(&steps).enumerate() {
        if !matches!(p.action, Action::Restore { .. } | Action::RdsRestore(_)) || !done(s) {
            continue;
        }
        let fresh = plan
            .steps
            .iter()
            .zip(&steps)
            .filter(|(q, _)| matches!(&q.action, Action::Integrity { of, .. } if of == &p.id))
            .filter_map(|(_, r)| r.outputs.get("freshness"))
            .filter_map(|v| DateTime::parse_from_rfc3339(v).ok())
            .map(|t| t.with_timezone(&Utc))
            .max();
        let point = fresh.or_else(|| {
            s.outputs
                .get("consistency-point")
                .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                .map(|t| t.with_timezone(&Utc))
        });
        if let Some(point) = point {
            points.push((i, point));
        }
    }
    for (i, point) in &points {
        steps[*i].data_point = Some(*point);
        steps[*i].data_age_secs =
            Some((run.incident_start - *point).num_milliseconds() as f64 / 1000.0);
    }
    let oldest = points.iter().map(|(_, t)| *t).min();
    let newest = points.iter().map(|(_, t)| *t).max();
    let rpo_achieved = oldest.map(|o| run.incident_start - o);
    let restores = plan
        .steps
        .iter()
        .any(|s| matches!(s.action, Action::Restore { .. } | Action::RdsRestore(_)));
    let rto = Objective::new(plan.rto_secs, rto_achieved, true);
    let rpo = Objective::new(plan.rpo_secs, rpo_achieved, restores);
    let code = exit_code(&steps, &rto, &rpo);
    DrReport {
        run_id: run.run_id.clone(),
        plan: run.plan.clone(),
        mode: run.mode.clone(),
        status: run.status.clone(),
        started_at: run.started_at,
        incident_start: run.incident_start,
        finished_at: run.finished_at,
        steps,
        rto,
        rpo,
        oldest_data_point: oldest,
        newest_data_point: newest,
        verdict: if code == 0 { "PASS" } else { "FAIL" },
        exit_code: code,
        timeline: events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dr::plan::{At, OnFailure, Step};
    use chrono::TimeZone;
    use std::path::PathBuf;

    fn at(secs: f64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap()
            + Duration::milliseconds((secs * 1000.0).round() as i64)
    }

    fn restore(id: &str) -> Step {
        Step {
            id: id.into(),
            after: vec![],
            timeout_secs: 60,
            retries: 0,
            on_failure: OnFailure::Abort,
            restores_service: false,
            action: Action::Restore {
                source: id.into(),
                from: None,
                target: format!("/d/{id}"),
                at: At::Newest,
                replace: true,
                drill_skip: false,
            },
        }
    }

    fn plan(rpo_secs: i64, steps: Vec<Step>) -> Plan {
        Plan {
            name: "p".into(),
            description: None,
            file: PathBuf::from("/p/dr/p.toml"),
            root: PathBuf::from("/p"),
            rto_secs: 60,
            rpo_secs,
            region: None,
            steps,
        }
    }

    fn run_row(incident: f64, finished: f64) -> DrRunRow {
        DrRunRow {
            run_id: "r".into(),
            plan: "p".into(),
            mode: "drill".into(),
            started_at: at(incident),
            incident_start: at(incident),
            finished_at: Some(at(finished)),
            status: "succeeded".into(),
            plan_json: String::new(),
            report: None,
        }
    }

    /// A succeeded step from `start` to `end` (seconds) with these outputs.
    fn row(id: &str, start: f64, end: f64, outputs: &[(&str, String)]) -> DrStepRow {
        DrStepRow {
            run_id: "r".into(),
            step_id: id.into(),
            state: state::SUCCEEDED.into(),
            attempts: 1,
            started_at: Some(at(start)),
            finished_at: Some(at(end)),
            effect: "{}".into(),
            outputs: serde_json::to_string(
                &outputs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect::<BTreeMap<_, _>>(),
            )
            .unwrap(),
            error: None,
        }
    }

    #[test]
    fn the_achieved_rpo_is_the_age_of_the_oldest_restored_data_point() {
        // Redis restored data 5.9 s old, FAISS data 0.4 s old: 5.9 s of writes are lost,
        // and that misses an RPO of 3 s.
        let p = plan(3, vec![restore("redis"), restore("faiss")]);
        let point = |s: f64| ("consistency-point", at(s).to_rfc3339());
        let rows = [
            row("redis", 100.0, 100.5, &[point(94.1)]),
            row("faiss", 100.5, 101.0, &[point(99.6)]),
        ];
        let r = build(&p, &run_row(100.0, 101.0), &rows, vec![]);
        assert_eq!(r.rpo.achieved.as_deref(), Some("5.9s"), "{:?}", r.rpo);
        assert_eq!(r.rpo.verdict, "FAIL");
        assert_eq!(r.exit_code, 5);
        assert_eq!(r.oldest_data_point, Some(at(94.1)));
        // Each restore shows its own data point and its age at the incident start.
        let age = |id: &str| r.steps.iter().find(|s| s.id == id).unwrap().data_age_secs;
        assert_eq!(age("redis"), Some(5.9));
        assert_eq!(age("faiss"), Some(0.4));
    }

    #[test]
    fn a_sub_second_rto_is_shown_with_its_fraction() {
        let mut s = restore("hive");
        s.restores_service = true;
        let p = plan(3600, vec![s]);
        let rows = [row(
            "hive",
            100.0,
            100.72,
            &[("consistency-point", at(90.0).to_rfc3339())],
        )];
        let r = build(&p, &run_row(100.0, 100.72), &rows, vec![]);
        assert_eq!(r.rto.achieved.as_deref(), Some("0.72s"), "{:?}", r.rto);
        assert_eq!(r.rto.achieved_ms, Some(720));
        assert_eq!(r.rpo.achieved.as_deref(), Some("10s"));
    }
}
