//! The verification report's data: what `lifeboat report --format json` prints (format
//! `lifeboat.report.v1`, schema in `docs/report.schema.json`) and what the table,
//! Markdown and HTML renderings show. Times are RFC 3339 UTC; durations are seconds,
//! with a human spelling beside them where a person reads them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The JSON format name and version. A change that removes or renames a field, or
/// changes a field's meaning, gets a new version.
pub const FORMAT: &str = "lifeboat.report.v1";

/// `PASS`, `FAIL` or `N/A`.
pub type Verdict = String;

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    /// [`FORMAT`].
    pub format: String,
    /// When the report was made (the end of the window).
    pub generated_at: DateTime<Utc>,
    /// The window looked at.
    pub window: Window,
    /// `PASS` when no target is breached, else `FAIL`.
    pub verdict: Verdict,
    /// Every breach, each naming its subject: what makes the verdict FAIL.
    pub breaches: Vec<Breach>,
    /// One entry per source, in name order.
    pub sources: Vec<SourceReport>,
    /// One entry per DR plan, in name order.
    pub plans: Vec<PlanReport>,
    /// The exit code `lifeboat report` returns: 0, or 5 when a target is breached.
    pub exit_code: i32,
}

/// The window of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Window {
    /// Start.
    pub since: DateTime<Utc>,
    /// End (the report's time).
    pub until: DateTime<Utc>,
    /// Length in seconds.
    pub secs: i64,
}

/// A breached target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Breach {
    /// `source NAME` or `plan NAME`.
    pub subject: String,
    /// What was breached, with the figures (e.g. the gap's start and end).
    pub what: String,
}

/// A committed backup, as the report places it in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Point {
    /// Backup id.
    pub backup_id: String,
    /// The instant the data reflects (the manifest's consistency point).
    pub at: DateTime<Utc>,
    /// Repositories that hold it.
    pub repositories: Vec<String>,
    /// `verified` (the newest full read-back matched), `failed` (a verification
    /// failed) or `unverified`.
    pub verification: String,
    /// Whether the backup was flagged as an anomaly when it was made.
    pub anomaly: bool,
}

/// A time without a committed backup between two points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Gap {
    /// The earlier backup's point (or the window start).
    pub from: DateTime<Utc>,
    /// The next backup's point (or the report's time: the current exposure).
    pub to: DateTime<Utc>,
    /// Length in seconds.
    pub secs: i64,
    /// Length, spelled (`7h`).
    pub length: String,
}

/// The last verification (full read-back) of a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckSummary {
    /// Backup checked.
    pub backup_id: String,
    /// Repository read.
    pub repository: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Matched or not.
    pub ok: bool,
    /// What did not match.
    pub problems: Vec<String>,
}

/// The last trial restore of a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TrialSummary {
    /// Backup restored.
    pub backup_id: String,
    /// Repository read.
    pub repository: String,
    /// When it ran.
    pub at: DateTime<Utc>,
    /// Restored and every count matched.
    pub ok: bool,
    /// Counts: name -> (expected, actual).
    pub counts: BTreeMap<String, CountPair>,
    /// What went wrong.
    pub problems: Vec<String>,
    /// How long the restore took, in seconds.
    pub duration_secs: f64,
}

/// A count expected from the manifest and found in the restored copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CountPair {
    /// From the manifest.
    pub expected: Option<u64>,
    /// In the restored copy.
    pub actual: Option<u64>,
}

/// A destination of a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DestinationState {
    /// Repository name.
    pub repository: String,
    /// Committed backups of the source it holds.
    pub backups: usize,
    /// Its newest backup's point.
    pub newest: Option<DateTime<Utc>>,
    /// `ok`, `behind` (it lacks the source's newest backup) or `empty`.
    pub state: String,
}

/// Retention coverage: how far back a restore can go, against what the policy keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Coverage {
    /// The oldest committed backup whose verification did not fail.
    pub oldest_restorable: Option<DateTime<Utc>>,
    /// How far back that reaches from the report's time, in seconds.
    pub reach_secs: Option<i64>,
    /// The policy's `keep-within`, in seconds (when set).
    pub target_secs: Option<i64>,
    /// `PASS`, `FAIL` (reaches less far than keep-within) or `N/A`.
    pub verdict: Verdict,
}

/// One source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SourceReport {
    /// Name.
    pub name: String,
    /// Engine kind.
    pub kind: String,
    /// Cron schedule (with its time zone), when scheduled.
    pub schedule: Option<String>,
    /// RPO target in seconds, when set.
    pub rpo_secs: Option<i64>,
    /// RPO target, spelled.
    pub rpo: Option<String>,
    /// The newest committed backup.
    pub newest: Option<Point>,
    /// Current exposure: the report's time minus the newest point, in seconds.
    pub exposure_secs: Option<i64>,
    /// The worst gap in the window, the current exposure included (the achieved RPO).
    pub worst_gap: Option<Gap>,
    /// Share of the window (from the first backup on) during which the exposure was
    /// within the RPO target, 0..=1.
    pub within_target: Option<f64>,
    /// `PASS`, `FAIL` or `N/A` (no RPO target) for the RPO.
    pub rpo_verdict: Verdict,
    /// The newest backup whose full verification matched.
    pub newest_verified: Option<Point>,
    /// The last verification of any backup of the source.
    pub last_check: Option<CheckSummary>,
    /// The last trial restore.
    pub last_trial: Option<TrialSummary>,
    /// Retention coverage.
    pub coverage: Coverage,
    /// Destinations.
    pub destinations: Vec<DestinationState>,
    /// Failed backup runs in the window.
    pub failed_runs: usize,
    /// Things an operator should look at that do not breach a target.
    pub flags: Vec<String>,
    /// Breaches of this source (also listed at the top).
    pub breaches: Vec<String>,
    /// `PASS` or `FAIL`.
    pub verdict: Verdict,
    /// Committed backups in the window, oldest first (for the timeline chart).
    pub timeline: Vec<Point>,
}

/// An objective of a drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ObjectiveSummary {
    /// Target in seconds.
    pub target_secs: i64,
    /// Achieved, in seconds, when measured.
    pub achieved_secs: Option<i64>,
    /// `PASS`, `FAIL` or `N/A`.
    pub verdict: Verdict,
}

/// One step of a drill, for the Gantt chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StepSpan {
    /// Step id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Final state.
    pub state: String,
    /// Start.
    pub started_at: Option<DateTime<Utc>>,
    /// End.
    pub finished_at: Option<DateTime<Utc>>,
}

/// One drill (or real run) of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DrillSummary {
    /// Run id.
    pub run_id: String,
    /// `drill` or `run`.
    pub mode: String,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// `succeeded`, `failed`, ...
    pub status: String,
    /// Achieved RTO against the target.
    pub rto: ObjectiveSummary,
    /// Achieved RPO against the target.
    pub rpo: ObjectiveSummary,
    /// `PASS` when the run succeeded and both objectives passed.
    pub verdict: Verdict,
    /// The slowest step and its duration in seconds.
    pub slowest_step: Option<(String, f64)>,
    /// Steps, for the Gantt chart.
    pub steps: Vec<StepSpan>,
}

/// One DR plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PlanReport {
    /// Plan name.
    pub name: String,
    /// RTO target in seconds.
    pub rto_secs: i64,
    /// RPO target in seconds.
    pub rpo_secs: i64,
    /// Drills and runs in the window, newest first.
    pub drills: Vec<DrillSummary>,
    /// `PASS` (the newest drill passed), `FAIL` (it did not) or `N/A` (no drill in
    /// the window: flagged, not a breach).
    pub verdict: Verdict,
    /// Flags (e.g. no drill in the window).
    pub flags: Vec<String>,
}
