//! Behaviour added around any store, so every backend gets it the same way:
//! [`RetryStore`] (bounded retries with exponential backoff and full jitter for
//! transient failures), [`LimitStore`] (at most N calls in flight) and [`DryRunStore`]
//! (reads pass through, writes and deletes are recorded and not done).

use super::{
    Check, CleanupOptions, MultipartUpload, ObjectMeta, Part, PutMode, PutOptions, StorageError,
    StorageResult, Store, UploadReceipt,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Retries transient failures of every call, of every part of an upload, and of its
/// `complete`.
///
/// A retry cannot know whether the attempt before it happened (its answer may have
/// been lost after the store did it), which matters for writes that must not happen
/// twice:
/// - a create-only put that meets an existing object after an unsure attempt reads it
///   back and succeeds when it is byte-equal to what it puts: the earlier attempt made
///   it. A manifest or lease object holds a backup id or a holder id, so another
///   writer's is never byte-equal;
/// - a repeated `complete` is answered by the backend, which checks that the object is
///   this upload's (see [`MultipartUpload`]). When retries run out the upload is
///   aborted, so nothing is left behind.
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

    /// A retried create-only put of `data` found `key` present: success when the object
    /// there is byte-equal to `data`, else `exists` (the AlreadyExists it met).
    async fn created_by_us(
        &self,
        key: &str,
        data: &Bytes,
        exists: StorageResult<()>,
    ) -> StorageResult<()> {
        let stored = self
            .policy
            .run(self.name(), "get", key, || self.inner.get(key))
            .await;
        match stored {
            Ok(stored) if stored == *data => {
                warn!(
                    repository = self.name(),
                    key,
                    "create-only put: an earlier attempt's answer was lost, and the object it made is there; done"
                );
                Ok(())
            }
            // Someone else's object, or gone again: the create did not win.
            Ok(_) | Err(StorageError::NotFound { .. }) => exists,
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Store for RetryStore {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> StorageResult<()> {
        // Set once an attempt failed without telling whether it was done.
        let unsure = AtomicBool::new(false);
        let result = self
            .policy
            .run(self.name(), "put", key, || async {
                let r = self.inner.put(key, data.clone(), opts).await;
                if r.as_ref().is_err_and(StorageError::is_retryable) {
                    unsure.store(true, Ordering::SeqCst);
                }
                r
            })
            .await;
        match result {
            Err(StorageError::AlreadyExists { .. })
                if opts.mode == PutMode::Create && unsure.load(Ordering::SeqCst) =>
            {
                self.created_by_us(key, &data, result).await
            }
            other => other,
        }
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
    async fn cleanup_incomplete(&self, opts: &CleanupOptions) -> StorageResult<usize> {
        self.policy
            .run(self.name(), "cleanup_incomplete", &opts.prefix, || {
                self.inner.cleanup_incomplete(opts)
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
    async fn complete(&self, parts: usize) -> StorageResult<UploadReceipt> {
        // A repeated complete is safe by contract: the backend accepts it only for the
        // object this upload made.
        let result = self
            .policy
            .run(&self.repo, "complete", &self.key, || {
                self.inner.complete(parts)
            })
            .await;
        if let Err(e) = &result
            && e.is_retryable()
        {
            // Retries ran out with the outcome unknown: nothing may stay open. An abort
            // after a complete that did happen removes nothing; the object then has no
            // manifest, and prune removes it as an incomplete backup.
            let _ = self.inner.abort().await;
        }
        result
    }
    async fn abort(&self) -> StorageResult<()> {
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
    async fn cleanup_incomplete(&self, opts: &CleanupOptions) -> StorageResult<usize> {
        limited!(self, self.inner.cleanup_incomplete(opts))
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
    async fn complete(&self, parts: usize) -> StorageResult<UploadReceipt> {
        limited!(self, self.inner.complete(parts))
    }
    async fn abort(&self) -> StorageResult<()> {
        limited!(self, self.inner.abort())
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
    async fn cleanup_incomplete(&self, opts: &CleanupOptions) -> StorageResult<usize> {
        self.skip("cleanup_incomplete", &opts.prefix);
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
    async fn complete(&self, _parts: usize) -> StorageResult<UploadReceipt> {
        Ok(UploadReceipt::default())
    }
    async fn abort(&self) -> StorageResult<()> {
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
        async fn cleanup_incomplete(&self, o: &CleanupOptions) -> StorageResult<usize> {
            self.inner.cleanup_incomplete(o).await
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

    /// A store that loses the answer of `lost` puts (and upload completes): after doing
    /// them when `acted` (a reset after the server acted), before otherwise (a reset
    /// before the request arrived).
    #[derive(Debug)]
    struct LostAnswers {
        inner: Arc<LocalStore>,
        lost: Arc<AtomicU32>,
        acted: bool,
    }

    fn lost_answer(key: &str) -> StorageError {
        StorageError::Other {
            repo: "lossy".into(),
            key: key.into(),
            message: "connection reset before the answer".into(),
            retryable: true,
        }
    }

    fn take(lost: &AtomicU32) -> bool {
        lost.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    #[async_trait]
    impl Store for LostAnswers {
        fn name(&self) -> &str {
            "lossy"
        }
        async fn put(&self, k: &str, d: Bytes, o: &PutOptions) -> StorageResult<()> {
            if !self.acted && take(&self.lost) {
                return Err(lost_answer(k));
            }
            self.inner.put(k, d, o).await?;
            if self.acted && take(&self.lost) {
                return Err(lost_answer(k));
            }
            Ok(())
        }
        async fn get(&self, k: &str) -> StorageResult<Bytes> {
            self.inner.get(k).await
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
            Ok(Box::new(LostCompletes {
                inner: self.inner.put_multipart(k, o).await?,
                key: k.to_string(),
                lost: self.lost.clone(),
            }))
        }
        async fn cleanup_incomplete(&self, o: &CleanupOptions) -> StorageResult<usize> {
            self.inner.cleanup_incomplete(o).await
        }
    }

    struct LostCompletes {
        inner: Box<dyn MultipartUpload>,
        key: String,
        lost: Arc<AtomicU32>,
    }

    #[async_trait]
    impl MultipartUpload for LostCompletes {
        async fn put_part(&self, part: Part) -> StorageResult<()> {
            self.inner.put_part(part).await
        }
        async fn complete(&self, parts: usize) -> StorageResult<UploadReceipt> {
            let receipt = self.inner.complete(parts).await?;
            if take(&self.lost) {
                return Err(lost_answer(&self.key));
            }
            Ok(receipt)
        }
        async fn abort(&self) -> StorageResult<()> {
            self.inner.abort().await
        }
    }

    fn lossy(dir: &std::path::Path, lost: u32, acted: bool) -> RetryStore {
        RetryStore::new(
            Arc::new(LostAnswers {
                inner: Arc::new(LocalStore::new("lossy".into(), dir.to_path_buf())),
                lost: Arc::new(AtomicU32::new(lost)),
                acted,
            }),
            FAST,
        )
    }

    #[tokio::test]
    async fn a_create_only_put_whose_answer_was_lost_is_ours_on_retry() {
        let dir = tempfile::tempdir().unwrap();
        let store = lossy(dir.path(), 2, true);
        let body = Bytes::from_static(b"{\"backup-id\": \"ours\"}");
        store
            .put("s/id/manifest.json", body.clone(), &PutOptions::create())
            .await
            .expect("the object the first attempt made is ours");
        assert_eq!(store.get("s/id/manifest.json").await.unwrap(), body);
    }

    #[tokio::test]
    async fn a_retried_create_only_put_never_takes_someone_elses_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = lossy(dir.path(), 1, false);
        LocalStore::new("lossy".into(), dir.path().to_path_buf())
            .put(
                "_leases/s/1",
                Bytes::from_static(b"holder b"),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        // Our first attempt is lost on the way; the retry meets the other holder's.
        let err = store
            .put(
                "_leases/s/1",
                Bytes::from_static(b"holder a"),
                &PutOptions::create(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, StorageError::AlreadyExists { .. }),
            "another holder's lease was taken for ours: {err}"
        );
        assert_eq!(&store.get("_leases/s/1").await.unwrap()[..], b"holder b");
    }

    #[tokio::test]
    async fn a_multipart_complete_whose_answer_was_lost_is_retried_and_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = lossy(dir.path(), 2, true);
        let up = store
            .put_multipart("s/id/data", &PutOptions::create())
            .await
            .unwrap();
        up.put_part(Part::new(0, 0, Bytes::from_static(b"payload")))
            .await
            .unwrap();
        up.complete(1).await.expect("the completed object is ours");
        assert_eq!(&store.get("s/id/data").await.unwrap()[..], b"payload");
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
