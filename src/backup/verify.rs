//! `lifeboat verify`: read every stored byte back, recompute every hash, compare with
//! the manifest. The result is recorded twice: in the catalog and as `verify.json`
//! beside the manifest, so a rebuilt catalog keeps it. "Verified" means exactly this
//! full read-back matched, against the manifest whose hash the result carries: a
//! result vouches for that manifest only (see [`CatalogBackup::verified`]).
//!
//! By default each destination's newest backup is checked (a destination that missed
//! the newest run is checked on what it holds). A data object missing, shorter or
//! longer than its manifest says, and a manifest that cannot be trusted (a corrupt
//! backup, found also with a fresh catalog), are failed verifications: exit 4.

use super::reconcile::{self, get_manifest_bytes, parse_manifest};
use super::{Context, blocking};
use crate::catalog::CatalogBackup;
use crate::catalog::manifest::{VERIFY_FORMAT, VerifyResult, seal};
use crate::error::{Error, Result};
use crate::pipeline::{ChunkReader, RawCheck, check_stored, integrity_of};
use crate::storage::{PutOptions, layout};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::io;
use tracing::{info, warn};

/// Which backups to verify.
#[derive(Debug, Clone, Default)]
pub struct VerifySelection {
    /// Explicit backup ids (on every repository that holds them).
    pub ids: Vec<String>,
    /// Limit to one source.
    pub source: Option<String>,
    /// Every backup, not only the newest of each source on each destination.
    pub all: bool,
    /// Read back only this percentage of the chunks (0 < p < 100). A sampled check
    /// never makes a backup "verified"; a failed one withdraws that status.
    pub sample: Option<f64>,
}

/// Verify the selected backups; `Ok` even when some failed (see each result).
pub async fn verify(ctx: &Context, sel: &VerifySelection) -> Result<Vec<VerifyResult>> {
    for id in &sel.ids {
        layout::check_backup_id(id)?;
    }
    if let Some(p) = sel.sample
        && !(p > 0.0 && p <= 100.0)
    {
        return Err(Error::bad_input(format!(
            "--sample {p}: give a percentage above 0 and at most 100"
        )));
    }
    let sample = sel.sample.filter(|p| *p < 100.0);
    let sources: Vec<String> = match &sel.source {
        Some(s) => vec![ctx.policies.source(s)?.name.clone()],
        None => ctx.policies.sources.keys().cloned().collect(),
    };
    reconcile::reconcile_sources(ctx, &sources).await?;
    let mut targets = Vec::new();
    for s in &sources {
        let backups = ctx.catalog.backups(Some(s), None)?;
        if !sel.ids.is_empty() {
            targets.extend(
                backups
                    .into_iter()
                    .filter(|b| sel.ids.contains(&b.manifest.backup_id)),
            );
        } else if sel.all {
            targets.extend(backups);
        } else {
            targets.extend(newest_per_repository(backups));
        }
    }
    // A manifest that cannot be trusted is a backup that failed verification, whatever
    // the selection's age rule: it is found without reading any data.
    let corrupt: Vec<VerifyResult> = sources
        .iter()
        .map(|s| ctx.catalog.corrupt_backups(Some(s), None))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .filter(|c| sel.ids.is_empty() || sel.ids.contains(&c.backup_id))
        .map(|c| VerifyResult {
            source: c.source,
            backup_id: c.backup_id,
            repository: c.repository,
            verified_at: ctx.clock.now(),
            ok: false,
            mode: if sample.is_some() { "sample" } else { "full" }.into(),
            expected_sha256: String::new(),
            actual_sha256: None,
            problems: vec![c.problem],
            manifest_sha256: None,
        })
        .collect();
    for id in &sel.ids {
        if !targets.iter().any(|t| &t.manifest.backup_id == id)
            && !corrupt.iter().any(|c| &c.backup_id == id)
        {
            return Err(Error::bad_input(format!(
                "backup {id} is not in any repository of {} (see `lifeboat list`)",
                sel.source.as_deref().unwrap_or("any source")
            )));
        }
    }
    let mut results = Vec::new();
    for result in corrupt {
        // In the catalog only: the manifest that would say how long to keep a
        // verify.json beside it is the thing that cannot be read.
        ctx.catalog.record_verification(&result)?;
        warn!(source = %result.source, backup = %result.backup_id, repository = %result.repository, problems = ?result.problems, "corrupt backup: manifest not trusted");
        results.push(result);
    }
    for t in targets {
        let m = &t.manifest;
        let result = verify_one(ctx, &t, sample).await;
        let store = ctx.store(&m.repository)?;
        // verify.json keeps what a rebuilt catalog must know: full results, and any
        // failure. A passing sample must not replace a full result there.
        let recorded = if result.mode == "full" || !result.ok {
            store
                .put(
                    &layout::verify_key(&m.source, &m.backup_id),
                    Bytes::from(seal(VERIFY_FORMAT, &result)),
                    &PutOptions {
                        retain_until: Some(m.keep_until),
                        ..PutOptions::default()
                    },
                )
                .await
        } else {
            Ok(())
        };
        ctx.catalog.record_verification(&result)?;
        if result.ok {
            info!(source = %m.source, backup = %m.backup_id, repository = %m.repository, "verified");
        } else {
            warn!(source = %m.source, backup = %m.backup_id, repository = %m.repository, problems = ?result.problems, "verification failed");
        }
        recorded.map_err(|e| Error::from(e).context("recording the verification result"))?;
        results.push(result);
    }
    Ok(results)
}

/// The newest backup of each repository in `backups` (newest first, as the catalog
/// gives them): a destination that missed the newest run is checked on what it holds.
fn newest_per_repository(backups: Vec<CatalogBackup>) -> Vec<CatalogBackup> {
    let mut seen = std::collections::BTreeSet::new();
    backups
        .into_iter()
        .filter(|b| seen.insert(b.manifest.repository.clone()))
        .collect()
}

/// Verify one catalogued backup on its repository. The catalog's copy of the manifest
/// and of its hash say what to expect when the stored manifest itself is damaged.
pub async fn verify_one(
    ctx: &Context,
    backup: &CatalogBackup,
    sample: Option<f64>,
) -> VerifyResult {
    let cached = &backup.manifest;
    let (repo, source, id) = (
        cached.repository.as_str(),
        cached.source.as_str(),
        cached.backup_id.as_str(),
    );
    let mut result = VerifyResult {
        source: source.to_string(),
        backup_id: id.to_string(),
        repository: repo.to_string(),
        verified_at: ctx.clock.now(),
        ok: false,
        mode: if sample.is_some() { "sample" } else { "full" }.into(),
        expected_sha256: cached.stored.sha256.clone(),
        actual_sha256: None,
        problems: Vec::new(),
        manifest_sha256: None,
    };
    let bytes = match get_manifest_bytes(ctx, repo, source, id).await {
        Ok(b) => b,
        Err(e) => {
            result.problems.push(e.to_string());
            return result;
        }
    };
    let actual = hex::encode(Sha256::digest(&bytes));
    // The result vouches for the manifest it read, and only for it.
    result.manifest_sha256 = Some(actual.clone());
    if actual != backup.manifest_sha256 {
        result.problems.push(format!(
            "backup {source}/{id} in repository {repo}: manifest object: expected sha256 {} (as catalogued), actual {actual}",
            backup.manifest_sha256
        ));
    }
    let manifest = match parse_manifest(&bytes, repo, source, id) {
        Ok(m) => m,
        Err(e) => {
            result.problems.push(e.to_string());
            return result;
        }
    };
    result.expected_sha256 = manifest.stored.sha256.clone();
    let store = match ctx.store(repo) {
        Ok(s) => s,
        Err(e) => {
            result.problems.push(e.to_string());
            return result;
        }
    };
    let key = layout::data_key(source, id);
    // A missing, short or long object fails here, before any read: reading the
    // ranges of a long one would match, and a short one has chunks that cannot be read.
    if let Err(e) = check_stored(&store, &key, &manifest).await {
        result.problems.push(e.to_string());
        return result;
    }
    // What the backup keeps outside the repository (an RDS snapshot and its copies)
    // must exist too, or the backup cannot be restored.
    if let Ok(src) = ctx.policies.source(source) {
        let engine = crate::engine::for_source(src);
        let details = manifest.engine.clone();
        match blocking(move || Ok(engine.verify_external(&details))).await {
            Ok(p) => result.problems.extend(
                p.into_iter()
                    .map(|p| format!("backup {source}/{id} in repository {repo}: {p}")),
            ),
            Err(e) => result.problems.push(e.to_string()),
        }
    }
    if let Some(percent) = sample {
        let problems = verify_sample(&store, &key, &manifest, percent).await;
        result.problems.extend(problems);
        result.ok = result.problems.is_empty();
        return result;
    }
    let ahead = ctx
        .policies
        .repositories
        .get(repo)
        .map_or(4, |r| r.max_in_flight);
    let handle = tokio::runtime::Handle::current();
    let m = manifest.clone();
    let read = blocking(move || {
        let chunks = ChunkReader::new(store, key, &m, ahead, handle).tolerant();
        let mut problems = Vec::new();
        let mut decoder =
            zstd::stream::read::Decoder::new(chunks).map_err(|e| Error::io("zstd", e))?;
        let raw_ok = {
            let mut raw = RawCheck::new(&mut decoder, &m);
            match io::copy(&mut raw, &mut io::sink()) {
                Ok(_) => true,
                Err(e) => {
                    problems.push(describe(&e));
                    false
                }
            }
        };
        // Read whatever is left so the whole object's hash is always computed.
        let chunks = decoder.get_mut().get_mut();
        if let Err(e) = io::copy(chunks, &mut io::sink())
            && raw_ok
        {
            problems.push(describe(&e));
        }
        let mut chunk_problems = std::mem::take(&mut chunks.problems);
        chunk_problems.append(&mut problems);
        Ok((chunk_problems, chunks.actual_sha256.clone()))
    })
    .await;
    match read {
        Ok((problems, actual)) => {
            result.problems.extend(problems);
            result.actual_sha256 = actual;
        }
        Err(e) => result.problems.push(e.to_string()),
    }
    result.ok = result.problems.is_empty() && result.actual_sha256.is_some();
    result
}

fn describe(e: &io::Error) -> String {
    integrity_of(e).unwrap_or_else(|| format!("read failed: {e}"))
}

/// Read back a random `percent` of the chunks (at least one) and check their hashes.
async fn verify_sample(
    store: &std::sync::Arc<dyn crate::storage::Store>,
    key: &str,
    m: &crate::catalog::manifest::Manifest,
    percent: f64,
) -> Vec<String> {
    let n = m.stored.chunks.len();
    let want = ((n as f64 * percent / 100.0).ceil() as usize).clamp(1, n.max(1));
    let mut indices: Vec<usize> = (0..n).collect();
    // A partial Fisher-Yates shuffle picks `want` distinct chunks.
    for i in 0..want.min(n) {
        let j = i + (rand::random::<u64>() as usize) % (n - i);
        indices.swap(i, j);
    }
    let mut problems = Vec::new();
    for &i in indices.iter().take(want) {
        let start = i as u64 * m.stored.chunk_size;
        let end = (start + m.stored.chunk_size).min(m.stored.size);
        match store.get_range(key, start..end).await {
            Ok(data) => {
                let actual = hex::encode(Sha256::digest(&data));
                if actual != m.stored.chunks[i] {
                    problems.push(format!(
                        "backup {}/{} in repository {}: chunk {} of {n}: expected sha256 {}, actual {actual}",
                        m.source,
                        m.backup_id,
                        store.name(),
                        i + 1,
                        m.stored.chunks[i]
                    ));
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    problems
}
