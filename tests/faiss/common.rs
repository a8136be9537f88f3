//! A policy set with FAISS sources over real index files written by faiss-cpu
//! (tests/fixtures/make_faiss.py), and helpers to drive the real `lifeboat` binary.

pub use crate::util::{sha256_file, stderr, stdout};
use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// The index files make_faiss.py writes, and their type codes.
pub const INDEXES: &[(&str, &str)] = &[
    ("flat_l2.faiss", "IxF2"),
    ("ivf_flat.faiss", "IwFl"),
    ("hnsw_flat.faiss", "IHNf"),
    ("binary_flat.faiss", "IBxF"),
];
/// The sidecar it writes.
pub const SIDECAR: &str = "ids.json";

/// The Python that has faiss-cpu (scripts/peers/faiss.sh installs it).
pub fn python() -> PathBuf {
    std::env::var_os("LIFEBOAT_TEST_PYTHON").map(PathBuf::from).expect(
        "LIFEBOAT_TEST_PYTHON is not set: run the tests through scripts/test.sh, which installs faiss-cpu with scripts/peers/faiss.sh",
    )
}

fn fixture_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_faiss.py")
}

/// A make_faiss.py command, ready to run or spawn.
pub fn make_faiss_cmd(args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(python());
    c.arg(fixture_script()).args(args);
    c
}

/// Run make_faiss.py; its stdout is JSON.
pub fn make_faiss(args: &[&str]) -> Value {
    let out = make_faiss_cmd(args)
        .output()
        .expect("LIFEBOAT_TEST_PYTHON runs");
    assert!(
        out.status.success(),
        "make_faiss.py {args:?}: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("make_faiss.py prints JSON")
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub policies: PathBuf,
    /// The folder the indexes were written into.
    pub src: PathBuf,
    /// What faiss reported for each index: `indexes.NAME.{type,d,ntotal}`.
    pub facts: Value,
}

impl Env {
    /// Index files in `src/` and an empty policy set.
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        let src = dir.path().join("src");
        let facts = make_faiss(&["write", src.to_str().unwrap()]);
        Env {
            dir,
            policies,
            src,
            facts,
        }
    }

    /// Every file make_faiss.py wrote, indexes first.
    pub fn all_paths(&self) -> Vec<PathBuf> {
        INDEXES
            .iter()
            .map(|(n, _)| self.src.join(n))
            .chain([self.src.join(SIDECAR)])
            .collect()
    }

    /// Write the policy set: `repos` as (name, TOML body), and `sources` as (name, paths,
    /// extra TOML lines), each sent to every repository.
    pub fn policy(&self, repos: &[(&str, String)], sources: &[(&str, Vec<PathBuf>, &str)]) {
        let mut text = String::new();
        for (name, body) in repos {
            text.push_str(&format!("[repositories.{name}]\n{body}\n\n"));
        }
        let dests: Vec<String> = repos.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        for (name, paths, extra) in sources {
            let paths: Vec<String> = paths
                .iter()
                .map(|p| format!("{:?}", p.display().to_string()))
                .collect();
            text.push_str(&format!(
                "[sources.{name}]\nkind = \"faiss\"\npaths = [{}]\ndestinations = [{}]\nretention = {{ keep-last = 3 }}\n{extra}\n\n",
                paths.join(", "),
                dests.join(", ")
            ));
        }
        std::fs::write(self.policies.join("lifeboat.toml"), text).unwrap();
    }

    pub fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    /// True when no spool file was left behind (the folder may not exist at all).
    pub fn spool_is_empty(&self) -> bool {
        std::fs::read_dir(self.spool()).map_or(true, |mut d| d.next().is_none())
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("lifeboat").unwrap();
        c.arg("--policies")
            .arg(&self.policies)
            .env_remove("LIFEBOAT_POLICIES")
            .env_remove("LIFEBOAT_FAILPOINT")
            .env_remove("LIFEBOAT_NOW")
            .env("LIFEBOAT_SPOOL_DIR", self.spool());
        c
    }

    /// `lifeboat ARGS`, whatever its outcome.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// A backup of `source` that must succeed; returns its id.
    pub fn backup(&self, source: &str) -> String {
        let out = self.run(&["--json", "backup", source]);
        assert!(out.status.success(), "backup failed: {}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["backups"][0]["backup-id"].as_str().unwrap().to_string()
    }

    /// `lifeboat --json list`.
    pub fn list(&self) -> Vec<Value> {
        let out = self.run(&["--json", "list"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// What faiss reported for index `name`.
    pub fn fact(&self, name: &str, key: &str) -> u64 {
        self.facts["indexes"][name][key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key} for {name} in {}", self.facts))
    }
}

/// The manifest body of backup `id` of `source` in the local repository at `repo`.
pub fn local_manifest(repo: &Path, source: &str, id: &str) -> Value {
    let text = std::fs::read(repo.join(source).join(id).join("manifest.json")).unwrap();
    let sealed: Value = serde_json::from_slice(&text).unwrap();
    sealed["body"].clone()
}

/// Every `manifest.json` under `dir`.
pub fn manifests_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(manifests_under(&p));
        } else if p.file_name().is_some_and(|n| n == "manifest.json") {
            out.push(p);
        }
    }
    out
}
