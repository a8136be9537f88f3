//! `lifeboat prune`: a plan first (keep or delete, with reasons, per source and
//! destination), shown, then executed: manifest first, so a backup stops existing
//! before its data goes, then the data, then the verification result.
//!
//! Before a backup is planned for deletion, its objects are asked for their object-lock
//! retention (and, where the repository locks objects, the manifest's keep-until counts
//! as the lock): a locked backup is skipped with that reason rather than failing half
//! deleted.

use super::Context;
use super::dating;
use super::reconcile::{self, list_backups};
use super::retention::{self, Candidate};
use crate::error::{Error, Result};
use crate::policy::Backend;
use crate::storage::wrap::DryRunStore;
use crate::storage::{Store, layout};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::sync::Arc;
use tracing::{info, warn};

/// Leftovers (data without a manifest, unfinished uploads) younger than this may belong
/// to a backup still running elsewhere: they are left alone.
pub const INCOMPLETE_GRACE_HOURS: i64 = 24;

/// One line of the plan.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PruneItem {
    /// Repository.
    pub repository: String,
    /// Source.
    pub source: String,
    /// Backup id.
    pub backup_id: String,
    /// When it was made.
    pub time: DateTime<Utc>,
    /// Keep or delete.
    pub keep: bool,
    /// A committed backup (false: an incomplete leftover without manifest).
    pub committed: bool,
    /// Why.
    pub reasons: Vec<String>,
}

/// The plan and what was done with it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PrunePlan {
    /// Dry run: nothing deleted.
    pub dry_run: bool,
    /// Every backup considered.
    pub items: Vec<PruneItem>,
    /// Backups deleted.
    pub deleted: usize,
    /// Unfinished uploads removed.
    pub incomplete_uploads_removed: usize,
    /// What deleted backups kept outside the repositories (RDS snapshots), now deleted.
    pub external_deleted: Vec<String>,
}

/// Plan, show (through the returned report) and, unless `dry_run`, execute.
pub async fn prune(ctx: &Context, sources: &[String], dry_run: bool) -> Result<PrunePlan> {
    let names: Vec<String> = if sources.is_empty() {
        ctx.policies.sources.keys().cloned().collect()
    } else {
        sources.to_vec()
    };
    let rec = reconcile::reconcile_sources(ctx, &names).await?;
    if !rec.unreachable.is_empty() {
        return Err(Error::failed(format!(
            "prune needs a listing of every repository it prunes: {}",
            rec.unreachable.join("; ")
        )));
    }
    if !dry_run {
        super::restore::sweep_staging(ctx, &names).await;
        let spool = ctx.spool.clone();
        let _ = super::blocking(move || Ok(spool.sweep())).await;
    }
    let now = ctx.clock.now();
    let grace = now - Duration::hours(INCOMPLETE_GRACE_HOURS);
    let mut items = Vec::new();
    for name in &names {
        let source = ctx.policies.source(name)?;
        for repo in &source.destinations {
            // Another host may have found a backup corrupt since it was catalogued
            // here: what retention counts on is read again from the repository.
            reconcile::refresh_verifications(ctx, repo, name).await?;
            let backups = ctx.catalog.backups(Some(name), Some(repo))?;
            // Objects of a locking repository were put with the backup's keep-until as
            // their retain-until.
            let locks_objects = matches!(
                &ctx.policies.repositories[repo].backend,
                Backend::S3(cfg) if cfg.object_lock.is_some()
            );
            // A backup whose time is not believed is kept and not counted: taken as the
            // newest, a backup planted in the future would let keep-last delete the
            // backups actually made.
            for (b, why) in dating::doubtful(&backups, now) {
                warn!(source = %name, repository = %repo, backup = %b.manifest.backup_id, doubt = %why, "backup time not believed: kept, not counted by retention");
                items.push(PruneItem {
                    repository: repo.clone(),
                    source: name.clone(),
                    backup_id: b.manifest.backup_id.clone(),
                    time: b.manifest.started_at,
                    keep: true,
                    committed: true,
                    reasons: vec![format!("not counted by retention: {why}")],
                });
            }
            let mut candidates: Vec<Candidate> = backups
                .iter()
                .filter(|b| dating::doubt(&b.manifest, now).is_none())
                .map(|b| Candidate {
                    id: b.manifest.backup_id.clone(),
                    time: b.manifest.started_at,
                    keep_until: b.manifest.keep_until,
                    verified: b.verified(),
                    locked_until: locks_objects.then_some(b.manifest.keep_until),
                })
                .collect();
            let mut decisions = retention::apply(&candidates, &source.retention, now);
            if decisions.iter().any(|d| !d.keep) {
                // Only what would go is asked about: the store's word on its lock
                // (a bucket default or an extended retention may outlast keep-until).
                let store = ctx.store(repo)?;
                for d in decisions.iter().filter(|d| !d.keep) {
                    let lock = lock_of(store.as_ref(), name, &d.id).await?;
                    let c = candidates
                        .iter_mut()
                        .find(|c| c.id == d.id)
                        .expect("decided from the candidates");
                    c.locked_until = c.locked_until.max(lock);
                }
                decisions = retention::apply(&candidates, &source.retention, now);
            }
            if !candidates.is_empty() && !candidates.iter().any(|c| c.verified) {
                warn!(source = %name, repository = %repo, backups = candidates.len(), "no verified backup: nothing deleted; run `lifeboat verify`");
            }
            for d in decisions {
                items.push(PruneItem {
                    repository: repo.clone(),
                    source: name.clone(),
                    backup_id: d.id,
                    time: d.time,
                    keep: d.keep,
                    committed: true,
                    reasons: d.reasons,
                });
            }
            // Objects of backups that never got a manifest (a crashed run).
            let listing = list_backups(ctx, repo, &layout::source_prefix(name)).await?;
            for ((s, id), objects) in listing {
                if objects.contains(layout::MANIFEST) {
                    continue;
                }
                let time = dating::id_time(&id).unwrap_or(now);
                let old = time < grace;
                items.push(PruneItem {
                    repository: repo.clone(),
                    source: s,
                    backup_id: id,
                    time,
                    keep: !old,
                    committed: false,
                    reasons: vec![if old {
                        format!("incomplete (no manifest), older than {INCOMPLETE_GRACE_HOURS}h")
                    } else {
                        format!("incomplete (no manifest), younger than {INCOMPLETE_GRACE_HOURS}h: may still be running")
                    }],
                });
            }
        }
    }
    let mut plan = PrunePlan {
        dry_run,
        items,
        deleted: 0,
        incomplete_uploads_removed: 0,
        external_deleted: Vec::new(),
    };
    // A dry run goes through the same steps, safety check included, against stores
    // whose writes and deletes are recorded and not done.
    let store = |name: &str| -> Result<Arc<dyn Store>> {
        let s = ctx.store(name)?;
        Ok(if dry_run {
            Arc::new(DryRunStore::new(s))
        } else {
            s
        })
    };
    // Before deleting anything, check that every backup the plan keeps is still there:
    // a stale view of the repository must not drive deletions.
    for item in plan.items.iter().filter(|i| i.keep && i.committed) {
        let store = store(&item.repository)?;
        store
            .head(&layout::manifest_key(&item.source, &item.backup_id))
            .await
            .map_err(|e| {
                Error::failed(format!(
                    "prune stopped before deleting anything: a backup it keeps is not readable ({e})"
                ))
            })?;
    }
    for item in plan.items.iter().filter(|i| !i.keep) {
        let store = store(&item.repository)?;
        for key in [
            layout::manifest_key(&item.source, &item.backup_id),
            layout::data_key(&item.source, &item.backup_id),
            layout::verify_key(&item.source, &item.backup_id),
            layout::restore_test_key(&item.source, &item.backup_id),
        ] {
            store.delete(&key).await?;
        }
        if dry_run {
            continue;
        }
        if item.committed {
            // The manifest is read before the catalog forgets it: its engine details
            // name what the backup keeps outside the repository.
            let details = ctx
                .catalog
                .backups(Some(&item.source), Some(&item.repository))?
                .into_iter()
                .find(|b| b.manifest.backup_id == item.backup_id)
                .map(|b| b.manifest.engine);
            ctx.catalog.remove_backup(
                &item.repository,
                &item.source,
                &item.backup_id,
                now,
                &item.reasons.join("; "),
            )?;
            plan.deleted += 1;
            let still_held = ctx
                .catalog
                .backups(Some(&item.source), None)?
                .iter()
                .any(|b| b.manifest.backup_id == item.backup_id);
            if let (false, Some(details)) = (still_held, details) {
                plan.external_deleted
                    .extend(delete_external(ctx, &item.source, &item.backup_id, details).await?);
            }
        }
        info!(source = %item.source, repository = %item.repository, backup = %item.backup_id, reason = %item.reasons.join("; "), "deleted");
    }
    // Snapshots of runs that never committed, once they cannot belong to a run still
    // going on another host.
    if !dry_run {
        for name in &names {
            let src = ctx.policies.source(name)?;
            let held: std::collections::BTreeSet<String> = ctx
                .catalog
                .backups(Some(name), None)?
                .into_iter()
                .map(|b| b.manifest.backup_id)
                .collect();
            let engine = crate::engine::for_source(src);
            let swept = super::blocking(move || engine.sweep_external(&held, grace))
                .await
                .map_err(|e| e.context(format!("source {name}")))?;
            plan.external_deleted.extend(swept);
        }
    }
    // Unfinished uploads of each pruned source's own backups only, and none a live lease
    // covers: its holder took the lease before starting its backup (whose id says when),
    // and may still be uploading a run of any length. The lease may be in any of the
    // source's destinations (the first one reachable when it was taken).
    let ttl = ctx.policies.scheduler.lease_ttl;
    for name in &names {
        let src = ctx.policies.source(name)?;
        let mut started_before: Option<DateTime<Utc>> = None;
        for repo in &src.destinations {
            let lease = crate::scheduler::lease::newest_record(store(repo)?.as_ref(), name, ttl)
                .await?
                .filter(|l| l.expires_at > now);
            if let Some(l) = lease {
                // A margin for a clock stepped between taking the lease and the backup.
                let bound = l.acquired_at - Duration::minutes(10);
                started_before = Some(started_before.map_or(bound, |b| b.min(bound)));
            }
        }
        let opts = crate::storage::CleanupOptions {
            prefix: layout::source_prefix(name),
            before: grace,
            started_before,
        };
        for repo in &src.destinations {
            plan.incomplete_uploads_removed += store(repo)?.cleanup_incomplete(&opts).await?;
        }
    }
    Ok(plan)
}

/// The latest object-lock retain-until of a backup's objects, as the store reports it.
/// A missing object holds no lock; any other failure stops the prune before it
/// deletes anything, as the lock cannot be known.
async fn lock_of(store: &dyn Store, source: &str, id: &str) -> Result<Option<DateTime<Utc>>> {
    let mut until = None;
    for key in [
        layout::manifest_key(source, id),
        layout::data_key(source, id),
        layout::verify_key(source, id),
        layout::restore_test_key(source, id),
    ] {
        match store.head(&key).await {
            Ok(meta) => until = until.max(meta.retain_until),
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                return Err(Error::failed(format!(
                    "prune stopped before deleting anything: the object lock of {key} could not be read ({e})"
                )));
            }
        }
    }
    Ok(until)
}

/// Delete what a backup kept outside the repositories, once the last repository has
/// forgotten it (the manifests are gone first, so nothing points at a missing snapshot).
async fn delete_external(
    ctx: &Context,
    source: &str,
    backup_id: &str,
    details: serde_json::Value,
) -> Result<Vec<String>> {
    let src = ctx.policies.source(source)?;
    let engine = crate::engine::for_source(src);
    let id = backup_id.to_string();
    super::blocking(move || engine.delete_external(&id, &details))
        .await
        .map_err(|e| e.context(format!("backup {source}/{backup_id}")))
}
