//! The catalog is a cache: deleted, it is rebuilt from storage with the same backups and
//! the same verification results.

use crate::common::*;

#[test]
fn catalog_rebuild_restores_backups_and_verify_results() {
    let env = Env::new("64KiB", "keep-last = 5");
    make_db(&env.db, 300, 50);
    let first = env.backup();
    let second = env.backup();
    // One verified, one failed verification, to see both survive the rebuild.
    env.cmd().args(["verify", &second]).assert().success();
    flip_byte(&env.object(&first, "data"), None);
    env.cmd().args(["verify", &first]).assert().code(4);
    let before = env.list();

    let catalog = env.policies.join(".lifeboat");
    assert!(catalog.join("catalog.db").exists());
    std::fs::remove_dir_all(&catalog).unwrap();
    env.cmd().args(["catalog", "rebuild"]).assert().success();
    let after = env.list();
    assert_eq!(after, before);
    assert_eq!(after.len(), 2);
    assert_eq!(after[0]["verified"], serde_json::Value::Bool(true));
    assert_eq!(after[1]["verified"], serde_json::Value::Bool(false));
}
