//! FAISS: a source is a set of files saved by the application that serves them, FAISS
//! index files and their sidecars (id maps, metadata JSON), without FAISS linked in.
//!
//! Backup. The files are copied consistently (see [`copy`]: two reads that must agree
//! inside a window in which no file changed, else the whole set again, up to three
//! times) into one tar archive that holds each file under its file name; that archive
//! is the raw stream. It is built in a spool file and streamed only once accepted. Each
//! file's first bytes decide what it is (see [`header`]): a known FAISS type code makes
//! it an index whose header gives the counts `vectors.NAME` (ntotal) and `dim.NAME`
//! (d), read from exactly the archived bytes; anything else is a sidecar. A truncated
//! or impossible index header fails the backup naming the file. The manifest's details
//! list every file's type code, size and SHA-256: the integrity record of files that
//! carry no checksum of their own.
//!
//! Restore into a folder (`--to DIR`). Each archived file is written to its own staging
//! file beside `DIR/NAME`; the staged index files are counted and compared with the
//! manifest; only when every count agrees are they moved over their targets. Each file
//! is replaced atomically (a rename on the same file system); the set is replaced file
//! by file, so a reader opening the files during the swap may see a new index beside an
//! old sidecar: restart readers afterwards, which is what `post-restore` is for. On a
//! mismatch the staging files are removed and the targets are untouched. Archive entries
//! must be plain file names listed in the source's `paths`: a backup cannot write
//! anywhere else.
//!
//! `post-restore` runs after the swap, in the target folder, killed after
//! `post-restore-timeout`; its failure is reported as an error that says the files are in
//! place (see [`hook`]).

mod copy;
pub mod header;
mod hook;

use super::counts::{self, Counts};
use super::spool::Spool;
use super::{Engine, RestoreJob, RestoreOutcome, Snapshot};
use crate::error::{Error, Result};
use crate::pipeline::read_error;
use crate::policy::FaissConfig;
use crate::storage::{Check, CheckStatus};
use chrono::{DateTime, Utc};
use header::Kind;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// The FAISS engine of one source.
#[derive(Debug, Clone)]
pub struct FaissEngine {
    cfg: FaissConfig,
    copy: copy::CopyOptions,
}

impl FaissEngine {
    /// An engine for `cfg`.
    pub fn new(cfg: FaissConfig) -> Self {
        FaissEngine {
            cfg,
            copy: copy::CopyOptions::default(),
        }
    }

    /// The file names the source's files are archived and restored under.
    fn names(&self) -> Result<Vec<String>> {
        self.cfg.paths.iter().map(|p| copy::file_name(p)).collect()
    }
}

/// The counts of one file: none for a sidecar.
fn add_counts(counts: &mut Counts, name: &str, kind: &Kind) {
    if let Kind::Index(h) = kind {
        counts.insert(format!("vectors.{name}"), h.ntotal);
        counts.insert(format!("dim.{name}"), h.d);
    }
}

/// Read the header of the file at `path`; `what` names it in errors, `hint` says where
/// it was expected to be.
fn read_kind(path: &Path, what: &str, hint: &str) -> Result<(Kind, u64)> {
    let open_err = |e| Error::io(format!("{what} {} ({hint})", path.display()), e);
    let file = File::open(path).map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    if !meta.is_file() {
        return Err(Error::bad_input(format!(
            "{what} {} is not a regular file ({hint})",
            path.display()
        )));
    }
    let mut prefix = Vec::with_capacity(header::PREFIX);
    file.take(header::PREFIX as u64)
        .read_to_end(&mut prefix)
        .map_err(|e| Error::io(format!("reading {what} {}", path.display()), e))?;
    let kind = header::parse(&prefix, meta.len())
        .map_err(|e| copy::header_error(&format!("{what} {}", path.display()), e))?;
    Ok((kind, meta.len()))
}

/// The name of an archive entry, when it is a plain file name.
fn entry_name(path: &Path) -> Option<String> {
    let mut parts = path.components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(n)), None) => n.to_str().map(str::to_string),
        _ => None,
    }
}

/// One archived file written beside its target.
struct Staged {
    name: String,
    target: PathBuf,
    file: tempfile::NamedTempFile,
    mode: Option<u32>,
}

fn details(c: &copy::Copied) -> serde_json::Value {
    let files: Vec<serde_json::Value> = c
        .files
        .iter()
        .map(|f| {
            let mut v = serde_json::json!({
                "name": f.name,
                "path": f.path.display().to_string(),
                "size": f.size,
                "sha256": f.sha256,
            });
            match &f.kind {
                Kind::Index(h) => {
                    v["type"] = h.fourcc.clone().into();
                    v["class"] = h.class.into();
                    v["d"] = h.d.into();
                    v["ntotal"] = h.ntotal.into();
                }
                Kind::Sidecar => v["type"] = "sidecar".into(),
            }
            v
        })
        .collect();
    serde_json::json!({
        "archive": "tar",
        "attempts": c.attempts,
        "files": files,
    })
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // A mode from the archive is hostile input: regular permission bits only, never
    // setuid, setgid or sticky, never writable by everyone (as the files engine).
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o775))
        .map_err(|e| Error::io(format!("setting the mode of {}", path.display()), e))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> Result<()> {
    Ok(())
}

impl Engine for FaissEngine {
    fn snapshot(&self, spool: &Spool, now: &dyn Fn() -> DateTime<Utc>) -> Result<Snapshot> {
        let c = copy::copy(&self.cfg.paths, spool, now, self.copy)?;
        let mut counts = Counts::new();
        for f in &c.files {
            add_counts(&mut counts, &f.name, &f.kind);
        }
        let details = details(&c);
        Ok(Snapshot {
            size_hint: Some(c.archive_size),
            consistency_point: c.consistency_point,
            reader: Box::new(c.archive),
            counts: counts.into(),
            details,
        })
    }

    fn check_target(&self, target: &str, force: bool) -> Result<()> {
        let dir = Path::new(target);
        if fs::metadata(dir).is_ok_and(|m| !m.is_dir()) {
            return Err(Error::bad_input(format!(
                "restore target {target} is a file; a faiss source restores into a folder, its files side by side"
            )));
        }
        let mut busy = Vec::new();
        for name in self.names()? {
            let path = dir.join(&name);
            match fs::metadata(&path) {
                Ok(m) if m.is_dir() => {
                    return Err(Error::bad_input(format!(
                        "restore target {} is a folder; move it away so the file {name} can be restored there",
                        path.display()
                    )));
                }
                Ok(m) if m.len() > 0 && !force => busy.push(format!("{name} ({} bytes)", m.len())),
                _ => {}
            }
        }
        if busy.is_empty() {
            Ok(())
        } else {
            Err(Error::bad_input(format!(
                "restore target {target} already holds {}; pass --force to replace them",
                busy.join(", ")
            )))
        }
    }

    fn restore(
        &self,
        target: &str,
        stream: &mut dyn Read,
        expected: &Counts,
        job: &RestoreJob,
    ) -> Result<RestoreOutcome> {
        let dir = Path::new(target);
        let names = self.names()?;
        self.sweep_staging(target)?;
        let mut stream = job.control.reader(stream);
        let mut archive = tar::Archive::new(&mut stream);
        let mut staged: Vec<Staged> = Vec::new();
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
            let name = entry_name(&raw).ok_or_else(|| {
                Error::bad_input(format!(
                    "the backup holds an entry named {}; a faiss backup holds plain file names only, so this archive was not written by lifeboat and is not restored",
                    raw.display()
                ))
            })?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(Error::bad_input(format!(
                    "the backup's entry {name} is not a regular file ({:?}); it is not restored",
                    entry.header().entry_type()
                )));
            }
            if !names.contains(&name) {
                return Err(Error::bad_input(format!(
                    "the backup holds {name}, which is not among this source's `paths` ({}); restore it with the policy the backup was made with",
                    names.join(", ")
                )));
            }
            if staged.iter().any(|s| s.name == name) {
                return Err(Error::bad_input(format!(
                    "the backup holds {name} twice; it is not restored"
                )));
            }
            let mode = entry.header().mode().ok();
            let target = dir.join(&name);
            let file = super::stage_beside(&target, &mut entry, job)?;
            staged.push(Staged {
                name,
                target,
                file,
                mode,
            });
        }
        // The pipeline checks the whole stream's size and hash when it reaches the end,
        // which the archive reader stops short of.
        io::copy(archive.into_inner(), &mut io::sink())
            .map_err(|e| read_error("reading the backup", e))?;
        if staged.is_empty() {
            return Err(Error::bad_input(
                "the backup's archive holds no file; there is nothing to restore",
            ));
        }

        let mut actual = Counts::new();
        for s in &staged {
            let what = format!("restored copy of {}, staged as", s.name);
            let (kind, _) = read_kind(s.file.path(), &what, "written by this restore")?;
            add_counts(&mut actual, &s.name, &kind);
        }
        let report = counts::compare(expected, &actual);
        if !report.ok() {
            // Dropping the staging files removes them; no target was touched.
            return Ok(RestoreOutcome {
                counts: report,
                swapped: false,
                after_swap_error: None,
            });
        }

        let all: Vec<String> = staged.iter().map(|s| s.name.clone()).collect();
        job.control.commit(|| {
            for (i, s) in staged.into_iter().enumerate() {
                if let Some(mode) = s.mode {
                    set_mode(s.file.path(), mode)?;
                }
                super::swap_in(s.file, &s.target).map_err(|e| {
                    e.context(format!(
                        "restore into {target} stopped after replacing [{}]; not replaced: [{}]",
                        all[..i].join(", "),
                        all[i..].join(", ")
                    ))
                })?;
            }
            Ok(())
        })?;
        tracing::info!(target = %target, files = all.len(), "faiss files restored");

        // The files are in place whatever the command does: a failure here fails the run
        // but must not send the restore on to another repository. The command acts on
        // the service (a rollout restart): it runs for a real restore only, in a drill
        // only when the source says so (`post-restore-in-drills`), never in a trial.
        let mut after_swap_error = None;
        if let Some(cmd) = &self.cfg.post_restore {
            if job.purpose.runs_after_swap(self.cfg.post_restore_in_drills) {
                match hook::run(cmd, dir, self.cfg.post_restore_timeout, job.purpose) {
                    Ok(o) => {
                        tracing::info!(command = %cmd.join(" "), status = %o.status, stdout = %o.stdout, stderr = %o.stderr, "post-restore command finished");
                    }
                    Err(e) => after_swap_error = Some(e.to_string()),
                }
            } else {
                tracing::info!(command = %cmd.join(" "), target = %target, "post-restore command not run: {}", job.purpose.skip_note());
            }
        }
        Ok(RestoreOutcome {
            counts: report,
            swapped: true,
            after_swap_error,
        })
    }

    fn sweep_staging(&self, target: &str) -> Result<Vec<String>> {
        let dir = Path::new(target);
        let mut removed = Vec::new();
        for name in self.names()? {
            removed.extend(super::sweep_file_target(&dir.join(name).to_string_lossy())?);
        }
        Ok(removed)
    }

    fn count_target(&self, target: &str) -> Result<Counts> {
        let dir = Path::new(target);
        if !dir.is_dir() {
            return Err(Error::bad_input(format!(
                "{target} is not a folder; a faiss source is counted in the folder it was restored into"
            )));
        }
        let names = self.names()?;
        let mut counts = Counts::new();
        let mut found = 0;
        for name in &names {
            let path = dir.join(name);
            // A missing index shows as a missing count in the comparison.
            if !path.exists() {
                continue;
            }
            found += 1;
            let (kind, _) = read_kind(&path, "faiss file", "in the folder being compared")?;
            add_counts(&mut counts, name, &kind);
        }
        if found == 0 {
            return Err(Error::bad_input(format!(
                "{target} holds none of this source's files ({}); name the folder the source was restored into",
                names.join(", ")
            )));
        }
        Ok(counts)
    }

    fn checks(&self) -> Vec<Check> {
        self.cfg
            .paths
            .iter()
            .map(
                |p| match read_kind(p, "faiss file", "check the source's `paths`") {
                    Ok((Kind::Index(h), len)) => Check::new(
                        "readable",
                        CheckStatus::Ok,
                        format!(
                            "{}: {} ({}), d = {}, {} vectors, {len} bytes",
                            p.display(),
                            h.class,
                            h.fourcc,
                            h.d,
                            h.ntotal
                        ),
                    ),
                    Ok((Kind::Sidecar, len)) => Check::new(
                        "readable",
                        CheckStatus::Ok,
                        format!("{}: sidecar, {len} bytes", p.display()),
                    ),
                    Err(e) => Check::new("readable", CheckStatus::Fail, e.to_string()),
                },
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::header::tests::flat_l2;
    use super::*;
    use crate::error::ErrorKind;
    use std::time::Duration;

    struct Fixture {
        dir: tempfile::TempDir,
        engine: FaissEngine,
        spool: Spool,
    }

    /// A source of `a.faiss` (flat, d 4, 5 vectors) and `ids.json`.
    fn fixture(post_restore: Option<&[&str]>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("a.faiss"), flat_l2(4, 5)).unwrap();
        fs::write(src.join("ids.json"), b"[10, 11, 12, 13, 14]").unwrap();
        let engine = FaissEngine::new(FaissConfig {
            paths: vec![src.join("a.faiss"), src.join("ids.json")],
            post_restore: post_restore.map(|c| c.iter().map(|s| s.to_string()).collect()),
            post_restore_timeout: Duration::from_secs(10),
            post_restore_in_drills: false,
        });
        let spool = Spool::new(Some(dir.path().join("spool")));
        Fixture { dir, engine, spool }
    }

    impl Fixture {
        fn backup(&self) -> (Vec<u8>, Counts) {
            let mut snap = self.engine.snapshot(&self.spool, &Utc::now).unwrap();
            let mut raw = Vec::new();
            snap.reader.read_to_end(&mut raw).unwrap();
            (raw, snap.counts.wait().unwrap().0)
        }

        fn target(&self) -> PathBuf {
            self.dir.path().join("restored")
        }

        fn restore(&self, raw: &[u8], expected: &Counts) -> Result<RestoreOutcome> {
            let t = self.target();
            self.engine.restore(
                t.to_str().unwrap(),
                &mut &raw[..],
                expected,
                &RestoreJob::default(),
            )
        }
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .map(|r| {
                r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn a_snapshot_counts_indexes_and_records_every_file() {
        let f = fixture(None);
        let snap = f.engine.snapshot(&f.spool, &Utc::now).unwrap();
        let want: Counts = [
            ("dim.a.faiss".to_string(), 4),
            ("vectors.a.faiss".to_string(), 5),
        ]
        .into_iter()
        .collect();
        assert_eq!(snap.counts.wait().unwrap().0, want);
        let files = snap.details["files"].as_array().unwrap();
        assert_eq!(files[0]["type"], "IxF2");
        assert_eq!(files[0]["class"], "IndexFlatL2");
        assert_eq!(files[1]["type"], "sidecar");
        assert_eq!(files[1]["size"], 20);
        assert_eq!(snap.details["attempts"], 1);
    }

    #[test]
    fn a_restore_writes_identical_files_and_recounts_them() {
        let f = fixture(None);
        let (raw, counts) = f.backup();
        let out = f.restore(&raw, &counts).unwrap();
        assert!(out.swapped && out.counts.ok());
        for name in ["a.faiss", "ids.json"] {
            assert_eq!(
                fs::read(f.target().join(name)).unwrap(),
                fs::read(f.dir.path().join("src").join(name)).unwrap()
            );
        }
        assert_eq!(listing(&f.target()), ["a.faiss", "ids.json"]);
        let t = f.target();
        assert_eq!(f.engine.count_target(t.to_str().unwrap()).unwrap(), counts);
    }

    #[test]
    fn a_count_mismatch_removes_the_staging_files_and_leaves_targets_untouched() {
        let f = fixture(None);
        let (raw, mut counts) = f.backup();
        fs::create_dir_all(f.target()).unwrap();
        fs::write(f.target().join("a.faiss"), b"old index").unwrap();
        counts.insert("vectors.a.faiss".into(), 6);
        let out = f.restore(&raw, &counts).unwrap();
        assert!(!out.swapped);
        assert_eq!(
            out.counts.mismatches(),
            ["vectors.a.faiss: expected 6, actual 5"]
        );
        assert_eq!(fs::read(f.target().join("a.faiss")).unwrap(), b"old index");
        assert_eq!(listing(&f.target()), ["a.faiss"]);
    }

    fn archive(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
        archive_with_mode(entries, 0o644)
    }

    fn archive_with_mode(entries: &[(&[u8], &[u8])], mode: u32) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_old();
            // Raw names: the builder itself refuses the hostile ones this test needs.
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn entries_with_paths_or_unknown_names_are_refused_and_nothing_is_written() {
        let f = fixture(None);
        for (name, why) in [
            (b"../a.faiss".as_slice(), "plain file names only"),
            (b"/tmp/a.faiss".as_slice(), "plain file names only"),
            (b"sub/a.faiss".as_slice(), "plain file names only"),
            (b"other.faiss".as_slice(), "not among this source's `paths`"),
        ] {
            let raw = archive(&[(b"ids.json", b"[]"), (name, b"x")]);
            let err = f.restore(&raw, &Counts::new()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadInput);
            assert!(err.to_string().contains(why), "{err}");
            assert!(
                listing(&f.target()).is_empty(),
                "{:?}",
                listing(&f.target())
            );
        }
        let raw = archive(&[(b"ids.json", b"[]"), (b"ids.json", b"[]")]);
        let err = f.restore(&raw, &Counts::new()).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn restored_files_never_take_setuid_or_world_writable_bits_from_the_archive() {
        use std::os::unix::fs::PermissionsExt;
        let f = fixture(None);
        let raw = archive_with_mode(&[(b"ids.json", b"[]")], 0o6777);
        let out = f.restore(&raw, &Counts::new()).unwrap();
        assert!(out.swapped);
        let mode = fs::metadata(f.target().join("ids.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o775, "{mode:o}");
    }

    #[test]
    fn a_non_empty_target_file_is_refused_without_force() {
        let f = fixture(None);
        let t = f.target();
        let t = t.to_str().unwrap();
        f.engine.check_target(t, false).unwrap();
        fs::create_dir_all(f.target()).unwrap();
        fs::write(f.target().join("ids.json"), b"").unwrap();
        f.engine.check_target(t, false).unwrap();
        fs::write(f.target().join("a.faiss"), b"data").unwrap();
        let err = f.engine.check_target(t, false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert!(err.to_string().contains("a.faiss (4 bytes)"), "{err}");
        assert!(err.to_string().contains("--force"), "{err}");
        f.engine.check_target(t, true).unwrap();
        let file = f.dir.path().join("src").join("ids.json");
        let err = f
            .engine
            .check_target(file.to_str().unwrap(), true)
            .unwrap_err();
        assert!(err.to_string().contains("restores into a folder"), "{err}");
    }

    #[test]
    fn post_restore_runs_after_the_swap() {
        let f = fixture(Some(&["sh", "-c", "test -s a.faiss && touch marker"]));
        let (raw, counts) = f.backup();
        f.restore(&raw, &counts).unwrap();
        assert!(f.target().join("marker").exists());
    }

    #[test]
    fn count_target_counts_what_is_present_and_refuses_an_unrelated_folder() {
        let f = fixture(None);
        let src = f.dir.path().join("src");
        fs::remove_file(src.join("ids.json")).unwrap();
        let counts = f.engine.count_target(src.to_str().unwrap()).unwrap();
        assert_eq!(counts["vectors.a.faiss"], 5);
        let empty = f.dir.path().join("empty");
        fs::create_dir_all(&empty).unwrap();
        let err = f.engine.count_target(empty.to_str().unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("none of this source's files"),
            "{err}"
        );
        fs::write(src.join("a.faiss"), &flat_l2(4, 5)[..20]).unwrap();
        let err = f.engine.count_target(src.to_str().unwrap()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity);
        assert!(err.to_string().contains("a.faiss"), "{err}");
    }

    #[test]
    fn doctor_checks_each_path() {
        let f = fixture(None);
        let checks = f.engine.checks();
        assert_eq!(checks.len(), 2);
        assert!(
            checks.iter().all(|c| c.status == CheckStatus::Ok),
            "{checks:?}"
        );
        assert!(
            checks[0]
                .detail
                .contains("IndexFlatL2 (IxF2), d = 4, 5 vectors")
        );
        fs::remove_file(f.dir.path().join("src").join("ids.json")).unwrap();
        let checks = f.engine.checks();
        assert_eq!(checks[1].status, CheckStatus::Fail);
        assert!(checks[1].detail.contains("ids.json"), "{:?}", checks[1]);
    }
}
