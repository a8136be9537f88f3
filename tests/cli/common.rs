//! Shared set-up for the black-box tests: a temporary policy set with one SQLite source
//! and a local repository, and helpers to drive the real `lifeboat` binary.

pub use crate::util::{sha256_file, stderr, stdout};
use assert_cmd::Command;
use rusqlite::Connection;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct Env {
    pub dir: tempfile::TempDir,
    pub policies: PathBuf,
    pub db: PathBuf,
    pub repo: PathBuf,
}

impl Env {
    /// A set with source `app` (sqlite, `db`) -> repository `local` (part size `part`).
    pub fn new(part: &str, retention: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        let db = dir.path().join("app.db");
        let repo = dir.path().join("repo");
        std::fs::write(
            policies.join("lifeboat.toml"),
            format!(
                r#"
[repositories.local]
url = "file://{repo}"
part-size = "{part}"

[sources.app]
kind = "sqlite"
path = "{db}"
schedule = "@hourly"
rpo = "1h"
destinations = ["local"]
retention = {{ {retention} }}
"#,
                repo = repo.display(),
                db = db.display()
            ),
        )
        .unwrap();
        Env {
            dir,
            policies,
            db,
            repo,
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("lifeboat").unwrap();
        c.arg("--policies")
            .arg(&self.policies)
            .env_remove("LIFEBOAT_POLICIES")
            .env_remove("LIFEBOAT_FAILPOINT")
            .env_remove("LIFEBOAT_NOW")
            .env("LIFEBOAT_SPOOL_DIR", self.dir.path().join("spool"));
        c
    }

    /// Run a backup of `app` that must succeed; returns the backup id.
    pub fn backup(&self) -> String {
        let out = self
            .cmd()
            .args(["--json", "backup", "app"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "backup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["backups"][0]["backup-id"].as_str().unwrap().to_string()
    }

    /// Run a backup of `app` with the clock pinned to `when`, which must succeed;
    /// returns its JSON report.
    pub fn backup_json_at(&self, when: &str) -> Value {
        let out = self
            .cmd()
            .env("LIFEBOAT_NOW", when)
            .args(["--json", "backup", "app"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn list(&self) -> Vec<Value> {
        let out = self.cmd().args(["--json", "list"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn list_ids(&self) -> Vec<String> {
        self.list()
            .iter()
            .map(|b| b["backup-id"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn object(&self, id: &str, name: &str) -> PathBuf {
        self.repo.join("app").join(id).join(name)
    }

    /// Every file under the repository (hidden ones too), with its SHA-256.
    pub fn repo_files(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        walk(&self.repo, &self.repo, &mut out);
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            out.insert(rel, sha256_file(&p));
        }
    }
}

/// Flip one bit of the byte at `offset` (from the middle when `None`).
pub fn flip_byte(p: &Path, offset: Option<usize>) {
    let mut bytes = std::fs::read(p).unwrap();
    let i = offset.unwrap_or(bytes.len() / 2);
    bytes[i] ^= 0x01;
    std::fs::write(p, bytes).unwrap();
}

/// A database with `rows` rows of `payload` random bytes in table `events`, plus a
/// small `users` table.
pub fn make_db(path: &Path, rows: u32, payload: u32) {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, payload BLOB NOT NULL);
         CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         INSERT INTO users (name) VALUES ('ada'), ('grace'), ('linus');",
    )
    .unwrap();
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO events (payload) SELECT randomblob(?2) FROM n",
        [rows, payload],
    )
    .unwrap();
}

pub fn count(path: &Path, table: &str) -> u64 {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .unwrap();
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap() as u64
}

pub fn integrity_ok(path: &Path) -> bool {
    let conn = Connection::open(path).unwrap();
    let s: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    s == "ok"
}
