//! Redis: an RDB snapshot of the whole server (every database), verified and counted
//! before a byte is uploaded, and restored as the RDB file a `redis-server` loads.
//!
//! # Snapshot and its point in time
//! - `mode = "replication"` (default) runs `redis-cli -h HOST -p PORT --rdb -`, which
//!   asks the server for a full synchronisation as a replica would. The server forks;
//!   the RDB it streams is its dataset at the instant of the fork, whatever is written
//!   afterwards. The server waits `repl-diskless-sync-delay` (5 s by default) before
//!   forking, so other replicas can share the transfer; a server configured with
//!   `repl-diskless-sync no` instead writes the RDB to its own disk first (its
//!   `dbfilename` is rewritten, as by BGSAVE).
//! - `mode = "bgsave"` sends `BGSAVE` and waits until the server reports a finished,
//!   successful save begun after the request, then reads `rdb-path` on this machine.
//!   The file is the dataset at the fork of that save (or of a later one).
//!
//! In both modes the consistency point recorded is the instant just before the request,
//! so it is never later than the data: the snapshot holds everything written before
//! it, and possibly a little more.
//!
//! # Verified before upload
//! The RDB lands in a spool file. It must start with `REDIS` and a version this build
//! reads, parse record by record to the EOF opcode, end with a CRC-64 that matches
//! its content, and hold exactly the keys its RESIZEDB entries announce (see
//! `engine/rdb.rs`). Only then is the spool file streamed out; a damaged RDB fails
//! the backup with nothing uploaded. A zero checksum (the server runs with
//! `rdbchecksum no`) is accepted with a warning and recorded in the manifest.
//!
//! # Counts
//! `keys.dbN` and `expires.dbN` per database that holds keys, counted by walking the
//! RDB itself, so they describe exactly the uploaded bytes.
//!
//! # Restore
//! The target is the folder a `redis-server` loads (its `dir`); the RDB goes in as
//! `restore.rdb-name` (default `dump.rdb`). The stream is staged beside it, verified
//! and counted the same way, then loaded by a throwaway `redis-server` on a free
//! loopback port, which proves the file loads and counts what a server holds after
//! loading (keys whose TTL has passed are dropped on load: `tolerance` allows for
//! them). Only when those counts agree with the manifest is the staged file renamed
//! over the target. Then `restore.restart` runs, and `restore.check-url`, when set, is
//! counted and compared: a failure there is reported after the swap, with the file
//! already in place.
//!
//! The password reaches `redis-cli` only through `REDISCLI_AUTH` in its environment,
//! and the server only inside connections; never a command line, a log or an error.

mod resp;

use super::counts::{self, Counts, CountsReport};
use super::rdb::{self, Checksum, RdbSummary};
use super::spool::{Spool, SpoolFile};
use super::{Engine, RestoreJob, RestoreOutcome, Snapshot};
use crate::error::{Error, ErrorKind, Result};
use crate::policy::{RedisConfig, RedisMode};
use crate::storage::{Check, CheckStatus};
use chrono::{DateTime, Utc};
use resp::{Conn, Reply};
use std::fs::{self, File};
use std::io::{self, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, info, warn};

/// Connections, commands and replies to the source server.
const NET_TIMEOUT: Duration = Duration::from_secs(30);
/// A transfer that brings no new byte for this long is stopped. Generous: with
/// `repl-diskless-sync no` a large server writes its whole RDB to disk first.
const STALL_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A BGSAVE of a large dataset may take long; past this the backup fails.
const BGSAVE_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// `restore.restart` is stopped and reported as failed after this.
const RESTART_TIMEOUT: Duration = Duration::from_secs(120);
/// A restarted server (`restore.check-url`) must answer within this.
const CHECK_URL_TIMEOUT: Duration = Duration::from_secs(120);

/// The redis engine of one source.
#[derive(Debug, Clone)]
pub struct RedisEngine {
    cfg: RedisConfig,
}

/// Where a server listens, from a `redis://[USER@]HOST[:PORT][/DB]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    host: String,
    port: u16,
    user: Option<String>,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

fn endpoint(url: &str, key: &str) -> Result<Endpoint> {
    let bad = |why: &str| {
        Error::bad_input(format!(
            "{key} `{url}`: {why} (write redis://HOST:PORT, e.g. redis://127.0.0.1:6379)"
        ))
    };
    let parsed = url::Url::parse(url).map_err(|_| bad("not a URL"))?;
    if parsed.password().is_some() {
        // Never echo this one.
        return Err(Error::bad_input(format!(
            "{key}: holds a password: remove it and use password-env or password-file"
        )));
    }
    if parsed.scheme() != "redis" {
        return Err(bad("not a redis:// URL"));
    }
    let host = match parsed.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => return Err(bad("no host")),
    };
    let user = Some(parsed.username())
        .filter(|u| !u.is_empty())
        .map(str::to_string);
    Ok(Endpoint {
        host,
        port: parsed.port().unwrap_or(6379),
        user,
    })
}

/// Remove the secret from text that is about to be shown.
fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => text.replace(s, "***"),
        _ => text.to_string(),
    }
}

/// The last lines of a tool's output, for an error message.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

/// The payload size `redis-cli --rdb` reports when the server streamed it diskless:
/// it then also writes the 40-byte end marker to stdout, which is not part of the RDB.
fn transferred_bytes(stderr: &str) -> Option<u64> {
    let rest = stderr.split("with success after ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Verify and count an RDB file; any fault is an integrity error naming `what`.
fn inspect_file(path: &Path, what: &str) -> Result<RdbSummary> {
    let file = File::open(path).map_err(|e| Error::io(what, e))?;
    rdb::inspect(file).map_err(|e| match e {
        rdb::RdbError::Io(io) => Error::io(what, io),
        other => Error::integrity(format!("{what}: {other}")),
    })
}

/// A port on the loopback interface that was free a moment ago.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("finding a free loopback port", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free loopback port", e))
}

/// A `redis-server` of our own on a free loopback port that loads one RDB file, never
/// writes, and is shut down (or killed) when dropped, on success and on error alike.
struct Throwaway {
    child: Child,
    port: u16,
    log: tempfile::TempDir,
}

impl Throwaway {
    fn start(
        server: &Path,
        dir: &Path,
        file: &str,
        databases: u64,
        timeout: Duration,
        control: Option<&super::RestoreControl>,
    ) -> Result<Throwaway> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let log = tempfile::Builder::new()
                .prefix("lifeboat-redis-check-")
                .tempdir()
                .map_err(|e| Error::io("temporary folder for redis-server's log", e))?;
            let logfile = log.path().join("redis.log");
            let child = Command::new(server)
                .arg("--port")
                .arg(port.to_string())
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--daemonize", "no", "--protected-mode", "yes"])
                .arg("--databases")
                .arg(databases.max(16).to_string())
                .arg("--dir")
                .arg(dir)
                .arg("--dbfilename")
                .arg(file)
                .arg("--logfile")
                .arg(&logfile)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| tool_error(server, "redis-server", e))?;
            let mut t = Throwaway { child, port, log };
            match t.wait_ready(timeout, control) {
                Ok(()) => return Ok(t),
                // Another process took the port between our probe and the bind.
                Err(e) if attempt < 3 && t.log_tail().contains("Address already in use") => {
                    debug!(port, error = %e, "port taken; trying another");
                }
                Err(e) => {
                    return Err(
                        e.context(format!("redis-server loading {}", dir.join(file).display()))
                    );
                }
            }
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log.path().join("redis.log")).unwrap_or_default();
        tail(&text, 4)
    }

    fn wait_ready(
        &mut self,
        timeout: Duration,
        control: Option<&super::RestoreControl>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            // A cancelled restore stops waiting; dropping the server kills it.
            if let Some(c) = control {
                c.check()?;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::failed(format!(
                    "redis-server exited ({status}) before answering: {}",
                    self.log_tail()
                )));
            }
            if let Ok(mut c) = Conn::connect("127.0.0.1", self.port, Duration::from_secs(2)) {
                match c.cmd(&["PING"]) {
                    Ok(Reply::Status(s)) if s == "PONG" => return Ok(()),
                    Ok(Reply::Error(e)) if e.starts_with("LOADING") => {}
                    Ok(other) => {
                        return Err(Error::failed(format!(
                            "unexpected answer to PING: {other:?}"
                        )));
                    }
                    Err(_) => {}
                }
            }
            if Instant::now() > deadline {
                return Err(Error::failed(format!(
                    "no answer within {} s: {}",
                    timeout.as_secs(),
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keyspace(&self) -> Result<Counts> {
        let mut c = Conn::connect("127.0.0.1", self.port, NET_TIMEOUT)
            .map_err(|e| Error::io("throwaway redis-server", e))?;
        let info = c
            .cmd(&["INFO", "keyspace"])
            .map_err(|e| Error::io("throwaway redis-server", e))?
            .text()
            .map_err(|e| Error::failed(format!("throwaway redis-server: INFO keyspace: {e}")))?;
        Ok(resp::keyspace_counts(&info))
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let Ok(mut c) = Conn::connect("127.0.0.1", self.port, Duration::from_secs(2)) else {
            // Nothing answers (it never came up, or hangs before listening): kill it.
            let _ = self.child.kill();
            let _ = self.child.wait();
            return;
        };
        let _ = c.cmd(&["SHUTDOWN", "NOSAVE"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool_error(path: &Path, tool: &str, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::failed(format!(
            "{tool} not found (`{}`): install it (Debian: redis-server, redis-tools) or set `{tool}` in the source to its path",
            path.display()
        ))
    } else {
        Error::io(format!("running {}", path.display()), e)
    }
}

/// Run `cmd` to completion within `timeout`, output captured.
fn run_command(cmd: &[String], timeout: Duration) -> Result<()> {
    let shown = cmd.join(" ");
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("starting `{shown}`"), e))?;
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(Error::io(format!("waiting for `{shown}`"), e)),
        }
    };
    let output = format!(
        "{}\n{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    match status {
        Some(s) if s.success() => {
            debug!(command = %shown, output = %tail(&output, 10), "restart command finished");
            Ok(())
        }
        Some(s) => Err(Error::failed(format!(
            "`{shown}` failed ({s}): {}",
            tail(&output, 6)
        ))),
        None => Err(Error::failed(format!(
            "`{shown}` did not finish within {} s and was stopped: {}",
            timeout.as_secs(),
            tail(&output, 6)
        ))),
    }
}

impl RedisEngine {
    /// An engine for `cfg`.
    pub fn new(cfg: RedisConfig) -> Self {
        RedisEngine { cfg }
    }

    fn password(&self) -> Result<Option<String>> {
        self.cfg
            .password
            .resolve(&format!("redis source {}", self.cfg.url))
    }

    /// A connection to `ep`, authenticated when a password is configured.
    fn connect(&self, ep: &Endpoint, password: Option<&str>, timeout: Duration) -> Result<Conn> {
        let mut c = Conn::connect(&ep.host, ep.port, timeout).map_err(|e| {
            Error::io(
                format!("redis at {ep} (check the url and that it is running)"),
                e,
            )
            .retryable(true)
        })?;
        if let Some(pw) = password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(u) = &ep.user {
                args.push(u.as_bytes());
            }
            args.push(pw.as_bytes());
            match c
                .call(&args)
                .map_err(|e| Error::io(format!("redis at {ep}"), e))?
            {
                Reply::Status(_) => {}
                Reply::Error(e) => {
                    return Err(Error::failed(format!(
                        "redis at {ep}: AUTH refused: {} (check password-env / password-file)",
                        scrub(&e, Some(pw))
                    )));
                }
                other => {
                    return Err(Error::failed(format!(
                        "redis at {ep}: unexpected answer to AUTH: {other:?}"
                    )));
                }
            }
        }
        Ok(c)
    }

    fn command(&self, c: &mut Conn, ep: &Endpoint, args: &[&str]) -> Result<String> {
        c.cmd(args)
            .map_err(|e| Error::io(format!("redis at {ep}: {}", args[0]), e))?
            .text()
            .map_err(|e| {
                Error::failed(format!(
                    "redis at {ep}: {} refused: {e}{}",
                    args.join(" "),
                    if e.starts_with("NOAUTH") {
                        " (set password-env or password-file)"
                    } else {
                        ""
                    }
                ))
            })
    }

    /// `redis-cli --rdb -` into `out`.
    fn fetch_replication(&self, ep: &Endpoint, password: Option<&str>, out: &Path) -> Result<()> {
        let file = File::create(out).map_err(|e| Error::io(out.display(), e))?;
        let mut cmd = Command::new(&self.cfg.cli);
        cmd.arg("-h")
            .arg(&ep.host)
            .arg("-p")
            .arg(ep.port.to_string());
        if let Some(u) = &ep.user {
            cmd.arg("--user").arg(u);
        }
        cmd.args(["--rdb", "-"]);
        // Only the configured password, and only through the environment.
        cmd.env_remove("REDISCLI_AUTH");
        if let Some(pw) = password {
            cmd.env("REDISCLI_AUTH", pw);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::piped());
        debug!(cli = %self.cfg.cli.display(), server = %ep, "redis-cli --rdb - started");
        let mut child = cmd
            .spawn()
            .map_err(|e| tool_error(&self.cfg.cli, "redis-cli", e))?;
        let mut pipe = child.stderr.take().expect("piped");
        let errors = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = pipe.read_to_end(&mut b);
            b
        });
        // redis-cli has no timeout of its own: a server that stops sending would hold
        // the backup (and the source's run lock) forever.
        let (mut seen, mut since) = (0u64, Instant::now());
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("waiting for {}", self.cfg.cli.display()),
                        e,
                    ));
                }
            }
            let len = fs::metadata(out).map_or(0, |m| m.len());
            if len != seen {
                (seen, since) = (len, Instant::now());
            } else if since.elapsed() > STALL_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::failed(format!(
                    "redis at {ep}: no RDB data for {} s (after {seen} bytes); redis-cli was stopped (see the server's log: a fork refused for memory, a stalled network)",
                    STALL_TIMEOUT.as_secs()
                ))
                .retryable(true));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let stderr_bytes = errors.join().unwrap_or_default();
        let stderr = scrub(&String::from_utf8_lossy(&stderr_bytes), password);
        if !status.success() {
            let hint = if stderr.contains("NOAUTH") {
                " (the server wants a password: set password-env or password-file)"
            } else if stderr.contains("WRONGPASS") || stderr.contains("AUTH failed") {
                " (check password-env / password-file)"
            } else if stderr.contains("Could not connect") {
                " (check the url and that the server is running)"
            } else {
                ""
            };
            return Err(Error::failed(format!(
                "redis at {ep}: redis-cli --rdb failed ({}): {}{hint}",
                status,
                tail(&stderr, 3)
            )));
        }
        debug!(output = %tail(&stderr, 5), "redis-cli --rdb - finished");
        if let Some(n) = transferred_bytes(&stderr) {
            let f = fs::OpenOptions::new()
                .write(true)
                .open(out)
                .map_err(|e| Error::io(out.display(), e))?;
            let len = f.metadata().map_err(|e| Error::io(out.display(), e))?.len();
            if len > n {
                f.set_len(n).map_err(|e| Error::io(out.display(), e))?;
            }
        }
        Ok(())
    }

    /// BGSAVE, then wait for a save that began after the request to finish well.
    fn bgsave(
        &self,
        ep: &Endpoint,
        password: Option<&str>,
        now: &dyn Fn() -> DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, SystemTime)> {
        let mut c = self.connect(ep, password, NET_TIMEOUT)?;
        let info = self.command(&mut c, ep, &["INFO", "persistence"])?;
        let saves_before: Option<u64> =
            resp::info_field(&info, "rdb_saves").and_then(|v| v.parse().ok());
        let lastsave_before: i64 = self
            .command(&mut c, ep, &["LASTSAVE"])?
            .parse()
            .unwrap_or(0);
        if saves_before.is_none() {
            // Servers before 7.0 lack rdb_saves; LASTSAVE has one-second resolution, so
            // start in a later second than the last save to see it change.
            let deadline = Instant::now() + Duration::from_millis(1100);
            while unix_now() <= lastsave_before && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // The file's modification time is compared with this, so it is the system's
        // clock, as the file system's.
        let requested_at = SystemTime::now();
        let point = now();
        let deadline = Instant::now() + BGSAVE_TIMEOUT;
        loop {
            match c
                .cmd(&["BGSAVE"])
                .map_err(|e| Error::io(format!("redis at {ep}: BGSAVE"), e))?
            {
                Reply::Status(_) => break,
                // Another save or an AOF rewrite is running: ours must start after the
                // consistency point, so wait for it and ask again.
                Reply::Error(e) if e.contains("in progress") || e.contains("child process") => {
                    if Instant::now() > deadline {
                        return Err(Error::failed(format!(
                            "redis at {ep}: BGSAVE could not start within {} s: {e}",
                            BGSAVE_TIMEOUT.as_secs()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Reply::Error(e) => {
                    return Err(Error::failed(format!("redis at {ep}: BGSAVE refused: {e}")));
                }
                other => {
                    return Err(Error::failed(format!(
                        "redis at {ep}: unexpected answer to BGSAVE: {other:?}"
                    )));
                }
            }
        }
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let info = self.command(&mut c, ep, &["INFO", "persistence"])?;
            let running = resp::info_field(&info, "rdb_bgsave_in_progress") == Some("1");
            let done = match saves_before {
                Some(before) => resp::info_field(&info, "rdb_saves")
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|n| n > before),
                None => resp::info_field(&info, "rdb_last_save_time")
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|t| t > lastsave_before),
            };
            if !running && done {
                if resp::info_field(&info, "rdb_last_bgsave_status") != Some("ok") {
                    return Err(Error::failed(format!(
                        "redis at {ep}: BGSAVE failed on the server (rdb_last_bgsave_status is not ok; see the server's log: disk space, permissions of its dir)"
                    )));
                }
                return Ok((point, requested_at));
            }
            if Instant::now() > deadline {
                return Err(Error::failed(format!(
                    "redis at {ep}: BGSAVE did not finish within {} s",
                    BGSAVE_TIMEOUT.as_secs()
                )));
            }
        }
    }

    /// Copy the server's RDB file, written by the save just made, into the spool.
    fn copy_rdb(
        &self,
        rdb_path: &Path,
        requested_at: SystemTime,
        spool: &Spool,
    ) -> Result<tempfile::TempPath> {
        let what = format!("rdb-path {}", rdb_path.display());
        let mut src = File::open(rdb_path)
            .map_err(|e| Error::io(format!("{what} (the server's dir and dbfilename)"), e))?;
        let meta = src.metadata().map_err(|e| Error::io(&what, e))?;
        // Redis writes a new file and renames it into place: the handle opened above
        // keeps this save's bytes even if another save replaces the name meanwhile.
        let written = meta.modified().map_err(|e| Error::io(&what, e))?;
        if written + Duration::from_secs(2) < requested_at {
            return Err(Error::failed(format!(
                "{what}: not rewritten by the BGSAVE just made (last written {}); set rdb-path to the server's `dir`/`dbfilename` (CONFIG GET dir, CONFIG GET dbfilename)",
                DateTime::<Utc>::from(written).to_rfc3339()
            )));
        }
        let path = spool.create(meta.len())?;
        let mut dst = File::create(&path).map_err(|e| Error::io(path.display(), e))?;
        io::copy(&mut src, &mut dst)
            .map_err(|e| Error::io(format!("copying {what} to the spool"), e))?;
        Ok(path)
    }

    fn rdb_name(&self) -> Result<&str> {
        let name = self.cfg.restore.rdb_name.as_str();
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\']) {
            return Err(Error::bad_input(format!(
                "restore.rdb-name `{name}`: give a file name without folders (e.g. dump.rdb); the target is the folder"
            )));
        }
        Ok(name)
    }

    /// Load `dir/file` in a throwaway server and count its keyspace; a restore's
    /// `control` stops the wait for it.
    fn load_and_count(
        &self,
        dir: &Path,
        file: &str,
        summary: &RdbSummary,
        control: Option<&super::RestoreControl>,
    ) -> Result<Counts> {
        let dir = fs::canonicalize(dir).map_err(|e| Error::io(dir.display(), e))?;
        // Loading runs at well over 20 MiB/s; the floor covers start-up.
        let timeout = Duration::from_secs(60 + summary.size / (20 << 20));
        let databases = summary.max_db().map_or(16, |d| d.saturating_add(1));
        let server = Throwaway::start(&self.cfg.server, &dir, file, databases, timeout, control)?;
        let counts = server.keyspace()?;
        debug!(file = %dir.join(file).display(), counts = ?counts, "throwaway redis-server counted");
        Ok(counts)
    }

    /// Count the server at `url` once it answers (it may be loading after a restart).
    fn count_url(&self, url: &str, timeout: Duration) -> Result<Counts> {
        let ep = endpoint(url, "restore.check-url")?;
        let password = self.password()?;
        let deadline = Instant::now() + timeout;
        loop {
            let attempt = self
                .connect(&ep, password.as_deref(), NET_TIMEOUT)
                .and_then(|mut c| {
                    match c
                        .cmd(&["PING"])
                        .map_err(|e| Error::io(format!("redis at {ep}"), e))?
                    {
                        Reply::Status(_) => Ok(Some(c)),
                        Reply::Error(e) if e.starts_with("LOADING") => Ok(None),
                        Reply::Error(e) => {
                            Err(Error::failed(format!("redis at {ep}: PING refused: {e}")))
                        }
                        other => Err(Error::failed(format!(
                            "redis at {ep}: unexpected answer to PING: {other:?}"
                        ))),
                    }
                });
            match attempt {
                Ok(Some(mut c)) => {
                    let info = self.command(&mut c, &ep, &["INFO", "keyspace"])?;
                    return Ok(resp::keyspace_counts(&info));
                }
                Err(e) if !e.is_retryable() => return Err(e),
                Ok(None) | Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(250));
                }
                Ok(None) => {
                    return Err(Error::failed(format!(
                        "redis at {ep} (restore.check-url) was still loading after {} s",
                        timeout.as_secs()
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn tool_version(path: &Path) -> std::result::Result<String, String> {
        match Command::new(path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => {
                Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
            }
            Ok(o) => Err(format!(
                "`{} --version` failed ({})",
                path.display(),
                o.status
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(format!("`{}` not found", path.display()))
            }
            Err(e) => Err(format!("`{}`: {e}", path.display())),
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl RedisEngine {
    /// After the swap: restart the server, then count it at `restore.check-url`.
    fn after_swap(&self, rdb_file: &Path, expected: &Counts) -> Result<()> {
        if let Some(cmd) = &self.cfg.restore.restart {
            run_command(cmd, RESTART_TIMEOUT).map_err(|e| {
                e.context(format!(
                    "{} is in place (its counts matched), but restore.restart failed; restart the server by hand",
                    rdb_file.display()
                ))
            })?;
        }
        if let Some(url) = &self.cfg.restore.check_url {
            let actual = self.count_url(url, CHECK_URL_TIMEOUT).map_err(|e| {
                e.context(format!(
                    "{} is in place, but counting restore.check-url failed",
                    rdb_file.display()
                ))
            })?;
            let report = self.compare(expected, &actual);
            if !report.ok() {
                return Err(Error::integrity(format!(
                    "{} is in place (its own counts matched), but the server at restore.check-url {url} holds different counts: {}",
                    rdb_file.display(),
                    report.mismatches().join("; ")
                )));
            }
        }
        Ok(())
    }
}

impl Engine for RedisEngine {
    fn snapshot(&self, spool: &Spool, now: &dyn Fn() -> DateTime<Utc>) -> Result<Snapshot> {
        let ep = endpoint(&self.cfg.url, "url")?;
        let password = self.password()?;
        let pw = password.as_deref();
        let (path, consistency_point, what, mode) = match &self.cfg.mode {
            RedisMode::Replication => {
                // The transfer's size is unknown until it ends; the spool keeps its margin.
                let path = spool.create(0)?;
                let point = now();
                self.fetch_replication(&ep, pw, &path)?;
                (
                    path,
                    point,
                    format!("RDB streamed from redis at {ep} (redis-cli --rdb)"),
                    serde_json::json!({ "mode": "replication" }),
                )
            }
            RedisMode::Bgsave { rdb_path } => {
                let (point, requested_at) = self.bgsave(&ep, pw, now)?;
                let path = self.copy_rdb(rdb_path, requested_at, spool)?;
                (
                    path,
                    point,
                    format!(
                        "RDB {} saved by BGSAVE on redis at {ep}",
                        rdb_path.display()
                    ),
                    serde_json::json!({ "mode": "bgsave", "rdb-path": rdb_path.display().to_string() }),
                )
            }
        };
        let summary = inspect_file(&path, &what).map_err(|e| match e.kind() {
            ErrorKind::Integrity => Error::integrity(format!(
                "{}; refusing to upload it (back up again; if it repeats, check the server's memory and disk)",
                e.message()
            )),
            _ => e,
        })?;
        if summary.checksum == Checksum::Disabled {
            warn!(server = %ep, "the RDB carries no checksum (the server runs with rdbchecksum no): its structure was checked, its bytes could not be");
        }
        info!(server = %ep, summary = %summary, "RDB verified");
        let mut details = mode;
        details["url"] = self.cfg.url.clone().into();
        details["redis-version"] = summary.redis_version().unwrap_or("unknown").into();
        details["rdb-version"] = summary.version.into();
        details["rdb-size"] = summary.size.into();
        details["checksum"] = match summary.checksum {
            Checksum::Verified(_) => "crc64",
            Checksum::Disabled => "disabled",
            Checksum::Absent => "none (RDB version before 5)",
        }
        .into();
        details["function-libraries"] = summary.functions.into();
        details["module-aux"] = summary.module_aux.into();
        let file = File::open(&path)
            .map_err(|e| Error::io(format!("spool file {}", path.display()), e))?;
        Ok(Snapshot {
            reader: Box::new(SpoolFile::new(file, path)),
            counts: summary.counts().into(),
            consistency_point,
            size_hint: Some(summary.size),
            details,
        })
    }

    fn check_target(&self, target: &str, force: bool) -> Result<()> {
        let name = self.rdb_name()?;
        let dir = Path::new(target);
        if dir.exists() && !dir.is_dir() {
            return Err(Error::bad_input(format!(
                "restore target {target} is a file; name the folder the redis-server loads (its `dir`): the RDB goes in as {name}"
            )));
        }
        super::check_file_target(&dir.join(name).to_string_lossy(), force)?;
        // Fail before fetching anything when the restore could not be checked.
        Self::tool_version(&self.cfg.server).map_err(|e| {
            Error::failed(format!(
                "{e}: a restore loads the RDB in a throwaway redis-server before it replaces anything; install redis-server or set `redis-server` in the source"
            ))
        })?;
        Ok(())
    }

    fn restore(
        &self,
        target: &str,
        stream: &mut dyn Read,
        expected: &Counts,
        job: &RestoreJob,
    ) -> Result<RestoreOutcome> {
        let name = self.rdb_name()?;
        let dir = Path::new(target);
        let rdb_file = dir.join(name);
        let staging = super::stage_beside(&rdb_file, stream, job)?;
        let what = format!("restored RDB {}", staging.path().display());
        let summary = inspect_file(staging.path(), &what)?;
        // The staged bytes are the backed-up bytes: their own counts must be exact.
        let own = counts::compare(expected, &summary.counts());
        if !own.ok() {
            return Ok(RestoreOutcome {
                counts: own,
                swapped: false,
                after_swap_error: None,
            });
        }
        let staged_name = staging
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a staging name we made")
            .to_string();
        job.control.check()?;
        let loaded = self.load_and_count(dir, &staged_name, &summary, Some(&job.control))?;
        let report = self.compare(expected, &loaded);
        if !report.ok() {
            return Ok(RestoreOutcome {
                counts: report,
                swapped: false,
                after_swap_error: None,
            });
        }
        job.control.commit(|| super::swap_in(staging, &rdb_file))?;
        info!(target = %rdb_file.display(), "RDB swapped in");
        // The file is in place from here on: failures below fail the run, but must not
        // send the restore on to another repository. The restart and the check URL act
        // on the running server: for a real restore only, in a drill only when the
        // source says so (`restore.restart-in-drills`), never in a trial.
        let after_swap_error = if job
            .purpose
            .runs_after_swap(self.cfg.restore.restart_in_drills)
        {
            self.after_swap(&rdb_file, expected)
                .err()
                .map(|e| e.to_string())
        } else {
            if self.cfg.restore.restart.is_some() || self.cfg.restore.check_url.is_some() {
                info!(target = %rdb_file.display(), "restore.restart and restore.check-url not run: {}", job.purpose.skip_note());
            }
            None
        };
        Ok(RestoreOutcome {
            counts: report,
            swapped: true,
            after_swap_error,
        })
    }

    fn sweep_staging(&self, target: &str) -> Result<Vec<String>> {
        super::sweep_file_target(&Path::new(target).join(self.rdb_name()?).to_string_lossy())
    }

    fn count_target(&self, target: &str) -> Result<Counts> {
        if let Some(url) = &self.cfg.restore.check_url {
            return self.count_url(url, Duration::from_secs(5));
        }
        let name = self.rdb_name()?;
        let dir = Path::new(target);
        let file = dir.join(name);
        let what = format!("RDB {}", file.display());
        if !file.is_file() {
            return Err(Error::bad_input(format!(
                "{what}: not found (name the folder a redis-server loads, holding {name}; or set restore.check-url to count a running server)"
            )));
        }
        let summary = inspect_file(&file, &what)?;
        self.load_and_count(dir, name, &summary, None)
    }

    /// Key counts may shrink after a restore as TTLs pass, within the tolerance; a
    /// database whose keys all expired is absent from INFO keyspace, which is zero.
    fn compare(&self, expected: &Counts, actual: &Counts) -> CountsReport {
        let mut actual = actual.clone();
        for name in expected.keys() {
            if name.starts_with("keys.") || name.starts_with("expires.") {
                actual.entry(name.clone()).or_insert(0);
            }
        }
        counts::compare_tolerant(expected, &actual, self.cfg.tolerance)
    }

    fn checks(&self) -> Vec<Check> {
        let mut out = Vec::new();
        out.push(match Self::tool_version(&self.cfg.cli) {
            Ok(v) => Check::new("redis-cli", CheckStatus::Ok, v),
            Err(e) => Check::new(
                "redis-cli",
                if matches!(self.cfg.mode, RedisMode::Replication) {
                    CheckStatus::Fail
                } else {
                    CheckStatus::Warn
                },
                format!("{e}: install redis-tools or set `redis-cli` in the source"),
            ),
        });
        let reach = endpoint(&self.cfg.url, "url").and_then(|ep| {
            let password = self.password()?;
            let mut c = self.connect(&ep, password.as_deref(), Duration::from_secs(5))?;
            let pong = self.command(&mut c, &ep, &["PING"])?;
            let info = self.command(&mut c, &ep, &["INFO", "server"])?;
            Ok(format!(
                "{pong} from {ep} (redis {})",
                resp::info_field(&info, "redis_version").unwrap_or("unknown")
            ))
        });
        out.push(match reach {
            Ok(d) => Check::new("reachable", CheckStatus::Ok, d),
            Err(e) => Check::new("reachable", CheckStatus::Fail, e.to_string()),
        });
        if let RedisMode::Bgsave { rdb_path } = &self.cfg.mode {
            out.push(match File::open(rdb_path) {
                Ok(_) => Check::new("rdb-path", CheckStatus::Ok, rdb_path.display().to_string()),
                Err(e) => Check::new(
                    "rdb-path",
                    CheckStatus::Fail,
                    format!(
                        "{}: {e} (the server's dir/dbfilename, readable here)",
                        rdb_path.display()
                    ),
                ),
            });
        }
        out.push(match Self::tool_version(&self.cfg.server) {
            Ok(v) => Check::new("redis-server", CheckStatus::Ok, v),
            Err(e) => Check::new(
                "redis-server",
                CheckStatus::Warn,
                format!("{e}: restores and `lifeboat compare` load the RDB in a throwaway redis-server; install it or set `redis-server`"),
            ),
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{RedisRestore, SecretRef, Tolerance};
    use rstest::rstest;

    #[rstest]
    #[case("redis://127.0.0.1:6390", "127.0.0.1", 6390, None)]
    #[case("redis://cache.internal", "cache.internal", 6379, None)]
    #[case("redis://backup@10.0.0.5:7000/2", "10.0.0.5", 7000, Some("backup"))]
    #[case("redis://[::1]:6380", "::1", 6380, None)]
    fn urls_give_host_port_and_user(
        #[case] url: &str,
        #[case] host: &str,
        #[case] port: u16,
        #[case] user: Option<&str>,
    ) {
        let ep = endpoint(url, "url").unwrap();
        assert_eq!(ep.host, host);
        assert_eq!(ep.port, port);
        assert_eq!(ep.user.as_deref(), user);
    }

    #[rstest]
    #[case("http://127.0.0.1:6379")]
    #[case("redis://")]
    #[case("127.0.0.1:6379")]
    fn other_urls_are_refused_with_the_form_to_use(#[case] url: &str) {
        let e = endpoint(url, "restore.check-url").unwrap_err();
        assert!(e.to_string().contains("redis://HOST:PORT"), "{e}");
        assert!(e.to_string().contains("restore.check-url"), "{e}");
    }

    #[test]
    fn a_url_with_a_password_is_refused_without_echoing_it() {
        let e = endpoint("redis://:hunter2@127.0.0.1:6379", "restore.check-url").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("password-env"), "{e}");
    }

    #[test]
    fn the_diskless_payload_size_is_read_from_redis_cli() {
        let diskless = "sending REPLCONF capa eof\nSYNC sent to master, writing bytes of bulk transfer until EOF marker to '-'\nTransfer finished with success after 798 bytes\n";
        assert_eq!(transferred_bytes(diskless), Some(798));
        let disk =
            "SYNC sent to master, writing 798 bytes to '-'\nTransfer finished with success.\n";
        assert_eq!(transferred_bytes(disk), None);
    }

    #[test]
    fn secrets_are_scrubbed() {
        assert_eq!(
            scrub("AUTH failed for s3cret", Some("s3cret")),
            "AUTH failed for ***"
        );
        assert_eq!(scrub("nothing here", None), "nothing here");
        assert_eq!(scrub("x", Some("")), "x");
    }

    fn engine(tolerance: Tolerance) -> RedisEngine {
        RedisEngine::new(RedisConfig {
            url: "redis://127.0.0.1:1".into(),
            password: SecretRef::None,
            mode: RedisMode::Replication,
            tolerance,
            cli: "redis-cli".into(),
            server: "redis-server".into(),
            restore: RedisRestore {
                rdb_name: "dump.rdb".into(),
                restart: None,
                restart_in_drills: false,
                check_url: None,
            },
        })
    }

    fn counts(pairs: &[(&str, u64)]) -> Counts {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn a_database_whose_keys_all_expired_counts_as_zero() {
        let expected = counts(&[
            ("keys.db0", 100),
            ("expires.db0", 50),
            ("keys.db1", 2),
            ("expires.db1", 2),
        ]);
        let actual = counts(&[("keys.db0", 99), ("expires.db0", 49)]);
        let exact = engine(Tolerance::Exact).compare(&expected, &actual);
        assert_eq!(
            exact.mismatches(),
            vec![
                "expires.db0: expected 50, actual 49",
                "expires.db1: expected 2, actual 0",
                "keys.db0: expected 100, actual 99",
                "keys.db1: expected 2, actual 0",
            ]
        );
        let loose = engine(Tolerance::Absolute(2)).compare(&expected, &actual);
        assert!(loose.ok(), "{loose}");
    }

    #[test]
    fn a_folder_target_holds_the_rdb_and_a_file_target_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(Tolerance::Exact);
        let file = dir.path().join("plain");
        fs::write(&file, b"x").unwrap();
        let err = e.check_target(file.to_str().unwrap(), false).unwrap_err();
        assert!(err.to_string().contains("is a file"), "{err}");
        fs::write(dir.path().join("dump.rdb"), b"REDIS").unwrap();
        let err = e
            .check_target(dir.path().to_str().unwrap(), false)
            .unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
    }

    /// A throwaway server with an empty dataset, for tests.
    fn empty_server(dir: &Path) -> Throwaway {
        Throwaway::start(
            Path::new("redis-server"),
            dir,
            "dump.rdb",
            16,
            Duration::from_secs(30),
            None,
        )
        .expect("redis-server on PATH (scripts/test.sh installs it)")
    }

    #[test]
    fn every_value_type_redis_writes_is_walked_and_counted_like_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let server = empty_server(dir.path());
        let mut c = Conn::connect("127.0.0.1", server.port, NET_TIMEOUT).unwrap();
        let mut run = |args: &[&str]| {
            let r = c.cmd(args).unwrap();
            assert!(!matches!(r, Reply::Error(_)), "{args:?}: {r:?}");
        };
        let big: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
        let mut cmd = |head: &[&str], tail: &[String]| {
            let mut v: Vec<&str> = head.to_vec();
            v.extend(tail.iter().map(String::as_str));
            run(&v);
        };
        cmd(&["SET", "s", "plain"], &[]);
        cmd(&["SET", "n", "12345"], &[]);
        cmd(&["SET", "long", &"abc".repeat(200)], &[]);
        cmd(&["SET", "ttl", "x", "EX", "3600"], &[]);
        cmd(&["RPUSH", "small-list", "a", "b"], &[]);
        cmd(&["RPUSH", "big-list"], &big);
        cmd(&["SADD", "intset", "1", "2", "3"], &[]);
        cmd(&["SADD", "small-set", "a", "b"], &[]);
        cmd(&["SADD", "big-set"], &big);
        cmd(&["ZADD", "small-zset", "1", "a", "2.5", "b"], &[]);
        let pairs: Vec<String> = big
            .iter()
            .enumerate()
            .flat_map(|(i, m)| [i.to_string(), m.clone()])
            .collect();
        cmd(&["ZADD", "big-zset"], &pairs);
        cmd(&["HSET", "small-hash", "f", "v"], &[]);
        cmd(&["HSET", "big-hash"], &pairs);
        cmd(&["XADD", "stream", "*", "f", "v"], &[]);
        cmd(&["XADD", "stream", "*", "g", "w"], &[]);
        cmd(&["XGROUP", "CREATE", "stream", "grp", "0"], &[]);
        cmd(
            &[
                "XREADGROUP",
                "GROUP",
                "grp",
                "alice",
                "COUNT",
                "1",
                "STREAMS",
                "stream",
                ">",
            ],
            &[],
        );
        cmd(&["SELECT", "5"], &[]);
        cmd(&["SET", "other-db", "1", "PX", "999999"], &[]);
        cmd(
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=lib\nredis.register_function('f', function() return 1 end)",
            ],
            &[],
        );
        cmd(&["SAVE"], &[]);
        let info = c.cmd(&["INFO", "keyspace"]).unwrap().text().unwrap();
        let s = inspect_file(&dir.path().join("dump.rdb"), "test RDB").unwrap();
        assert_eq!(s.counts(), resp::keyspace_counts(&info));
        assert_eq!(s.counts().get("keys.db0"), Some(&14));
        assert_eq!(s.counts().get("expires.db5"), Some(&1));
        assert_eq!(s.functions, 1);
        assert!(
            matches!(s.checksum, Checksum::Verified(_)),
            "Redis's own trailer checks out"
        );
    }
}
