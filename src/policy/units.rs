//! Human units in policy text: durations ("90s", "1h30m", "7d") and sizes ("16MiB").

use chrono::Duration;

/// The longest duration a policy or flag may give: 100 years. Every duration is added
/// to instants (a backup's start plus its keep-within, now plus a lease's ttl); bounding
/// it here keeps that arithmetic far inside what a date can hold, so no later step can
/// overflow.
pub const MAX_DURATION_SECS: i64 = 36_500 * 86_400;

/// Parse a duration such as `30s`, `5m`, `1h30m`, `7d`, `2w`, at most
/// [`MAX_DURATION_SECS`].
///
/// Months and years are refused on purpose: their length varies, so a retention or
/// RPO written with them would mean different things on different dates.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration (write e.g. \"30s\", \"15m\", \"6h\", \"7d\", \"2w\")".into());
    }
    let mut total: i64 = 0;
    let mut number = String::new();
    let mut saw_unit = false;
    for c in t.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        let secs = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => {
                return Err(format!(
                    "`{text}`: unknown unit `{c}` (use s, m, h, d or w, e.g. \"1h30m\")"
                ));
            }
        };
        let n: i64 = number.parse().map_err(|_| {
            if number.is_empty() {
                format!("`{text}`: a number must come before `{c}`")
            } else {
                format!("`{text}`: too large (at most 36500d, 100 years)")
            }
        })?;
        number.clear();
        total = n
            .checked_mul(secs)
            .and_then(|v| total.checked_add(v))
            .filter(|v| *v <= MAX_DURATION_SECS)
            .ok_or_else(|| format!("`{text}`: too large (at most 36500d, 100 years)"))?;
        saw_unit = true;
    }
    if !number.is_empty() || !saw_unit {
        return Err(format!(
            "`{text}`: every number needs a unit (s, m, h, d or w, e.g. \"90s\")"
        ));
    }
    Ok(Duration::seconds(total))
}

/// Render a duration compactly (`1d6h`, `45m`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let mut s = d.num_seconds();
    let neg = s < 0;
    s = s.abs();
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    if neg { format!("-{out}") } else { out }
}

/// Render a measured duration: below a minute with up to two decimals (`0.72s`,
/// `5.9s`), so that a sub-second RTO does not read as `0s`; from a minute on as
/// [`format_duration`] does.
pub fn format_duration_precise(d: Duration) -> String {
    let ms = d.num_milliseconds();
    if ms.abs() >= 60_000 {
        return format_duration(d);
    }
    let text = format!("{:.2}", ms as f64 / 1000.0);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    let text = if text == "-0" { "0" } else { text };
    format!("{text}s")
}

/// Parse a size such as `16MiB`, `8MB`, `4096` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}`: expected a number and a unit, e.g. \"16MiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use B, KiB, MiB, GiB, KB, MB or GB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}`: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("30s", 30)]
    #[case("5m", 300)]
    #[case("1h30m", 5400)]
    #[case("7d", 604_800)]
    #[case("2w", 1_209_600)]
    fn durations_parse(#[case] text: &str, #[case] secs: i64) {
        assert_eq!(parse_duration(text).unwrap().num_seconds(), secs);
    }

    #[rstest]
    #[case("")]
    #[case("10")]
    #[case("1y")]
    #[case("h")]
    #[case("3mo")]
    fn bad_durations_are_refused(#[case] text: &str) {
        assert!(parse_duration(text).is_err(), "{text} should be refused");
    }

    #[rstest]
    #[case("9999999999999999s")]
    #[case("8000000000000s")]
    #[case("100000000d")]
    #[case("36500d1s")]
    #[case("99999999999999999999w")]
    fn durations_beyond_a_century_are_refused_not_a_panic(#[case] text: &str) {
        let e = parse_duration(text).unwrap_err();
        assert!(e.contains("at most 36500d"), "{e}");
    }

    #[test]
    fn a_century_is_the_longest_duration() {
        assert_eq!(
            parse_duration("36500d").unwrap().num_seconds(),
            MAX_DURATION_SECS
        );
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
        assert!(parse_size("2 parsecs").is_err());
    }

    #[test]
    fn durations_format() {
        assert_eq!(format_duration(Duration::seconds(93_600)), "1d2h");
        assert_eq!(format_duration(Duration::seconds(0)), "0s");
        for (ms, want) in [
            (720, "0.72s"),
            (5_900, "5.9s"),
            (12_000, "12s"),
            (0, "0s"),
            (4, "0s"),
            (-1_500, "-1.5s"),
            (59_999, "60s"),
            (93_600_000, "1d2h"),
        ] {
            assert_eq!(
                format_duration_precise(Duration::milliseconds(ms)),
                want,
                "{ms} ms"
            );
        }
    }
}
