//! The Azurite server started by scripts/test.sh (scripts/peers/azurite.sh).
// Shared by several test crates, each of which uses a part.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use lifeboat::policy::{AzureConfig, Backend, Repository};
use lifeboat::storage::azure::{AzureCredentials, AzureStore};

/// Azurite's public development account and its well-known key (an emulator constant).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub fn endpoint() -> String {
    std::env::var("LIFEBOAT_TEST_AZURE_ENDPOINT").expect(
        "LIFEBOAT_TEST_AZURE_ENDPOINT is not set: run the tests through scripts/test.sh, which starts Azurite",
    )
}

/// host:port of Azurite, for the proxy.
pub fn host_port() -> String {
    endpoint()
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

pub fn container_name(tag: &str) -> String {
    format!("lb-{tag}-{:08x}", rand::random::<u32>())
}

/// A store on `container` (prefix `backups`), with the account key.
pub async fn store(container: &str) -> AzureStore {
    let cfg = AzureConfig {
        account: ACCOUNT.into(),
        container: container.into(),
        prefix: "backups".into(),
        endpoint: Some(endpoint()),
    };
    let repo = Repository {
        name: "azure".into(),
        backend: Backend::Azure(cfg.clone()),
        part_size: 1 << 20,
        max_in_flight: 4,
        read_timeout: std::time::Duration::from_secs(10),
        file: "/p/p.toml".into(),
    };
    AzureStore::connect_with(
        &repo,
        &cfg,
        AzureCredentials::AccountKey(ACCOUNT_KEY.into()),
    )
    .await
    .unwrap()
}

pub async fn create_container(name: &str) -> AzureStore {
    let s = store(name).await;
    s.create_container_for_tests().await.unwrap();
    s
}

/// The repository body of a policy, for `endpoint` (Azurite or a proxy in front).
pub fn repo(endpoint: &str, container: &str) -> String {
    format!(
        "url = \"azure://{ACCOUNT}/{container}/backups\"\nendpoint = \"{endpoint}/{ACCOUNT}\"\npart-size = \"1MiB\"\nread-timeout = \"3s\""
    )
}

/// The Azurite base URL without the account path, for `repo`.
pub fn base() -> String {
    endpoint()
        .trim_end_matches(&format!("/{ACCOUNT}"))
        .to_string()
}

/// An account SAS for the blob service (all permissions on containers and blobs), one
/// hour long, signed with the account key.
pub fn account_sas() -> String {
    let expiry = (chrono::Utc::now() + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let (permissions, services, types, version) = ("racwdl", "b", "sco", "2022-11-02");
    // Account SAS string to sign (versions 2020-12-06 and later).
    let to_sign =
        format!("{ACCOUNT}\n{permissions}\n{services}\n{types}\n\n{expiry}\n\n\n{version}\n\n");
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&B64.decode(ACCOUNT_KEY).unwrap()).unwrap();
    mac.update(to_sign.as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("sv", version)
        .append_pair("ss", services)
        .append_pair("srt", types)
        .append_pair("sp", permissions)
        .append_pair("se", &expiry)
        .append_pair("sig", &sig);
    query.finish()
}
