//! `lifeboat list`: committed backups, after reconciling the catalog with storage.

use super::Context;
use super::reconcile;
use crate::catalog::CatalogBackup;
use crate::error::Result;

/// Backups of one source (or all), newest first, on every destination.
pub async fn list(ctx: &Context, source: Option<&str>) -> Result<Vec<CatalogBackup>> {
    let names: Vec<String> = match source {
        Some(s) => vec![ctx.policies.source(s)?.name.clone()],
        None => ctx.policies.sources.keys().cloned().collect(),
    };
    reconcile::reconcile_sources(ctx, &names).await?;
    let mut out = Vec::new();
    for n in &names {
        out.extend(ctx.catalog.backups(Some(n), None)?);
    }
    Ok(out)
}
