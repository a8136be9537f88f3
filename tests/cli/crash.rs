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

/// Staging copies beside `target` (any name a restore gives them).
fn staging_beside(target: &std::path::Path) -> Vec<std::path::PathBuf> {
    let name = target.file_name().unwrap().to_string_lossy().into_owned();
    let mut out: Vec<_> = std::fs::read_dir(target.parent().unwrap())
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(&format!(".{name}.lifeboat-staging"))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// `restore app --to target`, killed (as by kill -9) with its staging copy written in
/// full beside the untouched target.
fn kill_restore_before_its_swap(env: &Env, target: &std::path::Path) {
    let out = env
        .cmd()
        .env("LIFEBOAT_FAILPOINT", "restore.before-swap")
        .args(["restore", "app", "--to"])
        .arg(target)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the failpoint did not fire");
    assert!(
        stderr(&out).contains("restore.before-swap"),
        "{}",
        stderr(&out)
    );
    assert!(!target.exists(), "the target was replaced before the swap");
}

#[test]
fn a_killed_restore_leaves_no_staging_copy_after_the_next_restore_or_prune() {
    let env = env_with_data();
    env.backup();
    let target = env.dir.path().join("restored").join("app.db");
    kill_restore_before_its_swap(&env, &target);
    let left = staging_beside(&target);
    assert_eq!(left.len(), 1, "{left:?}");
    // The leftover names its owner: `.app.db.lifeboat-staging.PID.HOST...`.
    let leftover = left[0].file_name().unwrap().to_string_lossy().into_owned();
    let host = leftover.split('.').nth(5).unwrap().to_string();
    // A copy of a restore that is still running (this test's process) is never removed.
    let live = target.with_file_name(format!(
        ".app.db.lifeboat-staging.{}.{host}.app.other.live",
        std::process::id()
    ));
    std::fs::write(&live, b"being written").unwrap();

    // The next restore of the target removes the dead restore's copy.
    env.cmd()
        .args(["restore", "app", "--to"])
        .arg(&target)
        .assert()
        .success();
    assert_eq!(staging_beside(&target), vec![live.clone()]);

    // So does prune, which learns the target from the ledger of restores in progress.
    kill_restore_before_its_swap(&env, &env.dir.path().join("restored").join("app.db.new"));
    let second = env.dir.path().join("restored").join("app.db.new");
    assert_eq!(staging_beside(&second).len(), 1);
    env.cmd().arg("prune").assert().success();
    assert_eq!(staging_beside(&second), Vec::<std::path::PathBuf>::new());
    assert_eq!(staging_beside(&target), vec![live]);
    let ledger = env.policies.join(".lifeboat").join("restores");
    let entries = std::fs::read_dir(&ledger).map_or(0, |d| d.count());
    assert_eq!(entries, 0, "ledger entries of finished restores remain");
}
