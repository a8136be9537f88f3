//! Postgres engine.

use super::counts::Counts;
use super::spool::Spool;
use super::{Engine, RestoreOutcome, Snapshot};
use crate::error::{Error, Result};
use crate::policy::PostgresConfig;
use chrono::{DateTime, Utc};
use std::io::Read;

/// The postgres engine of one source.
#[derive(Debug, Clone)]
pub struct PostgresEngine {
    cfg: PostgresConfig,
}

impl PostgresEngine {
    /// An engine for `cfg`.
    pub fn new(cfg: PostgresConfig) -> Self {
        PostgresEngine { cfg }
    }

    fn missing(&self) -> Error {
        let _ = &self.cfg;
        Error::failed("the postgres engine is not built into this version")
    }
}

impl Engine for PostgresEngine {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn snapshot(&self, _spool: &Spool, _now: &dyn Fn() -> DateTime<Utc>) -> Result<Snapshot> {
        Err(self.missing())
    }

    fn check_target(&self, _target: &str, _force: bool) -> Result<()> {
        Err(self.missing())
    }

    fn restore(
        &self,
        _target: &str,
        _stream: &mut dyn Read,
        _expected: &Counts,
    ) -> Result<RestoreOutcome> {
        Err(self.missing())
    }

    fn count_target(&self, _target: &str) -> Result<Counts> {
        Err(self.missing())
    }
}
