//! The only place object keys are built and parsed.
//!
//! ```text
//! <source>/<backup-id>/data           the stored (compressed) stream
//! <source>/<backup-id>/manifest.json  written last: the backup exists once it does
//! <source>/<backup-id>/verify.json    the newest verification result
//! <source>/<backup-id>/restore-test.json  the newest trial restore from this repository
//! _leases/<source>/<generation>        who may back the source up now (scheduler)
//! ```
//! Source names start with a letter or digit, so `_leases/` never meets a source.
//! Keys are relative to the repository's root (its URL path or prefix).

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};

/// Object name of the stored stream.
pub const DATA: &str = "data";
/// Object name of the manifest.
pub const MANIFEST: &str = "manifest.json";
/// Object name of the verification result.
pub const VERIFY: &str = "verify.json";
/// Object name of the newest trial restore's result.
pub const RESTORE_TEST: &str = "restore-test.json";

/// The key of `object` of backup `id` of `source`.
pub fn key(source: &str, id: &str, object: &str) -> String {
    format!("{source}/{id}/{object}")
}

/// Key of the data object.
pub fn data_key(source: &str, id: &str) -> String {
    key(source, id, DATA)
}

/// Key of the manifest.
pub fn manifest_key(source: &str, id: &str) -> String {
    key(source, id, MANIFEST)
}

/// Key of the verification result.
pub fn verify_key(source: &str, id: &str) -> String {
    key(source, id, VERIFY)
}

/// Key of the trial restore result.
pub fn restore_test_key(source: &str, id: &str) -> String {
    key(source, id, RESTORE_TEST)
}

/// The listing prefix of every backup of `source`.
pub fn source_prefix(source: &str) -> String {
    format!("{source}/")
}

/// The listing prefix of the lease objects of `source`.
pub fn lease_prefix(source: &str) -> String {
    format!("_leases/{source}/")
}

/// The lease object of generation `generation` of `source`; zero-padded so that keys
/// sort by generation.
pub fn lease_key(source: &str, generation: u64) -> String {
    format!("{}{generation:020}", lease_prefix(source))
}

/// The generation a lease key names.
pub fn parse_lease_key(source: &str, key: &str) -> Option<u64> {
    let rest = key.strip_prefix(&lease_prefix(source))?;
    (rest.len() == 20 && rest.bytes().all(|b| b.is_ascii_digit()))
        .then(|| rest.parse().ok())
        .flatten()
}

/// A parsed key: (source, backup id, object name).
pub fn parse_key(key: &str) -> Option<(&str, &str, &str)> {
    let mut parts = key.split('/');
    let (s, id, obj) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_backup_id(id) {
        return None;
    }
    Some((s, id, obj))
}

/// The backup id of an object key under a source's `prefix` (`PREFIX<id>/<object>`);
/// `None` for a key of any other shape.
pub fn upload_backup_id<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    let (id, object) = key.strip_prefix(prefix)?.split_once('/')?;
    (is_backup_id(id) && !object.is_empty() && !object.contains('/')).then_some(id)
}

/// The start time a backup id encodes (to the second).
pub fn backup_id_time(id: &str) -> Option<DateTime<Utc>> {
    if !is_backup_id(id) {
        return None;
    }
    chrono::NaiveDateTime::parse_from_str(&id[..15], "%Y%m%dT%H%M%S")
        .ok()
        .map(|t| t.and_utc())
}

/// A new backup id: UTC start time to the second, then 4 random hex digits so that
/// two runs in the same second never collide. Ids sort by time.
pub fn new_backup_id(started: DateTime<Utc>) -> String {
    let suffix: u16 = rand::random();
    format!("{}-{suffix:04x}", started.format("%Y%m%dT%H%M%SZ"))
}

/// Whether `id` has the form of a backup id (`20261122T093000Z-3f9a`).
pub fn is_backup_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 21
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
        && b[16] == b'-'
        && b[17..].iter().all(|c| c.is_ascii_hexdigit())
}

/// Check a user-supplied backup id.
pub fn check_backup_id(id: &str) -> Result<()> {
    if is_backup_id(id) {
        Ok(())
    } else {
        Err(Error::bad_input(format!(
            "`{id}` is not a backup id (ids look like 20261122T093000Z-3f9a; `lifeboat list` shows them)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ids_round_trip_through_keys() {
        let id = new_backup_id(Utc.with_ymd_and_hms(2026, 11, 22, 9, 30, 0).unwrap());
        assert!(id.starts_with("20261122T093000Z-"));
        assert!(is_backup_id(&id));
        let k = manifest_key("app", &id);
        assert_eq!(parse_key(&k), Some(("app", id.as_str(), MANIFEST)));
        assert_eq!(parse_key("app/not-an-id/data"), None);
        assert_eq!(parse_key("app/x"), None);
        assert_eq!(
            backup_id_time(&id),
            Some(Utc.with_ymd_and_hms(2026, 11, 22, 9, 30, 0).unwrap())
        );
    }

    #[test]
    fn upload_keys_name_their_backup_only_under_the_prefix() {
        let id = "20261122T093000Z-3f9a";
        assert_eq!(upload_backup_id("app/", &data_key("app", id)), Some(id));
        assert_eq!(upload_backup_id("app/", &data_key("app2", id)), None);
        assert_eq!(upload_backup_id("ap", &data_key("app", id)), None);
        assert_eq!(upload_backup_id("app/", "app/not-an-id/data"), None);
        assert_eq!(upload_backup_id("app/", &format!("app/{id}/x/data")), None);
        assert_eq!(upload_backup_id("app/", &format!("app/{id}/")), None);
    }
}
