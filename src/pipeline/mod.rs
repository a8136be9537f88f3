//! Streaming adapters between engines and storage.
//!
//! Backup: the engine's raw stream is read ONCE on a blocking thread, hashed, compressed
//! with zstd and hashed again; each compressed block is handed to every destination's
//! uploader through a bounded channel, so memory stays bounded (blocks in flight x
//! destinations, plus one part buffer each) and reading, compression and uploads overlap.
//! Each uploader cuts the stream into fixed-size parts and hashes each one: those
//! chunk hashes go into that destination's manifest.
//!
//! Restore and verify: [`ChunkReader`] fetches the stored object chunk by chunk and
//! checks each chunk's hash before handing out a byte; at the end it checks the whole
//! object's hash and size. [`RawCheck`] does the same for the decompressed stream. A
//! mismatch surfaces as an I/O error wrapping [`IntegrityMismatch`].

mod read;
mod write;

pub use read::{ChunkReader, RawCheck, check_stored, integrity_of, open_raw, read_error};
pub use write::{DestinationUpload, PipelineTotals, StreamOptions, produce, upload};

/// A hash, size or chunk that does not match the manifest.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct IntegrityMismatch(pub String);
