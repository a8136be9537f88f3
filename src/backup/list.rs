//! `lifeboat list`: committed backups, after reconciling the catalog with storage, and
//! the corrupt ones (a manifest in storage that cannot be trusted) beside them.

use super::Context;
use super::reconcile;
use crate::catalog::{CatalogBackup, CorruptBackup};
use crate::error::Result;

/// What `lifeboat list` shows.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Committed backups, newest first, on every destination.
    pub backups: Vec<CatalogBackup>,
    /// Backups whose manifest cannot be trusted: never restored nor counted.
    pub corrupt: Vec<CorruptBackup>,
}

/// Backups of one source (or all), newest first, on every destination.
pub async fn list(ctx: &Context, source: Option<&str>) -> Result<Listing> {
    let names: Vec<String> = match source {
        Some(s) => vec![ctx.policies.source(s)?.name.clone()],
        None => ctx.policies.sources.keys().cloned().collect(),
    };
    reconcile::reconcile_sources(ctx, &names).await?;
    let mut out = Listing::default();
    for n in &names {
        out.backups.extend(ctx.catalog.backups(Some(n), None)?);
        out.corrupt
            .extend(ctx.catalog.corrupt_backups(Some(n), None)?);
    }
    Ok(out)
}
