//! The catalog: a SQLite cache of what the repositories hold, plus run history.
//!
//! Storage is the truth. Every row about a backup comes from its manifest (and
//! verification results from `verify.json` objects), so the catalog can be deleted and
//! rebuilt from the repositories at any time (`lifeboat catalog rebuild`).

pub mod manifest;

use crate::error::{Error, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use manifest::{Manifest, RestoreTestResult, VerifyResult};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const MIGRATIONS: &[&str] = &[
    // 1: backups, verifications, runs, deletions.
    "CREATE TABLE backups (
        repository TEXT NOT NULL,
        source TEXT NOT NULL,
        backup_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        consistency_point TEXT NOT NULL,
        keep_until TEXT NOT NULL,
        stored_size INTEGER NOT NULL,
        stored_sha256 TEXT NOT NULL,
        raw_size INTEGER NOT NULL,
        manifest TEXT NOT NULL,
        manifest_sha256 TEXT NOT NULL,
        PRIMARY KEY (repository, source, backup_id)
    );
    CREATE INDEX backups_by_source ON backups (source, started_at);
    CREATE TABLE verifications (
        repository TEXT NOT NULL,
        source TEXT NOT NULL,
        backup_id TEXT NOT NULL,
        verified_at TEXT NOT NULL,
        ok INTEGER NOT NULL,
        mode TEXT NOT NULL,
        result TEXT NOT NULL,
        PRIMARY KEY (repository, source, backup_id, verified_at)
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL,
        backup_id TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        status TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE deletions (
        repository TEXT NOT NULL,
        source TEXT NOT NULL,
        backup_id TEXT NOT NULL,
        deleted_at TEXT NOT NULL,
        reason TEXT NOT NULL
    );",
    // 2: DR runs and drills: one row per run, one per step (its checkpoint), and an
    // append-only timeline of state changes.
    "CREATE TABLE dr_runs (
        run_id TEXT PRIMARY KEY,
        plan TEXT NOT NULL,
        mode TEXT NOT NULL,
        started_at TEXT NOT NULL,
        incident_start TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        plan_json TEXT NOT NULL,
        report TEXT
    );
    CREATE TABLE dr_steps (
        run_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        effect TEXT NOT NULL,
        outputs TEXT NOT NULL,
        error TEXT,
        PRIMARY KEY (run_id, step_id)
    );
    CREATE TABLE dr_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        at TEXT NOT NULL,
        step_id TEXT NOT NULL,
        event TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX dr_events_by_run ON dr_events (run_id, id);",
    // 3: trial restores (a backup restored into a scratch target and recounted).
    "CREATE TABLE restore_tests (
        repository TEXT NOT NULL,
        source TEXT NOT NULL,
        backup_id TEXT NOT NULL,
        tested_at TEXT NOT NULL,
        ok INTEGER NOT NULL,
        result TEXT NOT NULL,
        PRIMARY KEY (repository, source, backup_id, tested_at)
    );
    CREATE INDEX restore_tests_by_source ON restore_tests (source, tested_at);",
    // 4: results bound to the manifest they checked (NULL: written before this
    // version, vouching for nothing), and manifests found in storage that cannot be
    // trusted (corrupt backups: shown and reported, never restored or counted).
    "ALTER TABLE verifications ADD COLUMN manifest_sha256 TEXT;
    ALTER TABLE restore_tests ADD COLUMN manifest_sha256 TEXT;
    CREATE TABLE corrupt_backups (
        repository TEXT NOT NULL,
        source TEXT NOT NULL,
        backup_id TEXT NOT NULL,
        found_at TEXT NOT NULL,
        problem TEXT NOT NULL,
        PRIMARY KEY (repository, source, backup_id)
    );",
];

/// Times are stored as fixed-width RFC 3339 so that text order is time order.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One backup run, as recorded.
#[derive(Debug, Clone)]
pub struct RunRow {
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub finished_at: DateTime<Utc>,
    /// `success`, `partial`, `failed`, ...
    pub status: String,
    /// Why, for anything but success.
    pub detail: String,
}

/// A backup on one repository, as the catalog knows it.
#[derive(Debug, Clone)]
pub struct CatalogBackup {
    /// Its manifest.
    pub manifest: Manifest,
    /// SHA-256 of the manifest object as stored, when it was catalogued.
    pub manifest_sha256: String,
    /// Newest verification result of any mode, if any.
    pub last_verify: Option<VerifyResult>,
    /// Newest full verification result, if any.
    pub last_full_verify: Option<VerifyResult>,
}

/// A backup whose manifest is in a repository but cannot be trusted (unreadable,
/// digest mismatch, describing another backup): a corrupt backup. It is listed and
/// reported, never restored and never counted by retention.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CorruptBackup {
    /// Repository holding the manifest.
    pub repository: String,
    /// Source, from the manifest's key.
    pub source: String,
    /// Backup id, from the manifest's key.
    pub backup_id: String,
    /// When this catalog last found it so.
    pub found_at: DateTime<Utc>,
    /// Why the manifest is not trusted.
    pub problem: String,
}

impl CatalogBackup {
    /// Verified: the newest full read-back matched, and nothing since found a problem
    /// (a failed sample after it withdraws the status).
    ///
    /// Only results bound to this manifest count as passes: `last_verify` and
    /// `last_full_verify` are chosen among failures (a failure counts whatever it
    /// checked: failing closed) and passes whose manifest hash is this manifest's.
    /// A pass recorded for another manifest, or by a version that recorded no hash,
    /// leaves the backup unverified until it is verified again.
    pub fn verified(&self) -> bool {
        self.last_full_verify.as_ref().is_some_and(|v| v.ok)
            && self.last_verify.as_ref().is_some_and(|v| v.ok)
    }
}

/// The catalog database.
pub struct Catalog {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Catalog({})", self.path.display())
    }
}

impl Catalog {
    /// Open (creating and migrating) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Catalog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::io(
                    format!(
                        "creating catalog folder {} (pass --catalog PATH to keep the catalog elsewhere)",
                        dir.display()
                    ),
                    e,
                )
            })?;
        }
        let conn = Connection::open(path).map_err(|e| {
            Error::from(e).context(format!(
                "opening catalog {} (pass --catalog PATH to keep it elsewhere)",
                path.display()
            ))
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let version = version.max(0) as usize;
        if version > MIGRATIONS.len() {
            return Err(Error::bad_input(format!(
                "catalog {} has schema version {version}, newer than this lifeboat knows ({}); \
                 use a newer lifeboat or `lifeboat catalog rebuild` with a fresh --catalog",
                path.display(),
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(Catalog {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// The catalog's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record (or refresh) a committed backup from its manifest; `manifest_sha256` is
    /// the hash of the manifest object as stored.
    pub fn upsert_backup(&self, m: &Manifest, manifest_sha256: &str) -> Result<()> {
        let text = serde_json::to_string(m).expect("manifests serialise");
        self.conn().execute(
            "INSERT OR REPLACE INTO backups (repository, source, backup_id, kind, started_at,
                finished_at, consistency_point, keep_until, stored_size, stored_sha256, raw_size, manifest,
                manifest_sha256)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                m.repository,
                m.source,
                m.backup_id,
                m.kind,
                ts(m.started_at),
                ts(m.finished_at),
                ts(m.consistency_point),
                ts(m.keep_until),
                m.stored.size as i64,
                m.stored.sha256,
                m.raw.size as i64,
                text,
                manifest_sha256
            ],
        )?;
        Ok(())
    }

    /// Record a verification result (idempotent for the same result).
    pub fn record_verification(&self, v: &VerifyResult) -> Result<()> {
        let text = serde_json::to_string(v).expect("results serialise");
        self.conn().execute(
            "INSERT OR REPLACE INTO verifications (repository, source, backup_id, verified_at, ok, mode, result, manifest_sha256)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![v.repository, v.source, v.backup_id, ts(v.verified_at), v.ok, v.mode, text, v.manifest_sha256],
        )?;
        Ok(())
    }

    /// Record a trial restore (idempotent for the same result).
    pub fn record_restore_test(&self, t: &RestoreTestResult) -> Result<()> {
        let text = serde_json::to_string(t).expect("results serialise");
        self.conn().execute(
            "INSERT OR REPLACE INTO restore_tests (repository, source, backup_id, tested_at, ok, result, manifest_sha256)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![t.repository, t.source, t.backup_id, ts(t.tested_at), t.ok, text, t.manifest_sha256],
        )?;
        Ok(())
    }

    /// Trial restores of `source`, newest first: every failure, and the passes bound
    /// to the manifest the catalog holds for their backup (a pass for another
    /// manifest, or with no hash, proves nothing about this one).
    pub fn restore_tests(&self, source: &str) -> Result<Vec<RestoreTestResult>> {
        self.results(
            "SELECT t.result FROM restore_tests t WHERE t.source = ?1
               AND (t.ok = 0 OR EXISTS (SELECT 1 FROM backups b
                    WHERE b.repository = t.repository AND b.source = t.source
                      AND b.backup_id = t.backup_id AND b.manifest_sha256 = t.manifest_sha256))
             ORDER BY t.tested_at DESC",
            source,
        )
    }

    /// Verifications of any backup of `source`, newest first.
    pub fn verifications(&self, source: &str) -> Result<Vec<VerifyResult>> {
        self.results(
            "SELECT result FROM verifications WHERE source = ?1 ORDER BY verified_at DESC",
            source,
        )
    }

    /// The result of the last verification run of `source`: it read its backup on every
    /// destination, one result each (within an hour of the newest); a failure on any
    /// of them is what the run found, else the newest result.
    pub fn last_verification(&self, source: &str) -> Result<Option<VerifyResult>> {
        let checks = self.verifications(source)?;
        Ok(checks.first().map(|v0| {
            checks
                .iter()
                .take_while(|v| v0.verified_at - v.verified_at <= chrono::Duration::hours(1))
                .filter(|v| v.backup_id == v0.backup_id)
                .find(|v| !v.ok)
                .unwrap_or(v0)
                .clone()
        }))
    }

    /// The JSON results `sql` selects for `source`; rows that no longer parse (written
    /// by another version) are left out rather than failing a report.
    fn results<T: serde::de::DeserializeOwned>(&self, sql: &str, source: &str) -> Result<Vec<T>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map(params![source], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            if let Ok(v) = serde_json::from_str(&row?) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Backup runs of `source` that started at or after `since`, oldest first:
    /// (started, finished, status, detail).
    pub fn runs(&self, source: &str, since: DateTime<Utc>) -> Result<Vec<RunRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT started_at, finished_at, status, detail FROM runs
             WHERE source = ?1 AND started_at >= ?2 ORDER BY started_at, id",
        )?;
        let rows = stmt.query_map(params![source, ts(since)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (a, b, status, detail) = row?;
            out.push(RunRow {
                started_at: parse_ts(&a)?,
                finished_at: parse_ts(&b)?,
                status,
                detail,
            });
        }
        Ok(out)
    }

    /// Forget a backup (it was deleted, or vanished from storage), recording why.
    pub fn remove_backup(
        &self,
        repository: &str,
        source: &str,
        backup_id: &str,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM backups WHERE repository = ?1 AND source = ?2 AND backup_id = ?3",
            params![repository, source, backup_id],
        )?;
        tx.execute(
            "DELETE FROM verifications WHERE repository = ?1 AND source = ?2 AND backup_id = ?3",
            params![repository, source, backup_id],
        )?;
        tx.execute(
            "DELETE FROM restore_tests WHERE repository = ?1 AND source = ?2 AND backup_id = ?3",
            params![repository, source, backup_id],
        )?;
        tx.execute(
            "INSERT INTO deletions (repository, source, backup_id, deleted_at, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![repository, source, backup_id, ts(at), reason],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Backups, newest first, optionally of one source and/or one repository.
    pub fn backups(
        &self,
        source: Option<&str>,
        repository: Option<&str>,
    ) -> Result<Vec<CatalogBackup>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT b.manifest, b.manifest_sha256,
                    (SELECT v.result FROM verifications v
                      WHERE v.repository = b.repository AND v.source = b.source AND v.backup_id = b.backup_id
                        AND (v.ok = 0 OR v.manifest_sha256 = b.manifest_sha256)
                      ORDER BY v.verified_at DESC LIMIT 1),
                    (SELECT v.result FROM verifications v
                      WHERE v.repository = b.repository AND v.source = b.source AND v.backup_id = b.backup_id
                        AND v.mode = 'full' AND (v.ok = 0 OR v.manifest_sha256 = b.manifest_sha256)
                      ORDER BY v.verified_at DESC LIMIT 1)
             FROM backups b
             WHERE (?1 IS NULL OR b.source = ?1) AND (?2 IS NULL OR b.repository = ?2)
             ORDER BY b.started_at DESC, b.backup_id DESC, b.repository",
        )?;
        let rows = stmt.query_map(params![source, repository], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (m, manifest_sha256, v, full) = row?;
            let manifest: Manifest = serde_json::from_str(&m).map_err(|e| {
                Error::failed(format!(
                    "catalog row unreadable ({e}); run `lifeboat catalog rebuild`"
                ))
            })?;
            let last_verify = v.and_then(|v| serde_json::from_str(&v).ok());
            let last_full_verify = full.and_then(|v| serde_json::from_str(&v).ok());
            out.push(CatalogBackup {
                manifest,
                manifest_sha256,
                last_verify,
                last_full_verify,
            });
        }
        Ok(out)
    }

    /// Record a manifest found in `repository` that cannot be trusted (replacing what
    /// was known of that backup's manifest before).
    pub fn record_corrupt(&self, c: &CorruptBackup) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO corrupt_backups (repository, source, backup_id, found_at, problem)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![c.repository, c.source, c.backup_id, ts(c.found_at), c.problem],
        )?;
        Ok(())
    }

    /// Forget that a backup's manifest was corrupt (it is gone, or reads well again).
    pub fn clear_corrupt(&self, repository: &str, source: &str, backup_id: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM corrupt_backups WHERE repository = ?1 AND source = ?2 AND backup_id = ?3",
            params![repository, source, backup_id],
        )?;
        Ok(())
    }

    /// Corrupt backups, newest id first, optionally of one source and/or one repository.
    pub fn corrupt_backups(
        &self,
        source: Option<&str>,
        repository: Option<&str>,
    ) -> Result<Vec<CorruptBackup>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT repository, source, backup_id, found_at, problem FROM corrupt_backups
             WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR repository = ?2)
             ORDER BY source, backup_id DESC, repository",
        )?;
        let rows = stmt.query_map(params![source, repository], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (repository, source, backup_id, found_at, problem) = row?;
            out.push(CorruptBackup {
                repository,
                source,
                backup_id,
                found_at: parse_ts(&found_at)?,
                problem,
            });
        }
        Ok(out)
    }

    /// Whether the catalog holds this backup.
    pub fn has_backup(&self, repository: &str, source: &str, backup_id: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM backups WHERE repository = ?1 AND source = ?2 AND backup_id = ?3",
                params![repository, source, backup_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Record the outcome of a backup run.
    pub fn record_run(
        &self,
        source: &str,
        backup_id: &str,
        started: DateTime<Utc>,
        finished: DateTime<Utc>,
        status: &str,
        detail: &str,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO runs (source, backup_id, started_at, finished_at, status, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![source, backup_id, ts(started), ts(finished), status, detail],
        )?;
        Ok(())
    }

    /// Delete every cached backup, corrupt backup and verification (before a rebuild). Run history
    /// and deletion records stay: they are not in storage.
    pub fn clear_backups(&self) -> Result<()> {
        self.conn().execute_batch(
            "DELETE FROM backups; DELETE FROM verifications; DELETE FROM restore_tests;
             DELETE FROM corrupt_backups;",
        )?;
        Ok(())
    }

    /// Record a new DR run.
    pub fn dr_insert_run(&self, run: &DrRunRow) -> Result<()> {
        self.conn().execute(
            "INSERT INTO dr_runs (run_id, plan, mode, started_at, incident_start, finished_at, status, plan_json, report)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                run.run_id,
                run.plan,
                run.mode,
                ts(run.started_at),
                ts(run.incident_start),
                run.finished_at.map(ts),
                run.status,
                run.plan_json,
                run.report
            ],
        )?;
        Ok(())
    }

    /// Set a DR run's status (and, when it ended, its end and report).
    pub fn dr_update_run(
        &self,
        run_id: &str,
        status: &str,
        finished_at: Option<DateTime<Utc>>,
        report: Option<&str>,
    ) -> Result<()> {
        self.conn().execute(
            "UPDATE dr_runs SET status = ?2, finished_at = ?3, report = COALESCE(?4, report) WHERE run_id = ?1",
            params![run_id, status, finished_at.map(ts), report],
        )?;
        Ok(())
    }

    /// DR runs (and drills) that started at or after `since`, newest first: (run, plan).
    pub fn dr_run_ids_since(&self, since: DateTime<Utc>) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT run_id, plan FROM dr_runs WHERE started_at >= ?1 ORDER BY started_at DESC, run_id DESC",
        )?;
        let rows = stmt.query_map(params![ts(since)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// One DR run (the newest when `run_id` is `None`).
    pub fn dr_run(&self, run_id: Option<&str>) -> Result<Option<DrRunRow>> {
        let conn = self.conn();
        conn.query_row(
            "SELECT run_id, plan, mode, started_at, incident_start, finished_at, status, plan_json, report
             FROM dr_runs WHERE (?1 IS NULL OR run_id = ?1) ORDER BY started_at DESC, run_id DESC LIMIT 1",
            params![run_id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, Option<String>>(8)?,
                ))
            },
        )
        .optional()?
        .map(|(run_id, plan, mode, started, incident, finished, status, plan_json, report)| {
            Ok(DrRunRow {
                run_id,
                plan,
                mode,
                started_at: parse_ts(&started)?,
                incident_start: parse_ts(&incident)?,
                finished_at: finished.as_deref().map(parse_ts).transpose()?,
                status,
                plan_json,
                report,
            })
        })
        .transpose()
    }

    /// Unfinished (running or waiting) DR runs of `plan` in `mode`, newest first.
    pub fn dr_unfinished(&self, plan: &str, mode: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT run_id FROM dr_runs WHERE plan = ?1 AND mode = ?2 AND status IN ('running', 'waiting')
             ORDER BY started_at DESC",
        )?;
        let rows = stmt.query_map(params![plan, mode], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Checkpoint one step of a DR run (insert or replace its row) and append the
    /// change to the run's timeline, in one transaction.
    pub fn dr_checkpoint(
        &self,
        step: &DrStepRow,
        at: DateTime<Utc>,
        event: &str,
        detail: &str,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO dr_steps (run_id, step_id, state, attempts, started_at, finished_at, effect, outputs, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                step.run_id,
                step.step_id,
                step.state,
                step.attempts,
                step.started_at.map(ts),
                step.finished_at.map(ts),
                step.effect,
                step.outputs,
                step.error
            ],
        )?;
        tx.execute(
            "INSERT INTO dr_events (run_id, at, step_id, event, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![step.run_id, ts(at), step.step_id, event, detail],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Append an event about the whole run (`step_id` empty) or a step, without a checkpoint.
    pub fn dr_event(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
        step_id: &str,
        event: &str,
        detail: &str,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO dr_events (run_id, at, step_id, event, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![run_id, ts(at), step_id, event, detail],
        )?;
        Ok(())
    }

    /// Every checkpointed step of a run.
    pub fn dr_steps(&self, run_id: &str) -> Result<Vec<DrStepRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT run_id, step_id, state, attempts, started_at, finished_at, effect, outputs, error
             FROM dr_steps WHERE run_id = ?1 ORDER BY started_at, step_id",
        )?;
        let rows = stmt.query_map(params![run_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, u32>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, Option<String>>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (run_id, step_id, state, attempts, started, finished, effect, outputs, error) =
                row?;
            out.push(DrStepRow {
                run_id,
                step_id,
                state,
                attempts,
                started_at: started.as_deref().map(parse_ts).transpose()?,
                finished_at: finished.as_deref().map(parse_ts).transpose()?,
                effect,
                outputs,
                error,
            });
        }
        Ok(out)
    }

    /// A run's timeline, oldest first: (at, step id, event, detail).
    pub fn dr_events(&self, run_id: &str) -> Result<Vec<DrEventRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT at, step_id, event, detail FROM dr_events WHERE run_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![run_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (at, step, event, detail) = row?;
            out.push((parse_ts(&at)?, step, event, detail));
        }
        Ok(out)
    }
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::failed(format!("catalog time `{s}` unreadable: {e}")))
}

/// A timeline entry of a DR run: (at, step id or empty for the run, event, detail).
pub type DrEventRow = (DateTime<Utc>, String, String, String);

/// A DR run as the catalog records it.
#[derive(Debug, Clone)]
pub struct DrRunRow {
    /// Run id.
    pub run_id: String,
    /// Plan name.
    pub plan: String,
    /// `run` or `drill`.
    pub mode: String,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// The incident start the measurement counts from.
    pub incident_start: DateTime<Utc>,
    /// When the run ended, if it did.
    pub finished_at: Option<DateTime<Utc>>,
    /// running, succeeded, failed, waiting, torn-down...
    pub status: String,
    /// The plan as it was when the run started (resume uses this, not the file).
    pub plan_json: String,
    /// The final report (JSON), once the run ended.
    pub report: Option<String>,
}

/// One step's checkpoint.
#[derive(Debug, Clone)]
pub struct DrStepRow {
    /// Run id.
    pub run_id: String,
    /// Step id.
    pub step_id: String,
    /// pending, running, succeeded, failed, skipped, waiting, rolled-back.
    pub state: String,
    /// Attempts started.
    pub attempts: u32,
    /// Start of the first attempt.
    pub started_at: Option<DateTime<Utc>>,
    /// End of the step.
    pub finished_at: Option<DateTime<Utc>>,
    /// The resolved side effect (JSON), recorded before it is made.
    pub effect: String,
    /// Outputs (JSON object).
    pub outputs: String,
    /// Error message, when failed.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str) -> Manifest {
        serde_json::from_value(serde_json::json!({
            "source": "app", "kind": "sqlite", "backup-id": id, "repository": "local",
            "started-at": "2026-11-22T09:30:00Z", "finished-at": "2026-11-22T09:30:01Z",
            "consistency-point": "2026-11-22T09:30:00Z", "tool-version": "t", "host": "h",
            "compression": "zstd", "encryption": "none",
            "stored": {"size": 1, "sha256": "s", "chunk-size": 1, "chunks": ["s"]},
            "raw": {"size": 1, "sha256": "r"}, "counts": {},
            "keep-until": "2026-11-22T09:30:00Z"
        }))
        .unwrap()
    }

    fn result(at: &str, ok: bool, manifest_sha256: Option<&str>) -> VerifyResult {
        VerifyResult {
            source: "app".into(),
            backup_id: "20261122T093000Z-0001".into(),
            repository: "local".into(),
            verified_at: at.parse().unwrap(),
            ok,
            mode: "full".into(),
            expected_sha256: "s".into(),
            actual_sha256: Some("s".into()),
            problems: Vec::new(),
            manifest_sha256: manifest_sha256.map(String::from),
        }
    }

    fn verified_after(results: &[VerifyResult]) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        c.upsert_backup(&manifest("20261122T093000Z-0001"), "m1")
            .unwrap();
        for r in results {
            c.record_verification(r).unwrap();
        }
        c.backups(None, None).unwrap()[0].verified()
    }

    #[test]
    fn a_pass_counts_only_for_the_manifest_it_read() {
        assert!(verified_after(&[result(
            "2026-11-22T10:00:00Z",
            true,
            Some("m1")
        )]));
        assert!(!verified_after(&[result(
            "2026-11-22T10:00:00Z",
            true,
            Some("m0")
        )]));
        // Written before results were bound: vouches for nothing.
        assert!(!verified_after(&[result(
            "2026-11-22T10:00:00Z",
            true,
            None
        )]));
    }

    #[test]
    fn a_failure_counts_whatever_manifest_it_read() {
        // A newer failure on another manifest (or none) withdraws a bound pass.
        for other in [Some("m0"), None] {
            assert!(!verified_after(&[
                result("2026-11-22T10:00:00Z", true, Some("m1")),
                result("2026-11-22T11:00:00Z", false, other),
            ]));
        }
        // A newer pass for another manifest does not clear an older failure.
        assert!(!verified_after(&[
            result("2026-11-22T10:00:00Z", false, Some("m1")),
            result("2026-11-22T11:00:00Z", true, Some("m0")),
        ]));
    }

    #[test]
    fn corrupt_backups_are_recorded_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        let bad = CorruptBackup {
            repository: "local".into(),
            source: "app".into(),
            backup_id: "20261122T093000Z-0001".into(),
            found_at: "2026-11-22T10:00:00Z".parse().unwrap(),
            problem: "digest mismatch".into(),
        };
        c.record_corrupt(&bad).unwrap();
        c.record_corrupt(&bad).unwrap();
        assert_eq!(
            c.corrupt_backups(Some("app"), None).unwrap(),
            vec![bad.clone()]
        );
        assert!(c.corrupt_backups(Some("other"), None).unwrap().is_empty());
        assert!(c.backups(None, None).unwrap().is_empty(), "never a backup");
        c.clear_corrupt("local", "app", &bad.backup_id).unwrap();
        assert!(c.corrupt_backups(None, None).unwrap().is_empty());
    }
}
