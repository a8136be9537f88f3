//! `lifeboat quickstart`: a new user's first minute on the embedded default. Writes the
//! embedded policy set and a demo SQLite database into a fresh folder, then runs the
//! real chain on it: back up, change data, back up, verify, restore to a copy, compare
//! counts, prune.

use crate::backup::Context;
use crate::backup::prune::{self, PrunePlan};
use crate::backup::restore::{self, RestoreOptions, RestoreReport};
use crate::backup::run::{self, BackupOptions, BackupReport};
use crate::backup::verify::{self, VerifySelection};
use crate::catalog::Catalog;
use crate::catalog::manifest::VerifyResult;
use crate::clock::Clock;
use crate::engine::spool::Spool;
use crate::error::{Error, Result};
use crate::policy::{EMBEDDED_DEFAULT, PolicySet};
use crate::progress::Progress;
use rusqlite::Connection;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where everything is, and what each step did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct QuickstartReport {
    /// The folder.
    pub dir: PathBuf,
    /// The policy set (the folder itself).
    pub policies: PathBuf,
    /// The demo database.
    pub database: PathBuf,
    /// The repository.
    pub repository: PathBuf,
    /// The catalog.
    pub catalog: PathBuf,
    /// The restored copy.
    pub restored: PathBuf,
    /// The two backups.
    pub backups: Vec<BackupReport>,
    /// Verification results.
    pub verified: Vec<VerifyResult>,
    /// The restore.
    pub restore: RestoreReport,
    /// The prune plan.
    pub prune: PrunePlan,
}

/// Create the demo under `dir` (a fresh folder under the system temp folder if `None`).
pub async fn quickstart(
    dir: Option<PathBuf>,
    clock: Arc<dyn Clock>,
    progress: Progress,
) -> Result<QuickstartReport> {
    let dir = match dir {
        Some(d) => {
            if d.exists()
                && std::fs::read_dir(&d)
                    .map_err(|e| Error::io(d.display(), e))?
                    .next()
                    .is_some()
            {
                return Err(Error::bad_input(format!(
                    "quickstart folder {} is not empty; name a new or empty folder",
                    d.display()
                )));
            }
            std::fs::create_dir_all(&d).map_err(|e| Error::io(d.display(), e))?;
            d
        }
        None => tempfile::Builder::new()
            .prefix("lifeboat-quickstart-")
            .tempdir()
            .map_err(|e| Error::io("creating a quickstart folder", e))?
            .keep(),
    };
    let dir = std::fs::canonicalize(&dir).map_err(|e| Error::io(dir.display(), e))?;
    for (name, text) in EMBEDDED_DEFAULT {
        std::fs::write(dir.join(name), text).map_err(|e| Error::io(dir.join(name).display(), e))?;
    }
    let database = dir.join("data").join("app.db");
    create_demo_db(&database)?;

    let policies = PolicySet::load(&dir)?;
    let catalog_path = policies.default_catalog();
    let catalog = Catalog::open(&catalog_path)?;
    let repository = match &policies.repositories["local"].backend {
        crate::policy::Backend::Local { path } => path.clone(),
        other => {
            return Err(Error::failed(format!(
                "the embedded default names {other}, not a folder"
            )));
        }
    };
    let ctx = Context::new(policies, catalog, clock, Spool::new(None), progress).await?;
    let source = ctx.policies.source("app")?.clone();

    let mut backups = Vec::new();
    let first = run::backup(&ctx, &source, &BackupOptions::default()).await?;
    fail_on(&first)?;
    backups.push(first);
    add_tasks(&database, 250)?;
    let second = run::backup(&ctx, &source, &BackupOptions::default()).await?;
    fail_on(&second)?;
    backups.push(second);

    let verified = verify::verify(
        &ctx,
        &VerifySelection {
            all: true,
            ..Default::default()
        },
    )
    .await?;
    if let Some(bad) = verified.iter().find(|v| !v.ok) {
        return Err(Error::integrity(bad.problems.join("; ")));
    }

    let restored = dir.join("restored").join("app.db");
    let restore = restore::restore(
        &ctx,
        &RestoreOptions {
            source: "app".into(),
            target: restored.display().to_string(),
            ..Default::default()
        },
    )
    .await?;
    if !restore.swapped {
        return Err(Error::integrity(restore.counts.mismatches().join("; ")));
    }
    let prune = prune::prune(&ctx, &[], false).await?;
    Ok(QuickstartReport {
        policies: dir.clone(),
        database,
        repository,
        catalog: catalog_path,
        restored,
        backups,
        verified,
        restore,
        prune,
        dir,
    })
}

fn fail_on(r: &BackupReport) -> Result<()> {
    match run::report_error(r) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn create_demo_db(path: &Path) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d.display(), e))?;
    }
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL);
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, title TEXT NOT NULL, created_at TEXT NOT NULL);
         CREATE TABLE poi_records (id INTEGER PRIMARY KEY, lat REAL NOT NULL, lon REAL NOT NULL, created_at TEXT NOT NULL);
         BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
           INSERT INTO users (name, created_at) SELECT 'user-' || i, datetime('now') FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
           INSERT INTO poi_records (lat, lon, created_at) SELECT i * 0.001, i * 0.002, datetime('now') FROM n;
         COMMIT;",
    )?;
    drop(conn);
    add_tasks(path, 2000)
}

fn add_tasks(path: &Path, n: u32) -> Result<()> {
    let conn = Connection::open(path)?;
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO tasks (user_id, title, created_at) SELECT 1 + i % 500, 'task ' || i, datetime('now') FROM n",
        [n],
    )?;
    Ok(())
}
