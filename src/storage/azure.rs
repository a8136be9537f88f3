//! Azure Blob Storage repositories (`azure://account/container/prefix`).
//!
//! Every object is a block blob named `prefix/KEY`. How the [`Store`] guarantees map
//! onto Azure:
//! - `put` is one Put Blob request carrying the body's Content-MD5, which the service
//!   checks on arrival; a blob is replaced atomically. Create-only puts and commits send
//!   `If-None-Match: *`.
//! - A multipart upload stages one block per part (each with its own Content-MD5) and
//!   `complete` commits the block list, which is the moment the blob appears, whole.
//!   Staged blocks that are never committed stay invisible (even to listings) and Azure
//!   discards them after seven days, so `abort` has nothing to delete.
//! - [`PutOptions::retain_until`] is not applied: per-blob immutability needs
//!   version-level immutability enabled on the container, which repository settings do
//!   not describe yet.
//!
//! Credentials come from the environment only (see [`AzureCredentials::from_env`]); the
//! account key and SAS signature never appear in messages or logs.

use super::{
    CleanupOptions, MultipartUpload, ObjectMeta, Part, PutMode, PutOptions, StorageError,
    StorageResult, Store, UploadReceipt,
};
use crate::error::{Error, Result};
use crate::policy::{AzureConfig, Repository};
use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind as AzureErrorKind;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{
    ClientMethodOptions, ClientOptions, Context, Etag, Method, RetryOptions, StatusCode, Url,
};
use azure_core::time::OffsetDateTime;
use azure_storage_blob::models::{
    BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders,
    BlobContainerClientListBlobsOptions, BlockBlobClientCommitBlockListOptions,
    BlockBlobClientStageBlockOptions, BlockBlobClientUploadOptions, BlockLookupList,
    StorageErrorCode,
};
use azure_storage_blob::{
    BlobClient, BlobContainerClient, BlobContainerClientOptions, BlockBlobClient,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use hmac::{KeyInit, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::num::NonZero;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use tracing::debug;

/// A SAS query string (`sv=...&sig=...`); takes precedence over the other methods.
pub const SAS_TOKEN_ENV: &str = "AZURE_STORAGE_SAS_TOKEN";
/// The storage account key (base64), used to sign every request with Shared Key.
pub const ACCOUNT_KEY_ENV: &str = "AZURE_STORAGE_KEY";
/// Which Entra ID credential to use when neither a SAS nor a key is set:
/// `workload`, `managed` or `developer` (default: workload identity when
/// `AZURE_FEDERATED_TOKEN_FILE` is set, managed identity when App Service's
/// `IDENTITY_ENDPOINT` is, the Azure CLI / azd login otherwise).
pub const IDENTITY_ENV: &str = "LIFEBOAT_AZURE_IDENTITY";
/// Metadata holding the hex SHA-256 of a blob written by a multipart upload, so the
/// object can be checked without the manifest.
pub const SHA256_METADATA: &str = "lifeboat_sha256";
/// Metadata naming the upload that wrote a blob with a create-only request (see
/// [`AzureStore::written_by`]).
const UPLOAD_METADATA: &str = "lifeboat_upload";

/// A block blob holds at most this many blocks.
const MAX_BLOCKS: usize = 50_000;

/// How requests are authorised.
#[derive(Clone)]
pub enum AzureCredentials {
    /// A shared access signature: the query string, with or without the leading `?`.
    Sas(String),
    /// The storage account key (base64); every request is signed with it (Shared Key).
    AccountKey(String),
    /// A Microsoft Entra ID token from `azure_identity`, chosen by [`IDENTITY_ENV`].
    EntraId,
}

impl fmt::Debug for AzureCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AzureCredentials::Sas(_) => "Sas(..)",
            AzureCredentials::AccountKey(_) => "AccountKey(..)",
            AzureCredentials::EntraId => "EntraId",
        })
    }
}

impl AzureCredentials {
    /// [`SAS_TOKEN_ENV`] if set, else [`ACCOUNT_KEY_ENV`], else Entra ID.
    pub fn from_env() -> AzureCredentials {
        let non_empty = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(sas) = non_empty(SAS_TOKEN_ENV) {
            AzureCredentials::Sas(sas)
        } else if let Some(key) = non_empty(ACCOUNT_KEY_ENV) {
            AzureCredentials::AccountKey(key)
        } else {
            AzureCredentials::EntraId
        }
    }
}

/// What every message names: the repository and where it lives.
#[derive(Debug, Clone)]
struct Target {
    repo: String,
    account: String,
    container: String,
}

impl Target {
    fn other(&self, key: &str, message: impl Into<String>, retryable: bool) -> StorageError {
        StorageError::Other {
            repo: self.repo.clone(),
            key: key.to_string(),
            message: sanitize(&message.into()),
            retryable,
        }
    }

    /// Map an SDK error of `op` on `key`.
    fn error(&self, op: &str, key: &str, e: azure_core::Error) -> StorageError {
        let status = e.http_status();
        let code = error_code(&e);
        if status == Some(StatusCode::NotFound)
            && code.as_deref() != Some(StorageErrorCode::ContainerNotFound.as_ref())
        {
            return StorageError::NotFound {
                repo: self.repo.clone(),
                key: key.to_string(),
            };
        }
        let retryable = match status {
            Some(s) => RETRYABLE_STATUS.contains(&s),
            None => matches!(e.kind(), AzureErrorKind::Io | AzureErrorKind::Connection),
        };
        let fix = match (status, code.as_deref()) {
            (_, Some("ContainerNotFound")) => format!(
                " (create container `{}` in storage account `{}`, or fix the repository url)",
                self.container, self.account
            ),
            (Some(StatusCode::Forbidden), _) => format!(
                " (check {SAS_TOKEN_ENV} or {ACCOUNT_KEY_ENV}, or that the Entra identity holds \
                 `Storage Blob Data Contributor` on account `{}`)",
                self.account
            ),
            _ => String::new(),
        };
        self.other(key, format!("{op}: {}{fix}", describe(&e)), retryable)
    }
}

const RETRYABLE_STATUS: &[StatusCode] = &[
    StatusCode::RequestTimeout,
    StatusCode::TooManyRequests,
    StatusCode::InternalServerError,
    StatusCode::BadGateway,
    StatusCode::ServiceUnavailable,
    StatusCode::GatewayTimeout,
];

fn error_code(e: &azure_core::Error) -> Option<String> {
    match e.kind() {
        AzureErrorKind::HttpResponse { error_code, .. } => error_code.clone(),
        _ => None,
    }
}

/// One line: status, service error code and message for HTTP errors, else the error
/// chain.
fn describe(e: &azure_core::Error) -> String {
    if let AzureErrorKind::HttpResponse { status, .. } = e.kind()
        && let Ok(se) = azure_storage_blob::StorageError::try_from(e.kind().clone().into_error())
    {
        let code = se.error_code.map(|c| format!(" {c}")).unwrap_or_default();
        // The service appends `RequestId:...` and `Time:...` lines to its message.
        let message = se
            .message
            .as_deref()
            .and_then(|m| m.lines().next())
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let request = se
            .request_id
            .map(|r| format!(" (request id {r})"))
            .unwrap_or_default();
        return format!("HTTP {}{code}{message}{request}", u16::from(*status));
    }
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Hide the signature of a SAS that an error may quote in a URL.
fn sanitize(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("sig=") {
        out.push_str(&rest[..i + 4]);
        out.push_str("REDACTED");
        let tail = &rest[i + 4..];
        let end = tail
            .find(|c: char| c == '&' || c == '"' || c == '\'' || c == ')' || c.is_whitespace())
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn to_chrono(t: OffsetDateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()).unwrap_or_default()
}

/// A container (and prefix) in an Azure storage account.
#[derive(Clone)]
pub struct AzureStore {
    target: Arc<Target>,
    prefix: String,
    endpoint: String,
    container: Arc<BlobContainerClient>,
    max_in_flight: usize,
}

impl fmt::Debug for AzureStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureStore")
            .field("repo", &self.target.repo)
            .field("endpoint", &self.endpoint)
            .field("container", &self.target.container)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl AzureStore {
    /// Build the client for `repo`; credentials come from the environment.
    pub async fn connect(repo: &Repository, cfg: &AzureConfig) -> Result<AzureStore> {
        Self::connect_with(repo, cfg, AzureCredentials::from_env()).await
    }

    /// Build the client for `repo` with explicit credentials. Nothing is contacted yet.
    pub async fn connect_with(
        repo: &Repository,
        cfg: &AzureConfig,
        credentials: AzureCredentials,
    ) -> Result<AzureStore> {
        let what = format!("repository {}", repo.name);
        let endpoint = cfg
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://{}.blob.core.windows.net", cfg.account));
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let mut url = Url::parse(&endpoint).map_err(|e| {
            Error::bad_input(format!(
                "{what}: endpoint `{endpoint}` is not a URL ({e}); write e.g. \
                 https://ACCOUNT.blob.core.windows.net"
            ))
        })?;
        url.path_segments_mut()
            .map_err(|()| {
                Error::bad_input(format!("{what}: endpoint `{endpoint}` cannot hold a path"))
            })?
            .pop_if_empty()
            .push(&cfg.container);

        // No retries in the SDK: RetryStore retries every backend the same way, and the
        // SDK's own would turn an emulator 500 into a minute-long hang.
        // The policy's read timeout applies per request, so a stalled store fails (and is
        // retried) instead of hanging; the SDK's default waits much longer.
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(repo.read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::failed(format!("{what}: HTTP client: {e}")))?;
        let mut client_options = ClientOptions {
            retry: RetryOptions::none(),
            transport: Some(azure_core::http::Transport::new(Arc::new(http))),
            ..Default::default()
        };
        // Checked before the signature, which must cover the header.
        client_options
            .per_try_policies
            .push(Arc::new(ContentMd5Policy));
        let mut token: Option<Arc<dyn TokenCredential>> = None;
        let auth = match credentials {
            AzureCredentials::Sas(sas) => {
                url.set_query(Some(sas.trim().trim_start_matches('?')));
                "shared access signature"
            }
            AzureCredentials::AccountKey(key) => {
                let key = B64.decode(key.trim()).map_err(|_| {
                    Error::bad_input(format!(
                        "{what}: {ACCOUNT_KEY_ENV} is not valid base64 (copy key1 or key2 of \
                         storage account `{}` as shown by the portal or `az storage account keys list`)",
                        cfg.account
                    ))
                })?;
                client_options
                    .per_try_policies
                    .push(Arc::new(SharedKeyPolicy {
                        account: cfg.account.clone(),
                        key,
                    }));
                "account key"
            }
            AzureCredentials::EntraId => {
                let (credential, kind) = entra_credential().map_err(|e| {
                    Error::failed(format!(
                        "{what}: no Azure credential: {} (set {SAS_TOKEN_ENV} or \
                         {ACCOUNT_KEY_ENV}, or choose one with {IDENTITY_ENV}=workload|managed|developer)",
                        sanitize(&describe(&e))
                    ))
                })?;
                token = Some(credential);
                kind
            }
        };
        let container = BlobContainerClient::new(
            url,
            token,
            Some(BlobContainerClientOptions {
                client_options,
                ..Default::default()
            }),
        )
        .map_err(|e| {
            Error::bad_input(format!(
                "{what}: endpoint `{endpoint}`: {} (Entra ID needs an https endpoint)",
                sanitize(&describe(&e))
            ))
        })?;
        debug!(
            repository = %repo.name,
            endpoint = %endpoint,
            container = %cfg.container,
            auth,
            "azure store ready"
        );
        Ok(AzureStore {
            target: Arc::new(Target {
                repo: repo.name.clone(),
                account: cfg.account.clone(),
                container: cfg.container.clone(),
            }),
            prefix: cfg.prefix.clone(),
            endpoint,
            container: Arc::new(container),
            max_in_flight: repo.max_in_flight.max(1),
        })
    }

    /// The blob name of `key`, refusing keys that would escape or alias the prefix.
    fn blob_name(&self, key: &str) -> StorageResult<String> {
        let ok = !key.is_empty()
            && key
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if !ok {
            return Err(self.target.other(
                key,
                "invalid key (expected `/`-separated names, none empty, `.` or `..`)",
                false,
            ));
        }
        Ok(self.full(key))
    }

    fn full(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn blob(&self, key: &str) -> StorageResult<BlobClient> {
        Ok(self.container.blob_client(&self.blob_name(key)?))
    }

    fn parallel(&self) -> NonZero<usize> {
        NonZero::new(self.max_in_flight).unwrap_or(NonZero::<usize>::MIN)
    }

    /// One Put Blob request whose Content-MD5 is `md5`: the service refuses the body if
    /// it does not match.
    async fn put_blob(
        &self,
        key: &str,
        data: Bytes,
        md5: [u8; 16],
        mode: PutMode,
    ) -> StorageResult<()> {
        let blob = self.blob(key)?;
        let upload = new_upload_id();
        let len = data.len() as u64;
        let mut options = BlockBlobClientUploadOptions {
            method_options: ClientMethodOptions {
                context: Context::new().with_value(PutBlobMd5(B64.encode(md5))),
            },
            // One request whatever the size: that is what makes the put atomic.
            parallel: Some(NonZero::<usize>::MIN),
            partition_size: NonZero::new(len.max(1)),
            ..Default::default()
        };
        if mode == PutMode::Create {
            options.if_none_match = Some(Etag::from("*"));
            options.metadata = Some(HashMap::from([(UPLOAD_METADATA.into(), upload.clone())]));
        }
        match blob.upload(data.into(), Some(options)).await {
            Ok(_) => Ok(()),
            Err(e) if mode == PutMode::Create && is_exists_conflict(&e) => {
                if self.written_by(key, &upload).await {
                    Ok(())
                } else {
                    Err(self.already_exists(key))
                }
            }
            Err(e) => Err(self.target.error("put", key, e)),
        }
    }

    /// A create-only write met an existing blob: is it the one this upload wrote? That
    /// happens when a retry repeats a request whose first response was lost.
    async fn written_by(&self, key: &str, upload: &str) -> bool {
        let Ok(blob) = self.blob(key) else {
            return false;
        };
        match blob.get_properties(None).await {
            Ok(p) => p
                .metadata()
                .is_ok_and(|m| m.get(UPLOAD_METADATA).is_some_and(|v| v == upload)),
            Err(_) => false,
        }
    }

    fn already_exists(&self, key: &str) -> StorageError {
        StorageError::AlreadyExists {
            repo: self.target.repo.clone(),
            key: key.to_string(),
        }
    }

    /// Create the container (present is fine). Tests use it; repositories are expected
    /// to exist.
    #[doc(hidden)]
    pub async fn create_container_for_tests(&self) -> StorageResult<()> {
        match self.container.create(None).await {
            Ok(_) => Ok(()),
            Err(e)
                if error_code(&e).as_deref()
                    == Some(StorageErrorCode::ContainerAlreadyExists.as_ref()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.target.error("create container", "", e)),
        }
    }

    /// Put `data` with the given Content-MD5, as `put` does, so tests can show that the
    /// header reaches the service.
    #[doc(hidden)]
    pub async fn put_with_md5_for_tests(
        &self,
        key: &str,
        data: Bytes,
        md5: [u8; 16],
    ) -> StorageResult<()> {
        self.put_blob(key, data, md5, PutMode::Overwrite).await
    }

    /// Stage one block of `key` with the given Content-MD5, as `put_part` does, so tests
    /// can show that the service refuses bytes that do not match it.
    #[doc(hidden)]
    pub async fn stage_block_for_tests(
        &self,
        key: &str,
        data: Bytes,
        md5: [u8; 16],
    ) -> StorageResult<()> {
        let blob = self.blob(key)?.block_blob_client();
        let id = block_id(&new_upload_id(), 0);
        stage(&self.target, key, &blob, &id, data, md5).await
    }

    /// The user metadata of `key`.
    #[doc(hidden)]
    pub async fn metadata_for_tests(&self, key: &str) -> StorageResult<HashMap<String, String>> {
        let props = self
            .blob(key)?
            .get_properties(None)
            .await
            .map_err(|e| self.target.error("head", key, e))?;
        props
            .metadata()
            .map_err(|e| self.target.error("head", key, e))
    }
}

fn is_exists_conflict(e: &azure_core::Error) -> bool {
    let code = error_code(e);
    matches!(
        e.http_status(),
        Some(StatusCode::Conflict | StatusCode::PreconditionFailed)
    ) && matches!(
        code.as_deref(),
        Some("BlobAlreadyExists" | "ConditionNotMet") | None
    )
}

fn new_upload_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Block ids must all have the same length within a blob. The upload id keeps two
/// writers of one key (or a crashed earlier attempt) from committing each other's
/// blocks.
fn block_id(upload: &str, index: usize) -> Vec<u8> {
    format!("{upload}{index:08}").into_bytes()
}

async fn stage(
    target: &Target,
    key: &str,
    blob: &BlockBlobClient,
    id: &[u8],
    data: Bytes,
    md5: [u8; 16],
) -> StorageResult<()> {
    let len = data.len() as u64;
    let options = BlockBlobClientStageBlockOptions {
        transactional_content_md5: Some(md5.to_vec()),
        ..Default::default()
    };
    blob.stage_block(id, len, data.into(), Some(options))
        .await
        .map(drop)
        .map_err(|e| target.error("stage block", key, e))
}

#[async_trait]
impl Store for AzureStore {
    fn name(&self) -> &str {
        &self.target.repo
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> StorageResult<()> {
        let md5: [u8; 16] = Md5::digest(&data).into();
        self.put_blob(key, data, md5, opts.mode).await
    }

    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        let blob = self.blob(key)?;
        let options = BlobClientDownloadOptions {
            parallel: Some(self.parallel()),
            ..Default::default()
        };
        let rsp = blob
            .download(Some(options))
            .await
            .map_err(|e| self.target.error("get", key, e))?;
        rsp.body
            .collect()
            .await
            .map_err(|e| self.target.error("get", key, e))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        let want = range.end.saturating_sub(range.start);
        if want == 0 {
            // The service has no empty range; the object must still exist.
            self.head(key).await?;
            return Ok(Bytes::new());
        }
        let blob = self.blob(key)?;
        let options = BlobClientDownloadOptions {
            parallel: Some(self.parallel()),
            range: Some(range.clone().into()),
            ..Default::default()
        };
        let short = |got: u64| {
            self.target.other(
                key,
                format!(
                    "object is shorter than the requested range {}..{} (got {got} bytes)",
                    range.start, range.end
                ),
                false,
            )
        };
        let rsp = match blob.download(Some(options)).await {
            Ok(r) => r,
            Err(e) if e.http_status() == Some(StatusCode::RequestedRangeNotSatisfiable) => {
                return Err(short(0));
            }
            Err(e) => return Err(self.target.error("get range", key, e)),
        };
        let data = rsp
            .body
            .collect()
            .await
            .map_err(|e| self.target.error("get range", key, e))?;
        if data.len() as u64 != want {
            return Err(short(data.len() as u64));
        }
        Ok(data)
    }

    async fn head(&self, key: &str) -> StorageResult<ObjectMeta> {
        let props = self
            .blob(key)?
            .get_properties(None)
            .await
            .map_err(|e| self.target.error("head", key, e))?;
        let header = |e| self.target.error("head", key, e);
        Ok(ObjectMeta {
            key: key.to_string(),
            size: props.content_length().map_err(header)?.unwrap_or(0),
            modified: props
                .last_modified()
                .map_err(header)?
                .map(to_chrono)
                .unwrap_or_default(),
            // Per-blob immutability is not applied (see the module doc).
            retain_until: None,
        })
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        let full = self.full(prefix);
        // Names are returned whole; keys are relative to the repository prefix.
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let options = BlobContainerClientListBlobsOptions {
            prefix: (!full.is_empty()).then_some(full),
            ..Default::default()
        };
        let err = |e| self.target.error("list", prefix, e);
        let mut pages = self
            .container
            .list_blobs(Some(options))
            .map_err(err)?
            .into_pages();
        let mut out = Vec::new();
        while let Some(page) = pages.try_next().await.map_err(err)? {
            for item in page.into_model().map_err(err)?.blob_items {
                let Some(name) = item.name else { continue };
                let Some(key) = name.strip_prefix(&strip) else {
                    continue;
                };
                let props = item.properties.unwrap_or_default();
                out.push(ObjectMeta {
                    key: key.to_string(),
                    size: props.content_length.unwrap_or(0),
                    modified: props.last_modified.map(to_chrono).unwrap_or_default(),
                    retain_until: None,
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        match self.blob(key)?.delete(None).await {
            Ok(_) => Ok(()),
            Err(e) => match self.target.error("delete", key, e) {
                StorageError::NotFound { .. } => Ok(()),
                e => Err(e),
            },
        }
    }

    async fn put_multipart(
        &self,
        key: &str,
        opts: &PutOptions,
    ) -> StorageResult<Box<dyn MultipartUpload>> {
        Ok(Box::new(AzureUpload {
            store: self.clone(),
            key: key.to_string(),
            blob: Arc::new(self.blob(key)?.block_blob_client()),
            mode: opts.mode,
            upload: new_upload_id(),
            hashes: Arc::default(),
        }))
    }

    async fn cleanup_incomplete(&self, _opts: &CleanupOptions) -> StorageResult<usize> {
        // Staged blocks that were never committed are invisible and Azure deletes them
        // seven days after they were staged: there is nothing to list or remove, so no
        // upload still running (this source's or another's) is ever cut short here.
        Ok(0)
    }
}

/// Hashes of the whole object. Parts may arrive in any order, or twice (a retry):
/// they are fed to the hashers in index order, each once, and held until their turn.
#[derive(Default)]
struct OrderedHashes {
    next: usize,
    waiting: BTreeMap<usize, Bytes>,
    sha256: Sha256,
    md5: Md5,
}

impl OrderedHashes {
    fn feed(&mut self, index: usize, data: Bytes) {
        if index < self.next || self.waiting.contains_key(&index) {
            return;
        }
        self.waiting.insert(index, data);
        while let Some(d) = self.waiting.remove(&self.next) {
            self.sha256.update(&d);
            self.md5.update(&d);
            self.next += 1;
        }
    }
}

/// A multipart upload: parts staged as blocks (the caller decides how many at once),
/// committed as a block list.
struct AzureUpload {
    store: AzureStore,
    key: String,
    blob: Arc<BlockBlobClient>,
    mode: PutMode,
    upload: String,
    hashes: Arc<Mutex<OrderedHashes>>,
}

impl AzureUpload {
    fn target(&self) -> &Target {
        &self.store.target
    }
}

#[async_trait]
impl MultipartUpload for AzureUpload {
    async fn put_part(&self, part: Part) -> StorageResult<()> {
        if part.index >= MAX_BLOCKS {
            return Err(self.target().other(
                &self.key,
                format!(
                    "more than {MAX_BLOCKS} parts, the most a block blob holds (raise part-size)"
                ),
                false,
            ));
        }
        let (repo, key, hashes) = (
            self.target().repo.clone(),
            self.key.clone(),
            self.hashes.clone(),
        );
        let index = part.index;
        let (data, md5) = tokio::task::spawn_blocking(move || {
            // The same promise as every store: a part must match its hash before
            // anything is sent.
            super::check_part(&repo, &key, &part.data, &part.sha256)?;
            let md5: [u8; 16] = Md5::digest(&part.data).into();
            hashes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .feed(part.index, part.data.clone());
            Ok::<_, StorageError>((part.data, md5))
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        let id = block_id(&self.upload, index);
        stage(&self.store.target, &self.key, &self.blob, &id, data, md5).await
    }

    async fn complete(&self, parts: usize) -> StorageResult<UploadReceipt> {
        let (sha256, md5) = {
            let h = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
            if h.next != parts {
                return Err(self.target().other(
                    &self.key,
                    format!(
                        "complete asked for {parts} parts, {} were uploaded in order",
                        h.next
                    ),
                    false,
                ));
            }
            // Hashed from a copy: a repeated complete needs them again.
            let md5: [u8; 16] = h.md5.clone().finalize().into();
            (hex::encode(h.sha256.clone().finalize()), md5)
        };
        let list = BlockLookupList {
            uncommitted: Some((0..parts).map(|i| block_id(&self.upload, i)).collect()),
            ..Default::default()
        };
        let list = list
            .try_into()
            .map_err(|e| self.target().error("complete", &self.key, e))?;
        let options = BlockBlobClientCommitBlockListOptions {
            blob_content_md5: Some(md5.to_vec()),
            metadata: Some(HashMap::from([
                (SHA256_METADATA.to_string(), sha256),
                (UPLOAD_METADATA.to_string(), self.upload.clone()),
            ])),
            if_none_match: (self.mode == PutMode::Create).then(|| Etag::from("*")),
            ..Default::default()
        };
        match self.blob.commit_block_list(list, Some(options)).await {
            Ok(_) => {}
            Err(e) if self.mode == PutMode::Create && is_exists_conflict(&e) => {
                if !self.store.written_by(&self.key, &self.upload).await {
                    return Err(self.store.already_exists(&self.key));
                }
            }
            Err(e) => {
                // A commit repeated after its answer was lost finds its blocks
                // committed, no longer uncommitted (InvalidBlockList): the blob carries
                // this upload's id then, and is done.
                let err = self.target().error("complete", &self.key, e);
                if err.is_retryable() || !self.store.written_by(&self.key, &self.upload).await {
                    return Err(err);
                }
            }
        }
        Ok(UploadReceipt {
            provider_checksum: Some(format!("md5:{}", B64.encode(md5))),
        })
    }

    async fn abort(&self) -> StorageResult<()> {
        // Staged blocks that are never committed stay invisible; Azure deletes them
        // after seven days.
        Ok(())
    }
}

/// The Content-MD5 of a Put Blob body, handed to [`ContentMd5Policy`]: the SDK's
/// upload call has no option for it.
struct PutBlobMd5(String);

/// Adds the Content-MD5 of [`PutBlobMd5`] to the request it travels with, so the
/// service checks the body on arrival.
#[derive(Debug)]
struct ContentMd5Policy;

#[async_trait]
impl Policy for ContentMd5Policy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut azure_core::http::Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        if let Some(PutBlobMd5(md5)) = ctx.value::<PutBlobMd5>()
            && request.method() == Method::Put
        {
            request.insert_header("content-md5", md5.clone());
        }
        next[0].send(ctx, request, &next[1..]).await
    }
}

/// Signs every try with the account key (Shared Key authorisation), which the SDK does
/// not offer.
struct SharedKeyPolicy {
    account: String,
    key: Vec<u8>,
}

impl fmt::Debug for SharedKeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedKeyPolicy")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Policy for SharedKeyPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut azure_core::http::Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        // The service refuses a date more than 15 minutes off: this must be the wall
        // clock, not the injectable one.
        let now = azure_core::time::to_rfc7231(&OffsetDateTime::now_utc());
        request.insert_header("x-ms-date", now);
        let to_sign = string_to_sign(&self.account, request);
        let mut mac =
            hmac::Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(to_sign.as_bytes());
        let signature = B64.encode(mac.finalize().into_bytes());
        request.insert_header(
            "authorization",
            format!("SharedKey {}:{signature}", self.account),
        );
        next[0].send(ctx, request, &next[1..]).await
    }
}

/// The Shared Key string to sign of a Blob service request.
fn string_to_sign(account: &str, request: &azure_core::http::Request) -> String {
    let headers = request.headers();
    let header = |name: &'static str| {
        headers
            .get_optional_str(&azure_core::http::headers::HeaderName::from_static(name))
            .unwrap_or("")
            .to_string()
    };
    // An empty body signs as an empty Content-Length, not `0`.
    let length = match header("content-length") {
        l if !l.is_empty() => l,
        _ => request
            .body()
            .len()
            .filter(|&n| n > 0)
            .map(|n| n.to_string())
            .unwrap_or_default(),
    };
    let length = if length == "0" { String::new() } else { length };
    let mut out = format!(
        "{}\n{}\n{}\n{}\n{}\n{}\n\n{}\n{}\n{}\n{}\n{}\n",
        request.method().as_ref(),
        header("content-encoding"),
        header("content-language"),
        length,
        header("content-md5"),
        header("content-type"),
        header("if-modified-since"),
        header("if-match"),
        header("if-none-match"),
        header("if-unmodified-since"),
        header("range"),
    );
    let mut ms: Vec<(&str, String)> = headers
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("x-ms-"))
        .map(|(n, v)| {
            let value = v.as_str().split_whitespace().collect::<Vec<_>>().join(" ");
            (n.as_str(), value)
        })
        .collect();
    ms.sort();
    for (name, value) in ms {
        out.push_str(name);
        out.push(':');
        out.push_str(&value);
        out.push('\n');
    }
    out.push_str(&canonical_resource(account, request.url()));
    out
}

/// `/account/path`, then each query parameter as `\nname:value[,value]`, sorted.
fn canonical_resource(account: &str, url: &Url) -> String {
    let mut out = format!("/{account}{}", url.path());
    let mut params: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (k, v) in url.query_pairs() {
        params
            .entry(k.to_lowercase())
            .or_default()
            .push(v.into_owned());
    }
    for (k, mut values) in params {
        values.sort();
        out.push('\n');
        out.push_str(&k);
        out.push(':');
        out.push_str(&values.join(","));
    }
    out
}

/// The Entra ID credential for this environment (see [`IDENTITY_ENV`]).
fn entra_credential() -> azure_core::Result<(Arc<dyn TokenCredential>, &'static str)> {
    use azure_identity::{
        DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
        UserAssignedId, WorkloadIdentityCredential,
    };
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let choice = match std::env::var(IDENTITY_ENV) {
        Ok(v) => v,
        Err(_) if set("AZURE_FEDERATED_TOKEN_FILE") => "workload".into(),
        Err(_) if set("IDENTITY_ENDPOINT") || set("MSI_ENDPOINT") => "managed".into(),
        Err(_) => "developer".into(),
    };
    Ok(match choice.as_str() {
        "workload" => (
            WorkloadIdentityCredential::new(None)?,
            "Entra ID (workload identity)",
        ),
        "managed" => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: std::env::var("AZURE_CLIENT_ID")
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(UserAssignedId::ClientId),
                ..Default::default()
            };
            (
                ManagedIdentityCredential::new(Some(options))?,
                "Entra ID (managed identity)",
            )
        }
        "developer" => (
            DeveloperToolsCredential::new(None)?,
            "Entra ID (Azure CLI or azd login)",
        ),
        other => {
            return Err(azure_core::Error::with_message(
                AzureErrorKind::Credential,
                format!("{IDENTITY_ENV}=`{other}` is not one of workload, managed, developer"),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("no signature here", "no signature here")]
    #[case(
        "GET http://h/c/b?sv=2022-11-02&sig=abc%2Fdef%3D&se=x failed",
        "GET http://h/c/b?sv=2022-11-02&sig=REDACTED&se=x failed"
    )]
    #[case("url (http://h/c?sig=secret)", "url (http://h/c?sig=REDACTED)")]
    #[case("sig=a sig=b", "sig=REDACTED sig=REDACTED")]
    fn sanitize_hides_sas_signatures(#[case] input: &str, #[case] expected: &str) {
        assert_eq!(sanitize(input), expected);
    }

    #[test]
    fn block_ids_have_one_width() {
        let upload = new_upload_id();
        let widths: Vec<usize> = [0, 9, 10, MAX_BLOCKS - 1]
            .iter()
            .map(|&i| B64.encode(block_id(&upload, i)).len())
            .collect();
        assert!(widths.iter().all(|&w| w == widths[0]), "{widths:?}");
    }

    #[test]
    fn canonical_resource_sorts_and_decodes_the_query() {
        let url =
            Url::parse("http://127.0.0.1:1/devstoreaccount1/c/a%2Fb?comp=block&blockid=YQ%3D%3D")
                .unwrap();
        assert_eq!(
            canonical_resource("devstoreaccount1", &url),
            "/devstoreaccount1/devstoreaccount1/c/a%2Fb\nblockid:YQ==\ncomp:block"
        );
    }

    #[test]
    fn string_to_sign_follows_the_shared_key_layout() {
        let mut request = azure_core::http::Request::new(
            Url::parse("https://acct.blob.core.windows.net/c/k?comp=list&restype=container")
                .unwrap(),
            Method::Get,
        );
        request.insert_header("x-ms-version", "2025-11-05");
        request.insert_header("x-ms-date", "Sun, 22 Nov 2026 07:54:00 GMT");
        request.insert_header("if-none-match", "*");
        assert_eq!(
            string_to_sign("acct", &request),
            "GET\n\n\n\n\n\n\n\n\n*\n\n\n\
             x-ms-date:Sun, 22 Nov 2026 07:54:00 GMT\nx-ms-version:2025-11-05\n\
             /acct/c/k\ncomp:list\nrestype:container"
        );
    }
}
