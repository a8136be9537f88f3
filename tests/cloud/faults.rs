//! Network faults between lifeboat and S3, injected by our proxy in front of moto.

use crate::common::*;
use crate::proxy::{Mode, Proxy};
use crate::{azurite, moto};
use lifeboat::storage::{PutOptions, Store};
use sha2::Digest;

fn has_manifest(keys: &[String]) -> bool {
    keys.iter().any(|k| k.ends_with("/manifest.json"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_cut_mid_upload_commits_nothing_and_leaves_no_upload_behind() {
    let s3 = moto::client().await;
    let bucket = moto::bucket_name("cut");
    moto::create_bucket(&s3, &bucket).await;
    let proxy = Proxy::start(&moto::host_port());
    let env = env(&[("s3", s3_repo(&proxy.url(), &bucket))]);
    env.write_input(12 << 20);

    // Every connection dies after 1 MiB: part bodies (5 MiB) never arrive, retries run
    // out. Small requests (create, abort) still pass.
    proxy.set(Mode::CutAfter(1 << 20));
    let out = env.cmd().args(["backup", "stream"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!has_manifest(&moto::keys(&s3, &bucket).await));
    assert_eq!(
        moto::open_uploads(&s3, &bucket).await,
        0,
        "the upload was not aborted"
    );
    let out = env.cmd().args(["--json", "list"]).output().unwrap();
    assert_eq!(stdout(&out).trim(), "[]");

    // The network is back: the next run commits.
    proxy.set(Mode::Pass);
    env.cmd().args(["backup", "stream"]).assert().success();
    assert!(has_manifest(&moto::keys(&s3, &bucket).await));
    env.cmd().arg("verify").assert().success();
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_503s_are_retried_and_the_backup_commits() {
    let s3 = moto::client().await;
    let bucket = moto::bucket_name("503");
    moto::create_bucket(&s3, &bucket).await;
    let proxy = Proxy::start(&moto::host_port());
    let env = env(&[("s3", s3_repo(&proxy.url(), &bucket))]);
    env.write_input(6 << 20);
    proxy.set(Mode::Status503(3));
    let out = env.cmd().args(["backup", "stream"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("retrying"), "{}", stderr(&out));
    assert!(has_manifest(&moto::keys(&s3, &bucket).await));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_store_times_out_instead_of_hanging() {
    let s3 = moto::client().await;
    let bucket = moto::bucket_name("stall");
    moto::create_bucket(&s3, &bucket).await;
    backup_through_a_stall(&moto::host_port(), |url| ("s3", s3_repo(url, &bucket)));
    assert!(!has_manifest(&moto::keys(&s3, &bucket).await));
}

/// Back up through a proxy that accepts and never answers: the run must end (the
/// read timeout, then bounded retries) with exit 1, not hang.
fn backup_through_a_stall(upstream: &str, repo: impl Fn(&str) -> (&'static str, String)) {
    let proxy = Proxy::start(upstream);
    let env = env(&[repo(&proxy.url())]);
    env.write_input(1 << 20);
    proxy.set(Mode::Stall);
    let out = env
        .cmd()
        .timeout(std::time::Duration::from_secs(120))
        .args(["backup", "stream"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn flipped_bytes_in_s3_and_azure_are_reported_and_restore_falls_back_to_a_good_copy() {
    let s3 = moto::client().await;
    let bucket = moto::bucket_name("flip");
    moto::create_bucket(&s3, &bucket).await;
    let container = azurite::container_name("flip");
    let blobs = azurite::create_container(&container).await;
    let local_dir = tempfile::tempdir().unwrap();
    let env = env(&[
        ("s3", s3_repo(&moto::endpoint(), &bucket)),
        ("azure", azurite::repo(&azurite::base(), &container)),
        ("local", local_repo(local_dir.path())),
    ]);
    let raw_sha = env.write_input(7 << 20);
    env.cmd().args(["backup", "stream"]).assert().success();

    // Rot one byte of the stored object in S3 and in Azure.
    let key = moto::keys(&s3, &bucket)
        .await
        .into_iter()
        .find(|k| k.ends_with("/data"))
        .unwrap();
    let obj = s3
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    let mut bytes = obj.body.collect().await.unwrap().into_bytes().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .body(bytes.into())
        .send()
        .await
        .unwrap();
    let rel = key.trim_start_matches("backups/").to_string();
    let mut bytes = blobs.get(&rel).await.unwrap().to_vec();
    bytes[mid / 3] ^= 0x80;
    blobs
        .put(&rel, bytes.into(), &PutOptions::default())
        .await
        .unwrap();

    let out = env.cmd().arg("verify").output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));
    let text = stdout(&out);
    for repo in ["s3", "azure"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("FAILED") && l.ends_with(&format!(" in {repo}:"))),
            "{repo}: {text}"
        );
    }
    assert!(text.contains("expected sha256"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("OK") && l.contains("in local")),
        "{text}"
    );

    let target = env.dir.path().join("restored");
    let out = env
        .cmd()
        .args(["restore", "stream", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("fell back past s3") && text.contains("fell back past azure"),
        "{text}"
    );
    assert!(text.contains("from local"), "{text}");
    let got = std::fs::read(&target).unwrap();
    assert_eq!(hex::encode(sha2::Sha256::digest(&got)), raw_sha);

    // Asked for a damaged copy alone, restore refuses and leaves no target.
    for repo in ["s3", "azure"] {
        let only = env.dir.path().join(format!("from-{repo}"));
        let out = env
            .cmd()
            .args(["restore", "stream", "--from", repo, "--to"])
            .arg(&only)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
        assert!(!only.exists());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_cut_mid_azure_upload_commits_nothing() {
    let container = azurite::container_name("cut");
    let blobs = azurite::create_container(&container).await;
    let proxy = Proxy::start(&azurite::host_port());
    let env = env(&[("azure", azurite::repo(&proxy.url(), &container))]);
    env.write_input(5 << 20);
    proxy.set(Mode::CutAfter(300_000));
    let out = env.cmd().args(["backup", "stream"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        blobs.list("").await.unwrap().is_empty(),
        "something became visible"
    );

    proxy.set(Mode::Pass);
    env.cmd().args(["backup", "stream"]).assert().success();
    assert!(
        blobs
            .list("")
            .await
            .unwrap()
            .iter()
            .any(|o| o.key.ends_with("/manifest.json"))
    );
    env.cmd().arg("verify").assert().success();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_azure_store_times_out_instead_of_hanging() {
    let container = azurite::container_name("stall");
    let blobs = azurite::create_container(&container).await;
    backup_through_a_stall(&azurite::host_port(), |url| {
        ("azure", azurite::repo(url, &container))
    });
    assert!(blobs.list("").await.unwrap().is_empty());
}
