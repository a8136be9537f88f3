//! A backup that succeeded but lost most of its data is committed and flagged.

use crate::common::*;
use serde_json::Value;

fn backup_json(env: &Env, when: &str) -> Value {
    env.backup_json_at(when)
}

#[test]
fn an_emptied_table_is_committed_but_flagged() {
    let env = Env::new("64KiB", "keep-last = 5");
    let policy = env.policies.join("lifeboat.toml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, format!("{text}anomaly = {{ max-drop = 0.5 }}\n")).unwrap();
    make_db(&env.db, 50, 10);

    let first = backup_json(&env, "2026-03-01T00:00:00Z");
    assert_eq!(first["backups"][0]["anomalies"], Value::Array(vec![]));

    rusqlite::Connection::open(&env.db)
        .unwrap()
        .execute("DELETE FROM events", [])
        .unwrap();
    let second = backup_json(&env, "2026-03-02T00:00:00Z");
    let report = &second["backups"][0];
    assert_eq!(report["destinations"][0]["committed"], true);
    let anomalies = report["anomalies"].as_array().unwrap();
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    assert_eq!(anomalies[0]["measure"], "rows.events");
    assert_eq!(anomalies[0]["previous"], 50);
    assert_eq!(anomalies[0]["current"], 0);
    assert_eq!(
        anomalies[0]["previous-backup"],
        first["backups"][0]["backup-id"]
    );

    // The flag is in the catalog (and the manifest it is read from).
    let list = env.list();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["backup-id"], report["backup-id"]);
    assert_eq!(list[0]["anomalies"][0]["measure"], "rows.events");
    assert_eq!(list[1]["anomalies"], Value::Array(vec![]));
    env.cmd().args(["catalog", "rebuild"]).assert().success();
    assert_eq!(env.list()[0]["anomalies"][0]["measure"], "rows.events");

    // The text report says it too.
    let out = env
        .cmd()
        .env("LIFEBOAT_NOW", "2026-03-03T00:00:00Z")
        .args(["backup", "app"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Against the already-empty previous backup, nothing dropped any more.
    assert!(!stdout(&out).contains("ANOMALY"), "{}", stdout(&out));
}
