//! DR plans: `<policy set>/dr/*.toml` -> validated [`Plan`] (a DAG of steps).
//!
//! Validation is pure and reports every problem at once, each as
//! `FILE: steps.ID.field: problem (fix)`: unknown keys (with did-you-mean), unknown
//! step ids, cycles printed as `a -> b -> a`, `${steps.ID.outputs.KEY}` references to
//! steps that do not run before, or to outputs a step does not have, and command steps
//! that do not say what a drill does with them.

pub mod cloud;

use crate::error::{Error, Result};
use crate::policy::fields::Fields;
use crate::policy::{PolicyError, PolicyErrors, PolicySet};
use chrono::{DateTime, Utc};
use cloud::{Helm, RdsRestore, Route53Failover, Scale};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A validated DR plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Plan {
    /// Plan name (`lifeboat dr run NAME`).
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The plan file.
    pub file: PathBuf,
    /// The policy set folder: relative restore targets are resolved against it.
    pub root: PathBuf,
    /// Recovery time objective, in seconds.
    pub rto_secs: i64,
    /// Recovery point objective, in seconds.
    pub rpo_secs: i64,
    /// The region recovered into: the default of the AWS steps.
    #[serde(default)]
    pub region: Option<String>,
    /// Steps in file order.
    pub steps: Vec<Step>,
}

/// What to do when a step fails (after its retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Start nothing new; the run fails.
    Abort,
    /// Skip the steps that depend on this one; run the others.
    Continue,
    /// Abort, then undo what the run did, newest first.
    Rollback,
}

/// One step of a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Step {
    /// Unique id within the plan.
    pub id: String,
    /// Steps that must succeed first.
    pub after: Vec<String>,
    /// Time allowed per attempt, in seconds.
    pub timeout_secs: u64,
    /// Attempts after the first.
    pub retries: u32,
    /// Failure behaviour.
    pub on_failure: OnFailure,
    /// Whether service is back once this step is done (it ends the measured RTO).
    pub restores_service: bool,
    /// What the step does.
    pub action: Action,
}

/// Which backup a restore step takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum At {
    /// The newest committed backup.
    Newest,
    /// The newest backup whose last full verification matched.
    Verified,
    /// The newest backup at or before this instant.
    AtOrBefore(DateTime<Utc>),
}

/// How far an integrity step lets a count differ from the manifest, either way.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CountTolerance {
    /// Up to this many rows.
    Rows(u64),
    /// Up to this percentage of the manifest's count.
    Percent(f64),
}

impl CountTolerance {
    /// Whether `actual` is within the tolerance of `expected`.
    pub fn allows(self, expected: u64, actual: u64) -> bool {
        let diff = expected.abs_diff(actual);
        match self {
            CountTolerance::Rows(n) => diff <= n,
            CountTolerance::Percent(p) => (diff as f64) <= (expected as f64) * p / 100.0,
        }
    }

    /// As written in plans: `5%` or `100` (rows).
    pub fn show(self) -> String {
        match self {
            CountTolerance::Rows(n) => format!("{n} rows"),
            CountTolerance::Percent(p) => format!("{p}%"),
        }
    }
}

/// What a drill does with a command step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrillCommand {
    /// Not run in a drill.
    Skip,
    /// Run as declared.
    Run,
    /// Run with these arguments instead.
    Args(Vec<String>),
}

/// The step kinds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// Restore a lifeboat source into a target, through the engines.
    Restore {
        /// Source name.
        source: String,
        /// Preferred repository (the source's other destinations are the fallbacks).
        from: Option<String>,
        /// Target (may hold `${...}` references).
        target: String,
        /// Which backup.
        at: At,
        /// Replace a non-empty target.
        replace: bool,
        /// Not run in a drill (targets a drill cannot isolate, e.g. a Neo4j database).
        #[serde(default)]
        drill_skip: bool,
    },
    /// Recount a restored target, compare with the manifest, run queries.
    Integrity {
        /// The restore (or `rds_restore`) step whose target is checked.
        of: String,
        /// Of an `rds_restore` step: the postgres source whose newest backup's manifest
        /// holds the counts compared, and whose credentials connect.
        #[serde(default)]
        source: Option<String>,
        /// Of an `rds_restore` step: the restored database's URL (may hold references).
        #[serde(default)]
        target: Option<String>,
        /// How far counts may differ from the manifest (an RDS snapshot and a logical
        /// backup are taken at different times); exact when absent.
        #[serde(default)]
        tolerance: Option<CountTolerance>,
        /// Named single-value queries (sqlite sources).
        queries: BTreeMap<String, String>,
        /// A query returning the newest data point (RFC 3339 text or Unix seconds).
        freshness: Option<String>,
        /// Lower bounds on query results.
        min: BTreeMap<String, u64>,
    },
    /// A program with arguments (no shell).
    Command {
        /// Program and arguments (may hold `${...}` references).
        argv: Vec<String>,
        /// Drill behaviour.
        drill: DrillCommand,
        /// A command that undoes this one, for rollback.
        undo: Option<Vec<String>>,
    },
    /// A manual gate, passed with `--yes`.
    Approval {
        /// What the operator approves.
        prompt: String,
    },
    /// Restore an RDS snapshot into a new DB instance and wait until it is available.
    RdsRestore(RdsRestore),
    /// `helm upgrade --install`, rolled back with `helm rollback`.
    Helm(Helm),
    /// Switch Route53 record sets, rolled back to the records captured before.
    Route53Failover(Route53Failover),
    /// Scale a Kubernetes deployment, the count found before captured for the undo.
    KubernetesScale(Scale),
}

impl Action {
    /// The kind name, as written in plans.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Restore { .. } => "restore",
            Action::Integrity { .. } => "integrity",
            Action::Command { .. } => "command",
            Action::Approval { .. } => "approval",
            Action::RdsRestore(_) => "rds_restore",
            Action::Helm(_) => "helm",
            Action::Route53Failover(_) => "route53_failover",
            Action::KubernetesScale(_) => "kubernetes_scale",
        }
    }
}

const PLAN_KEYS: &[&str] = &["name", "description", "rto", "rpo", "region", "steps"];
const STEP_KEYS: &[&str] = &[
    "id",
    "kind",
    "after",
    "timeout",
    "retries",
    "on-failure",
    "restores-service",
    "description",
];
const KINDS: &[&str] = &[
    "restore",
    "integrity",
    "command",
    "approval",
    "rds_restore",
    "helm",
    "route53_failover",
    "kubernetes_scale",
];

/// Output keys each kind publishes (integrity adds one per query).
fn outputs_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "restore" => &[
            "target",
            "backup-id",
            "consistency-point",
            "repository",
            "source",
        ],
        "integrity" => &["freshness"],
        "command" => &["stdout", "exit-code"],
        "rds_restore" => &[
            "instance",
            "endpoint",
            "port",
            "arn",
            "region",
            "snapshot",
            "consistency-point",
        ],
        "helm" => &["release", "namespace", "revision"],
        "route53_failover" => &["change-id", "records"],
        "kubernetes_scale" => &["deployment", "replicas-before", "replicas"],
        _ => &[],
    }
}

/// Default time allowed per attempt.
const DEFAULT_TIMEOUT_SECS: u64 = 600;

/// The inner text of every `${...}` reference in `text`.
pub fn references(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) => {
                out.push(&after[..j]);
                rest = &after[j + 1..];
            }
            None => {
                out.push(after);
                break;
            }
        }
    }
    out
}

/// Replace every `${steps.ID.outputs.KEY}` with its value.
pub fn substitute(
    text: &str,
    outputs: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after
            .find('}')
            .ok_or_else(|| Error::bad_input(format!("`{text}`: unclosed `${{`")))?;
        let inner = &after[..j];
        let value = parse_ref(inner)
            .and_then(|(id, key)| outputs.get(id).and_then(|o| o.get(key)))
            .ok_or_else(|| {
                Error::failed(format!(
                    "`${{{inner}}}` has no value (the step did not publish it)"
                ))
            })?;
        out.push_str(value);
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Replace the references whose values are known; leave the others as written (for dry
/// runs, where outputs made at run time are not known yet).
pub fn substitute_known(
    text: &str,
    outputs: &BTreeMap<String, BTreeMap<String, String>>,
) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find('}') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let inner = &after[..j];
        match parse_ref(inner).and_then(|(id, key)| outputs.get(id).and_then(|o| o.get(key))) {
            Some(v) => out.push_str(v),
            None => out.push_str(&rest[i..i + 3 + j]),
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    out
}

/// `steps.ID.outputs.KEY` -> (ID, KEY).
fn parse_ref(inner: &str) -> Option<(&str, &str)> {
    let rest = inner.strip_prefix("steps.")?;
    let (id, key) = rest.split_once(".outputs.")?;
    (!id.is_empty() && !key.is_empty()).then_some((id, key))
}

/// Load every plan under `<set root>/dr/` (none when the folder does not exist).
pub fn load_plans(set: &PolicySet) -> Result<Vec<Plan>> {
    let dir = set.root.join("dr");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io(format!("listing DR plans in {}", dir.display()), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut texts = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)
            .map_err(|e| Error::io(format!("reading DR plan {}", f.display()), e))?;
        texts.push((f, text));
    }
    plans_from_texts(set, &texts).map_err(Error::from)
}

/// Validate plan texts against a policy set (pure).
pub fn plans_from_texts(
    set: &PolicySet,
    texts: &[(PathBuf, String)],
) -> std::result::Result<Vec<Plan>, PolicyErrors> {
    let mut errs = Vec::new();
    let mut plans: Vec<Plan> = Vec::new();
    for (file, text) in texts {
        match plan_from_text(set, file, text) {
            Ok(plan) => {
                if let Some(prev) = plans.iter().find(|p| p.name == plan.name) {
                    errs.push(err(
                        file,
                        "name",
                        format!(
                            "plan `{}` declared again (first in {}); give each plan one name",
                            plan.name,
                            prev.file.display()
                        ),
                    ));
                } else {
                    plans.push(plan);
                }
            }
            Err(mut e) => errs.append(&mut e),
        }
    }
    if errs.is_empty() {
        Ok(plans)
    } else {
        Err(PolicyErrors(errs))
    }
}

fn err(file: &Path, field: impl Into<String>, problem: impl Into<String>) -> PolicyError {
    PolicyError {
        file: file.to_path_buf(),
        field: field.into(),
        problem: problem.into(),
    }
}

/// A step as read, before the cross-step checks.
struct RawStep {
    field: String,
    id: Option<String>,
    kind: Option<String>,
    after: Vec<String>,
    /// (field, text) of every string that may hold references.
    templated: Vec<(String, String)>,
    step: Option<Step>,
}

/// Validate one plan file.
pub fn plan_from_text(
    set: &PolicySet,
    file: &Path,
    text: &str,
) -> std::result::Result<Plan, Vec<PolicyError>> {
    let mut errs = Vec::new();
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            let line = e
                .span()
                .map(|s| format!("line {}", text[..s.start].matches('\n').count() + 1))
                .unwrap_or_else(|| "syntax".into());
            return Err(vec![err(
                file,
                line,
                format!("not valid TOML: {}", e.message()),
            )]);
        }
    };
    let mut top = Fields::new(file, "", &table);
    let name = top.req_str(&mut errs, "name", "name = \"node0-sqlite\"");
    let description = top.opt_str(&mut errs, "description").map(String::from);
    let mut objective = |errs: &mut Vec<PolicyError>, key: &str| {
        if top.opt_value(key).is_none() {
            top.error(
                errs,
                key,
                format!("missing (add {key} = \"1h\": the target the drill measures)"),
            );
            return None;
        }
        top.opt_duration(errs, key).map(|d| d.num_seconds())
    };
    let rto = objective(&mut errs, "rto");
    let rpo = objective(&mut errs, "rpo");
    let region = top.opt_str(&mut errs, "region").map(String::from);
    let mut raw_steps = Vec::new();
    match top.opt_value("steps") {
        None => top.error(
            &mut errs,
            "steps",
            "missing (add [[steps]] tables with id and kind)",
        ),
        Some(toml::Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item.as_table() {
                    Some(t) => {
                        raw_steps.push(read_step(&mut errs, set, file, i, t, region.as_deref()))
                    }
                    None => errs.push(err(
                        file,
                        format!("steps[{i}]"),
                        "expected a table ([[steps]] with id and kind)",
                    )),
                }
            }
        }
        Some(other) => top.error(
            &mut errs,
            "steps",
            format!(
                "expected an array of tables ([[steps]]), found {}",
                other.type_str()
            ),
        ),
    }
    top.finish(&mut errs, PLAN_KEYS);
    check_graph(&mut errs, file, &raw_steps);
    if let Some(n) = name
        && !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        errs.push(err(
            file,
            "name",
            format!("`{n}`: use a-z, 0-9, - and _ (it names runs and drill targets)"),
        ));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Plan {
        name: name.unwrap_or_default().to_string(),
        description,
        file: file.to_path_buf(),
        root: set.root.clone(),
        rto_secs: rto.unwrap_or_default(),
        rpo_secs: rpo.unwrap_or_default(),
        region,
        steps: raw_steps.into_iter().filter_map(|s| s.step).collect(),
    })
}

fn read_step(
    errs: &mut Vec<PolicyError>,
    set: &PolicySet,
    file: &Path,
    index: usize,
    t: &toml::Table,
    plan_region: Option<&str>,
) -> RawStep {
    let n = errs.len();
    let id = t.get("id").and_then(|v| v.as_str()).map(String::from);
    let prefix = match &id {
        Some(id) => format!("steps.{id}"),
        None => format!("steps[{index}]"),
    };
    let mut f = Fields::new(file, prefix.clone(), t);
    f.req_str(errs, "id", "id = \"restore-db\"");
    if let Some(id) = &id
        && (id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        f.error(
            errs,
            "id",
            format!(
                "`{id}`: use letters, digits, - and _ (ids appear in `${{steps.ID.outputs.KEY}}`)"
            ),
        );
    }
    f.opt_str(errs, "description");
    let kind = f
        .req_str(
            errs,
            "kind",
            "kind = \"restore\", \"integrity\", \"command\", \"approval\", \"rds_restore\", \"helm\", \"route53_failover\" or \"kubernetes_scale\"",
        )
        .map(String::from);
    if let Some(k) = &kind
        && !KINDS.contains(&k.as_str())
    {
        f.error(
            errs,
            "kind",
            format!("unknown kind `{k}` (valid kinds: {})", KINDS.join(", ")),
        );
    }
    let after: Vec<String> = f
        .str_list(errs, "after")
        .unwrap_or_default()
        .into_iter()
        .map(String::from)
        .collect();
    let timeout_secs = f
        .opt_duration(errs, "timeout")
        .map(|d| d.num_seconds() as u64)
        .unwrap_or(DEFAULT_TIMEOUT_SECS);
    let retries = f.opt_u32(errs, "retries").unwrap_or(0);
    let on_failure = match f.opt_str(errs, "on-failure") {
        None | Some("abort") => OnFailure::Abort,
        Some("continue") => OnFailure::Continue,
        Some("rollback") => OnFailure::Rollback,
        Some(other) => {
            f.error(
                errs,
                "on-failure",
                format!("`{other}`: write \"abort\", \"continue\" or \"rollback\""),
            );
            OnFailure::Abort
        }
    };
    let restores_service = read_bool(errs, &mut f, "restores-service").unwrap_or(false);
    let mut templated = Vec::new();
    let mut allowed: Vec<&str> = STEP_KEYS.to_vec();
    let action = match kind.as_deref() {
        Some("restore") => {
            allowed.extend_from_slice(&["source", "from", "target", "at", "replace", "drill"]);
            read_restore(errs, set, &mut f, &mut templated)
        }
        Some("integrity") => {
            allowed.extend_from_slice(&[
                "of",
                "queries",
                "freshness",
                "min",
                "source",
                "target",
                "tolerance",
            ]);
            read_integrity(errs, set, &mut f, &mut templated)
        }
        Some("command") => {
            allowed.extend_from_slice(&["argv", "drill", "undo"]);
            read_command(errs, &mut f, &mut templated)
        }
        Some("approval") => {
            allowed.push("prompt");
            let prompt = f
                .req_str(
                    errs,
                    "prompt",
                    "prompt = \"DNS switched to the new region?\"",
                )
                .unwrap_or_default()
                .to_string();
            Some(Action::Approval { prompt })
        }
        Some("rds_restore") => {
            allowed.extend_from_slice(cloud::RDS_KEYS);
            cloud::read_rds(errs, &mut f, plan_region).map(Action::RdsRestore)
        }
        Some("helm") => {
            allowed.extend_from_slice(cloud::HELM_KEYS);
            cloud::read_helm(errs, &mut f, &mut templated).map(Action::Helm)
        }
        Some("route53_failover") => {
            allowed.extend_from_slice(cloud::DNS_KEYS);
            cloud::read_route53(errs, &mut f, &mut templated).map(Action::Route53Failover)
        }
        Some("kubernetes_scale") => {
            allowed.extend_from_slice(cloud::SCALE_KEYS);
            cloud::read_scale(errs, &mut f, &mut templated).map(Action::KubernetesScale)
        }
        // Other keys would be reported as unknown only because the kind is wrong.
        _ => {
            for k in t.keys() {
                f.opt_value(k);
            }
            None
        }
    };
    f.finish(errs, &allowed);
    let step = match (id.clone(), action) {
        (Some(id), Some(action)) if errs.len() == n => Some(Step {
            id,
            after: after.clone(),
            timeout_secs,
            retries,
            on_failure,
            restores_service,
            action,
        }),
        _ => None,
    };
    RawStep {
        field: prefix,
        id,
        kind,
        after,
        templated,
        step,
    }
}

fn read_bool(errs: &mut Vec<PolicyError>, f: &mut Fields<'_>, key: &str) -> Option<bool> {
    match f.opt_value(key)? {
        toml::Value::Boolean(b) => Some(*b),
        other => {
            f.error(
                errs,
                key,
                format!("expected true or false, found {}", other.type_str()),
            );
            None
        }
    }
}

fn read_restore(
    errs: &mut Vec<PolicyError>,
    set: &PolicySet,
    f: &mut Fields<'_>,
    templated: &mut Vec<(String, String)>,
) -> Option<Action> {
    let source = f.req_str(errs, "source", "source = \"NAME\" of a source of the set");
    let src = source.and_then(|s| set.sources.get(s));
    if let Some(s) = source
        && src.is_none()
    {
        f.error(
            errs,
            "source",
            format!(
                "unknown source `{s}` (declared: {})",
                set.sources.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        );
    }
    let from = f.opt_str(errs, "from").map(String::from);
    if let (Some(r), Some(src)) = (&from, src)
        && !src.destinations.contains(r)
    {
        f.error(
            errs,
            "from",
            format!(
                "`{r}` is not a destination of source {} (its destinations: {})",
                src.name,
                src.destinations.join(", ")
            ),
        );
    }
    let target = f.req_str(errs, "target", "target = \"data/app.db\"");
    if let Some(t) = target {
        templated.push((f.path("target"), t.to_string()));
    }
    let at = match f.opt_str(errs, "at") {
        None | Some("newest") => At::Newest,
        Some("verified") => At::Verified,
        Some(t) => match DateTime::parse_from_rfc3339(t) {
            Ok(t) => At::AtOrBefore(t.with_timezone(&Utc)),
            Err(_) => {
                f.error(
                    errs,
                    "at",
                    format!(
                        "`{t}`: write \"newest\", \"verified\" or an RFC 3339 time (2026-11-22T09:30:00Z)"
                    ),
                );
                At::Newest
            }
        },
    };
    let replace = read_bool(errs, f, "replace").unwrap_or(false);
    let drill_skip = match f.opt_str(errs, "drill") {
        None | Some("isolate") => false,
        Some("skip") => true,
        Some(other) => {
            f.error(
                errs,
                "drill",
                format!(
                    "`{other}`: write \"isolate\" (restore beside the real target, removed afterwards) or \"skip\""
                ),
            );
            false
        }
    };
    // The target's form per engine, now rather than when the run reaches the step:
    // a Neo4j step that fails in a real failover was never reached by a drill.
    if let (Some(src), Some(t)) = (src, target) {
        if let Err(problem) = src.config.check_restore_target(t) {
            f.error(errs, "target", format!("source {}: {problem}", src.name));
        } else if !drill_skip
            && src.config.restore_target() == crate::policy::RestoreTarget::Neo4jDatabase
        {
            f.error(
                errs,
                "drill",
                format!(
                    "missing drill = \"skip\": a drill cannot isolate Neo4j database `{t}` of source {} (it would load into the real one)",
                    src.name
                ),
            );
        }
    }
    Some(Action::Restore {
        source: source?.to_string(),
        from,
        target: target?.to_string(),
        at,
        replace,
        drill_skip,
    })
}

fn read_integrity(
    errs: &mut Vec<PolicyError>,
    set: &PolicySet,
    f: &mut Fields<'_>,
    templated: &mut Vec<(String, String)>,
) -> Option<Action> {
    let of = f.req_str(errs, "of", "of = \"ID\" of the restore step to check");
    // Of an rds_restore step: which source's manifest counts, and where the instance is.
    let source = f.opt_str(errs, "source").map(String::from);
    if let Some(s) = &source {
        match set.sources.get(s) {
            None => f.error(
                errs,
                "source",
                format!(
                    "unknown source `{s}` (declared: {})",
                    set.sources.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ),
            Some(src) if !matches!(src.config, crate::policy::SourceConfig::Postgres(_)) => f
                .error(
                    errs,
                    "source",
                    format!(
                        "source {s} is a {} source: name the postgres source whose backups' counts the restored instance is compared with",
                        src.config.kind()
                    ),
                ),
            Some(_) => {}
        }
    }
    let target = f.opt_str(errs, "target").map(String::from);
    if let Some(t) = &target {
        templated.push((f.path("target"), t.clone()));
        if !(t.starts_with("postgres://") || t.starts_with("postgresql://")) {
            f.error(
                errs,
                "target",
                format!(
                    "`{t}`: name the restored database by URL, e.g. \"postgres://USER@${{steps.rds.outputs.endpoint}}:${{steps.rds.outputs.port}}/DB\""
                ),
            );
        }
    }
    if source.is_some() != target.is_some() {
        f.error(
            errs,
            if source.is_none() { "source" } else { "target" },
            "source and target go together (checking an rds_restore step: the postgres source whose manifest counts, and the restored database's URL)",
        );
    }
    let tolerance = match f.opt_value("tolerance") {
        None => None,
        Some(toml::Value::Integer(n)) if *n >= 0 => Some(CountTolerance::Rows(*n as u64)),
        Some(toml::Value::String(t)) => {
            let parsed = match t.trim().strip_suffix('%') {
                Some(p) => p
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=100.0).contains(p))
                    .map(CountTolerance::Percent),
                None => t.trim().parse::<u64>().ok().map(CountTolerance::Rows),
            };
            if parsed.is_none() {
                f.error(
                    errs,
                    "tolerance",
                    format!("`{t}`: write a percentage (\"2%\") or a number of rows (100)"),
                );
            }
            parsed
        }
        Some(other) => {
            f.error(
                errs,
                "tolerance",
                format!("`{other}`: write a percentage (\"2%\") or a number of rows (100)"),
            );
            None
        }
    };
    let mut queries = BTreeMap::new();
    if let Some(t) = f.opt_table(errs, "queries") {
        for (k, v) in t {
            match v.as_str() {
                Some(q) => {
                    queries.insert(k.clone(), q.to_string());
                }
                None => f.error(
                    errs,
                    &format!("queries.{k}"),
                    "expected an SQL query text returning one value",
                ),
            }
        }
    }
    let freshness = f.opt_str(errs, "freshness").map(String::from);
    let mut min = BTreeMap::new();
    if let Some(t) = f.opt_table(errs, "min") {
        for (k, v) in t {
            match v.as_integer() {
                Some(n) if n >= 0 && queries.contains_key(k) => {
                    min.insert(k.clone(), n as u64);
                }
                Some(n) if n >= 0 => f.error(
                    errs,
                    &format!("min.{k}"),
                    format!(
                        "no query named `{k}` (queries: {})",
                        queries.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ),
                _ => f.error(errs, &format!("min.{k}"), "expected a whole number >= 0"),
            }
        }
    }
    Some(Action::Integrity {
        of: of?.to_string(),
        source,
        target,
        tolerance,
        queries,
        freshness,
        min,
    })
}

fn read_command(
    errs: &mut Vec<PolicyError>,
    f: &mut Fields<'_>,
    templated: &mut Vec<(String, String)>,
) -> Option<Action> {
    let argv: Vec<String> = match f.str_list(errs, "argv") {
        Some(a) if !a.is_empty() => a.into_iter().map(String::from).collect(),
        Some(_) => {
            f.error(errs, "argv", "empty (name the program and its arguments)");
            Vec::new()
        }
        None => {
            if f.opt_value("argv").is_none() {
                f.error(
                    errs,
                    "argv",
                    "missing (add argv = [\"kubectl\", \"scale\", ...]; no shell is involved)",
                );
            }
            Vec::new()
        }
    };
    for (i, a) in argv.iter().enumerate() {
        templated.push((format!("{}[{i}]", f.path("argv")), a.clone()));
    }
    let drill = match f.opt_value("drill") {
        None => {
            f.error(
                errs,
                "drill",
                "missing drill behaviour (add drill = \"skip\", \"run\" or { args = [...] }, so that a drill never touches production by accident)",
            );
            None
        }
        Some(toml::Value::String(s)) if s == "skip" => Some(DrillCommand::Skip),
        Some(toml::Value::String(s)) if s == "run" => Some(DrillCommand::Run),
        Some(toml::Value::Table(t)) if t.len() == 1 && t.contains_key("args") => {
            match t["args"].as_array().map(|a| {
                a.iter()
                    .map(|v| v.as_str().map(String::from))
                    .collect::<Option<Vec<_>>>()
            }) {
                Some(Some(args)) if !args.is_empty() => {
                    for (i, a) in args.iter().enumerate() {
                        templated.push((format!("{}.args[{i}]", f.path("drill")), a.clone()));
                    }
                    Some(DrillCommand::Args(args))
                }
                _ => {
                    f.error(
                        errs,
                        "drill.args",
                        "expected a non-empty list of strings (program and arguments)",
                    );
                    None
                }
            }
        }
        Some(other) => {
            f.error(
                errs,
                "drill",
                format!("`{other}`: write \"skip\", \"run\" or {{ args = [\"program\", ...] }}"),
            );
            None
        }
    };
    let undo = match f.str_list(errs, "undo") {
        Some(u) if u.is_empty() => {
            f.error(errs, "undo", "empty (name the program and its arguments)");
            None
        }
        Some(u) => Some(u.into_iter().map(String::from).collect::<Vec<_>>()),
        None => None,
    };
    if let Some(u) = &undo {
        for (i, a) in u.iter().enumerate() {
            templated.push((format!("{}[{i}]", f.path("undo")), a.clone()));
        }
    }
    Some(Action::Command {
        argv,
        drill: drill?,
        undo,
    })
}

/// Cross-step checks: duplicate and unknown ids, cycles, references, `of`.
fn check_graph(errs: &mut Vec<PolicyError>, file: &Path, steps: &[RawStep]) {
    let mut ids: BTreeMap<&str, &RawStep> = BTreeMap::new();
    for s in steps {
        if let Some(id) = &s.id
            && ids.insert(id, s).is_some()
        {
            errs.push(err(
                file,
                format!("{}.id", s.field),
                format!("step id `{id}` used twice; give each step its own id"),
            ));
        }
    }
    let known = || ids.keys().copied().collect::<Vec<_>>().join(", ");
    for s in steps {
        for (i, a) in s.after.iter().enumerate() {
            if !ids.contains_key(a.as_str()) {
                errs.push(err(
                    file,
                    format!("{}.after[{i}]", s.field),
                    format!("unknown step `{a}` (steps: {})", known()),
                ));
            }
        }
    }
    // Cycles, each printed once as a -> b -> a.
    let mut reported: BTreeSet<BTreeSet<&str>> = BTreeSet::new();
    for s in steps {
        let Some(id) = s.id.as_deref() else { continue };
        if let Some(cycle) = find_cycle(id, &ids) {
            let members: BTreeSet<&str> = cycle.iter().copied().collect();
            if reported.insert(members) {
                errs.push(err(
                    file,
                    format!("{}.after", s.field),
                    format!(
                        "cycle {} (a step cannot wait for itself; remove one of these `after` entries)",
                        cycle.join(" -> ")
                    ),
                ));
            }
        }
    }
    for s in steps {
        let ancestors =
            s.id.as_deref()
                .map(|id| ancestors(id, &ids))
                .unwrap_or_default();
        for (field, text) in &s.templated {
            for inner in references(text) {
                let Some((rid, key)) = parse_ref(inner) else {
                    errs.push(err(
                        file,
                        field,
                        format!("`${{{inner}}}`: write references as ${{steps.ID.outputs.KEY}}"),
                    ));
                    continue;
                };
                let Some(r) = ids.get(rid) else {
                    errs.push(err(
                        file,
                        field,
                        format!("`${{{inner}}}`: unknown step `{rid}` (steps: {})", known()),
                    ));
                    continue;
                };
                if !ancestors.contains(rid) {
                    errs.push(err(
                        file,
                        field,
                        format!(
                            "`${{{inner}}}`: step `{rid}` does not run before this one (add it to after)"
                        ),
                    ));
                }
                let mut keys: Vec<String> = outputs_of(r.kind.as_deref().unwrap_or(""))
                    .iter()
                    .map(|k| k.to_string())
                    .collect();
                if let Some(Step {
                    action: Action::Integrity { queries, .. },
                    ..
                }) = &r.step
                {
                    keys.extend(queries.keys().cloned());
                }
                if !keys.iter().any(|k| k == key) {
                    errs.push(err(
                        file,
                        field,
                        format!(
                            "`${{{inner}}}`: step `{rid}` has no output `{key}` (its outputs: {})",
                            if keys.is_empty() {
                                "none".to_string()
                            } else {
                                keys.join(", ")
                            }
                        ),
                    ));
                }
            }
        }
        if let Some(Step {
            action: Action::Integrity { of, source, .. },
            ..
        }) = &s.step
        {
            match ids.get(of.as_str()) {
                None => errs.push(err(
                    file,
                    format!("{}.of", s.field),
                    format!("unknown step `{of}` (steps: {})", known()),
                )),
                Some(r) if r.kind.as_deref() == Some("rds_restore") && source.is_none() => {
                    errs.push(err(
                        file,
                        format!("{}.source", s.field),
                        format!(
                            "step `{of}` restores an RDS instance: add source = \"POSTGRES-SOURCE\" (whose newest backup's counts it is compared with) and target = \"postgres://...\" (the restored database)"
                        ),
                    ))
                }
                Some(r) if r.kind.as_deref() == Some("restore") && source.is_some() => errs.push(err(
                    file,
                    format!("{}.source", s.field),
                    format!(
                        "step `{of}` is a restore step: its source, target and backup are checked (remove source and target)"
                    ),
                )),
                Some(r) if !matches!(r.kind.as_deref(), Some("restore" | "rds_restore")) => {
                    errs.push(err(
                        file,
                        format!("{}.of", s.field),
                        format!("step `{of}` is not a restore or rds_restore step"),
                    ))
                }
                Some(_) if !ancestors.contains(of.as_str()) => errs.push(err(
                    file,
                    format!("{}.of", s.field),
                    format!("step `{of}` does not run before this one (add it to after)"),
                )),
                Some(_) => {}
            }
        }
    }
}

/// A cycle through `start`, as the ids along it ending with `start` again.
fn find_cycle<'a>(start: &'a str, ids: &BTreeMap<&'a str, &'a RawStep>) -> Option<Vec<&'a str>> {
    fn walk<'a>(
        at: &'a str,
        start: &'a str,
        ids: &BTreeMap<&'a str, &'a RawStep>,
        path: &mut Vec<&'a str>,
        seen: &mut BTreeSet<&'a str>,
    ) -> bool {
        let Some(s) = ids.get(at) else { return false };
        for next in &s.after {
            let next = next.as_str();
            if next == start {
                path.push(start);
                return true;
            }
            if seen.insert(next) {
                path.push(next);
                if walk(next, start, ids, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    // `after` points backwards in time; print the cycle in run order (a runs before b).
    let mut path = vec![start];
    let mut seen = BTreeSet::new();
    walk(start, start, ids, &mut path, &mut seen).then(|| {
        path.reverse();
        path
    })
}

/// Every step that must finish before `id` (transitively).
fn ancestors<'a>(id: &'a str, ids: &BTreeMap<&'a str, &'a RawStep>) -> BTreeSet<&'a str> {
    let mut out = BTreeSet::new();
    let mut todo = vec![id];
    while let Some(at) = todo.pop() {
        if let Some(s) = ids.get(at) {
            for a in &s.after {
                if out.insert(a.as_str()) {
                    todo.push(a.as_str());
                }
            }
        }
    }
    out.remove(id);
    out
}

impl Plan {
    /// The step `id`.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> PolicySet {
        PolicySet::from_texts(
            PathBuf::from("/p"),
            &[(
                PathBuf::from("/p/lifeboat.toml"),
                r#"
[repositories.local]
url = "file:///tmp/r"
[sources.hive]
kind = "sqlite"
path = "/tmp/hive.db"
destinations = ["local"]
"#
                .into(),
            )],
        )
        .unwrap()
    }

    fn check(text: &str) -> std::result::Result<Plan, String> {
        plan_from_text(&set(), Path::new("/p/dr/x.toml"), text).map_err(|e| {
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = check(
            r#"
name = "x"
rto = "5m"
rpo = "1h"
[[steps]]
id = "a"
kind = "command"
argv = ["true"]
after = ["b"]
drill = "skip"
[[steps]]
id = "b"
kind = "command"
argv = ["echo", "${steps.zz.outputs.stdout}"]
after = ["a", "nope"]
[[steps]]
id = "c"
kind = "command"
argv = ["echo", "${steps.a.outputs.nothing}"]
drill = "run"
tiemout = "1m"
"#,
        )
        .unwrap_err();
        assert!(
            e.contains("/p/dr/x.toml: steps.a.after: cycle a -> b -> a")
                && !e.contains("cycle b -> a -> b"),
            "{e}"
        );
        assert!(e.contains("steps.b.after[1]: unknown step `nope`"), "{e}");
        assert!(e.contains("steps.b.drill: missing drill behaviour"), "{e}");
        assert!(
            e.contains("steps.b.argv[1]: `${steps.zz.outputs.stdout}`: unknown step `zz`"),
            "{e}"
        );
        assert!(
            e.contains(
                "steps.c.argv[1]: `${steps.a.outputs.nothing}`: step `a` does not run before"
            ),
            "{e}"
        );
        assert!(e.contains("step `a` has no output `nothing`"), "{e}");
        assert!(
            e.contains("steps.c.tiemout: unknown key (did you mean `timeout`?"),
            "{e}"
        );
    }

    #[test]
    fn a_valid_plan_builds() {
        let p = check(
            r#"
name = "x"
rto = "5m"
rpo = "1h"
[[steps]]
id = "r"
kind = "restore"
source = "hive"
target = "data/hive.db"
[[steps]]
id = "i"
kind = "integrity"
of = "r"
after = ["r"]
queries = { users = "SELECT COUNT(*) FROM users" }
min = { users = 1 }
[[steps]]
id = "c"
kind = "command"
argv = ["echo", "${steps.r.outputs.target}", "${steps.i.outputs.users}"]
after = ["i"]
drill = { args = ["true"] }
restores-service = true
"#,
        )
        .unwrap();
        assert_eq!(p.rto_secs, 300);
        assert_eq!(p.steps.len(), 3);
        assert!(p.steps[2].restores_service);
    }

    #[test]
    fn substitution_uses_published_outputs() {
        let mut o = BTreeMap::new();
        o.insert(
            "r".to_string(),
            BTreeMap::from([("target".to_string(), "/x.db".to_string())]),
        );
        assert_eq!(
            substitute("db=${steps.r.outputs.target}!", &o).unwrap(),
            "db=/x.db!"
        );
        assert!(substitute("${steps.r.outputs.nope}", &o).is_err());
        assert_eq!(
            substitute_known("${steps.x.outputs.y} ${steps.r.outputs.target}", &o),
            "${steps.x.outputs.y} /x.db"
        );
    }

    /// A plan shipped in policies/bizra/dr, validated against the bizra set.
    fn bizra_plan(name: &str) -> Plan {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/bizra");
        let set = PolicySet::load(&root).unwrap();
        load_plans(&set)
            .unwrap()
            .into_iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("policies/bizra/dr/{name}.toml"))
    }

    #[test]
    fn the_shipped_node_plan_is_valid_in_the_bizra_set() {
        let p = bizra_plan("node0-sqlite");
        assert_eq!((p.rto_secs, p.rpo_secs), (300, 3600));
        let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["scale-down", "restore-hive", "integrity", "scale-up"]);
        // The runbook's deployment, namespace and database; back to the count found.
        let Action::KubernetesScale(up) = &p.step("scale-up").unwrap().action else {
            panic!("scale-up is not a kubernetes_scale step")
        };
        assert_eq!(
            (up.deployment.as_str(), up.namespace.as_str()),
            ("bizra-apex", "bizra-testnet")
        );
        assert_eq!(up.replicas, "${steps.scale-down.outputs.replicas-before}");
        let Action::Restore { target, .. } = &p.step("restore-hive").unwrap().action else {
            panic!("restore-hive is not a restore step")
        };
        assert_eq!(target, ".hive-mind/hive.db");
    }

    #[test]
    fn the_shipped_region_plan_has_the_runbooks_shape() {
        let p = bizra_plan("region-failover");
        assert_eq!((p.rto_secs, p.rpo_secs), (3600, 6 * 3600));
        assert_eq!(p.region.as_deref(), Some("us-west-2"));
        let after = |id: &str| p.step(id).unwrap().after.clone();
        // Nothing is restored before the DR cluster answers; the database waits for the
        // DR infrastructure, the repository restores start together with it; Helm
        // waits for all of them; DNS goes last.
        assert!(after("dr-cluster").is_empty());
        assert_eq!(after("infra"), ["dr-cluster"]);
        assert_eq!(after("rds"), ["infra"]);
        for restore in ["neo4j", "redis", "faiss"] {
            assert_eq!(after(restore), ["dr-cluster"], "{restore}");
        }
        assert_eq!(after("helm"), ["rds", "neo4j", "redis", "faiss"]);
        // The runbook's check of the restored database, against the newest backup.
        let Action::Integrity {
            of,
            source,
            tolerance,
            freshness,
            ..
        } = &p.step("integrity-postgres").unwrap().action
        else {
            panic!("integrity-postgres is not an integrity step")
        };
        assert_eq!((of.as_str(), source.as_deref()), ("rds", Some("postgres")));
        assert_eq!(*tolerance, Some(CountTolerance::Percent(5.0)));
        assert!(freshness.as_deref().unwrap().contains("max(created_at)"));
        // A drill plans the infrastructure instead of applying it.
        let Action::Command { argv, drill, .. } = &p.step("infra").unwrap().action else {
            panic!("infra is not a command step")
        };
        assert!(argv[0] == "terraform" && argv.contains(&"apply".to_string()));
        assert!(matches!(drill, DrillCommand::Args(a) if a.contains(&"plan".to_string())));
        let dns = p.step("dns").unwrap();
        assert!(dns.restores_service);
        assert!(after("dns").iter().all(|a| a.starts_with("integrity")));
        assert!(p.steps.iter().all(|s| s.on_failure == OnFailure::Rollback));
    }

    #[test]
    fn cloud_steps_are_checked_field_by_field() {
        let e = check(
            r#"
name = "x"
rto = "1h"
rpo = "6h"
[[steps]]
id = "rds"
kind = "rds_restore"
instance = "bizra-prod"
tag = { "lifeboat:source" = "rds" }
target = "Bad--Name-"
[[steps]]
id = "helm"
kind = "helm"
after = ["rds"]
release = "bizra"
chart = "charts/bizra"
namespace = "Bizra_NS"
set = { "db.host" = "${steps.rds.outputs.hostname}", replicas = 2 }
[[steps]]
id = "dns"
kind = "route53_failover"
after = ["helm"]
zone = "Z1"
drill = "maybe"
[[steps.records]]
name = "api.bizra.ai"
type = "CNAME"
values = ["a.example"]
failover = "PRIMARY"
[[steps.records]]
name = "www.bizra.ai"
type = "A"
ttl = 60
values = ["192.0.2.1"]
alias = { zone = "Z2", dns-name = "lb.example" }
"#,
        )
        .unwrap_err();
        for want in [
            "steps.rds.region: missing (set region",
            "steps.rds.instance: name the snapshot with exactly one of",
            "steps.rds.target: `Bad--Name-` is not a DB instance identifier",
            "steps.helm.namespace: `Bizra_NS`",
            "steps.helm.set.replicas: expected a string",
            "`${steps.rds.outputs.hostname}`: step `rds` has no output `hostname`",
            "steps.dns.records[0].ttl: missing (add ttl = 60)",
            "steps.dns.records[0].set-identifier: missing",
            "steps.dns.records[1].alias: an alias record has no values and no ttl",
            "steps.dns.drill: `maybe`",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
    }

    #[test]
    fn a_valid_cloud_plan_reads_whole() {
        let p = check(
            r#"
name = "x"
rto = "1h"
rpo = "6h"
region = "us-west-2"
[[steps]]
id = "rds"
kind = "rds_restore"
tag = { "lifeboat:source" = "rds" }
target = "bizra-dr"
security-groups = ["sg-1"]
[[steps]]
id = "dns"
kind = "route53_failover"
after = ["rds"]
zone = "/hostedzone/Z1"
[[steps.records]]
name = "DB.Bizra.AI"
type = "cname"
ttl = 60
values = ["${steps.rds.outputs.endpoint}"]
"#,
        )
        .unwrap();
        assert_eq!(p.region.as_deref(), Some("us-west-2"));
        let Action::Route53Failover(d) = &p.steps[1].action else {
            panic!("not a route53 step")
        };
        assert_eq!(d.zone, "Z1");
        assert_eq!(d.records[0].name, "db.bizra.ai.");
        assert_eq!(d.records[0].rtype, "CNAME");
        let Action::RdsRestore(r) = &p.steps[0].action else {
            panic!("not an rds step")
        };
        assert_eq!(
            r.select,
            cloud::SnapshotSelect::Tag {
                key: "lifeboat:source".into(),
                value: "rds".into()
            }
        );
    }
}
