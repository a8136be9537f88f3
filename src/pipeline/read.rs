//! The restore and verify side of the pipeline.

use super::IntegrityMismatch;
use crate::catalog::manifest::Manifest;
use crate::error::{Error, Result};
use crate::storage::{StorageResult, Store};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

fn mismatch(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, IntegrityMismatch(msg))
}

/// If `err` carries an [`IntegrityMismatch`], its message.
pub fn integrity_of(err: &io::Error) -> Option<String> {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<IntegrityMismatch>())
        .map(|m| m.0.clone())
}

/// Reads a stored object chunk by chunk, checking each chunk's SHA-256 against the
/// manifest before returning any of its bytes, and the whole object's hash and size at
/// the end. The next chunk is fetched while the current one is consumed.
///
/// Must be used from a blocking thread inside a tokio runtime.
pub struct ChunkReader {
    store: Arc<dyn Store>,
    key: String,
    what: String,
    chunk_size: u64,
    size: u64,
    expected: Vec<String>,
    expected_total: String,
    next_index: usize,
    next_fetch: usize,
    ahead: usize,
    pending: VecDeque<JoinHandle<StorageResult<Bytes>>>,
    current: Bytes,
    whole: Sha256,
    done: bool,
    /// Keep reading after a chunk mismatch (verify wants the whole object's hash).
    tolerate: bool,
    /// Chunk mismatches seen when `tolerate` is set.
    pub problems: Vec<String>,
    handle: Handle,
    /// SHA-256 of everything read, once the end was reached.
    pub actual_sha256: Option<String>,
}

impl ChunkReader {
    /// A reader of the data object of `manifest` in `store`, fetching up to `ahead`
    /// chunks in parallel (ranged GETs) while the current one is consumed.
    pub fn new(
        store: Arc<dyn Store>,
        key: String,
        manifest: &Manifest,
        ahead: usize,
        handle: Handle,
    ) -> Self {
        let what = format!(
            "backup {}/{} in repository {}",
            manifest.source,
            manifest.backup_id,
            store.name()
        );
        ChunkReader {
            store,
            key,
            what,
            chunk_size: manifest.stored.chunk_size,
            size: manifest.stored.size,
            expected: manifest.stored.chunks.clone(),
            expected_total: manifest.stored.sha256.clone(),
            next_index: 0,
            next_fetch: 0,
            ahead: ahead.max(1),
            pending: VecDeque::new(),
            current: Bytes::new(),
            whole: Sha256::new(),
            done: false,
            tolerate: false,
            problems: Vec::new(),
            handle,
            actual_sha256: None,
        }
    }

    /// Read to the end even after a chunk mismatch, collecting problems (for verify).
    pub fn tolerant(mut self) -> Self {
        self.tolerate = true;
        self
    }

    /// Keep `ahead` chunk fetches in flight.
    fn fill(&mut self) {
        while self.pending.len() < self.ahead && self.next_fetch < self.expected.len() {
            let start = self.next_fetch as u64 * self.chunk_size;
            let end = (start + self.chunk_size).min(self.size);
            let store = self.store.clone();
            let key = self.key.clone();
            self.pending.push_back(
                self.handle
                    .spawn(async move { store.get_range(&key, start..end).await }),
            );
            self.next_fetch += 1;
        }
    }

    fn next_chunk(&mut self) -> io::Result<bool> {
        if self.next_index >= self.expected.len() {
            return Ok(false);
        }
        self.fill();
        let index = self.next_index;
        // Advance before anything can fail: a reader asked to go on after a failed
        // fetch (verify reads on to the end) moves to the next chunk, never back to
        // a fetch it already took out of the queue.
        self.next_index += 1;
        let Some(pending) = self.pending.pop_front() else {
            return Err(io::Error::other(format!(
                "{}: chunk {} of {}: no fetch was started for it",
                self.what,
                index + 1,
                self.expected.len()
            )));
        };
        let fetched = self.handle.block_on(pending).map_err(io::Error::other)?;
        self.fill();
        let start = index as u64 * self.chunk_size;
        let want = (start + self.chunk_size)
            .min(self.size)
            .saturating_sub(start);
        let data = match fetched {
            Ok(d) if d.len() as u64 == want => d,
            Ok(d) => {
                return self.chunk_failed(format!(
                    "{}: chunk {} of {}: {} bytes read, the manifest says {want} (the stored object is shorter or longer than written)",
                    self.what,
                    index + 1,
                    self.expected.len(),
                    d.len()
                ));
            }
            // The object the manifest describes is gone.
            Err(e) if e.is_not_found() => {
                return self.chunk_failed(format!(
                    "{}: chunk {} of {}: {e}",
                    self.what,
                    index + 1,
                    self.expected.len()
                ));
            }
            Err(e) => return Err(io::Error::other(e.to_string())),
        };
        self.whole.update(&data);
        let actual = hex::encode(Sha256::digest(&data));
        if actual != self.expected[index] {
            let msg = format!(
                "{}: chunk {} of {}: expected sha256 {}, actual {actual}",
                self.what,
                index + 1,
                self.expected.len(),
                self.expected[index]
            );
            if !self.tolerate {
                return Err(mismatch(msg));
            }
            self.problems.push(msg);
        }
        self.current = data;
        Ok(true)
    }

    /// A chunk that could not be read as the manifest describes it: an integrity
    /// failure. A tolerant reader notes it and goes on with the next chunk (its bytes
    /// are missing from the whole object's hash, which then fails too).
    fn chunk_failed(&mut self, msg: String) -> io::Result<bool> {
        if !self.tolerate {
            return Err(mismatch(msg));
        }
        self.problems.push(msg);
        self.current = Bytes::new();
        Ok(true)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.done = true;
        let actual = hex::encode(std::mem::take(&mut self.whole).finalize());
        self.actual_sha256 = Some(actual.clone());
        if actual != self.expected_total {
            let msg = format!(
                "{}: stored object: expected sha256 {}, actual {actual}",
                self.what, self.expected_total
            );
            if !self.tolerate {
                return Err(mismatch(msg));
            }
            self.problems.push(msg);
        }
        Ok(())
    }
}

impl Drop for ChunkReader {
    fn drop(&mut self) {
        // A reader given up on (a mismatch, an error) leaves no fetch running.
        for p in &self.pending {
            p.abort();
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            if !self.next_chunk()? {
                self.finish()?;
                return Ok(0);
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Checks the decompressed stream against the manifest's raw size and SHA-256 when it
/// reaches its end: the engine only sees end-of-stream after the check passed.
pub struct RawCheck<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    expected_size: u64,
    expected_sha256: String,
    what: String,
    checked: bool,
}

impl<R: Read> RawCheck<R> {
    /// Wrap `inner`, the decompressed stream of `manifest`.
    pub fn new(inner: R, manifest: &Manifest) -> Self {
        RawCheck {
            inner,
            hasher: Sha256::new(),
            size: 0,
            expected_size: manifest.raw.size,
            expected_sha256: manifest.raw.sha256.clone(),
            what: format!("backup {}/{}", manifest.source, manifest.backup_id),
            checked: false,
        }
    }
}

impl<R: Read> Read for RawCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
            self.size += n as u64;
            if self.size > self.expected_size {
                return Err(mismatch(format!(
                    "{}: raw stream longer than the manifest's {} bytes",
                    self.what, self.expected_size
                )));
            }
            return Ok(n);
        }
        if !self.checked {
            self.checked = true;
            let actual = hex::encode(std::mem::take(&mut self.hasher).finalize());
            if self.size != self.expected_size || actual != self.expected_sha256 {
                return Err(mismatch(format!(
                    "{}: raw stream: expected {} bytes sha256 {}, actual {} bytes sha256 {actual}",
                    self.what, self.expected_size, self.expected_sha256, self.size
                )));
            }
        }
        Ok(0)
    }
}

/// Check that the data object of `manifest` exists with the size the manifest gives,
/// before a byte of it is read: a missing, short or long object is an integrity
/// failure (exit 4), not an I/O error. A long one would otherwise pass, since only
/// the ranges the manifest names are read.
pub async fn check_stored(store: &Arc<dyn Store>, key: &str, manifest: &Manifest) -> Result<()> {
    let what = format!(
        "backup {}/{} in repository {}",
        manifest.source,
        manifest.backup_id,
        store.name()
    );
    match store.head(key).await {
        Ok(meta) if meta.size != manifest.stored.size => Err(Error::integrity(format!(
            "{what}: stored object {key} is {} bytes, the manifest says {} (cut short or appended to); restore another backup or another repository",
            meta.size, manifest.stored.size
        ))),
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Err(Error::integrity(format!(
            "{what}: stored object {key} is missing although the manifest is present; restore another backup or another repository"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Map an I/O error from a read chain to the crate error, keeping integrity failures
/// as such (exit 4).
pub fn read_error(context: &str, err: io::Error) -> Error {
    match integrity_of(&err) {
        Some(msg) => Error::integrity(msg),
        None => Error::io(context, err),
    }
}

/// Open the decompressing, fully checked raw stream of `manifest`'s data in `store`.
pub fn open_raw(
    store: Arc<dyn Store>,
    key: String,
    manifest: &Manifest,
    ahead: usize,
    handle: Handle,
) -> Result<RawCheck<zstd::stream::read::Decoder<'static, io::BufReader<ChunkReader>>>> {
    let chunks = ChunkReader::new(store, key, manifest, ahead, handle);
    let decoder = zstd::stream::read::Decoder::new(chunks).map_err(|e| Error::io("zstd", e))?;
    Ok(RawCheck::new(decoder, manifest))
}
