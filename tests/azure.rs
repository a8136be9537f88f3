//! The Azure backend against a real Blob service API: an Azurite emulator started by
//! scripts/peers/azurite.sh, whose address arrives in LIFEBOAT_TEST_AZURE_ENDPOINT.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use lifeboat::policy::{AzureConfig, Backend, Repository};
use lifeboat::storage::azure::{AzureCredentials, AzureStore, SHA256_METADATA};
use lifeboat::storage::{self, Part, PutOptions, StorageError, Store};
use md5::Md5;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

#[path = "support/azurite.rs"]
mod azurite;

use azurite::{ACCOUNT, ACCOUNT_KEY, account_sas, endpoint};

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn repository(container: &str, max_in_flight: usize) -> (Repository, AzureConfig) {
    let cfg = AzureConfig {
        account: ACCOUNT.into(),
        container: container.into(),
        prefix: "backups/lb".into(),
        endpoint: Some(endpoint()),
    };
    let repo = Repository {
        name: "azure".into(),
        backend: Backend::Azure(cfg.clone()),
        part_size: 64 << 10,
        max_in_flight,
        read_timeout: std::time::Duration::from_secs(10),
        file: PathBuf::from("/p/p.toml"),
    };
    (repo, cfg)
}

fn container_name(tag: &str) -> String {
    format!("lb-{tag}-{:08x}", rand::random::<u32>())
}

async fn connect(container: &str, credentials: AzureCredentials) -> AzureStore {
    let (repo, cfg) = repository(container, 4);
    AzureStore::connect_with(&repo, &cfg, credentials)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A store on a fresh container of its own, with account-key (Shared Key) auth.
async fn fresh_store(tag: &str) -> AzureStore {
    let s = connect(
        &container_name(tag),
        AzureCredentials::AccountKey(ACCOUNT_KEY.into()),
    )
    .await;
    s.create_container_for_tests().await.unwrap();
    s
}

#[tokio::test]
async fn azure_passes_the_conformance_suite_with_the_account_key() {
    let s = fresh_store("key").await;
    storage::conformance::run(&s).await;
}

#[tokio::test]
async fn azure_passes_the_conformance_suite_with_a_sas() {
    let container = container_name("sas");
    let s = connect(
        &container,
        AzureCredentials::Sas(format!("?{}", account_sas())),
    )
    .await;
    s.create_container_for_tests().await.unwrap();
    storage::conformance::run(&s).await;
}

#[tokio::test]
async fn a_block_altered_after_its_md5_was_computed_is_refused_by_the_server() {
    let s = fresh_store("md5").await;
    let data = Bytes::from(vec![42u8; 100_000]);
    let md5: [u8; 16] = Md5::digest(&data).into();
    let mut altered = data.to_vec();
    altered[50_000] ^= 1;
    let err = s
        .stage_block_for_tests("x/corrupt", Bytes::from(altered), md5)
        .await
        .unwrap_err();
    let StorageError::Other { message, .. } = &err else {
        panic!("expected a refusal, got {err}");
    };
    // Azure answers Md5Mismatch; Azurite says InvalidOperation.
    assert!(
        message.contains("HTTP 400")
            && (message.contains("Md5Mismatch") || message.contains("InvalidOperation")),
        "{err}"
    );
    assert!(message.contains("stage block"), "{err}");
    // The intact bytes with the same MD5 are accepted.
    s.stage_block_for_tests("x/corrupt", data, md5)
        .await
        .unwrap();
    assert!(s.head("x/corrupt").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn a_put_whose_body_does_not_match_its_md5_is_refused_by_the_server() {
    let s = fresh_store("putmd5").await;
    let md5: [u8; 16] = Md5::digest(b"intended").into();
    let err = s
        .put_with_md5_for_tests("p", Bytes::from_static(b"intendee"), md5)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("HTTP 400")
            && (err.to_string().contains("Md5Mismatch")
                || err.to_string().contains("InvalidOperation")),
        "{err}"
    );
    assert!(s.head("p").await.unwrap_err().is_not_found());
    s.put_with_md5_for_tests("p", Bytes::from_static(b"intended"), md5)
        .await
        .unwrap();
    assert_eq!(&s.get("p").await.unwrap()[..], b"intended");
}

fn part(index: usize, offset: u64, data: Bytes) -> Part {
    Part::new(index, offset, data)
}

#[tokio::test]
async fn parts_sent_at_once_and_out_of_order_are_committed_in_order_with_md5_and_sha256() {
    let container = container_name("order");
    let (repo, cfg) = repository(&container, 3);
    let s = AzureStore::connect_with(
        &repo,
        &cfg,
        AzureCredentials::AccountKey(ACCOUNT_KEY.into()),
    )
    .await
    .unwrap();
    s.create_container_for_tests().await.unwrap();
    let parts: Vec<Bytes> = (0..12u8)
        .map(|i| Bytes::from(vec![i; 64 << 10]))
        .chain([Bytes::from_static(b"end")])
        .collect();
    let up = s.put_multipart("big", &PutOptions::create()).await.unwrap();
    let mut all = Vec::new();
    let mut offset = 0;
    for (i, p) in parts.iter().enumerate() {
        all.push(part(i, offset, p.clone()));
        offset += p.len() as u64;
    }
    // Backwards, all at once, and one part twice (as a retry sends it).
    all.reverse();
    all.push(all[3].clone());
    futures::future::try_join_all(all.into_iter().map(|p| up.put_part(p)))
        .await
        .unwrap();
    let receipt = up.complete(parts.len()).await.unwrap();
    let whole: Vec<u8> = parts.concat();
    assert_eq!(
        receipt.provider_checksum,
        Some(format!("md5:{}", B64.encode(Md5::digest(&whole))))
    );
    assert_eq!(&s.get("big").await.unwrap()[..], &whole[..]);
    assert_eq!(
        s.get_range("big", (64 << 10) - 2..(64 << 10) + 2)
            .await
            .unwrap()[..],
        [0, 0, 1, 1]
    );
    let meta = s.metadata_for_tests("big").await.unwrap();
    assert_eq!(meta[SHA256_METADATA], hex::encode(sha(&whole)));
    // Blob names carry the repository prefix; keys do not.
    let listed = s.list("").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, "big");
    assert_eq!(listed[0].size, whole.len() as u64);
}

#[tokio::test]
async fn an_upload_without_parts_commits_an_empty_object() {
    let s = fresh_store("empty").await;
    let up = s.put_multipart("e", &PutOptions::create()).await.unwrap();
    up.put_part(part(0, 0, Bytes::new())).await.unwrap();
    let receipt = up.complete(1).await.unwrap();
    assert_eq!(
        receipt.provider_checksum,
        Some(format!("md5:{}", B64.encode(Md5::digest(b""))))
    );
    assert_eq!(s.head("e").await.unwrap().size, 0);
    assert!(s.get("e").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_create_only_commit_over_an_existing_blob_is_refused() {
    let s = fresh_store("exists").await;
    s.put("k", Bytes::from_static(b"first"), &PutOptions::default())
        .await
        .unwrap();
    let up = s.put_multipart("k", &PutOptions::create()).await.unwrap();
    up.put_part(part(0, 0, Bytes::from_static(b"second")))
        .await
        .unwrap();
    let err = up.complete(1).await.unwrap_err();
    assert!(
        matches!(err, StorageError::AlreadyExists { .. }),
        "expected AlreadyExists, got {err}"
    );
    assert_eq!(&s.get("k").await.unwrap()[..], b"first");
    // Overwrite mode replaces it.
    let up = s.put_multipart("k", &PutOptions::default()).await.unwrap();
    up.put_part(part(0, 0, Bytes::from_static(b"second")))
        .await
        .unwrap();
    up.complete(1).await.unwrap();
    assert_eq!(&s.get("k").await.unwrap()[..], b"second");
}

#[tokio::test]
async fn a_wrong_key_is_refused_without_retry_and_never_quoted() {
    let container = container_name("badkey");
    connect(&container, AzureCredentials::AccountKey(ACCOUNT_KEY.into()))
        .await
        .create_container_for_tests()
        .await
        .unwrap();
    let wrong = B64.encode([7u8; 64]);
    let s = connect(&container, AzureCredentials::AccountKey(wrong.clone())).await;
    let err = s.get("k").await.unwrap_err();
    let StorageError::Other {
        message, retryable, ..
    } = &err
    else {
        panic!("expected an authorisation failure, got {err}");
    };
    assert!(message.contains("HTTP 403"), "{err}");
    assert!(
        message.contains("AZURE_STORAGE_KEY"),
        "the fix is named: {err}"
    );
    assert!(!retryable, "{err}");
    assert!(!err.to_string().contains(&wrong), "{err}");
}

#[tokio::test]
async fn a_missing_container_is_named_and_the_sas_signature_never_quoted() {
    let container = container_name("missing");
    let sas = account_sas();
    let sig = url::form_urlencoded::parse(sas.as_bytes())
        .find(|(k, _)| k == "sig")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let s = connect(&container, AzureCredentials::Sas(sas.clone())).await;
    let err = s.get("k").await.unwrap_err();
    assert!(
        !err.is_not_found(),
        "a missing container is not a missing key: {err}"
    );
    let text = err.to_string();
    assert!(text.contains(&container), "{text}");
    assert!(!text.contains(&sig), "{text}");
    // A connection refused (nothing listens) is retryable, and the URL it quotes hides
    // the signature too.
    let (repo, mut cfg) = repository(&container, 1);
    cfg.endpoint = Some("http://127.0.0.1:9/devstoreaccount1".into());
    let s = AzureStore::connect_with(&repo, &cfg, AzureCredentials::Sas(sas))
        .await
        .unwrap();
    let err = s.head("k").await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Other {
                retryable: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.to_string().contains(&sig), "{err}");
}

#[tokio::test]
async fn entra_id_is_refused_on_a_plain_http_endpoint() {
    // Bearer tokens must not travel in clear text; the emulator speaks http.
    let (repo, cfg) = repository(&container_name("entra"), 1);
    let err = AzureStore::connect_with(&repo, &cfg, AzureCredentials::EntraId)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("must use https"), "{err}");
    assert!(err.to_string().contains("repository azure"), "{err}");
}
