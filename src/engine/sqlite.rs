//! SQLite: an online, consistent copy through SQLite's backup API.
//!
//! The copy is made in one backup step, inside one read transaction, so it is a
//! consistent snapshot even while other processes write (in WAL mode writers go on; in
//! rollback-journal mode they wait for the copy). The copy lands in a spool file, is
//! switched to rollback-journal mode so the file is self-contained, passes
//! `PRAGMA integrity_check`, and its rows are counted per table: the counts describe
//! exactly the bytes that are uploaded.

use super::counts::{self, Counts};
use super::spool::{Spool, SpoolFile};
use super::{Engine, RestoreJob, RestoreOutcome, Snapshot};
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The SQLite engine of one database file.
#[derive(Debug, Clone)]
pub struct SqliteEngine {
    path: PathBuf,
}

impl SqliteEngine {
    /// An engine for the database at `path`.
    pub fn new(path: PathBuf) -> Self {
        SqliteEngine { path }
    }
}

/// Quote an identifier for SQL text.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Rows per user table, as `rows.TABLE`.
pub fn count_rows(conn: &Connection) -> Result<Counts> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )?;
    let tables: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    let mut out = Counts::new();
    for t in tables {
        let n: i64 = conn.query_row(&format!("SELECT COUNT(*) FROM {}", ident(&t)), [], |r| {
            r.get(0)
        })?;
        out.insert(format!("rows.{t}"), n as u64);
    }
    Ok(out)
}

/// `PRAGMA integrity_check`, as an integrity error naming `what` when it is not `ok`.
pub fn integrity_check(conn: &Connection, what: &str) -> Result<()> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::integrity(format!("{what}: integrity_check failed: {e}")))?;
    if lines.len() == 1 && lines[0] == "ok" {
        Ok(())
    } else {
        Err(Error::integrity(format!(
            "{what}: integrity_check: {}",
            lines.join("; ")
        )))
    }
}

fn sidecar(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

impl Engine for SqliteEngine {
    fn snapshot(&self, spool: &Spool, now: &dyn Fn() -> DateTime<Utc>) -> Result<Snapshot> {
        let what = format!("sqlite database {}", self.path.display());
        if !self.path.is_file() {
            return Err(Error::failed(format!(
                "{what}: not found (check the source's `path`)"
            )));
        }
        let src = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::from(e).context(&what))?;
        src.busy_timeout(Duration::from_secs(30))?;
        let journal_mode: String = src.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        let pages: i64 = src.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let page_size: i64 = src.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let estimate = (pages * page_size).max(0) as u64;

        let spool_path = spool.create(estimate)?;
        let mut dst = Connection::open(&spool_path)?;
        // Conservative consistency point: the copy's read transaction starts after this.
        let consistency_point = now();
        {
            let backup = rusqlite::backup::Backup::new(&src, &mut dst)?;
            loop {
                // -1: all pages in one step, hence one read transaction, hence one snapshot.
                match backup.step(-1)? {
                    rusqlite::backup::StepResult::Done => break,
                    rusqlite::backup::StepResult::More => continue,
                    rusqlite::backup::StepResult::Busy | rusqlite::backup::StepResult::Locked => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        drop(src);
        // A self-contained file: no WAL beside it, whatever the source used.
        let mode: String = dst.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(Error::failed(format!(
                "{what}: could not make the copy self-contained (journal_mode {mode})"
            )));
        }
        integrity_check(&dst, &format!("{what} (snapshot copy)"))?;
        let counts = count_rows(&dst)?;
        dst.close().map_err(|(_, e)| Error::from(e))?;

        let file = File::open(&spool_path)
            .map_err(|e| Error::io(format!("spool file {}", spool_path.display()), e))?;
        let size = file.metadata().map(|m| m.len()).ok();
        Ok(Snapshot {
            reader: Box::new(SpoolFile::new(file, spool_path)),
            counts: counts.into(),
            consistency_point,
            size_hint: size,
            details: serde_json::json!({
                "path": self.path.display().to_string(),
                "source-journal-mode": journal_mode,
                "page-size": page_size,
            }),
        })
    }

    fn check_target(&self, target: &str, force: bool) -> Result<()> {
        super::check_file_target(target, force)
    }

    fn sweep_staging(&self, target: &str) -> Result<Vec<String>> {
        super::sweep_file_target(target)
    }

    fn count_target(&self, target: &str) -> Result<Counts> {
        let what = format!("sqlite database {target}");
        let conn = Connection::open_with_flags(target, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| Error::from(e).context(&what))?;
        integrity_check(&conn, &what)?;
        count_rows(&conn)
    }

    fn restore(
        &self,
        target: &str,
        stream: &mut dyn Read,
        expected: &Counts,
        job: &RestoreJob,
    ) -> Result<RestoreOutcome> {
        let target = Path::new(target);
        let staging = super::stage_beside(target, stream, job)?;
        let what = format!("restored copy {}", staging.path().display());
        let conn = Connection::open_with_flags(staging.path(), OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|e| Error::from(e).context(&what))?;
        integrity_check(&conn, &what)?;
        let actual = count_rows(&conn)?;
        conn.close().map_err(|(_, e)| Error::from(e))?;
        let report = counts::compare(expected, &actual);
        if !report.ok() {
            return Ok(RestoreOutcome {
                counts: report,
                swapped: false,
                after_swap_error: None,
            });
        }
        job.control.commit(|| {
            // Fold any WAL of the old target into it before its sidecars go, so that a
            // crash before the rename leaves the old database whole, and a stale WAL can
            // never be replayed onto the restored one.
            if target.exists()
                && let Ok(old) = Connection::open(target)
            {
                let _ = old.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                let _ = old.close();
            }
            for ext in ["-wal", "-shm", "-journal"] {
                let side = sidecar(target, ext);
                if side.exists() {
                    fs::remove_file(&side)
                        .map_err(|e| Error::io(format!("removing {}", side.display()), e))?;
                }
            }
            super::swap_in(staging, target)
        })?;
        Ok(RestoreOutcome {
            counts: report,
            swapped: true,
            after_swap_error: None,
        })
    }
}
