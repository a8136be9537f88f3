//! A policy set with three sources (sqlite, file, files) and one repository (local or S3
//! on moto), restore targets and a spool folder; the checks of what a kill left.

use crate::common;
use crate::moto;
use crate::record::{Campaign, Fate};
use crate::util::{files_under, local_repo, s3_repo, sha256_file, stderr, stdout};
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Backups each source keeps: small, so that verifying every listed backup stays quick.
pub const KEEP_LAST: usize = 3;

// A policy set with three sources, one repository, restore targets and a spool folder.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Sqlite,
    File,
    Files,
}

pub const SOURCES: [(&str, Kind); 3] = [
    ("app", Kind::Sqlite),
    ("blob", Kind::File),
    ("conf", Kind::Files),
];

pub fn kind_of(source: &str) -> Kind {
    SOURCES
        .iter()
        .find(|(n, _)| *n == source)
        .unwrap_or_else(|| panic!("unknown source {source}"))
        .1
}

pub enum Repo {
    Local(PathBuf),
    S3 {
        bucket: String,
        rt: tokio::runtime::Runtime,
        client: aws_sdk_s3::Client,
    },
}

pub struct Set {
    pub dir: tempfile::TempDir,
    pub policies: PathBuf,
    pub spool: PathBuf,
    pub targets: PathBuf,
    pub scratch: PathBuf,
    pub repo: Repo,
    /// The content digest each backup must restore to, by backup id.
    pub expected: BTreeMap<String, String>,
    /// Backups already restored and compared (their bytes are then covered by verify).
    pub restored: BTreeSet<String>,
    /// Bytes of the `blob` file.
    pub blob_size: usize,
    /// Leftovers already reported.
    pub leftovers: BTreeSet<String>,
}

impl Set {
    /// Every source, to a local repository of 256 KiB parts.
    pub fn local() -> Set {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let body = local_repo(&repo).replace("1MiB", "256KiB");
        Set::with(
            dir,
            &body,
            Repo::Local(repo),
            &["app", "blob", "conf"],
            2 << 20,
        )
    }

    /// `blob` to a bucket on moto; it spans two 5 MiB parts, so a kill can leave a
    /// multipart upload open. (Every kind of source goes to the local repository; each
    /// S3 command costs a client start-up, so the S3 campaign keeps to one source.)
    pub fn s3() -> Set {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let bucket = moto::bucket_name("kill");
        let client = rt.block_on(async {
            let c = moto::client().await;
            moto::create_bucket(&c, &bucket).await;
            c
        });
        let body = s3_repo(&moto::endpoint(), &bucket);
        Set::with(
            dir,
            &body,
            Repo::S3 { bucket, rt, client },
            &["blob"],
            6 << 20,
        )
    }

    fn with(
        dir: tempfile::TempDir,
        repo_body: &str,
        repo: Repo,
        sources: &[&str],
        blob_size: usize,
    ) -> Set {
        let policies = dir.path().join("policies");
        let spool = dir.path().join("spool");
        let targets = dir.path().join("targets");
        let scratch = dir.path().join("scratch");
        for d in [&policies, &spool, &targets, &scratch] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::create_dir_all(policies.join("conf")).unwrap();
        let mut text = format!("[repositories.r]\n{repo_body}\n\n");
        for (name, kind) in SOURCES.into_iter().filter(|(n, _)| sources.contains(n)) {
            let what = match kind {
                Kind::Sqlite => "kind = \"sqlite\"\npath = \"app.db\"",
                Kind::File => "kind = \"file\"\npath = \"blob.bin\"",
                Kind::Files => "kind = \"files\"\npaths = [\"conf/\"]",
            };
            write!(
                text,
                "[sources.{name}]\n{what}\ndestinations = [\"r\"]\nretention = {{ keep-last = {KEEP_LAST} }}\n\n"
            )
            .unwrap();
        }
        std::fs::write(policies.join("lifeboat.toml"), text).unwrap();
        // Random payloads do not compress: the stored objects span many parts.
        common::make_db(&policies.join("app.db"), 1_500, 1_000);
        let set = Set {
            dir,
            policies,
            spool,
            targets,
            scratch,
            repo,
            expected: BTreeMap::new(),
            restored: BTreeSet::new(),
            blob_size,
            leftovers: BTreeSet::new(),
        };
        set.change_sources(0);
        set
    }

    pub fn source_path(&self, source: &str) -> PathBuf {
        match kind_of(source) {
            Kind::Sqlite => self.policies.join("app.db"),
            Kind::File => self.policies.join("blob.bin"),
            Kind::Files => self.policies.join("conf"),
        }
    }

    /// The binary with this set's policies and spool, and no test overrides.
    pub fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"));
        c.arg("--policies")
            .arg(&self.policies)
            .env_remove("LIFEBOAT_POLICIES")
            .env_remove("LIFEBOAT_FAILPOINT")
            .env_remove("LIFEBOAT_NOW")
            .env("LIFEBOAT_SPOOL_DIR", &self.spool);
        c
    }

    /// Run `lifeboat ARGS` to its end (bounded, so a hang fails instead of blocking).
    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = assert_cmd::Command::from_std(self.command());
        c.args(args).timeout(Duration::from_secs(180));
        c.output().unwrap()
    }

    /// Run `lifeboat ARGS`, returning its duration; it must succeed.
    pub fn run_ok(&self, args: &[&str]) -> Duration {
        let t = Instant::now();
        let out = self.run(args);
        assert!(
            out.status.success(),
            "lifeboat {}: {}{}",
            args.join(" "),
            stdout(&out),
            stderr(&out)
        );
        t.elapsed()
    }

    /// Start `lifeboat ARGS` and SIGKILL it after `delay`, unless it ends first.
    pub fn run_killed(&self, args: &[&str], delay: Duration) -> Fate {
        let mut c = self.command();
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let started = Instant::now();
        let mut child = c.spawn().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Fate::Finished(status.code());
            }
            let elapsed = started.elapsed();
            if elapsed >= delay {
                // SIGKILL: no handler, no clean-up, as a power cut or the OOM killer.
                child.kill().unwrap();
                let status = child.wait().unwrap();
                return if status.code().is_some() {
                    Fate::Finished(status.code())
                } else {
                    Fate::Killed
                };
            }
            // The kill timer itself: the child is never waited on by time.
            std::thread::sleep((delay - elapsed).min(Duration::from_millis(1)));
        }
    }

    /// Change every source, so that each trial's backups hold content of their own.
    pub fn change_sources(&self, trial: usize) {
        let conn = Connection::open(self.policies.join("app.db")).unwrap();
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        conn.execute(
            "INSERT INTO users (name) VALUES (?1)",
            [format!("trial-{trial}")],
        )
        .unwrap();
        drop(conn);
        let mut blob = noise(self.blob_size, trial as u64);
        blob.extend_from_slice(format!("trial {trial}\n").as_bytes());
        std::fs::write(self.policies.join("blob.bin"), blob).unwrap();
        let conf = self.policies.join("conf");
        std::fs::create_dir_all(conf.join("nested")).unwrap();
        for i in 0..12 {
            std::fs::write(
                conf.join("nested").join(format!("values-{i}.yaml")),
                noise(32 << 10, (trial * 100 + i) as u64),
            )
            .unwrap();
        }
        std::fs::write(conf.join("trial.txt"), format!("trial {trial}\n")).unwrap();
    }

    /// The content digest of a source as it is now.
    pub fn source_digest(&self, source: &str) -> String {
        digest(kind_of(source), &self.source_path(source), false)
            .unwrap_or_else(|e| panic!("source {source}: {e}"))
    }

    /// Note the content every newly listed backup was taken from: call it while the
    /// sources still hold what those backups read.
    pub fn adopt(&mut self, listed: &[Value]) {
        for b in listed {
            let id = b["backup-id"].as_str().unwrap().to_string();
            if !self.expected.contains_key(&id) {
                let d = self.source_digest(b["source"].as_str().unwrap());
                self.expected.insert(id, d);
            }
        }
    }

    /// `list --json` (with `--catalog FILE` when given).
    pub fn list(&self, catalog: Option<&Path>) -> Result<Vec<Value>, String> {
        let mut args: Vec<String> = Vec::new();
        if let Some(c) = catalog {
            args.extend(["--catalog".into(), c.display().to_string()]);
        }
        args.extend(["--json".into(), "list".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run(&args);
        if !out.status.success() {
            return Err(format!(
                "list exited {:?}: {}",
                out.status.code(),
                stderr(&out)
            ));
        }
        serde_json::from_slice::<Value>(&out.stdout)
            .map_err(|e| format!("list printed no JSON ({e}): {}", stdout(&out)))
            .map(|v| v.as_array().cloned().unwrap_or_default())
    }

    /// The objects of the repository: key (relative to its root) -> size.
    pub fn objects(&self) -> BTreeMap<String, u64> {
        match &self.repo {
            Repo::Local(root) => files_under(root)
                .into_iter()
                .map(|p| {
                    let key = p.strip_prefix(root).unwrap().display().to_string();
                    (key, std::fs::metadata(&p).unwrap().len())
                })
                .collect(),
            Repo::S3 { bucket, rt, client } => rt.block_on(async {
                let mut out = BTreeMap::new();
                let mut token = None;
                loop {
                    let page = client
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix("backups/")
                        .set_continuation_token(token)
                        .send()
                        .await
                        .unwrap();
                    for o in page.contents() {
                        let key = o.key().unwrap().trim_start_matches("backups/").to_string();
                        out.insert(key, o.size().unwrap_or(0) as u64);
                    }
                    token = page.next_continuation_token().map(str::to_string);
                    if token.is_none() {
                        return out;
                    }
                }
            }),
        }
    }

    pub fn read_object(&self, key: &str) -> Vec<u8> {
        match &self.repo {
            Repo::Local(root) => std::fs::read(root.join(key)).unwrap(),
            Repo::S3 { bucket, rt, client } => rt.block_on(async {
                client
                    .get_object()
                    .bucket(bucket)
                    .key(format!("backups/{key}"))
                    .send()
                    .await
                    .unwrap()
                    .body
                    .collect()
                    .await
                    .unwrap()
                    .into_bytes()
                    .to_vec()
            }),
        }
    }

    /// Restore `source`'s backup `id` into `target` (replacing what is there).
    pub fn restore_args<'a>(source: &'a str, id: &'a str, target: &'a str) -> [&'a str; 7] {
        ["restore", source, "--backup", id, "--force", "--to", target]
    }

    /// Where a scratch restore of `source` goes.
    pub fn scratch_target(&self, source: &str) -> PathBuf {
        match kind_of(source) {
            Kind::Sqlite => self.scratch.join("app.db"),
            Kind::File => self.scratch.join("blob.bin"),
            Kind::Files => self.scratch.join("conf"),
        }
    }

    /// The checks of a repository after a kill: see the module doc. Each broken
    /// promise is one violation of `trial`.
    /// Call it while the sources hold what the trial's backups read: the backups it
    /// lists first are adopted with the sources' content.
    pub fn check_repository(&mut self, c: &mut Campaign, trial: usize) {
        let listed = match self.list(None) {
            Ok(l) => l,
            Err(e) => return c.fail(trial, "list", e),
        };
        self.adopt(&listed);
        if !listed.is_empty() {
            let out = self.run(&["verify", "--all"]);
            c.check(
                trial,
                out.status.success(),
                "every listed backup verifies",
                format_args!(
                    "verify --all exited {:?}: {}{}",
                    out.status.code(),
                    stdout(&out),
                    stderr(&out)
                ),
            );
        }
        // Listed again: verification changed what the catalog knows.
        let listed = match self.list(None) {
            Ok(l) => l,
            Err(e) => return c.fail(trial, "list after verify", e),
        };
        // Each backup is restored once, when first listed; verify covers it after that.
        for b in &listed {
            let id = b["backup-id"].as_str().unwrap().to_string();
            let source = b["source"].as_str().unwrap().to_string();
            if self.restored.contains(&id) {
                continue;
            }
            self.restored.insert(id.clone());
            let target = self.scratch_target(&source);
            let t = target.display().to_string();
            let out = self.run(&Set::restore_args(&source, &id, &t));
            if !out.status.success() {
                c.fail(
                    trial,
                    "every listed backup restores",
                    format_args!(
                        "restore {source} {id} exited {:?}: {}",
                        out.status.code(),
                        stderr(&out)
                    ),
                );
                continue;
            }
            let got = digest(kind_of(&source), &target, true);
            let want = self.expected.get(&id).cloned();
            c.check(
                trial,
                got.as_ref().ok() == want.as_ref(),
                "a listed backup restores the content it was taken from",
                format_args!("{source} {id}: restored {got:?}, taken from {want:?}"),
            );
        }
        let leftovers = hidden_lifeboat_entries(&self.scratch);
        c.check(
            trial,
            leftovers.is_empty(),
            "no staging leftovers after a restore",
            format_args!("{leftovers:?}"),
        );
        self.check_manifests(c, trial, &listed);
        self.check_rebuild(c, trial, &listed);
    }

    /// No manifest without its complete data object, and none left out of the listing.
    pub fn check_manifests(&self, c: &mut Campaign, trial: usize, listed: &[Value]) {
        let objects = self.objects();
        let listed: BTreeSet<(String, String)> = listed.iter().map(key_of).collect();
        for key in objects.keys().filter(|k| k.ends_with("/manifest.json")) {
            let mut parts = key.split('/');
            let (Some(source), Some(id)) = (parts.next(), parts.next()) else {
                continue;
            };
            let manifest: Value = match serde_json::from_slice(&self.read_object(key)) {
                Ok(m) => m,
                Err(e) => {
                    c.fail(trial, "every manifest is whole", format_args!("{key}: {e}"));
                    continue;
                }
            };
            // Sealed: the manifest proper is the envelope's body.
            let stored = manifest["body"]["stored"]["size"].as_u64();
            let data = objects.get(&format!("{source}/{id}/data")).copied();
            c.check(
                trial,
                stored.is_some() && stored == data,
                "no manifest without complete data",
                format_args!(
                    "{key}: the manifest says {stored:?} bytes, the data object holds {data:?}"
                ),
            );
            c.check(
                trial,
                listed.contains(&(source.to_string(), id.to_string())),
                "every manifest in the repository is listed",
                key,
            );
        }
    }

    /// `catalog rebuild` in place and into a fresh catalog (a new host) lists the same
    /// backups, verification state included.
    pub fn check_rebuild(&self, c: &mut Campaign, trial: usize, listed: &[Value]) {
        let before: BTreeSet<String> = listed.iter().map(summary).collect();
        let out = self.run(&["catalog", "rebuild"]);
        if !out.status.success() {
            return c.fail(
                trial,
                "catalog rebuild succeeds",
                format_args!("exit {:?}: {}", out.status.code(), stderr(&out)),
            );
        }
        let fresh = self.dir.path().join("fresh-catalog.db");
        let _ = std::fs::remove_file(&fresh);
        let f = fresh.display().to_string();
        let out = self.run(&["--catalog", &f, "catalog", "rebuild"]);
        if !out.status.success() {
            return c.fail(
                trial,
                "catalog rebuild into a fresh catalog succeeds",
                format_args!("exit {:?}: {}", out.status.code(), stderr(&out)),
            );
        }
        for (what, catalog) in [("in place", None), ("fresh", Some(fresh.as_path()))] {
            match self.list(catalog) {
                Ok(after) => {
                    let after: BTreeSet<String> = after.iter().map(summary).collect();
                    c.check(
                        trial,
                        after == before,
                        "catalog rebuild agrees with the catalog",
                        format_args!(
                            "{what}: only before {:?}, only after {:?}",
                            before.difference(&after).collect::<Vec<_>>(),
                            after.difference(&before).collect::<Vec<_>>()
                        ),
                    );
                }
                Err(e) => c.fail(
                    trial,
                    "list after catalog rebuild",
                    format_args!("{what}: {e}"),
                ),
            }
        }
        let _ = std::fs::remove_file(&fresh);
    }

    /// Staging leftovers beside the sources, the targets and in the spool folder.
    /// A leftover is reported by the trial that left it; later trials report only
    /// new ones, so the count of violations is the count of trials that left some.
    pub fn check_no_leftovers(&mut self, c: &mut Campaign, trial: usize, after: &str) {
        let mut found = hidden_lifeboat_entries(&self.targets);
        found.extend(hidden_lifeboat_entries(&self.scratch));
        found.extend(hidden_lifeboat_entries(&self.policies));
        found.extend(hidden_lifeboat_entries(&self.policies.join("conf")));
        let found = self.not_seen(found);
        c.check(
            trial,
            found.is_empty(),
            "no staging leftovers after the next run",
            format_args!("after {after}: {found:?}"),
        );
        let spooled = files_under(&self.spool)
            .iter()
            .map(|p| {
                format!(
                    "{} ({} bytes)",
                    p.display(),
                    std::fs::metadata(p).map_or(0, |m| m.len())
                )
            })
            .collect();
        let spooled = self.not_seen(spooled);
        c.check(
            trial,
            spooled.is_empty(),
            "no spool leftovers after the next run",
            format_args!("after {after}: {spooled:?}"),
        );
    }

    fn not_seen(&mut self, found: Vec<String>) -> Vec<String> {
        found
            .into_iter()
            .filter(|f| self.leftovers.insert(f.clone()))
            .collect()
    }

    /// Housekeeping between backup trials (never killed): keeps the listing short. The
    /// repository checks verified every backup, so prune has verified ones to count on.
    pub fn prune_between_trials(&self, c: &mut Campaign, trial: usize) {
        let out = self.run(&["prune"]);
        c.check(
            trial,
            out.status.success(),
            "prune between trials",
            format_args!("{}{}", stdout(&out), stderr(&out)),
        );
    }
}

/// (source, backup id) of a listed backup.
pub fn key_of(b: &Value) -> (String, String) {
    (
        b["source"].as_str().unwrap_or_default().to_string(),
        b["backup-id"].as_str().unwrap_or_default().to_string(),
    )
}

/// What must survive a catalog rebuild of a listed backup.
pub fn summary(b: &Value) -> String {
    format!(
        "{} {} {} {} verified={}",
        b["source"], b["backup-id"], b["repository"], b["stored-sha256"], b["verified"]
    )
}

/// Deterministic bytes that do not compress (xorshift), different per `salt`.
pub fn noise(len: usize, salt: u64) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ salt.wrapping_mul(0x2545_F491_4F6C_DD1D);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A digest of what a user sees in `path`: the rows of a SQLite database, the bytes of
/// a file, the names and bytes of a folder's files. `Err` when it cannot be read whole.
pub fn digest(kind: Kind, path: &Path, restored: bool) -> Result<String, String> {
    match kind {
        Kind::Sqlite => sqlite_digest(path, restored),
        Kind::File => {
            if path.is_file() {
                Ok(sha256_file(path))
            } else {
                Err(format!("{} is missing", path.display()))
            }
        }
        Kind::Files => {
            if !path.is_dir() {
                return Err(format!("{} is missing", path.display()));
            }
            // A restored folder holds the archive's names, which start at the set's
            // own folder (`conf/...`); the source's are taken relative to its parent.
            let root = if restored {
                path.to_path_buf()
            } else {
                path.parent().unwrap().to_path_buf()
            };
            let mut h = Sha256::new();
            let mut names: Vec<(String, String)> = files_under(path)
                .iter()
                .map(|f| {
                    (
                        f.strip_prefix(&root).unwrap().display().to_string(),
                        sha256_file(f),
                    )
                })
                .collect();
            names.sort();
            for (n, s) in names {
                h.update(format!("{n} {s}\n"));
            }
            Ok(hex::encode(h.finalize()))
        }
    }
}

/// Rows of `users` and `events`, after an integrity check. A restored copy is opened
/// immutable, so reading it writes nothing beside it.
pub fn sqlite_digest(path: &Path, restored: bool) -> Result<String, String> {
    if !path.is_file() {
        return Err(format!("{} is missing", path.display()));
    }
    let conn = if restored {
        Connection::open_with_flags(
            format!("file:{}?immutable=1", path.display()),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
        )
    } else {
        Connection::open(path)
    }
    .map_err(|e| format!("{}: {e}", path.display()))?;
    let q = |sql: &str, h: &mut Sha256| -> rusqlite::Result<()> {
        let mut stmt = conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            h.update(r.get::<_, i64>(0)?.to_le_bytes());
            match r.get_ref(1)? {
                rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                    h.update((t.len() as u64).to_le_bytes());
                    h.update(t);
                }
                other => h.update(format!("{other:?}")),
            }
        }
        Ok(())
    };
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if check != "ok" {
        return Err(format!("{}: integrity check: {check}", path.display()));
    }
    let mut h = Sha256::new();
    q("SELECT id, name FROM users ORDER BY id", &mut h)
        .and_then(|()| q("SELECT id, payload FROM events ORDER BY id", &mut h))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(hex::encode(h.finalize()))
}

/// Hidden entries of `dir` whose names mention lifeboat (staging copies, moved-aside
/// old folders), the policy set's own `.lifeboat` folder aside.
pub fn hidden_lifeboat_entries(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.contains("lifeboat") && n != ".lifeboat")
        .map(|n| dir.join(n).display().to_string())
        .collect();
    out.sort();
    out
}
