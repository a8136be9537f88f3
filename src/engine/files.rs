//! `files`: configuration files and folders (Helm values, manifests) archived together
//! as one deterministic tar, so that the raw stream's SHA-256 is a pure content hash.
//!
//! - Entries are sorted by name; modification times, owners and modes are fixed (mtime
//!   0, uid/gid 0, mode 0644), so the same content always gives the same bytes. The
//!   run uses that: when the hash equals the newest backup's, nothing is uploaded.
//! - The set is read consistently: every file's size, modification time and identity
//!   are recorded, the archive is written to a spool file, and the walk is done again;
//!   any difference (a file changed, appeared or went) starts the copy over, a few
//!   times, before the backup fails naming the file.
//! - A restore extracts into a staging folder beside the target and renames it into
//!   place once the counts (`files`, `bytes`) match: the target folder is replaced as a
//!   whole, never left half written.

use super::counts::{self, Counts};
use super::spool::Spool;
use super::{CONTENT_SHA256, Engine, RestoreOutcome, Snapshot};
use crate::engine::spool::SpoolFile;
use crate::engine::stamp::Stamp;
use crate::error::{Error, Result};
use crate::pipeline::read_error;
use crate::policy::FilesConfig;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// The mode every archived file gets (and is restored with).
const MODE: u32 = 0o644;

/// The engine of a `files` source.
#[derive(Debug, Clone)]
pub struct FilesEngine {
    cfg: FilesConfig,
    attempts: u32,
    pause: Duration,
}

impl FilesEngine {
    /// An engine for `cfg`.
    pub fn new(cfg: FilesConfig) -> Self {
        FilesEngine {
            cfg,
            attempts: 3,
            pause: Duration::from_millis(250),
        }
    }
}

/// One file of the set: its archive name, where it is, and its stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    path: PathBuf,
    stamp: Stamp,
}

/// Every regular file under `dir`, named `prefix/relative/path`. Symbolic links to
/// files are read as the file; a link to a folder is refused (it could loop).
fn walk(dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> Result<()> {
    let what = |p: &Path| format!("files source: {}", p.display());
    let mut children = fs::read_dir(dir)
        .and_then(|r| r.collect::<io::Result<Vec<_>>>())
        .map_err(|e| Error::io(what(dir), e))?;
    children.sort_by_key(|c| c.file_name());
    for child in children {
        let path = child.path();
        let name = child.file_name().into_string().map_err(|n| {
            Error::bad_input(format!(
                "{}: the name {n:?} is not UTF-8; a files source archives UTF-8 names only",
                dir.display()
            ))
        })?;
        let name = format!("{prefix}/{name}");
        let link = child
            .file_type()
            .map_err(|e| Error::io(what(&path), e))?
            .is_symlink();
        let meta = fs::metadata(&path).map_err(|e| Error::io(what(&path), e))?;
        if meta.is_file() {
            out.push(Entry {
                name,
                path,
                stamp: Stamp::of(&meta),
            });
        } else if meta.is_dir() && !link {
            walk(&path, &name, out)?;
        } else {
            return Err(Error::bad_input(format!(
                "{}: {}; a files source holds regular files and folders (remove it or list the files beside it)",
                path.display(),
                if link {
                    "a symbolic link to a folder is not followed"
                } else {
                    "not a regular file or folder"
                }
            )));
        }
    }
    Ok(())
}

/// The whole set, sorted by archive name.
fn collect(cfg: &FilesConfig) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for p in &cfg.paths {
        let meta = fs::metadata(&p.path).map_err(|e| {
            Error::io(
                format!(
                    "files source: {} (check the source's `paths`)",
                    p.path.display()
                ),
                e,
            )
        })?;
        if meta.is_dir() {
            walk(&p.path, &p.name, &mut out)?;
        } else if meta.is_file() {
            out.push(Entry {
                name: p.name.clone(),
                path: p.path.clone(),
                stamp: Stamp::of(&meta),
            });
        } else {
            return Err(Error::bad_input(format!(
                "files source: {} is not a regular file or folder",
                p.path.display()
            )));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Hashes and counts what is written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// An accepted archive.
struct Archive {
    file: SpoolFile,
    size: u64,
    sha256: String,
    files: u64,
    bytes: u64,
    consistency_point: DateTime<Utc>,
}

/// Why an attempt did not produce an accepted archive.
enum Failure {
    /// The set changed while it was read: worth another attempt.
    Changed(String),
    /// Anything else.
    Fatal(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Fatal(e)
    }
}

/// How two walks of the set differ, in words.
fn difference(before: &[Entry], after: &[Entry]) -> Option<String> {
    let names = |v: &[Entry]| v.iter().map(|e| e.name.clone()).collect::<BTreeSet<_>>();
    let (b, a) = (names(before), names(after));
    if let Some(n) = a.difference(&b).next() {
        return Some(format!("{n} appeared"));
    }
    if let Some(n) = b.difference(&a).next() {
        return Some(format!("{n} was removed"));
    }
    before
        .iter()
        .zip(after)
        .find(|(x, y)| x.stamp != y.stamp)
        .map(|(x, _)| format!("{} changed", x.path.display()))
}

fn attempt(
    cfg: &FilesConfig,
    spool: &Spool,
    now: &dyn Fn() -> DateTime<Utc>,
) -> Result<Archive, Failure> {
    let consistency_point = now();
    let before = collect(cfg)?;
    let estimate = before.iter().map(|e| e.stamp.len + 3 * 512).sum::<u64>() + 2048;
    let spool_path = spool.create(estimate)?;
    let what = format!("spool file {}", spool_path.display());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&spool_path)
        .map_err(|e| Error::io(&what, e))?;
    let mut tar = tar::Builder::new(HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        count: 0,
    });
    let mut bytes = 0;
    for e in &before {
        let f = match File::open(&e.path) {
            Ok(f) => f,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(Failure::Changed(format!(
                    "{} was removed",
                    e.path.display()
                )));
            }
            Err(err) => return Err(Error::io(e.path.display(), err).into()),
        };
        let meta = f
            .metadata()
            .map_err(|err| Error::io(e.path.display(), err))?;
        if Stamp::of(&meta) != e.stamp {
            return Err(Failure::Changed(format!("{} changed", e.path.display())));
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(e.stamp.len);
        h.set_mode(MODE);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        let mut counted = Counted {
            inner: f.take(e.stamp.len),
            count: 0,
        };
        tar.append_data(&mut h, &e.name, &mut counted)
            .map_err(|err| Error::io(format!("copying {} into {what}", e.path.display()), err))?;
        if counted.count != e.stamp.len {
            return Err(Failure::Changed(format!(
                "{} shrank while it was read",
                e.path.display()
            )));
        }
        bytes += e.stamp.len;
    }
    let writer = tar.into_inner().map_err(|e| Error::io(&what, e))?;
    let (size, sha256) = (writer.count, hex::encode(writer.hasher.finalize()));
    let mut file = writer
        .inner
        .into_inner()
        .map_err(|e| Error::io(&what, e.into_error()))?;
    let after = collect(cfg)?;
    if let Some(change) = difference(&before, &after) {
        return Err(Failure::Changed(change));
    }
    file.rewind().map_err(|e| Error::io(&what, e))?;
    Ok(Archive {
        file: SpoolFile::new(file, spool_path),
        size,
        sha256,
        files: before.len() as u64,
        bytes,
        consistency_point,
    })
}

/// Counts what it reads.
struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

fn file_counts(files: u64, bytes: u64) -> Counts {
    [("files".to_string(), files), ("bytes".to_string(), bytes)]
        .into_iter()
        .collect()
}

/// An archive entry name as a relative path of plain components, or `None`.
fn safe_name(raw: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// The folder a target lives in, created if missing, and the target's own name.
fn parent_of(target: &Path) -> Result<(PathBuf, String)> {
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    fs::create_dir_all(&parent)
        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("restore")
        .to_string();
    Ok((parent, name))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing folder {}", dir.display()), e))
}

/// Put the staged folder in place of `target`: the old folder (if any) is moved
/// aside first and removed only once the new one is in place.
fn swap_folder(staged: tempfile::TempDir, target: &Path, parent: &Path) -> Result<()> {
    let staged = staged.keep();
    let old = match fs::symlink_metadata(target) {
        Ok(_) => {
            // Named after the staging folder, which is unique in `parent`.
            let staged_name = staged.file_name().unwrap_or_default().to_string_lossy();
            let old = parent.join(super::staging::old_name(&staged_name));
            fs::rename(target, &old)
                .map_err(|e| Error::io(format!("moving {} aside", target.display()), e))?;
            Some(old)
        }
        Err(_) => None,
    };
    if let Err(e) = fs::rename(&staged, target) {
        if let Some(old) = &old {
            let _ = fs::rename(old, target);
        }
        let _ = fs::remove_dir_all(&staged);
        return Err(Error::io(
            format!("moving the restored folder to {}", target.display()),
            e,
        ));
    }
    sync_dir(parent)?;
    if let Some(old) = old {
        fs::remove_dir_all(&old)
            .map_err(|e| Error::io(format!("removing the replaced folder {}", old.display()), e))?;
    }
    Ok(())
}

/// Files and bytes under `dir` (regular files; links are not followed).
fn count_dir(dir: &Path) -> Result<(u64, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for child in fs::read_dir(&d).map_err(|e| Error::io(d.display(), e))? {
            let child = child.map_err(|e| Error::io(d.display(), e))?;
            let meta = fs::symlink_metadata(child.path())
                .map_err(|e| Error::io(child.path().display(), e))?;
            if meta.is_dir() {
                stack.push(child.path());
            } else if meta.is_file() {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    Ok((files, bytes))
}

impl Engine for FilesEngine {
    fn snapshot(&self, spool: &Spool, now: &dyn Fn() -> DateTime<Utc>) -> Result<Snapshot> {
        let attempts = self.attempts.max(1);
        let mut last = String::new();
        for n in 1..=attempts {
            if n > 1 {
                std::thread::sleep(self.pause * (n - 1));
            }
            match attempt(&self.cfg, spool, now) {
                Ok(a) => {
                    let names: Vec<&str> = self.cfg.paths.iter().map(|p| p.name.as_str()).collect();
                    return Ok(Snapshot {
                        size_hint: Some(a.size),
                        consistency_point: a.consistency_point,
                        counts: file_counts(a.files, a.bytes).into(),
                        details: serde_json::json!({
                            "paths": names,
                            "files": a.files,
                            "attempts": n,
                            CONTENT_SHA256: a.sha256,
                        }),
                        reader: Box::new(a.file),
                    });
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Changed(what)) => {
                    tracing::warn!(attempt = n, attempts, change = %what, "files changed while they were copied");
                    last = what;
                }
            }
        }
        Err(Error::failed(format!(
            "files changed while they were copied ({last}), in each of {attempts} attempts; back them up when nothing writes them"
        ))
        .retryable(true))
    }

    fn check_target(&self, target: &str, force: bool) -> Result<()> {
        match fs::metadata(target) {
            Ok(m) if !m.is_dir() => Err(Error::bad_input(format!(
                "restore target {target} is a file; a files source restores into a folder"
            ))),
            Ok(_) => {
                let held = fs::read_dir(target)
                    .map_err(|e| Error::io(target, e))?
                    .count();
                if held > 0 && !force {
                    Err(Error::bad_input(format!(
                        "restore target {target} already holds {held} entries; pass --force to replace the folder as a whole"
                    )))
                } else {
                    Ok(())
                }
            }
            Err(_) => Ok(()),
        }
    }

    fn restore(
        &self,
        target: &str,
        stream: &mut dyn Read,
        expected: &Counts,
        job: &super::RestoreJob,
    ) -> Result<RestoreOutcome> {
        let target_path = Path::new(target);
        let (parent, name) = parent_of(target_path)?;
        super::staging::sweep_beside(target_path)?;
        let staging = tempfile::Builder::new()
            .prefix(&job.staging_prefix(&name))
            .tempdir_in(&parent)
            .map_err(|e| Error::io(format!("staging folder in {}", parent.display()), e))?;
        let mut stream = job.control.reader(stream);
        let mut archive = tar::Archive::new(&mut stream);
        let mut seen = BTreeSet::new();
        let (mut files, mut bytes) = (0u64, 0u64);
        let entries = archive
            .entries()
            .map_err(|e| read_error("reading the backup archive", e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| read_error("reading the backup archive", e))?;
            let raw = entry
                .path()
                .map_err(|e| read_error("reading the backup archive", e))?
                .into_owned();
            // Archive content is the same in every repository: refusing it is final.
            let rel = safe_name(&raw).ok_or_else(|| {
                Error::bad_input(format!(
                    "the backup holds an entry named {}, outside the target folder; it is not restored",
                    raw.display()
                ))
            })?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(Error::bad_input(format!(
                    "the backup's entry {} is not a regular file ({:?}); it is not restored",
                    rel.display(),
                    entry.header().entry_type()
                )));
            }
            if !seen.insert(rel.clone()) {
                return Err(Error::bad_input(format!(
                    "the backup holds {} twice; it is not restored",
                    rel.display()
                )));
            }
            let path = staging.path().join(&rel);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
            }
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| Error::io(path.display(), e))?;
            let n = io::copy(&mut entry, &mut out)
                .map_err(|e| read_error("reading the backup archive", e))?;
            out.sync_all().map_err(|e| Error::io(path.display(), e))?;
            files += 1;
            bytes += n;
        }
        // The pipeline checks the whole stream's size and hash at its end, which the
        // archive reader stops short of.
        io::copy(archive.into_inner(), &mut io::sink())
            .map_err(|e| read_error("reading the backup", e))?;

        let report = counts::compare(expected, &file_counts(files, bytes));
        if !report.ok() {
            // Dropping the staging folder removes it; the target was not touched.
            return Ok(RestoreOutcome {
                counts: report,
                swapped: false,
                after_swap_error: None,
            });
        }
        job.control
            .commit(|| swap_folder(staging, target_path, &parent))?;
        tracing::info!(target = %target, files, bytes, "files restored");
        Ok(RestoreOutcome {
            counts: report,
            swapped: true,
            after_swap_error: None,
        })
    }

    fn sweep_staging(&self, target: &str) -> Result<Vec<String>> {
        super::sweep_file_target(target)
    }

    fn count_target(&self, target: &str) -> Result<Counts> {
        let dir = Path::new(target);
        if !dir.is_dir() {
            return Err(Error::bad_input(format!(
                "{target} is not a folder; a files source is counted in the folder it was restored into"
            )));
        }
        let (files, bytes) = count_dir(dir)?;
        Ok(file_counts(files, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::policy::FilesPath;

    fn job() -> crate::engine::RestoreJob {
        crate::engine::RestoreJob::default()
    }

    struct Fixture {
        dir: tempfile::TempDir,
        engine: FilesEngine,
        spool: Spool,
    }

    /// A source of `values/` (two files, one nested) and `app.yaml`.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("values/prod")).unwrap();
        fs::write(src.join("values/base.yaml"), b"replicas: 1\n").unwrap();
        fs::write(src.join("values/prod/override.yaml"), b"replicas: 3\n").unwrap();
        fs::write(src.join("app.yaml"), b"kind: Deployment\n").unwrap();
        let engine = FilesEngine::new(FilesConfig {
            paths: vec![
                FilesPath {
                    name: "values".into(),
                    path: src.join("values"),
                },
                FilesPath {
                    name: "app.yaml".into(),
                    path: src.join("app.yaml"),
                },
            ],
        });
        let spool = Spool::new(Some(dir.path().join("spool")));
        Fixture { dir, engine, spool }
    }

    impl Fixture {
        fn src(&self) -> PathBuf {
            self.dir.path().join("src")
        }

        /// Raw stream, counts, promised content hash.
        fn backup(&self) -> (Vec<u8>, Counts, String) {
            let mut snap = self.engine.snapshot(&self.spool, &Utc::now).unwrap();
            let promised = snap.content_sha256().unwrap().to_string();
            let mut raw = Vec::new();
            snap.reader.read_to_end(&mut raw).unwrap();
            (raw, snap.counts.wait().unwrap().0, promised)
        }

        fn target(&self) -> PathBuf {
            self.dir.path().join("restored")
        }
    }

    fn names(raw: &[u8]) -> Vec<String> {
        tar::Archive::new(raw)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn the_archive_is_sorted_and_its_hash_is_promised_up_front() {
        let f = fixture();
        let (raw, counts, promised) = f.backup();
        assert_eq!(
            names(&raw),
            ["app.yaml", "values/base.yaml", "values/prod/override.yaml"]
        );
        assert_eq!(promised, hex::encode(Sha256::digest(&raw)));
        assert_eq!(counts, file_counts(3, 17 + 12 + 12));
    }

    #[test]
    fn the_hash_depends_on_content_only() {
        let f = fixture();
        let (_, _, first) = f.backup();
        // Touching times and modes changes nothing; changing a byte does.
        let p = f.src().join("values/base.yaml");
        let file = File::options().write(true).open(&p).unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(12345))
            .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(f.backup().2, first);
        fs::write(&p, b"replicas: 2\n").unwrap();
        assert_ne!(f.backup().2, first);
    }

    #[test]
    fn a_restore_recreates_the_tree_byte_for_byte_and_recounts_it() {
        let f = fixture();
        let (raw, counts, _) = f.backup();
        let t = f.target();
        let t = t.to_str().unwrap();
        let out = f.engine.restore(t, &mut &raw[..], &counts, &job()).unwrap();
        assert!(out.swapped && out.counts.ok());
        for rel in ["app.yaml", "values/base.yaml", "values/prod/override.yaml"] {
            assert_eq!(
                fs::read(f.target().join(rel)).unwrap(),
                fs::read(f.src().join(rel)).unwrap()
            );
        }
        assert_eq!(f.engine.count_target(t).unwrap(), counts);
        // Nothing left beside the target.
        let beside: Vec<_> = fs::read_dir(f.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(beside.is_empty(), "{beside:?}");
    }

    #[test]
    fn a_forced_restore_replaces_the_folder_and_a_mismatch_leaves_it() {
        let f = fixture();
        let (raw, counts, _) = f.backup();
        let t = f.target();
        fs::create_dir_all(&t).unwrap();
        fs::write(t.join("stale.yaml"), b"old").unwrap();
        let ts = t.to_str().unwrap();
        let err = f.engine.check_target(ts, false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert!(err.to_string().contains("--force"), "{err}");
        f.engine.check_target(ts, true).unwrap();

        let mut wrong = counts.clone();
        wrong.insert("files".into(), 4);
        let out = f.engine.restore(ts, &mut &raw[..], &wrong, &job()).unwrap();
        assert!(!out.swapped);
        assert_eq!(fs::read(t.join("stale.yaml")).unwrap(), b"old");

        let out = f
            .engine
            .restore(ts, &mut &raw[..], &counts, &job())
            .unwrap();
        assert!(out.swapped);
        assert!(!t.join("stale.yaml").exists());
        assert_eq!(f.engine.count_target(ts).unwrap(), counts);
    }

    #[test]
    fn entries_outside_the_target_are_refused() {
        let f = fixture();
        for name in [b"../evil".as_slice(), b"/etc/evil".as_slice()] {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_size(1);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
            let raw = b.into_inner().unwrap();
            let t = f.target();
            let err = f
                .engine
                .restore(t.to_str().unwrap(), &mut &raw[..], &Counts::new(), &job())
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadInput);
            assert!(err.to_string().contains("outside the target"), "{err}");
            assert!(!f.target().exists());
        }
    }

    #[test]
    fn a_missing_path_names_the_policy_key() {
        let f = fixture();
        fs::remove_file(f.src().join("app.yaml")).unwrap();
        let err = f.engine.snapshot(&f.spool, &Utc::now).err().unwrap();
        assert!(
            err.to_string().contains("check the source's `paths`"),
            "{err}"
        );
    }
}
