//! Backup schedules in POSIX crontab syntax, evaluated with the `cron` crate.
//!
//! Two differences between crontab and the `cron` crate are bridged here:
//! - weekdays: crontab numbers them 0-7 with 0 and 7 = Sunday and 1 = Monday, the crate
//!   1-7 with 1 = Sunday. The day-of-week field is expanded to a set of days and handed
//!   to the crate as names (`Mon,Wed`), so no number is ever misread.
//! - when both day-of-month and day-of-week are restricted, crontab fires when EITHER
//!   matches; the crate requires both. Such a schedule is evaluated as two schedules
//!   whose next times are merged.
//!
//! A schedule may name a time zone: its fields are wall-clock times there. A wall time
//! that a daylight-saving change skips runs once, at the end of the gap; one that the
//! change repeats runs once, at its first occurrence.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use std::str::FromStr;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    alternatives: Vec<cron::Schedule>,
    /// Wall-clock zone of the fields; UTC when `None`.
    tz: Option<Tz>,
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
            .map(|e| {
                cron::Schedule::from_str(e)
                    .map_err(|err| format!("`{text}`: {} ({HELP})", one_line(&err.to_string())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A schedule naming only dates that do not exist (February 30th, April 31st)
        // parses, and then never runs: the source would silently have no backups. Eight
        // years from any start hold every date that exists (February 29th included).
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let fires = alternatives
            .iter()
            .filter_map(|a| a.after(&start).next())
            .any(|t| t < start + chrono::Duration::days(8 * 366));
        if !fires {
            return Err(format!(
                "`{text}`: never runs: its day-of-month and month name no date that exists \
                 (such as February 30th or April 31st); pick a day every chosen month has"
            ));
        }
        Ok(Schedule {
            text: text.trim().to_string(),
            alternatives,
            tz: None,
        })
    }

    /// The same schedule read as wall-clock times in `tz`.
    pub fn in_timezone(mut self, tz: Tz) -> Schedule {
        self.tz = Some(tz);
        self
    }

    /// The time zone of the fields, if not UTC.
    pub fn timezone(&self) -> Option<Tz> {
        self.tz
    }

    /// The schedule as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first run time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Some(tz) = self.tz else {
            return self.wall_next(t);
        };
        // Walk wall times (kept as naive times in a UTC carrier) and map each to an
        // instant; a wall time whose instant is not after `t` (the repeat of an hour
        // that ran already) is passed over.
        let mut wall = self.wall_next(carrier(t.with_timezone(&tz).naive_local()))?;
        for _ in 0..10_000 {
            let at = instant(tz, wall.naive_utc());
            if at > t {
                return Some(at);
            }
            wall = self.wall_next(wall)?;
        }
        None
    }

    /// The last run time strictly before `t`.
    pub fn prev_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Some(tz) = self.tz else {
            return self.wall_prev(t);
        };
        let local = t.with_timezone(&tz).naive_local();
        // Near a clock change, start a little after `t`'s wall time: a skipped wall
        // time maps forward, so its run may lie before `t` although its wall time
        // lies after.
        let window = chrono::Duration::hours(4);
        let offset = |i: DateTime<Utc>| i.with_timezone(&tz).offset().fix();
        let ahead = if offset(t) == offset(t - window) {
            chrono::Duration::zero()
        } else {
            window
        };
        let mut wall = self.wall_prev(carrier(local) + ahead + chrono::Duration::seconds(1))?;
        for _ in 0..100_000 {
            let at = instant(tz, wall.naive_utc());
            // The first occurrence is the run; a repeat after it is not another run.
            if at < t && self.next_after(at - chrono::Duration::seconds(1)) == Some(at) {
                return Some(at);
            }
            wall = self.wall_prev(wall)?;
        }
        None
    }

    fn wall_next(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.alternatives
            .iter()
            .filter_map(|s| s.after(&t).next())
            .min()
    }

    fn wall_prev(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
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

/// A wall time carried as a UTC value, so the cron crate walks wall times.
/// The cron crate's error on one line, with its field ranges spelled as crontab
/// writes them: it prints the expression with a caret under the fault over several
/// lines, which a `FILE: field: problem` line cannot carry.
fn one_line(err: &str) -> String {
    let text = err
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join("; ");
    // "Minutes must be less than 59" reads as if 59 were refused; say the range.
    [
        ("Seconds must be less than 59", "seconds must be 0-59"),
        ("Minutes must be less than 59", "minutes must be 0-59"),
        ("Hours must be less than 23", "hours must be 0-23"),
        (
            "Days of month must be less than 31",
            "day-of-month must be 1-31",
        ),
        ("Months must be less than 12", "month must be 1-12"),
    ]
    .iter()
    .fold(text, |t, (from, to)| t.replace(from, to))
}

fn carrier(local: NaiveDateTime) -> DateTime<Utc> {
    local.and_utc()
}

/// The instant of wall time `local` in `tz`: the first occurrence of a repeated time,
/// and the end of the gap for a skipped one.
fn instant(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // Gaps are whole minutes (at most a few hours): the first wall minute that
            // exists again is where the clock landed.
            let mut m = local;
            for _ in 0..(24 * 60) {
                m += chrono::Duration::minutes(1);
                let m0 = m.with_second(0).unwrap_or(m);
                if let LocalResult::Single(t) | LocalResult::Ambiguous(t, _) =
                    tz.from_local_datetime(&m0)
                {
                    return t.with_timezone(&Utc);
                }
            }
            local.and_utc()
        }
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

    #[test]
    fn a_wall_time_that_dst_skips_runs_once_at_the_end_of_the_gap() {
        // Europe/Berlin skips 02:00-03:00 on 2026-03-29 (CET -> CEST).
        let s = Schedule::parse("30 2 * * *")
            .unwrap()
            .in_timezone(chrono_tz::Europe::Berlin);
        let runs = s.upcoming(at(2026, 3, 27, 12, 0), 4);
        assert_eq!(
            runs,
            vec![
                at(2026, 3, 28, 1, 30), // 02:30 CET
                at(2026, 3, 29, 1, 0),  // 02:30 does not exist: 03:00 CEST
                at(2026, 3, 30, 0, 30), // 02:30 CEST
                at(2026, 3, 31, 0, 30),
            ]
        );
        assert_eq!(
            s.prev_before(at(2026, 3, 29, 6, 0)),
            Some(at(2026, 3, 29, 1, 0))
        );
    }

    #[test]
    fn a_wall_time_that_dst_repeats_runs_once() {
        // Europe/Berlin repeats 02:00-03:00 on 2026-10-25 (CEST -> CET).
        let s = Schedule::parse("30 2 * * *")
            .unwrap()
            .in_timezone(chrono_tz::Europe::Berlin);
        let runs = s.upcoming(at(2026, 10, 24, 12, 0), 3);
        assert_eq!(
            runs,
            vec![
                at(2026, 10, 25, 0, 30), // 02:30 CEST, the first occurrence
                at(2026, 10, 26, 1, 30), // 02:30 CET the next day; the repeat is not a run
                at(2026, 10, 27, 1, 30),
            ]
        );
        // Between the first 02:30 and its repeat, the previous run is the first one.
        assert_eq!(
            s.prev_before(at(2026, 10, 25, 1, 45)),
            Some(at(2026, 10, 25, 0, 30))
        );
        // An hourly schedule runs the repeated hour once: 02:00 CEST, then 03:00 CET.
        let h = Schedule::parse("0 * * * *")
            .unwrap()
            .in_timezone(chrono_tz::Europe::Berlin);
        assert_eq!(
            h.upcoming(at(2026, 10, 24, 23, 30), 3),
            vec![
                at(2026, 10, 25, 0, 0),
                at(2026, 10, 25, 2, 0),
                at(2026, 10, 25, 3, 0)
            ]
        );
    }

    #[test]
    fn a_zone_moves_the_wall_time_not_the_weekday_rule() {
        let s = Schedule::parse("0 3 * * 1")
            .unwrap()
            .in_timezone(chrono_tz::Europe::Berlin);
        // Monday 03:00 CET is Monday 02:00 UTC.
        assert_eq!(
            s.next_after(at(2026, 11, 22, 12, 0)),
            Some(at(2026, 11, 23, 2, 0))
        );
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

    #[rstest]
    #[case("0 0 30 2 *")]
    #[case("0 0 31 4,6,9,11 *")]
    #[case("0 0 31 2 *")]
    fn schedules_that_can_never_fire_are_refused(#[case] text: &str) {
        let e = Schedule::parse(text).unwrap_err();
        assert!(e.contains("never runs"), "{e}");
    }

    #[test]
    fn a_leap_day_schedule_fires() {
        let s = Schedule::parse("0 0 29 2 *").unwrap();
        assert_eq!(
            s.next_after(at(2026, 3, 1, 0, 0)),
            Some(at(2028, 2, 29, 0, 0))
        );
    }

    #[rstest]
    #[case("61 * * * *", "0-59")]
    #[case("0 25 * * *", "0-23")]
    fn cron_field_errors_are_one_line_naming_the_range(#[case] text: &str, #[case] range: &str) {
        let e = Schedule::parse(text).unwrap_err();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains(range), "{e}");
    }
}
