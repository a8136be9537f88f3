//! `lifeboat restore`: choose a backup, stream it back with every chunk checked, let the
//! engine restore into a staging copy, compare counts, and only then swap it in.

use super::reconcile::{self, read_manifest};
use super::{Context, blocking};
use crate::catalog::CatalogBackup;
use crate::engine::{self, counts::CountsReport};
use crate::error::{Error, ErrorKind, Result};
use crate::pipeline;
use crate::storage::layout;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;
use tracing::warn;

/// What to restore, from where, to where.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Source name.
    pub source: String,
    /// Target (for sqlite: a database file path).
    pub target: String,
    /// A specific backup.
    pub backup_id: Option<String>,
    /// The newest backup whose consistency point is at or before this.
    pub before: Option<DateTime<Utc>>,
    /// Only backups whose last full verification matched.
    pub verified: bool,
    /// Replace a non-empty target.
    pub force: bool,
    /// Read only from this repository.
    pub from: Option<String>,
    /// Why: a drill or trial restore runs no post-restore command, restart or check URL
    /// unless the source allows it for drills.
    pub purpose: engine::Purpose,
    /// Cancels the restore from outside; its swap goes through this fence.
    pub control: engine::RestoreControl,
    /// Written right after the swap (the restore's own record that it completed): the
    /// file, and the report's fields as JSON in it.
    pub marker: Option<std::path::PathBuf>,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RestoreReport {
    /// Source.
    pub source: String,
    /// Backup restored.
    pub backup_id: String,
    /// Repository it was read from.
    pub repository: String,
    /// Target.
    pub target: String,
    /// The backup's consistency point.
    pub consistency_point: DateTime<Utc>,
    /// Counts comparison.
    pub counts: CountsReport,
    /// Whether the target was replaced.
    pub swapped: bool,
    /// A step after the swap that failed (the data is in place).
    pub after_swap_error: Option<String>,
    /// Repositories tried before, and why they failed.
    pub fallbacks: Vec<String>,
}

/// Pick the backup per the options: newest first among candidates.
fn choose<'a>(opts: &RestoreOptions, backups: &'a [CatalogBackup]) -> Result<&'a CatalogBackup> {
    backups
        .iter()
        .filter(|b| {
            opts.from
                .as_ref()
                .is_none_or(|r| &b.manifest.repository == r)
        })
        .filter(|b| {
            opts.backup_id
                .as_ref()
                .is_none_or(|id| &b.manifest.backup_id == id)
        })
        .filter(|b| {
            opts.before
                .is_none_or(|t| b.manifest.consistency_point <= t)
        })
        .find(|b| !opts.verified || b.verified())
        .ok_or_else(|| {
            let mut what = vec![format!("source {}", opts.source)];
            if let Some(id) = &opts.backup_id {
                what.push(format!("id {id}"));
            }
            if let Some(t) = opts.before {
                what.push(format!("at or before {}", t.to_rfc3339()));
            }
            if opts.verified {
                what.push("verified".into());
            }
            if let Some(r) = &opts.from {
                what.push(format!("in repository {r}"));
            }
            Error::bad_input(format!(
                "no committed backup matches ({}); `lifeboat list {}` shows what exists",
                what.join(", "),
                opts.source
            ))
        })
}

/// Restore per `opts`.
pub async fn restore(ctx: &Context, opts: &RestoreOptions) -> Result<RestoreReport> {
    let source = ctx.policies.source(&opts.source)?.clone();
    if let Some(id) = &opts.backup_id {
        layout::check_backup_id(id)?;
    }
    if let Some(r) = &opts.from
        && !source.destinations.contains(r)
    {
        return Err(Error::bad_input(format!(
            "--from {r}: not a destination of source {} (its destinations: {})",
            source.name,
            source.destinations.join(", ")
        )));
    }
    let engine: Arc<dyn engine::Engine> = Arc::from(engine::for_source(&source));
    {
        // Engines may talk to a server here: off the async workers.
        let (engine, target, force) = (engine.clone(), opts.target.clone(), opts.force);
        blocking(move || engine.check_target(&target, force)).await?;
    }
    reconcile::reconcile_sources(ctx, std::slice::from_ref(&source.name)).await?;
    let backups = ctx.catalog.backups(Some(&source.name), None)?;
    let chosen = choose(opts, &backups)?;
    let id = chosen.manifest.backup_id.clone();
    // Listed while it runs: what a killed restore leaves here tells `prune` which
    // target's staging copies to sweep.
    let _ledger = engine::staging::ledger_enter(&ledger_dir(ctx), &source.name, &id, &opts.target)?;
    let job = engine::RestoreJob {
        source: source.name.clone(),
        backup_id: id.clone(),
        purpose: opts.purpose,
        control: opts.control.clone(),
    };

    // Every repository holding this backup, in the source's order of preference;
    // verified copies first when --verified.
    let mut repos: Vec<&CatalogBackup> = backups
        .iter()
        .filter(|b| b.manifest.backup_id == id)
        .filter(|b| {
            opts.from
                .as_ref()
                .is_none_or(|r| &b.manifest.repository == r)
        })
        .collect();
    repos.sort_by_key(|b| {
        (
            opts.verified && !b.verified(),
            source
                .destinations
                .iter()
                .position(|d| d == &b.manifest.repository)
                .unwrap_or(usize::MAX),
        )
    });

    let mut fallbacks = Vec::new();
    let mut last_err = None;
    for b in repos {
        let repo = b.manifest.repository.clone();
        match restore_from(
            ctx,
            &engine,
            &repo,
            &job,
            &opts.target,
            opts.marker.as_deref(),
        )
        .await
        {
            Ok((manifest, outcome)) => {
                return Ok(RestoreReport {
                    source: source.name.clone(),
                    backup_id: id,
                    repository: repo,
                    target: opts.target.clone(),
                    consistency_point: manifest.consistency_point,
                    counts: outcome.counts,
                    swapped: outcome.swapped,
                    after_swap_error: outcome.after_swap_error,
                    fallbacks,
                });
            }
            // Bad input (a refused target, an archive entry outside the source) would be
            // the same from every repository: stop. So does a cancelled restore, and one
            // that swapped its copy in before it failed (the target holds the backup).
            Err(e) if e.kind() == ErrorKind::BadInput => return Err(e),
            Err(e) if job.control.is_cancelled() || job.control.is_committed() => return Err(e),
            Err(e) => {
                warn!(source = %source.name, backup = %id, repository = %repo, error = %e, "restore from this repository failed; trying the next one");
                fallbacks.push(format!("{repo}: {e}"));
                last_err = Some(e);
            }
        }
    }
    Err(last_err.unwrap_or_else(|| Error::failed("no repository holds the chosen backup")))
}

async fn restore_from(
    ctx: &Context,
    engine: &Arc<dyn engine::Engine>,
    repo: &str,
    job: &engine::RestoreJob,
    target: &str,
    marker: Option<&std::path::Path>,
) -> Result<(crate::catalog::manifest::Manifest, engine::RestoreOutcome)> {
    job.control.check()?;
    let (manifest, _) = read_manifest(ctx, repo, &job.source, &job.backup_id).await?;
    let store = ctx.store(repo)?;
    let key = layout::data_key(&job.source, &job.backup_id);
    pipeline::check_stored(&store, &key, &manifest).await?;
    let ahead = ctx.policies.repositories[repo].max_in_flight;
    let handle = tokio::runtime::Handle::current();
    if let Some(path) = marker {
        let body = serde_json::to_vec(&marker_fields(
            &job.source,
            &job.backup_id,
            repo,
            target,
            manifest.consistency_point,
        ))
        .expect("marker fields serialise");
        job.control.set_marker(path.to_path_buf(), body);
    }
    let engine = engine.clone();
    let m = manifest.clone();
    let target = target.to_string();
    let job = job.clone();
    let outcome = blocking(move || {
        let mut stream = pipeline::open_raw(store, key, &m, ahead, handle)?;
        engine.restore(&target, &mut stream, &m.counts, &job)
    })
    .await?;
    Ok((manifest, outcome))
}

/// What a completed restore records in its marker (and a DR restore step outputs).
pub fn marker_fields(
    source: &str,
    backup_id: &str,
    repository: &str,
    target: &str,
    consistency_point: DateTime<Utc>,
) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([
        ("target".to_string(), target.to_string()),
        ("backup-id".to_string(), backup_id.to_string()),
        (
            "consistency-point".to_string(),
            consistency_point.to_rfc3339(),
        ),
        ("repository".to_string(), repository.to_string()),
        ("source".to_string(), source.to_string()),
    ])
}

/// The ledger of restores in progress (see [`engine::staging`]).
fn ledger_dir(ctx: &Context) -> std::path::PathBuf {
    ctx.catalog
        .path()
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("restores")
}

/// Remove what killed restores of `sources` left beside their targets: staging copies
/// and staging databases whose restore is dead (never one still running). For `prune`
/// (and anyone tidying up); returns what was removed. A target that cannot be swept
/// now is kept in the ledger for the next time, with a warning.
pub async fn sweep_staging(ctx: &Context, sources: &[String]) -> Vec<String> {
    let mut removed = Vec::new();
    for (file, entry) in engine::staging::ledger_dead(&ledger_dir(ctx)) {
        if !sources.contains(&entry.source) {
            continue;
        }
        let Ok(source) = ctx.policies.source(&entry.source) else {
            // A source no longer in the policy: nothing to sweep with.
            continue;
        };
        let engine: Arc<dyn engine::Engine> = Arc::from(engine::for_source(source));
        let target = entry.target.clone();
        match blocking(move || engine.sweep_staging(&target)).await {
            Ok(done) => {
                removed.extend(done);
                let _ = std::fs::remove_file(&file);
            }
            Err(e) => {
                warn!(source = %entry.source, target = %entry.target, error = %e, "leftover staging copies of a killed restore were not removed; the next prune tries again")
            }
        }
    }
    removed
}
