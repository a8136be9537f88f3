//! A `files` source: backed up, skipped while unchanged, backed up again after a
//! change, restored byte for byte.

use crate::common::*;
use serde_json::Value;
use std::path::Path;

struct Files {
    env: Env,
    conf: std::path::PathBuf,
}

fn files_env() -> Files {
    let env = Env::new("64KiB", "keep-last = 5");
    // Paths are relative to the policy file.
    let conf = env.policies.clone();
    std::fs::create_dir_all(conf.join("values/prod")).unwrap();
    std::fs::write(conf.join("values/base.yaml"), "replicas: 1\n").unwrap();
    std::fs::write(conf.join("values/prod/override.yaml"), "replicas: 3\n").unwrap();
    std::fs::write(conf.join("app.yaml"), "kind: Deployment\n").unwrap();
    std::fs::write(
        env.policies.join("conf.toml"),
        "[sources.conf]\nkind = \"files\"\npaths = [\"values/\", \"app.yaml\"]\ndestinations = [\"local\"]\n",
    )
    .unwrap();
    Files { env, conf }
}

fn backup(f: &Files, when: &str) -> Value {
    let out = f
        .env
        .cmd()
        .env("LIFEBOAT_NOW", when)
        .args(["--json", "backup", "conf"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["backups"][0].clone()
}

fn conf_ids(f: &Files) -> Vec<String> {
    f.env
        .list()
        .iter()
        .filter(|b| b["source"] == "conf")
        .map(|b| b["backup-id"].as_str().unwrap().to_string())
        .collect()
}

fn run_log(f: &Files) -> Vec<(String, String)> {
    let db = rusqlite::Connection::open(f.env.policies.join(".lifeboat/catalog.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT status, detail FROM runs WHERE source = 'conf' ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for rel in ["app.yaml", "values/base.yaml", "values/prod/override.yaml"] {
        out.push((rel.to_string(), std::fs::read(dir.join(rel)).unwrap()));
    }
    out
}

#[test]
fn a_files_source_is_skipped_while_unchanged_and_restores_byte_identical() {
    let f = files_env();
    let first = backup(&f, "2026-04-01T00:00:00Z");
    let first_id = first["backup-id"].as_str().unwrap().to_string();
    assert_eq!(first["destinations"][0]["committed"], true);
    assert_eq!(first["counts"]["files"], 3);
    assert_eq!(first["skipped"], Value::Null);
    assert_eq!(conf_ids(&f), vec![first_id.clone()]);

    // Nothing changed (a touch alone is no change): nothing uploaded, exit 0.
    let before = f.env.repo_files();
    std::fs::File::options()
        .write(true)
        .open(f.conf.join("app.yaml"))
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    let second = backup(&f, "2026-04-02T00:00:00Z");
    assert_eq!(
        second["skipped"],
        format!("unchanged since {first_id}").as_str()
    );
    assert_eq!(second["destinations"][0]["committed"], false);
    assert_eq!(conf_ids(&f), vec![first_id.clone()]);
    assert_eq!(
        f.env.repo_files(),
        before,
        "a skipped run wrote to the repository"
    );
    let out = f
        .env
        .cmd()
        .env("LIFEBOAT_NOW", "2026-04-02T12:00:00Z")
        .args(["backup", "conf"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("conf: skipped: unchanged since {first_id}")),
        "{}",
        stdout(&out)
    );

    // One file changes: a new backup.
    std::fs::write(f.conf.join("values/prod/override.yaml"), "replicas: 5\n").unwrap();
    let third = backup(&f, "2026-04-03T00:00:00Z");
    let third_id = third["backup-id"].as_str().unwrap().to_string();
    assert_eq!(third["skipped"], Value::Null);
    assert_eq!(third["destinations"][0]["committed"], true);
    assert_eq!(conf_ids(&f), vec![third_id.clone(), first_id.clone()]);

    let statuses: Vec<String> = run_log(&f).into_iter().map(|r| r.0).collect();
    assert_eq!(statuses, ["committed", "skipped", "skipped", "committed"]);
    assert_eq!(run_log(&f)[1].1, format!("unchanged since {first_id}"));

    // Restore into a new folder: the tree, byte for byte.
    let target = f.env.dir.path().join("restored");
    let out = f
        .env
        .cmd()
        .args(["restore", "conf", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(tree(&target), tree(&f.conf));

    // The older backup restores the older content, over the folder with --force.
    let out = f
        .env
        .cmd()
        .args(["restore", "conf", "--force", "--backup", &first_id, "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        std::fs::read(target.join("values/prod/override.yaml")).unwrap(),
        b"replicas: 3\n"
    );
    f.env.cmd().args(["verify", "--all"]).assert().success();
}
