//! What a scheduled run does: take the source's lease, reconcile the catalog with the
//! repositories, skip if another run already served this scheduled time, back up,
//! prune after a success, give the lease back.

use super::lease;
use super::{CancelFlag, Job, Outcome, RunResult};
use crate::backup::run::{BackupOptions, backup};
use crate::backup::{Context, dating, prune, reconcile};
use crate::error::{ErrorKind, Result};
use crate::metrics::{Attempt, Metrics};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use tracing::{info, warn};

/// The production job: real backups of the current policy set.
pub struct BackupJob {
    ctx: RwLock<Arc<Context>>,
    holder: String,
    metrics: Option<Metrics>,
}

impl BackupJob {
    /// A job over `ctx`, holding leases as `holder`.
    pub fn new(ctx: Arc<Context>, holder: String) -> Self {
        BackupJob {
            ctx: RwLock::new(ctx),
            holder,
            metrics: None,
        }
    }

    /// Record every run in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The context runs use now.
    pub fn context(&self) -> Arc<Context> {
        self.ctx.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Use a new context (a reloaded policy set) for runs that start from now on.
    pub fn replace(&self, ctx: Arc<Context>) {
        *self.ctx.write().unwrap_or_else(|e| e.into_inner()) = ctx;
    }
}

#[async_trait]
impl Job for BackupJob {
    async fn run(&self, source: &str, scheduled: DateTime<Utc>, cancel: CancelFlag) -> Outcome {
        if let Some(name) = source.strip_prefix(super::VERIFY_PREFIX) {
            return self.verify(name, scheduled).await;
        }
        let ctx = self.context();
        let started = ctx.clock.now();
        if let Some(m) = &self.metrics {
            m.set_running(source, true);
        }
        let mut outcome = Outcome {
            source: source.to_string(),
            scheduled,
            result: RunResult::Failed,
            backup_id: None,
            detail: String::new(),
            started,
            finished: started,
        };
        let report = match self
            .run_locked(&ctx, source, scheduled, cancel, &mut outcome)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                outcome.result = match e.kind() {
                    ErrorKind::Locked => RunResult::Locked,
                    _ => RunResult::Failed,
                };
                outcome.detail = e.to_string();
                None
            }
        };
        outcome.finished = ctx.clock.now();
        if let Some(m) = &self.metrics {
            m.set_running(source, false);
            m.record_attempt(&Attempt {
                source: source.to_string(),
                result: outcome.result.as_str().to_string(),
                started,
                finished: outcome.finished,
                bytes: report.as_ref().map_or(0, |r| r.raw_size),
            });
            // Unchanged content skipped is as fresh as a new backup: the repository
            // holds the data as it is now.
            if let Some(r) = &report
                && (r.skipped.is_some() || r.destinations.iter().any(|d| d.committed))
            {
                m.set_last_success(source, r.started_at, r.raw_size);
                m.set_anomaly(source, !r.anomalies.is_empty());
            }
        }
        outcome
    }
}

impl BackupJob {
    /// A scheduled verification: the newest backup read back in full on every
    /// destination, then (with `restore-test`) restored into a scratch target and
    /// recounted. Read-only towards the source and its backups, so no lease is taken.
    async fn verify(&self, source: &str, scheduled: DateTime<Utc>) -> Outcome {
        let ctx = self.context();
        let started = ctx.clock.now();
        let mut outcome = Outcome {
            source: super::verify_task(source),
            scheduled,
            result: RunResult::Failed,
            backup_id: None,
            detail: String::new(),
            started,
            finished: started,
        };
        match verify_and_trial(&ctx, source).await {
            Ok(v) => {
                if let Some(m) = &self.metrics {
                    if let Some((at, ok)) = v.check {
                        m.set_last_verification(source, at, ok);
                    }
                    if let Some(t) = &v.trial {
                        m.set_last_restore_test(source, t.tested_at, t.ok, t.duration_secs);
                    }
                }
                outcome.backup_id = v.backup.clone();
                outcome.result = match (&v.backup, v.problems.is_empty()) {
                    (None, _) => RunResult::Skipped,
                    (Some(_), true) => RunResult::Success,
                    (Some(_), false) => RunResult::Failed,
                };
                outcome.detail = if v.backup.is_none() {
                    "no committed backup to verify".into()
                } else {
                    v.problems.join("; ")
                };
            }
            Err(e) => outcome.detail = e.to_string(),
        }
        outcome.finished = ctx.clock.now();
        outcome
    }

    async fn run_locked(
        &self,
        ctx: &Arc<Context>,
        source: &str,
        scheduled: DateTime<Utc>,
        cancel: CancelFlag,
        outcome: &mut Outcome,
    ) -> Result<Option<crate::backup::run::BackupReport>> {
        let src = ctx.policies.source(source)?.clone();
        let ttl = ctx.policies.scheduler.lease_ttl;
        let lease = lease::acquire_for_source(ctx, &src, &self.holder, ttl).await?;
        // Renewed in the background; a lost lease cancels the backup.
        let held = lease.hold(ctx.clock.clone(), cancel.clone());
        let result = self
            .under_lease(ctx, &src, scheduled, cancel.clone(), outcome)
            .await;
        held.release(ctx.clock.now()).await;
        result
    }

    async fn under_lease(
        &self,
        ctx: &Arc<Context>,
        src: &crate::policy::Source,
        scheduled: DateTime<Utc>,
        cancel: CancelFlag,
        outcome: &mut Outcome,
    ) -> Result<Option<crate::backup::run::BackupReport>> {
        let names = [src.name.clone()];
        // The repositories are the truth: a run elsewhere (another host, a CronJob
        // with an empty catalog) may have served this time already.
        reconcile::reconcile_sources(ctx, &names).await?;
        let now = ctx.clock.now();
        let backups = ctx.catalog.backups(Some(&src.name), None)?;
        let doubts = dating::doubtful(&backups, now);
        for (b, why) in &doubts {
            warn!(source = %src.name, repository = %b.manifest.repository, backup = %b.manifest.backup_id, doubt = %why, "backup time not believed: it serves no scheduled time");
        }
        if let Some(m) = &self.metrics {
            m.set_doubtful(&src.name, doubts.len() as u64);
        }
        if let Some(newest) = dating::newest_believed(backups, now)
            && newest.manifest.started_at >= scheduled
        {
            outcome.result = RunResult::Skipped;
            outcome.detail = format!(
                "backup {} (started {}) already serves the time {}",
                newest.manifest.backup_id,
                newest.manifest.started_at.format("%Y-%m-%dT%H:%M:%SZ"),
                scheduled.format("%Y-%m-%dT%H:%M:%SZ")
            );
            info!(source = %src.name, detail = %outcome.detail, "skipped");
            return Ok(None);
        }
        let opts = BackupOptions {
            dry_run: false,
            cancel: Some(cancel.clone()),
        };
        let report = backup(ctx, src, &opts).await;
        let report = match report {
            Ok(r) => r,
            Err(e) if cancel.load(Ordering::SeqCst) => {
                outcome.result = RunResult::Cancelled;
                outcome.detail = e.to_string();
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if let Some(why) = &report.skipped {
            outcome.result = RunResult::Skipped;
            outcome.detail = why.clone();
            return Ok(Some(report));
        }
        outcome.backup_id = Some(report.backup_id.clone());
        outcome.result = match report.failure() {
            None => RunResult::Success,
            Some(ErrorKind::Partial) => RunResult::Partial,
            Some(_) => RunResult::Failed,
        };
        if let Some(e) = crate::backup::run::report_error(&report) {
            outcome.detail = e.to_string();
        }
        if outcome.result == RunResult::Success && !src.retention.is_empty() {
            match prune::prune(ctx, &names, false).await {
                Ok(plan) => {
                    if plan.deleted > 0 {
                        info!(source = %src.name, deleted = plan.deleted, "pruned after the backup");
                    }
                }
                // The backup stands; a failed prune is retried after the next one.
                Err(e) => {
                    warn!(source = %src.name, error = %e, "prune after the backup failed");
                    outcome.detail = format!("backup committed; prune failed: {e}");
                }
            }
        }
        Ok(Some(report))
    }
}

/// What a scheduled verification found.
struct Verified {
    /// The backup checked (`None`: the source has no committed backup).
    backup: Option<String>,
    /// When the read-back ran, and whether it matched on every destination.
    check: Option<(DateTime<Utc>, bool)>,
    /// The trial restore, when the policy asks for one.
    trial: Option<crate::catalog::manifest::RestoreTestResult>,
    /// Every problem found.
    problems: Vec<String>,
}

/// Verify the newest backup of `source` on every destination and, when its policy
/// asks, trial-restore it.
async fn verify_and_trial(ctx: &Context, source: &str) -> Result<Verified> {
    use crate::backup::{trial, verify};
    let sel = verify::VerifySelection {
        source: Some(source.to_string()),
        ..verify::VerifySelection::default()
    };
    let results = verify::verify(ctx, &sel).await?;
    let Some(first) = results.first() else {
        return Ok(Verified {
            backup: None,
            check: None,
            trial: None,
            problems: Vec::new(),
        });
    };
    let mut problems: Vec<String> = results.iter().flat_map(|r| r.problems.clone()).collect();
    let check = Some((first.verified_at, results.iter().all(|r| r.ok)));
    let restore_test = ctx
        .policies
        .source(source)?
        .verify
        .as_ref()
        .is_some_and(|v| v.restore_test);
    let trial = if restore_test {
        let t = trial::restore_test(ctx, source).await?;
        problems.extend(t.problems.iter().map(|p| format!("trial restore: {p}")));
        if !t.ok && t.problems.is_empty() {
            problems.push("trial restore failed".into());
        }
        Some(t)
    } else {
        None
    };
    Ok(Verified {
        backup: Some(first.backup_id.clone()),
        check,
        trial,
        problems,
    })
}
