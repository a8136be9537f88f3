//! Crash safety: the process is aborted (as by kill -9) at named points of a backup.
//! Whatever the point, no broken backup is ever listed and the next backup succeeds.

use crate::common::*;

fn crash_at(env: &Env, point: &str) {
    let out = env
        .cmd()
        .env("LIFEBOAT_FAILPOINT", point)
        .args(["backup", "app"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the failpoint {point} did not fire");
    assert!(stderr(&out).contains(point), "{}", stderr(&out));
}

fn env_with_data() -> Env {
    // Random payloads do not compress: the stored object spans many 64 KiB parts.
    let env = Env::new("64KiB", "keep-last = 5");
    make_db(&env.db, 4_000, 200);
    env
}

#[test]
fn crash_with_data_partly_written_leaves_no_backup() {
    let env = env_with_data();
    crash_at(&env, "backup.after-first-part");
    assert!(env.list().is_empty());
    // The partial upload exists only under a hidden temporary name.
    let files = env.repo_files();
    assert!(
        !files.is_empty(),
        "the crash left nothing: the failpoint fired too early"
    );
    assert!(
        files.keys().all(|k| k.contains(".lifeboat-tmp-")),
        "{files:?}"
    );
    let id = env.backup();
    assert_eq!(env.list_ids(), vec![id]);
    env.cmd().arg("verify").assert().success();
}

#[test]
fn crash_with_data_written_but_no_manifest_leaves_no_backup() {
    let env = env_with_data();
    crash_at(&env, "backup.before-manifest");
    assert!(env.list().is_empty());
    let files = env.repo_files();
    assert!(files.keys().any(|k| k.ends_with("/data")), "{files:?}");
    assert!(!files.keys().any(|k| k.ends_with("manifest.json")));
    let id = env.backup();
    assert_eq!(env.list_ids(), vec![id.clone()]);
    // Prune keeps a fresh leftover (it may belong to a run still going elsewhere).
    let out = env.cmd().args(["prune", "--dry-run"]).output().unwrap();
    assert!(
        stdout(&out).contains("incomplete (no manifest), younger than 24h"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn crash_after_the_manifest_reappears_through_reconcile() {
    let env = env_with_data();
    crash_at(&env, "backup.before-catalog");
    // The manifest was written: the backup exists, and listing reconciles it in.
    let ids = env.list_ids();
    assert_eq!(ids.len(), 1);
    env.cmd().args(["verify", &ids[0]]).assert().success();
    let next = env.backup();
    assert_eq!(env.list_ids(), vec![next, ids[0].clone()]);
}

#[test]
fn crash_after_the_manifest_reappears_through_catalog_rebuild() {
    let env = env_with_data();
    crash_at(&env, "backup.before-catalog");
    env.cmd().args(["catalog", "rebuild"]).assert().success();
    let ids = env.list_ids();
    assert_eq!(ids.len(), 1);
    env.cmd().arg("verify").assert().success();
}

#[test]
fn old_leftovers_of_crashed_runs_are_pruned() {
    let env = env_with_data();
    let mut c = env.cmd();
    c.env("LIFEBOAT_FAILPOINT", "backup.before-manifest")
        .env("LIFEBOAT_NOW", "2026-01-01T00:00:00Z")
        .args(["backup", "app"]);
    assert!(!c.output().unwrap().status.success());
    let id = env.backup();
    env.cmd().arg("prune").assert().success();
    let files = env.repo_files();
    // The lease prune took stays, released (leases are never deleted).
    assert!(
        files
            .keys()
            .all(|k| k.starts_with(&format!("app/{id}/")) || k.starts_with("_leases/app/")),
        "{files:?}"
    );
    assert_eq!(env.list_ids(), vec![id]);
}
