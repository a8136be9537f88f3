//! Spool files: for engines that must materialise a file before streaming it (SQLite's
//! backup API writes a database file). Free space is checked before writing, and the
//! file is removed when dropped, on success and on error alike.

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
        let file = tempfile::Builder::new()
            .prefix("lifeboat-spool-")
            .tempfile_in(&self.dir)
            .map_err(|e| Error::io(format!("spool folder {}", self.dir.display()), e))?;
        Ok(file.into_temp_path())
    }
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
