//! Time comes from a [`Clock`] so that decisions (retention, schedules, RPO) can be
//! tested at any instant; nothing else in the crate reads the system clock.

use chrono::{DateTime, Utc};

/// A source of "now".
pub trait Clock: Send + Sync {
    /// The current instant in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock. `LIFEBOAT_NOW` (RFC 3339) pins it, for reproducible
/// demonstrations and black-box tests of time-dependent decisions.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        if let Ok(pinned) = std::env::var("LIFEBOAT_NOW")
            && let Ok(t) = DateTime::parse_from_rfc3339(&pinned)
        {
            return t.with_timezone(&Utc);
        }
        Utc::now()
    }
}

/// A clock that follows tokio's timer from a given instant: with tokio's time paused
/// (tests), sleeping advances it, so schedules over days run in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `origin` now.
    pub fn starting_at(origin: DateTime<Utc>) -> Self {
        TokioClock {
            origin,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.start;
        self.origin + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }
}
