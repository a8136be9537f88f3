//! `lifeboat schedule`: runs the retention matrix on time.
//!
//! The semantics, each held by a test:
//! - **On time.** Each source runs at its schedule's times (in its time zone), delayed
//!   by a random part of its `jitter`.
//! - **No overlap.** A source whose run is still going (or waiting for a slot) when its
//!   next time comes skips that time, as a CronJob with `concurrencyPolicy: Forbid`.
//! - **No storm.** After a pause (the daemon was down, the host slept), a source has
//!   missed a run when its previous scheduled time is later than the start of its
//!   newest committed backup; it is made up once, at start, however many times were
//!   missed (as systemd's `Persistent=true`).
//! - **Bounded.** At most `max-concurrent` backups run at once; the others wait in
//!   order.
//! - **Shutdown.** Nothing new starts; running backups get the grace period to finish,
//!   then they are cancelled, which aborts their uploads (nothing half-committed).
//! - **Reload.** A new policy set replaces the plans; running backups go on.
//!
//! The loop is generic over a [`Job`] (what a run does: lease, backup, prune) and takes
//! time from a [`Clock`] and sleeps on tokio's timer, so its tests run on paused time.

pub mod job;
pub mod lease;

use crate::clock::Clock;
use crate::policy::{PolicySet, Schedule};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

/// Set to ask a running backup to stop: its uploads are aborted and nothing is
/// committed.
pub type CancelFlag = Arc<AtomicBool>;

/// A scheduled source.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Source name.
    pub name: String,
    /// When it runs.
    pub schedule: Schedule,
    /// Random delay of up to this much after each scheduled time.
    pub jitter: Option<Duration>,
}

/// The task name of a source's scheduled verification: `verify:SOURCE` (source names
/// never hold a colon).
pub fn verify_task(source: &str) -> String {
    format!("{VERIFY_PREFIX}{source}")
}

/// Prefix of verification task names.
pub const VERIFY_PREFIX: &str = "verify:";

/// The scheduled tasks of a policy set: each source's backups (sources without a
/// schedule are on demand) and its verifications (`verify.schedule`).
pub fn plans(set: &PolicySet) -> Vec<Planned> {
    let backups = set.sources.values().filter_map(|s| {
        s.schedule.clone().map(|schedule| Planned {
            name: s.name.clone(),
            schedule,
            jitter: s.jitter,
        })
    });
    let verifications = set.sources.values().filter_map(|s| {
        let schedule = s.verify.as_ref()?.schedule.clone()?;
        Some(Planned {
            name: verify_task(&s.name),
            schedule,
            jitter: None,
        })
    });
    backups.chain(verifications).collect()
}

/// How one run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    /// Committed on every destination.
    Success,
    /// Committed on some destinations.
    Partial,
    /// Nothing committed.
    Failed,
    /// Not needed: another run already made the backup this time asked for (or the
    /// content had not changed).
    Skipped,
    /// Another process holds the source's lease.
    Locked,
    /// Stopped by a shutdown or a lost lease; nothing committed.
    Cancelled,
}

impl RunResult {
    /// The name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Partial => "partial",
            RunResult::Failed => "failed",
            RunResult::Skipped => "skipped",
            RunResult::Locked => "locked",
            RunResult::Cancelled => "cancelled",
        }
    }
}

/// What one run did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Outcome {
    /// Source.
    pub source: String,
    /// The scheduled time this run served.
    pub scheduled: DateTime<Utc>,
    /// Result.
    pub result: RunResult,
    /// The backup made, if any.
    pub backup_id: Option<String>,
    /// Why, for anything but success.
    pub detail: String,
    /// When the run started.
    pub started: DateTime<Utc>,
    /// When it ended.
    pub finished: DateTime<Utc>,
}

/// What a run does.
#[async_trait]
pub trait Job: Send + Sync + 'static {
    /// Back `source` up for the time `scheduled`; stop early when `cancel` is set.
    async fn run(&self, source: &str, scheduled: DateTime<Utc>, cancel: CancelFlag) -> Outcome;
}

/// Messages to a running daemon.
#[derive(Debug)]
pub enum Control {
    /// Start nothing new, finish (or after the grace period cancel) what runs, return.
    Shutdown,
    /// Replace the plans (the caller has already given the job the new policy set).
    Reload(Vec<Planned>),
}

/// Whether a source has missed a run at `now`: the previous scheduled time (at or
/// before now) is later than the start of its newest committed backup. Returns that
/// scheduled time.
pub fn missed(
    schedule: &Schedule,
    newest_start: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let prev = schedule
        .prev_before(now + Duration::milliseconds(1))
        .filter(|p| *p <= now)?;
    match newest_start {
        Some(start) if start >= prev => None,
        _ => Some(prev),
    }
}

/// The daemon's settings.
#[derive(Clone)]
pub struct Daemon {
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
    /// Backups at once.
    pub max_concurrent: usize,
    /// How long running backups may go on after a shutdown request.
    pub grace: std::time::Duration,
}

/// A scheduled source's state.
struct Slot {
    plan: Planned,
    /// (when to start, the scheduled time it serves).
    next: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Running or waiting for a slot.
    busy: bool,
}

/// The longest sleep: wake up regularly so that a wall-clock jump (NTP, suspend) is
/// noticed within a minute.
const MAX_SLEEP: std::time::Duration = std::time::Duration::from_secs(60);

fn next_fire(plan: &Planned, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let at = plan.schedule.next_after(now)?;
    let jitter = plan
        .jitter
        .and_then(|j| j.to_std().ok())
        .filter(|j| !j.is_zero())
        .map(|j| {
            let ms = j.as_millis().min(u64::MAX as u128) as u64;
            Duration::milliseconds((rand::random::<u64>() % ms) as i64)
        })
        .unwrap_or_else(Duration::zero);
    Some((at + jitter, at))
}

impl Daemon {
    /// Run until [`Control::Shutdown`] (or the control channel closes). `newest` holds
    /// each source's newest committed backup start, for the catch-up decision. Returns
    /// every run's outcome, in the order they ended.
    pub async fn run<J: Job>(
        &self,
        job: Arc<J>,
        plans: Vec<Planned>,
        newest: &BTreeMap<String, DateTime<Utc>>,
        mut control: mpsc::Receiver<Control>,
    ) -> Vec<Outcome> {
        let now = self.clock.now();
        let mut queue: VecDeque<(String, DateTime<Utc>)> = VecDeque::new();
        let mut slots: BTreeMap<String, Slot> = BTreeMap::new();
        for plan in plans {
            let mut slot = Slot {
                next: next_fire(&plan, now),
                plan,
                busy: false,
            };
            if let Some(prev) = missed(
                &slot.plan.schedule,
                newest.get(&slot.plan.name).copied(),
                now,
            ) {
                info!(source = %slot.plan.name, scheduled = %prev, "missed run made up now");
                queue.push_back((slot.plan.name.clone(), prev));
                slot.busy = true;
            }
            slots.insert(slot.plan.name.clone(), slot);
        }
        let mut running: JoinSet<Outcome> = JoinSet::new();
        let mut cancels: BTreeMap<String, CancelFlag> = BTreeMap::new();
        let mut outcomes = Vec::new();
        info!(
            sources = slots.len(),
            max_concurrent = self.max_concurrent,
            "scheduler started"
        );
        loop {
            let now = self.clock.now();
            for (name, slot) in slots.iter_mut() {
                let Some((at, scheduled)) = slot.next else {
                    continue;
                };
                if at > now {
                    continue;
                }
                if slot.busy {
                    warn!(source = %name, scheduled = %scheduled, "the previous run is still going: this scheduled time is skipped");
                } else {
                    queue.push_back((name.clone(), scheduled));
                    slot.busy = true;
                }
                // Times passed while asleep are not run one by one.
                slot.next = next_fire(&slot.plan, now);
            }
            while running.len() < self.max_concurrent {
                let Some((name, scheduled)) = queue.pop_front() else {
                    break;
                };
                let cancel: CancelFlag = Arc::default();
                cancels.insert(name.clone(), cancel.clone());
                let job = job.clone();
                running.spawn(guarded(job, name, scheduled, cancel));
            }
            let wake = slots
                .values()
                .filter_map(|s| s.next.map(|(at, _)| at))
                .min()
                .map(|at| (at - now).to_std().unwrap_or_default().min(MAX_SLEEP))
                .unwrap_or(MAX_SLEEP);
            tokio::select! {
                _ = tokio::time::sleep(wake) => {}
                Some(done) = running.join_next(), if !running.is_empty() => {
                    if let Some(o) = self.finished(done, &mut slots, &mut cancels) {
                        outcomes.push(o);
                    }
                }
                msg = control.recv() => match msg {
                    Some(Control::Reload(plans)) => {
                        let now = self.clock.now();
                        let mut fresh = BTreeMap::new();
                        for plan in plans {
                            let busy = slots.get(&plan.name).is_some_and(|s| s.busy);
                            fresh.insert(plan.name.clone(), Slot { next: next_fire(&plan, now), plan, busy });
                        }
                        // A removed source's run goes on; its slot goes.
                        queue.retain(|(n, _)| fresh.contains_key(n));
                        info!(sources = fresh.len(), "policy set reloaded");
                        slots = fresh;
                    }
                    Some(Control::Shutdown) | None => break,
                }
            }
        }
        // Shutdown: start nothing new; give running backups the grace period.
        queue.clear();
        info!(
            running = running.len(),
            grace_seconds = self.grace.as_secs(),
            "shutting down"
        );
        let deadline = tokio::time::Instant::now() + self.grace;
        while !running.is_empty() {
            match tokio::time::timeout_at(deadline, running.join_next()).await {
                Ok(Some(done)) => {
                    if let Some(o) = self.finished(done, &mut slots, &mut cancels) {
                        outcomes.push(o);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    warn!(
                        running = running.len(),
                        "grace period over: cancelling running backups"
                    );
                    for c in cancels.values() {
                        c.store(true, Ordering::SeqCst);
                    }
                    while let Some(done) = running.join_next().await {
                        if let Some(o) = self.finished(done, &mut slots, &mut cancels) {
                            outcomes.push(o);
                        }
                    }
                }
            }
        }
        info!("scheduler stopped");
        outcomes
    }

    fn finished(
        &self,
        done: std::result::Result<Outcome, tokio::task::JoinError>,
        slots: &mut BTreeMap<String, Slot>,
        cancels: &mut BTreeMap<String, CancelFlag>,
    ) -> Option<Outcome> {
        // Runs are never aborted and their panics are caught in `guarded`.
        let o = done.ok()?;
        if let Some(s) = slots.get_mut(&o.source) {
            s.busy = false;
        }
        cancels.remove(&o.source);
        info!(source = %o.source, result = o.result.as_str(), detail = %o.detail, "run ended");
        Some(o)
    }

    /// Run every source that has missed a run at this moment, at most
    /// `max_concurrent` at once, and return their outcomes (for crontab and CronJob
    /// use: the caller's schedule decides when this runs).
    pub async fn run_once<J: Job>(
        &self,
        job: Arc<J>,
        plans: &[Planned],
        newest: &BTreeMap<String, DateTime<Utc>>,
    ) -> Vec<Outcome> {
        let now = self.clock.now();
        let mut due: VecDeque<(String, DateTime<Utc>)> = plans
            .iter()
            .filter_map(|p| {
                missed(&p.schedule, newest.get(&p.name).copied(), now).map(|s| (p.name.clone(), s))
            })
            .collect();
        info!(due = due.len(), "running what is due");
        let mut running = JoinSet::new();
        let mut outcomes = Vec::new();
        loop {
            while running.len() < self.max_concurrent {
                let Some((name, scheduled)) = due.pop_front() else {
                    break;
                };
                let job = job.clone();
                running.spawn(guarded(job, name, scheduled, Arc::default()));
            }
            match running.join_next().await {
                Some(Ok(o)) => outcomes.push(o),
                Some(Err(_)) => {}
                None => break,
            }
        }
        outcomes
    }
}

/// Run a job; a panic becomes a failed outcome, so one broken run never stops the
/// schedule or loses track of its source.
async fn guarded<J: Job>(
    job: Arc<J>,
    name: String,
    scheduled: DateTime<Utc>,
    cancel: CancelFlag,
) -> Outcome {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(job.run(&name, scheduled, cancel))
        .catch_unwind()
        .await
    {
        Ok(o) => o,
        Err(p) => {
            let why = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            warn!(source = %name, panic = %why, "a backup run panicked");
            Outcome {
                source: name,
                scheduled,
                result: RunResult::Failed,
                backup_id: None,
                detail: format!("the run panicked: {why}"),
                started: scheduled,
                finished: scheduled,
            }
        }
    }
}

#[cfg(test)]
mod tests;
