//! The runner: steps as a DAG, independent ones in parallel, each with its timeout and
//! retries, every state change checkpointed in the catalog.
//!
//! A side effect is bracketed: the resolved effect is checkpointed (`running`) before it
//! is made; once made, its outputs are written to the run's journal file, and only then
//! is the step checkpointed `succeeded`. The failpoints `dr.step.ID.before-effect` and
//! `dr.step.ID.after-effect` sit on either side of the effect. `resume` adopts a step
//! left `running` whose journal file exists (the effect happened) and re-runs one
//! without it (the effect did not complete; a restore is atomic, a command interrupted
//! while running may run again).

use super::Mode;
use super::plan::{Action, OnFailure, Plan, Step};
use super::report::{self, DrReport, Event, state};
use super::step::{self, Effect, Outputs};
use crate::backup::{Context, reconcile};
use crate::catalog::{DrRunRow, DrStepRow};
use crate::error::{Error, ErrorKind, Result};
use crate::failpoint;
use chrono::{DateTime, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::{info, warn};

/// How to run a plan.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Run or drill.
    pub mode: Mode,
    /// Measurements count from here [default: the run's start].
    pub incident_start: Option<DateTime<Utc>>,
    /// Pass approval gates.
    pub yes: bool,
    /// Draw the live DAG view (a terminal), else log lines.
    pub live: bool,
}

/// Live view of the steps: one indicatif line per step on a terminal, log lines otherwise.
struct View {
    bars: Option<(MultiProgress, BTreeMap<String, ProgressBar>)>,
}

impl View {
    fn new(plan: &Plan, live: bool) -> View {
        if !live {
            return View { bars: None };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{spinner} {prefix:<24} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let mut bars = BTreeMap::new();
        for s in &plan.steps {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(style.clone());
            bar.set_prefix(s.id.clone());
            let deps = if s.after.is_empty() {
                String::new()
            } else {
                format!(" (after {})", s.after.join(", "))
            };
            bar.set_message(format!("pending{deps}"));
            bars.insert(s.id.clone(), bar);
        }
        View {
            bars: Some((multi, bars)),
        }
    }

    fn update(&self, step: &str, event: &str, detail: &str) {
        match &self.bars {
            Some((_, bars)) => {
                if let Some(bar) = bars.get(step) {
                    let mut msg = if detail.is_empty() {
                        event.to_string()
                    } else {
                        format!("{event}: {detail}")
                    };
                    // One line per step: a wrapped line would break the redraw.
                    if msg.chars().count() > 90 {
                        msg = msg.chars().take(89).chain(['…']).collect();
                    }
                    bar.set_message(msg);
                    if event == state::RUNNING {
                        bar.enable_steady_tick(Duration::from_millis(120));
                    } else if event != "attempt failed" {
                        bar.disable_steady_tick();
                        bar.tick();
                    }
                }
            }
            None => info!(step, detail, "{event}"),
        }
    }

    fn finish(&self) {
        if let Some((_, bars)) = &self.bars {
            for b in bars.values() {
                b.finish();
            }
        }
    }
}

/// Shared by the step tasks of one run.
struct Run {
    ctx: Arc<Context>,
    plan: Arc<Plan>,
    run_id: String,
    mode: Mode,
    yes: bool,
    journal: PathBuf,
    view: View,
    rows: Mutex<BTreeMap<String, DrStepRow>>,
}

impl Run {
    fn row(&self, id: &str) -> DrStepRow {
        self.rows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .unwrap_or_else(|| DrStepRow {
                run_id: self.run_id.clone(),
                step_id: id.to_string(),
                state: state::PENDING.into(),
                attempts: 0,
                started_at: None,
                finished_at: None,
                effect: "{}".into(),
                outputs: "{}".into(),
                error: None,
            })
    }

    /// Write the checkpoint (and timeline entry) first, then show it.
    fn checkpoint(&self, row: DrStepRow, event: &str, detail: &str) -> Result<()> {
        self.ctx
            .catalog
            .dr_checkpoint(&row, self.ctx.clock.now(), event, detail)?;
        self.view.update(&row.step_id, event, detail);
        self.rows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(row.step_id.clone(), row);
        Ok(())
    }

    fn event(&self, step: &str, event: &str, detail: &str) -> Result<()> {
        self.ctx
            .catalog
            .dr_event(&self.run_id, self.ctx.clock.now(), step, event, detail)?;
        self.view.update(step, event, detail);
        Ok(())
    }

    fn journal_file(&self, step: &str) -> PathBuf {
        self.journal.join(format!("{step}.done.json"))
    }

    /// Written by a restore itself right after its swap (see [`crate::engine::control`]).
    fn marker_file(&self, step: &str) -> PathBuf {
        self.journal.join(format!("{step}.restored.json"))
    }

    /// Every step's row as checkpointed, in step-id order.
    fn rows(&self) -> Vec<DrStepRow> {
        self.rows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn outputs(&self) -> Outputs {
        self.rows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|r| r.state == state::SUCCEEDED)
            .map(|r| {
                (
                    r.step_id.clone(),
                    serde_json::from_str(&r.outputs).unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// A new run id: the plan, the start time, and a random suffix so that two runs in
/// the same second differ.
fn new_run_id(plan: &str, now: DateTime<Utc>) -> String {
    format!(
        "{plan}-{}-{:04x}",
        now.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u16>()
    )
}

/// The folder of a run's journal files (beside the catalog).
fn journal_dir(ctx: &Context, run_id: &str) -> PathBuf {
    ctx.catalog
        .path()
        .parent()
        .unwrap_or(Path::new("."))
        .join("dr")
        .join(run_id)
}

/// An exclusive lock on a file, held while this process drives a run: a second process
/// (another real run of the same plan, or a resume of the same run) is refused instead
/// of repeating side effects. The OS releases it when the process dies, so a crash never
/// leaves it behind.
struct RunLock {
    _file: std::fs::File,
}

fn lock(path: &Path, what: &str) -> Result<RunLock> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(RunLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
            ErrorKind::Locked,
            format!(
                "{what} is being run by another lifeboat process (lock {})",
                path.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::io(format!("locking {}", path.display()), e))
        }
    }
}

/// The lock of a run: per plan for real runs (they act on the same targets), per run
/// for drills (each is isolated from the others).
fn run_lock(ctx: &Context, plan: &str, mode: Mode, run_id: &str) -> Result<RunLock> {
    let base = ctx
        .catalog
        .path()
        .parent()
        .unwrap_or(Path::new("."))
        .join("dr");
    match mode {
        Mode::Run => lock(&base.join(format!("{plan}.lock")), &format!("plan {plan}")),
        Mode::Drill => lock(&base.join(run_id).join("lock"), &format!("drill {run_id}")),
    }
}

/// Sources restored by the plan, for reconciling the catalog with storage first.
fn plan_sources(plan: &Plan) -> Vec<String> {
    let set: BTreeSet<String> = plan
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Restore { source, .. } => Some(source.clone()),
            // An integrity step of an RDS restore compares with this source's backups.
            Action::Integrity {
                source: Some(source),
                ..
            } => Some(source.clone()),
            _ => None,
        })
        .collect();
    set.into_iter().collect()
}

/// Start a run (or drill) of `plan`.
pub async fn start(ctx: Arc<Context>, plan: Plan, opts: RunOptions) -> Result<DrReport> {
    let now = ctx.clock.now();
    if let Some(t) = opts.incident_start
        && t > now
    {
        return Err(Error::bad_input(format!(
            "--incident-start {}: in the future (now is {}); the incident began before its recovery",
            t.to_rfc3339(),
            now.to_rfc3339()
        )));
    }
    let run_id = new_run_id(&plan.name, now);
    let _lock = run_lock(&ctx, &plan.name, opts.mode, &run_id)?;
    // Two real runs of one plan would act on the same targets.
    if opts.mode == Mode::Run
        && let Some(open) = ctx.catalog.dr_unfinished(&plan.name, "run")?.first()
    {
        return Err(Error::new(
            ErrorKind::Locked,
            format!(
                "run {open} of plan {} is unfinished: continue it with `lifeboat dr resume {open}` (see `lifeboat dr status {open}`)",
                plan.name
            ),
        ));
    }
    reconcile::reconcile_sources(&ctx, &plan_sources(&plan)).await?;
    let row = DrRunRow {
        run_id: run_id.clone(),
        plan: plan.name.clone(),
        mode: opts.mode.as_str().into(),
        started_at: now,
        incident_start: opts.incident_start.unwrap_or(now),
        finished_at: None,
        status: "running".into(),
        plan_json: serde_json::to_string(&plan).expect("plans serialise"),
        report: None,
    };
    ctx.catalog.dr_insert_run(&row)?;
    ctx.catalog.dr_event(
        &run_id,
        now,
        "",
        "started",
        &format!("{} of plan {}", opts.mode.as_str(), plan.name),
    )?;
    info!(run = %run_id, plan = %plan.name, mode = opts.mode.as_str(), "DR run started");
    drive(ctx, row, plan, opts.yes, opts.live).await
}

/// Continue a run that crashed, was killed, or waits at an approval gate.
pub async fn resume(ctx: Arc<Context>, run_id: &str, yes: bool, live: bool) -> Result<DrReport> {
    let run = find_run(&ctx, Some(run_id))?;
    if !matches!(run.status.as_str(), "running" | "waiting") {
        return Err(Error::bad_input(format!(
            "run {run_id} is {} and cannot be resumed (only running or waiting runs can; start a new one with `lifeboat dr run {}`)",
            run.status, run.plan
        )));
    }
    let plan: Plan = serde_json::from_str(&run.plan_json)
        .map_err(|e| Error::failed(format!("run {run_id}: stored plan unreadable: {e}")))?;
    let mode = if run.mode == "drill" {
        Mode::Drill
    } else {
        Mode::Run
    };
    let _lock = run_lock(&ctx, &plan.name, mode, run_id)?;
    ctx.catalog
        .dr_event(run_id, ctx.clock.now(), "", "resumed", "")?;
    ctx.catalog.dr_update_run(run_id, "running", None, None)?;
    drive(ctx, run, plan, yes, live).await
}

fn find_run(ctx: &Context, run_id: Option<&str>) -> Result<DrRunRow> {
    ctx.catalog.dr_run(run_id)?.ok_or_else(|| match run_id {
        Some(id) => Error::bad_input(format!(
            "no DR run `{id}` in catalog {} (`lifeboat dr status` shows the newest)",
            ctx.catalog.path().display()
        )),
        None => Error::bad_input("no DR run yet (start one with `lifeboat dr run PLAN`)"),
    })
}

async fn drive(
    ctx: Arc<Context>,
    run_row: DrRunRow,
    plan: Plan,
    yes: bool,
    live: bool,
) -> Result<DrReport> {
    let mode = if run_row.mode == "drill" {
        Mode::Drill
    } else {
        Mode::Run
    };
    let plan = Arc::new(plan);
    let rows: BTreeMap<String, DrStepRow> = ctx
        .catalog
        .dr_steps(&run_row.run_id)?
        .into_iter()
        .map(|r| (r.step_id.clone(), r))
        .collect();
    let run = Arc::new(Run {
        journal: journal_dir(&ctx, &run_row.run_id),
        ctx: ctx.clone(),
        plan: plan.clone(),
        run_id: run_row.run_id.clone(),
        mode,
        yes,
        view: View::new(&plan, live),
        rows: Mutex::new(rows),
    });
    std::fs::create_dir_all(&run.journal)
        .map_err(|e| Error::io(format!("creating {}", run.journal.display()), e))?;
    recover(&run).await?;

    let mut tasks: JoinSet<(String, Result<()>)> = JoinSet::new();
    let mut in_flight: BTreeSet<String> = BTreeSet::new();
    let mut stopping = false;
    let mut rollback = false;
    loop {
        if !stopping {
            for s in &plan.steps {
                if in_flight.contains(&s.id) || run.row(&s.id).state != state::PENDING {
                    continue;
                }
                let deps: Vec<String> = s.after.iter().map(|a| run.row(a).state).collect();
                if deps.iter().any(|d| {
                    matches!(
                        d.as_str(),
                        state::FAILED | state::INTEGRITY_FAILED | state::BLOCKED
                    )
                }) {
                    let mut row = run.row(&s.id);
                    row.state = state::BLOCKED.into();
                    run.checkpoint(row, state::BLOCKED, "a step before it failed")?;
                    continue;
                }
                if deps
                    .iter()
                    .all(|d| matches!(d.as_str(), state::SUCCEEDED | state::SKIPPED))
                {
                    in_flight.insert(s.id.clone());
                    let (run, step) = (run.clone(), s.clone());
                    tasks.spawn(async move {
                        let id = step.id.clone();
                        (id, run_step(&run, &step).await)
                    });
                }
            }
        }
        // Blocking can cascade: loop until nothing new is blocked before waiting.
        let Some(joined) = tasks.join_next().await else {
            let newly_blocked = !stopping
                && plan.steps.iter().any(|s| {
                    run.row(&s.id).state == state::PENDING
                        && s.after.iter().any(|a| {
                            matches!(
                                run.row(a).state.as_str(),
                                state::FAILED | state::INTEGRITY_FAILED | state::BLOCKED
                            )
                        })
                });
            if newly_blocked {
                continue;
            }
            break;
        };
        let (id, result) = joined.map_err(|e| Error::failed(format!("step task: {e}")))?;
        in_flight.remove(&id);
        // A checkpoint that could not be written leaves the run's state unknown: stop.
        result?;
        let row = run.row(&id);
        if matches!(row.state.as_str(), state::FAILED | state::INTEGRITY_FAILED) {
            let step = plan.step(&id).expect("step of the plan");
            match step.on_failure {
                OnFailure::Continue => {}
                OnFailure::Abort => stopping = true,
                OnFailure::Rollback => {
                    stopping = true;
                    rollback = true;
                }
            }
        }
    }
    // Aborted: what never started is recorded as blocked, so the report is complete.
    if stopping {
        for s in &plan.steps {
            let mut row = run.row(&s.id);
            if row.state == state::PENDING {
                row.state = state::BLOCKED.into();
                run.checkpoint(row, state::BLOCKED, "the run was aborted")?;
            }
        }
    }
    if rollback {
        roll_back(&run).await?;
    }
    if mode == Mode::Drill {
        teardown_steps(&run).await?;
    }
    run.view.finish();
    finish(&run, &run_row)
}

/// Steps left `running` by a crash: adopt the effect when its journal file says it
/// happened (or, for a restore, the marker the restore wrote after its swap),
/// otherwise remove what the interrupted restore left and run the step again.
/// Approval gates are re-opened.
async fn recover(run: &Run) -> Result<()> {
    let rows = run.rows();
    for mut row in rows {
        match row.state.as_str() {
            state::RUNNING => {
                let journal = run.journal_file(&row.step_id);
                match std::fs::read_to_string(&journal) {
                    Ok(text) => {
                        row.state = state::SUCCEEDED.into();
                        row.outputs = text;
                        row.finished_at = Some(run.ctx.clock.now());
                        run.checkpoint(
                            row,
                            state::SUCCEEDED,
                            "recovered: the effect completed before the interruption",
                        )?;
                    }
                    Err(_) => match restored_before_journal(run, &row) {
                        Some(outputs) => {
                            row.state = state::SUCCEEDED.into();
                            row.outputs =
                                serde_json::to_string(&outputs).expect("outputs serialise");
                            row.finished_at = Some(run.ctx.clock.now());
                            run.checkpoint(
                                row,
                                state::SUCCEEDED,
                                "recovered: the restore recorded its swap before the interruption",
                            )?;
                        }
                        None => {
                            sweep_interrupted(run, &row).await?;
                            row.state = state::PENDING.into();
                            run.checkpoint(
                                row,
                                state::PENDING,
                                "interrupted before its effect completed: runs again",
                            )?;
                        }
                    },
                }
            }
            state::WAITING if run.yes => {
                row.state = state::PENDING.into();
                run.checkpoint(row, state::PENDING, "approval given (--yes)")?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// A restore interrupted after its swap but before its journal file was written: the
/// restore itself recorded the swap in its marker file (written inside the swap's
/// fence, see [`crate::engine::control`]), which holds the step's outputs. Nothing
/// else counts as proof: a target folder that exists may hold only staging copies.
fn restored_before_journal(run: &Run, row: &DrStepRow) -> Option<BTreeMap<String, String>> {
    let effect: Effect = serde_json::from_str(&row.effect).unwrap_or_default();
    if effect.kind != "restore" {
        return None;
    }
    let text = std::fs::read(run.marker_file(&row.step_id)).ok()?;
    let outputs: BTreeMap<String, String> = serde_json::from_slice(&text).ok()?;
    // The marker of this step's restore, of the backup it was resolved to.
    (outputs.get("backup-id") == effect.backup_id.as_ref()
        && outputs.get("target") == effect.target.as_ref())
    .then_some(outputs)
}

/// Remove the staging copies an interrupted restore step left beside its target (its
/// process is dead: this one holds the run's lock).
async fn sweep_interrupted(run: &Run, row: &DrStepRow) -> Result<()> {
    let effect: Effect = serde_json::from_str(&row.effect).unwrap_or_default();
    let (Some(source), Some(target)) = (&effect.source, &effect.target) else {
        return Ok(());
    };
    if effect.kind != "restore" {
        return Ok(());
    }
    let Ok(src) = run.ctx.policies.source(source) else {
        return Ok(());
    };
    let engine = crate::engine::for_source(src);
    let target = target.clone();
    let removed = tokio::task::spawn_blocking(move || engine.sweep_staging(&target))
        .await
        .map_err(|e| Error::failed(format!("sweeping staging copies: {e}")))?;
    match removed {
        Ok(removed) if !removed.is_empty() => run.event(
            &row.step_id,
            "staging removed",
            &format!("left by the interrupted restore: {}", removed.join(", ")),
        ),
        Ok(_) => Ok(()),
        // The next attempt sweeps again before it stages.
        Err(e) => run.event(&row.step_id, "staging not removed", &e.to_string()),
    }
}

fn write_journal(path: &Path, outputs: &BTreeMap<String, String>) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string(outputs).expect("outputs serialise");
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(tmp.display(), e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(tmp.display(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path.display(), e))
}

/// One step, from resolution to its final checkpoint. Errors returned are the
/// runner's own (a checkpoint could not be written); step failures are states.
async fn run_step(run: &Run, step: &Step) -> Result<()> {
    let mut row = run.row(&step.id);
    let now = run.ctx.clock.now();
    row.started_at = row.started_at.or(Some(now));
    // A step interrupted by a crash runs again with the effect it was resolved to the
    // first time: the same backup or snapshot, and above all the same captured state
    // (DNS records, helm revision) that a rollback returns to. Resolving again would
    // capture what the interrupted attempt had already changed.
    let earlier: Option<Effect> = (row.attempts > 0)
        .then(|| serde_json::from_str::<Effect>(&row.effect).ok())
        .flatten()
        .filter(|e| !e.kind.is_empty() && e.kind != "none");
    let resolved = match earlier {
        Some(e) => Ok(e),
        None => {
            step::resolve(
                &run.ctx,
                &run.plan,
                step,
                run.mode,
                &run.run_id,
                &run.outputs(),
                false,
            )
            .await
        }
    };
    let effect = match resolved {
        Ok(e) => e,
        Err(e) => {
            row.state = fail_state(&e).into();
            row.error = Some(e.to_string());
            row.finished_at = Some(run.ctx.clock.now());
            return run.checkpoint(row, state::FAILED, &e.to_string());
        }
    };
    row.effect = serde_json::to_string(&effect).expect("effects serialise");
    if effect.kind == "none" {
        row.state = state::SKIPPED.into();
        row.finished_at = Some(run.ctx.clock.now());
        let note = effect.note.clone().unwrap_or_default();
        return run.checkpoint(row, state::SKIPPED, &note);
    }
    if effect.kind == "approval" && run.mode == Mode::Run && !run.yes {
        row.state = state::WAITING.into();
        let msg = format!(
            "{}: approve with `lifeboat dr resume {} --yes`",
            effect.note.clone().unwrap_or_default(),
            run.run_id
        );
        return run.checkpoint(row, state::WAITING, &msg);
    }
    let attempts = 1 + step.retries;
    for attempt in 1..=attempts {
        row.state = state::RUNNING.into();
        row.attempts += 1;
        row.error = None;
        run.checkpoint(
            row.clone(),
            state::RUNNING,
            &describe(&effect, attempt, attempts),
        )?;
        failpoint::hit(&format!("dr.step.{}.before-effect", step.id));
        // A marker of an earlier attempt must not vouch for this one.
        let marker = run.marker_file(&step.id);
        let _ = std::fs::remove_file(&marker);
        let attempt_ctl = step::Attempt {
            mode: run.mode,
            control: crate::engine::RestoreControl::new(),
            marker,
        };
        let timeout = Duration::from_secs(step.timeout_secs);
        let timed_out = || {
            Error::failed(format!(
                "step {} did not finish within {}s (raise its timeout)",
                step.id, step.timeout_secs
            ))
            .retryable(true)
        };
        let work = step::execute(&run.ctx, step, &effect, &run.journal, &attempt_ctl);
        tokio::pin!(work);
        let result = match tokio::time::timeout(timeout, &mut work).await {
            Ok(r) => r,
            // A restore runs on a blocking thread that dropping the future would leave
            // running, racing the retry or the rollback on the same target: cancel it and
            // wait until it has stopped (it checks between chunks and before its swap).
            Err(_) if effect.kind == "restore" => {
                let swapped = attempt_ctl.control.cancel(format!(
                    "step {} timed out after {}s",
                    step.id, step.timeout_secs
                ));
                run.event(
                    &step.id,
                    "timed out",
                    "waiting for the restore to stop before anything else touches its target",
                )?;
                let late = work.await;
                if swapped {
                    // The swap had happened: the copy is in place, the attempt finished.
                    late
                } else {
                    run.event(&step.id, "attempt stopped", "the target was not replaced")?;
                    Err(timed_out())
                }
            }
            Err(_) => Err(timed_out()),
        };
        match result {
            Ok(outputs) => {
                write_journal(&run.journal_file(&step.id), &outputs)?;
                failpoint::hit(&format!("dr.step.{}.after-effect", step.id));
                row.state = state::SUCCEEDED.into();
                row.outputs = serde_json::to_string(&outputs).expect("outputs serialise");
                row.finished_at = Some(run.ctx.clock.now());
                let detail = outputs
                    .iter()
                    .filter(|(k, _)| k.as_str() != "stdout")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                return run.checkpoint(row, state::SUCCEEDED, &detail);
            }
            // A count that differs will differ again: no retry.
            Err(e) if attempt < attempts && e.kind() != ErrorKind::Integrity => {
                warn!(step = %step.id, attempt, error = %e, "step failed; retrying");
                run.event(&step.id, "attempt failed", &e.to_string())?;
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            Err(e) => {
                row.state = fail_state(&e).into();
                row.error = Some(e.to_string());
                row.finished_at = Some(run.ctx.clock.now());
                let st = row.state.clone();
                return run.checkpoint(row, &st, &e.to_string());
            }
        }
    }
    unreachable!("the last attempt returns")
}

fn fail_state(e: &Error) -> &'static str {
    if e.kind() == ErrorKind::Integrity {
        state::INTEGRITY_FAILED
    } else {
        state::FAILED
    }
}

fn describe(effect: &Effect, attempt: u32, attempts: u32) -> String {
    let what = match effect.kind.as_str() {
        "restore" => format!(
            "restore {} {} -> {}",
            effect.source.as_deref().unwrap_or(""),
            effect.backup_id.as_deref().unwrap_or(""),
            effect.target.as_deref().unwrap_or("")
        ),
        "integrity" => format!("check {}", effect.target.as_deref().unwrap_or("")),
        "command" | "helm" => effect.argv.as_deref().unwrap_or_default().join(" "),
        "rds_restore" => effect
            .rds
            .as_ref()
            .map(|r| {
                format!(
                    "restore snapshot {} -> DB instance {} ({})",
                    r.snapshot, r.target, r.region
                )
            })
            .unwrap_or_default(),
        "route53_failover" => effect
            .dns
            .as_ref()
            .map(|d| {
                format!(
                    "UPSERT {} in zone {}",
                    d.changes
                        .iter()
                        .map(|c| c.after.describe())
                        .collect::<Vec<_>>()
                        .join(", "),
                    d.zone
                )
            })
            .unwrap_or_default(),
        other => other.to_string(),
    };
    if attempts > 1 {
        format!("{what} (attempt {attempt}/{attempts})")
    } else {
        what
    }
}

/// Undo, newest first, what the run did: restore targets it created are removed,
/// commands with an `undo` have it run, helm releases go back to the revision captured
/// before the run (or are uninstalled), DNS records go back to the records captured
/// before the run. A restore that replaced an existing target cannot be undone, and a
/// restored RDS instance is kept (deleting a database is not a rollback); the timeline
/// says so. Helm and DNS steps that failed or were interrupted are undone too: their
/// change may have been partly made, and writing back the captured state is harmless
/// when it was not. Returns how many undos failed.
async fn roll_back(run: &Run) -> Result<usize> {
    run.event("", "rollback", "undoing completed steps, newest first")?;
    // One rule for what is undone, shared with `dr rollback --dry-run`.
    let todo = super::undo::pending_undos(run.rows());
    let mut failures = 0;
    for mut row in todo {
        let effect: Effect = serde_json::from_str(&row.effect).unwrap_or_default();
        let keep_state = row.state == state::FAILED;
        let mark = |run: &Run, row: &mut DrStepRow, detail: &str| -> Result<()> {
            if keep_state {
                run.event(&row.step_id, "rolled back", detail)
            } else {
                row.state = state::ROLLED_BACK.into();
                run.checkpoint(row.clone(), state::ROLLED_BACK, detail)
            }
        };
        match effect.kind.as_str() {
            "restore" => {
                let target = effect.target.clone().unwrap_or_default();
                if target.contains("://") {
                    run.event(
                        &row.step_id,
                        "not undone",
                        &format!("{target} is a database: it is left as restored"),
                    )?;
                } else if effect.target_existed == Some(false) {
                    step::remove_target(&target)?;
                    mark(run, &mut row, &format!("removed {target}"))?;
                } else {
                    run.event(
                        &row.step_id,
                        "not undone",
                        &format!("{target} existed before the run and was replaced; restore it from an older backup if needed"),
                    )?;
                }
            }
            "command" | "helm" => {
                let Some(undo) = effect.undo.clone() else {
                    continue;
                };
                let timeout = run
                    .plan
                    .step(&row.step_id)
                    .map(|s| s.timeout_secs)
                    .unwrap_or(600);
                let capture = run.journal.join(format!("{}.undo.out", row.step_id));
                match step::command::run(&undo, Duration::from_secs(timeout), &capture).await {
                    Ok(_) => mark(run, &mut row, &undo.join(" "))?,
                    Err(e) => {
                        failures += 1;
                        run.event(&row.step_id, "undo failed", &e.to_string())?
                    }
                }
            }
            "route53_failover" => match step::route53::restore(&effect).await {
                Ok(done) => mark(run, &mut row, &format!("records as before the run: {done}"))?,
                Err(e) => {
                    failures += 1;
                    run.event(&row.step_id, "undo failed", &e.to_string())?
                }
            },
            "rds_restore" if run.mode == Mode::Run => {
                let target = effect.target.clone().unwrap_or_default();
                run.event(
                    &row.step_id,
                    "not undone",
                    &format!("DB instance {target} is kept (delete it with `aws rds delete-db-instance` once it is not needed)"),
                )?;
            }
            _ => {}
        }
    }
    Ok(failures)
}

/// Remove what a drill created, per its checkpointed effects: restore targets, the
/// helm release and namespace, the restored DB instance, the drill DNS records.
/// Returns what was removed.
async fn remove_drill_effects(
    ctx: &Context,
    run_id: &str,
    rows: &[DrStepRow],
) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for row in rows {
        let effect: Effect = serde_json::from_str(&row.effect).unwrap_or_default();
        let mut note = |what: String| -> Result<()> {
            ctx.catalog
                .dr_event(run_id, ctx.clock.now(), &row.step_id, "torn down", &what)?;
            removed.push(what);
            Ok(())
        };
        match effect.kind.as_str() {
            "restore" => match (&effect.target, &effect.source) {
                (Some(target), Some(source)) if target.contains("://") => {
                    let src = ctx.policies.source(source)?;
                    if let crate::policy::SourceConfig::Postgres(cfg) = &src.config
                        && crate::engine::postgres::PostgresEngine::new(cfg.clone())
                            .drop_target(target)
                            .await?
                    {
                        note(format!("dropped database {target}"))?;
                    }
                }
                (Some(target), _) if step::remove_target(target)? => {
                    note(format!("removed {target}"))?;
                }
                _ => {}
            },
            "helm" => {
                for argv in effect.teardown.iter().flatten() {
                    let capture =
                        journal_dir(ctx, run_id).join(format!("{}.teardown.out", row.step_id));
                    match step::command::run(argv, Duration::from_secs(600), &capture).await {
                        Ok(_) => note(argv.join(" "))?,
                        Err(e) => {
                            return Err(e.context(format!("tearing down step {}", row.step_id)));
                        }
                    }
                }
            }
            "rds_restore" => {
                if let Some(what) = step::rds::delete_created(&effect).await? {
                    note(what)?;
                }
            }
            "route53_failover" => {
                let done = step::route53::restore(&effect).await?;
                if done != "nothing to restore" {
                    note(format!("drill records: {done}"))?;
                }
            }
            _ => {}
        }
    }
    Ok(removed)
}

async fn teardown_steps(run: &Run) -> Result<()> {
    remove_drill_effects(&run.ctx, &run.run_id, &run.rows()).await?;
    run.event("", "torn down", "everything the drill created is removed")
}

fn finish(run: &Run, run_row: &DrRunRow) -> Result<DrReport> {
    let rows = run.rows();
    let states: Vec<&str> = rows.iter().map(|r| r.state.as_str()).collect();
    let status = if states.contains(&state::WAITING) {
        "waiting"
    } else if run.plan.steps.iter().all(|s| {
        rows.iter().any(|r| {
            r.step_id == s.id && matches!(r.state.as_str(), state::SUCCEEDED | state::SKIPPED)
        })
    }) {
        "succeeded"
    } else {
        "failed"
    };
    let now = run.ctx.clock.now();
    let finished = (status != "waiting").then_some(now);
    run.ctx.catalog.dr_event(&run.run_id, now, "", status, "")?;
    run.ctx
        .catalog
        .dr_update_run(&run.run_id, status, finished, None)?;
    let mut row = run_row.clone();
    row.status = status.into();
    row.finished_at = finished;
    let report = report::build(&run.plan, &row, &rows, events(&run.ctx, &run.run_id)?);
    let text = serde_json::to_string(&report).expect("reports serialise");
    run.ctx
        .catalog
        .dr_update_run(&run.run_id, status, finished, Some(&text))?;
    Ok(report)
}

fn events(ctx: &Context, run_id: &str) -> Result<Vec<Event>> {
    Ok(ctx
        .catalog
        .dr_events(run_id)?
        .into_iter()
        .map(|(at, step, event, detail)| Event {
            at,
            step,
            event,
            detail,
        })
        .collect())
}

/// The report of a run (the newest when `run_id` is `None`), from its checkpoints.
pub fn status(ctx: &Context, run_id: Option<&str>) -> Result<DrReport> {
    let run = find_run(ctx, run_id)?;
    let plan: Plan = serde_json::from_str(&run.plan_json)
        .map_err(|e| Error::failed(format!("run {}: stored plan unreadable: {e}", run.run_id)))?;
    let rows = ctx.catalog.dr_steps(&run.run_id)?;
    Ok(report::build(&plan, &run, &rows, events(ctx, &run.run_id)?))
}

/// Remove what a drill created (for a drill that was killed before its own teardown).
pub async fn teardown(ctx: &Context, run_id: &str) -> Result<Vec<String>> {
    let run = find_run(ctx, Some(run_id))?;
    if run.mode != "drill" {
        return Err(Error::bad_input(format!(
            "run {run_id} is a real run, not a drill: teardown removes only what a drill created (`lifeboat dr rollback {run_id}` undoes a real run)"
        )));
    }
    let removed = remove_drill_effects(ctx, run_id, &ctx.catalog.dr_steps(run_id)?).await?;
    let now = ctx.clock.now();
    ctx.catalog
        .dr_event(run_id, now, "", "torn down", "by `lifeboat dr teardown`")?;
    if run.status == "running" || run.status == "waiting" {
        // Its targets are gone: resuming it would measure nothing real.
        ctx.catalog
            .dr_update_run(run_id, "torn-down", Some(now), None)?;
    }
    Ok(removed)
}

/// Undo a real run on request (`lifeboat dr rollback RUN`): after it finished (a
/// failback), or after a crash instead of resuming it. The run is then `rolled-back`.
/// Returns the report and how many undos failed.
pub async fn rollback(ctx: Arc<Context>, run_id: &str, live: bool) -> Result<(DrReport, usize)> {
    let run_row = find_run(&ctx, Some(run_id))?;
    if run_row.mode == "drill" {
        return Err(Error::bad_input(format!(
            "run {run_id} is a drill: a drill removes what it created itself (`lifeboat dr teardown {run_id}` after a kill)"
        )));
    }
    if matches!(run_row.status.as_str(), "rolled-back" | "torn-down") {
        return Err(Error::bad_input(format!(
            "run {run_id} is already {}",
            run_row.status
        )));
    }
    let plan: Plan = serde_json::from_str(&run_row.plan_json)
        .map_err(|e| Error::failed(format!("run {run_id}: stored plan unreadable: {e}")))?;
    let _lock = run_lock(&ctx, &plan.name, Mode::Run, run_id)?;
    let plan = Arc::new(plan);
    let rows: BTreeMap<String, DrStepRow> = ctx
        .catalog
        .dr_steps(run_id)?
        .into_iter()
        .map(|r| (r.step_id.clone(), r))
        .collect();
    let run = Run {
        journal: journal_dir(&ctx, run_id),
        ctx: ctx.clone(),
        plan: plan.clone(),
        run_id: run_id.to_string(),
        mode: Mode::Run,
        yes: false,
        view: View::new(&plan, live),
        rows: Mutex::new(rows),
    };
    run.event("", "rollback requested", "by `lifeboat dr rollback`")?;
    let failures = roll_back(&run).await?;
    run.view.finish();
    let now = ctx.clock.now();
    let status = if failures == 0 {
        "rolled-back"
    } else {
        "failed"
    };
    ctx.catalog.dr_event(run_id, now, "", status, "")?;
    let mut row = run_row.clone();
    row.status = status.into();
    row.finished_at = row.finished_at.or(Some(now));
    let report = report::build(&plan, &row, &run.rows(), events(&ctx, run_id)?);
    let text = serde_json::to_string(&report).expect("reports serialise");
    ctx.catalog
        .dr_update_run(run_id, status, row.finished_at, Some(&text))?;
    Ok((report, failures))
}

/// One step of a dry run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DryRunStep {
    /// Step id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Steps before it.
    pub after: Vec<String>,
    /// Timeout in seconds.
    pub timeout_secs: u64,
    /// Retries.
    pub retries: u32,
    /// Failure behaviour.
    pub on_failure: OnFailure,
    /// What it would do (references to outputs only known at run time stay as written).
    pub effect: Effect,
}

/// The resolved plan: which backup, which targets, which commands.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DryRunReport {
    /// Plan name.
    pub plan: String,
    /// `run` or `drill`.
    pub mode: String,
    /// RTO target.
    pub rto: String,
    /// RPO target.
    pub rpo: String,
    /// Steps in an order they could run in.
    pub steps: Vec<DryRunStep>,
}

/// Resolve the plan without running it: nothing is written to any target or repository.
pub async fn dry_run(ctx: &Context, plan: &Plan, mode: Mode) -> Result<DryRunReport> {
    use crate::policy::units::format_duration;
    reconcile::reconcile_sources(ctx, &plan_sources(plan)).await?;
    let run_id = "RUN-ID";
    let mut outputs: Outputs = BTreeMap::new();
    let mut steps = Vec::new();
    for s in topological(plan) {
        let effect = step::resolve(ctx, plan, s, mode, run_id, &outputs, true).await?;
        if effect.kind == "restore" {
            let o = outputs.entry(s.id.clone()).or_default();
            for (k, v) in [
                ("target", &effect.target),
                ("backup-id", &effect.backup_id),
                ("source", &effect.source),
            ] {
                if let Some(v) = v {
                    o.insert(k.to_string(), v.clone());
                }
            }
        }
        steps.push(DryRunStep {
            id: s.id.clone(),
            kind: s.action.kind().into(),
            after: s.after.clone(),
            timeout_secs: s.timeout_secs,
            retries: s.retries,
            on_failure: s.on_failure,
            effect,
        });
    }
    Ok(DryRunReport {
        plan: plan.name.clone(),
        mode: mode.as_str().into(),
        rto: format_duration(chrono::Duration::seconds(plan.rto_secs)),
        rpo: format_duration(chrono::Duration::seconds(plan.rpo_secs)),
        steps,
    })
}

/// Steps in dependency order, plan order among those ready together.
fn topological(plan: &Plan) -> Vec<&Step> {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    while out.len() < plan.steps.len() {
        let before = out.len();
        for s in &plan.steps {
            if !done.contains(s.id.as_str()) && s.after.iter().all(|a| done.contains(a.as_str())) {
                done.insert(&s.id);
                out.push(s);
            }
        }
        if out.len() == before {
            break; // validated plans have no cycle
        }
    }
    out
}
