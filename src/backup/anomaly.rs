//! "Successful but empty": a backup that ran without error but whose raw size or a count
//! fell sharply against the source's previous backup is committed and flagged, so that
//! an emptied table or a truncated dump is noticed before it is the only copy left.
//!
//! [`detect`] is a pure function of the two backups' measures and the rule.

use crate::catalog::manifest::Anomaly;
use crate::engine::counts::Counts;
use crate::policy::AnomalyRule;

/// What is compared of one backup.
#[derive(Debug, Clone, Copy)]
pub struct Measures<'a> {
    /// Backup id.
    pub backup_id: &'a str,
    /// Raw stream size.
    pub raw_size: u64,
    /// Integrity counts.
    pub counts: &'a Counts,
}

/// Every measure of `current` that is smaller than in `previous` by `rule.max_drop` of
/// it or more. A count that disappeared counts as 0; a new count, or one that was 0,
/// cannot drop.
pub fn detect(previous: &Measures<'_>, current: &Measures<'_>, rule: &AnomalyRule) -> Vec<Anomaly> {
    let dropped = |before: u64, after: u64| {
        before > 0 && after < before && (before - after) as f64 >= rule.max_drop * before as f64
    };
    let mut out = Vec::new();
    let mut flag = |measure: &str, before: u64, after: u64| {
        if dropped(before, after) {
            out.push(Anomaly {
                measure: measure.to_string(),
                previous: before,
                current: after,
                previous_backup: previous.backup_id.to_string(),
                max_drop: rule.max_drop,
            });
        }
    };
    flag("raw-size", previous.raw_size, current.raw_size);
    for (name, before) in previous.counts {
        flag(
            name,
            *before,
            current.counts.get(name).copied().unwrap_or(0),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn counts(pairs: &[(&str, u64)]) -> Counts {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn flagged(
        prev: (u64, &[(&str, u64)]),
        cur: (u64, &[(&str, u64)]),
        max_drop: f64,
    ) -> Vec<String> {
        let (pc, cc) = (counts(prev.1), counts(cur.1));
        detect(
            &Measures {
                backup_id: "B1",
                raw_size: prev.0,
                counts: &pc,
            },
            &Measures {
                backup_id: "B2",
                raw_size: cur.0,
                counts: &cc,
            },
            &AnomalyRule { max_drop },
        )
        .iter()
        .map(|a| a.to_string())
        .collect()
    }

    #[rstest]
    #[case::steady(1000, &[("rows.t", 50)], 990, &[("rows.t", 50)], 0.5, &[])]
    #[case::growth(1000, &[("rows.t", 50)], 4000, &[("rows.t", 90)], 0.5, &[])]
    #[case::just_under(1000, &[("rows.t", 100)], 1000, &[("rows.t", 51)], 0.5, &[])]
    #[case::exactly_max_drop(1000, &[("rows.t", 100)], 1000, &[("rows.t", 50)], 0.5, &["rows.t dropped 50% (100 -> 50) against B1 (max-drop 0.5)"])]
    #[case::emptied_table(8192, &[("rows.t", 50), ("rows.u", 3)], 8000, &[("rows.t", 0), ("rows.u", 3)], 0.5, &["rows.t dropped 100% (50 -> 0) against B1 (max-drop 0.5)"])]
    #[case::dropped_table(1000, &[("rows.t", 50)], 1000, &[], 0.9, &["rows.t dropped 100% (50 -> 0) against B1 (max-drop 0.9)"])]
    #[case::truncated_dump(1000, &[], 100, &[], 0.5, &["raw-size dropped 90% (1000 -> 100) against B1 (max-drop 0.5)"])]
    #[case::max_drop_one_flags_only_emptied(1000, &[("rows.t", 50)], 1, &[("rows.t", 0)], 1.0, &["rows.t dropped 100% (50 -> 0) against B1 (max-drop 1)"])]
    #[case::new_and_zero_counts_cannot_drop(1000, &[("rows.z", 0)], 1000, &[("rows.n", 5)], 0.1, &[])]
    fn drops_at_or_beyond_max_drop_are_flagged(
        #[case] prev_raw: u64,
        #[case] prev_counts: &[(&str, u64)],
        #[case] raw: u64,
        #[case] counts: &[(&str, u64)],
        #[case] max_drop: f64,
        #[case] want: &[&str],
    ) {
        assert_eq!(
            flagged((prev_raw, prev_counts), (raw, counts), max_drop),
            want
        );
    }
}
