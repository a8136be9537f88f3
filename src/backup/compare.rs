//! `lifeboat compare`: recount an existing target and compare it with the counts in a
//! backup's manifest: proof that what runs now holds what was backed up.

use super::{Context, blocking, reconcile};
use crate::engine::{self, counts::CountsReport};
use crate::error::{Error, Result};
use crate::storage::layout;
use serde::Serialize;

/// The comparison.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CompareReport {
    /// Source.
    pub source: String,
    /// Backup whose manifest was used.
    pub backup_id: String,
    /// Target counted.
    pub target: String,
    /// Counts.
    pub counts: CountsReport,
}

/// Compare `target` with backup `backup_id` of `source` (default: the newest).
pub async fn compare(
    ctx: &Context,
    source: &str,
    target: &str,
    backup_id: Option<&str>,
) -> Result<CompareReport> {
    let src = ctx.policies.source(source)?.clone();
    if let Some(id) = backup_id {
        layout::check_backup_id(id)?;
    }
    reconcile::reconcile_sources(ctx, std::slice::from_ref(&src.name)).await?;
    let backups = ctx.catalog.backups(Some(&src.name), None)?;
    let chosen = backups
        .iter()
        .find(|b| backup_id.is_none_or(|id| b.manifest.backup_id == id))
        .ok_or_else(|| {
            Error::bad_input(format!(
                "no committed backup of {}{} (`lifeboat list {}` shows what exists)",
                src.name,
                backup_id
                    .map(|i| format!(" with id {i}"))
                    .unwrap_or_default(),
                src.name
            ))
        })?;
    let expected = chosen.manifest.counts.clone();
    let engine = engine::for_source(&src);
    let t = target.to_string();
    let counts = blocking(move || {
        let actual = engine.count_target(&t)?;
        Ok(engine.compare(&expected, &actual))
    })
    .await?;
    Ok(CompareReport {
        source: src.name.clone(),
        backup_id: chosen.manifest.backup_id.clone(),
        target: target.to_string(),
        counts,
    })
}
