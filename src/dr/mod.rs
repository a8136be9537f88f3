//! Disaster recovery: runbooks as checked, measured plans.
//!
//! ```text
//! dr plan (policy set, dr/*.toml) -> validated step DAG -> runner (checkpoints in the
//! catalog) -> step executors (restore, integrity, command, approval) -> report (RTO/RPO)
//! ```
//!
//! A run checkpoints every state change in the catalog, before and after each side
//! effect, so that `lifeboat dr resume` continues a crashed run without repeating what
//! was done. A drill runs the same plan in isolation: restore targets are renamed with
//! the run id, commands follow their `drill` setting, and what the drill created is
//! removed at the end, also after a failure.

pub mod plan;
pub mod report;
pub mod runner;
pub mod step;
pub mod undo;

use serde::{Deserialize, Serialize};

/// A real recovery or a rehearsal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The real thing: targets and commands as declared.
    Run,
    /// Isolated: targets suffixed with the run id, commands per their `drill` setting,
    /// everything created removed afterwards.
    Drill,
}

impl Mode {
    /// `run` or `drill`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Run => "run",
            Mode::Drill => "drill",
        }
    }
}
