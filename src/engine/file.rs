//! One file, read once as it is: a configuration file, a dump written by another tool,
//! or a named pipe fed by a command (which can be read only once).
//!
//! A regular file that changes while it is read (size or modification time differ
//! before and after) fails the backup: the stored bytes would match no moment of it.

use super::counts::Counts;
use super::spool::Spool;
use super::{Engine, RestoreJob, RestoreOutcome, Snapshot, counts};
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The engine of one file.
#[derive(Debug, Clone)]
pub struct FileEngine {
    path: PathBuf,
}

impl FileEngine {
    /// An engine for the file at `path`.
    pub fn new(path: PathBuf) -> Self {
        FileEngine { path }
    }
}

fn stamp(m: &Metadata) -> (u64, Option<std::time::SystemTime>) {
    (m.len(), m.modified().ok())
}

/// Reads the file and, at its end, checks that a regular file did not change.
struct CheckedFile {
    file: File,
    path: PathBuf,
    before: Option<(u64, Option<std::time::SystemTime>)>,
}

impl Read for CheckedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0
            && let Some(before) = self.before.take()
        {
            let after = stamp(&fs::metadata(&self.path)?);
            if after != before {
                return Err(io::Error::other(format!(
                    "{} changed while it was read (size {} -> {}); back it up again",
                    self.path.display(),
                    before.0,
                    after.0
                )));
            }
        }
        Ok(n)
    }
}

impl Engine for FileEngine {
    fn snapshot(&self, _spool: &Spool, now: &dyn Fn() -> DateTime<Utc>) -> Result<Snapshot> {
        let consistency_point = now();
        let file = File::open(&self.path).map_err(|e| {
            Error::io(
                format!("file {} (check the source's `path`)", self.path.display()),
                e,
            )
        })?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(self.path.display(), e))?;
        let regular = meta.is_file();
        Ok(Snapshot {
            reader: Box::new(CheckedFile {
                file,
                path: self.path.clone(),
                before: regular.then(|| stamp(&meta)),
            }),
            // The manifest's raw size and hash describe the content; a file has no
            // count of its own.
            counts: Counts::new().into(),
            consistency_point,
            size_hint: regular.then_some(meta.len()),
            details: serde_json::json!({
                "path": self.path.display().to_string(),
                "regular-file": regular,
            }),
        })
    }

    fn check_target(&self, target: &str, force: bool) -> Result<()> {
        super::check_file_target(target, force)
    }

    fn sweep_staging(&self, target: &str) -> Result<Vec<String>> {
        super::sweep_file_target(target)
    }

    fn count_target(&self, target: &str) -> Result<Counts> {
        fs::metadata(target).map_err(|e| Error::io(target, e))?;
        Ok(Counts::new())
    }

    fn restore(
        &self,
        target: &str,
        stream: &mut dyn Read,
        expected: &Counts,
        job: &RestoreJob,
    ) -> Result<RestoreOutcome> {
        let target = Path::new(target);
        let staging = super::stage_beside(target, stream, job)?;
        let report = counts::compare(expected, &Counts::new());
        if report.ok() {
            job.control.commit(|| super::swap_in(staging, target))?;
        }
        Ok(RestoreOutcome {
            swapped: report.ok(),
            after_swap_error: None,
            counts: report,
        })
    }
}
