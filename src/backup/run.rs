//! `lifeboat backup`: snapshot a source once, stream it to every destination at once,
//! and commit each destination by writing its manifest last.
//!
//! Two checks around the stream:
//! - an engine that knows its content hash up front (`files`) has the run skipped when
//!   every destination's newest backup already holds exactly that content;
//! - a backup whose raw size or a count dropped by the source's `anomaly.max-drop`
//!   against the previous backup is committed but flagged (manifest, report, log).

use super::anomaly::{self, Measures};
use super::{Context, blocking, reconcile};
use crate::catalog::manifest::{Anomaly, MANIFEST_FORMAT, Manifest, RawInfo, StoredInfo, seal};
use crate::engine::{self, counts::Counts};
use crate::error::{Error, ErrorKind, Result};
use crate::failpoint;
use crate::pipeline::{self, StreamOptions};
use crate::policy::Source;
use crate::storage::{PutMode, PutOptions, layout};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

/// Options of a backup run.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Show what would be done; read and write nothing.
    pub dry_run: bool,
    /// Set to stop the run (shutdown, lost lease): reading fails, every upload is
    /// aborted, and nothing is committed.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// A reader that fails once its flag is set, so that a cancelled backup unwinds
/// through the pipeline's ordinary error path (uploads aborted, no manifest).
struct Cancellable {
    inner: Box<dyn Read + Send>,
    flag: Arc<AtomicBool>,
}

impl Read for Cancellable {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.flag.load(Ordering::SeqCst) {
            // Not `Interrupted`: readers retry that kind.
            return Err(std::io::Error::other(
                "backup cancelled (shutdown or lost lease); nothing committed",
            ));
        }
        self.inner.read(buf)
    }
}

/// Outcome on one destination.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DestinationReport {
    /// Repository name.
    pub repository: String,
    /// Committed (manifest written)?
    pub committed: bool,
    /// Bytes stored.
    pub stored_size: u64,
    /// Number of chunks.
    pub chunks: usize,
    /// Why it failed.
    pub error: Option<String>,
    /// Key of the data object.
    pub data_key: String,
}

/// Outcome of one backup run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BackupReport {
    /// Source name.
    pub source: String,
    /// Backup id.
    pub backup_id: String,
    /// Dry run?
    pub dry_run: bool,
    /// Start of the run.
    pub started_at: DateTime<Utc>,
    /// End of the run.
    pub finished_at: DateTime<Utc>,
    /// The instant the data reflects.
    pub consistency_point: Option<DateTime<Utc>>,
    /// Raw bytes read from the source.
    pub raw_size: u64,
    /// Integrity counts.
    pub counts: Counts,
    /// Per destination.
    pub destinations: Vec<DestinationReport>,
    /// Set when nothing was backed up because nothing changed:
    /// `unchanged since BACKUP_ID`.
    pub skipped: Option<String>,
    /// Drops against the previous backup that flag this one (it is still committed).
    pub anomalies: Vec<Anomaly>,
}

impl BackupReport {
    /// The run's error kind: none when every destination committed, `Partial` when
    /// some did, `RunFailed` when none did.
    pub fn failure(&self) -> Option<ErrorKind> {
        let ok = self.destinations.iter().filter(|d| d.committed).count();
        if self.dry_run || self.skipped.is_some() || ok == self.destinations.len() {
            None
        } else if ok > 0 {
            Some(ErrorKind::Partial)
        } else {
            Some(ErrorKind::RunFailed)
        }
    }
}

/// Await `fut`, or fail as soon as `flag` is set (checked every 100 ms): a blocking
/// step stuck on a stalled source must not hold up a shutdown. The abandoned step ends
/// on its own thread when its source gives up.
async fn until_cancelled<T>(
    fut: impl std::future::Future<Output = Result<T>>,
    flag: Option<&Arc<AtomicBool>>,
) -> Result<T> {
    let Some(flag) = flag else {
        return fut.await;
    };
    let cancelled = async {
        while !flag.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        r = fut => r,
        () = cancelled => Err(Error::failed(
            "backup cancelled (shutdown or lost lease); nothing committed",
        )),
    }
}

/// Back up `source` now.
pub async fn backup(ctx: &Context, source: &Source, opts: &BackupOptions) -> Result<BackupReport> {
    let started = ctx.clock.now();
    let id = layout::new_backup_id(started);
    let mut report = BackupReport {
        source: source.name.clone(),
        backup_id: id.clone(),
        dry_run: opts.dry_run,
        started_at: started,
        finished_at: started,
        consistency_point: None,
        raw_size: 0,
        counts: Counts::new(),
        destinations: source
            .destinations
            .iter()
            .map(|r| DestinationReport {
                repository: r.clone(),
                committed: false,
                stored_size: 0,
                chunks: 0,
                error: None,
                data_key: layout::data_key(&source.name, &id),
            })
            .collect(),
        skipped: None,
        anomalies: Vec::new(),
    };
    if opts.dry_run {
        return Ok(report);
    }
    let result = run(ctx, source, &id, started, opts, &mut report).await;
    report.finished_at = ctx.clock.now();
    let (status, detail) = match (&result, report.failure()) {
        (Err(e), _) => ("failed", e.to_string()),
        (Ok(()), None) if report.skipped.is_some() => {
            ("skipped", report.skipped.clone().unwrap_or_default())
        }
        (Ok(()), None) => ("committed", String::new()),
        (Ok(()), Some(ErrorKind::Partial)) => ("partial", destination_errors(&report)),
        (Ok(()), Some(_)) => ("failed", destination_errors(&report)),
    };
    ctx.catalog.record_run(
        &source.name,
        &id,
        started,
        report.finished_at,
        status,
        &detail,
    )?;
    result.map(|()| report)
}

fn destination_errors(report: &BackupReport) -> String {
    report
        .destinations
        .iter()
        .filter_map(|d| d.error.as_ref().map(|e| format!("{}: {e}", d.repository)))
        .collect::<Vec<_>>()
        .join("; ")
}

async fn run(
    ctx: &Context,
    source: &Source,
    id: &str,
    started: DateTime<Utc>,
    opts_in: &BackupOptions,
    report: &mut BackupReport,
) -> Result<()> {
    // Read before this run can add to the catalog.
    let previous = ctx
        .catalog
        .backups(Some(&source.name), None)?
        .into_iter()
        .next();
    let engine: Arc<dyn engine::Engine> = Arc::from(engine::for_source(source));
    let spool = ctx.spool.clone();
    let clock = ctx.clock.clone();
    let snap = {
        let engine = engine.clone();
        let id = id.to_string();
        until_cancelled(
            blocking(move || engine.snapshot_as(&id, &spool, &|| clock.now())),
            opts_in.cancel.as_ref(),
        )
        .await
        .map_err(|e| e.context(format!("source {}", source.name)))?
    };
    let promised = snap.content_sha256().map(str::to_string);
    if let Some(sha) = &promised
        && let Some(since) = unchanged_since(ctx, source, sha).await?
    {
        let (counts, _) = blocking(move || snap.counts.wait()).await?;
        report.counts = counts;
        report.consistency_point = Some(snap.consistency_point);
        report.raw_size = snap.size_hint.unwrap_or_default();
        report.skipped = Some(format!("unchanged since {since}"));
        info!(source = %source.name, backup = %since, sha256 = %sha, "content unchanged; nothing backed up");
        return Ok(());
    }
    let mut pending_counts = Some(snap.counts);
    let opts = StreamOptions::default();
    let data_key = layout::data_key(&source.name, id);

    // Create-only puts; where a repository has object lock, data and manifest are
    // retained until the backup's keep-until, the same floor retention honours.
    let keep_until = started + source.retention.keep_within.unwrap_or_default();
    let put_opts = PutOptions {
        mode: PutMode::Create,
        retain_until: Some(keep_until),
    };
    // One upload per destination, each fed by its own bounded channel.
    let (done_tx, done_rx) = watch::channel(None::<bool>);
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for dest in &source.destinations {
        let store = ctx.store(dest)?;
        let repo = &ctx.policies.repositories[dest];
        let (part_size, in_flight) = (repo.part_size as usize, repo.max_in_flight);
        match store.put_multipart(&data_key, &put_opts).await {
            Ok(up) => {
                let (tx, rx) = mpsc::channel::<Bytes>(opts.queue_depth);
                senders.push(tx);
                let mut done = done_rx.clone();
                let finished = async move {
                    done.wait_for(Option::is_some)
                        .await
                        .map(|v| v.unwrap_or(false))
                        .unwrap_or(false)
                };
                tasks.push((
                    dest.clone(),
                    part_size,
                    Some(tokio::spawn(pipeline::upload(
                        up,
                        rx,
                        part_size,
                        in_flight,
                        finished,
                        |n| {
                            if n == 1 {
                                failpoint::hit("backup.after-first-part");
                            }
                        },
                    ))),
                ));
            }
            Err(e) => {
                warn!(source = %source.name, repository = %dest, error = %e, "destination failed before upload");
                tasks.push((dest.clone(), part_size, None));
                let d = report
                    .destinations
                    .iter_mut()
                    .find(|d| &d.repository == dest)
                    .expect("listed");
                d.error = Some(e.to_string());
            }
        }
    }
    if senders.is_empty() {
        return Ok(());
    }

    let bar = ctx
        .progress
        .bytes(&format!("backup {}", source.name), snap.size_hint);
    let progress: Option<Box<dyn Fn(u64) + Send>> = bar
        .clone()
        .map(|b| Box::new(move |n: u64| b.set_position(n)) as Box<dyn Fn(u64) + Send>);
    let reader: Box<dyn Read + Send> = match &opts_in.cancel {
        Some(flag) => Box::new(Cancellable {
            inner: snap.reader,
            flag: flag.clone(),
        }),
        None => snap.reader,
    };
    let produced = until_cancelled(
        blocking(move || pipeline::produce(reader, senders, opts, progress)),
        opts_in.cancel.as_ref(),
    )
    .await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let _ = done_tx.send(Some(produced.is_ok()));
    if let Err(e) = &produced
        && opts_in
            .cancel
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
    {
        // The reader may be stuck (a stalled source): do not wait for it or for its
        // counts; the uploads abort on the verdict just sent.
        for (_, _, task) in tasks.iter_mut() {
            if let Some(t) = task.take() {
                let _ = t.await;
            }
        }
        return Err(Error::failed(e.to_string()).context(format!("source {}", source.name)));
    }
    // The stream is complete (or failed): counts still being taken end now.
    let counted = {
        let pending = pending_counts.take().expect("taken once");
        blocking(move || pending.finish()).await
    };
    let mut details = snap.details;
    let produced = match (produced, counted) {
        (Ok(t), Ok(counted)) => {
            report.counts = counted.counts;
            report.consistency_point = Some(counted.freshness.unwrap_or(snap.consistency_point));
            if let Some(d) = counted.details {
                details = d;
            }
            Ok(t)
        }
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    };
    let totals = match produced {
        Ok(t) => Some(t),
        Err(e) => {
            // Uploads abort themselves when told the stream failed; wait for them.
            for (_, _, task) in tasks.iter_mut() {
                if let Some(t) = task.take() {
                    let _ = t.await;
                }
            }
            return Err(e.context(format!("source {}", source.name)));
        }
    };
    let totals = totals.expect("set above");
    report.raw_size = totals.raw_size;
    if let Some(sha) = &promised
        && *sha != totals.raw_sha256
    {
        // The skip decision trusts this promise: a broken one must not commit.
        for (_, _, task) in tasks.iter_mut() {
            if let Some(t) = task.take() {
                let _ = t.await;
            }
        }
        return Err(Error::integrity(format!(
            "source {}: the engine promised content sha256 {sha}, the stream had {}",
            source.name, totals.raw_sha256
        )));
    }
    if let (Some(rule), Some(prev)) = (&source.anomaly, &previous) {
        report.anomalies = anomaly::detect(
            &Measures {
                backup_id: &prev.manifest.backup_id,
                raw_size: prev.manifest.raw.size,
                counts: &prev.manifest.counts,
            },
            &Measures {
                backup_id: id,
                raw_size: totals.raw_size,
                counts: &report.counts,
            },
            rule,
        );
    }

    for (dest, part_size, task) in tasks {
        let Some(task) = task else { continue };
        let d = report
            .destinations
            .iter_mut()
            .find(|d| d.repository == dest)
            .expect("listed");
        let uploaded = match task.await {
            Ok(Ok(u)) => u,
            Ok(Err(e)) => {
                warn!(source = %source.name, repository = %dest, error = %e, "upload failed");
                d.error = Some(e.to_string());
                continue;
            }
            Err(e) => {
                d.error = Some(format!("upload task failed: {e}"));
                continue;
            }
        };
        failpoint::hit("backup.before-manifest");
        let manifest = Manifest {
            source: source.name.clone(),
            kind: source.config.kind().to_string(),
            backup_id: id.to_string(),
            repository: dest.clone(),
            started_at: started,
            finished_at: ctx.clock.now(),
            consistency_point: report.consistency_point.unwrap_or(snap.consistency_point),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            compression: "zstd".into(),
            encryption: "none".into(),
            stored: StoredInfo {
                size: uploaded.size,
                sha256: totals.stored_sha256.clone(),
                chunk_size: part_size as u64,
                chunks: uploaded.chunks.clone(),
                provider_checksum: uploaded.provider_checksum.clone(),
            },
            raw: RawInfo {
                size: totals.raw_size,
                sha256: totals.raw_sha256.clone(),
            },
            counts: report.counts.clone(),
            keep_until,
            engine: details.clone(),
            anomalies: report.anomalies.clone(),
        };
        if uploaded.size != totals.stored_size {
            d.error = Some(format!(
                "uploaded {} bytes, the stream had {}",
                uploaded.size, totals.stored_size
            ));
            continue;
        }
        let store = ctx.store(&dest)?;
        let sealed = Bytes::from(seal(MANIFEST_FORMAT, &manifest));
        let manifest_sha256 = hex::encode(Sha256::digest(&sealed));
        let put = store
            .put(&layout::manifest_key(&source.name, id), sealed, &put_opts)
            .await;
        if let Err(e) = put {
            warn!(source = %source.name, repository = %dest, error = %e, "manifest write failed; backup not committed");
            d.error = Some(e.to_string());
            continue;
        }
        failpoint::hit("backup.before-catalog");
        ctx.catalog.upsert_backup(&manifest, &manifest_sha256)?;
        d.committed = true;
        d.stored_size = uploaded.size;
        d.chunks = uploaded.chunks.len();
        info!(
            source = %source.name,
            repository = %dest,
            backup = %id,
            raw_bytes = totals.raw_size,
            stored_bytes = uploaded.size,
            "backup committed"
        );
    }
    if report.destinations.iter().any(|d| d.committed) {
        for a in &report.anomalies {
            warn!(
                source = %source.name,
                backup = %id,
                measure = %a.measure,
                previous = a.previous,
                current = a.current,
                previous_backup = %a.previous_backup,
                max_drop = a.max_drop,
                "backup committed but flagged: {a}"
            );
        }
    }
    Ok(())
}

/// The newest backup whose content is `sha256`, when every destination's newest backup
/// holds exactly that content and can stand for it: reconciled with storage (a pruned
/// backup is not taken for present), its data object there at its recorded size, no
/// failed verification or trial restore, and a believed time. `None` when any
/// destination needs a new backup or cannot be listed: skipping against a backup that
/// cannot be restored would leave the source with no restorable copy.
async fn unchanged_since(ctx: &Context, source: &Source, sha256: &str) -> Result<Option<String>> {
    let rec = reconcile::reconcile_sources(ctx, std::slice::from_ref(&source.name)).await?;
    if !rec.unreachable.is_empty() {
        return Ok(None);
    }
    let now = ctx.clock.now();
    let failed_trials: std::collections::BTreeSet<(String, String)> = ctx
        .catalog
        .restore_tests(&source.name)?
        .into_iter()
        .filter(|t| !t.ok)
        .map(|t| (t.repository, t.backup_id))
        .collect();
    let mut since = None;
    for dest in &source.destinations {
        reconcile::refresh_verifications(ctx, dest, &source.name).await?;
        let backups = ctx.catalog.backups(Some(&source.name), Some(dest))?;
        let Some(b) = super::dating::newest_believed(backups, now) else {
            return Ok(None);
        };
        let m = &b.manifest;
        let known_bad = b.last_verify.as_ref().is_some_and(|v| !v.ok)
            || failed_trials.contains(&(dest.clone(), m.backup_id.clone()));
        if m.raw.sha256 != sha256 || known_bad {
            if known_bad {
                info!(source = %source.name, repository = %dest, backup = %m.backup_id, "content unchanged, but that backup failed its check: backing up again");
            }
            return Ok(None);
        }
        let data = layout::data_key(&source.name, &m.backup_id);
        match ctx.store(dest)?.head(&data).await {
            Ok(meta) if meta.size == m.stored.size => {}
            Ok(meta) => {
                warn!(source = %source.name, repository = %dest, backup = %m.backup_id, size = meta.size, expected = m.stored.size, "content unchanged, but that backup's data has the wrong size: backing up again");
                return Ok(None);
            }
            Err(e) => {
                warn!(source = %source.name, repository = %dest, backup = %m.backup_id, error = %e, "content unchanged, but that backup's data cannot be found: backing up again");
                return Ok(None);
            }
        }
        since = since.max(Some(m.backup_id.clone()));
    }
    Ok(since)
}

/// Turn a report into the run's error, if it failed anywhere.
pub fn report_error(report: &BackupReport) -> Option<Error> {
    report.failure().map(|kind| {
        Error::new(
            kind,
            format!(
                "backup {}/{}: {}",
                report.source,
                report.backup_id,
                destination_errors(report)
            ),
        )
    })
}
