//! Drills of the shipped node runbook on a real SQLite source: measured, isolated,
//! torn down, also after a failure.

use crate::common::{Env, count, files_under, stderr, step};

/// Drill targets left beside the hive database.
fn drill_files(env: &Env) -> Vec<std::path::PathBuf> {
    files_under(env.db.parent().unwrap())
        .into_iter()
        .filter(|p| p.display().to_string().contains(".drill-"))
        .collect()
}

#[test]
fn node0_drill_passes_with_measured_rto_and_rpo() {
    let env = Env::new();
    env.shipped_node_plan();
    let id = env.backup();
    let before = env.snapshot();
    let (code, r, err) = env.json(&["dr", "drill", "node0-sqlite"]);
    assert_eq!(code, Some(0), "{r:#}\n{err}");
    assert_eq!(r["verdict"], "PASS");
    assert_eq!(r["mode"], "drill");
    assert_eq!(r["status"], "succeeded");
    // kubectl is never run in a drill of this plan.
    for s in ["scale-down", "scale-up"] {
        assert_eq!(step(&r, s)["state"], "skipped", "{r:#}");
    }
    let restore = step(&r, "restore-hive");
    assert_eq!(restore["outputs"]["backup-id"], id.as_str());
    let target = restore["outputs"]["target"].as_str().unwrap();
    assert!(target.contains(".drill-node0-sqlite-"), "{target}");
    let check = step(&r, "integrity");
    assert_eq!(check["state"], "succeeded", "{r:#}");
    assert_eq!(check["outputs"]["users"], "3");
    assert_eq!(check["outputs"]["tasks"], "2");
    assert_eq!(check["outputs"]["poi_records"], "4");
    // RPO: from the run's start back to the newest task, created ten minutes before.
    let rpo = r["rpo"]["achieved-secs"].as_i64().unwrap();
    assert!((600..900).contains(&rpo), "rpo {rpo}: {r:#}");
    assert_eq!(r["rpo"]["verdict"], "PASS");
    let rto = r["rto"]["achieved-secs"].as_i64().unwrap();
    assert!((0..300).contains(&rto), "rto {rto}");
    assert_eq!(r["rto"]["verdict"], "PASS");
    // Torn down: the drill's copy is gone and production is as it was.
    assert!(drill_files(&env).is_empty(), "{:?}", drill_files(&env));
    assert_eq!(env.snapshot(), before);
}

#[test]
fn a_late_incident_start_misses_the_rto_and_exits_5() {
    let env = Env::new();
    env.shipped_node_plan();
    env.backup();
    let two_hours_ago = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    let (code, r, err) = env.json(&[
        "dr",
        "drill",
        "node0-sqlite",
        "--incident-start",
        &two_hours_ago,
    ]);
    assert_eq!(code, Some(5), "{r:#}\n{err}");
    assert_eq!(r["rto"]["verdict"], "FAIL");
    assert!(r["rto"]["achieved-secs"].as_i64().unwrap() >= 7200);
    assert_eq!(r["verdict"], "FAIL");
    assert_eq!(r["status"], "succeeded");
}

/// Manifests are sealed and every chunk is hash-checked on the way back, so an altered
/// backup never reaches a target. What the integrity step must catch is a restored copy
/// that no longer holds what the manifest counted: here a step of the plan deletes a
/// user from it between the restore and the check.
#[test]
fn a_restored_copy_that_differs_from_the_manifest_fails_with_exit_4_and_is_torn_down() {
    let env = Env::new();
    env.plan(
        "tampered",
        &format!(
            r#"
name = "tampered"
rto = "5m"
rpo = "1h"

[[steps]]
id = "restore"
kind = "restore"
source = "hive"
target = ".hive-mind/hive.db"

[[steps]]
id = "tamper"
kind = "command"
after = ["restore"]
argv = ["python3", "{tamper}", "${{steps.restore.outputs.target}}"]
drill = "run"

[[steps]]
id = "check"
kind = "integrity"
after = ["tamper"]
of = "restore"
"#,
            tamper = env.script("tamper.py")
        ),
    );
    env.backup();
    let before = env.snapshot();
    let (code, r, err) = env.json(&["dr", "drill", "tampered"]);
    assert_eq!(code, Some(4), "{r:#}\n{err}");
    let check = step(&r, "check");
    assert_eq!(check["state"], "integrity-failed");
    let e = check["error"].as_str().unwrap();
    assert!(
        e.contains("rows.users") && e.contains("counts differ from the manifest"),
        "{e}"
    );
    assert_eq!(r["verdict"], "FAIL");
    assert!(drill_files(&env).is_empty(), "teardown after a failure");
    assert_eq!(env.snapshot(), before);
    assert_eq!(count(&env.db, "users"), 3);
}

#[test]
fn a_killed_drill_is_removed_by_teardown() {
    let env = Env::new();
    env.shipped_node_plan();
    env.backup();
    let out = env
        .cmd()
        .args(["dr", "drill", "node0-sqlite"])
        .env("LIFEBOAT_FAILPOINT", "dr.step.integrity.before-effect")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", stderr(&out));
    assert_eq!(drill_files(&env).len(), 1, "the killed drill left its copy");
    let (_, status, _) = env.json(&["dr", "status"]);
    let run = status["run-id"].as_str().unwrap().to_string();
    assert_eq!(status["status"], "running");
    let (code, r, err) = env.json(&["dr", "teardown", &run]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["removed"].as_array().unwrap().len(), 1);
    assert!(drill_files(&env).is_empty());
    let (_, status, _) = env.json(&["dr", "status", &run]);
    assert_eq!(status["status"], "torn-down");
    // A torn-down drill cannot be resumed.
    let (code, _, _) = env.json(&["dr", "resume", &run]);
    assert_eq!(code, Some(2));
}

/// The backup itself altered in the repository (one flipped byte in its stored data):
/// the restore refuses it on the chunk hash, the drill fails with the integrity exit
/// code, and production and the repository's other files are untouched.
#[test]
fn a_drill_of_an_altered_backup_fails_with_exit_4() {
    let env = Env::new();
    env.shipped_node_plan();
    let id = env.backup();
    let data = env.repo.join("hive").join(&id).join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&data, &bytes).unwrap();
    let before = env.snapshot();
    let (code, r, err) = env.json(&["dr", "drill", "node0-sqlite"]);
    assert_eq!(code, Some(4), "{r:#}\n{err}");
    assert_eq!(r["verdict"], "FAIL");
    let restore = step(&r, "restore-hive");
    let e = restore["error"].as_str().unwrap_or_default();
    assert!(e.contains("sha256"), "{r:#}");
    assert!(drill_files(&env).is_empty(), "teardown after a failure");
    assert_eq!(env.snapshot(), before);
}
