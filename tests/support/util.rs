//! Small helpers every black-box test crate uses: output as text, file hashes and
//! listings, and the policy snippets of a local and an S3 (moto) repository.
// Shared by several test crates, each of which uses a part.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Output;

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

/// Every file under `dir`, recursively (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The body of a `[repositories.NAME]` table for a local folder.
pub fn local_repo(dir: &Path) -> String {
    format!("url = \"file://{}\"\npart-size = \"1MiB\"", dir.display())
}

/// The body of a `[repositories.NAME]` table for a bucket on moto (or a proxy to it);
/// a short read timeout keeps fault tests quick.
pub fn s3_repo(endpoint: &str, bucket: &str) -> String {
    format!(
        "url = \"s3://{bucket}/backups\"\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\npath-style = true\npart-size = \"5MiB\"\nread-timeout = \"3s\""
    )
}
