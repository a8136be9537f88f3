//! Decisions that must not trust what they cannot believe: a backup dated in the
//! future, an "unchanged" newest backup that is broken, a verification result another
//! host wrote, a prune racing another run of the same source.

use crate::common::*;
use chrono::{Duration, SecondsFormat, Utc};
use serde_json::Value;

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", stdout(out), stderr(out)))
}

/// A backup of `app` with the clock pinned to `when`; returns its id.
fn backup_at(env: &Env, when: &str) -> String {
    env.backup_json_at(when)["backups"][0]["backup-id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn plant_future_backup(env: &Env) -> String {
    make_db(&env.db, 20, 64);
    let future = rfc3339(Utc::now() + Duration::days(30));
    let id = backup_at(env, &future);
    env.cmd()
        .env("LIFEBOAT_NOW", &future)
        .args(["verify", "--all"])
        .assert()
        .success();
    id
}

#[test]
fn a_backup_dated_in_the_future_is_not_newest_for_retention() {
    let env = Env::new("64KiB", "keep-last = 1");
    let future = plant_future_backup(&env);
    let now = env.backup();
    env.cmd().args(["verify", "--all"]).assert().success();
    let out = env.cmd().args(["--json", "prune"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = json(&out);
    let ids = env.list_ids();
    assert!(
        ids.contains(&now),
        "the backup made now was deleted: {ids:?}\n{plan:#}"
    );
    assert!(
        ids.contains(&future),
        "the doubtful backup is kept: {ids:?}"
    );
    let item = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["backup-id"] == future.as_str())
        .unwrap();
    assert!(
        item["reasons"][0]
            .as_str()
            .unwrap()
            .contains("dated in the future"),
        "{item:#}"
    );
}

#[test]
fn a_backup_dated_in_the_future_serves_no_scheduled_run() {
    let env = Env::new("64KiB", "keep-last = 5");
    plant_future_backup(&env);
    let out = env
        .cmd()
        .args(["--json", "schedule", "--once"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let outcomes = json(&out);
    let app = outcomes
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["source"] == "app")
        .unwrap_or_else(|| panic!("no run of app: {outcomes:#}\n{}", stderr(&out)));
    assert_eq!(app["result"], "success", "{app:#}");
    assert!(
        stderr(&out).contains("dated in the future"),
        "the doubtful backup is named: {}",
        stderr(&out)
    );
    assert_eq!(env.list_ids().len(), 2);
}

#[test]
fn a_backup_dated_in_the_future_is_flagged_by_the_report() {
    let env = Env::new("64KiB", "keep-last = 5");
    let future = plant_future_backup(&env);
    let out = env
        .cmd()
        .args(["report", "--format", "json"])
        .output()
        .unwrap();
    let report = json(&out);
    let app = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "app")
        .unwrap();
    let flags = app["flags"].to_string();
    assert!(
        flags.contains(&future) && flags.contains("dated in the future"),
        "{app:#}"
    );
    // Nothing believable was made: no RPO can be met, so the report breaches (exit 5).
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
}

#[test]
fn a_pinned_clock_is_named_on_every_run_and_a_bad_pin_refused() {
    let env = Env::new("64KiB", "keep-last = 5");
    let out = env
        .cmd()
        .env("LIFEBOAT_NOW", "2026-11-01T00:00:00Z")
        .args(["list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("LIFEBOAT_NOW pins the clock"),
        "{}",
        stderr(&out)
    );
    let out = env
        .cmd()
        .env("LIFEBOAT_NOW", "yesterday")
        .args(["list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("LIFEBOAT_NOW=\"yesterday\" is not an RFC 3339 time"));
}

/// A `files` source with one file, and its first backup.
fn files_source(env: &Env) -> String {
    std::fs::write(env.policies.join("app.yaml"), "kind: Deployment\n").unwrap();
    std::fs::write(
        env.policies.join("conf.toml"),
        "[sources.conf]\nkind = \"files\"\npaths = [\"app.yaml\"]\ndestinations = [\"local\"]\n",
    )
    .unwrap();
    files_backup(env).expect("the first backup is new")
}

/// Back `conf` up; the new backup's id, or `None` when it was skipped as unchanged.
fn files_backup(env: &Env) -> Option<String> {
    let out = env
        .cmd()
        .args(["--json", "backup", "conf"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let b = json(&out)["backups"][0].clone();
    if b["skipped"].is_string() {
        None
    } else {
        Some(b["backup-id"].as_str().unwrap().to_string())
    }
}

#[test]
fn an_unchanged_source_is_backed_up_again_when_its_newest_data_is_gone() {
    let env = Env::new("64KiB", "keep-last = 5");
    let first = files_source(&env);
    assert_eq!(files_backup(&env), None, "unchanged content is skipped");
    std::fs::remove_file(env.repo.join("conf").join(&first).join("data")).unwrap();
    let again = files_backup(&env).expect("a new backup, not a skip against lost data");
    assert_ne!(again, first);
}

#[test]
fn an_unchanged_source_is_backed_up_again_when_its_newest_backup_failed_verification() {
    let env = Env::new("64KiB", "keep-last = 5");
    let first = files_source(&env);
    flip_byte(&env.repo.join("conf").join(&first).join("data"), None);
    let out = env
        .cmd()
        .args(["verify", "--source", "conf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let again = files_backup(&env).expect("a new backup, not a skip against a corrupt one");
    assert_ne!(again, first);
}

#[test]
fn prune_reads_a_corruption_another_host_found() {
    let env = Env::new("64KiB", "keep-last = 1");
    make_db(&env.db, 20, 64);
    let t0 = Utc::now() - Duration::hours(2);
    let older = backup_at(&env, &rfc3339(t0));
    let newer = backup_at(&env, &rfc3339(t0 + Duration::hours(1)));
    // This host verifies both: both good, in its catalog.
    env.cmd().args(["verify", "--all"]).assert().success();
    // The newer one rots; another host (its own catalog) finds out and records it in
    // the repository.
    flip_byte(&env.object(&newer, "data"), None);
    let other = env.dir.path().join("other-host.db");
    let out = env
        .cmd()
        .arg("--catalog")
        .arg(&other)
        .args(["verify", "--all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    // keep-last = 1 would delete the older backup, which is now the only good one.
    let out = env.cmd().args(["--json", "prune"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let ids = env.list_ids();
    assert!(
        ids.contains(&older),
        "prune deleted the last good backup: {ids:?}\n{}",
        stdout(&out)
    );
}

#[test]
fn a_manual_prune_takes_the_source_lease() {
    let env = Env::new("64KiB", "keep-last = 1");
    make_db(&env.db, 20, 64);
    let t0 = Utc::now() - Duration::hours(2);
    backup_at(&env, &rfc3339(t0));
    backup_at(&env, &rfc3339(t0 + Duration::hours(1)));
    env.cmd().args(["verify", "--all"]).assert().success();
    // Another process holds the lease of `app` (a backup running on another host).
    let leases = env.repo.join("_leases").join("app");
    std::fs::create_dir_all(&leases).unwrap();
    let now = Utc::now();
    std::fs::write(
        leases.join(format!("{:020}", 1)),
        serde_json::json!({
            "source": "app",
            "holder": "otherhost/4242/abcd",
            "generation": 1,
            "acquired-at": rfc3339(now),
            "expires-at": rfc3339(now + Duration::hours(1)),
        })
        .to_string(),
    )
    .unwrap();
    let out = env.cmd().args(["prune"]).output().unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("otherhost/4242/abcd"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.list_ids().len(), 2, "nothing deleted while locked");
    // A dry run changes nothing and needs no lease.
    env.cmd().args(["prune", "--dry-run"]).assert().success();
}
