//! Faiss engine.

pub mod header;

use super::counts::Counts;
use super::spool::Spool;
use super::{Engine, RestoreOutcome, Snapshot};
use crate::error::{Error, Result};
use crate::policy::FaissConfig;
use chrono::{DateTime, Utc};
use std::io::Read;

/// The faiss engine of one source.
#[derive(Debug, Clone)]
pub struct FaissEngine {
    cfg: FaissConfig,
}

impl FaissEngine {
    /// An engine for `cfg`.
    pub fn new(cfg: FaissConfig) -> Self {
        FaissEngine { cfg }
    }

    fn missing(&self) -> Error {
        let _ = &self.cfg;
        Error::failed("the faiss engine is not built into this version")
    }
}

impl Engine for FaissEngine {
    fn kind(&self) -> &'static str {
        "faiss"
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
