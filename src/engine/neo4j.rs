//! Neo4j: a database cannot be dumped while a running server has it mounted, so a
//! source copies it one of two ways.
//!
//! - **online-backup** (Enterprise): `neo4j-admin database backup DB --to-path=DIR`
//!   writes a full backup artifact into a fresh folder, which is then streamed. Without a
//!   wrapper the folder is in the spool folder; with one, `DIR` is a fresh subfolder of
//!   `backup-path` inside the container, the artifact is found with `ls`, read back with
//!   `cat` and the folder removed with `rm -r -f`, all through the wrapper.
//! - **offline-dump** (Community): the `stop` command stops the server, `neo4j-admin
//!   database dump DB --to-stdout` is streamed, and `start` starts it again. The stream
//!   owns the dump: `start` runs exactly once when it ends, fails, or is dropped, and
//!   also when `stop` itself failed. The downtime, from `stop` until the server answers
//!   over HTTP again, is recorded in the manifest's engine details.
//!
//! Counts (`nodes`, `relationships`, `nodes.LABEL`, `relationships.TYPE`) are taken
//! through the HTTP transactional endpoint just before the copy, and again after a
//! restore.
//!
//! Restore loads in place: Neo4j Community has one user database and no way to load
//! beside it, so there is no staging copy to swap. The target (a database name) must
//! therefore have no nodes unless `--force` is given. An offline dump is loaded with
//! `neo4j-admin database load DB --from-stdin --overwrite-destination=true` between
//! `stop` and `start`; an online backup is staged to a file first and restored with
//! `neo4j-admin database restore --from-path=FILE DB --overwrite-destination=true`,
//! the database stopped by `stop`/`start` when configured, else with `STOP DATABASE` and
//! `CREATE DATABASE ... IF NOT EXISTS` / `START DATABASE` on the system database. The
//! server is started in every case once it was stopped, and must answer before the
//! database is recounted. A recount that differs is reported with the data already
//! loaded (`swapped`), which fails the restore as an integrity error.

mod command;
mod http;

use super::counts::{self, Counts};
use super::spool::Spool;
use super::{Engine, RestoreOutcome, Snapshot, SnapshotCounts};
use crate::error::{Error, Result};
use crate::policy::sources::is_neo4j_database_name;
use crate::policy::{Neo4jConfig, Neo4jMode};
use crate::storage::{Check, CheckStatus};
use chrono::{DateTime, Utc};
use command::ChildReader;
use http::{Http, quote};
use std::fs::File;
use std::io::Read;
use std::time::{Duration, Instant};

/// The Neo4j engine of one source.
#[derive(Debug, Clone)]
pub struct Neo4jEngine {
    cfg: Neo4jConfig,
}

/// Where an online backup's folder is, and how it is read and removed.
enum BackupDir {
    /// In the spool folder, removed when dropped.
    Local(tempfile::TempDir),
    /// Inside the container, reached through the wrapper.
    Remote(String),
}

impl BackupDir {
    fn path(&self) -> String {
        match self {
            BackupDir::Local(d) => d.path().display().to_string(),
            BackupDir::Remote(p) => p.clone(),
        }
    }
}

/// A file being streamed, with the folder that holds it (removed after).
struct LocalArtifact {
    file: File,
    _dir: tempfile::TempDir,
}

impl Read for LocalArtifact {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }
}

/// The one backup artifact in a folder listing.
fn artifact_name<'a>(names: impl Iterator<Item = &'a str>, dir: &str) -> Result<String> {
    let found: Vec<&str> = names.filter(|n| n.ends_with(".backup")).collect();
    match found.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(Error::failed(format!(
            "neo4j-admin database backup wrote no *.backup artifact into {dir}"
        ))),
        more => Err(Error::failed(format!(
            "neo4j-admin database backup wrote {} artifacts into {dir} ({}); a full backup is one",
            more.len(),
            more.join(", ")
        ))),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Neo4jEngine {
    /// An engine for `cfg`.
    pub fn new(cfg: Neo4jConfig) -> Self {
        Neo4jEngine { cfg }
    }

    /// The wrapper, then `args`.
    fn wrapped(&self, args: &[&str]) -> Vec<String> {
        self.cfg
            .wrapper
            .iter()
            .cloned()
            .chain(args.iter().map(|a| a.to_string()))
            .collect()
    }

    /// `neo4j-admin ARGS` through the wrapper.
    fn admin(&self, args: &[&str]) -> Vec<String> {
        let mut argv = self.wrapped(&[&self.cfg.neo4j_admin]);
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }

    fn http(&self) -> Result<Http> {
        let password = self.cfg.password.resolve("neo4j source")?;
        Http::new(
            &self.cfg.http_url,
            &self.cfg.user,
            password,
            self.cfg.command_timeout,
            tokio::runtime::Handle::current(),
        )
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.cfg.command_timeout)
    }

    /// The configured command at `key` (`stop` or `start`).
    fn control(&self, key: &str) -> Option<&Vec<String>> {
        match key {
            "stop" => self.cfg.stop.as_ref(),
            _ => self.cfg.start.as_ref(),
        }
    }

    fn check_name(target: &str) -> Result<()> {
        if is_neo4j_database_name(target) {
            Ok(())
        } else {
            Err(Error::bad_input(format!(
                "restore target `{target}` is not a Neo4j database name (a letter, then letters, digits, dots or dashes): --to names the database, e.g. --to neo4j"
            )))
        }
    }

    /// Stop the server (or, without commands, the database through Cypher).
    fn stop(&self, http: &Http, database: &str) -> Result<()> {
        match self.control("stop") {
            Some(argv) => {
                tracing::info!(command = %command::shown(argv), "stopping neo4j");
                command::run(argv, self.timeout(), "stop").map(|_| ())
            }
            None => {
                let stop = format!("STOP DATABASE {} WAIT", quote(database));
                match http.cypher("system", &[stop], self.cfg.command_timeout) {
                    // Nothing to stop: the restore creates it.
                    Err(e) if e.code() == Some("Neo.ClientError.Database.DatabaseNotFound") => {
                        Ok(())
                    }
                    r => r.map(|_| ()).map_err(Error::from),
                }
            }
        }
    }

    /// Start the server (or the database) again and wait until `database` answers.
    fn start(&self, http: &Http, database: &str) -> Result<()> {
        match self.control("start") {
            Some(argv) => {
                tracing::info!(command = %command::shown(argv), "starting neo4j");
                command::run(argv, self.timeout(), "start")?;
            }
            None => {
                for statement in [
                    format!("CREATE DATABASE {} IF NOT EXISTS WAIT", quote(database)),
                    format!("START DATABASE {} WAIT", quote(database)),
                ] {
                    http.cypher("system", &[statement], self.cfg.command_timeout)?;
                }
            }
        }
        http.wait_ready(database, self.cfg.start_timeout)
    }

    /// Stop, stream the dump, start when the stream ends.
    fn offline_snapshot(
        &self,
        http: Http,
        counts: Counts,
        now: &dyn Fn() -> DateTime<Utc>,
    ) -> Result<Snapshot> {
        let db = self.cfg.database.clone();
        let stopped_at = now();
        let clock = Instant::now();
        if let Err(e) = self.stop(&http, &db) {
            let restarted = self.start(&http, &db);
            return Err(match restarted {
                Ok(()) => e.context("neo4j source: stopping the server failed (start was run)"),
                Err(s) => e.context(format!(
                    "neo4j source: stopping the server failed, and so did starting it again ({s})"
                )),
            });
        }
        let details = serde_json::json!({
            "mode": "offline-dump",
            "database": db,
            "http-url": self.cfg.http_url,
            "format": "neo4j-admin database dump",
            "stopped-at": rfc3339(stopped_at),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let engine = self.clone();
        let mut final_details = details.clone();
        let on_end: command::OnEnd = Box::new(move |complete| {
            let started = engine.start(&http, &db);
            let downtime = clock.elapsed();
            let started_at = stopped_at
                + chrono::Duration::from_std(downtime).unwrap_or(chrono::Duration::zero());
            final_details["started-at"] = rfc3339(started_at).into();
            final_details["downtime-seconds"] = downtime.as_secs_f64().into();
            tracing::info!(database = %db, complete, downtime_seconds = downtime.as_secs_f64(), started = started.is_ok(), "neo4j server started after the dump");
            let _ = tx.send(final_details);
            started.map_err(|e| {
                e.context(format!(
                    "neo4j source: the server was stopped for the dump and did not come back; start it by hand (database {db})"
                ))
            })
        });
        let dump = self.admin(&["database", "dump", &self.cfg.database, "--to-stdout"]);
        let reader = ChildReader::spawn(&dump, "neo4j-admin", on_end)?;
        Ok(Snapshot {
            reader: Box::new(reader),
            counts: SnapshotCounts::ReadyWithFinalDetails(counts, rx),
            consistency_point: stopped_at,
            size_hint: None,
            details,
        })
    }

    /// Run `neo4j-admin database backup` into a fresh folder and stream its artifact.
    fn online_snapshot(
        &self,
        spool: &Spool,
        backup_path: Option<&str>,
        counts: Counts,
        now: &dyn Fn() -> DateTime<Utc>,
    ) -> Result<Snapshot> {
        let db = &self.cfg.database;
        let dir = match backup_path {
            None => BackupDir::Local(spool.tempdir("neo4j")?),
            Some(base) => {
                let d = format!(
                    "{}/lifeboat-{:016x}",
                    base.trim_end_matches('/'),
                    rand::random::<u64>()
                );
                command::run(
                    &self.wrapped(&["mkdir", "-p", &d]),
                    self.timeout(),
                    "wrapper",
                )?;
                BackupDir::Remote(d)
            }
        };
        let path = dir.path();
        let remove_remote = |engine: &Neo4jEngine, d: &str| {
            command::run(
                &engine.wrapped(&["rm", "-r", "-f", d]),
                engine.timeout(),
                "wrapper",
            )
            .map(|_| ())
        };
        let taken = (|| {
            let to = format!("--to-path={path}");
            command::run(
                &self.admin(&["database", "backup", db, &to]),
                None,
                "neo4j-admin",
            )?;
            let listing = match &dir {
                BackupDir::Local(d) => std::fs::read_dir(d.path())
                    .and_then(|entries| {
                        entries
                            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                            .collect::<std::io::Result<Vec<String>>>()
                    })
                    .map_err(|e| Error::io(format!("backup folder {path}"), e))?,
                BackupDir::Remote(d) => {
                    command::run(&self.wrapped(&["ls", "-1", d]), self.timeout(), "wrapper")?
                        .lines()
                        .map(str::to_string)
                        .collect()
                }
            };
            artifact_name(listing.iter().map(String::as_str), &path)
        })();
        let name = match taken {
            Ok(n) => n,
            Err(e) => {
                if let BackupDir::Remote(d) = &dir
                    && let Err(r) = remove_remote(self, d)
                {
                    tracing::warn!(folder = %d, error = %r, "backup folder left in the container; remove it by hand");
                }
                return Err(e);
            }
        };
        let consistency_point = now();
        let artifact = format!("{path}/{name}");
        let details = serde_json::json!({
            "mode": "online-backup",
            "database": db,
            "http-url": self.cfg.http_url,
            "format": "neo4j-admin database backup artifact",
            "artifact": name,
        });
        let (reader, size_hint): (Box<dyn Read + Send>, Option<u64>) = match dir {
            BackupDir::Local(d) => {
                let file = File::open(&artifact).map_err(|e| Error::io(&artifact, e))?;
                let size = file.metadata().ok().map(|m| m.len());
                (Box::new(LocalArtifact { file, _dir: d }), size)
            }
            BackupDir::Remote(d) => {
                let engine = self.clone();
                let on_end: command::OnEnd = Box::new(move |_| remove_remote(&engine, &d));
                let cat = self.wrapped(&["cat", &artifact]);
                (Box::new(ChildReader::spawn(&cat, "wrapper", on_end)?), None)
            }
        };
        Ok(Snapshot {
            reader,
            counts: counts.into(),
            consistency_point,
            size_hint,
            details,
        })
    }

    /// Stop, load the dump from the stream, start.
    fn load_dump(&self, http: &Http, target: &str, stream: &mut dyn Read) -> Loaded {
        if let Err(e) = self.stop(http, target) {
            return Loaded::NotRun(e, self.start(http, target).err());
        }
        let load = self.admin(&[
            "database",
            "load",
            target,
            "--from-stdin",
            "--overwrite-destination=true",
        ]);
        let loaded = command::feed(&load, stream, "neo4j-admin");
        let started = self.start(http, target);
        Loaded::Ran(loaded, started)
    }

    /// Stage the artifact, stop, restore it, start.
    fn restore_backup(
        &self,
        http: &Http,
        target: &str,
        stream: &mut dyn Read,
        backup_path: Option<&str>,
    ) -> Loaded {
        // Staged before the database is stopped: a backup that cannot be read costs no
        // downtime.
        let remote = backup_path.map(|base| {
            format!(
                "{}/lifeboat-restore-{:016x}",
                base.trim_end_matches('/'),
                rand::random::<u64>()
            )
        });
        let remove = || {
            if let Some(d) = &remote
                && let Err(e) = command::run(
                    &self.wrapped(&["rm", "-r", "-f", d]),
                    self.timeout(),
                    "wrapper",
                )
            {
                tracing::warn!(folder = %d, error = %e, "restore folder left in the container; remove it by hand");
            }
        };
        let staged = match &remote {
            None => (|| {
                let path = Spool::new(None).create(0)?;
                let mut file = File::create(&path).map_err(|e| Error::io(path.display(), e))?;
                std::io::copy(stream, &mut file)
                    .map_err(|e| crate::pipeline::read_error("reading the backup", e))?;
                file.sync_all().map_err(|e| Error::io(path.display(), e))?;
                Ok::<_, Error>((path.display().to_string(), Some(path)))
            })(),
            Some(d) => {
                let file = format!("{d}/{target}.backup");
                let of = format!("of={file}");
                command::run(
                    &self.wrapped(&["mkdir", "-p", d]),
                    self.timeout(),
                    "wrapper",
                )
                .and_then(|_| {
                    command::feed(&self.wrapped(&["dd", &of, "bs=1M"]), stream, "wrapper")
                })
                .map(|()| (file, None))
            }
        };
        let (file, _local) = match staged {
            Ok(s) => s,
            Err(e) => {
                remove();
                return Loaded::NotStopped(e);
            }
        };
        if let Err(e) = self.stop(http, target) {
            let started = self.start(http, target).err();
            remove();
            return Loaded::NotRun(e, started);
        }
        let from = format!("--from-path={file}");
        let loaded = command::run(
            &self.admin(&[
                "database",
                "restore",
                &from,
                target,
                "--overwrite-destination=true",
            ]),
            None,
            "neo4j-admin",
        )
        .map(|_| ());
        let started = self.start(http, target);
        remove();
        Loaded::Ran(loaded, started)
    }
}

/// How far a restore got.
enum Loaded {
    /// Failed before the database was stopped.
    NotStopped(Error),
    /// Stopping failed (the start that followed, if it failed too).
    NotRun(Error, Option<Error>),
    /// The load ran, then the server was started.
    Ran(Result<()>, Result<()>),
}

impl Engine for Neo4jEngine {
    fn snapshot(&self, spool: &Spool, now: &dyn Fn() -> DateTime<Utc>) -> Result<Snapshot> {
        let http = self.http()?;
        let counts = http.counts(&self.cfg.database, &self.cfg.counts)?;
        tracing::info!(database = %self.cfg.database, nodes = counts.get("nodes"), relationships = counts.get("relationships"), "neo4j counted");
        match &self.cfg.mode {
            Neo4jMode::OfflineDump => self.offline_snapshot(http, counts, now),
            Neo4jMode::OnlineBackup { backup_path } => {
                self.online_snapshot(spool, backup_path.as_deref(), counts, now)
            }
        }
    }

    fn check_target(&self, target: &str, force: bool) -> Result<()> {
        Self::check_name(target)?;
        let http = self.http()?;
        let nodes = match http.cypher(
            target,
            &["MATCH (n) RETURN count(n)".to_string()],
            self.cfg.command_timeout,
        ) {
            Ok(results) => results
                .first()
                .and_then(|rows| rows.first())
                .and_then(|row| row.first())
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0),
            // A database that does not exist yet is an empty target.
            Err(e) if e.code() == Some("Neo.ClientError.Database.DatabaseNotFound") => 0,
            Err(e) => return Err(Error::from(e).context("checking the restore target")),
        };
        if nodes > 0 && !force {
            return Err(Error::bad_input(format!(
                "restore target database {target} at {} has {nodes} nodes; Neo4j loads in place (no staging copy), so pass --force to overwrite it",
                http.url()
            )));
        }
        Ok(())
    }

    fn restore(
        &self,
        target: &str,
        stream: &mut dyn Read,
        expected: &Counts,
        job: &super::RestoreJob,
    ) -> Result<RestoreOutcome> {
        Self::check_name(target)?;
        // The load replaces the database in place: a cancelled attempt stops before it.
        job.control.check()?;
        let http = self.http()?;
        let loaded = match &self.cfg.mode {
            Neo4jMode::OfflineDump => self.load_dump(&http, target, stream),
            Neo4jMode::OnlineBackup { backup_path } => {
                self.restore_backup(&http, target, stream, backup_path.as_deref())
            }
        };
        let started = match loaded {
            Loaded::NotStopped(e) => return Err(e),
            Loaded::NotRun(e, start_err) => {
                let e = e.context(format!(
                    "neo4j restore into {target}: stopping failed, nothing was loaded"
                ));
                return Err(match start_err {
                    None => e,
                    Some(s) => e.context(format!("and starting again failed too ({s})")),
                });
            }
            Loaded::Ran(Err(e), start) => {
                let e = e.context(format!(
                    "neo4j restore into {target}: the load failed, the database may be partly overwritten"
                ));
                return Err(match start {
                    Ok(()) => e,
                    Err(s) => e.context(format!("and the server did not come back ({s})")),
                });
            }
            Loaded::Ran(Ok(()), started) => started,
        };
        // From here on the data is in place: report, never fail over to another copy.
        let after = |problem: String| RestoreOutcome {
            counts: counts::compare(expected, &Counts::new()),
            swapped: true,
            after_swap_error: Some(problem),
        };
        if let Err(e) = started {
            return Ok(after(format!(
                "loaded into {target}, but the server did not come back: {e}"
            )));
        }
        match http.counts(target, &self.cfg.counts) {
            Ok(actual) => Ok(RestoreOutcome {
                counts: self.compare(expected, &actual),
                swapped: true,
                after_swap_error: None,
            }),
            Err(e) => Ok(after(format!(
                "loaded into {target}, but recounting it failed: {e}"
            ))),
        }
    }

    fn count_target(&self, target: &str) -> Result<Counts> {
        Self::check_name(target)?;
        self.http()?.counts(target, &self.cfg.counts)
    }

    fn checks(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        let version = self.admin(&["--version"]);
        checks.push(
            match command::run(&version, self.timeout(), "neo4j-admin") {
                Ok(out) => Check::new(
                    "neo4j-admin",
                    CheckStatus::Ok,
                    format!("{} says {}", command::shown(&version), out.trim()),
                ),
                Err(e) => Check::new("neo4j-admin", CheckStatus::Fail, e.to_string()),
            },
        );
        let probe = self.http().and_then(|http| {
            http.cypher(
                &self.cfg.database,
                &["RETURN 1".to_string()],
                self.cfg.command_timeout,
            )
            .map_err(Error::from)
        });
        checks.push(match probe {
            Ok(_) => Check::new(
                "http",
                CheckStatus::Ok,
                format!(
                    "{} answers for database {} as {}",
                    self.cfg.http_url, self.cfg.database, self.cfg.user
                ),
            ),
            Err(e) => Check::new("http", CheckStatus::Fail, e.to_string()),
        });
        checks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_backup_artifact_is_accepted() {
        assert_eq!(
            artifact_name(["neo4j-2025-01-02T03-04-05.backup"].into_iter(), "/d").unwrap(),
            "neo4j-2025-01-02T03-04-05.backup"
        );
        assert!(artifact_name(["x.log"].into_iter(), "/d").is_err());
        let e = artifact_name(["a.backup", "b.backup"].into_iter(), "/d").unwrap_err();
        assert!(e.to_string().contains("2 artifacts"), "{e}");
    }

    #[test]
    fn restore_targets_must_be_database_names() {
        assert!(Neo4jEngine::check_name("neo4j").is_ok());
        assert!(Neo4jEngine::check_name("sales.eu-1").is_ok());
        for bad in ["", "../x", "a/b", "1abc", "db name", "x`y"] {
            assert!(Neo4jEngine::check_name(bad).is_err(), "{bad}");
        }
    }
}
