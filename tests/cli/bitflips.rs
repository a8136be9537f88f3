//! One flipped bit in any kind of repository file: data is caught by verify and
//! refused by restore wherever the bit is; a damaged trial restore result or lease
//! never vouches for anything.

use crate::common::*;
use chrono::{Duration, SecondsFormat, Utc};
use serde_json::Value;
use std::path::Path;

fn flip_bit(p: &Path, offset: usize, bit: u8) {
    let mut bytes = std::fs::read(p).unwrap();
    bytes[offset] ^= 1 << bit;
    std::fs::write(p, bytes).unwrap();
}

/// The manifest body of backup `id` of `app`.
fn manifest_body(env: &Env, id: &str) -> Value {
    let sealed: Value =
        serde_json::from_slice(&std::fs::read(env.object(id, "manifest.json")).unwrap()).unwrap();
    sealed["body"].clone()
}

/// Offsets where a flip is most likely to slip through: the ends, each side of every
/// chunk boundary, and points spread over the object.
fn offsets(len: usize, chunk: usize) -> Vec<usize> {
    let mut out = vec![0, 1, len - 1];
    let mut b = chunk;
    while b < len {
        out.extend([b - 1, b]);
        b += chunk;
    }
    out.extend((1..8).map(|i| len * i / 8));
    out.sort();
    out.dedup();
    out
}

#[test]
fn a_flipped_bit_anywhere_in_the_data_is_caught_by_verify_and_refused_by_restore() {
    let env = Env::new("64KiB", "keep-last = 5");
    make_db(&env.db, 1_500, 200);
    let id = env.backup();
    let data = env.object(&id, "data");
    let body = manifest_body(&env, &id);
    let len = std::fs::metadata(&data).unwrap().len() as usize;
    let chunk = body["stored"]["chunk-size"].as_u64().unwrap() as usize;
    assert!(
        len > 2 * chunk,
        "several chunks: {len} bytes, chunks of {chunk}"
    );
    let original = std::fs::read(&data).unwrap();
    let target = env.dir.path().join("restored.db");
    for (i, offset) in offsets(len, chunk).into_iter().enumerate() {
        let bit = (i % 8) as u8;
        flip_bit(&data, offset, bit);
        let out = env.cmd().args(["verify", &id]).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(4),
            "bit {bit} at {offset} of {len}: {}",
            stdout(&out)
        );
        let out = env
            .cmd()
            .args(["restore", "app", "--backup", &id, "--to"])
            .arg(&target)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(4),
            "bit {bit} at {offset}: {}",
            stderr(&out)
        );
        assert!(!target.exists(), "bit {bit} at {offset}: a target was made");
        std::fs::write(&data, &original).unwrap();
    }
    // Put back, the same object verifies and restores again: the checks measured the
    // flips, not something else.
    env.cmd().args(["verify", &id]).assert().success();
    env.cmd()
        .args(["restore", "app", "--backup", &id, "--to"])
        .arg(&target)
        .assert()
        .success();
    assert_eq!(count(&target, "events"), 1_500);
}

#[test]
fn a_flipped_trial_restore_result_is_not_taken_for_a_trial() {
    let env = Env::new("64KiB", "keep-last = 5");
    std::fs::write(
        env.policies.join("lifeboat.toml"),
        std::fs::read_to_string(env.policies.join("lifeboat.toml"))
            .unwrap()
            .replace(
                "retention = {",
                "verify = { schedule = \"@daily\", restore-test = true }\nretention = {",
            ),
    )
    .unwrap();
    make_db(&env.db, 200, 50);
    let id = env.backup();
    env.cmd()
        .args(["verify", "--restore", "--source", "app"])
        .assert()
        .success();
    let result = env.object(&id, "restore-test.json");
    let len = std::fs::metadata(&result).unwrap().len() as usize;
    let original = std::fs::read(&result).unwrap();
    for (i, offset) in [0, len / 3, len / 2, len - 2].into_iter().enumerate() {
        flip_bit(&result, offset, (i % 8) as u8);
        // A new host: everything it knows comes from the repository.
        std::fs::remove_dir_all(env.policies.join(".lifeboat")).unwrap();
        env.cmd().args(["catalog", "rebuild"]).assert().success();
        let out = env
            .cmd()
            .args(["report", "--format", "json"])
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let app = report["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "app")
            .unwrap()
            .clone();
        assert!(
            app["last-trial"].is_null(),
            "flip at {offset}: a damaged result still counts as a trial: {app:#}"
        );
        assert!(
            app["flags"]
                .to_string()
                .contains("no trial restore has run yet"),
            "flip at {offset}: {app:#}"
        );
        std::fs::write(&result, &original).unwrap();
    }
}

#[test]
fn a_flipped_lease_delays_a_run_but_never_lets_two_run() {
    let env = Env::new("64KiB", "keep-last = 5");
    std::fs::write(
        env.policies.join("sched.toml"),
        "[scheduler]\nlease-ttl = \"1d\"\n",
    )
    .unwrap();
    make_db(&env.db, 20, 20);
    let t0 = Utc::now();
    let at = |d: Duration| (t0 + d).to_rfc3339_opts(SecondsFormat::Secs, true);
    let once = |when: &str| {
        env.cmd()
            .env("LIFEBOAT_NOW", when)
            .args(["--json", "schedule", "--once"])
            .output()
            .unwrap()
    };
    let out = once(&at(Duration::zero()));
    assert!(out.status.success(), "{}", stderr(&out));
    let leases = env.repo.join("_leases").join("app");
    let lease = std::fs::read_dir(&leases)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let len = std::fs::metadata(&lease).unwrap().len() as usize;
    flip_bit(&lease, len / 2, 3);
    // The next slot (an hour on): the damaged record cannot be read, so it counts as
    // held for a lease-ttl after it was written.
    let out = once(&at(Duration::minutes(61)));
    let outcomes: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(6), "{outcomes:#} {}", stderr(&out));
    assert_eq!(outcomes[0]["result"], "locked", "{outcomes:#}");
    assert_eq!(env.list_ids().len(), 1);
    // Once a lease-ttl has passed, the damaged lease no longer stops backups.
    let out = once(&at(Duration::days(1) + Duration::minutes(5)));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.list_ids().len(), 2);
}
