//! What a rollback undoes, and in which order: one rule shared by the rollback itself
//! (`dr::runner`) and by `lifeboat dr rollback --dry-run`, so that what is shown before
//! a rollback is exactly what it then does.

use super::report::state;
use super::step::Effect;
use crate::backup::Context;
use crate::catalog::DrStepRow;
use crate::error::{Error, Result};
use serde::Serialize;

/// The steps a rollback undoes, newest first: every step that succeeded; helm and DNS
/// steps that failed or were interrupted after an attempt (their change may have been
/// partly made, and writing back the captured state is harmless when it was not); and
/// restores interrupted while running (their target may have been swapped in).
pub fn pending_undos(rows: Vec<DrStepRow>) -> Vec<DrStepRow> {
    let mut todo: Vec<DrStepRow> = rows
        .into_iter()
        .filter(|r| {
            let kind = serde_json::from_str::<Effect>(&r.effect)
                .map(|e| e.kind)
                .unwrap_or_default();
            match r.state.as_str() {
                state::SUCCEEDED => true,
                state::FAILED | state::RUNNING => {
                    r.attempts > 0 && matches!(kind.as_str(), "helm" | "route53_failover")
                        || r.state == state::RUNNING && kind == "restore"
                }
                _ => false,
            }
        })
        .collect();
    // Newest first; a step interrupted while running (no end) is the newest of all.
    todo.sort_by_key(|r| std::cmp::Reverse((r.finished_at.is_none(), r.finished_at)));
    todo
}

/// One undo a rollback would make (or explicitly not make).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Undo {
    /// Step id.
    pub step: String,
    /// Whether something is deleted or changed (`false`: kept, and said why).
    pub changes: bool,
    /// What is done, e.g. `delete /data/redis (created by the run)`.
    pub what: String,
}

/// What undoing the step of `row` does, as the rollback does it.
pub fn describe(row: &DrStepRow) -> Option<Undo> {
    let effect: Effect = serde_json::from_str(&row.effect).unwrap_or_default();
    let undo = |changes: bool, what: String| {
        Some(Undo {
            step: row.step_id.clone(),
            changes,
            what,
        })
    };
    match effect.kind.as_str() {
        "restore" => {
            let target = effect.target.clone().unwrap_or_default();
            if target.contains("://") {
                undo(
                    false,
                    format!("keep {target}: a database is left as restored"),
                )
            } else if effect.target_existed == Some(false) {
                undo(
                    true,
                    format!(
                        "delete {target} (created by the run: everything written to it since is lost)"
                    ),
                )
            } else {
                undo(
                    false,
                    format!("keep {target}: it existed before the run and was replaced"),
                )
            }
        }
        "command" | "helm" => effect
            .undo
            .as_ref()
            .and_then(|u| undo(true, format!("run `{}`", u.join(" ")))),
        "route53_failover" => {
            let records = effect
                .dns
                .as_ref()
                .map(|d| {
                    d.changes
                        .iter()
                        .map(|c| match &c.before {
                            Some(b) => format!("{} back to {}", b.describe(), b.show()),
                            None => format!("delete {}", c.after.describe()),
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            undo(
                true,
                format!("write back the DNS records captured before the run: {records}"),
            )
        }
        "rds_restore" => undo(
            false,
            format!(
                "keep DB instance {}: deleting a database is not a rollback",
                effect.target.clone().unwrap_or_default()
            ),
        ),
        _ => None,
    }
}

/// What `lifeboat dr rollback RUN` would do, checked as the rollback checks the run.
pub fn preview(ctx: &Context, run_id: &str) -> Result<Vec<Undo>> {
    let run = ctx.catalog.dr_run(Some(run_id))?.ok_or_else(|| {
        Error::bad_input(format!(
            "no DR run `{run_id}` in catalog {} (`lifeboat dr status` shows the newest)",
            ctx.catalog.path().display()
        ))
    })?;
    if run.mode == "drill" {
        return Err(Error::bad_input(format!(
            "run {run_id} is a drill: a drill removes what it created itself (`lifeboat dr teardown {run_id}` after a kill)"
        )));
    }
    if matches!(run.status.as_str(), "rolled-back" | "torn-down") {
        return Err(Error::bad_input(format!(
            "run {run_id} is already {}",
            run.status
        )));
    }
    Ok(pending_undos(ctx.catalog.dr_steps(run_id)?)
        .iter()
        .filter_map(describe)
        .collect())
}
