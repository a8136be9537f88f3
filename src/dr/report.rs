//! The report of a DR run: per-step timeline and the measured RTO and RPO, computed
//! purely from the plan, the checkpoints and the incident start.

use super::plan::{Action, Plan};
use crate::catalog::{DrRunRow, DrStepRow};
use crate::error::ErrorKind;
use crate::policy::units::format_duration;
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
    /// Achieved, when it could be measured.
    pub achieved: Option<String>,
    /// Achieved in seconds.
    pub achieved_secs: Option<i64>,
    /// `PASS`, `FAIL` (not measured counts as a miss), or `N/A` (the plan restores
    /// nothing, so it has no data point to measure an RPO by).
    pub verdict: &'static str,
}

impl Objective {
    fn new(target_secs: i64, achieved: Option<Duration>, applicable: bool) -> Self {
        let pass = achieved.is_some_and(|a| a.num_seconds() <= target_secs);
        Objective {
            target: format_duration(Duration::seconds(target_secs)),
            target_secs,
            achieved: achieved.map(format_duration),
            achieved_secs: achieved.map(|a| a.num_seconds()),
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
    let steps: Vec<StepReport> = plan
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
    // RPO: the newest data point restored; per restore, the freshness its integrity
    // step read, else the backup's (or RDS snapshot's) consistency point.
    let mut newest: Option<DateTime<Utc>> = None;
    for (p, s) in plan.steps.iter().zip(&steps) {
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
        newest = newest.max(point);
    }
    let rpo_achieved = newest.map(|n| run.incident_start - n);
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
        newest_data_point: newest,
        verdict: if code == 0 { "PASS" } else { "FAIL" },
        exit_code: code,
        timeline: events,
    }
}
