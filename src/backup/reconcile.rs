//! Keep the catalog in line with what the repositories hold. Storage is the truth: a
//! manifest found in storage but not in the catalog is added (with its verification
//! result); a catalog row whose manifest is gone is dropped.

use super::Context;
use crate::catalog::CorruptBackup;
use crate::catalog::manifest::{
    MANIFEST_FORMAT, Manifest, RESTORE_TEST_FORMAT, RestoreTestResult, VERIFY_FORMAT, VerifyResult,
    unseal,
};
use crate::error::Result;
use crate::storage::layout;
use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use tracing::warn;

/// What a reconcile changed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ReconcileReport {
    /// Backups added to the catalog.
    pub added: usize,
    /// Catalog rows dropped because their manifest is gone.
    pub removed: usize,
    /// Verification results read back.
    pub verifications: usize,
    /// Manifests that could not be trusted: corrupt backups (see
    /// [`crate::catalog::Catalog::corrupt_backups`]).
    pub invalid: Vec<String>,
    /// Repositories that could not be listed.
    pub unreachable: Vec<String>,
}

/// Objects of one repository, grouped by (source, backup id).
pub(crate) type Listing = BTreeMap<(String, String), BTreeSet<String>>;

/// List `prefix` of `repo`, grouped by backup.
pub(crate) async fn list_backups(ctx: &Context, repo: &str, prefix: &str) -> Result<Listing> {
    let store = ctx.store(repo)?;
    let mut out = Listing::new();
    for obj in store.list(prefix).await? {
        if let Some((s, id, name)) = layout::parse_key(&obj.key) {
            out.entry((s.to_string(), id.to_string()))
                .or_default()
                .insert(name.to_string());
        }
    }
    Ok(out)
}

/// Read the manifest object of a backup, unchecked.
pub async fn get_manifest_bytes(
    ctx: &Context,
    repo: &str,
    source: &str,
    id: &str,
) -> Result<Bytes> {
    let store = ctx.store(repo)?;
    Ok(store.get(&layout::manifest_key(source, id)).await?)
}

/// Read and check the manifest of a backup; also returns the SHA-256 of the object.
pub async fn read_manifest(
    ctx: &Context,
    repo: &str,
    source: &str,
    id: &str,
) -> Result<(Manifest, String)> {
    let bytes = get_manifest_bytes(ctx, repo, source, id).await?;
    let m = parse_manifest(&bytes, repo, source, id)?;
    Ok((m, hex::encode(Sha256::digest(&bytes))))
}

/// Check a manifest object and parse it.
pub fn parse_manifest(bytes: &[u8], repo: &str, source: &str, id: &str) -> Result<Manifest> {
    let what = format!("manifest of backup {source}/{id} in repository {repo}");
    let m: Manifest = unseal(MANIFEST_FORMAT, bytes, &what)?;
    if m.source != source || m.backup_id != id {
        return Err(crate::Error::integrity(format!(
            "{what}: describes {}/{}, not {source}/{id}",
            m.source, m.backup_id
        )));
    }
    m.check()
        .map_err(|e| crate::Error::integrity(format!("{what}: {e}")))?;
    Ok(m)
}

async fn read_verify(ctx: &Context, repo: &str, source: &str, id: &str) -> Result<VerifyResult> {
    let store = ctx.store(repo)?;
    let bytes = store.get(&layout::verify_key(source, id)).await?;
    unseal(
        VERIFY_FORMAT,
        &bytes,
        &format!("verification result of {source}/{id} in repository {repo}"),
    )
}

async fn read_restore_test(
    ctx: &Context,
    repo: &str,
    source: &str,
    id: &str,
) -> Result<RestoreTestResult> {
    let store = ctx.store(repo)?;
    let bytes = store.get(&layout::restore_test_key(source, id)).await?;
    unseal(
        RESTORE_TEST_FORMAT,
        &bytes,
        &format!("trial restore result of {source}/{id} in repository {repo}"),
    )
}

/// Reconcile the catalog with repository `repo`, for one source or (with `None`) for
/// everything it holds.
pub async fn reconcile_repository(
    ctx: &Context,
    repo: &str,
    source: Option<&str>,
    report: &mut ReconcileReport,
) -> Result<()> {
    let prefix = source.map(layout::source_prefix).unwrap_or_default();
    let listing = match list_backups(ctx, repo, &prefix).await {
        Ok(l) => l,
        Err(e) => {
            warn!(repository = repo, error = %e, "repository unreachable; catalog not reconciled with it");
            report.unreachable.push(format!("{repo}: {e}"));
            return Ok(());
        }
    };
    let now = ctx.clock.now();
    let mut present = BTreeSet::new();
    for ((s, id), objects) in &listing {
        if !objects.contains(layout::MANIFEST) {
            continue;
        }
        present.insert((s.clone(), id.clone()));
        if ctx.catalog.has_backup(repo, s, id)? {
            continue;
        }
        let bytes = match ctx.store(repo)?.get(&layout::manifest_key(s, id)).await {
            Ok(b) => b,
            // Deleted since the listing (a prune elsewhere): nothing to add.
            Err(e) if e.is_not_found() => {
                present.remove(&(s.clone(), id.clone()));
                continue;
            }
            // Not read is not corrupt: the repository answered the listing but not
            // this read; say so as for an unreachable repository.
            Err(e) => {
                warn!(repository = repo, source = %s, backup = %id, error = %e, "manifest unreadable; backup not catalogued");
                report.unreachable.push(format!("{repo}: {e}"));
                continue;
            }
        };
        let mut m = match parse_manifest(&bytes, repo, s, id) {
            Ok(m) => m,
            Err(e) => {
                // A manifest that exists but cannot be trusted is a corrupt backup:
                // kept in sight (list, verify, report), never a backup to use.
                warn!(repository = repo, source = %s, backup = %id, error = %e, "manifest not trusted: corrupt backup");
                ctx.catalog.record_corrupt(&CorruptBackup {
                    repository: repo.to_string(),
                    source: s.clone(),
                    backup_id: id.clone(),
                    found_at: now,
                    problem: e.to_string(),
                })?;
                report.invalid.push(e.to_string());
                continue;
            }
        };
        let manifest_sha256 = hex::encode(Sha256::digest(&bytes));
        ctx.catalog.clear_corrupt(repo, s, id)?;
        // The repository's name in the current policy is what the catalog uses.
        m.repository = repo.to_string();
        ctx.catalog.upsert_backup(&m, &manifest_sha256)?;
        report.added += 1;
        if objects.contains(layout::VERIFY) {
            match read_verify(ctx, repo, s, id).await {
                Ok(mut v) => {
                    v.repository = repo.to_string();
                    ctx.catalog.record_verification(&v)?;
                    report.verifications += 1;
                }
                Err(e) => {
                    warn!(repository = repo, source = %s, backup = %id, error = %e, "verification result not trusted; ignored")
                }
            }
        }
        if objects.contains(layout::RESTORE_TEST) {
            match read_restore_test(ctx, repo, s, id).await {
                Ok(mut t) => {
                    t.repository = repo.to_string();
                    ctx.catalog.record_restore_test(&t)?;
                }
                Err(e) => {
                    warn!(repository = repo, source = %s, backup = %id, error = %e, "trial restore result not trusted; ignored")
                }
            }
        }
    }
    for c in ctx.catalog.corrupt_backups(source, Some(repo))? {
        if !listing
            .get(&(c.source.clone(), c.backup_id.clone()))
            .is_some_and(|o| o.contains(layout::MANIFEST))
        {
            ctx.catalog.clear_corrupt(repo, &c.source, &c.backup_id)?;
        }
    }
    for b in ctx.catalog.backups(source, Some(repo))? {
        let key = (b.manifest.source.clone(), b.manifest.backup_id.clone());
        if !present.contains(&key) {
            ctx.catalog.remove_backup(
                repo,
                &key.0,
                &key.1,
                now,
                "manifest no longer in the repository",
            )?;
            report.removed += 1;
        }
    }
    Ok(())
}

/// Reconcile every destination of the named sources (all sources when empty).
pub async fn reconcile_sources(ctx: &Context, sources: &[String]) -> Result<ReconcileReport> {
    let mut report = ReconcileReport::default();
    let names: Vec<String> = if sources.is_empty() {
        ctx.policies.sources.keys().cloned().collect()
    } else {
        sources.to_vec()
    };
    for name in names {
        let src = ctx.policies.source(&name)?;
        for repo in &src.destinations {
            reconcile_repository(ctx, repo, Some(&name), &mut report).await?;
        }
    }
    Ok(report)
}

/// Drop every cached backup and read them all back from every repository.
pub async fn rebuild(ctx: &Context) -> Result<ReconcileReport> {
    ctx.catalog.clear_backups()?;
    let mut report = ReconcileReport::default();
    for repo in ctx.repository_names() {
        reconcile_repository(ctx, &repo, None, &mut report).await?;
    }
    Ok(report)
}

/// Read the stored verification results of `source`'s backups in `repo` again and
/// record those the catalog does not know yet.
///
/// Reconciling reads a `verify.json` only when its backup first enters the catalog,
/// so a result another host wrote later (a corruption it found) would stay unseen
/// here; decisions that count on a backup being verified (prune, the unchanged skip)
/// call this first. Returns how many results were new.
pub async fn refresh_verifications(ctx: &Context, repo: &str, source: &str) -> Result<usize> {
    let listing = list_backups(ctx, repo, &layout::source_prefix(source)).await?;
    let known: BTreeMap<String, Option<chrono::DateTime<chrono::Utc>>> = ctx
        .catalog
        .backups(Some(source), Some(repo))?
        .into_iter()
        .map(|b| {
            let at = b.last_verify.map(|v| v.verified_at);
            (b.manifest.backup_id, at)
        })
        .collect();
    let mut fresh = 0;
    for ((s, id), objects) in &listing {
        let Some(last) = known.get(id) else {
            continue;
        };
        if s != source || !objects.contains(layout::VERIFY) {
            continue;
        }
        match read_verify(ctx, repo, s, id).await {
            Ok(mut v) => {
                if last.is_none_or(|at| v.verified_at > at) {
                    v.repository = repo.to_string();
                    ctx.catalog.record_verification(&v)?;
                    fresh += 1;
                }
            }
            Err(e) => {
                warn!(repository = repo, source = %s, backup = %id, error = %e, "verification result not read; ignored")
            }
        }
    }
    Ok(fresh)
}
