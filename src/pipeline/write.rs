//! The backup side of the pipeline.

use crate::error::{Error, Result};
use crate::storage::{MultipartUpload, Part, StorageError};
use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use sha2::{Digest, Sha256};
use std::io::Read;
use tokio::sync::mpsc;

/// Tuning of the stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// zstd level.
    pub level: i32,
    /// Size of blocks handed to uploaders.
    pub block_size: usize,
    /// Blocks queued per destination before the reader waits.
    pub queue_depth: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            level: 3,
            block_size: 1 << 20,
            queue_depth: 8,
        }
    }
}

/// Sizes and hashes of one produced stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineTotals {
    /// Raw bytes read from the engine.
    pub raw_size: u64,
    /// SHA-256 of the raw bytes.
    pub raw_sha256: String,
    /// Compressed bytes produced.
    pub stored_size: u64,
    /// SHA-256 of the compressed bytes.
    pub stored_sha256: String,
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    progress: Option<Box<dyn Fn(u64) + Send>>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        if let Some(p) = &self.progress {
            p(self.size);
        }
        Ok(n)
    }
}

/// Read `raw` to its end, compress, hash, and send every block to each sender.
///
/// Runs on a blocking thread. A destination whose receiver is gone (its upload failed)
/// is dropped from the fan-out; the others go on. Fails if reading or compressing
/// fails, or if no destination is left.
pub fn produce(
    raw: impl Read,
    senders: Vec<mpsc::Sender<Bytes>>,
    opts: StreamOptions,
    progress: Option<Box<dyn Fn(u64) + Send>>,
) -> Result<PipelineTotals> {
    let hashing = HashingReader {
        inner: raw,
        hasher: Sha256::new(),
        size: 0,
        progress,
    };
    let mut encoder = zstd::stream::read::Encoder::new(hashing, opts.level)
        .map_err(|e| Error::io("starting zstd", e))?;
    let mut stored = Sha256::new();
    let mut stored_size = 0u64;
    let mut senders: Vec<Option<mpsc::Sender<Bytes>>> = senders.into_iter().map(Some).collect();
    loop {
        let mut block = BytesMut::zeroed(opts.block_size);
        let mut filled = 0;
        // Fill whole blocks so uploads see few, large writes.
        while filled < block.len() {
            let n = encoder
                .read(&mut block[filled..])
                .map_err(|e| Error::io("reading the source stream", e))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        block.truncate(filled);
        let block = block.freeze();
        stored.update(&block);
        stored_size += filled as u64;
        for slot in senders.iter_mut() {
            if let Some(tx) = slot
                && tx.blocking_send(block.clone()).is_err()
            {
                *slot = None;
            }
        }
        if senders.iter().all(Option::is_none) {
            return Err(Error::failed(
                "every destination failed; stopped reading the source",
            ));
        }
    }
    let hashing = encoder.finish().into_inner();
    Ok(PipelineTotals {
        raw_size: hashing.size,
        raw_sha256: hex::encode(hashing.hasher.finalize()),
        stored_size,
        stored_sha256: hex::encode(stored.finalize()),
    })
}

/// What one destination's upload produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationUpload {
    /// Bytes uploaded.
    pub size: u64,
    /// SHA-256 of each part.
    pub chunks: Vec<String>,
    /// The store's own checksum of the whole object, if it has one.
    pub provider_checksum: Option<String>,
}

/// Receive blocks, cut them into `part_size` parts, hash each part and upload up to
/// `in_flight` parts at once.
///
/// The upload is completed only after the producer closed the channel normally,
/// i.e. `finished` resolves to true; otherwise (or on any error) it is aborted, so
/// nothing partial ever becomes visible. Dropping the receiver on failure tells the
/// producer to stop feeding this destination.
pub async fn upload(
    up: Box<dyn MultipartUpload>,
    mut rx: mpsc::Receiver<Bytes>,
    part_size: usize,
    in_flight: usize,
    finished: impl std::future::Future<Output = bool>,
    after_part: impl Fn(usize),
) -> Result<DestinationUpload> {
    // The verdict on the stream may come before the input ends: a failed or cancelled
    // source whose reader is stuck never closes the channel, so the upload must not
    // wait for it before aborting.
    let mut finished = std::pin::pin!(finished);
    let mut verdict: Option<bool> = None;
    let result: std::result::Result<DestinationUpload, StorageError> = async {
        let mut buf = BytesMut::with_capacity(part_size);
        let mut chunks = Vec::new();
        let mut size = 0u64;
        let mut sending = FuturesUnordered::new();
        let mut sent = 0usize;
        let mut input_done = false;
        loop {
            // Cut a part when one is full, or the last one when the input ended.
            let ready =
                buf.len() >= part_size || (input_done && (!buf.is_empty() || chunks.is_empty()));
            if ready && sending.len() < in_flight {
                let data = buf.split_to(part_size.min(buf.len())).freeze();
                let part = Part::new(chunks.len(), size, data);
                chunks.push(hex::encode(part.sha256));
                size += part.data.len() as u64;
                sending.push(up.put_part(part));
                continue;
            }
            if input_done && !ready && sending.is_empty() {
                break;
            }
            tokio::select! {
                // Finish parts before reading more, which keeps memory bounded.
                Some(res) = sending.next(), if !sending.is_empty() => {
                    res?;
                    sent += 1;
                    after_part(sent);
                }
                block = rx.recv(), if !input_done && buf.len() < part_size => {
                    match block {
                        Some(b) => buf.extend_from_slice(&b),
                        None => input_done = true,
                    }
                }
                v = &mut finished, if verdict.is_none() => {
                    verdict = Some(v);
                    if !v {
                        break;
                    }
                }
            }
        }
        Ok(DestinationUpload {
            size,
            chunks,
            provider_checksum: None,
        })
    }
    .await;
    let ok = match verdict {
        Some(v) => v,
        None if result.is_ok() => finished.await,
        None => false,
    };
    match result {
        Ok(mut done) if ok => {
            let receipt = up.complete(done.chunks.len()).await?;
            done.provider_checksum = receipt.provider_checksum;
            Ok(done)
        }
        Ok(_) => {
            let _ = up.abort().await;
            Err(Error::failed("the source stream failed; upload aborted"))
        }
        Err(e) => {
            drop(rx);
            let _ = up.abort().await;
            Err(e.into())
        }
    }
}
