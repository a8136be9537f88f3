//! What is recorded of a file before and after a consistent copy: size, modification
//! time and identity (device, inode). Equal stamps before and after, with equal hashes
//! of two reads, show the copy holds the file as it was at one moment.

use std::fs::Metadata;
use std::time::SystemTime;

/// A file's stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Size in bytes.
    pub(crate) len: u64,
    /// Modification time, where the file system keeps one.
    pub(crate) modified: Option<SystemTime>,
    /// Device of the file.
    pub(crate) dev: u64,
    /// Inode: a file replaced by rename has another.
    pub(crate) ino: u64,
}

impl Stamp {
    /// The stamp of `m`.
    pub(crate) fn of(m: &Metadata) -> Self {
        #[cfg(unix)]
        let (dev, ino) = {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        };
        #[cfg(not(unix))]
        let (dev, ino) = (0, 0);
        Stamp {
            len: m.len(),
            modified: m.modified().ok(),
            dev,
            ino,
        }
    }

    /// How `later` differs, in words; `None` when it does not.
    pub(crate) fn change(&self, later: &Stamp) -> Option<String> {
        if (self.dev, self.ino) != (later.dev, later.ino) {
            Some("it was replaced by another file".into())
        } else if self.len != later.len {
            Some(format!(
                "its size went from {} to {} bytes",
                self.len, later.len
            ))
        } else if self.modified != later.modified {
            Some("its modification time changed".into())
        } else {
            None
        }
    }
}
