//! backup -> verify -> restore on a live database, and what happens when bytes rot.

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn backup_is_consistent_while_another_process_writes() {
    let env = Env::new("1MiB", "keep-last = 5");
    make_db(&env.db, 100_000, 100);
    let stop = env.dir.path().join("stop-writer");
    let mut writer = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/sqlite_writer.py"
        ))
        .arg(&env.db)
        .arg("events")
        .arg(&stop)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the concurrent writer");
    let mut line = String::new();
    BufReader::new(writer.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");

    let at_start = count(&env.db, "events");
    let out = env
        .cmd()
        .args(["--json", "backup", "app"])
        .output()
        .unwrap();
    let at_end = count(&env.db, "events");
    std::fs::write(&stop, "").unwrap();
    writer.wait().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let in_manifest = report["backups"][0]["counts"]["rows.events"]
        .as_u64()
        .unwrap();
    assert!(
        at_start < in_manifest && in_manifest < at_end,
        "expected start {at_start} < manifest {in_manifest} < end {at_end}"
    );

    // The stored manifest says the same as the run's report.
    let id = report["backups"][0]["backup-id"].as_str().unwrap();
    let listed = env.list();
    assert_eq!(
        listed[0]["counts"]["rows.events"].as_u64(),
        Some(in_manifest)
    );
    assert_eq!(listed[0]["backup-id"].as_str(), Some(id));

    let target = env.dir.path().join("restored.db");
    let out = env
        .cmd()
        .args(["restore", "app", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("rows.events"), "{}", stdout(&out));
    assert_eq!(count(&target, "events"), in_manifest);
    assert_eq!(count(&target, "users"), 3);
    assert!(integrity_ok(&target));
}

#[test]
fn verify_names_backup_and_both_hashes_when_a_stored_byte_flips() {
    let env = Env::new("64KiB", "keep-last = 5");
    make_db(&env.db, 2_000, 200);
    let id = env.backup();
    env.cmd().arg("verify").assert().success();

    let data = env.object(&id, "data");
    let listed = env.list();
    let expected = listed[0]["stored-sha256"].as_str().unwrap().to_string();
    assert_eq!(sha256_file(&data), expected);
    flip_byte(&data, None);
    let actual = sha256_file(&data);

    let out = env.cmd().args(["verify", &id]).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains(&id), "{text}");
    assert!(
        text.contains(&format!("expected sha256 {expected}, actual {actual}")),
        "{text}"
    );

    // The failure is recorded: in the catalog and beside the manifest.
    let listed = env.list();
    assert_eq!(listed[0]["verified"], Value::Bool(false));
    assert_eq!(listed[0]["last-verification"]["ok"], Value::Bool(false));
    assert!(env.object(&id, "verify.json").exists());
}

#[test]
fn verify_detects_a_flipped_manifest_byte() {
    let env = Env::new("64KiB", "keep-last = 5");
    make_db(&env.db, 500, 100);
    let id = env.backup();
    let manifest = env.object(&id, "manifest.json");
    let expected = sha256_file(&manifest);
    for offset in [None, Some(3)] {
        let original = std::fs::read(&manifest).unwrap();
        flip_byte(&manifest, offset);
        let actual = sha256_file(&manifest);
        let out = env.cmd().args(["verify", &id]).output().unwrap();
        assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));
        let text = stdout(&out);
        assert!(text.contains(&id), "{text}");
        assert!(
            text.contains(&format!(
                "expected sha256 {expected} (as catalogued), actual {actual}"
            )),
            "{text}"
        );
        std::fs::write(&manifest, original).unwrap();
    }
    env.cmd().args(["verify", &id]).assert().success();
}

#[test]
fn restore_of_a_corrupted_object_leaves_the_target_byte_identical() {
    let env = Env::new("64KiB", "keep-last = 5");
    make_db(&env.db, 2_000, 200);
    let id = env.backup();
    // An existing target that must survive untouched.
    let target = env.dir.path().join("target.db");
    make_db(&target, 10, 10);
    let before = std::fs::read(&target).unwrap();

    flip_byte(&env.object(&id, "data"), None);
    let out = env
        .cmd()
        .args(["restore", "app", "--force", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("expected sha256"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&target).unwrap(), before);
    // No staging copy is left beside the target.
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("staging"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn restore_refuses_a_non_empty_target_without_force() {
    let env = Env::new("64KiB", "keep-last = 5");
    make_db(&env.db, 100, 10);
    env.backup();
    let target = env.dir.path().join("busy.db");
    make_db(&target, 7, 10);
    let before = std::fs::read(&target).unwrap();
    let out = env
        .cmd()
        .args(["restore", "app", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&target).unwrap(), before);

    // With --force it is replaced, and has the backup's counts.
    env.cmd()
        .args(["restore", "app", "--force", "--to"])
        .arg(&target)
        .assert()
        .success();
    assert_eq!(count(&target, "events"), 100);
}

#[test]
fn restore_picks_the_newest_backup_at_or_before_a_time_and_verified_ones() {
    let env = Env::new("64KiB", "keep-last = 5");
    make_db(&env.db, 100, 10);
    let mut c = env.cmd();
    c.env("LIFEBOAT_NOW", "2026-11-20T10:00:00Z");
    c.args(["backup", "app"]).assert().success();
    rusqlite::Connection::open(&env.db)
        .unwrap()
        .execute("DELETE FROM events WHERE id <= 40", [])
        .unwrap();
    let mut c = env.cmd();
    c.env("LIFEBOAT_NOW", "2026-11-21T10:00:00Z");
    c.args(["backup", "app"]).assert().success();

    let old = env.dir.path().join("old.db");
    env.cmd()
        .args(["restore", "app", "--before", "2026-11-20T12:00:00Z", "--to"])
        .arg(&old)
        .assert()
        .success();
    assert_eq!(count(&old, "events"), 100);

    // Nothing is verified yet: --verified finds nothing and says so.
    let v = env.dir.path().join("verified.db");
    let out = env
        .cmd()
        .args(["restore", "app", "--verified", "--to"])
        .arg(&v)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no committed backup matches"));
    env.cmd().args(["verify", "--all"]).assert().success();
    env.cmd()
        .args(["restore", "app", "--verified", "--to"])
        .arg(&v)
        .assert()
        .success();
    assert_eq!(count(&v, "events"), 60);
}

#[test]
fn a_sampled_verify_never_makes_a_backup_verified_but_a_failed_one_withdraws_it() {
    // One chunk: a sample of any size reads it.
    let env = Env::new("16MiB", "keep-last = 5");
    make_db(&env.db, 200, 50);
    let id = env.backup();
    env.cmd()
        .args(["verify", "--sample", "10"])
        .assert()
        .success();
    assert_eq!(env.list()[0]["verified"], Value::Bool(false));
    assert_eq!(env.list()[0]["last-verification"]["mode"], "sample");

    env.cmd().arg("verify").assert().success();
    env.cmd()
        .args(["verify", "--sample", "10"])
        .assert()
        .success();
    assert_eq!(env.list()[0]["verified"], Value::Bool(true));

    flip_byte(&env.object(&id, "data"), None);
    let out = env
        .cmd()
        .args(["verify", "--sample", "10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("chunk 1 of 1: expected sha256"),
        "{}",
        stdout(&out)
    );
    assert_eq!(env.list()[0]["verified"], Value::Bool(false));

    env.cmd().args(["verify", "--sample", "0"]).assert().code(2);
}

#[test]
fn compare_names_the_table_that_lost_a_row_after_a_restore() {
    let env = Env::new("64KiB", "keep-last = 5");
    make_db(&env.db, 120, 10);
    env.backup();
    let target = env.dir.path().join("live.db");
    env.cmd()
        .args(["restore", "app", "--to"])
        .arg(&target)
        .assert()
        .success();
    env.cmd()
        .args(["compare", "app", "--to"])
        .arg(&target)
        .assert()
        .success();
    rusqlite::Connection::open(&target)
        .unwrap()
        .execute("DELETE FROM events WHERE id = 7", [])
        .unwrap();
    let out = env
        .cmd()
        .args(["compare", "app", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("rows.events: expected 120, actual 119"),
        "{}",
        stderr(&out)
    );
}
