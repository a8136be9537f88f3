//! Engines: one per kind of data store. An engine takes a consistent snapshot as a raw
//! byte stream plus integrity counts, and restores such a stream into a target through
//! a staging copy that is swapped in only after its counts match.

pub(crate) mod child;
pub mod control;
pub mod counts;
pub mod faiss;
pub mod file;
pub mod files;
pub mod neo4j;
pub mod postgres;
mod rdb;
pub mod rds;
pub mod redis;
pub mod spool;
pub mod sqlite;
pub mod staging;
pub(crate) mod stamp;

use crate::error::{Error, Result};
use crate::policy::{Source, SourceConfig};
use chrono::{DateTime, Utc};
pub use control::RestoreControl;
use counts::{Counts, CountsReport};
use std::fs;
use std::io::{Read, Write};
use std::path::Path;

/// Integrity counts of a snapshot, known at once or finished by another thread while
/// the stream is read (counting a large database overlaps its dump).
pub enum SnapshotCounts {
    /// Known.
    Ready(Counts),
    /// Being counted; may also yield the data's freshness (a newer consistency point).
    Pending(std::thread::JoinHandle<Result<(Counts, Option<DateTime<Utc>>)>>),
    /// Known, and the manifest's details are completed once the stream has ended (read
    /// to its end, failed or dropped): facts such as a server's downtime, measured when
    /// it came back. The value replaces [`Snapshot::details`].
    ReadyWithFinalDetails(Counts, std::sync::mpsc::Receiver<serde_json::Value>),
}

/// What a snapshot yields once its stream has ended.
#[derive(Debug)]
pub struct Counted {
    /// Integrity counts.
    pub counts: Counts,
    /// The data's freshness, when the engine measured one.
    pub freshness: Option<DateTime<Utc>>,
    /// Details replacing the snapshot's, when the engine completed them.
    pub details: Option<serde_json::Value>,
}

impl SnapshotCounts {
    /// The counts and, if the engine measured one, the data's freshness.
    pub fn wait(self) -> Result<(Counts, Option<DateTime<Utc>>)> {
        self.finish().map(|c| (c.counts, c.freshness))
    }

    /// The counts and what else the engine learned; call it after the stream has ended.
    pub fn finish(self) -> Result<Counted> {
        match self {
            SnapshotCounts::Ready(counts) => Ok(Counted {
                counts,
                freshness: None,
                details: None,
            }),
            SnapshotCounts::Pending(h) => {
                let (counts, freshness) =
                    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
                Ok(Counted {
                    counts,
                    freshness,
                    details: None,
                })
            }
            SnapshotCounts::ReadyWithFinalDetails(counts, rx) => Ok(Counted {
                counts,
                freshness: None,
                // A sender dropped without sending leaves the snapshot's details.
                details: rx.recv().ok(),
            }),
        }
    }
}

impl From<Counts> for SnapshotCounts {
    fn from(c: Counts) -> Self {
        SnapshotCounts::Ready(c)
    }
}

/// A consistent snapshot, ready to stream.
pub struct Snapshot {
    /// The raw stream; read it once, to the end.
    pub reader: Box<dyn Read + Send>,
    /// Integrity counts of exactly this snapshot.
    pub counts: SnapshotCounts,
    /// The instant the snapshot reflects.
    pub consistency_point: DateTime<Utc>,
    /// Raw size when known in advance (for progress).
    pub size_hint: Option<u64>,
    /// Engine-specific facts for the manifest.
    pub details: serde_json::Value,
}

/// Key of [`Snapshot::details`] under which an engine that knows the SHA-256 of the
/// raw stream before it is read (it spooled a deterministic archive) records it.
pub const CONTENT_SHA256: &str = "content-sha256";

impl Snapshot {
    /// The SHA-256 the raw stream will have, when the engine promised one under
    /// [`CONTENT_SHA256`]: a run whose content equals the newest backup's is skipped.
    pub fn content_sha256(&self) -> Option<&str> {
        self.details.get(CONTENT_SHA256)?.as_str()
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    /// Manifest counts against recounted ones.
    pub counts: CountsReport,
    /// True when the staging copy replaced the target; false when counts differed and
    /// the target was left untouched. An engine that loads in place (Neo4j) sets it once
    /// the load ran, whatever the counts: differing counts then fail the restore with
    /// the data already replaced.
    pub swapped: bool,
    /// A step after the swap that failed (a post-restore or restart command): the data
    /// is in place, the run still failed.
    pub after_swap_error: Option<String>,
}

/// Why a restore is made. It decides whether the steps after the swap that reach
/// beyond the restored copy run: a post-restore command, a restart, a check URL. They
/// act on the running service (restart production search, count production Redis),
/// so they run for real restores only; a drill runs them only where the source asks
/// for it explicitly, and a trial restore into a scratch target never does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Purpose {
    /// Into the real target (`lifeboat restore`, a DR run).
    #[default]
    Real,
    /// A DR drill's copy beside the real target.
    Drill,
    /// A trial restore into a scratch target (`verify --restore`).
    Trial,
}

impl Purpose {
    /// Whether after-swap steps run, given the source's explicit drill setting.
    pub fn runs_after_swap(self, in_drills: bool) -> bool {
        match self {
            Purpose::Real => true,
            Purpose::Drill => in_drills,
            Purpose::Trial => false,
        }
    }

    /// The value of `LIFEBOAT_RESTORE_PURPOSE` for a command that runs after the swap.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Real => "restore",
            Purpose::Drill => "drill",
            Purpose::Trial => "trial",
        }
    }

    /// Why the after-swap steps were left out, for the log.
    pub fn skip_note(self) -> &'static str {
        match self {
            Purpose::Real => "",
            Purpose::Drill => "a drill does not run it unless the source allows it for drills",
            Purpose::Trial => "a trial restore never runs it",
        }
    }
}

/// One restore attempt: what it restores, why, and its control (cancellation, the
/// commit fence, the completion marker).
#[derive(Debug, Clone, Default)]
pub struct RestoreJob {
    /// Source restored (names the staging copies).
    pub source: String,
    /// Backup restored (names the staging copies).
    pub backup_id: String,
    /// Why.
    pub purpose: Purpose,
    /// Checked between chunks and before the swap; the swap goes through its fence.
    pub control: RestoreControl,
}

impl RestoreJob {
    /// The prefix of this attempt's staging copy beside the file or folder `name`.
    pub fn staging_prefix(&self, name: &str) -> String {
        staging::name_prefix(name, &self.source, &self.backup_id)
    }
}

/// A kind of data store.
pub trait Engine: Send + Sync {
    /// Take a consistent snapshot (blocking).
    fn snapshot(&self, spool: &spool::Spool, now: &dyn Fn() -> DateTime<Utc>) -> Result<Snapshot>;

    /// Take a consistent snapshot for backup `backup_id` (blocking). Engines whose
    /// snapshot lives outside the repository (RDS) name and tag it after the backup.
    fn snapshot_as(
        &self,
        _backup_id: &str,
        spool: &spool::Spool,
        now: &dyn Fn() -> DateTime<Utc>,
    ) -> Result<Snapshot> {
        self.snapshot(spool, now)
    }

    /// Check what a backup keeps outside the repository (an RDS snapshot and its
    /// copies), given the manifest's engine details: the problems found, none when all
    /// is there. Part of `verify` (blocking).
    fn verify_external(&self, _details: &serde_json::Value) -> Vec<String> {
        Vec::new()
    }

    /// Delete what backup `backup_id` keeps outside the repository, once no repository
    /// holds the backup any more; returns what was deleted (blocking).
    fn delete_external(
        &self,
        _backup_id: &str,
        _details: &serde_json::Value,
    ) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Fail unless `target` may be restored into: it must be empty or absent unless
    /// `force` is set. Called before any byte is fetched.
    fn check_target(&self, target: &str, force: bool) -> Result<()>;

    /// Restore the raw stream into a staging copy beside `target`, recount, and swap it
    /// in only if the counts equal `expected`, through `job.control`'s fence. Any error
    /// leaves the target untouched and removes the staging copy. Leftover staging
    /// copies of dead restores of the same target are removed first.
    fn restore(
        &self,
        target: &str,
        stream: &mut dyn Read,
        expected: &Counts,
        job: &RestoreJob,
    ) -> Result<RestoreOutcome>;

    /// Remove what restores into `target` that did not finish left behind (staging
    /// copies whose owner is dead, see [`staging`]); returns what was removed.
    fn sweep_staging(&self, _target: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Count an existing target the way a restore counts it (for `lifeboat compare`
    /// and the DR integrity step).
    fn count_target(&self, target: &str) -> Result<Counts>;

    /// Compare counts; engines whose data may legitimately shrink after a restore
    /// (keys with a TTL) allow the configured tolerance.
    fn compare(&self, expected: &Counts, actual: &Counts) -> CountsReport {
        counts::compare(expected, actual)
    }

    /// Delete what backups of this source left outside the repositories although no
    /// repository holds them (a run that failed after its snapshot was made), when
    /// made before `before`; `held` is every backup id the repositories hold. Returns
    /// what was deleted (blocking).
    fn sweep_external(
        &self,
        _held: &std::collections::BTreeSet<String>,
        _before: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Checks for `lifeboat doctor` (tools present, versions, reachability), changing
    /// nothing.
    fn checks(&self) -> Vec<crate::storage::Check> {
        Vec::new()
    }
}

/// The engine of a source.
pub fn for_source(source: &Source) -> Box<dyn Engine> {
    match &source.config {
        SourceConfig::Sqlite { path } => Box::new(sqlite::SqliteEngine::new(path.clone())),
        SourceConfig::File { path } => Box::new(file::FileEngine::new(path.clone())),
        SourceConfig::Postgres(cfg) => Box::new(postgres::PostgresEngine::new(cfg.clone())),
        SourceConfig::Redis(cfg) => Box::new(redis::RedisEngine::new(cfg.clone())),
        SourceConfig::Faiss(cfg) => Box::new(faiss::FaissEngine::new(cfg.clone())),
        SourceConfig::Rds(cfg) => Box::new(rds::RdsEngine::new(source.name.clone(), cfg.clone())),
        SourceConfig::Neo4j(cfg) => Box::new(neo4j::Neo4jEngine::new(cfg.clone())),
        SourceConfig::Files(cfg) => Box::new(files::FilesEngine::new(cfg.clone())),
    }
}

/// Refuse a file target that is a folder, or that is not empty unless `force`.
pub(crate) fn check_file_target(target: &str, force: bool) -> Result<()> {
    match fs::metadata(target) {
        Ok(m) if m.is_dir() => Err(Error::bad_input(format!(
            "restore target {target} is a folder; name the file to restore into"
        ))),
        Ok(m) if m.len() > 0 && !force => Err(Error::bad_input(format!(
            "restore target {target} is not empty ({} bytes); pass --force to replace it",
            m.len()
        ))),
        _ => Ok(()),
    }
}

/// The folder a file target lives in (created if missing).
fn target_dir(target: &Path) -> Result<&Path> {
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}

/// Remove leftover staging copies beside a file target, as paths for the log.
pub(crate) fn sweep_file_target(target: &str) -> Result<Vec<String>> {
    Ok(staging::sweep_beside(Path::new(target))?
        .into_iter()
        .map(|p| p.display().to_string())
        .collect())
}

/// Write the whole stream into a hidden staging file beside `target` (same file system,
/// so the swap is a rename), fsynced, named after its owner (see [`staging`]); the
/// dead restores' leftovers beside it are removed first. The file is removed when
/// dropped unless swapped in. The target's folder is created if missing, so its
/// existence says nothing about whether the restore completed: the completion marker
/// (see [`control`]) does.
pub(crate) fn stage_beside(
    target: &Path,
    stream: &mut dyn Read,
    job: &RestoreJob,
) -> Result<tempfile::NamedTempFile> {
    let dir = target_dir(target)?;
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("restore");
    staging::sweep_beside(target)?;
    let mut staging = tempfile::Builder::new()
        .prefix(&job.staging_prefix(name))
        .tempfile_in(dir)
        .map_err(|e| Error::io(format!("staging file in {}", dir.display()), e))?;
    let mut stream = job.control.reader(stream);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = stream
            .read(&mut buf)
            .map_err(|e| crate::pipeline::read_error("reading the backup", e))?;
        if n == 0 {
            break;
        }
        staging
            .write_all(&buf[..n])
            .map_err(|e| Error::io(staging.path().display(), e))?;
    }
    staging
        .as_file()
        .sync_all()
        .map_err(|e| Error::io(staging.path().display(), e))?;
    Ok(staging)
}

/// Move a staging file over `target` atomically and make the rename durable.
pub(crate) fn swap_in(staging: tempfile::NamedTempFile, target: &Path) -> Result<()> {
    let dir = target_dir(target)?.to_path_buf();
    staging.persist(target).map_err(|e| {
        Error::io(
            format!("moving the restored copy to {}", target.display()),
            e.error,
        )
    })?;
    fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing folder {}", dir.display()), e))
}
