//! Retention: which backups of one source on one destination to keep, and why.
//!
//! [`apply`] is a pure function of (backups, rules, now). Its rules, in order:
//! - the newest backup is always kept, and so is the newest verified one;
//! - while no backup on the destination is verified, nothing is deleted: a history
//!   whose backups were never read back is all there is to restore from, and only
//!   `lifeboat verify` can tell which of it is good;
//! - a backup is kept until its `keep-until` (fixed in its manifest when it was made,
//!   so a later policy change cannot shorten it);
//! - a backup whose objects are still under object lock is kept and said to be so:
//!   the store would refuse the deletion, so it is not attempted;
//! - after that, it is kept if any current rule keeps it: keep-last, keep-within, or
//!   one of the GFS buckets (hourly, daily, weekly, monthly, yearly: the newest backup
//!   of each of the last N periods that have one, in UTC);
//! - a source with no rule at all keeps everything.

use crate::policy::Retention;
use crate::policy::units::format_duration;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Why every backup of a history without a verified backup is kept.
pub const NO_VERIFIED_BACKUP: &str = "no verified backup on this repository: nothing is deleted until `lifeboat verify` confirms one";

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
    /// Until when its objects are under object lock, as far as is known (the store's
    /// report, or the manifest's keep-until where the repository locks objects).
    pub locked_until: Option<DateTime<Utc>>,
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

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

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
            if newest_verified.is_none() {
                reasons.push(NO_VERIFIED_BACKUP.to_string());
            }
            if c.keep_until > now {
                reasons.push(format!("keep-until {} not reached", stamp(c.keep_until)));
            }
            if let Some(until) = c.locked_until.filter(|u| *u > now) {
                reasons.push(format!(
                    "object lock until {}: the store refuses deletion, skipped",
                    stamp(until)
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
    use proptest::prelude::*;
    use rstest::rstest;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    /// Backups made `hours_ago`, each with keep-until `keep_within` after it; the one at
    /// index `verified` (if any) verified.
    fn history(
        hours_ago: &[i64],
        keep_within: Duration,
        verified: Option<usize>,
    ) -> Vec<Candidate> {
        hours_ago
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let time = now() - Duration::hours(*h);
                Candidate {
                    id: format!("{}", time.format("%Y%m%dT%H%M%SZ")),
                    time,
                    keep_until: time + keep_within,
                    verified: verified == Some(i),
                    locked_until: None,
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

    fn kept(plan: &[Decision]) -> Vec<bool> {
        plan.iter().map(|d| d.keep).collect()
    }

    fn keep_last(n: u32) -> Retention {
        Retention {
            keep_last: Some(n),
            ..Retention::default()
        }
    }

    #[test]
    fn gfs_plan_on_a_known_history() {
        let hours: Vec<i64> = (0..10).map(|i| i * 13).collect();
        let rules = Retention {
            keep_last: Some(2),
            keep_daily: Some(3),
            keep_weekly: Some(2),
            keep_within: Some(Duration::hours(6)),
            ..Retention::default()
        };
        let mut h = history(&hours, Duration::hours(6), None);
        // Verification lags behind: everything but the two newest was read back.
        for c in h.iter_mut().skip(2) {
            c.verified = true;
        }
        let plan = apply(&h, &rules, now());
        insta::assert_snapshot!(render(&plan));
    }

    #[test]
    fn newest_and_newest_verified_survive_an_empty_policy_window() {
        let h = history(&[100, 200, 300], Duration::zero(), Some(2));
        let plan = apply(&h, &keep_last(1), now());
        assert_eq!(kept(&plan), vec![true, false, true]);
        assert!(
            plan[2]
                .reasons
                .contains(&"newest verified backup".to_string())
        );
    }

    #[test]
    fn keep_until_is_a_floor_a_shorter_policy_cannot_cut() {
        // Made with keep-within 7d; the policy now says keep-last 1.
        let h = history(&[1, 30, 100], Duration::days(7), Some(0));
        let plan = apply(&h, &keep_last(1), now());
        assert!(plan.iter().all(|d| d.keep), "{}", render(&plan));
        assert!(plan[2].reasons[0].starts_with("keep-until 2026-11-25T"));
    }

    #[test]
    fn no_rule_keeps_everything() {
        let h = history(&[1, 500, 9000], Duration::zero(), Some(0));
        let plan = apply(&h, &Retention::default(), now());
        assert!(plan.iter().all(|d| d.keep));
        assert_eq!(plan[2].reasons, ["no retention rule set"]);
    }

    #[rstest]
    #[case::keep_last(keep_last(1))]
    #[case::keep_last_zero(keep_last(0))]
    #[case::keep_daily(Retention { keep_daily: Some(1), ..Retention::default() })]
    #[case::keep_within(Retention { keep_within: Some(Duration::hours(1)), ..Retention::default() })]
    fn a_history_without_a_verified_backup_keeps_everything(#[case] rules: Retention) {
        let h = history(&[1, 30, 100, 900], Duration::zero(), None);
        let plan = apply(&h, &rules, now());
        assert!(plan.iter().all(|d| d.keep), "{}", render(&plan));
        for d in &plan {
            assert!(
                d.reasons.iter().any(|r| r == NO_VERIFIED_BACKUP),
                "{}",
                render(&plan)
            );
        }
        // One verified backup anywhere lifts the hold: the rules decide again.
        let mut h = h;
        h[3].verified = true;
        let plan = apply(&h, &rules, now());
        assert!(plan[3].keep, "{}", render(&plan));
        assert!(kept(&plan).contains(&false), "{}", render(&plan));
    }

    #[rstest]
    #[case::locked_beyond_now(Some(1), true)]
    #[case::lock_expired(Some(-1), false)]
    #[case::never_locked(None, false)]
    fn an_object_locked_backup_is_skipped_while_its_lock_lasts(
        #[case] lock_hours_from_now: Option<i64>,
        #[case] keep: bool,
    ) {
        let mut h = history(&[1, 30, 100], Duration::zero(), Some(0));
        h[2].locked_until = lock_hours_from_now.map(|x| now() + Duration::hours(x));
        let plan = apply(&h, &keep_last(1), now());
        assert_eq!(plan[2].keep, keep, "{}", render(&plan));
        assert_eq!(
            plan[2]
                .reasons
                .iter()
                .any(|r| r.starts_with("object lock until")),
            keep,
            "{}",
            render(&plan)
        );
        assert!(!plan[1].keep);
    }

    #[test]
    fn verification_and_lock_plan() {
        let mut h = history(&[2, 26, 50, 74, 98, 122], Duration::hours(24), Some(3));
        h[5].locked_until = Some(now() + Duration::days(30));
        h[4].locked_until = Some(now() - Duration::days(1));
        let plan = apply(&h, &keep_last(1), now());
        insta::assert_snapshot!(render(&plan));
    }

    /// A random history: (hours after a base, keep-until hours after the backup,
    /// verified, lock hours after the base).
    fn arb_history() -> impl Strategy<Value = Vec<(i64, i64, bool, Option<i64>)>> {
        prop::collection::vec(
            (
                0i64..24 * 800,
                0i64..24 * 60,
                prop::bool::weighted(0.3),
                prop::option::weighted(0.2, 0i64..24 * 900),
            ),
            0..30,
        )
    }

    fn arb_rules() -> impl Strategy<Value = Retention> {
        let n = || prop::option::of(0u32..6);
        (
            n(),
            prop::option::of(1i64..24 * 40),
            n(),
            n(),
            n(),
            n(),
            n(),
        )
            .prop_map(
                |(last, within, hourly, daily, weekly, monthly, yearly)| Retention {
                    keep_last: last,
                    keep_within: within.map(Duration::hours),
                    keep_hourly: hourly,
                    keep_daily: daily,
                    keep_weekly: weekly,
                    keep_monthly: monthly,
                    keep_yearly: yearly,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn retention_never_deletes_what_it_must_keep(
            raw in arb_history(),
            rules in arb_rules(),
            now_hours in 0i64..24 * 1000,
        ) {
            let base = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
            let now = base + Duration::hours(now_hours);
            let backups: Vec<Candidate> = raw
                .iter()
                .enumerate()
                .map(|(i, (at, keep, verified, lock))| {
                    let time = base + Duration::hours(*at);
                    Candidate {
                        id: format!("b{i:02}"),
                        time,
                        keep_until: time + Duration::hours(*keep),
                        verified: *verified,
                        locked_until: lock.map(|l| base + Duration::hours(l)),
                    }
                })
                .collect();
            let plan = apply(&backups, &rules, now);

            // Every backup is decided once, with a reason.
            prop_assert_eq!(plan.len(), backups.len());
            let mut ids: Vec<&str> = plan.iter().map(|d| d.id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            prop_assert_eq!(ids.len(), backups.len());
            prop_assert!(plan.iter().all(|d| !d.reasons.is_empty()));

            let order = |c: &&Candidate| (c.time, c.id.clone());
            let newest = backups.iter().max_by_key(order).map(|c| c.id.clone());
            let newest_verified = backups
                .iter()
                .filter(|c| c.verified)
                .max_by_key(order)
                .map(|c| c.id.clone());
            for d in plan.iter().filter(|d| !d.keep) {
                let c = backups.iter().find(|c| c.id == d.id).unwrap();
                prop_assert!(Some(&d.id) != newest.as_ref(), "deleted the newest backup {}", d.id);
                prop_assert!(newest_verified.is_some(), "deleted {} with no verified backup", d.id);
                prop_assert!(Some(&d.id) != newest_verified.as_ref(), "deleted the newest verified backup {}", d.id);
                prop_assert!(c.keep_until <= now, "deleted {} before its keep-until", d.id);
                prop_assert!(
                    c.locked_until.is_none_or(|l| l <= now),
                    "deleted {} while it is locked", d.id
                );
            }
            // The verified backup retention keeps is still there after the deletions.
            if let Some(v) = &newest_verified {
                prop_assert!(plan.iter().any(|d| d.keep && &d.id == v));
            }
        }
    }
}
