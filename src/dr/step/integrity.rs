//! `integrity` steps: recount a restored target and compare with the manifest of the
//! backup restored into it; run the plan's queries; read the freshest data point.
//!
//! Queries run on SQLite and PostgreSQL targets, read-only; for other engines the
//! recount through the engine is done and queries are refused with a clear error.
//!
//! Of an `rds_restore` step, the restored instance is named by the plan (a URL holding
//! the step's endpoint) and compared with the newest backup of a postgres source, within
//! the step's tolerance: the snapshot and the logical backup are taken at different
//! times, so their counts may differ by that much either way, and no more.

use super::Effect;
use crate::backup::{Context, blocking};
use crate::dr::plan::{At, CountTolerance};
use crate::engine;
use crate::error::{Error, Result};
use crate::policy::SourceConfig;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use rusqlite::{Connection, OpenFlags, types::ValueRef};
use std::collections::BTreeMap;

/// Resolve an integrity step of an `rds_restore` step: the restored database's URL
/// and the newest backup of `source` (chosen now and checkpointed, so that a resumed
/// check compares with the same manifest).
pub fn resolve_instance(ctx: &Context, source: &str, target: &str) -> Result<Effect> {
    let backup = super::restore::choose(ctx, source, None, &At::Newest)?;
    Ok(Effect {
        kind: "integrity".into(),
        source: Some(source.to_string()),
        target: Some(target.to_string()),
        backup_id: Some(backup),
        ..Effect::default()
    })
}

/// Check the target per the resolved effect.
pub async fn run(
    ctx: &Context,
    effect: &Effect,
    queries: &BTreeMap<String, String>,
    freshness: Option<&str>,
    min: &BTreeMap<String, u64>,
    tolerance: Option<CountTolerance>,
) -> Result<BTreeMap<String, String>> {
    let (Some(source), Some(target), Some(backup)) =
        (&effect.source, &effect.target, &effect.backup_id)
    else {
        return Err(Error::failed(
            "integrity step without a resolved source, target and backup",
        ));
    };
    let src = ctx.policies.source(source)?.clone();
    let expected = ctx
        .catalog
        .backups(Some(source), None)?
        .into_iter()
        .find(|b| &b.manifest.backup_id == backup)
        .map(|b| b.manifest.counts)
        .ok_or_else(|| {
            Error::failed(format!(
                "backup {backup} of {source} is no longer in the catalog"
            ))
        })?;
    let is_sqlite = matches!(src.config, SourceConfig::Sqlite { .. });
    let postgres = match &src.config {
        SourceConfig::Postgres(cfg) => Some(engine::postgres::PostgresEngine::new(cfg.clone())),
        _ => None,
    };
    if !is_sqlite && postgres.is_none() && (!queries.is_empty() || freshness.is_some()) {
        return Err(Error::bad_input(format!(
            "source {source} is neither SQLite nor PostgreSQL: integrity queries run on those targets only (remove queries and freshness)"
        )));
    }
    if let Some(pg) = postgres {
        recount(&src, target, backup, expected, tolerance).await?;
        let mut values = BTreeMap::new();
        for (name, sql) in queries {
            let v = pg
                .query_target(target, sql)
                .await
                .map_err(|e| e.context(format!("query {name}")))?;
            values.insert(name.clone(), v);
        }
        let fresh = match freshness {
            Some(sql) => Some(
                pg.query_target(target, sql)
                    .await
                    .map_err(|e| e.context("freshness query"))?,
            ),
            None => None,
        };
        return judge(target, values, fresh, min);
    }
    let engine = engine::for_source(&src);
    let (target, backup) = (target.clone(), backup.clone());
    let (queries, freshness, min) = (queries.clone(), freshness.map(String::from), min.clone());
    blocking(move || {
        let actual = engine.count_target(&target)?;
        let report = engine.compare(&expected, &actual);
        if !report.ok() {
            return Err(Error::integrity(format!(
                "{target}: counts differ from the manifest of backup {backup}: {}",
                report.mismatches().join(", ")
            )));
        }
        if queries.is_empty() && freshness.is_none() {
            return Ok(BTreeMap::new());
        }
        let conn = Connection::open_with_flags(&target, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| Error::from(e).context(&target))?;
        let mut values = BTreeMap::new();
        for (name, sql) in &queries {
            let v = query_value(&conn, sql).map_err(|e| e.context(format!("query {name}")))?;
            values.insert(name.clone(), v);
        }
        let fresh = match &freshness {
            Some(sql) => Some(query_value(&conn, sql).map_err(|e| e.context("freshness query"))?),
            None => None,
        };
        judge(&target, values, fresh, &min)
    })
    .await
}

fn query_value(conn: &Connection, sql: &str) -> Result<String> {
    Ok(conn.query_row(sql, [], |r| {
        Ok(match r.get_ref(0)? {
            ValueRef::Null => String::new(),
            ValueRef::Integer(i) => i.to_string(),
            ValueRef::Real(f) => f.to_string(),
            ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
            ValueRef::Blob(b) => format!("{} bytes", b.len()),
        })
    })?)
}

/// Recount `target` through the engine and compare with the manifest's counts: exact,
/// or within `tolerance` either way.
async fn recount(
    src: &crate::policy::Source,
    target: &str,
    backup: &str,
    expected: crate::engine::counts::Counts,
    tolerance: Option<CountTolerance>,
) -> Result<()> {
    let engine = engine::for_source(src);
    let (target, backup) = (target.to_string(), backup.to_string());
    blocking(move || {
        let actual = engine.count_target(&target)?;
        let mismatches = match tolerance {
            None => engine.compare(&expected, &actual).mismatches(),
            Some(t) => outside_tolerance(&expected, &actual, t),
        };
        if mismatches.is_empty() {
            Ok(())
        } else {
            let within = tolerance
                .map(|t| format!(" by more than {}", t.show()))
                .unwrap_or_default();
            Err(Error::integrity(format!(
                "{target}: counts differ{within} from the manifest of backup {backup}: {}",
                mismatches.join(", ")
            )))
        }
    })
    .await
}

/// Every count of the manifest that the target misses or holds outside `tolerance`.
fn outside_tolerance(
    expected: &crate::engine::counts::Counts,
    actual: &crate::engine::counts::Counts,
    tolerance: CountTolerance,
) -> Vec<String> {
    expected
        .iter()
        .filter_map(|(name, &e)| match actual.get(name).copied() {
            None => Some(format!("{name}: {e} in the manifest, none restored")),
            Some(a) if !tolerance.allows(e, a) => {
                Some(format!("{name}: {e} in the manifest, {a} restored"))
            }
            Some(_) => None,
        })
        .collect()
}

/// The step's outputs from the query values: `min` bounds checked, the freshness value
/// read as a point in time.
fn judge(
    target: &str,
    values: BTreeMap<String, String>,
    freshness: Option<String>,
    min: &BTreeMap<String, u64>,
) -> Result<BTreeMap<String, String>> {
    let low: Vec<String> = values
        .iter()
        .filter_map(|(name, v)| {
            let floor = min.get(name)?;
            (v.parse::<i64>().unwrap_or(-1) < *floor as i64)
                .then(|| format!("{name} = {v}, expected at least {floor}"))
        })
        .collect();
    let mut out = values;
    if let Some(v) = freshness {
        let t = parse_point(&v).ok_or_else(|| {
            Error::failed(format!("freshness query returned `{v}`: expected RFC 3339 text, `YYYY-MM-DD HH:MM:SS[+TZ]` or Unix seconds"))
        })?;
        out.insert("freshness".into(), t.to_rfc3339());
    }
    if !low.is_empty() {
        return Err(Error::integrity(format!("{target}: {}", low.join("; "))));
    }
    Ok(out)
}

/// A data point written as RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff]` (UTC, or with an
/// offset as PostgreSQL prints a `timestamptz`: `+00`, `+01:00`) or Unix seconds.
pub fn parse_point(v: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S%.f%#z") {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, f) {
            return Some(t.and_utc());
        }
    }
    v.parse::<i64>()
        .ok()
        .and_then(|s| Utc.timestamp_opt(s, 0).single())
}

#[cfg(test)]
mod tests {
    use super::parse_point;

    #[test]
    fn data_points_in_the_usual_spellings() {
        let want = "2026-11-30T04:00:00+00:00";
        for v in [
            "2026-11-30T04:00:00Z",
            "2026-11-30 04:00:00",
            "1796011200",
            "2026-11-30 04:00:00+00",
            "2026-11-30 05:00:00+01",
            "2026-11-30 05:30:00.000+01:30",
        ] {
            assert_eq!(
                parse_point(v).map(|t| t.to_rfc3339()).as_deref(),
                Some(want),
                "{v}"
            );
        }
        assert!(parse_point("yesterday").is_none());
    }
}
