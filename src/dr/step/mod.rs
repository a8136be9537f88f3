//! Step executors: each turns a resolved step into its side effect and its outputs.
//!
//! Resolution (references substituted, drill targets renamed, the backup chosen) is
//! separate from execution so that `--dry-run` prints exactly what a run would do, and
//! so that the resolved effect is checkpointed before it is made.

pub mod command;
pub mod helm;
pub mod integrity;
pub mod rds;
pub mod restore;
pub mod route53;
pub mod scale;

use super::Mode;
use super::plan::{Action, DrillCommand, Plan, Step, substitute, substitute_known};
use crate::backup::Context;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Outputs of every finished step, by step id.
pub type Outputs = BTreeMap<String, BTreeMap<String, String>>;

/// A step's side effect, resolved: what will be touched. Checkpointed before it is made,
/// so that rollback and drill teardown know what a crashed run may have created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Effect {
    /// `restore`, `integrity`, `command`, `approval` or `none` (skipped in a drill).
    pub kind: String,
    /// Source (restore, integrity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Target written (restore) or read (integrity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Whether the restore target existed before the run touched it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_existed: Option<bool>,
    /// The backup restored or compared against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// Repository preferred for the restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Command run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// Command that undoes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<Vec<String>>,
    /// Why nothing is done (a drill skipping a command), or what was captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Commands that remove what a drill created (helm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teardown: Option<Vec<Vec<String>>>,
    /// `rds_restore`: the snapshot and the instance restored into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rds: Option<rds::RdsEffect>,
    /// `route53_failover`: the zone, and each record set after and before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<route53::DnsEffect>,
    /// `kubernetes_scale`: the replica count found before and the one scaled to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<scale::ScaleEffect>,
}

/// A short digest of a run id, for names a drill creates outside lifeboat (DB
/// instances, namespaces, DNS names) where the whole run id would not fit.
pub fn drill_digest(run_id: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(run_id.as_bytes())[..4])
}

/// `base-drill-DIGEST`, `base` cut so that the whole fits in `max` characters and
/// never ends in `-` (DB identifiers and Kubernetes names both refuse that).
pub fn drill_suffixed(base: &str, run_id: &str, max: usize) -> String {
    let suffix = format!("-drill-{}", drill_digest(run_id));
    let mut cut: String = base.chars().take(max - suffix.len()).collect();
    while cut.ends_with('-') {
        cut.pop();
    }
    format!("{cut}{suffix}")
}

/// The target a drill writes instead of `target`: beside it, suffixed with the run id,
/// so that a drill never overwrites production data.
pub fn drill_target(target: &Path, run_id: &str) -> PathBuf {
    let stem = target
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match target.extension() {
        Some(ext) => format!("{stem}.drill-{run_id}.{}", ext.to_string_lossy()),
        None => format!("{stem}.drill-{run_id}"),
    };
    target.with_file_name(name)
}

/// Resolve `step` for `mode`: references substituted (missing ones are left as written
/// when `lenient`, for dry runs), paths made absolute, drill isolation applied, and the
/// backup of a restore chosen. The AWS and helm kinds read what they will change now
/// (read-only calls), so that it is checkpointed before anything changes.
pub async fn resolve(
    ctx: &Context,
    plan: &Plan,
    step: &Step,
    mode: Mode,
    run_id: &str,
    outputs: &Outputs,
    lenient: bool,
) -> Result<Effect> {
    let sub = |text: &str| -> Result<String> {
        if lenient {
            return Ok(substitute_known(text, outputs));
        }
        substitute(text, outputs).map_err(|e| e.context(format!("step {}", step.id)))
    };
    match &step.action {
        Action::Restore {
            source,
            from,
            target,
            at,
            replace: _,
            drill_skip,
        } => {
            if mode == Mode::Drill && *drill_skip {
                return Ok(Effect {
                    kind: "none".into(),
                    note: Some(format!("skipped in a drill: restore {source}")),
                    ..Effect::default()
                });
            }
            let target = sub(target)?;
            let config = &ctx.policies.source(source)?.config;
            let postgres = matches!(config, crate::policy::SourceConfig::Postgres(_));
            // A database name (Neo4j) is taken as written, never joined onto the policy
            // folder; it counts as existing, so a rollback never deletes anything by it.
            if config.restore_target() == crate::policy::RestoreTarget::Neo4jDatabase {
                if mode == Mode::Drill {
                    return Err(Error::bad_input(format!(
                        "step {}: Neo4j database `{target}` cannot be isolated by a drill (set drill = \"skip\" on the step)",
                        step.id
                    )));
                }
                let backup = restore::choose(ctx, source, from.as_deref(), at)?;
                return Ok(Effect {
                    kind: "restore".into(),
                    source: Some(source.clone()),
                    target_existed: Some(true),
                    target: Some(target),
                    backup_id: Some(backup),
                    from: from.clone(),
                    ..Effect::default()
                });
            }
            let target = if target.contains("://") {
                match mode {
                    Mode::Drill if postgres => {
                        crate::engine::postgres::PostgresEngine::drill_target(
                            &target,
                            &drill_digest(run_id),
                        )?
                    }
                    Mode::Drill => {
                        return Err(Error::bad_input(format!(
                            "step {}: target `{target}`: a drill isolates file, folder and PostgreSQL targets only (set drill = \"skip\" on the step)",
                            step.id
                        )));
                    }
                    Mode::Run => target,
                }
            } else {
                let p = Path::new(&target);
                let p = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    plan.root.join(p)
                };
                let p = if mode == Mode::Drill {
                    drill_target(&p, run_id)
                } else {
                    p
                };
                p.display().to_string()
            };
            let backup = restore::choose(ctx, source, from.as_deref(), at)?;
            Ok(Effect {
                kind: "restore".into(),
                source: Some(source.clone()),
                target_existed: Some(Path::new(&target).exists()),
                target: Some(target),
                backup_id: Some(backup),
                from: from.clone(),
                ..Effect::default()
            })
        }
        // Of an rds_restore step: the database is named by the plan, the counts are
        // those of the source's newest backup.
        Action::Integrity {
            source: Some(source),
            target: Some(target),
            ..
        } => integrity::resolve_instance(ctx, source, &sub(target)?),
        Action::Integrity { of, .. } => {
            let source = match plan.step(of).map(|s| &s.action) {
                Some(Action::Restore { source, .. }) => source.clone(),
                _ => {
                    return Err(Error::bad_input(format!(
                        "step {}: `of` is not a restore step",
                        step.id
                    )));
                }
            };
            let get = |key: &str| outputs.get(of).and_then(|o| o.get(key)).cloned();
            Ok(Effect {
                kind: "integrity".into(),
                source: Some(source),
                target: get("target")
                    .or_else(|| lenient.then(|| format!("${{steps.{of}.outputs.target}}"))),
                backup_id: get("backup-id")
                    .or_else(|| lenient.then(|| format!("${{steps.{of}.outputs.backup-id}}"))),
                ..Effect::default()
            })
        }
        Action::Command { argv, drill, undo } => {
            let chosen = match (mode, drill) {
                (Mode::Run, _) | (Mode::Drill, DrillCommand::Run) => argv.clone(),
                (Mode::Drill, DrillCommand::Args(args)) => args.clone(),
                (Mode::Drill, DrillCommand::Skip) => {
                    return Ok(Effect {
                        kind: "none".into(),
                        note: Some(format!("skipped in a drill: {}", argv.join(" "))),
                        ..Effect::default()
                    });
                }
            };
            let argv = chosen.iter().map(|a| sub(a)).collect::<Result<Vec<_>>>()?;
            // A drill never runs the production undo: it only undoes what it created.
            let undo = match mode {
                Mode::Run => undo
                    .as_ref()
                    .map(|u| u.iter().map(|a| sub(a)).collect::<Result<Vec<_>>>())
                    .transpose()?,
                Mode::Drill => None,
            };
            Ok(Effect {
                kind: "command".into(),
                argv: Some(argv),
                undo,
                ..Effect::default()
            })
        }
        Action::Approval { prompt } => Ok(Effect {
            kind: "approval".into(),
            note: Some(prompt.clone()),
            ..Effect::default()
        }),
        Action::RdsRestore(r) => {
            rds::resolve(
                r,
                plan.region.as_deref(),
                &plan.name,
                &step.id,
                mode == Mode::Drill,
                run_id,
            )
            .await
        }
        Action::Helm(h) => {
            helm::resolve(
                h,
                &plan.root,
                step.timeout_secs,
                mode == Mode::Drill,
                run_id,
                &sub,
            )
            .await
        }
        Action::Route53Failover(d) => route53::resolve(d, mode == Mode::Drill, run_id, &sub).await,
        Action::KubernetesScale(k) => scale::resolve(k, &step.id, mode == Mode::Drill, &sub).await,
    }
}

/// One attempt at a step, as the runner makes it.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Run or drill.
    pub mode: Mode,
    /// Stops a restore from outside (a timed-out step); its swap goes through it.
    pub control: crate::engine::RestoreControl,
    /// Where a restore records that it swapped its copy in (see
    /// [`crate::engine::control`]).
    pub marker: PathBuf,
}

/// Make the effect; returns the step's outputs.
pub async fn execute(
    ctx: &Context,
    step: &Step,
    effect: &Effect,
    journal_dir: &Path,
    attempt: &Attempt,
) -> Result<BTreeMap<String, String>> {
    match &step.action {
        Action::Restore { replace, .. } => restore::run(ctx, effect, *replace, attempt).await,
        Action::Integrity {
            queries,
            freshness,
            min,
            tolerance,
            ..
        } => integrity::run(ctx, effect, queries, freshness.as_deref(), min, *tolerance).await,
        Action::Command { .. } => {
            let argv = effect.argv.as_deref().unwrap_or_default();
            command::run(
                argv,
                std::time::Duration::from_secs(step.timeout_secs),
                &journal_dir.join(format!("{}.out", step.id)),
            )
            .await
        }
        Action::Approval { .. } => Ok(BTreeMap::new()),
        Action::RdsRestore(_) => rds::run(effect, &format!("dr.step.{}.after-call", step.id)).await,
        Action::Helm(h) => {
            helm::run(
                h,
                effect,
                std::time::Duration::from_secs(step.timeout_secs),
                &journal_dir.join(format!("{}.out", step.id)),
            )
            .await
        }
        Action::Route53Failover(_) => {
            route53::run(effect, &format!("dr.step.{}.after-call", step.id)).await
        }
        Action::KubernetesScale(_) => {
            scale::run(
                effect,
                std::time::Duration::from_secs(step.timeout_secs),
                &journal_dir.join(format!("{}.out", step.id)),
            )
            .await
        }
    }
}

/// Remove a file or folder target (and a file's SQLite sidecars); true when something
/// was removed.
pub fn remove_target(target: &str) -> Result<bool> {
    let dir = Path::new(target);
    if dir.is_dir() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
        return Ok(true);
    }
    let mut removed = false;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let p = PathBuf::from(format!("{target}{suffix}"));
        match std::fs::remove_file(&p) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", p.display()), e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_targets_sit_beside_the_real_one() {
        assert_eq!(
            drill_target(Path::new("/d/hive.db"), "r1"),
            PathBuf::from("/d/hive.drill-r1.db")
        );
        assert_eq!(
            drill_target(Path::new("/d/hive"), "r1"),
            PathBuf::from("/d/hive.drill-r1")
        );
    }
}
