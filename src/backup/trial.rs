//! Trial restores: the newest backup of a source restored into a scratch target through
//! the engine (every chunk hash checked, the engine's own load and recount), and the
//! counts compared with the manifest. Proof that a backup restores, not only that its
//! bytes are intact.
//!
//! The scratch target is the source's `verify.target`, else a temporary file or folder
//! (in the spool folder), or for PostgreSQL a database `DB_lb_restore_test` on the
//! source's own server, dropped afterwards. The result is recorded in the catalog and
//! sealed beside the backup's manifest (`restore-test.json`) in the repository it was
//! read from, so a rebuilt catalog keeps it.

use super::Context;
use super::restore::{RestoreOptions, restore};
use crate::catalog::manifest::{RESTORE_TEST_FORMAT, RestoreTestResult, TrialCount, seal};
use crate::engine::postgres::PostgresEngine;
use crate::error::{Error, Result};
use crate::policy::{Source, SourceConfig};
use crate::storage::{PutOptions, layout};
use bytes::Bytes;
use tracing::{info, warn};

/// Where a trial restore goes, and what to remove afterwards.
struct Scratch {
    target: String,
    /// What the result says the target was (never a URL with user or password).
    shown: String,
    /// Removed when dropped.
    _dir: Option<tempfile::TempDir>,
    /// A temporary database to drop afterwards.
    drop_database: Option<(PostgresEngine, String)>,
}

/// Why `source` cannot be trial-restored, if it cannot.
pub fn unsupported(source: &Source) -> Option<String> {
    let explicit = source
        .verify
        .as_ref()
        .and_then(|v| v.target.as_ref())
        .is_some();
    match &source.config {
        SourceConfig::Rds(_) => Some(
            "an rds backup is a snapshot: rehearse its restore with a DR drill (an rds_restore step)"
                .into(),
        ),
        SourceConfig::Neo4j(_) if !explicit => Some(
            "a Neo4j trial restore needs a scratch database: set verify = { restore-test = true, target = \"trial\" }"
                .into(),
        ),
        _ => None,
    }
}

fn scratch(ctx: &Context, source: &Source) -> Result<Scratch> {
    if let Some(t) = source.verify.as_ref().and_then(|v| v.target.clone()) {
        let shown = if t.contains("://") {
            database_of(&t)
        } else {
            t.clone()
        };
        return Ok(Scratch {
            target: t,
            shown,
            _dir: None,
            drop_database: None,
        });
    }
    if let SourceConfig::Postgres(cfg) = &source.config {
        let target = PostgresEngine::renamed_target(&cfg.url, "lb_restore_test")?;
        return Ok(Scratch {
            shown: format!("temporary database {}", database_of(&target)),
            drop_database: Some((PostgresEngine::new(cfg.clone()), target.clone())),
            target,
            _dir: None,
        });
    }
    let dir = ctx.spool.tempdir("restore-test")?;
    let target = match &source.config {
        // File engines restore into a file; the others into a folder.
        SourceConfig::Sqlite { .. } | SourceConfig::File { .. } => dir.path().join("restore-test"),
        _ => {
            let d = dir.path().join("restore-test");
            std::fs::create_dir(&d).map_err(|e| Error::io(d.display(), e))?;
            d
        }
    };
    Ok(Scratch {
        target: target.display().to_string(),
        shown: "a temporary folder".into(),
        _dir: Some(dir),
        drop_database: None,
    })
}

/// The database name of a PostgreSQL URL (the rest may name users and hosts).
fn database_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.path().trim_start_matches('/').to_string())
        .unwrap_or_else(|_| "the configured database".into())
}

/// Restore the newest committed backup of `source` into a scratch target and compare
/// the counts; record the result. Returns it (`ok: false` when anything failed).
pub async fn restore_test(ctx: &Context, source: &str) -> Result<RestoreTestResult> {
    let src = ctx.policies.source(source)?.clone();
    if let Some(why) = unsupported(&src) {
        return Err(Error::bad_input(format!("source {source}: {why}")));
    }
    let newest = ctx
        .catalog
        .backups(Some(source), None)?
        .into_iter()
        .find(|b| src.destinations.contains(&b.manifest.repository))
        .ok_or_else(|| {
            Error::failed(format!(
                "source {source} has no committed backup to restore"
            ))
        })?;
    let id = newest.manifest.backup_id.clone();
    let scratch = scratch(ctx, &src)?;
    let started = ctx.clock.now();
    let clock = std::time::Instant::now();
    let opts = RestoreOptions {
        source: source.to_string(),
        target: scratch.target.clone(),
        backup_id: Some(id.clone()),
        before: None,
        verified: false,
        // The scratch target is lifeboat's own: every trial replaces it.
        force: true,
        from: None,
        // A scratch copy: no post-restore command, restart or check URL, which act on
        // the running service, ever runs for it.
        purpose: crate::engine::Purpose::Trial,
        ..RestoreOptions::default()
    };
    let mut result = RestoreTestResult {
        source: source.to_string(),
        backup_id: id.clone(),
        repository: newest.manifest.repository.clone(),
        tested_at: started,
        ok: false,
        target: scratch.shown.clone(),
        counts: Vec::new(),
        problems: Vec::new(),
        duration_secs: 0.0,
        manifest_sha256: None,
    };
    match restore(ctx, &opts).await {
        Ok(report) => {
            result.repository = report.repository.clone();
            // Bound to the manifest restored from: a pass vouches for it only.
            result.manifest_sha256 = ctx
                .catalog
                .backups(Some(source), Some(&report.repository))?
                .into_iter()
                .find(|b| b.manifest.backup_id == id)
                .map(|b| b.manifest_sha256);
            result.counts = report
                .counts
                .checks
                .iter()
                .map(|c| TrialCount {
                    name: c.name.clone(),
                    expected: c.expected,
                    actual: c.actual,
                })
                .collect();
            result.problems.extend(report.counts.mismatches());
            result.problems.extend(
                report
                    .fallbacks
                    .iter()
                    .map(|f| format!("fell back past {f}")),
            );
            if let Some(e) = &report.after_swap_error {
                result.problems.push(format!("after the restore: {e}"));
            }
            result.ok = report.counts.ok() && report.swapped && report.after_swap_error.is_none();
        }
        Err(e) => result.problems.push(e.to_string()),
    }
    result.duration_secs = clock.elapsed().as_secs_f64();
    if let Some((engine, target)) = &scratch.drop_database
        && let Err(e) = engine.drop_target(target).await
    {
        warn!(source = %source, error = %e, "the trial restore's temporary database was not dropped; drop it by hand");
    }
    drop(scratch);
    record(ctx, &result, newest.manifest.keep_until).await?;
    if result.ok {
        info!(source = %source, backup = %id, seconds = result.duration_secs, "trial restore matched the manifest");
    } else {
        warn!(source = %source, backup = %id, problems = ?result.problems, "trial restore failed");
    }
    Ok(result)
}

/// Record in the catalog and beside the manifest (a rebuilt catalog reads it back).
async fn record(
    ctx: &Context,
    result: &RestoreTestResult,
    keep_until: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    ctx.catalog.record_restore_test(result)?;
    let store = ctx.store(&result.repository)?;
    store
        .put(
            &layout::restore_test_key(&result.source, &result.backup_id),
            Bytes::from(seal(RESTORE_TEST_FORMAT, result)),
            &PutOptions {
                retain_until: Some(keep_until),
                ..PutOptions::default()
            },
        )
        .await
        .map_err(|e| Error::from(e).context("recording the trial restore result"))
}
