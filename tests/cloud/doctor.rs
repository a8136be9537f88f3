//! `lifeboat doctor` against moto and a local folder.

use crate::common::*;
use crate::moto;
use serde_json::Value;

fn checks(out: &std::process::Output) -> Vec<(String, String, String)> {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut rows = Vec::new();
    for s in v["subjects"].as_array().unwrap() {
        for c in s["checks"].as_array().unwrap() {
            rows.push((
                s["name"].as_str().unwrap().to_string(),
                c["name"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            ));
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_on_healthy_repositories_and_leaves_nothing_behind() {
    let s3 = moto::client().await;
    let bucket = moto::bucket_name("doc");
    moto::create_bucket(&s3, &bucket).await;
    let local_dir = tempfile::tempdir().unwrap();
    let env = env(&[
        ("s3", s3_repo(&moto::endpoint(), &bucket)),
        ("local", local_repo(local_dir.path())),
    ]);
    env.write_input(10);
    let out = env.cmd().args(["--json", "doctor"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = checks(&out);
    for (subject, check, status) in &rows {
        assert_eq!(status, "ok", "{subject}: {check}");
    }
    for want in [
        "reachable",
        "conditional write",
        "clock skew",
        "object lock",
    ] {
        assert!(
            rows.iter()
                .any(|(s, c, _)| s == "repository s3" && c == want),
            "{want}"
        );
    }
    assert!(moto::keys(&s3, &bucket).await.is_empty());
    assert_eq!(std::fs::read_dir(local_dir.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_names_what_is_wrong() {
    let s3 = moto::client().await;
    let bucket = moto::bucket_name("nolock");
    moto::create_bucket(&s3, &bucket).await;
    let env = env(&[
        (
            "locked",
            format!(
                "{}\nobject-lock = {{ mode = \"compliance\" }}",
                s3_repo(&moto::endpoint(), &bucket)
            ),
        ),
        // Nothing listens on port 9.
        ("gone", s3_repo("http://127.0.0.1:9", "lb-nowhere")),
    ]);
    let out = env.cmd().args(["--json", "doctor"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let rows = checks(&out);
    let status = |s: &str, c: &str| {
        rows.iter()
            .find(|(a, b, _)| a == s && b == c)
            .map(|r| r.2.clone())
    };
    assert_eq!(
        status("repository locked", "object lock").as_deref(),
        Some("fail")
    );
    assert_eq!(
        status("repository gone", "reachable").as_deref(),
        Some("fail")
    );
    assert_eq!(status("source stream", "readable").as_deref(), Some("fail"));
}
