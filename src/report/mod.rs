//! `lifeboat report`: RPO/RTO verification reports from the catalog, for an operator
//! (table), a ticket or wiki (Markdown), a machine (JSON, versioned) and an auditor
//! (one self-contained HTML file with charts).

pub mod compute;
pub mod html;
pub mod model;
pub mod text;

use chrono::{DateTime, Duration, Utc};

/// A number of seconds as the policy files spell durations (`7h`, `1d2h`).
pub(crate) fn spell(secs: i64) -> String {
    crate::policy::units::format_duration(Duration::seconds(secs))
}

/// A time as the report's text shows it: `2026-11-29 05:00:00Z`.
pub(crate) fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}
