//! The first minute of a new user: `lifeboat quickstart` on the embedded default.

use crate::common::*;
use assert_cmd::Command;

#[test]
fn quickstart_runs_the_whole_chain_and_says_where_everything_is() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("demo");
    let out = Command::cargo_bin("lifeboat")
        .unwrap()
        .env_remove("LIFEBOAT_POLICIES")
        .arg("quickstart")
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for what in [
        "policy set",
        "database",
        "repository",
        "catalog",
        "restored",
    ] {
        assert!(text.contains(what), "{text}");
    }
    let restored = target.join("restored").join("app.db");
    assert_eq!(
        count(&restored, "tasks"),
        count(&target.join("data/app.db"), "tasks")
    );
    assert!(integrity_ok(&restored));

    // The demo set is a normal policy set afterwards.
    let out = Command::cargo_bin("lifeboat")
        .unwrap()
        .arg("--policies")
        .arg(&target)
        .args(["--json", "list"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);

    // A folder that is not empty is refused.
    Command::cargo_bin("lifeboat")
        .unwrap()
        .arg("quickstart")
        .arg(&target)
        .assert()
        .code(2);
}
