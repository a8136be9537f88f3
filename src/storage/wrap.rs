//! Behaviour added around any store, so every backend gets it the same way:
//! [`RetryStore`] (bounded retries with exponential backoff and full jitter for
//! transient failures), [`LimitStore`] (at most N calls in flight) and [`DryRunStore`]
//! (reads pass through, writes and deletes are recorded and not done).

use super::{
    Check, MultipartUpload, ObjectMeta, Part, PutOptions, StorageResult, Store, UploadReceipt,
};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::warn;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time.
    pub base_delay: Duration,
    /// Ceiling of the backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (full jitter: uniform in 0..=cap), so that
    /// many clients failing together do not retry together.
    pub fn delay(&self, attempt: u32) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max_delay);
        let ms = cap.as_millis() as u64;
        Duration::from_millis(if ms == 0 {
            0
        } else {
            rand::random::<u64>() % (ms + 1)
        })
    }

    async fn run<T, F, Fut>(&self, repo: &str, op: &str, key: &str, mut f: F) -> StorageResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = StorageResult<T>>,
    {
        let mut attempt = 0;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt + 1 < self.max_attempts => {
                    let delay = self.delay(attempt);
                    warn!(repository = repo, op, key, attempt = attempt + 1, delay_ms = delay.as_millis() as u64, error = %e, "transient storage error; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Retries transient failures of every call, and of every part of an upload.
///
/// `complete` is not retried: if its answer is lost, a second complete cannot tell
/// whether the first one happened. The backup then fails and is never committed.
#[derive(Debug)]
pub struct RetryStore {
    inner: Arc<dyn Store>,
    policy: RetryPolicy,
}

impl RetryStore {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn Store>, policy: RetryPolicy) -> Self {
        RetryStore { inner, policy }
    }
}

#[async_trait]
impl Store for RetryStore {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> StorageResult<()> {
        self.policy
            .run(self.name(), "put", key, || {
                self.inner.put(key, data.clone(), opts)
            })
            .await
    }
    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        self.policy
            .run(self.name(), "get", key, || self.inner.get(key))
            .await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        self.policy
            .run(self.name(), "get_range", key, || {
                self.inner.get_range(key, range.clone())
            })
            .await
    }
    async fn head(&self, key: &str) -> StorageResult<ObjectMeta> {
        self.policy
            .run(self.name(), "head", key, || self.inner.head(key))
            .await
    }
    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        self.policy
            .run(self.name(), "list", prefix, || self.inner.list(prefix))
            .await
    }
    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.policy
            .run(self.name(), "delete", key, || self.inner.delete(key))
            .await
    }
    async fn put_multipart(
        &self,
        key: &str,
        opts: &PutOptions,
    ) -> StorageResult<Box<dyn MultipartUpload>> {
        let inner = self
            .policy
            .run(self.name(), "put_multipart", key, || {
                self.inner.put_multipart(key, opts)
            })
            .await?;
        Ok(Box::new(RetryUpload {
            inner,
            policy: self.policy,
            repo: self.name().to_string(),
            key: key.to_string(),
        }))
    }
    async fn cleanup_incomplete(&self, before: DateTime<Utc>) -> StorageResult<usize> {
        self.policy
            .run(self.name(), "cleanup_incomplete", "", || {
                self.inner.cleanup_incomplete(before)
            })
            .await
    }
    async fn backend_checks(&self) -> Vec<Check> {
        self.inner.backend_checks().await
    }
}

struct RetryUpload {
    inner: Box<dyn MultipartUpload>,
    policy: RetryPolicy,
    repo: String,
    key: String,
}

#[async_trait]
impl MultipartUpload for RetryUpload {
    async fn put_part(&self, part: Part) -> StorageResult<()> {
        // Sending the same part again is harmless by contract.
        self.policy
            .run(&self.repo, "put_part", &self.key, || {
                self.inner.put_part(part.clone())
            })
            .await
    }
    async fn complete(self: Box<Self>, parts: usize) -> StorageResult<UploadReceipt> {
        self.inner.complete(parts).await
    }
    async fn abort(self: Box<Self>) -> StorageResult<()> {
        self.inner.abort().await
    }
}

/// At most `n` calls (and upload parts) in flight through this store at once.
#[derive(Debug)]
pub struct LimitStore {
    inner: Arc<dyn Store>,
    permits: Arc<Semaphore>,
}

impl LimitStore {
    /// Wrap `inner` with a limit of `n` concurrent calls.
    pub fn new(inner: Arc<dyn Store>, n: usize) -> Self {
        LimitStore {
            inner,
            permits: Arc::new(Semaphore::new(n.max(1))),
        }
    }
}

macro_rules! limited {
    ($self:ident, $call:expr) => {{
        let _permit = $self.permits.acquire().await.expect("never closed");
        $call.await
    }};
}

#[async_trait]
impl Store for LimitStore {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> StorageResult<()> {
        limited!(self, self.inner.put(key, data, opts))
    }
    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        limited!(self, self.inner.get(key))
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        limited!(self, self.inner.get_range(key, range))
    }
    async fn head(&self, key: &str) -> StorageResult<ObjectMeta> {
        limited!(self, self.inner.head(key))
    }
    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        limited!(self, self.inner.list(prefix))
    }
    async fn delete(&self, key: &str) -> StorageResult<()> {
        limited!(self, self.inner.delete(key))
    }
    async fn put_multipart(
        &self,
        key: &str,
        opts: &PutOptions,
    ) -> StorageResult<Box<dyn MultipartUpload>> {
        let inner = limited!(self, self.inner.put_multipart(key, opts))?;
        Ok(Box::new(LimitUpload {
            inner,
            permits: self.permits.clone(),
        }))
    }
    async fn cleanup_incomplete(&self, before: DateTime<Utc>) -> StorageResult<usize> {
        limited!(self, self.inner.cleanup_incomplete(before))
    }
    async fn backend_checks(&self) -> Vec<Check> {
        self.inner.backend_checks().await
    }
}

struct LimitUpload {
    inner: Box<dyn MultipartUpload>,
    permits: Arc<Semaphore>,
}

#[async_trait]
impl MultipartUpload for LimitUpload {
    async fn put_part(&self, part: Part) -> StorageResult<()> {
        limited!(self, self.inner.put_part(part))
    }
    async fn complete(self: Box<Self>, parts: usize) -> StorageResult<UploadReceipt> {
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        self.inner.complete(parts).await
    }
    async fn abort(self: Box<Self>) -> StorageResult<()> {
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        self.inner.abort().await
    }
}

/// Reads pass through; writes and deletes are recorded, logged and not done.
#[derive(Debug)]
pub struct DryRunStore {
    inner: Arc<dyn Store>,
    skipped: Arc<Mutex<Vec<String>>>,
}

impl DryRunStore {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        DryRunStore {
            inner,
            skipped: Arc::default(),
        }
    }

    /// What would have been written or deleted, as `OP KEY` lines.
    pub fn skipped(&self) -> Vec<String> {
        self.skipped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn skip(&self, op: &str, key: &str) {
        tracing::info!(repository = self.inner.name(), op, key, "dry run: not done");
        self.skipped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{op} {key}"));
    }
}

#[async_trait]
impl Store for DryRunStore {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn put(&self, key: &str, _data: Bytes, _opts: &PutOptions) -> StorageResult<()> {
        self.skip("put", key);
        Ok(())
    }
    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        self.inner.get_range(key, range).await
    }
    async fn head(&self, key: &str) -> StorageResult<ObjectMeta> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.skip("delete", key);
        Ok(())
    }
    async fn put_multipart(
        &self,
        key: &str,
        _opts: &PutOptions,
    ) -> StorageResult<Box<dyn MultipartUpload>> {
        self.skip("upload", key);
        Ok(Box::new(DiscardUpload))
    }
    async fn cleanup_incomplete(&self, _before: DateTime<Utc>) -> StorageResult<usize> {
        self.skip("cleanup_incomplete", "");
        Ok(0)
    }
    async fn backend_checks(&self) -> Vec<Check> {
        self.inner.backend_checks().await
    }
}

struct DiscardUpload;

#[async_trait]
impl MultipartUpload for DiscardUpload {
    async fn put_part(&self, _part: Part) -> StorageResult<()> {
        Ok(())
    }
    async fn complete(self: Box<Self>, _parts: usize) -> StorageResult<UploadReceipt> {
        Ok(UploadReceipt::default())
    }
    async fn abort(self: Box<Self>) -> StorageResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageError;
    use crate::storage::local::LocalStore;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A store whose `get` fails with a retryable error `failures` times, then works.
    #[derive(Debug)]
    struct Flaky {
        inner: LocalStore,
        failures: AtomicU32,
        calls: AtomicU32,
        retryable: bool,
    }

    #[async_trait]
    impl Store for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        async fn put(&self, k: &str, d: Bytes, o: &PutOptions) -> StorageResult<()> {
            self.inner.put(k, d, o).await
        }
        async fn get(&self, key: &str) -> StorageResult<Bytes> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.failures.load(Ordering::SeqCst) > 0 {
                self.failures.fetch_sub(1, Ordering::SeqCst);
                return Err(StorageError::Other {
                    repo: "flaky".into(),
                    key: key.into(),
                    message: "503 Service Unavailable".into(),
                    retryable: self.retryable,
                });
            }
            self.inner.get(key).await
        }
        async fn get_range(&self, k: &str, r: Range<u64>) -> StorageResult<Bytes> {
            self.inner.get_range(k, r).await
        }
        async fn head(&self, k: &str) -> StorageResult<ObjectMeta> {
            self.inner.head(k).await
        }
        async fn list(&self, p: &str) -> StorageResult<Vec<ObjectMeta>> {
            self.inner.list(p).await
        }
        async fn delete(&self, k: &str) -> StorageResult<()> {
            self.inner.delete(k).await
        }
        async fn put_multipart(
            &self,
            k: &str,
            o: &PutOptions,
        ) -> StorageResult<Box<dyn MultipartUpload>> {
            self.inner.put_multipart(k, o).await
        }
        async fn cleanup_incomplete(&self, b: DateTime<Utc>) -> StorageResult<usize> {
            self.inner.cleanup_incomplete(b).await
        }
    }

    fn flaky(dir: &std::path::Path, failures: u32, retryable: bool) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner: LocalStore::new("flaky".into(), dir.to_path_buf()),
            failures: AtomicU32::new(failures),
            calls: AtomicU32::new(0),
            retryable,
        })
    }

    const FAST: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    };

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let dir = tempfile::tempdir().unwrap();
        let f = flaky(dir.path(), 3, true);
        let store = RetryStore::new(f.clone(), FAST);
        store
            .put("a/b", Bytes::from_static(b"x"), &PutOptions::default())
            .await
            .unwrap();
        assert_eq!(&store.get("a/b").await.unwrap()[..], b"x");
        assert_eq!(f.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn retries_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let f = flaky(dir.path(), 10, true);
        let store = RetryStore::new(f.clone(), FAST);
        assert!(store.get("a/b").await.is_err());
        assert_eq!(f.calls.load(Ordering::SeqCst), FAST.max_attempts);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let f = flaky(dir.path(), 10, false);
        let store = RetryStore::new(f.clone(), FAST);
        assert!(store.get("a/b").await.is_err());
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        for attempt in 0..30 {
            let cap = p
                .base_delay
                .saturating_mul(1 << attempt.min(20))
                .min(p.max_delay);
            assert!(p.delay(attempt) <= cap);
        }
    }

    #[tokio::test]
    async fn dry_run_writes_and_deletes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let local: Arc<dyn Store> = Arc::new(LocalStore::new("l".into(), dir.path().into()));
        local
            .put("a/keep", Bytes::from_static(b"1"), &PutOptions::default())
            .await
            .unwrap();
        let dry = DryRunStore::new(local.clone());
        dry.delete("a/keep").await.unwrap();
        dry.put("a/new", Bytes::from_static(b"2"), &PutOptions::default())
            .await
            .unwrap();
        let keys: Vec<String> = local
            .list("a/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, vec!["a/keep"]);
        assert_eq!(dry.skipped(), vec!["delete a/keep", "put a/new"]);
    }

    #[tokio::test]
    async fn wrapped_stores_still_pass_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let local: Arc<dyn Store> = Arc::new(LocalStore::new("l".into(), dir.path().into()));
        let store = LimitStore::new(Arc::new(RetryStore::new(local, FAST)), 2);
        crate::storage::conformance::run(&store).await;
    }
}
