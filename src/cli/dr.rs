//! `lifeboat dr`: run, drill, resume, status and teardown of DR plans.

use super::Global;
use super::commands::parse_time;
use anyhow::Context as _;
use clap::Subcommand;
use lifeboat::Error;
use lifeboat::dr::Mode;
use lifeboat::dr::plan::{self, Plan};
use lifeboat::dr::report::DrReport;
use lifeboat::dr::runner::{self, DryRunReport, RunOptions};
use lifeboat::policy::PolicySet;
use lifeboat::policy::units::format_duration_precise;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum DrCommand {
    /// Run a DR plan for real
    Run {
        /// Plan name (from the set's dr/ folder) or plan file
        plan: String,
        /// Print the resolved plan (backups, targets, commands); change nothing
        #[arg(long)]
        dry_run: bool,
        /// When the incident began; RTO and RPO are measured from it [default: now]
        #[arg(long, value_name = "TIME")]
        incident_start: Option<String>,
        /// Pass approval gates
        #[arg(long)]
        yes: bool,
    },
    /// Rehearse a plan in isolation, measure RTO and RPO, then remove what it created
    Drill {
        /// Plan name (from the set's dr/ folder) or plan file
        plan: String,
        /// Print the resolved drill; change nothing
        #[arg(long)]
        dry_run: bool,
        /// When the (pretend) incident began [default: now]
        #[arg(long, value_name = "TIME")]
        incident_start: Option<String>,
    },
    /// Continue a run after a crash, or past an approval gate, without repeating what was done
    Resume {
        /// Run id
        run: String,
        /// Pass approval gates
        #[arg(long)]
        yes: bool,
    },
    /// Show a run's steps, timeline and measured RTO/RPO [default: the newest run]
    Status {
        /// Run id
        run: Option<String>,
    },
    /// Remove what a killed drill created
    Teardown {
        /// Run id of the drill
        run: String,
    },
    /// Undo a real run: DNS and helm back to what they were before it, created targets removed
    Rollback {
        /// Run id
        run: String,
        /// Confirm: the targets the run created are deleted, with everything written to them since
        #[arg(long)]
        yes: bool,
        /// Show what would be deleted and undone; change nothing
        #[arg(long)]
        dry_run: bool,
    },
}

fn load_plan(set: &PolicySet, name: &str) -> anyhow::Result<Plan> {
    let p = Path::new(name);
    if name.ends_with(".toml") && p.is_file() {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {name}"))?;
        return plan::plan_from_text(set, p, &text)
            .map_err(|e| Error::from(lifeboat::policy::PolicyErrors(e)).into());
    }
    let plans = plan::load_plans(set)?;
    let known: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    let msg = format!(
        "unknown DR plan `{name}` (plans in {}: {})",
        set.root.join("dr").display(),
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    );
    plans
        .iter()
        .find(|p| p.name == name)
        .cloned()
        .ok_or_else(|| Error::bad_input(msg).into())
}

fn incident(text: Option<String>) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    text.map(|t| parse_time(&t).with_context(|| format!("--incident-start {t}")))
        .transpose()
        .map_err(|e| Error::bad_input(format!("{e:#}")).into())
}

fn live(g: &Global) -> bool {
    !g.quiet && !g.json && std::io::stderr().is_terminal()
}

/// Run the `dr` subcommand; returns the exit code.
pub async fn run(g: &Global, cmd: DrCommand) -> anyhow::Result<i32> {
    match cmd {
        DrCommand::Run {
            plan,
            dry_run,
            incident_start,
            yes,
        } => start(g, &plan, Mode::Run, dry_run, incident(incident_start)?, yes).await,
        DrCommand::Drill {
            plan,
            dry_run,
            incident_start,
        } => {
            start(
                g,
                &plan,
                Mode::Drill,
                dry_run,
                incident(incident_start)?,
                true,
            )
            .await
        }
        DrCommand::Resume { run, yes } => {
            let ctx = Arc::new(g.context().await?);
            let report = runner::resume(ctx, &run, yes, live(g)).await?;
            Ok(print_report(g, &report))
        }
        DrCommand::Status { run } => {
            let ctx = g.context().await?;
            let report = runner::status(&ctx, run.as_deref())?;
            Ok(print_report(g, &report))
        }
        DrCommand::Teardown { run } => {
            let ctx = g.context().await?;
            let removed = runner::teardown(&ctx, &run).await?;
            if g.json {
                super::commands::print_json(
                    &serde_json::json!({"run-id": run, "removed": removed}),
                );
            } else if removed.is_empty() {
                println!("drill {run}: nothing left to remove");
            } else {
                for r in removed {
                    println!("removed {r}");
                }
            }
            Ok(0)
        }
        DrCommand::Rollback { run, yes, dry_run } => {
            let ctx = Arc::new(g.context().await?);
            // Shown before anything happens: after a failback, the targets the run created
            // hold everything written since the failover.
            let undos = lifeboat::dr::undo::preview(&ctx, &run)?;
            if dry_run {
                print_undos(g, &run, &undos);
                return Ok(0);
            }
            if !yes {
                let list = if undos.is_empty() {
                    "nothing to undo".to_string()
                } else {
                    undos
                        .iter()
                        .map(|u| format!("{}: {}", u.step, u.what))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                return Err(Error::bad_input(format!(
                    "rollback of run {run} would: {list}; pass --yes to do it (--dry-run lists it without asking)"
                ))
                .into());
            }
            let (report, failures) = runner::rollback(ctx, &run, live(g)).await?;
            print_report(g, &report);
            // The run's own verdict says how the run went; this command says whether
            // everything was undone.
            Ok(if failures == 0 { 0 } else { 1 })
        }
    }
}

fn print_undos(g: &Global, run: &str, undos: &[lifeboat::dr::undo::Undo]) {
    if g.json {
        super::commands::print_json(
            &serde_json::json!({"run-id": run, "dry-run": true, "undo": undos}),
        );
        return;
    }
    println!("rollback of run {run} (dry run: nothing is changed), newest first:");
    if undos.is_empty() {
        println!("  nothing to undo");
    }
    for u in undos {
        println!("  {:<20} {}", u.step, u.what);
    }
}

async fn start(
    g: &Global,
    name: &str,
    mode: Mode,
    dry_run: bool,
    incident_start: Option<chrono::DateTime<chrono::Utc>>,
    yes: bool,
) -> anyhow::Result<i32> {
    let set = PolicySet::load(&g.policies_path()?)?;
    let plan = load_plan(&set, name)?;
    let ctx = g.context_of(set).await?;
    if dry_run {
        let r = runner::dry_run(&ctx, &plan, mode).await?;
        print_dry_run(g, &r);
        return Ok(0);
    }
    let opts = RunOptions {
        mode,
        incident_start,
        yes,
        live: live(g),
    };
    let report = runner::start(Arc::new(ctx), plan, opts).await?;
    Ok(print_report(g, &report))
}

fn print_dry_run(g: &Global, r: &DryRunReport) {
    if g.json {
        super::commands::print_json(r);
        return;
    }
    println!(
        "{} of plan {} (dry run: nothing is changed); RTO {}, RPO {}",
        r.mode, r.plan, r.rto, r.rpo
    );
    for s in &r.steps {
        let e = &s.effect;
        let what = match e.kind.as_str() {
            "restore" => format!(
                "restore {} backup {} into {}{}",
                e.source.as_deref().unwrap_or(""),
                e.backup_id.as_deref().unwrap_or(""),
                e.target.as_deref().unwrap_or(""),
                e.from
                    .as_deref()
                    .map(|f| format!(" (from {f} first)"))
                    .unwrap_or_default()
            ),
            "integrity" => format!(
                "recount {} against backup {}",
                e.target.as_deref().unwrap_or(""),
                e.backup_id.as_deref().unwrap_or("")
            ),
            "command" => format!(
                "run `{}`{}",
                e.argv.as_deref().unwrap_or_default().join(" "),
                e.undo
                    .as_deref()
                    .map(|u| format!(" (undo: `{}`)", u.join(" ")))
                    .unwrap_or_default()
            ),
            "approval" => format!("wait for approval: {}", e.note.as_deref().unwrap_or("")),
            "helm" => format!(
                "run `{}` ({}){}",
                e.argv.as_deref().unwrap_or_default().join(" "),
                e.note.as_deref().unwrap_or(""),
                e.undo
                    .as_deref()
                    .map(|u| format!(" (undo: `{}`)", u.join(" ")))
                    .unwrap_or_default()
            ),
            "rds_restore" => match &e.rds {
                Some(r) => format!(
                    "restore snapshot {}{}{} in {} into new DB instance {}{}",
                    r.snapshot,
                    r.snapshot_time
                        .map(|t| format!(" (taken {})", self::t(t)))
                        .unwrap_or_default(),
                    r.source_instance
                        .as_deref()
                        .map(|i| format!(" of {i}"))
                        .unwrap_or_default(),
                    r.region,
                    r.target,
                    r.instance_class
                        .as_deref()
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default()
                ),
                None => e.note.clone().unwrap_or_default(),
            },
            "route53_failover" => match &e.dns {
                Some(d) => {
                    let changes: Vec<String> = d
                        .changes
                        .iter()
                        .map(|c| {
                            format!(
                                "{}: {} -> {}",
                                c.after.describe(),
                                c.before
                                    .as_ref()
                                    .map(|b| b.show())
                                    .unwrap_or_else(|| "(none)".into()),
                                c.after.show()
                            )
                        })
                        .collect();
                    format!(
                        "UPSERT in zone {}: {}{}",
                        d.zone,
                        changes.join("; "),
                        d.require_healthy
                            .as_deref()
                            .map(|h| format!("; then wait until health check {h} is healthy"))
                            .unwrap_or_default()
                    )
                }
                None => e.note.clone().unwrap_or_default(),
            },
            _ => e.note.clone().unwrap_or_default(),
        };
        let after = if s.after.is_empty() {
            String::new()
        } else {
            format!(" [after {}]", s.after.join(", "))
        };
        println!("  {:<20} {what}{after}", s.id);
    }
}

fn t(ts: chrono::DateTime<chrono::Utc>) -> String {
    ts.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string()
}

/// Print the report; returns its exit code.
fn print_report(g: &Global, r: &DrReport) -> i32 {
    if g.json {
        super::commands::print_json(r);
        return r.exit_code;
    }
    println!("{} {} of plan {}: {}", r.mode, r.run_id, r.plan, r.status);
    println!(
        "  started {}, incident start {}{}",
        t(r.started_at),
        t(r.incident_start),
        r.finished_at
            .map(|f| format!(", finished {}", t(f)))
            .unwrap_or_default()
    );
    for s in &r.steps {
        let dur = s
            .duration_secs
            .map(|d| format!(" {d:.1}s"))
            .unwrap_or_default();
        let err = s
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        // What each restore lost: the age of its data point at the incident start.
        let data = s
            .data_point
            .zip(s.data_age_secs)
            .map(|(p, age)| {
                format!(
                    " data point {} ({} old)",
                    t(p),
                    format_duration_precise(chrono::Duration::milliseconds((age * 1000.0) as i64))
                )
            })
            .unwrap_or_default();
        println!(
            "  {:<20} {:<9} {:<16}{dur}{data}{err}",
            s.id, s.kind, s.state
        );
    }
    let obj = |name: &str, o: &lifeboat::dr::report::Objective| {
        println!(
            "  {name} {}: achieved {} (target {})",
            o.verdict,
            o.achieved.as_deref().unwrap_or("not measured"),
            o.target
        );
    };
    obj("RTO", &r.rto);
    obj("RPO", &r.rpo);
    if let Some(p) = r.oldest_data_point {
        println!("  oldest data point restored (the RPO's): {}", t(p));
    }
    println!("timeline:");
    for e in &r.timeline {
        let step = if e.step.is_empty() {
            "run"
        } else {
            e.step.as_str()
        };
        let detail = if e.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", e.detail)
        };
        println!("  {} {step} {}{detail}", t(e.at), e.event);
    }
    println!("{} (exit {})", r.verdict, r.exit_code);
    r.exit_code
}
