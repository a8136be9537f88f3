//! The S3 backend against a real S3 API: a moto server started by scripts/test.sh
//! (scripts/peers/moto.sh), whose address arrives in LIFEBOAT_TEST_S3_ENDPOINT.

use aws_sdk_s3::types::ChecksumMode;
use bytes::Bytes;
use chrono::{Duration, Utc};
use lifeboat::policy::PolicySet;
use lifeboat::storage::s3::S3Store;
use lifeboat::storage::{self, Part, PutOptions, Store};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

#[path = "support/moto.rs"]
mod moto;

fn endpoint() -> String {
    std::env::var("LIFEBOAT_TEST_S3_ENDPOINT").expect(
        "LIFEBOAT_TEST_S3_ENDPOINT is not set: run the tests through scripts/test.sh, which starts moto",
    )
}

fn part(index: usize, offset: u64, data: Bytes) -> Part {
    Part::new(index, offset, data)
}

fn bucket_name(tag: &str) -> String {
    format!("lb-{tag}-{:08x}", rand::random::<u32>())
}

/// A store for `s3://BUCKET/backups` on moto, built through the real policy path.
async fn store(bucket: &str, extra: &str) -> S3Store {
    let text = format!(
        r#"
[repositories.s3]
url = "s3://{bucket}/backups"
region = "us-east-1"
endpoint = "{}"
path-style = true
part-size = "5MiB"
{extra}
[sources.x]
kind = "sqlite"
path = "x.db"
destinations = ["s3"]
"#,
        endpoint()
    );
    let set = PolicySet::from_texts(PathBuf::from("/p"), &[(PathBuf::from("/p/p.toml"), text)])
        .unwrap_or_else(|e| panic!("{e}"));
    let repo = &set.repositories["s3"];
    let cfg = match &repo.backend {
        lifeboat::policy::Backend::S3(c) => c.clone(),
        other => panic!("{other}"),
    };
    S3Store::connect(repo, &cfg).await.unwrap()
}

/// Made with a plain client: lifeboat's own records every operation it sends, and the
/// suite-wide record must hold only what lifeboat itself calls (it never creates buckets).
async fn create_bucket(store: &S3Store, lock: bool) {
    let mut req = moto::client().await.create_bucket().bucket(store.bucket());
    if lock {
        req = req.object_lock_enabled_for_bucket(true);
    }
    req.send().await.unwrap();
}

#[tokio::test]
async fn s3_passes_the_conformance_suite() {
    let bucket = bucket_name("conf");
    let s = store(&bucket, "").await;
    create_bucket(&s, false).await;
    storage::conformance::run(&s).await;
}

#[tokio::test]
async fn parts_carry_their_sha256_and_the_composite_checksum_is_returned() {
    let bucket = bucket_name("sum");
    let s = store(&bucket, "").await;
    create_bucket(&s, false).await;
    let parts: Vec<Bytes> = vec![
        Bytes::from(vec![1u8; 5 << 20]),
        Bytes::from(vec![2u8; 5 << 20]),
        Bytes::from_static(b"last"),
    ];
    let up = s
        .put_multipart("a/data", &PutOptions::create())
        .await
        .unwrap();
    let mut digests = Vec::new();
    let mut offset = 0;
    for (i, p) in parts.iter().enumerate() {
        let p = part(i, offset, p.clone());
        offset += p.data.len() as u64;
        digests.push(p.sha256);
        up.put_part(p).await.unwrap();
    }
    let receipt = up.complete(parts.len()).await.unwrap();
    let composite = receipt
        .provider_checksum
        .expect("S3 returns a composite checksum");
    // The composite checksum is the SHA-256 of the parts' SHA-256s, "-N".
    let mut h = Sha256::new();
    for d in &digests {
        h.update(d);
    }
    let digest_of_digests =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, h.finalize());
    // S3 appends the part count ("-3"); moto leaves it out.
    let accepted = [format!("{digest_of_digests}-3"), digest_of_digests.clone()];
    let composite = composite
        .strip_prefix("s3-composite-sha256:")
        .expect("labelled as an S3 composite checksum");
    assert!(accepted.iter().any(|a| a == composite), "{composite}");
    let head = s
        .client()
        .head_object()
        .bucket(&bucket)
        .key("backups/a/data")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.checksum_sha256(), Some(composite));
    assert_eq!(s.head("a/data").await.unwrap().size, (10 << 20) + 4);
}

#[tokio::test]
async fn a_part_whose_bytes_do_not_match_is_refused_before_it_is_sent() {
    // moto stores the declared x-amz-checksum-sha256 without checking it (real S3
    // checks): the store checks each part itself, so nothing wrong is ever sent.
    let bucket = bucket_name("bad");
    let s = store(&bucket, "").await;
    create_bucket(&s, false).await;
    let up = s
        .put_multipart("a/data", &PutOptions::create())
        .await
        .unwrap();
    let mut bad = part(0, 0, Bytes::from_static(b"these bytes"));
    bad.sha256 = Sha256::digest(b"not these bytes").into();
    let err = up.put_part(bad).await.unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    up.abort().await.unwrap();
    let uploads = s
        .client()
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{uploads:?}");
    assert!(s.head("a/data").await.unwrap_err().is_not_found());
}

/// The object lock mode and retain-until (Unix seconds) of `key`, from HEAD: moto
/// answers no GetObjectRetention, and HEAD's lock headers say the same.
async fn lock_headers(s: &S3Store, bucket: &str, key: &str) -> (Option<String>, Option<i64>) {
    let head = s
        .client()
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    (
        head.object_lock_mode().map(|m| m.as_str().to_string()),
        head.object_lock_retain_until_date().map(|t| t.secs()),
    )
}

#[tokio::test]
async fn object_lock_retains_single_puts_and_completed_uploads_until_keep_until() {
    let bucket = bucket_name("lock");
    let s = store(&bucket, "object-lock = { mode = \"governance\" }").await;
    create_bucket(&s, true).await;
    let until = (Utc::now() + Duration::days(3)).with_timezone(&Utc);
    let opts = PutOptions {
        retain_until: Some(until),
        ..PutOptions::create()
    };
    s.put("a/manifest.json", Bytes::from_static(b"{}"), &opts)
        .await
        .unwrap();
    let up = s.put_multipart("a/data", &opts).await.unwrap();
    up.put_part(part(0, 0, Bytes::from_static(b"payload")))
        .await
        .unwrap();
    up.complete(1).await.unwrap();
    for key in ["backups/a/manifest.json", "backups/a/data"] {
        let (mode, got) = lock_headers(&s, &bucket, key).await;
        assert_eq!(mode.as_deref(), Some("GOVERNANCE"), "{key}");
        let got = got.unwrap();
        assert!(
            (got - until.timestamp()).abs() <= 1,
            "{key}: {got} vs {}",
            until.timestamp()
        );
    }
}

/// A source without keep-within keeps nothing beyond its start: its retain-until is
/// already past when the object is written, which real S3 refuses with a 400. No lock
/// is asked for then (moto would accept it, so the test reads the object's headers).
#[tokio::test]
async fn a_retain_until_already_past_asks_for_no_lock() {
    let bucket = bucket_name("pastlock");
    let s = store(&bucket, "object-lock = { mode = \"governance\" }").await;
    create_bucket(&s, true).await;
    let opts = PutOptions {
        retain_until: Some(Utc::now() - Duration::seconds(5)),
        ..PutOptions::create()
    };
    s.put("a/manifest.json", Bytes::from_static(b"{}"), &opts)
        .await
        .unwrap();
    let up = s.put_multipart("a/data", &opts).await.unwrap();
    up.put_part(part(0, 0, Bytes::from_static(b"payload")))
        .await
        .unwrap();
    up.complete(1).await.unwrap();
    for key in ["backups/a/manifest.json", "backups/a/data"] {
        assert_eq!(lock_headers(&s, &bucket, key).await, (None, None), "{key}");
    }
}

#[tokio::test]
async fn stale_multipart_uploads_under_the_prefix_are_aborted() {
    let bucket = bucket_name("stale");
    let s = store(&bucket, "").await;
    create_bucket(&s, false).await;
    let up = s
        .put_multipart("a/data", &PutOptions::create())
        .await
        .unwrap();
    up.put_part(part(0, 0, Bytes::from_static(b"orphan")))
        .await
        .unwrap();
    // A crash: the upload is neither completed nor aborted.
    drop(up);
    // moto reports every upload as initiated on 2010-11-10, so only "older than now"
    // can be exercised here; real S3 reports the real time.
    assert_eq!(
        s.cleanup_incomplete(Utc::now() + Duration::minutes(1))
            .await
            .unwrap(),
        1
    );
    let uploads = s
        .client()
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty());
}
