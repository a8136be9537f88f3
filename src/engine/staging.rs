//! Staging copies a later run can recognise as its own, and their removal once the
//! restore that made them is dead.
//!
//! A restore writes into a staging copy beside its target and swaps it in at the end;
//! a restore killed before that leaves the copy behind (no destructor runs after
//! SIGKILL). So every staging copy is named after its target and its owner:
//!
//! ```text
//! .NAME.lifeboat-staging.PID.HOST.SOURCE.BACKUP.RANDOM     beside the file NAME
//! DB_lb_staging_PID_HOST_RANDOM                             beside database DB
//! ```
//!
//! where HOST is a short digest of the host name (a database name has 63 bytes). The
//! next restore of the target, `dr resume` and `prune` remove the copies whose owner is
//! dead: made on this host by a process that no longer runs. A copy of a process that
//! still runs is never removed, even when it is this process (an earlier attempt of a
//! step unwinds and removes its own). A copy made on another host (a shared file
//! system) or one named before owners were recorded (`.NAME.lifeboat-staging-XXXXXX`)
//! is removed once nothing has written it for [`FOREIGN_STALE`].
//!
//! The ledger (`.lifeboat/restores/` beside the catalog) lists the targets of restores
//! in progress, one file each, removed when the restore ends: what a killed restore
//! leaves there tells `prune` which targets to sweep.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A copy made on another host, or by a version that did not name its owner, is
/// removed once untouched for this long: no restore of ours stays silent for a day.
pub const FOREIGN_STALE: Duration = Duration::from_secs(24 * 3600);

/// The process and host that make staging copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Process id.
    pub pid: u32,
    /// Short digest of the host name (8 hex digits).
    pub host: String,
}

/// A short digest of a host name: fits in a database name, has no separator in it.
pub fn host_tag(host: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(host.as_bytes())[..4])
}

impl Owner {
    /// This process on this host.
    pub fn me() -> Owner {
        Owner {
            pid: std::process::id(),
            host: host_tag(&gethostname::gethostname().to_string_lossy()),
        }
    }

    /// Whether the owner may still be working: another host, or a running process.
    /// Without `/proc` (not Linux) every owner counts as alive.
    pub fn may_be_alive(&self) -> bool {
        if self.host != Owner::me().host {
            return true;
        }
        if self.pid == std::process::id() {
            return true;
        }
        let proc = Path::new("/proc");
        !proc.join("self").exists() || proc.join(self.pid.to_string()).exists()
    }

    /// Whether it runs on this host (so that its liveness is known).
    pub fn is_local(&self) -> bool {
        self.host == Owner::me().host
    }
}

/// The name of the replaced folder moved aside on the way out, for a staging copy
/// named `staged`.
pub fn old_name(staged: &str) -> String {
    staged.replacen(".lifeboat-staging.", ".lifeboat-old.", 1)
}

/// The prefix of every staging copy beside the file or folder named `name`.
fn prefix(name: &str) -> String {
    format!(".{name}.lifeboat-staging.")
}

/// The prefix of a staging copy of a restore of `source` backup `backup_id` beside
/// `name`, made by this process; a random part follows.
pub fn name_prefix(name: &str, source: &str, backup_id: &str) -> String {
    let me = Owner::me();
    // Dots separate the owner's fields; keep them out of the informative part.
    let clean = |s: &str| s.replace(['.', '/', '\\'], "_");
    format!(
        "{}{}.{}.{}.{}.",
        prefix(name),
        me.pid,
        me.host,
        clean(source),
        clean(backup_id)
    )
}

/// What an entry's name says about it, when it is a staging copy beside `name`.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// Named with its owner.
    Owned(Owner),
    /// Named before owners were recorded.
    Legacy,
}

fn parse(entry: &str, name: &str) -> Option<Found> {
    // A replaced folder on its way out is named like the staging copy that replaced it.
    let old = format!(".{name}.lifeboat-old.");
    if let Some(rest) = entry
        .strip_prefix(&prefix(name))
        .or_else(|| entry.strip_prefix(&old))
    {
        let mut parts = rest.split('.');
        let pid = parts.next()?.parse().ok()?;
        let host = parts.next()?.to_string();
        return Some(Found::Owned(Owner { pid, host }));
    }
    // Older names: `.NAME.lifeboat-staging-XXXXXX` (and the files engine's
    // `.NAME.lifeboat-old-XXXXXX`, the replaced folder on its way out).
    ["lifeboat-staging-", "lifeboat-old-"]
        .iter()
        .any(|k| entry.starts_with(&format!(".{name}.{k}")))
        .then_some(Found::Legacy)
}

/// Whether nothing wrote `path` for `age`.
fn untouched_for(path: &Path, age: Duration) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|d| d >= age)
}

/// Remove the staging copies beside `target` (a file or folder path) whose restore is
/// dead (see the module doc); returns what was removed. A folder that does not exist
/// holds none.
pub fn sweep_beside(target: &Path) -> Result<Vec<PathBuf>> {
    let Some(name) = target.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let file_name = entry.file_name();
        let Some(entry_name) = file_name.to_str() else {
            continue;
        };
        let path = entry.path();
        let dead = match parse(entry_name, name) {
            None => continue,
            Some(Found::Owned(owner)) if owner.is_local() => !owner.may_be_alive(),
            Some(_) => untouched_for(&path, FOREIGN_STALE),
        };
        if !dead {
            continue;
        }
        let gone = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match gone {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed the staging copy of a restore that did not finish");
                removed.push(path);
            }
            // Another sweep was quicker.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::io(
                    format!("removing the leftover staging copy {}", path.display()),
                    e,
                ));
            }
        }
    }
    Ok(removed)
}

/// A restore in progress, as the ledger lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct LedgerEntry {
    /// Source restored.
    pub source: String,
    /// Backup restored.
    pub backup_id: String,
    /// Target restored into.
    pub target: String,
    /// Process id of the restore.
    pub pid: u32,
    /// [`host_tag`] of its host.
    pub host: String,
}

impl LedgerEntry {
    /// Its owner.
    pub fn owner(&self) -> Owner {
        Owner {
            pid: self.pid,
            host: self.host.clone(),
        }
    }
}

/// The ledger entry of one restore in progress; removed when dropped (the restore
/// ended, whatever the outcome).
#[derive(Debug)]
pub struct LedgerGuard {
    path: PathBuf,
}

impl Drop for LedgerGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Record a restore of `source` backup `backup_id` into `target` in the ledger `dir`.
pub fn ledger_enter(
    dir: &Path,
    source: &str,
    backup_id: &str,
    target: &str,
) -> Result<LedgerGuard> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let me = Owner::me();
    let entry = LedgerEntry {
        source: source.to_string(),
        backup_id: backup_id.to_string(),
        target: target.to_string(),
        pid: me.pid,
        host: me.host,
    };
    let path = dir.join(format!(
        "{}-{}-{:08x}.json",
        entry.host,
        entry.pid,
        rand::random::<u32>()
    ));
    let text = serde_json::to_vec(&entry).expect("ledger entries serialise");
    std::fs::write(&path, text).map_err(|e| Error::io(path.display(), e))?;
    Ok(LedgerGuard { path })
}

/// The ledger's entries whose restore is dead, with the file of each (remove it once
/// its target is swept). Unreadable files are skipped.
pub fn ledger_dead(dir: &Path) -> Vec<(PathBuf, LedgerEntry)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let text = std::fs::read(&path).ok()?;
            let entry: LedgerEntry = serde_json::from_slice(&text).ok()?;
            let owner = entry.owner();
            let dead = if owner.is_local() {
                !owner.may_be_alive()
            } else {
                untouched_for(&path, FOREIGN_STALE)
            };
            dead.then_some((path, entry))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid that runs no process: a child that has exited and been reaped.
    pub(crate) fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn names_carry_the_owner_and_parse_back() {
        let p = name_prefix("hive.db", "hive", "20261201T000000Z-ab12");
        let me = Owner::me();
        let name = format!("{p}x1y2z3");
        assert_eq!(parse(&name, "hive.db"), Some(Found::Owned(me)));
        assert_eq!(
            parse(".hive.db.lifeboat-staging-Ab3dEf", "hive.db"),
            Some(Found::Legacy)
        );
        assert_eq!(parse(".hive.db-wal", "hive.db"), None);
        assert_eq!(parse(".other.db.lifeboat-staging.1.x.y", "hive.db"), None);
    }

    #[test]
    fn only_copies_of_dead_local_restores_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("hive.db");
        let host = Owner::me().host;
        let dead = dir.path().join(format!(
            ".hive.db.lifeboat-staging.{}.{host}.hive.b1.r1",
            dead_pid()
        ));
        let live = dir.path().join(format!(
            ".hive.db.lifeboat-staging.{}.{host}.hive.b1.r2",
            std::process::id()
        ));
        let foreign = dir
            .path()
            .join(".hive.db.lifeboat-staging.1.00000000.hive.b1.r3");
        let legacy = dir.path().join(".hive.db.lifeboat-staging-AbCdEf");
        let other = dir.path().join("hive.db");
        for p in [&dead, &live, &foreign, &legacy, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        assert_eq!(sweep_beside(&target).unwrap(), vec![dead.clone()]);
        for p in [&live, &foreign, &legacy, &other] {
            assert!(p.exists(), "{} was removed", p.display());
        }
    }
}
