//! Backup schedules in POSIX crontab syntax, evaluated with the `cron` crate.
//!
//! Two differences between crontab and the `cron` crate are bridged here:
//! - weekdays: crontab numbers them 0-7 with 0 and 7 = Sunday and 1 = Monday, the crate
//!   1-7 with 1 = Sunday. The day-of-week field is expanded to a set of days and handed
//!   to the crate as names (`Mon,Wed`), so no number is ever misread.
//! - when both day-of-month and day-of-week are restricted, crontab fires when EITHER
//!   matches; the crate requires both. Such a schedule is evaluated as two schedules
//!   whose next times are merged.

use chrono::{DateTime, Utc};
use std::str::FromStr;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    alternatives: Vec<cron::Schedule>,
}

const DAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

const HELP: &str = "write 5 crontab fields \"minute hour day-of-month month day-of-week\" \
                    (e.g. \"0 3 * * 1\" = Mondays 03:00), 6 with a leading seconds field, \
                    or @hourly, @daily, @weekly, @monthly, @yearly";

impl Schedule {
    /// Parse crontab text.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let trimmed = text.trim();
        let expanded = match trimmed {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            s if s.starts_with('@') => {
                return Err(format!("`{text}`: unknown shorthand ({HELP})"));
            }
            s => s,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => return Err(format!("`{text}`: {n} fields ({HELP})")),
        };
        let (min, hour, dom, month, dow) = (rest[0], rest[1], rest[2], rest[3], rest[4]);
        let days =
            parse_weekdays(dow).map_err(|e| format!("`{text}`: day-of-week {e} ({HELP})"))?;
        let dow_names = if days.iter().all(|d| *d) {
            "*".to_string()
        } else {
            DAY_NAMES
                .iter()
                .zip(days.iter())
                .filter(|(_, on)| **on)
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(",")
        };
        let dom_star = dom.starts_with('*');
        let dow_star = dow.starts_with('*');
        let exprs = if !dom_star && !dow_star {
            vec![
                format!("{sec} {min} {hour} {dom} {month} *"),
                format!("{sec} {min} {hour} * {month} {dow_names}"),
            ]
        } else {
            vec![format!("{sec} {min} {hour} {dom} {month} {dow_names}")]
        };
        let alternatives = exprs
            .iter()
            .map(|e| cron::Schedule::from_str(e).map_err(|err| format!("`{text}`: {err} ({HELP})")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Schedule {
            text: text.trim().to_string(),
            alternatives,
        })
    }

    /// The schedule as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first run time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.alternatives
            .iter()
            .filter_map(|s| s.after(&t).next())
            .min()
    }

    /// The last run time strictly before `t`.
    pub fn prev_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.alternatives
            .iter()
            .filter_map(|s| s.after(&t).next_back())
            .max()
    }

    /// The next `n` run times after `t`.
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut cursor = t;
        while out.len() < n {
            match self.next_after(cursor) {
                Some(next) => {
                    out.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        out
    }
}

/// Expand a crontab day-of-week field into the days it selects (index 0 = Sunday).
fn parse_weekdays(field: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<usize>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("`{item}`: step must be a positive number"))?,
            ),
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            (weekday(a)?, weekday(b)?)
        } else {
            let d = weekday(range)?;
            // `a/step` in crontab means from a to the end of the range.
            if item.contains('/') { (d, 7) } else { (d, d) }
        };
        if lo > hi {
            return Err(format!("`{item}`: range runs backwards"));
        }
        for d in (lo..=hi).step_by(step) {
            days[d % 7] = true;
        }
    }
    Ok(days)
}

fn weekday(s: &str) -> Result<usize, String> {
    if let Ok(n) = s.parse::<usize>() {
        return if n <= 7 {
            Ok(n)
        } else {
            Err(format!("`{s}`: weekdays are 0-7 (0 and 7 = Sunday)"))
        };
    }
    DAY_NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(s))
        .ok_or_else(|| format!("`{s}`: not a weekday (0-7 or sun, mon, ...)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Weekday};
    use rstest::rstest;

    fn at(y: i32, m: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, mi, 0).unwrap()
    }

    #[test]
    fn monday_is_one_as_in_crontab() {
        let s = Schedule::parse("0 3 * * 1").unwrap();
        // 2026-11-22 is a Sunday.
        let runs = s.upcoming(at(2026, 11, 22, 12, 0), 3);
        assert_eq!(runs[0], at(2026, 11, 23, 3, 0));
        for r in runs {
            assert_eq!(r.weekday(), Weekday::Mon);
        }
    }

    #[rstest]
    #[case("0 3 * * 0", Weekday::Sun)]
    #[case("0 3 * * 7", Weekday::Sun)]
    #[case("0 3 * * 6", Weekday::Sat)]
    #[case("0 3 * * fri", Weekday::Fri)]
    fn weekday_numbers_match_crontab(#[case] text: &str, #[case] day: Weekday) {
        let s = Schedule::parse(text).unwrap();
        for r in s.upcoming(at(2026, 1, 1, 0, 0), 5) {
            assert_eq!(r.weekday(), day, "{text}");
        }
    }

    #[test]
    fn weekday_ranges_translate() {
        let s = Schedule::parse("0 9 * * 1-5").unwrap();
        let days: Vec<Weekday> = s
            .upcoming(at(2026, 11, 22, 12, 0), 7)
            .iter()
            .map(|t| t.weekday())
            .collect();
        assert_eq!(
            days,
            [
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
                Weekday::Mon,
                Weekday::Tue
            ]
        );
    }

    #[test]
    fn restricted_day_fields_are_ored_as_in_crontab() {
        // The 1st of the month OR any Monday.
        let s = Schedule::parse("0 0 1 * 1").unwrap();
        let runs = s.upcoming(at(2026, 11, 22, 12, 0), 3);
        assert_eq!(
            runs,
            vec![
                at(2026, 11, 23, 0, 0),
                at(2026, 11, 30, 0, 0),
                at(2026, 12, 1, 0, 0)
            ]
        );
    }

    #[test]
    fn shorthands_and_seconds() {
        let h = Schedule::parse("@hourly").unwrap();
        assert_eq!(
            h.next_after(at(2026, 1, 1, 0, 30)),
            Some(at(2026, 1, 1, 1, 0))
        );
        let s = Schedule::parse("*/10 * * * * *").unwrap();
        let t = at(2026, 1, 1, 0, 0);
        assert_eq!(s.next_after(t), Some(t + chrono::Duration::seconds(10)));
        assert_eq!(s.prev_before(t), Some(t - chrono::Duration::seconds(10)));
    }

    #[rstest]
    #[case("")]
    #[case("* * *")]
    #[case("0 3 * * 8")]
    #[case("61 * * * *")]
    #[case("@fortnightly")]
    fn bad_schedules_are_refused(#[case] text: &str) {
        assert!(Schedule::parse(text).is_err(), "{text}");
    }
}
