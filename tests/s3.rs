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
#[path = "support/proxy.rs"]
mod proxy;

use lifeboat::storage::layout;
use lifeboat::storage::wrap::{RetryPolicy, RetryStore};
use proxy::{Mode, Proxy, Request};
use std::sync::Arc;

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
    store_at(&endpoint(), bucket, extra).await
}

/// The same, with `endpoint` in front of moto (a fault-injecting proxy).
async fn store_at(endpoint: &str, bucket: &str, extra: &str) -> S3Store {
    let text = format!(
        r#"
[repositories.s3]
url = "s3://{bucket}/backups"
region = "us-east-1"
endpoint = "{endpoint}"
path-style = true
part-size = "5MiB"
read-timeout = "3s"
{extra}
[sources.x]
kind = "sqlite"
path = "x.db"
destinations = ["s3"]
"#
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
    let key = layout::data_key("a", &layout::new_backup_id(Utc::now()));
    let up = s.put_multipart(&key, &PutOptions::create()).await.unwrap();
    up.put_part(part(0, 0, Bytes::from_static(b"orphan")))
        .await
        .unwrap();
    // A crash: the upload is neither completed nor aborted.
    drop(up);
    // moto reports every upload as initiated on 2010-11-10, so only "older than now"
    // can be exercised here; real S3 reports the real time.
    let opts = storage::CleanupOptions {
        prefix: layout::source_prefix("a"),
        before: Utc::now() + Duration::minutes(1),
        started_before: None,
    };
    assert_eq!(s.cleanup_incomplete(&opts).await.unwrap(), 1);
    let uploads = s
        .client()
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty());
}

/// Retries as lifeboat's stores make them (`storage::open`), with short pauses.
const QUICK: RetryPolicy = RetryPolicy {
    max_attempts: 4,
    base_delay: std::time::Duration::from_millis(20),
    max_delay: std::time::Duration::from_millis(100),
};

/// A retrying store through a fresh proxy in front of moto, on a new bucket.
async fn through_proxy(tag: &str) -> (Proxy, S3Store, RetryStore) {
    let proxy = Proxy::start(endpoint().trim_start_matches("http://"));
    let bucket = bucket_name(tag);
    let s = store_at(&proxy.url(), &bucket, "").await;
    create_bucket(&s, false).await;
    let retrying = RetryStore::new(Arc::new(s.clone()), QUICK);
    (proxy, s, retrying)
}

/// Seen in a fault campaign: the answer to a successful manifest put was lost, the
/// retry met "already exists", and a committed backup was reported failed.
#[tokio::test(flavor = "multi_thread")]
async fn a_create_only_put_whose_answer_is_lost_is_ours_on_retry() {
    let (proxy, _s, store) = through_proxy("lostput").await;
    let key = layout::manifest_key("app", "20261201T000000Z-0001");
    let body = Bytes::from_static(b"{\"backup-id\": \"20261201T000000Z-0001\"}");
    proxy.set(Mode::LoseResponse(Request::new("PUT", "manifest.json", 1)));
    store
        .put(&key, body.clone(), &PutOptions::create())
        .await
        .expect("the manifest the first attempt wrote is ours");
    assert_eq!(proxy.mode(), Mode::Pass, "the answer was never lost");
    assert_eq!(store.get(&key).await.unwrap(), body);

    // Someone else's object is still refused, lost answer or not.
    proxy.set(Mode::LoseResponse(Request::new("PUT", "manifest.json", 1)));
    let err = store
        .put(&key, Bytes::from_static(b"{}"), &PutOptions::create())
        .await
        .unwrap_err();
    assert!(
        matches!(err, storage::StorageError::AlreadyExists { .. }),
        "{err}"
    );
    assert_eq!(store.get(&key).await.unwrap(), body);
}

/// The same for the create of a lease generation: a lease that was won must not look
/// lost (the run would be refused as locked by itself until the lease expired).
#[tokio::test(flavor = "multi_thread")]
async fn a_lease_whose_create_answer_is_lost_is_held() {
    use lifeboat::scheduler::lease::Lease;
    let (proxy, _s, store) = through_proxy("lostlease").await;
    let store: Arc<dyn Store> = Arc::new(store);
    proxy.set(Mode::LoseResponse(Request::new("PUT", "_leases/app/", 1)));
    let lease = Lease::acquire(
        store.clone(),
        "app",
        "host-a/1/beef",
        Duration::seconds(60),
        Utc::now(),
    )
    .await
    .expect("the lease the first attempt created is ours");
    assert_eq!(proxy.mode(), Mode::Pass, "the answer was never lost");
    assert_eq!(lease.record().holder, "host-a/1/beef");
    assert_eq!(lease.record().generation, 1);
}

/// Seen in a fault campaign: one reset on CompleteMultipartUpload failed the backup,
/// as complete was never retried. Its answer lost once (S3 answers the repeat), twice
/// (the upload may be gone: HEAD and the composite checksum decide), or the request
/// never arriving: the upload commits, whole, with the composite checksum.
#[tokio::test(flavor = "multi_thread")]
async fn a_multipart_complete_whose_answer_is_lost_is_retried_and_commits() {
    let (proxy, s, store) = through_proxy("lostcomplete").await;
    let faults = [
        (
            "create",
            Mode::LoseResponse(Request::new("POST", "uploadId=", 1)),
        ),
        (
            "create",
            Mode::LoseResponse(Request::new("POST", "uploadId=", 2)),
        ),
        ("create", Mode::Reset(Request::new("POST", "uploadId=", 1))),
        (
            "overwrite",
            Mode::LoseResponse(Request::new("POST", "uploadId=", 1)),
        ),
        (
            "overwrite",
            Mode::LoseResponse(Request::new("POST", "uploadId=", 2)),
        ),
    ];
    for (i, (mode, fault)) in faults.into_iter().enumerate() {
        let key = format!("app/{}/data", layout::new_backup_id(Utc::now()));
        let opts = match mode {
            "create" => PutOptions::create(),
            _ => PutOptions::default(),
        };
        let up = store.put_multipart(&key, &opts).await.unwrap();
        let parts = [
            Bytes::from(vec![i as u8; 5 << 20]),
            Bytes::from_static(b"end"),
        ];
        let mut h = Sha256::new();
        let mut offset = 0;
        for (n, data) in parts.iter().enumerate() {
            let p = part(n, offset, data.clone());
            offset += data.len() as u64;
            h.update(p.sha256);
            up.put_part(p).await.unwrap();
        }
        proxy.set(fault);
        let receipt = up
            .complete(parts.len())
            .await
            .unwrap_or_else(|e| panic!("{fault:?} on a {mode} upload: {e}"));
        assert_eq!(
            proxy.mode(),
            Mode::Pass,
            "{fault:?}: the fault never happened"
        );
        let digest =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, h.finalize());
        let checksum = receipt.provider_checksum.expect("a composite checksum");
        assert!(
            checksum == format!("s3-composite-sha256:{digest}")
                || checksum == format!("s3-composite-sha256:{digest}-2"),
            "{fault:?}: {checksum}"
        );
        assert_eq!(s.head(&key).await.unwrap().size, (5 << 20) + 3);
        let uploads = s
            .client()
            .list_multipart_uploads()
            .bucket(s.bucket())
            .send()
            .await
            .unwrap();
        assert!(uploads.uploads().is_empty(), "{fault:?}: {uploads:?}");
    }
}

/// A complete repeated after a lost answer is accepted only for this upload's object:
/// a create-only complete that finds another writer's object there fails.
#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_complete_never_accepts_an_object_that_is_not_this_uploads() {
    let (proxy, s, _store) = through_proxy("notours").await;
    let key = "app/20261201T000000Z-0002/data";
    let up = s.put_multipart(key, &PutOptions::create()).await.unwrap();
    up.put_part(part(0, 0, Bytes::from_static(b"ours")))
        .await
        .unwrap();
    // The first complete never arrives; meanwhile another writer puts the key.
    proxy.set(Mode::Reset(Request::new("POST", "uploadId=", 1)));
    let err = up.complete(1).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    moto::client()
        .await
        .put_object()
        .bucket(s.bucket())
        .key(format!("backups/{key}"))
        .body(Bytes::from_static(b"theirs").into())
        .send()
        .await
        .unwrap();
    let err = up.complete(1).await.unwrap_err();
    assert!(
        matches!(err, storage::StorageError::AlreadyExists { .. }),
        "{err}"
    );
    assert_eq!(&s.get(key).await.unwrap()[..], b"theirs");
}

/// A policy set in a temporary folder: `repos` as (name, TOML body), and `sources` as
/// (name, destinations) of `file` sources reading `DIR/NAME.in`.
struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new(repos: &[(&str, String)], sources: &[(&str, &[&str])]) -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for (name, body) in repos {
            text.push_str(&format!("[repositories.{name}]\n{body}\n\n"));
        }
        for (name, dests) in sources {
            let input = dir.path().join(format!("{name}.in"));
            std::fs::write(&input, vec![7u8; 1 << 20]).unwrap();
            let dests: Vec<String> = dests.iter().map(|d| format!("\"{d}\"")).collect();
            text.push_str(&format!(
                "[sources.{name}]\nkind = \"file\"\npath = \"{}\"\ndestinations = [{}]\nretention = {{ keep-last = 3 }}\n\n",
                input.display(),
                dests.join(", ")
            ));
        }
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/lifeboat.toml"), text).unwrap();
        Cli { dir }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        assert_cmd::Command::cargo_bin("lifeboat")
            .unwrap()
            .arg("--policies")
            .arg(self.dir.path().join("policies"))
            .env_remove("LIFEBOAT_POLICIES")
            .env_remove("LIFEBOAT_FAILPOINT")
            .env_remove("LIFEBOAT_NOW")
            .env("LIFEBOAT_SPOOL_DIR", self.dir.path().join("spool"))
            .args(args)
            .output()
            .unwrap()
    }
}

fn s3_repo(endpoint: &str, url: &str) -> String {
    format!(
        "url = \"{url}\"\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\npath-style = true\npart-size = \"5MiB\"\nread-timeout = \"3s\""
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The campaign's two findings end to end: `lifeboat backup` whose manifest put answer
/// is lost, or whose CompleteMultipartUpload is reset or loses its answer, exits 0 with
/// the backup committed, listed and verifying.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_whose_manifest_or_complete_answer_is_lost_is_reported_committed() {
    let s3 = moto::client().await;
    let bucket = bucket_name("lostcli");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let proxy = Proxy::start(endpoint().trim_start_matches("http://"));
    let cli = Cli::new(
        &[(
            "s3",
            s3_repo(&proxy.url(), &format!("s3://{bucket}/backups")),
        )],
        &[("app", &["s3"])],
    );
    let faults = [
        Mode::LoseResponse(Request::new("PUT", "manifest.json", 1)),
        Mode::LoseResponse(Request::new("POST", "uploadId=", 1)),
        Mode::Reset(Request::new("POST", "uploadId=", 1)),
    ];
    for (i, fault) in faults.into_iter().enumerate() {
        proxy.set(fault);
        let out = cli.run(&["backup", "app"]);
        assert!(out.status.success(), "{fault:?}: {}", text(&out.stderr));
        assert_eq!(
            proxy.mode(),
            Mode::Pass,
            "{fault:?}: the fault never happened"
        );
        let out = cli.run(&["--json", "list"]);
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            listed.as_array().map(Vec::len),
            Some(i + 1),
            "{fault:?}: {listed}"
        );
    }
    let out = cli.run(&["verify", "--all"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// An unfinished upload started straight through a plain client, as another run (or
/// another tool) would leave it.
async fn open_upload(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
    s3.create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string()
}

async fn open_upload_keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let out = s3
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let mut keys: Vec<String> = out
        .uploads()
        .iter()
        .filter_map(|u| u.key().map(str::to_string))
        .collect();
    keys.sort();
    keys
}

/// Prune of one source used to abort every unfinished upload older than 24 hours in
/// the whole bucket (no prefix here): another source's and another tool's too. moto
/// dates every upload 2010, so all of these are "old" by the store's clock.
#[tokio::test(flavor = "multi_thread")]
async fn prune_aborts_only_the_pruned_sources_own_stale_uploads() {
    let s3 = moto::client().await;
    let bucket = bucket_name("sweep");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let cli = Cli::new(
        &[("s3", s3_repo(&endpoint(), &format!("s3://{bucket}")))],
        &[("app", &["s3"]), ("other", &["s3"])],
    );
    let old = layout::new_backup_id(Utc::now() - Duration::days(3));
    let stale = layout::data_key("app", &old);
    let kept = [
        layout::data_key("other", &old),
        layout::data_key("application", &old),
        "app/notes/upload.bin".to_string(),
        "tools/export.tar".to_string(),
    ];
    open_upload(&s3, &bucket, &stale).await;
    for key in &kept {
        open_upload(&s3, &bucket, key).await;
    }
    let out = cli.run(&["prune", "app"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut want = kept.to_vec();
    want.sort();
    assert_eq!(open_upload_keys(&s3, &bucket).await, want);
}

/// An upload of a run that holds a live lease is never aborted, however long ago its
/// run began. Here the lease sits in the source's second destination (the first was
/// unreachable when that run took it), beside its upload.
#[tokio::test(flavor = "multi_thread")]
async fn prune_keeps_an_upload_that_a_live_lease_covers() {
    use lifeboat::scheduler::lease::LeaseRecord;
    let s3 = moto::client().await;
    let bucket = bucket_name("leased");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let cli = Cli::new(
        &[
            ("one", s3_repo(&endpoint(), &format!("s3://{bucket}/one"))),
            ("two", s3_repo(&endpoint(), &format!("s3://{bucket}/two"))),
        ],
        &[("app", &["one", "two"])],
    );
    let now = Utc::now();
    // A run that took its lease 30 hours ago and still renews it.
    let record = LeaseRecord {
        source: "app".into(),
        holder: "host-b/4242/beef".into(),
        generation: 1,
        acquired_at: now - Duration::hours(30),
        expires_at: now + Duration::minutes(5),
        process: None,
    };
    s3.put_object()
        .bucket(&bucket)
        .key(format!("two/{}", layout::lease_key("app", 1)))
        .body(serde_json::to_vec(&record).unwrap().into())
        .send()
        .await
        .unwrap();
    let running = layout::data_key("app", &layout::new_backup_id(now - Duration::hours(29)));
    let crashed = layout::data_key("app", &layout::new_backup_id(now - Duration::days(3)));
    for repo in ["one", "two"] {
        open_upload(&s3, &bucket, &format!("{repo}/{running}")).await;
        open_upload(&s3, &bucket, &format!("{repo}/{crashed}")).await;
    }
    let out = cli.run(&["prune", "app"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        open_upload_keys(&s3, &bucket).await,
        vec![format!("one/{running}"), format!("two/{running}")]
    );
}
