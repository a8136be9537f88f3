//! Prune on a known history: the plan, dry-run leaving the repository as it was, and the
//! newest backup always surviving.

use crate::common::*;
use serde_json::Value;

fn backup_at(env: &Env, when: &str) {
    env.cmd()
        .env("LIFEBOAT_NOW", when)
        .args(["backup", "app"])
        .assert()
        .success();
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
    env.cmd().arg("prune").assert().success();
    let kept: Vec<String> = env
        .list()
        .iter()
        .map(|b| b["started-at"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kept, vec!["2026-02-01T00:00:00Z"]);
}
