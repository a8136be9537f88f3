//! One source read once, streamed to several repositories at the same time.

use crate::common::*;
use crate::{azurite, moto};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[tokio::test(flavor = "multi_thread")]
async fn a_source_read_once_commits_everywhere_with_equal_hashes() {
    let s3 = moto::client().await;
    let bucket = moto::bucket_name("fan");
    moto::create_bucket(&s3, &bucket).await;
    let container = azurite::container_name("fan");
    azurite::create_container(&container).await;
    let local_dir = tempfile::tempdir().unwrap();
    let env = env(&[
        ("s3", s3_repo(&moto::endpoint(), &bucket)),
        ("azure", azurite::repo(&azurite::base(), &container)),
        ("local", local_repo(local_dir.path())),
    ]);
    // A named pipe: whatever is read from it is gone, so a second read would see nothing.
    let data = noise(12 << 20);
    let raw_sha = hex::encode(Sha256::digest(&data));
    let writer = fifo_once(&env.input, data.clone());
    let out = env
        .cmd()
        .args(["--json", "backup", "stream"])
        .output()
        .unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let out = env.cmd().args(["--json", "list"]).output().unwrap();
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for r in &rows {
        assert_eq!(r["backup-id"], rows[0]["backup-id"]);
        assert_eq!(r["stored-sha256"], rows[0]["stored-sha256"]);
    }
    let mut repos: Vec<&str> = rows
        .iter()
        .map(|r| r["repository"].as_str().unwrap())
        .collect();
    repos.sort();
    assert_eq!(repos, ["azure", "local", "s3"]);
    assert!(
        moto::keys(&s3, &bucket)
            .await
            .iter()
            .any(|k| k.ends_with("/manifest.json"))
    );

    // Each copy restores to exactly the bytes that went through the pipe.
    for repo in ["s3", "azure", "local"] {
        let target = env.dir.path().join(format!("restored-{repo}"));
        env.cmd()
            .args(["restore", "stream", "--from", repo, "--to"])
            .arg(&target)
            .assert()
            .success();
        let got = std::fs::read(&target).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&got)), raw_sha, "{repo}");
    }
    env.cmd().args(["verify"]).assert().success();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_destination_makes_the_run_partial_and_the_others_commit() {
    let s3 = moto::client().await;
    let bucket = moto::bucket_name("part");
    moto::create_bucket(&s3, &bucket).await;
    let local_dir = tempfile::tempdir().unwrap();
    let env = env(&[
        ("s3", s3_repo(&moto::endpoint(), &bucket)),
        // A bucket that does not exist: every write fails, permanently.
        (
            "missing",
            s3_repo(&moto::endpoint(), &moto::bucket_name("absent")),
        ),
        ("local", local_repo(local_dir.path())),
    ]);
    env.write_input(3 << 20);
    let out = env.cmd().args(["backup", "stream"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stdout(&out).contains("missing: FAILED"), "{}", stdout(&out));
    let out = env.cmd().args(["--json", "list"]).output().unwrap();
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut repos: Vec<&str> = rows
        .iter()
        .map(|r| r["repository"].as_str().unwrap())
        .collect();
    repos.sort();
    assert_eq!(repos, ["local", "s3"]);
}
