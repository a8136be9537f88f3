//! lifeboat: backups and disaster recovery for a mixed data fleet.
//!
//! Data flows one way, in module order:
//!
//! ```text
//! backup:  policy -> engine (byte stream + counts) -> pipeline (compress, hash, chunk)
//!          -> storage (one upload per destination) -> manifest (written last) -> catalog
//! restore: catalog/manifest -> storage -> pipeline reversed (every chunk hash checked
//!          before the engine sees it) -> engine restore into staging -> counts compared -> swap
//! schedule: policy -> scheduler (next run, catch-up, lease per source) -> backup -> prune
//! ```
//!
//! Storage holds the truth (manifests and verification results); the catalog is a
//! SQLite cache of it that can always be rebuilt. Time comes from [`clock`].

pub mod aws;
pub mod backup;
pub mod catalog;
pub mod clock;
pub mod doctor;
pub mod dr;
pub mod engine;
pub mod error;
pub mod failpoint;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod progress;
pub mod quickstart;
pub mod report;
pub mod scheduler;
pub mod storage;
pub mod terraform;

pub use error::{Error, ErrorKind, Result};
