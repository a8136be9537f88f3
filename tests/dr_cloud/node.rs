//! The shipped node runbook (`node0-sqlite`) run for real on a real SQLite file, with
//! the kubectl STAND-IN (`standin_helm.py` under the name `kubectl`, first in `PATH`)
//! holding the runbook's deployment: `bizra-apex` in `bizra-testnet`, three replicas.
//! Also `dr rollback`'s confirmation, on a plan that creates its restore target.

use crate::util::stderr;
use assert_cmd::Command;
use rusqlite::Connection;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub struct NodeEnv {
    pub dir: tempfile::TempDir,
    pub policies: PathBuf,
    pub db: PathBuf,
    pub bin: PathBuf,
}

/// The node's hive database: 3 users, 2 tasks, 4 POI records.
fn make_hive(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT NOT NULL, created_at TEXT NOT NULL);
         CREATE TABLE poi_records (id INTEGER PRIMARY KEY, poi TEXT NOT NULL);
         INSERT INTO users (name) VALUES ('ada'), ('grace'), ('linus');
         INSERT INTO tasks (title, created_at) VALUES ('a', datetime('now', '-70 minutes')),
                                                      ('b', datetime('now', '-10 minutes'));
         INSERT INTO poi_records (poi) VALUES ('x'), ('y'), ('z'), ('w');",
    )
    .unwrap();
}

impl NodeEnv {
    /// A set declaring `hive` where the runbook keeps it, the shipped node plan, and the
    /// stand-in kubectl with `bizra-testnet/bizra-apex` at `replicas`.
    pub fn new(replicas: u32) -> NodeEnv {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(policies.join("dr")).unwrap();
        std::fs::create_dir_all(policies.join(".hive-mind")).unwrap();
        let db = policies.join(".hive-mind/hive.db");
        make_hive(&db);
        std::fs::write(
            policies.join("lifeboat.toml"),
            format!(
                "[repositories.local]\n{}\n\n[sources.hive]\nkind = \"sqlite\"\npath = \".hive-mind/hive.db\"\ndestinations = [\"local\"]\n",
                crate::util::local_repo(&dir.path().join("repo"))
            ),
        )
        .unwrap();
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/bizra/dr/node0-sqlite.toml"),
        )
        .unwrap();
        std::fs::write(policies.join("dr/node0-sqlite.toml"), shipped).unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dr_cloud/standin_helm.py");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::copy(&script, bin.join("kubectl")).unwrap();
            std::fs::set_permissions(bin.join("kubectl"), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        std::fs::write(
            bin.join("state.json"),
            format!(r#"{{"_deployments": {{"bizra-testnet/bizra-apex": {replicas}}}}}"#),
        )
        .unwrap();
        NodeEnv {
            dir,
            policies,
            db,
            bin,
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("lifeboat").unwrap();
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.arg("--policies")
            .arg(&self.policies)
            .env_remove("LIFEBOAT_POLICIES")
            .env_remove("LIFEBOAT_FAILPOINT")
            .env_remove("LIFEBOAT_NOW")
            .env("PATH", path)
            .env("LIFEBOAT_SPOOL_DIR", self.dir.path().join("spool"))
            .timeout(std::time::Duration::from_secs(120));
        c
    }

    pub fn json(&self, args: &[&str]) -> (Option<i32>, Value, String) {
        let out = self.cmd().arg("--json").args(args).output().unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code(), v, stderr(&out))
    }

    pub fn backup(&self) {
        let out = self.cmd().args(["backup", "hive"]).output().unwrap();
        assert!(out.status.success(), "backup: {}", stderr(&out));
    }

    /// The replica count the stand-in holds for the runbook's deployment.
    pub fn replicas(&self) -> u64 {
        let state: Value =
            serde_json::from_str(&std::fs::read_to_string(self.bin.join("state.json")).unwrap())
                .unwrap();
        state["_deployments"]["bizra-testnet/bizra-apex"]
            .as_u64()
            .unwrap()
    }

    /// The stand-in's calls, one argv per entry, the program's path cut to its name.
    pub fn calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.bin.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn step<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {report:#}"))
}

const GET: &[&str] = &[
    "kubectl",
    "get",
    "deployment",
    "bizra-apex",
    "--namespace",
    "bizra-testnet",
    "-o",
    "jsonpath={.spec.replicas}",
];

fn scale_to(n: u32) -> Vec<String> {
    argv(&[
        "kubectl",
        "scale",
        "deployment/bizra-apex",
        "--namespace",
        "bizra-testnet",
        &format!("--replicas={n}"),
    ])
}

#[test]
fn the_node_plan_scales_back_to_the_replicas_it_found() {
    let env = NodeEnv::new(3);
    env.backup();
    let (code, r, err) = env.json(&["dr", "run", "node0-sqlite"]);
    assert_eq!(code, Some(0), "{err}\n{r:#}");
    // The runbook's database was restored in place and checked.
    assert_eq!(
        step(&r, "restore-hive")["outputs"]["target"],
        env.db.display().to_string()
    );
    assert_eq!(step(&r, "integrity")["outputs"]["users"], "3");
    // Found 3, scaled to 0, and back to exactly 3; the count was checkpointed with the
    // scale-down's effect before anything changed.
    assert_eq!(
        env.calls(),
        vec![argv(GET), scale_to(0), argv(GET), scale_to(3)],
        "{r:#}"
    );
    let down = step(&r, "scale-down");
    assert_eq!(down["effect"]["scale"]["replicas-before"], 3, "{down:#}");
    assert_eq!(down["outputs"]["replicas-before"], "3");
    assert_eq!(step(&r, "scale-up")["outputs"]["replicas"], "3");
    assert_eq!(env.replicas(), 3);
}

#[test]
fn a_rolled_back_node_run_restores_the_replicas_it_found() {
    let env = NodeEnv::new(3);
    env.backup();
    // The integrity check fails (no such floor is met): the run rolls back.
    let plan = std::fs::read_to_string(env.policies.join("dr/node0-sqlite.toml"))
        .unwrap()
        .replace(
            "[steps.queries]",
            "[steps.min]\nusers = 1000\n\n[steps.queries]",
        );
    std::fs::write(env.policies.join("dr/node0-sqlite.toml"), plan).unwrap();
    let (code, r, err) = env.json(&["dr", "run", "node0-sqlite"]);
    assert_eq!(code, Some(4), "{err}\n{r:#}");
    assert_eq!(step(&r, "integrity")["state"], "integrity-failed");
    assert_eq!(step(&r, "scale-down")["state"], "rolled-back");
    assert_eq!(
        env.calls(),
        vec![argv(GET), scale_to(0), scale_to(3)],
        "{r:#}"
    );
    assert_eq!(env.replicas(), 3);
}

#[test]
fn a_drill_of_the_node_plan_never_scales_the_deployment() {
    let env = NodeEnv::new(3);
    env.backup();
    let (code, r, err) = env.json(&["dr", "drill", "node0-sqlite"]);
    assert_eq!(code, Some(0), "{err}\n{r:#}");
    for s in ["scale-down", "scale-up"] {
        assert_eq!(step(&r, s)["state"], "skipped", "{r:#}");
    }
    assert_eq!(env.calls(), Vec::<Vec<String>>::new());
}

/// A plan that restores hive into a target it creates: a rollback deletes that target.
fn creating_plan(env: &NodeEnv) -> PathBuf {
    let target = env.dir.path().join("failover/hive.db");
    std::fs::write(
        env.policies.join("dr/failover.toml"),
        format!(
            "name = \"failover\"\nrto = \"5m\"\nrpo = \"1h\"\n\n[[steps]]\nid = \"restore\"\nkind = \"restore\"\nsource = \"hive\"\ntarget = \"{}\"\n",
            target.display()
        ),
    )
    .unwrap();
    target
}

#[test]
fn rollback_of_a_finished_run_asks_for_yes_before_deleting_what_it_created() {
    let env = NodeEnv::new(3);
    env.backup();
    let target = creating_plan(&env);
    let (code, r, err) = env.json(&["dr", "run", "failover"]);
    assert_eq!(code, Some(0), "{err}\n{r:#}");
    let run = r["run-id"].as_str().unwrap().to_string();
    // Written to after the failover: a rollback would destroy this.
    Connection::open(&target)
        .unwrap()
        .execute(
            "INSERT INTO users (name) VALUES ('written-after-failover')",
            [],
        )
        .unwrap();

    // Without --yes: refused (exit 2), saying what would be deleted; nothing changes.
    let out = env.cmd().args(["dr", "rollback", &run]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains(&format!("delete {}", target.display())) && e.contains("--yes"),
        "{e}"
    );
    assert!(target.exists());

    // --dry-run lists it and changes nothing.
    let (code, v, err) = env.json(&["dr", "rollback", &run, "--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["undo"][0]["step"], "restore", "{v:#}");
    assert_eq!(v["undo"][0]["changes"], true, "{v:#}");
    assert!(
        v["undo"][0]["what"]
            .as_str()
            .unwrap()
            .starts_with(&format!("delete {}", target.display())),
        "{v:#}"
    );
    assert!(target.exists());
    let (_, s, _) = env.json(&["dr", "status", &run]);
    assert_eq!(s["status"], "succeeded");

    // With --yes it is done.
    let (code, v, err) = env.json(&["dr", "rollback", &run, "--yes"]);
    assert_eq!(code, Some(0), "{err}\n{v:#}");
    assert_eq!(v["status"], "rolled-back");
    assert!(!target.exists());
}
