//! Damage in a repository is always found, always said and never trusted: a data
//! object cut short, appended to or gone; a manifest that cannot be trusted, also with
//! a fresh catalog; a verification result that vouches for another manifest; a
//! destination that missed the newest backup; a flipped bit in a manifest or a
//! `verify.json`.

use crate::common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A set with one small backup of `app`; returns the env and the backup id.
fn one_backup() -> (Env, String) {
    let env = Env::new("64KiB", "keep-last = 5");
    make_db(&env.db, 500, 600);
    let id = env.backup();
    (env, id)
}

fn forget_catalog(env: &Env) {
    let dir = env.policies.join(".lifeboat");
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// `lifeboat --json list`, whatever its exit code.
fn list_rows(env: &Env) -> (Option<i32>, Vec<Value>) {
    let out = env.cmd().args(["--json", "list"]).output().unwrap();
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("list --json: {e}: {} {}", stdout(&out), stderr(&out));
    });
    (out.status.code(), rows.as_array().unwrap().clone())
}

/// Restore `app` into a fresh path; returns the exit code, stderr and the path.
fn restore(env: &Env) -> (Option<i32>, String, PathBuf) {
    let target = env.dir.path().join("restored.db");
    let out = env
        .cmd()
        .args(["restore", "app", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    (out.status.code(), stderr(&out), target)
}

/// Seal `body` as lifeboat does: the exact text inside an envelope with its digest.
fn seal(format: &str, body: &Value) -> Vec<u8> {
    let text = serde_json::to_string_pretty(body).unwrap();
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    format!("{{\n\"format\": \"{format}\",\n\"body-sha256\": \"{digest}\",\n\"body\": {text}\n}}\n")
        .into_bytes()
}

/// Rewrite the sealed document at `path` with `edit` applied to its body, sealed
/// anew (a well-formed document that says something else).
fn reseal(path: &Path, edit: impl FnOnce(&mut Value)) {
    let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut body = doc["body"].clone();
    edit(&mut body);
    std::fs::write(path, seal(doc["format"].as_str().unwrap(), &body)).unwrap();
}

fn assert_damaged_data_is_an_integrity_failure(env: &Env, id: &str, what: &str) {
    let out = env.cmd().args(["verify", id]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "verify of a {what} data object: {} {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("FAILED"), "{}", stdout(&out));
    // Recorded: in the catalog, and beside the manifest for a rebuilt catalog.
    for fresh in [false, true] {
        if fresh {
            forget_catalog(env);
        }
        let rows = env.list();
        assert_eq!(rows[0]["verified"], Value::Bool(false), "{what}: {rows:?}");
        assert_eq!(
            rows[0]["last-verification"]["ok"],
            Value::Bool(false),
            "{what} (fresh catalog: {fresh}): {rows:?}"
        );
    }
    let (code, err, target) = restore(env);
    assert_eq!(code, Some(4), "restore of a {what} data object: {err}");
    assert!(
        !target.exists(),
        "a refused restore left {}",
        target.display()
    );
}

#[test]
fn verify_short_data_object_is_an_integrity_failure() {
    let (env, id) = one_backup();
    let data = env.object(&id, "data");
    let mut bytes = std::fs::read(&data).unwrap();
    assert!(bytes.len() > 3 * 64 * 1024, "want several chunks");
    bytes.pop();
    std::fs::write(&data, bytes).unwrap();
    assert_damaged_data_is_an_integrity_failure(&env, &id, "short");
}

#[test]
fn verify_long_data_object_is_an_integrity_failure() {
    let (env, id) = one_backup();
    let data = env.object(&id, "data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes.push(0);
    std::fs::write(&data, bytes).unwrap();
    assert_damaged_data_is_an_integrity_failure(&env, &id, "long");
}

#[test]
fn verify_missing_data_object_is_an_integrity_failure() {
    let (env, id) = one_backup();
    std::fs::remove_file(env.object(&id, "data")).unwrap();
    assert_damaged_data_is_an_integrity_failure(&env, &id, "missing");
}

#[test]
fn corrupt_manifest_is_reported_with_a_fresh_catalog() {
    let (env, id) = one_backup();
    flip_byte(&env.object(&id, "manifest.json"), None);
    forget_catalog(&env);

    let out = env.cmd().args(["verify", "--all"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{} {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains(&format!("FAILED  app/{id} in local")),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("manifest"), "{}", stdout(&out));

    let (code, rows) = list_rows(&env);
    assert_eq!(code, Some(4));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["backup-id"], Value::String(id.clone()));
    assert_eq!(rows[0]["corrupt"], Value::Bool(true));
    assert_eq!(rows[0]["verified"], Value::Bool(false));
    let out = env.cmd().arg("list").output().unwrap();
    assert!(stdout(&out).contains("CORRUPT"), "{}", stdout(&out));

    let out = env.cmd().args(["catalog", "rebuild"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));
    assert!(stdout(&out).contains("CORRUPT"), "{}", stdout(&out));

    forget_catalog(&env);
    let out = env
        .cmd()
        .args(["report", "--since", "30d", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let breaches = report["breaches"].to_string();
    assert!(
        breaches.contains(&id) && breaches.contains("corrupt"),
        "{breaches}"
    );

    let (code, err, target) = restore(&env);
    assert_ne!(code, Some(0), "a corrupt backup was restored: {err}");
    assert!(!target.exists());
}

#[test]
fn verify_result_is_bound_to_the_manifest_it_verified() {
    let (env, id) = one_backup();
    env.cmd().args(["verify", &id]).assert().success();
    assert_eq!(env.list()[0]["verified"], Value::Bool(true));

    // Another well-sealed manifest for the same backup: the old verify.json beside it
    // says nothing about it.
    reseal(&env.object(&id, "manifest.json"), |m| {
        m["host"] = Value::String("elsewhere".into());
    });
    forget_catalog(&env);
    env.cmd().args(["catalog", "rebuild"]).assert().success();
    let rows = env.list();
    assert_eq!(rows[0]["verified"], Value::Bool(false), "{rows:?}");
    let out = env
        .cmd()
        .args(["restore", "app", "--verified", "--to"])
        .arg(env.dir.path().join("r.db"))
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "restored as verified");

    // Verifying it again binds a new result to the manifest that is there now.
    env.cmd().args(["verify", &id]).assert().success();
    forget_catalog(&env);
    assert_eq!(env.list()[0]["verified"], Value::Bool(true));

    // A result without a manifest hash (written before results were bound) vouches for
    // nothing: the backup reads as unverified until verified again.
    reseal(&env.object(&id, "verify.json"), |v| {
        v.as_object_mut()
            .unwrap()
            .remove("manifest-sha256")
            .unwrap();
    });
    forget_catalog(&env);
    assert_eq!(env.list()[0]["verified"], Value::Bool(false));
}

#[test]
fn restore_test_result_is_bound_to_the_manifest_it_restored() {
    let (env, id) = one_backup();
    env.cmd().args(["verify", "--restore"]).assert().success();
    let trial = |env: &Env| -> Value {
        let out = env
            .cmd()
            .args(["report", "--since", "30d", "--format", "json"])
            .output()
            .unwrap();
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        r["sources"][0]["last-trial"].clone()
    };
    assert_eq!(trial(&env)["ok"], Value::Bool(true));
    reseal(&env.object(&id, "manifest.json"), |m| {
        m["host"] = Value::String("elsewhere".into());
    });
    forget_catalog(&env);
    assert_eq!(
        trial(&env),
        Value::Null,
        "an old trial vouches for a new manifest"
    );
}

#[test]
fn verify_checks_the_newest_backup_of_every_destination() {
    let env = Env::new("64KiB", "keep-last = 5");
    let second = env.dir.path().join("repo2");
    let toml = env.policies.join("lifeboat.toml");
    let text = std::fs::read_to_string(&toml).unwrap().replace(
        "destinations = [\"local\"]",
        "destinations = [\"local\", \"second\"]",
    ) + &format!(
        "\n[repositories.second]\nurl = \"file://{}\"\npart-size = \"64KiB\"\n",
        second.display()
    );
    std::fs::write(&toml, text).unwrap();
    make_db(&env.db, 300, 100);
    let older = env.backup();
    let newest = env.backup();
    // The second destination missed the newest backup, and its newest copy rotted.
    std::fs::remove_dir_all(second.join("app").join(&newest)).unwrap();
    flip_byte(&second.join("app").join(&older).join("data"), None);

    let out = env.cmd().arg("verify").output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("OK      app/{newest} in local")),
        "{text}"
    );
    assert!(
        text.contains(&format!("FAILED  app/{older} in second")),
        "{text}"
    );
}

/// Byte positions to flip in a document of `len` bytes: every one when `step` is 1.
fn positions(len: usize, step: usize) -> impl Iterator<Item = usize> {
    (0..len).step_by(step).chain(std::iter::once(len - 1))
}

#[test]
fn every_flipped_manifest_bit_is_detected_by_verify_and_refused_by_restore() {
    let (env, id) = one_backup();
    let path = env.object(&id, "manifest.json");
    let good = std::fs::read(&path).unwrap();
    // A strided sample keeps the test short; the bit within the byte rotates, and the
    // seal's unit test flips every byte.
    let mut checked = 0;
    for (n, i) in positions(good.len(), 37).enumerate() {
        let mut bad = good.clone();
        bad[i] ^= 1 << (n % 8);
        // With a catalog that knew the good manifest, and with none (a new host).
        let fresh = n % 2 == 1;
        if fresh {
            forget_catalog(&env);
        } else {
            std::fs::write(&path, &good).unwrap();
            assert_eq!(env.list_ids(), vec![id.clone()]);
        }
        std::fs::write(&path, &bad).unwrap();
        let out = env.cmd().args(["verify", "--all"]).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(4),
            "flip of bit {} at byte {i} ({:?}), fresh catalog {fresh}: {}",
            n % 8,
            good[i] as char,
            stdout(&out)
        );
        if n % 4 == 0 {
            let (code, err, target) = restore(&env);
            assert_ne!(code, Some(0), "restored with byte {i} flipped: {err}");
            assert!(!target.exists());
        }
        checked += 1;
    }
    assert!(checked > 20, "{checked}");
    std::fs::write(&path, &good).unwrap();
    forget_catalog(&env);
    env.cmd().args(["verify", "--all"]).assert().success();
}

#[test]
fn a_flipped_verify_json_never_makes_a_backup_verified() {
    let (env, id) = one_backup();
    // A failed verification on record, then the data put back as it was.
    let data = env.object(&id, "data");
    let good_data = std::fs::read(&data).unwrap();
    flip_byte(&data, None);
    env.cmd().args(["verify", &id]).assert().code(4);
    std::fs::write(&data, &good_data).unwrap();

    let path = env.object(&id, "verify.json");
    let good = std::fs::read(&path).unwrap();
    for (n, i) in positions(good.len(), 29).enumerate() {
        let mut bad = good.clone();
        bad[i] ^= 1 << (n % 8);
        std::fs::write(&path, &bad).unwrap();
        forget_catalog(&env);
        let rows = env.list();
        assert_eq!(
            rows[0]["verified"],
            Value::Bool(false),
            "flip at byte {i} ({:?}) made the backup verified",
            good[i] as char
        );
    }
}
