//! Spool files: for engines that must materialise a file before streaming it (SQLite's
//! backup API writes a database file). Free space is checked before writing, and the
//! file is removed when dropped, on success and on error alike.
//!
//! A process killed with SIGKILL runs no destructor, so its spool files would stay
//! (a whole database copy each). Every spool entry is therefore named after its owner,
//! `lifeboat-spool.PID.HOST.…` (HOST as in [`super::staging`]), and each new spool
//! file or folder first removes the entries of owners on this host that no longer run.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Space kept free on the spool file system beyond the expected size.
const MARGIN: u64 = 64 << 20;

/// The spool folder.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// A spool in `dir` (default: the system temporary folder).
    pub fn new(dir: Option<PathBuf>) -> Self {
        Spool {
            dir: dir.unwrap_or_else(std::env::temp_dir),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new spool file for about `expected` bytes, removed when dropped.
    pub fn create(&self, expected: u64) -> Result<tempfile::TempPath> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io(format!("spool folder {}", self.dir.display()), e))?;
        let free = fs4::available_space(&self.dir)
            .map_err(|e| Error::io(format!("spool folder {}", self.dir.display()), e))?;
        if free < expected.saturating_add(MARGIN) {
            return Err(Error::failed(format!(
                "spool folder {}: {} MiB free, {} MiB needed (choose another with --spool-dir)",
                self.dir.display(),
                free >> 20,
                (expected + MARGIN) >> 20
            )));
        }
        self.sweep();
        let file = tempfile::Builder::new()
            .prefix(&owned_prefix(""))
            .tempfile_in(&self.dir)
            .map_err(|e| Error::io(format!("spool folder {}", self.dir.display()), e))?;
        Ok(file.into_temp_path())
    }

    /// A new spool folder for `purpose` (`neo4j`, `restore-test`), removed when dropped.
    pub fn tempdir(&self, purpose: &str) -> Result<tempfile::TempDir> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io(format!("spool folder {}", self.dir.display()), e))?;
        self.sweep();
        tempfile::Builder::new()
            .prefix(&owned_prefix(&format!("{purpose}.")))
            .tempdir_in(&self.dir)
            .map_err(|e| Error::io(format!("spool folder {}", self.dir.display()), e))
    }

    /// Remove the spool entries of processes on this host that no longer run, and
    /// those named before owners were (`lifeboat-spool-…`) once untouched for
    /// [`super::staging::FOREIGN_STALE`]. Returns what was removed; a failure to
    /// remove one is logged, never fatal: the spool only holds copies.
    pub fn sweep(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let dead = match owner_of(&name) {
                Some(owner) => owner.is_local() && !owner.may_be_alive(),
                None => {
                    LEGACY.iter().any(|p| name.starts_with(p))
                        && e.metadata()
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| t.elapsed().ok())
                            .is_some_and(|age| age > super::staging::FOREIGN_STALE)
                }
            };
            if !dead {
                continue;
            }
            let path = e.path();
            let gone = if e.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match gone {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed the spool leftover of a run that died");
                    removed.push(path);
                }
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "could not remove a spool leftover")
                }
            }
        }
        removed
    }
}

/// What names this version gave spool entries before they named their owner.
const LEGACY: [&str; 3] = [
    "lifeboat-spool-",
    "lifeboat-neo4j-",
    "lifeboat-restore-test-",
];

const PREFIX: &str = "lifeboat-spool.";

/// `lifeboat-spool.PID.HOST.` then `more`, for an entry of this process.
fn owned_prefix(more: &str) -> String {
    let me = super::staging::Owner::me();
    format!("{PREFIX}{}.{}.{more}", me.pid, me.host)
}

/// The owner a spool entry's name records.
fn owner_of(name: &str) -> Option<super::staging::Owner> {
    let mut parts = name.strip_prefix(PREFIX)?.split('.');
    let pid = parts.next()?.parse().ok()?;
    let host = parts.next()?.to_string();
    Some(super::staging::Owner { pid, host })
}

/// A spool file being read; the file is removed when this is dropped (after a
/// complete read and after an abandoned one alike).
#[derive(Debug)]
pub struct SpoolFile {
    file: File,
    _path: tempfile::TempPath,
}

impl SpoolFile {
    /// Read `file`, which is open on the spool file at `path`.
    pub fn new(file: File, path: tempfile::TempPath) -> Self {
        SpoolFile { file, _path: path }
    }
}

impl Read for SpoolFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_process_spool_leftovers_are_swept_a_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(Some(dir.path().to_path_buf()));
        let host = super::super::staging::Owner::me().host;
        // A pid above the kernel's pid_max cannot be running.
        let dead = format!("lifeboat-spool.4294967.{host}.abc123");
        let dead_journal = format!("{dead}-journal");
        let dead_dir = format!("lifeboat-spool.4294967.{host}.neo4j.xyz");
        let elsewhere = "lifeboat-spool.4294967.00000000.abc123".to_string();
        let unrelated = "someone-elses-file".to_string();
        for f in [&dead, &dead_journal, &elsewhere, &unrelated] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join(&dead_dir)).unwrap();
        std::fs::write(dir.path().join(&dead_dir).join("f"), b"x").unwrap();
        let live = spool.create(0).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec![
            elsewhere,
            unrelated,
            live.file_name().unwrap().to_string_lossy().into_owned(),
        ];
        want.sort();
        assert_eq!(left, want);
    }
}
