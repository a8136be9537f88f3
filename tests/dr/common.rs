//! A temporary policy set with the `hive` SQLite source (as the bizra set declares it),
//! a local repository, small scripts the command steps run, and the real binary.

pub use crate::util::{files_under, sha256_file, stderr, stdout};
use assert_cmd::Command;
use rusqlite::Connection;
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Appends its second argument as a line to the file named by its first.
const APPEND: &str =
    "import sys\nwith open(sys.argv[1], 'a') as f:\n    f.write(sys.argv[2] + '\\n')\n";
/// Creates the file named by its first argument, then waits for the second to appear.
const BARRIER: &str = "import os, sys, time\nopen(sys.argv[1], 'w').close()\nfor _ in range(400):\n    if os.path.exists(sys.argv[2]):\n        sys.exit(0)\n    time.sleep(0.025)\nsys.exit('the other step never arrived')\n";
/// Deletes one user from the SQLite database named by its first argument.
const TAMPER: &str = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.execute('DELETE FROM users WHERE id = (SELECT MIN(id) FROM users)')\nc.commit()\n";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub policies: PathBuf,
    pub db: PathBuf,
    pub repo: PathBuf,
    pub log: PathBuf,
}

impl Env {
    /// The set, with `hive` where the node runbook keeps it, `<set>/.hive-mind/hive.db`,
    /// holding `users`, `tasks`, `poi_records`.
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(policies.join("dr")).unwrap();
        std::fs::create_dir_all(policies.join(".hive-mind")).unwrap();
        let db = policies.join(".hive-mind").join("hive.db");
        let repo = dir.path().join("repo");
        std::fs::write(
            policies.join("bizra.toml"),
            format!(
                r#"
[repositories.local]
url = "file://{repo}"

[sources.hive]
kind = "sqlite"
path = ".hive-mind/hive.db"
schedule = "@hourly"
rpo = "1h"
destinations = ["local"]
"#,
                repo = repo.display()
            ),
        )
        .unwrap();
        for (name, text) in [
            ("append.py", APPEND),
            ("barrier.py", BARRIER),
            ("tamper.py", TAMPER),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        make_hive(&db);
        let log = dir.path().join("commands.log");
        Env {
            dir,
            policies,
            db,
            repo,
            log,
        }
    }

    pub fn script(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Write `dr/NAME.toml`.
    pub fn plan(&self, name: &str, text: &str) {
        std::fs::write(self.policies.join("dr").join(format!("{name}.toml")), text).unwrap();
    }

    /// The shipped node runbook, copied into this set.
    pub fn shipped_node_plan(&self) {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/bizra/dr/node0-sqlite.toml"),
        )
        .unwrap();
        self.plan("node0-sqlite", &text);
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("lifeboat").unwrap();
        c.arg("--policies")
            .arg(&self.policies)
            .env_remove("LIFEBOAT_POLICIES")
            .env_remove("LIFEBOAT_FAILPOINT")
            .env_remove("LIFEBOAT_NOW")
            .env("LIFEBOAT_SPOOL_DIR", self.dir.path().join("spool"))
            .timeout(std::time::Duration::from_secs(120));
        c
    }

    /// Back up `hive`; returns the backup id.
    pub fn backup(&self) -> String {
        let out = self
            .cmd()
            .args(["--json", "backup", "hive"])
            .output()
            .unwrap();
        assert!(out.status.success(), "backup failed: {}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["backups"][0]["backup-id"].as_str().unwrap().to_string()
    }

    /// Run `lifeboat --json ARGS`; returns the exit code and the JSON report.
    pub fn json(&self, args: &[&str]) -> (Option<i32>, Value, String) {
        let out = self.cmd().arg("--json").args(args).output().unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code(), v, stderr(&out))
    }

    /// Lines the command steps appended.
    pub fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Every file of the set's folder and the repository, with its hash (the catalog's
    /// own folder aside).
    pub fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        for root in [&self.policies, &self.repo] {
            for f in files_under(root) {
                if f.components().any(|c| c.as_os_str() == ".lifeboat") {
                    continue;
                }
                out.insert(f.clone(), sha256_file(&f));
            }
        }
        out
    }
}

/// The newest task was created ten minutes ago: the data point the RPO is measured by.
pub fn make_hive(path: &Path) {
    let newest = (chrono::Utc::now() - chrono::Duration::minutes(10))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let older = (chrono::Utc::now() - chrono::Duration::minutes(70))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT NOT NULL, created_at TEXT NOT NULL);
         CREATE TABLE poi_records (id INTEGER PRIMARY KEY, poi TEXT NOT NULL);
         INSERT INTO users (name) VALUES ('ada'), ('grace'), ('linus');
         INSERT INTO poi_records (poi) VALUES ('x'), ('y'), ('z'), ('w');",
    )
    .unwrap();
    conn.execute(
        "INSERT INTO tasks (title, created_at) VALUES ('a', ?1), ('b', ?2)",
        [older, newest],
    )
    .unwrap();
}

pub fn inode(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

pub fn count(path: &Path, table: &str) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// The step `id` of a report.
pub fn step<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {report:#}"))
}
