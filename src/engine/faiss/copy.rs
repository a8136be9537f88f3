//! A consistent copy of a set of files into one tar archive in a spool file.
//!
//! An index and its sidecars are saved by an application that may rewrite them at any
//! time, and nothing locks them. So a copy is only accepted when it provably matches the
//! files at one moment:
//!
//! 1. every file's size, modification time and identity (device, inode) are recorded;
//! 2. every file is read once and hashed (SHA-256);
//! 3. every file is read again into the archive, hashed again, and its header parsed
//!    from exactly the bytes that went into the archive;
//! 4. every file's size, modification time and identity are recorded again.
//!
//! The copy is accepted when, for every file, both hashes agree and the records of steps
//! 1 and 4 agree (and the open file is the one recorded). Size and time alone would miss
//! a rewrite inside the clock's granularity or by a writer that restores the time; two
//! identical reads inside an unchanged window show the archive holds what every file
//! held during that window, and so the set as it was at one moment. Otherwise the whole
//! set is copied again after a short pause, a few times, and then the backup fails
//! naming the file. The archive lives in a spool file until it is accepted, so a
//! changing source never reaches a repository.

use super::header::{self, HeaderError, Kind};
use crate::engine::spool::{Spool, SpoolFile};
use crate::engine::stamp::Stamp;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, BufWriter, Read, Seek};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    /// Whole-set copies before giving up.
    pub attempts: u32,
    /// Pause before each new attempt, multiplied by the attempt number.
    pub pause: Duration,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            attempts: 3,
            pause: Duration::from_millis(250),
        }
    }
}

/// One file as it went into the archive.
#[derive(Debug, Clone)]
pub struct CopiedFile {
    /// Its name in the archive (the file name).
    pub name: String,
    /// Where it was read.
    pub path: PathBuf,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of its content, hex.
    pub sha256: String,
    /// Index (with its header) or sidecar.
    pub kind: Kind,
}

/// An accepted copy: the archive, ready to be read from its start.
pub struct Copied {
    /// The archive; the spool file is removed when this is dropped.
    pub archive: SpoolFile,
    /// Its size in bytes.
    pub archive_size: u64,
    /// The files, in the order of the source's `paths`.
    pub files: Vec<CopiedFile>,
    /// Attempts it took.
    pub attempts: u32,
    /// Taken before the accepted attempt's first record: the files held this content
    /// from then on, until the copy was checked.
    pub consistency_point: DateTime<Utc>,
}

/// Why an attempt did not produce an accepted copy.
enum Failure {
    /// A file changed: worth another attempt.
    Changed { path: PathBuf, what: String },
    /// Anything else: another attempt would fail the same way.
    Fatal(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Fatal(e)
    }
}

/// Copy `paths` into a tar archive in `spool`, consistently (see the module doc).
pub fn copy(
    paths: &[PathBuf],
    spool: &Spool,
    now: &dyn Fn() -> DateTime<Utc>,
    opts: CopyOptions,
) -> Result<Copied> {
    let names = paths
        .iter()
        .map(|p| file_name(p))
        .collect::<Result<Vec<_>>>()?;
    let attempts = opts.attempts.max(1);
    let mut last = None;
    for n in 1..=attempts {
        if n > 1 {
            std::thread::sleep(opts.pause * (n - 1));
        }
        match attempt(paths, &names, spool, now) {
            Ok(mut c) => {
                c.attempts = n;
                return Ok(c);
            }
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Changed { path, what }) => {
                tracing::warn!(path = %path.display(), attempt = n, attempts, change = %what, "file changed while it was copied");
                last = Some((path, what));
            }
        }
    }
    let (path, what) = last.expect("at least one attempt");
    Err(Error::failed(format!(
        "{} changed while it was copied ({what}), in each of {attempts} attempts; back it up when the program writing it is idle (e.g. schedule the backup after it saves the index)",
        path.display()
    ))
    .retryable(true))
}

/// The name a path is archived and restored under.
pub fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::bad_input(format!(
                "{}: a faiss source's `paths` must name files with UTF-8 names",
                path.display()
            ))
        })
}

fn stat(path: &Path) -> Result<Stamp, Failure> {
    let m = fs::metadata(path).map_err(|e| {
        Error::io(
            format!("faiss file {} (check the source's `paths`)", path.display()),
            e,
        )
    })?;
    if !m.is_file() {
        return Err(Error::bad_input(format!(
            "faiss file {} is not a regular file; list the index files and their sidecars in `paths`",
            path.display()
        ))
        .into());
    }
    Ok(Stamp::of(&m))
}

/// A file that was there when the attempt began and is gone now was replaced or
/// removed by its writer: a change, not a configuration problem.
fn gone(path: &Path, e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::NotFound {
        Failure::Changed {
            path: path.to_path_buf(),
            what: "it was removed".into(),
        }
    } else {
        Failure::Fatal(Error::io(format!("faiss file {}", path.display()), e))
    }
}

/// Open `path` and check it is still the file recorded in `before`.
fn open_same(path: &Path, before: &Stamp) -> Result<(File, Metadata), Failure> {
    let file = File::open(path).map_err(|e| gone(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path.display(), e))?;
    match before.change(&Stamp::of(&meta)) {
        Some(what) => Err(Failure::Changed {
            path: path.to_path_buf(),
            what,
        }),
        None => Ok((file, meta)),
    }
}

/// Hashes what passes through, counts it, and keeps the first bytes for the header.
struct Tee<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    prefix: Vec<u8>,
}

impl<R: Read> Tee<R> {
    fn new(inner: R) -> Self {
        Tee {
            inner,
            hasher: Sha256::new(),
            count: 0,
            prefix: Vec::with_capacity(header::PREFIX),
        }
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        let room = header::PREFIX - self.prefix.len();
        self.prefix.extend_from_slice(&buf[..n.min(room)]);
        Ok(n)
    }
}

fn short_read(path: &Path, expected: u64, got: u64) -> Failure {
    Failure::Changed {
        path: path.to_path_buf(),
        what: format!("{expected} bytes were expected, {got} could be read"),
    }
}

fn attempt(
    paths: &[PathBuf],
    names: &[String],
    spool: &Spool,
    now: &dyn Fn() -> DateTime<Utc>,
) -> Result<Copied, Failure> {
    let consistency_point = now();
    let before = paths
        .iter()
        .map(|p| stat(p))
        .collect::<Result<Vec<_>, _>>()?;

    // First read: the content each file holds, to compare with what is archived.
    let mut first = Vec::with_capacity(paths.len());
    for (path, st) in paths.iter().zip(&before) {
        let (file, _) = open_same(path, st)?;
        let mut tee = Tee::new(file.take(st.len));
        io::copy(&mut tee, &mut io::sink())
            .map_err(|e| Error::io(format!("reading faiss file {}", path.display()), e))?;
        if tee.count != st.len {
            return Err(short_read(path, st.len, tee.count));
        }
        first.push(tee.hasher.finalize());
    }

    // Tar adds a header block (and a long-name block) per file, padding, and an end.
    let estimate = before.iter().map(|s| s.len + 3 * 512).sum::<u64>() + 2048;
    let spool_path = spool.create(estimate)?;
    let what = format!("spool file {}", spool_path.display());
    let spool_file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&spool_path)
        .map_err(|e| Error::io(&what, e))?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, spool_file));
    let mut files = Vec::with_capacity(paths.len());
    let mut parsed = Vec::with_capacity(paths.len());
    for ((path, name), (st, first)) in paths.iter().zip(names).zip(before.iter().zip(&first)) {
        let (file, meta) = open_same(path, st)?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(st.len);
        h.set_mode(mode_of(&meta));
        h.set_mtime(
            st.modified
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs()),
        );
        let mut tee = Tee::new(file.take(st.len));
        // An error here may come from the source or the spool; the message names both.
        tar.append_data(&mut h, name, &mut tee).map_err(|e| {
            Error::io(
                format!("copying faiss file {} into {what}", path.display()),
                e,
            )
        })?;
        if tee.count != st.len {
            return Err(short_read(path, st.len, tee.count));
        }
        let digest = tee.hasher.finalize();
        if digest != *first {
            return Err(Failure::Changed {
                path: path.clone(),
                what: "two reads of it differ".into(),
            });
        }
        parsed.push(header::parse(&tee.prefix, st.len));
        files.push(CopiedFile {
            name: name.clone(),
            path: path.clone(),
            size: st.len,
            sha256: hex::encode(digest),
            kind: Kind::Sidecar,
        });
    }
    let mut spool_file = tar
        .into_inner()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .map_err(|e| Error::io(&what, e))?;

    for (path, st) in paths.iter().zip(&before) {
        let now = fs::metadata(path).map_err(|e| gone(path, e))?;
        if let Some(what) = st.change(&Stamp::of(&now)) {
            return Err(Failure::Changed {
                path: path.clone(),
                what,
            });
        }
    }
    // Only now is a damaged header the file's own state rather than a write caught
    // half-way, which the checks above would have reported as a change.
    for (f, kind) in files.iter_mut().zip(parsed) {
        f.kind = kind.map_err(|e| header_error(&format!("faiss file {}", f.path.display()), e))?;
    }

    let archive_size = spool_file
        .stream_position()
        .map_err(|e| Error::io(&what, e))?;
    spool_file.rewind().map_err(|e| Error::io(&what, e))?;
    Ok(Copied {
        archive: SpoolFile::new(spool_file, spool_path),
        archive_size,
        files,
        attempts: 0,
        consistency_point,
    })
}

/// The integrity error for a refused header of `what` (the file, named with its path).
pub fn header_error(what: &str, e: HeaderError) -> Error {
    let fix = match e {
        HeaderError::Unsupported { .. } => "",
        _ => " (restore it from a good copy or save the index again)",
    };
    Error::integrity(format!("{what}: {e}{fix}"))
}

#[cfg(unix)]
fn mode_of(m: &Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn mode_of(_: &Metadata) -> u32 {
    0o644
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::faiss::header::tests::flat_l2;

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    #[test]
    fn a_copy_archives_each_file_under_its_name_with_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("a.faiss");
        let ids = dir.path().join("ids.json");
        fs::write(&index, flat_l2(4, 5)).unwrap();
        fs::write(&ids, b"[1,2,3,4,5]").unwrap();
        let spool = Spool::new(Some(dir.path().join("spool")));
        let mut c = copy(
            &[index.clone(), ids.clone()],
            &spool,
            &now,
            CopyOptions::default(),
        )
        .unwrap();
        assert_eq!(c.attempts, 1);
        assert_eq!(
            c.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["a.faiss", "ids.json"]
        );
        assert!(matches!(&c.files[0].kind, Kind::Index(h) if h.ntotal == 5 && h.d == 4));
        assert_eq!(c.files[1].kind, Kind::Sidecar);
        assert_eq!(
            c.files[1].sha256,
            hex::encode(Sha256::digest(b"[1,2,3,4,5]"))
        );

        let mut bytes = Vec::new();
        c.archive.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, c.archive_size);
        let mut ar = tar::Archive::new(bytes.as_slice());
        let got: Vec<(String, Vec<u8>)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut v = Vec::new();
                e.read_to_end(&mut v).unwrap();
                (e.path().unwrap().display().to_string(), v)
            })
            .collect();
        assert_eq!(got[0], ("a.faiss".into(), fs::read(&index).unwrap()));
        assert_eq!(got[1], ("ids.json".into(), b"[1,2,3,4,5]".to_vec()));

        // The spool file goes with the copy.
        drop(c);
        assert_eq!(fs::read_dir(spool.dir()).unwrap().count(), 0);
    }

    #[test]
    fn a_damaged_index_fails_the_copy_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("broken.faiss");
        let mut b = flat_l2(4, 5);
        b.truncate(50);
        fs::write(&index, b).unwrap();
        let spool = Spool::new(Some(dir.path().join("spool")));
        let err = copy(
            std::slice::from_ref(&index),
            &spool,
            &now,
            CopyOptions::default(),
        )
        .err()
        .unwrap();
        assert_eq!(err.kind(), crate::error::ErrorKind::Integrity);
        assert!(
            err.to_string().contains(&index.display().to_string()),
            "{err}"
        );
        assert_eq!(fs::read_dir(spool.dir()).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_file_is_named_with_the_key_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(Some(dir.path().join("spool")));
        let err = copy(
            &[dir.path().join("nope.faiss")],
            &spool,
            &now,
            CopyOptions::default(),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("nope.faiss"), "{err}");
        assert!(err.to_string().contains("`paths`"), "{err}");
    }

    #[test]
    fn a_file_gone_during_the_copy_is_a_change_other_errors_are_not() {
        let p = Path::new("/srv/index.faiss");
        let removed = gone(p, io::Error::from(io::ErrorKind::NotFound));
        assert!(matches!(removed, Failure::Changed { what, .. } if what == "it was removed"));
        let denied = gone(p, io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(matches!(denied, Failure::Fatal(e) if e.to_string().contains("/srv/index.faiss")));
    }

    #[test]
    fn stamps_describe_what_changed() {
        let a = Stamp {
            len: 10,
            modified: None,
            dev: 1,
            ino: 2,
        };
        assert_eq!(a.change(&a), None);
        let grown = Stamp { len: 12, ..a };
        assert_eq!(
            a.change(&grown).unwrap(),
            "its size went from 10 to 12 bytes"
        );
        let moved = Stamp { ino: 3, ..a };
        assert_eq!(a.change(&moved).unwrap(), "it was replaced by another file");
        let touched = Stamp {
            modified: Some(SystemTime::UNIX_EPOCH),
            ..a
        };
        assert_eq!(a.change(&touched).unwrap(), "its modification time changed");
    }
}
