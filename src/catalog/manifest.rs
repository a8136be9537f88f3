//! The manifest: the record that makes a backup exist, written last.
//!
//! Manifests and verification results are stored "sealed": the JSON body is kept as
//! exact text inside an envelope that carries the SHA-256 of that text, so a flipped
//! byte anywhere is detected before a field is trusted.

use crate::engine::counts::Counts;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Format tag of manifests this version writes and reads.
pub const MANIFEST_FORMAT: &str = "lifeboat-manifest/1";
/// Format tag of verification results.
pub const VERIFY_FORMAT: &str = "lifeboat-verify/1";
/// Format of a sealed trial restore result.
pub const RESTORE_TEST_FORMAT: &str = "lifeboat-restore-test/1";

/// The stored (compressed) object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StoredInfo {
    /// Bytes stored.
    pub size: u64,
    /// SHA-256 of all stored bytes.
    pub sha256: String,
    /// Size of each chunk but the last.
    pub chunk_size: u64,
    /// SHA-256 of each chunk, in order.
    pub chunks: Vec<String>,
    /// The store's own checksum of the object (S3 composite SHA-256, Azure MD5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_checksum: Option<String>,
}

/// The raw stream the engine produced (before compression).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawInfo {
    /// Bytes.
    pub size: u64,
    /// SHA-256.
    pub sha256: String,
}

/// What one backup on one destination is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    /// Source name.
    pub source: String,
    /// Engine kind.
    pub kind: String,
    /// Backup id, shared by every destination of the run.
    pub backup_id: String,
    /// Repository this manifest describes.
    pub repository: String,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When the data was complete on this destination.
    pub finished_at: DateTime<Utc>,
    /// The instant the data reflects (for RPO).
    pub consistency_point: DateTime<Utc>,
    /// lifeboat version that wrote it.
    pub tool_version: String,
    /// Host that ran the backup.
    pub host: String,
    /// Compression of the stored bytes (`zstd`).
    pub compression: String,
    /// Encryption of the stored bytes (`none`).
    pub encryption: String,
    /// The stored object.
    pub stored: StoredInfo,
    /// The raw stream.
    pub raw: RawInfo,
    /// Integrity counts of the snapshot.
    pub counts: Counts,
    /// Retention floor: never deleted before this, whatever the policy says later.
    pub keep_until: DateTime<Utc>,
    /// Engine-specific details.
    #[serde(default)]
    pub engine: serde_json::Value,
    /// Why the backup looks suspicious against the previous one (committed but
    /// flagged); absent in older manifests and when nothing was found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<Anomaly>,
}

/// A measure of a backup that dropped sharply against the source's previous backup
/// (a table emptied, a dump cut short): the backup is kept, and flagged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Anomaly {
    /// `raw-size`, or the name of a count (`rows.users`).
    pub measure: String,
    /// Its value in the previous backup.
    pub previous: u64,
    /// Its value in this backup (0 when the count is gone).
    pub current: u64,
    /// The backup compared against.
    pub previous_backup: String,
    /// The source's `anomaly.max-drop` that the drop reached.
    pub max_drop: f64,
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let drop = 100.0 * (self.previous - self.current.min(self.previous)) as f64
            / self.previous.max(1) as f64;
        write!(
            f,
            "{} dropped {drop:.0}% ({} -> {}) against {} (max-drop {})",
            self.measure, self.previous, self.current, self.previous_backup, self.max_drop
        )
    }
}

/// One count of a trial restore: from the manifest, and found in the restored copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TrialCount {
    /// Count name (`rows.users`, `keys.db0`, ...).
    pub name: String,
    /// From the manifest.
    pub expected: Option<u64>,
    /// In the restored copy.
    pub actual: Option<u64>,
}

/// The result of one trial restore: a backup restored into a scratch target and
/// recounted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RestoreTestResult {
    /// Source name.
    pub source: String,
    /// Backup id.
    pub backup_id: String,
    /// Repository the backup was read from.
    pub repository: String,
    /// When it started.
    pub tested_at: DateTime<Utc>,
    /// Restored, and every count matched the manifest.
    pub ok: bool,
    /// What the restore went into (`a temporary folder`, a database name; never a
    /// URL with credentials).
    pub target: String,
    /// Counts compared.
    pub counts: Vec<TrialCount>,
    /// What went wrong.
    pub problems: Vec<String>,
    /// How long the restore took, in seconds.
    pub duration_secs: f64,
    /// SHA-256 of the manifest object the trial restored from: a passing result
    /// vouches for that manifest only (absent in results of older versions, which
    /// vouch for nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
}

/// The result of one verification of one backup on one destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct VerifyResult {
    /// Source name.
    pub source: String,
    /// Backup id.
    pub backup_id: String,
    /// Repository.
    pub repository: String,
    /// When it ran.
    pub verified_at: DateTime<Utc>,
    /// Whether the full read-back matched.
    pub ok: bool,
    /// `full` (every byte read back) or `sample`.
    pub mode: String,
    /// Expected SHA-256 of the stored bytes.
    pub expected_sha256: String,
    /// SHA-256 actually read back (absent when the read failed).
    pub actual_sha256: Option<String>,
    /// What did not match.
    pub problems: Vec<String>,
    /// SHA-256 of the manifest object this result checked the data against. A
    /// passing result makes a backup verified only while its manifest still has this
    /// hash; results of older versions have none and vouch for nothing (see
    /// [`crate::catalog::CatalogBackup::verified`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Envelope<'a> {
    format: String,
    body_sha256: String,
    #[serde(borrow)]
    body: &'a serde_json::value::RawValue,
}

/// Serialise `body` in an envelope carrying its digest.
pub fn seal<T: Serialize>(format: &str, body: &T) -> Vec<u8> {
    let text = serde_json::to_string_pretty(body).expect("manifest types serialise");
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    format!("{{\n\"format\": \"{format}\",\n\"body-sha256\": \"{digest}\",\n\"body\": {text}\n}}\n")
        .into_bytes()
}

/// Parse a sealed document, checking format and digest. `what` names it in errors.
pub fn unseal<T: DeserializeOwned>(format: &str, bytes: &[u8], what: &str) -> Result<T> {
    let env: Envelope = serde_json::from_slice(bytes)
        .map_err(|e| Error::integrity(format!("{what}: not a valid sealed document ({e})")))?;
    if env.format != format {
        return Err(Error::integrity(format!(
            "{what}: format `{}`, expected `{format}` (written by another lifeboat version?)",
            env.format
        )));
    }
    let actual = hex::encode(Sha256::digest(env.body.get().as_bytes()));
    if actual != env.body_sha256 {
        return Err(Error::integrity(format!(
            "{what}: body digest mismatch: expected sha256 {}, actual {actual}",
            env.body_sha256
        )));
    }
    serde_json::from_str(env.body.get())
        .map_err(|e| Error::integrity(format!("{what}: invalid content ({e})")))
}

/// The smallest and largest chunk a repository's `part-size` allows (64 KiB, 5 GiB).
const CHUNK_SIZES: std::ops::RangeInclusive<u64> = (64 << 10)..=(5 << 30);

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Manifest {
    /// Check what a reader relies on before it uses a field: a manifest comes from a
    /// repository that someone else may be able to write, and its seal is a digest
    /// anyone can recompute. Every allocation and offset a reader computes from it is
    /// bounded by what is checked here (the object's real size is checked by HEAD
    /// before any read).
    pub fn check(&self) -> std::result::Result<(), String> {
        if !crate::storage::layout::is_backup_id(&self.backup_id) {
            return Err(format!("backup-id `{}` is not a backup id", self.backup_id));
        }
        if self.compression != "zstd" {
            return Err(format!(
                "compression `{}`: this version reads only zstd",
                self.compression
            ));
        }
        if self.encryption != "none" {
            return Err(format!(
                "encryption `{}`: this version reads only unencrypted backups",
                self.encryption
            ));
        }
        let s = &self.stored;
        if !CHUNK_SIZES.contains(&s.chunk_size) {
            return Err(format!(
                "stored.chunk-size {} is outside 64KiB..5GiB, the part sizes lifeboat writes",
                s.chunk_size
            ));
        }
        // An empty stream is stored as one empty chunk.
        let expected = s.size.div_ceil(s.chunk_size).max(1);
        if s.chunks.len() as u64 != expected {
            return Err(format!(
                "stored.chunks lists {} chunks, but {} bytes in chunks of {} make {expected}",
                s.chunks.len(),
                s.size,
                s.chunk_size
            ));
        }
        if let Some(bad) = s.chunks.iter().position(|c| !is_sha256_hex(c)) {
            return Err(format!("stored.chunks[{bad}] is not a SHA-256 in hex"));
        }
        for (field, v) in [
            ("stored.sha256", &s.sha256),
            ("raw.sha256", &self.raw.sha256),
        ] {
            if !is_sha256_hex(v) {
                return Err(format!("{field} is not a SHA-256 in hex"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Doc {
        a: u32,
        b: String,
    }

    #[test]
    fn sealed_documents_round_trip() {
        let d = Doc {
            a: 7,
            b: "x".into(),
        };
        let bytes = seal("t/1", &d);
        assert_eq!(unseal::<Doc>("t/1", &bytes, "doc").unwrap(), d);
    }

    #[test]
    fn every_flipped_bit_of_a_verify_result_is_detected() {
        let v = VerifyResult {
            source: "app".into(),
            backup_id: "20261122T093000Z-0001".into(),
            repository: "local".into(),
            verified_at: "2026-11-22T10:00:00Z".parse().unwrap(),
            ok: false,
            mode: "full".into(),
            expected_sha256: "a".repeat(64),
            actual_sha256: Some("b".repeat(64)),
            problems: vec!["chunk 1 of 2: expected sha256 a, actual b".into()],
            manifest_sha256: Some("c".repeat(64)),
        };
        let bytes = seal(VERIFY_FORMAT, &v);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    unseal::<VerifyResult>(VERIFY_FORMAT, &bad, "verify.json").is_err(),
                    "flip of bit {bit} at byte {i} ({:?}) went unnoticed",
                    bytes[i] as char
                );
            }
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let bytes = seal(
            "t/1",
            &Doc {
                a: 7,
                b: "hello".into(),
            },
        );
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                unseal::<Doc>("t/1", &bad, "doc").is_err(),
                "flip at byte {i} ({:?}) went unnoticed",
                bytes[i] as char
            );
        }
    }
}
