//! A policy set with one Neo4j source, a local repository, the stand-ins' shared state
//! and log, and the stand-in HTTP endpoint, driven through the real `lifeboat` binary.

pub use crate::util::{stderr, stdout};
use assert_cmd::Command;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};

/// A password distinctive enough that finding it anywhere is a leak.
pub const PASSWORD: &str = "Zq9-neo4j-S3CRET-x7-leakcheck";

/// The graph the stand-ins start with: per-label node and per-type relationship counts.
pub fn graph() -> Value {
    json!({"nodes": {"Person": 3, "City": 2}, "relationships": {"KNOWS": 4, "LIVES_IN": 3}})
}

/// A stand-in's path.
pub fn standin(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/neo4j")
        .join(name)
        .display()
        .to_string()
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub policies: PathBuf,
    pub repo: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
    pub port: u16,
    http: Child,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.http.kill();
        let _ = self.http.wait();
    }
}

impl Env {
    /// A running stand-in server holding [`graph`], and an empty policy set.
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        let state = dir.path().join("state.json");
        let log = dir.path().join("log.jsonl");
        std::fs::write(
            &state,
            json!({"server": "running", "online": true, "graph": graph()}).to_string(),
        )
        .unwrap();
        let mut http = std::process::Command::new("python3")
            .arg(standin("standin_neo4j_http.py"))
            .env("STANDIN_STATE", &state)
            .env("STANDIN_LOG", &log)
            .env("STANDIN_AUTH", format!("neo4j:{PASSWORD}"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the stand-in HTTP server");
        let mut line = String::new();
        BufReader::new(http.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the stand-in prints its port");
        Env {
            repo: dir.path().join("repo"),
            dir,
            policies,
            state,
            log,
            port,
            http,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Write the policy: the source `graph` with the connection, counts and the stand-in
    /// neo4j-admin, plus `extra` (mode and its keys).
    pub fn policy(&self, extra: &str) {
        let text = format!(
            "[repositories.local]\n{}\n\n[sources.graph]\nkind = \"neo4j\"\ndestinations = [\"local\"]\nhttp-url = \"{}\"\npassword-env = \"LIFEBOAT_TEST_NEO4J_PASSWORD\"\nneo4j-admin = \"{}\"\ncounts = {{ labels = [\"Person\", \"City\"], relationship-types = [\"KNOWS\"] }}\ncommand-timeout = \"30s\"\nstart-timeout = \"20s\"\n{extra}\n",
            crate::util::local_repo(&self.repo),
            self.url(),
            standin("standin_neo4j_admin.py"),
        );
        std::fs::write(self.policies.join("lifeboat.toml"), text).unwrap();
    }

    /// The offline-dump keys, with the stand-in stop and start.
    pub fn offline(&self) -> String {
        format!(
            "mode = \"offline-dump\"\nstop = [\"{0}\", \"stop\"]\nstart = [\"{0}\", \"start\"]",
            standin("standin_ctl.py")
        )
    }

    pub fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("lifeboat").unwrap();
        c.arg("--policies")
            .arg(&self.policies)
            .env_remove("LIFEBOAT_POLICIES")
            .env_remove("LIFEBOAT_FAILPOINT")
            .env_remove("LIFEBOAT_NOW")
            .env_remove("STANDIN_DUMP_FAIL")
            .env_remove("STANDIN_FAIL_STOP")
            .env_remove("STANDIN_FAIL_START")
            .env("LIFEBOAT_SPOOL_DIR", self.spool())
            .env("LIFEBOAT_TEST_NEO4J_PASSWORD", PASSWORD)
            .env("STANDIN_STATE", &self.state)
            .env("STANDIN_LOG", &self.log)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost");
        c
    }

    /// `lifeboat ARGS`, whatever its outcome; the password must appear in neither stream.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    /// As [`Env::run`], with extra environment variables.
    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd();
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.args(args).output().unwrap();
        for text in [stdout(&out), stderr(&out)] {
            assert!(!text.contains(PASSWORD), "the password leaked: {text}");
        }
        out
    }

    /// A backup that must succeed; returns its id.
    pub fn backup(&self) -> String {
        let out = self.run(&["--json", "backup", "graph"]);
        assert!(out.status.success(), "backup failed: {}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["backups"][0]["backup-id"].as_str().unwrap().to_string()
    }

    /// Every recorded invocation since the last [`Env::clear_log`].
    pub fn log(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The invocations, without the HTTP ones, as `who argv...` lines.
    pub fn commands(&self) -> Vec<String> {
        self.log()
            .iter()
            .filter(|e| e["who"] != "http")
            .map(|e| {
                let argv: Vec<&str> = e["argv"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect();
                format!("{} {}", e["who"].as_str().unwrap(), argv.join(" "))
            })
            .collect()
    }

    /// The statement lists of the HTTP requests to `path`.
    pub fn requests(&self, path: &str) -> Vec<Vec<String>> {
        self.log()
            .iter()
            .filter(|e| e["who"] == "http" && e["path"] == path)
            .map(|e| {
                assert_eq!(e["auth-ok"], true, "{e}");
                assert_eq!(e["content-type"], "application/json", "{e}");
                serde_json::from_value(e["statements"].clone()).unwrap()
            })
            .collect()
    }

    pub fn clear_log(&self) {
        let _ = std::fs::remove_file(&self.log);
    }

    pub fn state(&self) -> Value {
        serde_json::from_slice(&std::fs::read(&self.state).unwrap()).unwrap()
    }

    /// Change the shared state (as the database being written to would).
    pub fn set_state(&self, f: impl FnOnce(&mut Value)) {
        let mut s = self.state();
        f(&mut s);
        std::fs::write(&self.state, s.to_string()).unwrap();
    }

    /// The manifest body of backup `id`; it must not hold the password.
    pub fn manifest(&self, id: &str) -> Value {
        let text = std::fs::read_to_string(self.repo.join("graph").join(id).join("manifest.json"))
            .unwrap();
        assert!(
            !text.contains(PASSWORD),
            "the password leaked into the manifest"
        );
        let sealed: Value = serde_json::from_str(&text).unwrap();
        sealed["body"].clone()
    }

    /// Every manifest file in the repository.
    pub fn manifests(&self) -> Vec<PathBuf> {
        crate::util::files_under(&self.repo)
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n == "manifest.json"))
            .collect()
    }
}

/// The statements that count the graph of [`Env::policy`].
pub fn count_statements() -> Vec<String> {
    [
        "MATCH (n) RETURN count(n)",
        "MATCH ()-[r]->() RETURN count(r)",
        "MATCH (n:`Person`) RETURN count(n)",
        "MATCH (n:`City`) RETURN count(n)",
        "MATCH ()-[r:`KNOWS`]->() RETURN count(r)",
    ]
    .map(String::from)
    .to_vec()
}

/// The counts of [`graph`] as the manifest holds them.
pub fn expected_counts() -> Value {
    json!({"nodes": 5, "relationships": 7, "nodes.Person": 3, "nodes.City": 2, "relationships.KNOWS": 4})
}

/// The same graph after writes the backup does not hold.
pub fn changed_graph() -> Value {
    json!({"nodes": {"Person": 9, "City": 1}, "relationships": {"KNOWS": 1}})
}
