//! Build the report from the catalog: pure arithmetic over committed backups,
//! verifications, trial restores, backup runs and DR runs, at the context's clock.
//!
//! The achieved RPO of a source is its worst gap in the window: between consecutive
//! committed backups (by consistency point, the instant the data reflects), and from
//! the newest one to the report's time (the current exposure). A source without any
//! backup, or whose every backup failed verification, is a breach, never a blank; so is
//! a corrupt backup (a manifest in storage that cannot be trusted).

use super::model::*;
use super::{at, spell};
use crate::backup::Context;
use crate::catalog::CatalogBackup;
use crate::dr::plan::{Plan, load_plans};
use crate::error::Result;
use crate::policy::Source;
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Window length back from now.
    pub since: Duration,
    /// Only these sources (all when empty); DR plans are reported only when empty.
    pub sources: Vec<String>,
}

const PASS: &str = "PASS";
const FAIL: &str = "FAIL";
const NA: &str = "N/A";

/// The report at the context's clock.
pub fn build(ctx: &Context, opts: &ReportOptions) -> Result<Report> {
    let now = ctx.clock.now();
    let since = now - opts.since;
    for s in &opts.sources {
        ctx.policies.source(s)?;
    }
    let mut sources = Vec::new();
    for (name, src) in &ctx.policies.sources {
        if !opts.sources.is_empty() && !opts.sources.contains(name) {
            continue;
        }
        sources.push(source_report(ctx, src, since, now)?);
    }
    let mut plans = Vec::new();
    if opts.sources.is_empty() {
        let runs = ctx.catalog.dr_run_ids_since(since)?;
        for plan in load_plans(&ctx.policies)? {
            plans.push(plan_report(ctx, &plan, &runs)?);
        }
    }
    let mut breaches = Vec::new();
    for s in &sources {
        for b in &s.breaches {
            breaches.push(Breach {
                subject: format!("source {}", s.name),
                what: b.clone(),
            });
        }
    }
    for p in &plans {
        if p.verdict == FAIL {
            let d = &p.drills[0];
            breaches.push(Breach {
                subject: format!("plan {}", p.name),
                what: drill_breach(d),
            });
        }
    }
    let verdict = if breaches.is_empty() { PASS } else { FAIL };
    Ok(Report {
        format: FORMAT.into(),
        generated_at: now,
        window: Window {
            since,
            until: now,
            secs: (now - since).num_seconds(),
        },
        verdict: verdict.into(),
        exit_code: if breaches.is_empty() {
            0
        } else {
            crate::ErrorKind::Breach.exit_code()
        },
        breaches,
        sources,
        plans,
    })
}

/// Committed backups grouped by id (one point per backup, whatever the copies).
fn points(backups: &[CatalogBackup]) -> Vec<Point> {
    let mut by_id: BTreeMap<&str, Vec<&CatalogBackup>> = BTreeMap::new();
    for b in backups {
        by_id.entry(&b.manifest.backup_id).or_default().push(b);
    }
    let mut out: Vec<Point> = by_id
        .into_iter()
        .map(|(id, copies)| {
            let verification = if copies.iter().any(|c| c.verified()) {
                "verified"
            } else if copies
                .iter()
                .any(|c| c.last_verify.as_ref().is_some_and(|v| !v.ok))
            {
                "failed"
            } else {
                "unverified"
            };
            let mut repositories: Vec<String> = copies
                .iter()
                .map(|c| c.manifest.repository.clone())
                .collect();
            repositories.sort();
            Point {
                backup_id: id.to_string(),
                at: copies[0].manifest.consistency_point,
                repositories,
                verification: verification.into(),
                anomaly: copies.iter().any(|c| !c.manifest.anomalies.is_empty()),
            }
        })
        .collect();
    out.sort_by(|a, b| a.at.cmp(&b.at).then(a.backup_id.cmp(&b.backup_id)));
    out
}

fn gap(from: DateTime<Utc>, to: DateTime<Utc>) -> Gap {
    let secs = (to - from).num_seconds();
    Gap {
        from,
        to,
        secs,
        length: spell(secs),
    }
}

fn source_report(
    ctx: &Context,
    src: &Source,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<SourceReport> {
    let mut backups = ctx.catalog.backups(Some(&src.name), None)?;
    let mut flags: Vec<String> = crate::backup::dating::doubtful(&backups, now)
        .into_iter()
        .map(|(b, why)| {
            format!(
                "backup {} in {} is not counted: {why}",
                b.manifest.backup_id, b.manifest.repository
            )
        })
        .collect();
    // A time that is not believed must not close a gap nor make the source look fresh.
    backups.retain(|b| crate::backup::dating::doubt(&b.manifest, now).is_none());
    let all = points(&backups);
    let newest = all.last().cloned();
    let rpo_secs = src.rpo.map(|r| r.num_seconds());
    let mut breaches = Vec::new();

    // Gaps: from the last backup before the window (if any) through every backup in
    // it to now.
    let before = all.iter().rev().find(|p| p.at < since);
    let inside: Vec<&Point> = all
        .iter()
        .filter(|p| p.at >= since && p.at <= now)
        .collect();
    let mut marks: Vec<DateTime<Utc>> = before.map(|p| p.at).into_iter().collect();
    marks.extend(inside.iter().map(|p| p.at));
    let mut gaps: Vec<Gap> = marks.windows(2).map(|w| gap(w[0], w[1])).collect();
    if let Some(last) = marks.last() {
        gaps.push(gap(*last, now));
    }
    // The first of the largest: the one an operator has to explain first.
    let worst_gap = gaps
        .iter()
        .fold(None::<&Gap>, |w, g| match w {
            Some(w) if w.secs >= g.secs => Some(w),
            _ => Some(g),
        })
        .cloned();
    let exposure_secs = newest.as_ref().map(|p| (now - p.at).num_seconds());
    let within_target = match (rpo_secs, marks.first()) {
        (Some(rpo), Some(first)) => {
            let start = (*first).max(since);
            let total = (now - start).num_seconds();
            let over: i64 = gaps
                .iter()
                .map(|g| {
                    let a = (g.from + Duration::seconds(rpo)).max(start);
                    (g.to - a).num_seconds().max(0)
                })
                .sum();
            Some(if total > 0 {
                1.0 - over as f64 / total as f64
            } else {
                1.0
            })
        }
        _ => None,
    };
    let rpo_verdict = match (rpo_secs, &worst_gap) {
        (None, _) => NA,
        (Some(_), None) => FAIL,
        (Some(rpo), Some(g)) if g.secs > rpo => FAIL,
        _ => PASS,
    };

    // A manifest in storage that cannot be trusted is damage in a repository: it is
    // named, whatever good backups exist beside it.
    for c in ctx.catalog.corrupt_backups(Some(&src.name), None)? {
        breaches.push(format!(
            "backup {} in repository {} is corrupt (its manifest cannot be trusted; it is never restored nor counted): {}",
            c.backup_id, c.repository, c.problem
        ));
    }
    if all.is_empty() {
        breaches.push("no committed backup at all: nothing can be restored".to_string());
    } else if all.iter().all(|p| p.verification == "failed") {
        breaches.push(format!(
            "every backup ({}) failed verification: nothing known to be restorable",
            all.len()
        ));
    }
    if let (Some(rpo), Some(g)) = (rpo_secs, &worst_gap)
        && g.secs > rpo
    {
        if g.to == now {
            breaches.push(format!(
                "no backup since {} ({}), RPO {}",
                at(g.from),
                g.length,
                spell(rpo)
            ));
        } else {
            breaches.push(format!(
                "gap of {} from {} to {} exceeds the RPO of {}",
                g.length,
                at(g.from),
                at(g.to),
                spell(rpo)
            ));
        }
    }

    let newest_verified = all
        .iter()
        .rev()
        .find(|p| p.verification == "verified")
        .cloned();
    match (&newest_verified, &newest) {
        (None, Some(_)) => flags.push("no backup has been verified (run `lifeboat verify`)".into()),
        (Some(v), Some(n)) if v.backup_id != n.backup_id => flags.push(format!(
            "the newest verified backup ({}, {}) is older than the newest committed backup ({}, {})",
            v.backup_id,
            at(v.at),
            n.backup_id,
            at(n.at)
        )),
        _ => {}
    }
    let last_check = ctx
        .catalog
        .last_verification(&src.name)?
        .map(|v| CheckSummary {
            backup_id: v.backup_id,
            repository: v.repository,
            at: v.verified_at,
            ok: v.ok,
            problems: v.problems,
        });
    if let Some(c) = &last_check
        && !c.ok
    {
        breaches.push(format!(
            "the last verification ({} in {}, {}) failed: {}",
            c.backup_id,
            c.repository,
            at(c.at),
            c.problems.join("; ")
        ));
    }
    let last_trial = ctx
        .catalog
        .restore_tests(&src.name)?
        .into_iter()
        .next()
        .map(|t| TrialSummary {
            backup_id: t.backup_id,
            repository: t.repository,
            at: t.tested_at,
            ok: t.ok,
            counts: t
                .counts
                .into_iter()
                .map(|c| {
                    (
                        c.name,
                        CountPair {
                            expected: c.expected,
                            actual: c.actual,
                        },
                    )
                })
                .collect(),
            problems: t.problems,
            duration_secs: t.duration_secs,
        });
    match &last_trial {
        Some(t) if !t.ok => breaches.push(format!(
            "the last trial restore ({} from {}, {}) failed: {}",
            t.backup_id,
            t.repository,
            at(t.at),
            t.problems.join("; ")
        )),
        None if src.verify.as_ref().is_some_and(|v| v.restore_test) => {
            flags.push("restore-test is set but no trial restore has run yet".into())
        }
        _ => {}
    }

    let oldest_restorable = all
        .iter()
        .find(|p| p.verification != "failed")
        .map(|p| p.at);
    let target_secs = src.retention.keep_within.map(|d| d.num_seconds());
    let reach_secs = oldest_restorable.map(|o| (now - o).num_seconds());
    let coverage_verdict = match (target_secs, reach_secs) {
        (None, _) => NA,
        (Some(_), None) => FAIL,
        (Some(t), Some(r)) if r < t => FAIL,
        _ => PASS,
    };
    if coverage_verdict == FAIL {
        flags.push(format!(
            "retention reaches back {} of the {} keep-within promises",
            reach_secs.map(spell).unwrap_or_else(|| "nothing".into()),
            spell(target_secs.unwrap_or_default())
        ));
    }

    let destinations: Vec<DestinationState> = src
        .destinations
        .iter()
        .map(|repo| {
            let held: Vec<&CatalogBackup> = backups
                .iter()
                .filter(|b| &b.manifest.repository == repo)
                .collect();
            let newest_here = held.iter().map(|b| b.manifest.consistency_point).max();
            let has_newest = newest
                .as_ref()
                .is_some_and(|n| held.iter().any(|b| b.manifest.backup_id == n.backup_id));
            let state = if held.is_empty() {
                "empty"
            } else if has_newest {
                "ok"
            } else {
                "behind"
            };
            DestinationState {
                repository: repo.clone(),
                backups: held.len(),
                newest: newest_here,
                state: state.into(),
            }
        })
        .collect();
    for d in &destinations {
        if d.state == "behind" && !all.is_empty() {
            flags.push(format!(
                "repository {} does not hold the newest backup",
                d.repository
            ));
        }
    }
    for p in inside.iter().filter(|p| p.anomaly) {
        flags.push(format!("backup {} was flagged as an anomaly", p.backup_id));
    }
    let runs = ctx.catalog.runs(&src.name, since)?;
    let failed: Vec<_> = runs.iter().filter(|r| r.status == "failed").collect();
    if let Some(last) = failed.last() {
        flags.push(format!(
            "{} failed backup run(s) in the window, the last at {}: {}",
            failed.len(),
            at(last.started_at),
            last.detail
        ));
    }
    let verdict = if breaches.is_empty() { PASS } else { FAIL };
    Ok(SourceReport {
        name: src.name.clone(),
        kind: src.config.kind().to_string(),
        schedule: src.schedule.as_ref().map(|s| match s.timezone() {
            Some(tz) => format!("{} ({tz})", s.text()),
            None => s.text().to_string(),
        }),
        rpo_secs,
        rpo: rpo_secs.map(spell),
        newest,
        exposure_secs,
        worst_gap,
        within_target,
        rpo_verdict: rpo_verdict.into(),
        newest_verified,
        last_check,
        last_trial,
        coverage: Coverage {
            oldest_restorable,
            reach_secs,
            target_secs,
            verdict: coverage_verdict.into(),
        },
        destinations,
        failed_runs: failed.len(),
        flags,
        breaches,
        verdict: verdict.into(),
        timeline: inside.into_iter().cloned().collect(),
    })
}

fn objective(o: &crate::dr::report::Objective) -> ObjectiveSummary {
    ObjectiveSummary {
        target_secs: o.target_secs,
        achieved_secs: o.achieved_secs,
        verdict: o.verdict.into(),
    }
}

fn plan_report(ctx: &Context, plan: &Plan, runs: &[(String, String)]) -> Result<PlanReport> {
    let mut drills = Vec::new();
    for (run_id, name) in runs {
        if name != &plan.name {
            continue;
        }
        let r = crate::dr::runner::status(ctx, Some(run_id))?;
        let slowest_step = r
            .steps
            .iter()
            .filter_map(|s| s.duration_secs.map(|d| (s.id.clone(), d)))
            .fold(None::<(String, f64)>, |w, s| match w {
                Some(w) if w.1 >= s.1 => Some(w),
                _ => Some(s),
            });
        let rto = objective(&r.rto);
        let rpo = objective(&r.rpo);
        let ok = r.status == "succeeded" && rto.verdict != FAIL && rpo.verdict != FAIL;
        drills.push(DrillSummary {
            run_id: r.run_id.clone(),
            mode: r.mode.clone(),
            started_at: r.started_at,
            status: r.status.clone(),
            rto,
            rpo,
            verdict: if ok { PASS } else { FAIL }.into(),
            slowest_step,
            steps: r
                .steps
                .iter()
                .map(|s| StepSpan {
                    id: s.id.clone(),
                    kind: s.kind.clone(),
                    state: s.state.clone(),
                    started_at: s.started_at,
                    finished_at: s.finished_at,
                })
                .collect(),
        });
    }
    let mut flags = Vec::new();
    let verdict = match drills.first() {
        None => {
            flags.push("no drill in the window (run `lifeboat dr drill`)".into());
            NA
        }
        Some(d) => d.verdict.as_str(),
    }
    .to_string();
    Ok(PlanReport {
        name: plan.name.clone(),
        rto_secs: plan.rto_secs,
        rpo_secs: plan.rpo_secs,
        drills,
        verdict,
        flags,
    })
}

fn drill_breach(d: &DrillSummary) -> String {
    let show = |o: &ObjectiveSummary| {
        format!(
            "{} (target {})",
            o.achieved_secs
                .map(spell)
                .unwrap_or_else(|| "not measured".into()),
            spell(o.target_secs)
        )
    };
    format!(
        "the newest {} ({}, {}) {}: RTO {} {}, RPO {} {}",
        d.mode,
        d.run_id,
        at(d.started_at),
        d.status,
        show(&d.rto),
        d.rto.verdict,
        show(&d.rpo),
        d.rpo.verdict
    )
}
