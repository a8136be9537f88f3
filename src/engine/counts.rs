//! Integrity counts: what an engine counted in the snapshot it backed up (rows per
//! table, keys per database, vectors per index) and the comparison after a restore.
//! The comparison and its rendering are pure.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Named counts, e.g. `rows.users = 1200`.
pub type Counts = BTreeMap<String, u64>;

/// One line of a comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountCheck {
    /// Count name.
    pub name: String,
    /// From the manifest; `None` when the restore has a count the backup lacks.
    pub expected: Option<u64>,
    /// Recounted after restore; `None` when missing there.
    pub actual: Option<u64>,
    /// Whether they agree.
    pub ok: bool,
}

/// The comparison of manifest counts with recounted ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountsReport {
    /// Every count, in name order.
    pub checks: Vec<CountCheck>,
}

impl CountsReport {
    /// True when every count agrees.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The mismatches, one per line: `rows.users: expected 10, actual 9`.
    pub fn mismatches(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| {
                let show = |v: Option<u64>| v.map_or("missing".to_string(), |v| v.to_string());
                format!(
                    "{}: expected {}, actual {}",
                    c.name,
                    show(c.expected),
                    show(c.actual)
                )
            })
            .collect()
    }
}

/// Compare exactly: every name in either map must be present in both with equal values.
pub fn compare(expected: &Counts, actual: &Counts) -> CountsReport {
    let mut names: Vec<&String> = expected.keys().chain(actual.keys()).collect();
    names.sort();
    names.dedup();
    let checks = names
        .into_iter()
        .map(|name| {
            let (e, a) = (expected.get(name).copied(), actual.get(name).copied());
            CountCheck {
                name: name.clone(),
                expected: e,
                actual: a,
                ok: e.is_some() && e == a,
            }
        })
        .collect();
    CountsReport { checks }
}

/// Compare with a tolerance for counts named `keys.*` and `expires.*`: the restored
/// side may be lower (keys with a TTL expire) by at most the tolerance, never higher.
pub fn compare_tolerant(
    expected: &Counts,
    actual: &Counts,
    tolerance: crate::policy::Tolerance,
) -> CountsReport {
    use crate::policy::Tolerance;
    let mut report = compare(expected, actual);
    for c in report.checks.iter_mut() {
        let shrinkable = c.name.starts_with("keys.") || c.name.starts_with("expires.");
        if let (false, true, Some(e), Some(a)) = (c.ok, shrinkable, c.expected, c.actual)
            && a < e
        {
            let missing = e - a;
            c.ok = match tolerance {
                Tolerance::Exact => false,
                Tolerance::Absolute(n) => missing <= n,
                Tolerance::Percent(p) => (missing as f64) <= (e as f64) * p / 100.0,
            };
        }
    }
    report
}

impl fmt::Display for CountsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(
            f,
            "  {:width$}  {:>12}  {:>12}  ",
            "count", "manifest", "restored"
        )?;
        for c in &self.checks {
            let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
            writeln!(
                f,
                "  {:width$}  {:>12}  {:>12}  {}",
                c.name,
                show(c.expected),
                show(c.actual),
                if c.ok { "ok" } else { "MISMATCH" }
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> Counts {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn equal_counts_pass() {
        let c = counts(&[("rows.a", 3), ("rows.b", 0)]);
        assert!(compare(&c, &c).ok());
    }

    #[test]
    fn a_missing_row_names_table_expected_and_actual() {
        let r = compare(
            &counts(&[("rows.users", 10)]),
            &counts(&[("rows.users", 9)]),
        );
        assert!(!r.ok());
        assert_eq!(r.mismatches(), vec!["rows.users: expected 10, actual 9"]);
    }

    #[test]
    fn a_tolerance_allows_expired_keys_but_never_extra_ones() {
        use crate::policy::Tolerance;
        let e = counts(&[("keys.db0", 1000), ("rows.x", 5)]);
        let fewer = counts(&[("keys.db0", 990), ("rows.x", 5)]);
        let more = counts(&[("keys.db0", 1001), ("rows.x", 5)]);
        assert!(!compare_tolerant(&e, &fewer, Tolerance::Exact).ok());
        assert!(compare_tolerant(&e, &fewer, Tolerance::Percent(1.0)).ok());
        assert!(!compare_tolerant(&e, &fewer, Tolerance::Absolute(9)).ok());
        assert!(compare_tolerant(&e, &fewer, Tolerance::Absolute(10)).ok());
        assert!(!compare_tolerant(&e, &more, Tolerance::Percent(50.0)).ok());
        // Rows are never tolerated.
        let rows = counts(&[("keys.db0", 1000), ("rows.x", 4)]);
        assert!(!compare_tolerant(&e, &rows, Tolerance::Percent(50.0)).ok());
    }

    #[test]
    fn a_table_on_one_side_only_is_a_mismatch() {
        let r = compare(
            &counts(&[("rows.a", 1)]),
            &counts(&[("rows.a", 1), ("rows.extra", 0)]),
        );
        assert_eq!(
            r.mismatches(),
            vec!["rows.extra: expected missing, actual 0"]
        );
        let r = compare(
            &counts(&[("rows.a", 1), ("rows.gone", 2)]),
            &counts(&[("rows.a", 1)]),
        );
        assert_eq!(
            r.mismatches(),
            vec!["rows.gone: expected 2, actual missing"]
        );
    }
}
