//! A policy set with a `stream` source (a file or FIFO) and chosen repositories.

// Included by several test crates, not all of which use every helper.
#[allow(unused_imports)]
pub use crate::util::{local_repo, s3_repo, stderr, stdout};
use assert_cmd::Command;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Env {
    pub dir: tempfile::TempDir,
    pub policies: PathBuf,
    pub input: PathBuf,
}

/// `repos`: (name, TOML body) pairs; the source streams to them in this order.
pub fn env(repos: &[(&str, String)]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let input = dir.path().join("input");
    let mut text = String::new();
    for (name, body) in repos {
        text.push_str(&format!("[repositories.{name}]\n{body}\n\n"));
    }
    let names: Vec<String> = repos.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    text.push_str(&format!(
        "[sources.stream]\nkind = \"file\"\npath = \"{}\"\ndestinations = [{}]\nretention = {{ keep-last = 3 }}\n",
        input.display(),
        names.join(", ")
    ));
    std::fs::write(policies.join("lifeboat.toml"), text).unwrap();
    Env {
        dir,
        policies,
        input,
    }
}

impl Env {
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("lifeboat").unwrap();
        c.arg("--policies")
            .arg(&self.policies)
            .env_remove("LIFEBOAT_FAILPOINT")
            .env_remove("LIFEBOAT_NOW")
            .env_remove("AZURE_STORAGE_SAS_TOKEN")
            .env("AZURE_STORAGE_KEY", crate::azurite::ACCOUNT_KEY)
            .env("LIFEBOAT_SPOOL_DIR", self.dir.path().join("spool"));
        c
    }

    /// Fill the input with `len` incompressible bytes; returns their SHA-256.
    pub fn write_input(&self, len: usize) -> String {
        let data = noise(len);
        std::fs::write(&self.input, &data).unwrap();
        hex::encode(Sha256::digest(&data))
    }
}

/// Deterministic bytes that do not compress (xorshift).
pub fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Make `path` a named pipe and feed it `data` once, from a thread.
pub fn fifo_once(path: &Path, data: Vec<u8>) -> std::thread::JoinHandle<()> {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all(&data).unwrap();
    })
}
