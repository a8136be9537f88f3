//! `restore` steps: a lifeboat source restored into a target through the engines, from
//! the named repository first and the source's other destinations after.

use super::{Attempt, Effect};
use crate::backup::Context;
use crate::backup::restore::{RestoreOptions, restore};
use crate::dr::plan::At;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// The id of the backup a restore step takes (the catalog must be reconciled first).
/// Choosing before restoring pins the backup, so a resumed run restores the same one.
pub fn choose(ctx: &Context, source: &str, from: Option<&str>, at: &At) -> Result<String> {
    let src = ctx.policies.source(source)?;
    let backups = ctx.catalog.backups(Some(source), None)?;
    // Newest first; a backup held by several repositories is one candidate.
    backups
        .iter()
        .filter(|b| src.destinations.contains(&b.manifest.repository))
        .filter(|b| match at {
            At::Newest => true,
            At::Verified => b.verified(),
            At::AtOrBefore(t) => b.manifest.consistency_point <= *t,
        })
        .map(|b| b.manifest.backup_id.clone())
        .next()
        .ok_or_else(|| {
            let what = match at {
                At::Newest => "committed".to_string(),
                At::Verified => "verified".to_string(),
                At::AtOrBefore(t) => format!("at or before {}", t.to_rfc3339()),
            };
            Error::bad_input(format!(
                "no {what} backup of source {source}{} (`lifeboat list {source}` shows what exists)",
                from.map(|r| format!(" (preferred repository {r})")).unwrap_or_default()
            ))
        })
}

/// Restore per the resolved effect. A drill's restore runs no post-restore command,
/// restart or check URL unless its source allows them for drills: they act on the
/// running service, not on the drill's copy.
pub async fn run(
    ctx: &Context,
    effect: &Effect,
    replace: bool,
    attempt: &Attempt,
) -> Result<BTreeMap<String, String>> {
    let (Some(source), Some(target), Some(backup)) =
        (&effect.source, &effect.target, &effect.backup_id)
    else {
        return Err(Error::failed(
            "restore step without a resolved source, target and backup",
        ));
    };
    let opts = RestoreOptions {
        source: source.clone(),
        target: target.clone(),
        backup_id: Some(backup.clone()),
        before: None,
        verified: false,
        force: replace,
        from: None,
        purpose: match attempt.mode {
            crate::dr::Mode::Run => crate::engine::Purpose::Real,
            crate::dr::Mode::Drill => crate::engine::Purpose::Drill,
        },
        control: attempt.control.clone(),
        marker: Some(attempt.marker.clone()),
    };
    // The preferred repository goes first; the others are the fallbacks.
    let report = match &effect.from {
        Some(r) => match restore(
            ctx,
            &RestoreOptions {
                from: Some(r.clone()),
                ..opts.clone()
            },
        )
        .await
        {
            Ok(rep) => rep,
            Err(e) if e.kind() == crate::ErrorKind::BadInput => return Err(e),
            Err(e) if attempt.control.is_cancelled() || attempt.control.is_committed() => {
                return Err(e);
            }
            Err(e) => {
                tracing::warn!(source = %source, repository = %r, error = %e, "restore from the preferred repository failed; trying the other destinations");
                restore(ctx, &opts).await?
            }
        },
        None => restore(ctx, &opts).await?,
    };
    if !report.counts.ok() {
        return Err(Error::integrity(format!(
            "restore of {source} {backup} into {target}: counts differ from the manifest ({}); the target was not replaced",
            report.counts.mismatches().join(", ")
        )));
    }
    if let Some(e) = &report.after_swap_error {
        return Err(Error::failed(format!(
            "restore of {source} into {target}: after the swap: {e}"
        )));
    }
    Ok(crate::backup::restore::marker_fields(
        &report.source,
        &report.backup_id,
        &report.repository,
        &report.target,
        report.consistency_point,
    ))
}
