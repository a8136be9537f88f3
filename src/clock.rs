//! Time comes from a [`Clock`] so that decisions (retention, schedules, RPO) can be
//! tested at any instant; nothing else in the crate reads the system clock.

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};

/// A source of "now".
pub trait Clock: Send + Sync {
    /// The current instant in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The variable that pins [`SystemClock`].
pub const PIN_VAR: &str = "LIFEBOAT_NOW";

/// The instant `LIFEBOAT_NOW` pins the clock to, if it is set; an error naming the
/// variable and the format when it is set to something else than an RFC 3339 time.
///
/// The CLI calls this first and says loudly on every run that the clock is pinned: a
/// pin left set by accident dates every backup wrongly.
pub fn pinned() -> Result<Option<DateTime<Utc>>> {
    match std::env::var(PIN_VAR) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::bad_input(format!(
            "{PIN_VAR} is not text: unset it, or give an RFC 3339 time (2026-11-22T09:30:00Z)"
        ))),
        Ok(v) => DateTime::parse_from_rfc3339(&v)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| {
                Error::bad_input(format!(
                    "{PIN_VAR}={v:?} is not an RFC 3339 time ({e}): unset it, or give one such as 2026-11-22T09:30:00Z"
                ))
            }),
    }
}

/// The real wall clock. `LIFEBOAT_NOW` (RFC 3339) pins it, for reproducible
/// demonstrations and black-box tests of time-dependent decisions; see [`pinned`].
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        pinned().ok().flatten().unwrap_or_else(Utc::now)
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
