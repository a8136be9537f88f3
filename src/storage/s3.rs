//! S3 repositories (`s3://bucket/prefix`), through the official aws-sdk-s3.
//!
//! - Credentials come only from the standard AWS chain (environment, profile, web
//!   identity / IRSA, instance role); the policy never holds them.
//! - Multipart uploads send every part with its SHA-256 (`x-amz-checksum-sha256`), so
//!   S3 refuses a part damaged in transit; the completed object's composite checksum is
//!   returned for the manifest.
//! - Create-only puts and completes use `If-None-Match: *`.
//! - A complete repeated after a retryable failure (its answer lost) is accepted when
//!   S3 says it is done, or when S3 no longer knows the upload (NoSuchUpload) or refuses
//!   the create (the object exists) and HEAD shows this upload's object: the size of its
//!   parts and the composite checksum of their SHA-256s.
//! - With object lock configured, every object gets the backup's retain-until date:
//!   set on the put, and set again with PutObjectRetention after a multipart complete
//!   (some S3-compatible stores ignore lock headers on multipart uploads).
//! - The SDK's own retries are off: [`super::wrap::RetryStore`] retries every backend
//!   the same way.

use super::{
    Check, CheckStatus, CleanupOptions, MultipartUpload, ObjectMeta, Part, PutMode, PutOptions,
    StorageError, StorageResult, Store, UploadReceipt,
};
use crate::error::{Error, Result};
use crate::policy::{LockMode, Repository, S3Config, Sse};
use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, ObjectLockMode,
    ObjectLockRetention, ObjectLockRetentionMode, ServerSideEncryption, StorageClass,
};
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A bucket (and prefix) in S3 or an S3-compatible store.
#[derive(Debug, Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    client: Client,
    cfg: S3Config,
}

/// Storage class, encryption and object lock, applied to a PutObject or a
/// CreateMultipartUpload request (their builders share these setters, not a trait).
macro_rules! object_options {
    ($req:expr, $store:expr, $opts:expr) => {{
        let mut req = $req;
        if let Some(c) = &$store.cfg.storage_class {
            req = req.storage_class(StorageClass::from(c.as_str()));
        }
        req = match &$store.cfg.sse {
            Some(Sse::Aes256) => req.server_side_encryption(ServerSideEncryption::Aes256),
            Some(Sse::Kms(id)) => req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(id.clone()),
            None => req,
        };
        // S3 refuses a retain-until in the past (a source without keep-within keeps
        // nothing beyond its start): such an object simply carries no lock.
        if let (Some(mode), Some(until)) = ($store.lock_mode(), $opts.retain_until)
            && until > Utc::now()
        {
            req = req
                .object_lock_mode(mode)
                .object_lock_retain_until_date(aws_time(until));
        }
        req
    }};
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn aws_time(t: DateTime<Utc>) -> aws_sdk_s3::primitives::DateTime {
    aws_sdk_s3::primitives::DateTime::from_millis(t.timestamp_millis())
}

fn chrono_time(t: Option<&aws_sdk_s3::primitives::DateTime>) -> DateTime<Utc> {
    t.and_then(|t| DateTime::from_timestamp_millis(t.to_millis().ok()?))
        .unwrap_or_default()
}

impl S3Store {
    /// Build the client for `repo`. Nothing is sent; `lifeboat doctor` checks reachability.
    pub async fn connect(repo: &Repository, cfg: &S3Config) -> Result<S3Store> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(repo.read_timeout)
                    .build(),
            );
        if let Some(region) = &cfg.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let shared = loader.load().await;
        if shared.region().is_none() {
            return Err(Error::bad_input(format!(
                "repository {}: no AWS region (set `region` in the policy or AWS_REGION)",
                repo.name
            )));
        }
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(cfg.path_style)
            .interceptor(crate::aws::RecordOperations);
        if let Some(endpoint) = &cfg.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Ok(S3Store {
            inner: Arc::new(Inner {
                name: repo.name.clone(),
                client: Client::from_conf(builder.build()),
                cfg: cfg.clone(),
            }),
        })
    }

    /// The SDK client, for tests and `doctor`.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.inner.cfg.bucket
    }
}

impl Inner {
    fn full(&self, key: &str) -> String {
        if self.cfg.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.cfg.prefix)
        }
    }

    fn relative<'a>(&self, full: &'a str) -> Option<&'a str> {
        if self.cfg.prefix.is_empty() {
            Some(full)
        } else {
            full.strip_prefix(&self.cfg.prefix)?.strip_prefix('/')
        }
    }

    fn other(&self, key: &str, message: String, retryable: bool) -> StorageError {
        StorageError::Other {
            repo: self.name.clone(),
            key: key.to_string(),
            message,
            retryable,
        }
    }

    /// Map an SDK error to ours: 404 is NotFound, a failed precondition is
    /// AlreadyExists; timeouts, connection faults, throttling and 5xx are retryable.
    fn err<E>(&self, key: &str, e: SdkError<E, HttpResponse>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let code = e.code().map(str::to_string);
        if status == Some(404) || matches!(code.as_deref(), Some("NoSuchKey" | "NotFound")) {
            return StorageError::NotFound {
                repo: self.name.clone(),
                key: key.to_string(),
            };
        }
        if status == Some(412) || code.as_deref() == Some("PreconditionFailed") {
            return StorageError::AlreadyExists {
                repo: self.name.clone(),
                key: key.to_string(),
            };
        }
        let retryable = matches!(
            e,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ) || status.is_some_and(|s| s >= 500 || s == 429)
            || matches!(
                code.as_deref(),
                Some(
                    "SlowDown"
                        | "Throttling"
                        | "ThrottlingException"
                        | "RequestTimeout"
                        | "InternalError"
                        | "ServiceUnavailable"
                        | "ConditionalRequestConflict"
                )
            );
        self.other(key, format!("{}", DisplayErrorContext(&e)), retryable)
    }

    fn lock_mode(&self) -> Option<ObjectLockMode> {
        self.cfg.object_lock.map(|m| match m {
            LockMode::Governance => ObjectLockMode::Governance,
            LockMode::Compliance => ObjectLockMode::Compliance,
        })
    }

    async fn set_retention(&self, key: &str, until: DateTime<Utc>) -> StorageResult<()> {
        let Some(mode) = self.cfg.object_lock else {
            return Ok(());
        };
        // A date already past would be refused, and locks nothing anyway.
        if until <= Utc::now() {
            return Ok(());
        }
        let mode = match mode {
            LockMode::Governance => ObjectLockRetentionMode::Governance,
            LockMode::Compliance => ObjectLockRetentionMode::Compliance,
        };
        self.client
            .put_object_retention()
            .bucket(&self.cfg.bucket)
            .key(self.full(key))
            .retention(
                ObjectLockRetention::builder()
                    .mode(mode)
                    .retain_until_date(aws_time(until))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.err(key, e))?;
        Ok(())
    }
}

#[async_trait]
impl Store for S3Store {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> StorageResult<()> {
        let s = &self.inner;
        let mut req = s
            .client
            .put_object()
            .bucket(&s.cfg.bucket)
            .key(s.full(key))
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .body(ByteStream::from(data));
        if opts.mode == PutMode::Create {
            req = req.if_none_match("*");
        }
        object_options!(req, s, opts)
            .send()
            .await
            .map_err(|e| s.err(key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        let s = &self.inner;
        let out = s
            .client
            .get_object()
            .bucket(&s.cfg.bucket)
            .key(s.full(key))
            .send()
            .await
            .map_err(|e| s.err(key, e))?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| s.other(key, format!("reading the body: {e}"), true))?;
        Ok(body.into_bytes())
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        let s = &self.inner;
        if range.end <= range.start {
            return Ok(Bytes::new());
        }
        let out = s
            .client
            .get_object()
            .bucket(&s.cfg.bucket)
            .key(s.full(key))
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(|e| {
                if e.raw_response().map(|r| r.status().as_u16()) == Some(416) {
                    s.other(
                        key,
                        format!(
                            "range {}..{} is past the end of the object",
                            range.start, range.end
                        ),
                        false,
                    )
                } else {
                    s.err(key, e)
                }
            })?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| s.other(key, format!("reading the body: {e}"), true))?
            .into_bytes();
        let want = range.end - range.start;
        if body.len() as u64 != want {
            return Err(s.other(
                key,
                format!(
                    "asked for {want} bytes at {}, got {} (object shorter than the range)",
                    range.start,
                    body.len()
                ),
                false,
            ));
        }
        Ok(body)
    }

    async fn head(&self, key: &str) -> StorageResult<ObjectMeta> {
        let s = &self.inner;
        let out = s
            .client
            .head_object()
            .bucket(&s.cfg.bucket)
            .key(s.full(key))
            .send()
            .await
            .map_err(|e| s.err(key, e))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            modified: chrono_time(out.last_modified()),
            retain_until: out
                .object_lock_retain_until_date()
                .map(|t| chrono_time(Some(t))),
        })
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        let s = &self.inner;
        let mut pages = s
            .client
            .list_objects_v2()
            .bucket(&s.cfg.bucket)
            .prefix(s.full(prefix))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s.err(prefix, e))?;
            for obj in page.contents() {
                let Some(rel) = obj.key().and_then(|k| s.relative(k)) else {
                    continue;
                };
                out.push(ObjectMeta {
                    key: rel.to_string(),
                    size: obj.size().unwrap_or(0).max(0) as u64,
                    modified: chrono_time(obj.last_modified()),
                    // ListObjectsV2 does not report retention; head does.
                    retain_until: None,
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        let s = &self.inner;
        match s
            .client
            .delete_object()
            .bucket(&s.cfg.bucket)
            .key(s.full(key))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match s.err(key, e) {
                StorageError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn put_multipart(
        &self,
        key: &str,
        opts: &PutOptions,
    ) -> StorageResult<Box<dyn MultipartUpload>> {
        let s = &self.inner;
        let req = s
            .client
            .create_multipart_upload()
            .bucket(&s.cfg.bucket)
            .key(s.full(key))
            .checksum_algorithm(ChecksumAlgorithm::Sha256);
        let out = object_options!(req, s, opts)
            .send()
            .await
            .map_err(|e| s.err(key, e))?;
        let upload_id = out
            .upload_id()
            .ok_or_else(|| {
                s.other(
                    key,
                    "CreateMultipartUpload returned no upload id".into(),
                    true,
                )
            })?
            .to_string();
        Ok(Box::new(S3Upload {
            store: self.inner.clone(),
            key: key.to_string(),
            upload_id,
            parts: Mutex::new(BTreeMap::new()),
            opts: opts.clone(),
            unsure: AtomicBool::new(false),
        }))
    }

    async fn backend_checks(&self) -> Vec<Check> {
        let s = &self.inner;
        let mut checks = Vec::new();
        let lock = s
            .client
            .get_object_lock_configuration()
            .bucket(&s.cfg.bucket)
            .send()
            .await;
        let enabled = match &lock {
            Ok(out) => out
                .object_lock_configuration()
                .and_then(|c| c.object_lock_enabled())
                .is_some_and(|e| e.as_str() == "Enabled"),
            Err(_) => false,
        };
        let (status, detail) = match (s.cfg.object_lock, enabled) {
            (Some(mode), true) => (
                CheckStatus::Ok,
                format!(
                    "enabled on the bucket; objects are locked in {mode:?} mode until their keep-until"
                ),
            ),
            (Some(_), false) => (
                CheckStatus::Fail,
                format!(
                    "the policy asks for object lock but bucket {} does not have it enabled \
                     (it can only be enabled at bucket creation; see terraform/)",
                    s.cfg.bucket
                ),
            ),
            (None, true) => (
                CheckStatus::Warn,
                "the bucket has object lock but the policy sets no object-lock mode".into(),
            ),
            (None, false) => (CheckStatus::Ok, "not configured".into()),
        };
        checks.push(Check::new("object lock", status, detail));
        checks
    }

    async fn cleanup_incomplete(&self, opts: &CleanupOptions) -> StorageResult<usize> {
        let s = &self.inner;
        // Only the source's own folder is listed: another source's uploads, and other
        // tools' elsewhere in the bucket, are never seen, let alone aborted.
        let prefix = s.full(&opts.prefix);
        let mut removed = 0;
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let out = s
                .client
                .list_multipart_uploads()
                .bucket(&s.cfg.bucket)
                .prefix(&prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .map_err(|e| s.err(&opts.prefix, e))?;
            for up in out.uploads() {
                let (Some(key), Some(id)) = (up.key(), up.upload_id()) else {
                    continue;
                };
                let Some(rel) = s.relative(key) else { continue };
                if !opts.removes(rel, chrono_time(up.initiated())) {
                    continue;
                }
                match s
                    .client
                    .abort_multipart_upload()
                    .bucket(&s.cfg.bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await
                {
                    Ok(_) => removed += 1,
                    Err(e) => match s.err(rel, e) {
                        // Completed or aborted since the listing.
                        StorageError::NotFound { .. } => {}
                        other => return Err(other),
                    },
                }
            }
            if out.is_truncated() != Some(true) {
                break;
            }
            key_marker = out.next_key_marker().map(str::to_string);
            id_marker = out.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        Ok(removed)
    }
}

struct S3Upload {
    store: Arc<Inner>,
    key: String,
    upload_id: String,
    /// Each sent part, and its size.
    parts: Mutex<BTreeMap<usize, (CompletedPart, u64)>>,
    opts: PutOptions,
    /// Set when a complete failed without telling whether S3 did it.
    unsure: AtomicBool,
}

impl S3Upload {
    /// Size and composite checksum of the object at the key, from HEAD.
    async fn head_checksum(&self) -> StorageResult<(u64, Option<String>)> {
        let s = &self.store;
        let out = s
            .client
            .head_object()
            .bucket(&s.cfg.bucket)
            .key(s.full(&self.key))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| s.err(&self.key, e))?;
        Ok((
            out.content_length().unwrap_or(0).max(0) as u64,
            out.checksum_sha256().map(str::to_string),
        ))
    }

    /// After a complete whose answer was lost, S3 answered a repeat with `refused`
    /// (NoSuchUpload, or the create's precondition): the object at the key is this
    /// upload's when it has the parts' size and composite checksum. Its checksum is
    /// returned; anything else is `refused`, as S3 said.
    async fn ours(
        &self,
        expected: &Option<String>,
        size: u64,
        refused: StorageError,
    ) -> StorageResult<String> {
        let (found_size, found) = match self.head_checksum().await {
            Ok(head) => head,
            Err(StorageError::NotFound { .. }) => return Err(refused),
            Err(e) => return Err(e),
        };
        if found_size != size {
            return Err(refused);
        }
        let (Some(expected), Some(found)) = (expected, found) else {
            return Err(self.store.other(
                &self.key,
                format!(
                    "a complete whose answer was lost was repeated and refused ({refused}); \
                     the object there carries no composite checksum to tell whether it is \
                     this upload's, so the upload counts as failed"
                ),
                false,
            ));
        };
        // S3 writes the part count after the digest; moto leaves it out.
        let digest = found.split_once('-').map_or(found.as_str(), |(d, _)| d);
        if digest == expected {
            tracing::warn!(repository = %self.store.name, key = %self.key, "multipart complete: an earlier attempt's answer was lost, and the object it made is there; done");
            Ok(found)
        } else {
            Err(refused)
        }
    }

    async fn abort_upload(&self) -> StorageResult<()> {
        let s = &self.store;
        match s
            .client
            .abort_multipart_upload()
            .bucket(&s.cfg.bucket)
            .key(s.full(&self.key))
            .upload_id(&self.upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match s.err(&self.key, e) {
                // NoSuchUpload: already gone.
                StorageError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}

#[async_trait]
impl MultipartUpload for S3Upload {
    async fn put_part(&self, part: Part) -> StorageResult<()> {
        let s = &self.store;
        super::check_part(&s.name, &self.key, &part.data, &part.sha256)?;
        let number = i32::try_from(part.index + 1)
            .ok()
            .filter(|n| *n <= 10_000)
            .ok_or_else(|| {
                s.other(
                    &self.key,
                    "more than 10000 parts: raise the repository's part-size".into(),
                    false,
                )
            })?;
        let checksum = b64(&part.sha256);
        let size = part.data.len() as u64;
        let out = s
            .client
            .upload_part()
            .bucket(&s.cfg.bucket)
            .key(s.full(&self.key))
            .upload_id(&self.upload_id)
            .part_number(number)
            .checksum_sha256(&checksum)
            .body(ByteStream::from(part.data))
            .send()
            .await
            .map_err(|e| s.err(&self.key, e))?;
        let done = CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag().map(str::to_string))
            .checksum_sha256(out.checksum_sha256().unwrap_or(&checksum))
            .build();
        self.parts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(part.index, (done, size));
        Ok(())
    }

    async fn complete(&self, parts: usize) -> StorageResult<UploadReceipt> {
        let s = self.store.clone();
        let (done, size): (Vec<CompletedPart>, u64) = {
            let map = self.parts.lock().unwrap_or_else(|e| e.into_inner());
            let sent: Vec<_> = (0..parts).filter_map(|i| map.get(&i).cloned()).collect();
            let size = sent.iter().map(|(_, n)| n).sum();
            (sent.into_iter().map(|(p, _)| p).collect(), size)
        };
        if done.len() != parts {
            let _ = self.abort_upload().await;
            return Err(s.other(
                &self.key,
                format!(
                    "complete asked for {parts} parts, {} were uploaded",
                    done.len()
                ),
                false,
            ));
        }
        let expected = composite_checksum(&done);
        let mut req = s
            .client
            .complete_multipart_upload()
            .bucket(&s.cfg.bucket)
            .key(s.full(&self.key))
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            );
        if self.opts.mode == PutMode::Create {
            req = req.if_none_match("*");
        }
        let checksum = match req.send().await {
            Ok(out) => out.checksum_sha256().map(str::to_string),
            Err(e) => match s.err(&self.key, e) {
                // An earlier complete may have done it and lost its answer: S3 then
                // has no such upload any more, or refuses the create over the object
                // that complete made. Only this upload's object is accepted.
                err @ (StorageError::NotFound { .. } | StorageError::AlreadyExists { .. })
                    if self.unsure.load(Ordering::SeqCst) =>
                {
                    Some(self.ours(&expected, size, err).await?)
                }
                err if err.is_retryable() => {
                    // Left open for the retry, which the caller aborts if it gives up.
                    self.unsure.store(true, Ordering::SeqCst);
                    return Err(err);
                }
                err => {
                    let _ = self.abort_upload().await;
                    return Err(err);
                }
            },
        };
        if let Some(until) = self.opts.retain_until {
            s.set_retention(&self.key, until).await?;
        }
        // Some S3-compatible stores leave the checksum out of the complete response;
        // HEAD has it, and confirms the object is there.
        let checksum = match checksum {
            Some(c) => Some(c),
            None => self.head_checksum().await?.1,
        };
        Ok(UploadReceipt {
            provider_checksum: checksum.map(|c| format!("s3-composite-sha256:{c}")),
        })
    }

    async fn abort(&self) -> StorageResult<()> {
        self.abort_upload().await
    }
}

/// The composite checksum S3 gives an object completed from `parts`: the SHA-256 of
/// their SHA-256s, base64 (S3 appends `-N`, the part count; moto does not).
fn composite_checksum(parts: &[CompletedPart]) -> Option<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        let digest = base64::engine::general_purpose::STANDARD
            .decode(p.checksum_sha256()?)
            .ok()?;
        h.update(digest);
    }
    Some(b64(&h.finalize()))
}
