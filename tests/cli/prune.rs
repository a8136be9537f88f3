//! Prune on a known history: the plan, dry-run leaving the repository as it was, the
//! newest backup always surviving, and never a source left without a verified backup.

use crate::common::*;
use serde_json::Value;

fn backup_at(env: &Env, when: &str) {
    env.cmd()
        .env("LIFEBOAT_NOW", when)
        .args(["backup", "app"])
        .assert()
        .success();
}

/// Read every backup back in full, so retention rules decide (prune deletes nothing
/// while no backup is verified).
fn verify_all(env: &Env) {
    env.cmd().args(["verify", "--all"]).assert().success();
}

fn started(env: &Env) -> Vec<String> {
    env.list()
        .iter()
        .map(|b| b["started-at"].as_str().unwrap().to_string())
        .collect()
}

fn plan_text(plan: &Value) -> String {
    plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{} {} {}",
                i["time"].as_str().unwrap(),
                if i["keep"].as_bool().unwrap() {
                    "keep  "
                } else {
                    "DELETE"
                },
                i["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn prune_plan_on_a_known_history() {
    let env = Env::new(
        "64KiB",
        r#"keep-last = 2, keep-daily = 3, keep-within = "1d""#,
    );
    make_db(&env.db, 50, 10);
    for when in [
        "2026-11-10T03:00:00Z",
        "2026-11-11T03:00:00Z",
        "2026-11-11T15:00:00Z",
        "2026-11-12T03:00:00Z",
        "2026-11-13T03:00:00Z",
        "2026-11-13T09:00:00Z",
    ] {
        backup_at(&env, when);
    }
    verify_all(&env);
    let before = env.repo_files();
    let out = env
        .cmd()
        .env("LIFEBOAT_NOW", "2026-11-14T00:00:00Z")
        .args(["--json", "prune", "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    insta::assert_snapshot!(plan_text(&plan));
    assert_eq!(env.repo_files(), before, "--dry-run changed the repository");
    assert_eq!(env.list_ids().len(), 6);

    env.cmd()
        .env("LIFEBOAT_NOW", "2026-11-14T00:00:00Z")
        .arg("prune")
        .assert()
        .success();
    let kept: Vec<String> = env
        .list()
        .iter()
        .map(|b| b["started-at"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kept,
        vec![
            "2026-11-13T09:00:00Z",
            "2026-11-13T03:00:00Z",
            "2026-11-12T03:00:00Z",
            "2026-11-11T15:00:00Z"
        ]
    );
    // Deleted backups are gone from storage entirely, manifest and data alike.
    let files = env.repo_files();
    assert!(!files.keys().any(|k| k.contains("20261110T")), "{files:?}");
}

#[test]
fn the_newest_backup_survives_even_when_no_rule_keeps_it() {
    let env = Env::new("64KiB", "keep-last = 0");
    make_db(&env.db, 50, 10);
    backup_at(&env, "2026-01-01T00:00:00Z");
    backup_at(&env, "2026-02-01T00:00:00Z");
    verify_all(&env);
    env.cmd().arg("prune").assert().success();
    assert_eq!(started(&env), vec!["2026-02-01T00:00:00Z"]);
}

#[test]
fn prune_never_leaves_a_source_without_a_verified_backup() {
    let env = Env::new("64KiB", "keep-last = 1");
    make_db(&env.db, 50, 10);
    for when in [
        "2026-01-01T00:00:00Z",
        "2026-02-01T00:00:00Z",
        "2026-03-01T00:00:00Z",
    ] {
        backup_at(&env, when);
    }
    let ids = env.list_ids();

    // Nothing verified yet: everything stays, and the plan says what to run.
    let out = env.cmd().arg("prune").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).matches("`lifeboat verify`").count(),
        3,
        "{}",
        stdout(&out)
    );
    assert_eq!(env.list_ids(), ids);

    // Only the oldest is verified: it stays beside the newest, the middle one goes.
    env.cmd().args(["verify", &ids[2]]).assert().success();
    let out = env.cmd().arg("prune").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        started(&env),
        vec!["2026-03-01T00:00:00Z", "2026-01-01T00:00:00Z"]
    );
    let verified: Vec<bool> = env
        .list()
        .iter()
        .map(|b| b["verified"].as_bool().unwrap())
        .collect();
    assert_eq!(verified, vec![false, true]);

    // Once the newest is verified, the older verified backup is no longer needed.
    env.cmd().args(["verify", &ids[0]]).assert().success();
    env.cmd().arg("prune").assert().success();
    assert_eq!(env.list_ids(), vec![ids[0].clone()]);
    assert_eq!(env.list()[0]["verified"], true);
}
