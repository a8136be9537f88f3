//! Engines: one per kind of data store. An engine takes a consistent snapshot as a raw
//! byte stream plus integrity counts, and restores such a stream into a target through
//! a staging copy that is swapped in only after its counts match.

pub mod counts;
pub mod file;
pub mod spool;
pub mod sqlite;

use crate::error::Result;
use crate::policy::{Source, SourceConfig};
use chrono::{DateTime, Utc};
use counts::{Counts, CountsReport};
use std::io::Read;

/// A consistent snapshot, ready to stream.
pub struct Snapshot {
    /// The raw stream; read it once, to the end.
    pub reader: Box<dyn Read + Send>,
    /// Integrity counts of exactly this snapshot.
    pub counts: Counts,
    /// The instant the snapshot reflects.
    pub consistency_point: DateTime<Utc>,
    /// Raw size when known in advance (for progress).
    pub size_hint: Option<u64>,
    /// Engine-specific facts for the manifest.
    pub details: serde_json::Value,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    /// Manifest counts against recounted ones.
    pub counts: CountsReport,
    /// True when the staging copy replaced the target; false when counts differed and
    /// the target was left untouched.
    pub swapped: bool,
}

/// A kind of data store.
pub trait Engine: Send + Sync {
    /// The kind, as in policies.
    fn kind(&self) -> &'static str;

    /// Take a consistent snapshot (blocking).
    fn snapshot(&self, spool: &spool::Spool, now: &dyn Fn() -> DateTime<Utc>) -> Result<Snapshot>;

    /// Fail unless `target` may be restored into: it must be empty or absent unless
    /// `force` is set. Called before any byte is fetched.
    fn check_target(&self, target: &str, force: bool) -> Result<()>;

    /// Restore the raw stream into a staging copy beside `target`, recount, and swap it
    /// in only if the counts equal `expected`. Any error leaves the target untouched
    /// and removes the staging copy.
    fn restore(
        &self,
        target: &str,
        stream: &mut dyn Read,
        expected: &Counts,
    ) -> Result<RestoreOutcome>;
}

/// The engine of a source.
pub fn for_source(source: &Source) -> Box<dyn Engine> {
    match &source.config {
        SourceConfig::Sqlite { path } => Box::new(sqlite::SqliteEngine::new(path.clone())),
        SourceConfig::File { path } => Box::new(file::FileEngine::new(path.clone())),
    }
}
