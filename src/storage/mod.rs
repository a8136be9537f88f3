//! Where backups live. A deliberately small object-store contract that the local
//! directory, S3 and Azure Blob backends implement alike.
//!
//! Guarantees every backend keeps:
//! - `put` is atomic: a reader sees the whole new object or none of it (never a prefix).
//! - `put` with [`PutMode::Create`] succeeds only if the key is absent, atomically.
//!   Through [`wrap::RetryStore`], a retried create-only put that meets an object
//!   byte-equal to its own succeeds: the earlier attempt created it and its answer was
//!   lost.
//! - a multipart upload is invisible until `complete`; `abort` removes what was sent.
//!   Dropping an upload without either may leave parts behind (S3 cannot clean up on
//!   drop): callers always end with `complete` or `abort`, and prune removes stale ones
//!   of the source it prunes ([`Store::cleanup_incomplete`]).
//! - `complete` may be called again after a retryable failure (its answer may have
//!   been lost after the store did it): it then succeeds only when the object at the key
//!   is the one this upload made.
//! - `delete` of a missing key succeeds.
//! - `list` returns committed objects only, sorted by key.
//!
//! Keys are built only in [`layout`].

pub mod azure;
pub mod layout;
pub mod local;
pub mod s3;
pub mod wrap;

use crate::error::{Error, ErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// A storage failure, naming repository and key.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object does not exist.
    #[error("repository {repo}: {key}: not found")]
    NotFound {
        /// Repository name.
        repo: String,
        /// Object key.
        key: String,
    },
    /// A create-only put found the key present.
    #[error("repository {repo}: {key}: already exists")]
    AlreadyExists {
        /// Repository name.
        repo: String,
        /// Object key.
        key: String,
    },
    /// Any other failure; `retryable` when a later attempt may succeed.
    #[error("repository {repo}: {key}: {message}")]
    Other {
        /// Repository name.
        repo: String,
        /// Object key (or prefix).
        key: String,
        /// The cause.
        message: String,
        /// Whether a retry may succeed.
        retryable: bool,
    },
}

impl StorageError {
    /// True for [`StorageError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    /// Whether a later attempt of the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StorageError::Other {
                retryable: true,
                ..
            }
        )
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        let retryable = matches!(
            e,
            StorageError::Other {
                retryable: true,
                ..
            }
        );
        Error::new(ErrorKind::RunFailed, e.to_string()).retryable(retryable)
    }
}

/// Result of storage calls.
pub type StorageResult<T> = std::result::Result<T, StorageError>;

/// Refuse a part whose bytes do not hash to `sha256`. Stores call it before sending a
/// part, so a caller's mistake never reaches storage even where the server would not
/// check (S3 checks `x-amz-checksum-sha256` itself; some compatible stores do not).
pub fn check_part(repo: &str, key: &str, data: &[u8], sha256: &[u8; 32]) -> StorageResult<()> {
    use sha2::{Digest, Sha256};
    let actual: [u8; 32] = Sha256::digest(data).into();
    if &actual == sha256 {
        Ok(())
    } else {
        Err(StorageError::Other {
            repo: repo.to_string(),
            key: key.to_string(),
            message: format!(
                "part checksum mismatch: expected sha256 {}, actual {}",
                hex::encode(sha256),
                hex::encode(actual)
            ),
            retryable: false,
        })
    }
}

/// What a listing or head reports about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification.
    pub modified: DateTime<Utc>,
    /// Object-lock retention: the store refuses to delete the object before this.
    /// Reported by `head` where the backend has object lock (S3); `None` otherwise and
    /// in listings.
    pub retain_until: Option<DateTime<Utc>>,
}

/// How `put` treats an existing object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PutMode {
    /// Replace it.
    #[default]
    Overwrite,
    /// Fail with [`StorageError::AlreadyExists`].
    Create,
}

/// Options of `put` and `put_multipart`.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Overwrite or create-only.
    pub mode: PutMode,
    /// Object-lock retention: the store refuses to delete or overwrite the object before
    /// this instant (where the repository has object lock configured).
    pub retain_until: Option<DateTime<Utc>>,
}

impl PutOptions {
    /// Create-only, no retention.
    pub fn create() -> Self {
        PutOptions {
            mode: PutMode::Create,
            retain_until: None,
        }
    }
}

/// What a completed upload reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadReceipt {
    /// The provider's own checksum of the whole object, when it computes one (S3's
    /// composite SHA-256 `BASE64-N`, Azure's Content-MD5); recorded in the manifest.
    pub provider_checksum: Option<String>,
}

/// One part of a multipart upload.
#[derive(Debug, Clone)]
pub struct Part {
    /// 0-based position of the part.
    pub index: usize,
    /// Byte offset of the part in the object.
    pub offset: u64,
    /// The bytes.
    pub data: Bytes,
    /// SHA-256 of `data`.
    pub sha256: [u8; 32],
}

impl Part {
    /// Part `index` at `offset`, with the SHA-256 of `data`.
    pub fn new(index: usize, offset: u64, data: Bytes) -> Self {
        use sha2::{Digest, Sha256};
        Part {
            index,
            offset,
            sha256: Sha256::digest(&data).into(),
            data,
        }
    }
}

/// A streamed upload of one object in parts.
///
/// Parts may be sent concurrently and in any order, and sending the same part again
/// (same index, offset and bytes) is harmless: that is what makes retries and parallel
/// uploads safe. A store refuses a part whose bytes do not match its SHA-256.
///
/// An upload ends with `complete` or `abort`. `complete` may be repeated after a
/// retryable failure (an answer lost after the store did it): a repeat succeeds when the
/// object at the key is this upload's, so a retry never reports a committed object as
/// failed, nor accepts someone else's. After a failure that is not retryable the upload
/// is already aborted; `abort` after anything is harmless.
#[async_trait]
pub trait MultipartUpload: Send + Sync {
    /// Send one part.
    async fn put_part(&self, part: Part) -> StorageResult<()>;
    /// Make the object of parts `0..parts` visible, atomically.
    async fn complete(&self, parts: usize) -> StorageResult<UploadReceipt>;
    /// Discard everything sent.
    async fn abort(&self) -> StorageResult<()>;
}

/// Which unfinished uploads [`Store::cleanup_incomplete`] removes: only uploads to a
/// backup's object under `prefix` (`PREFIX<backup-id>/<object>`, as [`layout`] builds
/// them), started before `before` and, with `started_before`, of a backup whose id says
/// it started before that. Any other upload (another source's, another tool's, one
/// whose key lifeboat would not build) is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupOptions {
    /// The source's folder ([`layout::source_prefix`]).
    pub prefix: String,
    /// Uploads started (by the store's clock) at or after this are kept.
    pub before: DateTime<Utc>,
    /// Uploads of backups whose id time is at or after this are kept (a live lease was
    /// taken before then: its run may still be uploading, however long ago it began).
    pub started_before: Option<DateTime<Utc>>,
}

impl CleanupOptions {
    /// Whether an unfinished upload to `key`, started at `initiated`, is to be removed.
    pub fn removes(&self, key: &str, initiated: DateTime<Utc>) -> bool {
        let Some(id) = layout::upload_backup_id(&self.prefix, key) else {
            return false;
        };
        if initiated >= self.before {
            return false;
        }
        match self.started_before {
            None => true,
            // An id that does not parse as a time is not ours to judge.
            Some(bound) => layout::backup_id_time(id).is_some_and(|t| t < bound),
        }
    }
}

/// An object store.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// The repository name, for messages.
    fn name(&self) -> &str;
    /// Store `data` at `key` atomically.
    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> StorageResult<()>;
    /// Read a whole (small) object.
    async fn get(&self, key: &str) -> StorageResult<Bytes>;
    /// Read `range` of an object; fewer bytes than asked is an error.
    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes>;
    /// Metadata of an object.
    async fn head(&self, key: &str) -> StorageResult<ObjectMeta>;
    /// Committed objects under `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>>;
    /// Remove an object (missing is fine).
    async fn delete(&self, key: &str) -> StorageResult<()>;
    /// Start a multipart upload to `key`.
    async fn put_multipart(
        &self,
        key: &str,
        opts: &PutOptions,
    ) -> StorageResult<Box<dyn MultipartUpload>>;
    /// Remove uploads started but neither completed nor aborted (crash leftovers) that
    /// `opts` selects, and nothing else. Returns how many were removed.
    async fn cleanup_incomplete(&self, opts: &CleanupOptions) -> StorageResult<usize>;
    /// Checks of the backend's own configuration for `lifeboat doctor` (object lock,
    /// versioning), changing nothing.
    async fn backend_checks(&self) -> Vec<Check> {
        Vec::new()
    }
}

/// The outcome of one `lifeboat doctor` check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// `ok`, `warn` or `fail`.
    pub status: CheckStatus,
    /// What was found, and the fix when it is not ok.
    pub detail: String,
}

/// Severity of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// As it should be.
    Ok,
    /// Works, but deserves attention.
    Warn,
    /// Backups or restores will fail.
    Fail,
}

impl Check {
    /// A check with `status`.
    pub fn new(name: impl Into<String>, status: CheckStatus, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            status,
            detail: detail.into(),
        }
    }
}

/// Open the store of a policy repository. Cloud clients are built here (credentials
/// resolved from the environment) but not contacted: `lifeboat doctor` does that.
pub async fn open(repo: &crate::policy::Repository) -> Result<Arc<dyn Store>, Error> {
    use crate::policy::Backend;
    let store: Arc<dyn Store> = match &repo.backend {
        Backend::Local { path } => {
            Arc::new(local::LocalStore::new(repo.name.clone(), path.clone()))
        }
        Backend::S3(cfg) => Arc::new(s3::S3Store::connect(repo, cfg).await?),
        Backend::Azure(cfg) => Arc::new(azure::AzureStore::connect(repo, cfg).await?),
    };
    // Retry each call, and bound the calls in flight to what the repository allows
    // (its parts in flight, plus room for the reads that overlap them).
    let retry = wrap::RetryStore::new(store, wrap::RetryPolicy::default());
    Ok(Arc::new(wrap::LimitStore::new(
        Arc::new(retry),
        repo.max_in_flight + 2,
    )))
}

#[doc(hidden)]
pub mod conformance;
