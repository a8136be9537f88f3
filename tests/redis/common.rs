//! A policy set with redis sources and chosen repositories, and helpers to drive the
//! real `lifeboat` binary.

pub use crate::util::{files_under, local_repo, s3_repo, stderr, stdout};
use assert_cmd::Command;
use serde_json::Value;
use std::path::PathBuf;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub policies: PathBuf,
}

/// One `[sources.NAME]` of kind redis: `extra` is more TOML lines for it.
pub struct Source<'a> {
    pub name: &'a str,
    pub url: String,
    pub extra: String,
    pub destinations: &'a [&'a str],
}

/// `repos`: (name, TOML body) pairs.
pub fn env(repos: &[(&str, String)], sources: &[Source<'_>]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let mut text = String::new();
    for (name, body) in repos {
        text.push_str(&format!("[repositories.{name}]\n{body}\n\n"));
    }
    for s in sources {
        let dests: Vec<String> = s.destinations.iter().map(|d| format!("\"{d}\"")).collect();
        text.push_str(&format!(
            "[sources.{}]\nkind = \"redis\"\nurl = \"{}\"\ndestinations = [{}]\nretention = {{ keep-last = 5 }}\n{}\n\n",
            s.name,
            s.url,
            dests.join(", "),
            s.extra
        ));
    }
    std::fs::write(policies.join("lifeboat.toml"), text).unwrap();
    Env { dir, policies }
}

impl Env {
    pub fn cmd(&self) -> Command {
        Command::from_std(self.std_cmd())
    }

    /// A plain `std` command, for runs that are watched while they go on.
    pub fn std_cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"));
        self.prepare(&mut c);
        c
    }

    fn prepare(&self, c: &mut std::process::Command) {
        c.arg("--policies")
            .arg(&self.policies)
            .env_remove("LIFEBOAT_POLICIES")
            .env_remove("LIFEBOAT_FAILPOINT")
            .env_remove("LIFEBOAT_NOW")
            .env_remove("REDISCLI_AUTH")
            .env("LIFEBOAT_SPOOL_DIR", self.spool());
    }

    pub fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    /// Back up `source`; must succeed. Returns the backup report.
    pub fn backup(&self, source: &str) -> Value {
        let out = self
            .cmd()
            .args(["--json", "backup", source])
            .output()
            .unwrap();
        assert!(out.status.success(), "backup failed: {}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["backups"][0].clone()
    }

    pub fn list(&self) -> Vec<Value> {
        let out = self.cmd().args(["--json", "list"]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

/// The counts of a backup report or catalog row, as name -> number.
pub fn counts(v: &Value) -> std::collections::BTreeMap<String, u64> {
    v["counts"]
        .as_object()
        .unwrap_or_else(|| panic!("no counts in {v}"))
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect()
}
