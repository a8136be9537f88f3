//! Retention: which backups of one source on one destination to keep, and why.
//!
//! [`apply`] is a pure function of (backups, rules, now). Its rules, in order:
//! - the newest backup is always kept, and so is the newest verified one;
//! - a backup is kept until its `keep-until` (fixed in its manifest when it was made,
//!   so a later policy change cannot shorten it);
//! - after that, it is kept if any current rule keeps it: keep-last, keep-within, or
//!   one of the GFS buckets (hourly, daily, weekly, monthly, yearly: the newest backup
//!   of each of the last N periods that have one, in UTC);
//! - a source with no rule at all keeps everything.

use crate::policy::Retention;
use crate::policy::units::format_duration;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One backup as retention sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Backup id.
    pub id: String,
    /// When it was made (start of the run).
    pub time: DateTime<Utc>,
    /// Floor from its manifest.
    pub keep_until: DateTime<Utc>,
    /// Whether a full verification matched.
    pub verified: bool,
}

/// The verdict on one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Backup id.
    pub id: String,
    /// When it was made.
    pub time: DateTime<Utc>,
    /// Keep or delete.
    pub keep: bool,
    /// Every rule that keeps it, or why it goes.
    pub reasons: Vec<String>,
}

type BucketFn = fn(&DateTime<Utc>) -> String;

/// Decide keep or delete for each backup (any order in; newest first out).
pub fn apply(backups: &[Candidate], rules: &Retention, now: DateTime<Utc>) -> Vec<Decision> {
    let mut sorted: Vec<&Candidate> = backups.iter().collect();
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));
    let newest_verified = sorted.iter().position(|c| c.verified);

    let buckets: [(&str, Option<u32>, BucketFn); 5] = [
        ("keep-hourly", rules.keep_hourly, |t| {
            t.format("%Y-%m-%d %H:00").to_string()
        }),
        ("keep-daily", rules.keep_daily, |t| {
            t.format("%Y-%m-%d").to_string()
        }),
        ("keep-weekly", rules.keep_weekly, |t| {
            t.format("%G-W%V").to_string()
        }),
        ("keep-monthly", rules.keep_monthly, |t| {
            t.format("%Y-%m").to_string()
        }),
        ("keep-yearly", rules.keep_yearly, |t| {
            t.format("%Y").to_string()
        }),
    ];
    let mut bucket_state: Vec<(u32, Option<String>)> = vec![(0, None); buckets.len()];

    sorted
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut reasons = Vec::new();
            if i == 0 {
                reasons.push("newest backup".to_string());
            }
            if newest_verified == Some(i) {
                reasons.push("newest verified backup".to_string());
            }
            if c.keep_until > now {
                reasons.push(format!(
                    "keep-until {} not reached",
                    c.keep_until.format("%Y-%m-%dT%H:%M:%SZ")
                ));
            }
            if rules.is_empty() {
                reasons.push("no retention rule set".to_string());
            }
            if let Some(n) = rules.keep_last
                && (i as u32) < n
            {
                reasons.push(format!("keep-last {}/{n}", i + 1));
            }
            if let Some(d) = rules.keep_within
                && now - c.time < d
            {
                reasons.push(format!("keep-within {}", format_duration(d)));
            }
            for ((name, n, bucket), state) in buckets.iter().zip(bucket_state.iter_mut()) {
                let Some(n) = n else { continue };
                let key = bucket(&c.time);
                if state.1.as_deref() != Some(key.as_str()) {
                    state.1 = Some(key.clone());
                    if state.0 < *n {
                        state.0 += 1;
                        reasons.push(format!("{name} {key} ({}/{n})", state.0));
                    }
                }
            }
            let keep = !reasons.is_empty();
            if !keep {
                reasons.push("no rule keeps it".to_string());
            }
            Decision {
                id: c.id.clone(),
                time: c.time,
                keep,
                reasons,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn history(now: DateTime<Utc>, hours_ago: &[i64], keep_within: Duration) -> Vec<Candidate> {
        hours_ago
            .iter()
            .map(|h| {
                let time = now - Duration::hours(*h);
                Candidate {
                    id: format!("{}", time.format("%Y%m%dT%H%M%SZ")),
                    time,
                    keep_until: time + keep_within,
                    verified: false,
                }
            })
            .collect()
    }

    fn render(ds: &[Decision]) -> String {
        ds.iter()
            .map(|d| {
                format!(
                    "{} {} {}",
                    d.id,
                    if d.keep { "KEEP  " } else { "DELETE" },
                    d.reasons.join("; ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn gfs_plan_on_a_known_history() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let hours: Vec<i64> = (0..10).map(|i| i * 13).collect();
        let rules = Retention {
            keep_last: Some(2),
            keep_daily: Some(3),
            keep_weekly: Some(2),
            keep_within: Some(Duration::hours(6)),
            ..Retention::default()
        };
        let plan = apply(&history(now, &hours, Duration::hours(6)), &rules, now);
        insta::assert_snapshot!(render(&plan));
    }

    #[test]
    fn newest_and_newest_verified_survive_an_empty_policy_window() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let mut h = history(now, &[100, 200, 300], Duration::zero());
        h[2].verified = true;
        let rules = Retention {
            keep_last: Some(1),
            ..Retention::default()
        };
        let plan = apply(&h, &rules, now);
        let kept: Vec<bool> = plan.iter().map(|d| d.keep).collect();
        assert_eq!(kept, vec![true, false, true]);
        assert!(
            plan[2]
                .reasons
                .contains(&"newest verified backup".to_string())
        );
    }

    #[test]
    fn keep_until_is_a_floor_a_shorter_policy_cannot_cut() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        // Made with keep-within 7d; the policy now says keep-last 1.
        let h = history(now, &[1, 30, 100], Duration::days(7));
        let rules = Retention {
            keep_last: Some(1),
            ..Retention::default()
        };
        let plan = apply(&h, &rules, now);
        assert!(plan.iter().all(|d| d.keep), "{}", render(&plan));
    }

    #[test]
    fn no_rule_keeps_everything() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let plan = apply(
            &history(now, &[1, 500, 9000], Duration::zero()),
            &Retention::default(),
            now,
        );
        assert!(plan.iter().all(|d| d.keep));
    }
}
