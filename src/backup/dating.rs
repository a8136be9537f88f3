//! Whether a backup's recorded time can be believed.
//!
//! Every decision that asks "is the newest backup recent enough?" (a scheduled slot
//! already served, catch-up at start, the RPO metrics, retention's newest) trusts the
//! manifest's `started-at`. A host with a fast clock, a `LIFEBOAT_NOW` left set, or
//! anyone who can add an object to a repository can plant a backup dated in the
//! future; believed, it would silence the schedule and the RPO alert and let retention
//! delete the backups actually made. So a backup whose start lies ahead of this host's
//! clock by more than [`MAX_AHEAD`], or disagrees with the time its id encodes, is
//! *doubtful*: it is kept and flagged, and never serves a slot or counts as newest.

use crate::catalog::CatalogBackup;
use crate::catalog::manifest::Manifest;
use chrono::{DateTime, Duration, Utc};
use std::fmt;

/// How far ahead of this host's clock a backup's start may lie. Hosts writing one
/// repository drift a little (`lifeboat doctor` warns from 60 s of skew); S3 itself
/// refuses requests skewed by 15 minutes, so a writer cannot honestly be further
/// ahead than that.
pub const MAX_AHEAD: Duration = Duration::minutes(5);

/// How far `started-at` may lie from the second its id encodes: the id is made from
/// the start time, truncated to the second.
const ID_TOLERANCE: Duration = Duration::seconds(2);

/// Why a backup's time is not believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Doubt {
    /// Its start lies ahead of this host's clock.
    Ahead {
        /// Its recorded start.
        started_at: DateTime<Utc>,
        /// By how much it is ahead.
        by: Duration,
    },
    /// Its start disagrees with its id.
    IdDisagrees {
        /// Its recorded start.
        started_at: DateTime<Utc>,
        /// The time its id encodes (`None`: the id encodes no valid time).
        id_time: Option<DateTime<Utc>>,
    },
}

impl fmt::Display for Doubt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Doubt::Ahead { started_at, by } => write!(
                f,
                "dated in the future: started {} is {}s ahead of this host's clock \
                 (check the clock of the host that made it, and LIFEBOAT_NOW)",
                started_at.format("%Y-%m-%dT%H:%M:%SZ"),
                by.num_seconds()
            ),
            Doubt::IdDisagrees {
                started_at,
                id_time,
            } => write!(
                f,
                "its start {} disagrees with its id ({})",
                started_at.format("%Y-%m-%dT%H:%M:%SZ"),
                id_time.map_or_else(
                    || "no time".to_string(),
                    |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
                )
            ),
        }
    }
}

/// The start time a backup id encodes (`20261122T093000Z-3f9a`).
pub fn id_time(id: &str) -> Option<DateTime<Utc>> {
    chrono::NaiveDateTime::parse_from_str(id.get(..15)?, "%Y%m%dT%H%M%S")
        .ok()
        .map(|t| t.and_utc())
}

/// Why `m`'s time is not to be believed at `now`, if it is not.
pub fn doubt(m: &Manifest, now: DateTime<Utc>) -> Option<Doubt> {
    let id_time = id_time(&m.backup_id);
    let agrees = id_time.is_some_and(|t| {
        let d = m.started_at - t;
        d >= -ID_TOLERANCE && d <= ID_TOLERANCE
    });
    if !agrees {
        return Some(Doubt::IdDisagrees {
            started_at: m.started_at,
            id_time,
        });
    }
    let by = m.started_at - now;
    (by > MAX_AHEAD).then_some(Doubt::Ahead {
        started_at: m.started_at,
        by,
    })
}

/// The newest backup whose time is believed, from a newest-first list.
pub fn newest_believed(
    backups: impl IntoIterator<Item = CatalogBackup>,
    now: DateTime<Utc>,
) -> Option<CatalogBackup> {
    backups
        .into_iter()
        .find(|b| doubt(&b.manifest, now).is_none())
}

/// The backups of a newest-first list whose time is not believed, with why.
pub fn doubtful<'a>(
    backups: impl IntoIterator<Item = &'a CatalogBackup>,
    now: DateTime<Utc>,
) -> Vec<(&'a CatalogBackup, Doubt)> {
    backups
        .into_iter()
        .filter_map(|b| doubt(&b.manifest, now).map(|d| (b, d)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rstest::rstest;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn manifest(id: &str, started: &str) -> Manifest {
        let t = at(started);
        let h = "0".repeat(64);
        Manifest {
            source: "app".into(),
            kind: "sqlite".into(),
            backup_id: id.into(),
            repository: "local".into(),
            started_at: t,
            finished_at: t,
            consistency_point: t,
            tool_version: "test".into(),
            host: "host".into(),
            compression: "zstd".into(),
            encryption: "none".into(),
            stored: crate::catalog::manifest::StoredInfo {
                size: 0,
                sha256: h.clone(),
                chunk_size: 1,
                chunks: vec![],
                provider_checksum: None,
            },
            raw: crate::catalog::manifest::RawInfo { size: 0, sha256: h },
            counts: crate::engine::counts::Counts::new(),
            keep_until: t,
            engine: serde_json::Value::Null,
            anomalies: vec![],
        }
    }

    #[rstest]
    #[case::in_the_past("20261101T100000Z-0001", "2026-11-01T10:00:00.400Z", None)]
    #[case::slightly_ahead("20261201T120400Z-0001", "2026-12-01T12:04:00Z", None)]
    #[case::far_ahead(
        "20261201T130000Z-0001",
        "2026-12-01T13:00:00Z",
        Some("dated in the future: started 2026-12-01T13:00:00Z is 3600s ahead")
    )]
    #[case::id_disagrees(
        "20261101T100000Z-0001",
        "2030-01-01T00:00:00Z",
        Some("its start 2030-01-01T00:00:00Z disagrees with its id (2026-11-01T10:00:00Z)")
    )]
    #[case::old_start_future_id(
        "20991101T100000Z-0001",
        "2026-11-01T10:00:00Z",
        Some("disagrees with its id (2099-11-01T10:00:00Z)")
    )]
    fn a_backup_time_is_believed_only_near_its_id_and_the_clock(
        #[case] id: &str,
        #[case] started: &str,
        #[case] doubt_starts: Option<&str>,
    ) {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let d = doubt(&manifest(id, started), now).map(|d| d.to_string());
        match doubt_starts {
            None => assert_eq!(d, None),
            Some(want) => {
                let d = d.expect("doubted");
                assert!(d.contains(want), "{d}");
            }
        }
    }
}
