//! Black-box tests of `lifeboat schedule` with the real binary: concurrent `--once`
//! runs, a lease holder killed with SIGKILL, SIGTERM in the middle of an upload, and a
//! daemon on seconds-granularity schedules backing up real SQLite and Redis sources,
//! pruning, and serving metrics read with a Prometheus text-format parser.

#[path = "../support/moto.rs"]
mod moto;
#[path = "../support/redis.rs"]
mod redis;
#[path = "../support/util.rs"]
mod util;

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use util::{files_under, local_repo, s3_repo};

struct Env {
    dir: tempfile::TempDir,
    policies: PathBuf,
    repo: PathBuf,
}

impl Env {
    /// A policy set with a local repository `local`, the given sources and a
    /// `[scheduler]` table.
    fn new(sources: &str, scheduler: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        let repo = dir.path().join("repo");
        let sources = sources.replace("DIR", &dir.path().display().to_string());
        std::fs::write(
            policies.join("lifeboat.toml"),
            format!(
                "[repositories.local]\n{}\n\n{sources}\n\n[scheduler]\n{scheduler}\n",
                local_repo(&repo)
            ),
        )
        .unwrap();
        Env {
            dir,
            policies,
            repo,
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("lifeboat").unwrap();
        c.arg("--policies")
            .arg(&self.policies)
            .env_remove("LIFEBOAT_FAILPOINT")
            .env_remove("LIFEBOAT_NOW")
            .env("LIFEBOAT_SPOOL_DIR", self.dir.path().join("spool"));
        c
    }

    /// Committed backups of `source` in the local repository (manifests written).
    fn manifests(&self, source: &str) -> usize {
        files_under(&self.repo.join(source))
            .iter()
            .filter(|p| p.file_name().unwrap() == "manifest.json")
            .count()
    }

    fn list(&self) -> Vec<Value> {
        let out = self.cmd().args(["--json", "list"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn make_db(path: &Path, rows: usize) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    for i in 0..rows {
        c.execute("INSERT INTO t (v) VALUES (?1)", [format!("row {i}")])
            .unwrap();
    }
}

/// Wait for `child` to exit within `limit`; kill it and fail otherwise.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

fn signal(child: &Child, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

fn stderr_of(mut child: Child) -> String {
    let mut s = String::new();
    child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
    s
}

#[test]
fn two_once_runs_started_together_back_up_each_due_source_exactly_once() {
    let env = Env::new(
        r#"
[sources.a]
kind = "sqlite"
path = "DIR/a.db"
schedule = "0 3 * * *"
destinations = ["local"]

[sources.b]
kind = "sqlite"
path = "DIR/b.db"
schedule = "0 3 * * *"
destinations = ["local"]
"#,
        "",
    );
    make_db(&env.dir.path().join("a.db"), 200);
    make_db(&env.dir.path().join("b.db"), 300);
    let spawn = || {
        env.cmd()
            .args(["--json", "schedule", "--once"])
            // Each process keeps its own catalog, as two hosts would.
            .arg("--catalog")
            .arg(
                env.dir
                    .path()
                    .join(format!("catalog-{}.db", rand::random::<u32>())),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (p1, p2) = (spawn(), spawn());
    let mut results = Vec::new();
    for p in [p1, p2] {
        let out = p.wait_with_output().unwrap();
        let code = out.status.code().unwrap();
        assert!(
            code == 0 || code == 6,
            "exit {code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let outcomes: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        results.extend(outcomes);
    }
    for source in ["a", "b"] {
        assert_eq!(env.manifests(source), 1, "{source}: {results:#?}");
        let successes = results
            .iter()
            .filter(|o| o["source"] == source && o["result"] == "success")
            .count();
        assert_eq!(successes, 1, "{source}: {results:#?}");
    }
    // Run again: nothing is due any more.
    let out = env.cmd().args(["schedule", "--once"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "nothing due");
    assert_eq!(env.manifests("a"), 1);
}

/// Spawn `schedule --once` on a source reading a pipe nobody writes: it takes the lease
/// and holds (and renews) it. Returns the process once its lease object exists.
fn lease_holder(env: &Env) -> std::process::Child {
    let holder = env
        .cmd()
        .args(["schedule", "--once"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let leases = env.repo.join("_leases").join("stream");
    wait_for("the lease", Duration::from_secs(20), || {
        !files_under(&leases).is_empty()
    });
    holder
}

/// Run `schedule --once` while a thread feeds the pipe 3 MiB; the run's output.
fn run_feeding(env: &Env, pipe: &Path) -> std::process::Output {
    let writer = {
        let pipe = pipe.to_path_buf();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(&pipe).unwrap();
            let _ = f.write_all(&vec![7u8; 3 << 20]);
        })
    };
    let out = env.cmd().args(["schedule", "--once"]).output().unwrap();
    if !writer.is_finished() {
        // The run never read the pipe (it failed first): open the other end so the
        // writer is released and the caller's assertion reports why.
        let pipe = pipe.to_path_buf();
        std::thread::spawn(move || drop(std::fs::File::open(&pipe)));
    }
    let _ = writer.join();
    out
}

const STREAM: &str = r#"
[sources.stream]
kind = "file"
path = "DIR/pipe"
schedule = "0 3 * * *"
destinations = ["local"]
"#;

#[test]
fn a_lease_holder_not_known_dead_is_taken_over_after_its_expiry() {
    let env = Env::new(STREAM, "lease-ttl = \"6s\"");
    let pipe = env.dir.path().join("pipe");
    mkfifo(&pipe);
    let mut holder = lease_holder(&env);
    // Renewed at least once (every 2 s with a 6 s lease), so the lease outlives the
    // holder by at least 4 s.
    std::thread::sleep(Duration::from_millis(2500));
    holder.kill().unwrap(); // SIGKILL: no release, no cleanup
    holder.wait().unwrap();
    let killed_at = Instant::now();
    // As a holder on another machine (or an older version) writes it: nothing tells
    // this host that the holder died.
    let leases = env.repo.join("_leases").join("stream");
    for f in files_under(&leases) {
        let mut rec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        rec.as_object_mut().unwrap().remove("process");
        std::fs::write(&f, serde_json::to_vec(&rec).unwrap()).unwrap();
    }

    // Within the lease's lifetime another run is refused, naming the holder.
    let out = env.cmd().args(["schedule", "--once"]).output().unwrap();
    assert!(
        killed_at.elapsed() < Duration::from_secs(4),
        "the second run took too long to prove anything"
    );
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is locked by"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // After its expiry the lease is taken over, with no unlock step.
    std::thread::sleep(
        (killed_at + Duration::from_millis(6500)).saturating_duration_since(Instant::now()),
    );
    let out = run_feeding(&env, &pipe);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.manifests("stream"), 1);
}

#[test]
fn a_lease_holder_killed_on_this_machine_is_taken_over_at_once() {
    // An hour-long lease: a run that waited for its expiry would be refused.
    let env = Env::new(STREAM, "lease-ttl = \"1h\"");
    let pipe = env.dir.path().join("pipe");
    mkfifo(&pipe);
    let mut holder = lease_holder(&env);
    holder.kill().unwrap(); // SIGKILL: no release, no cleanup
    holder.wait().unwrap();
    let out = run_feeding(&env, &pipe);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.manifests("stream"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_in_the_middle_of_an_upload_leaves_nothing_half_committed() {
    let s3 = moto::client().await;
    let bucket = moto::bucket_name("term");
    moto::create_bucket(&s3, &bucket).await;
    let env = Env::new(
        &format!(
            r#"
[repositories.s3]
{}

[sources.stream]
kind = "file"
path = "DIR/pipe"
schedule = "0 3 * * *"
destinations = ["local", "s3"]
"#,
            s3_repo(&moto::endpoint(), &bucket)
        ),
        "grace-period = \"1s\"",
    );
    let pipe = env.dir.path().join("pipe");
    mkfifo(&pipe);
    // Never backed up: the daemon starts the run at once.
    let mut daemon = env
        .cmd()
        .arg("schedule")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Feed more than one part, then keep the pipe open: the upload is under way.
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let writer = {
        let pipe = pipe.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(&pipe).unwrap();
            let chunk: Vec<u8> = (0..(1u32 << 20))
                .map(|i| i.wrapping_mul(2654435761) as u8)
                .collect();
            for _ in 0..12 {
                if f.write_all(&chunk).is_err() {
                    return;
                }
            }
            let _ = stop_rx.recv_timeout(Duration::from_secs(60));
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while moto::open_uploads(&s3, &bucket).await == 0 {
        assert!(Instant::now() < deadline, "the S3 upload never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&daemon, "-TERM");
    let status = wait_exit(&mut daemon, Duration::from_secs(30));
    let _ = stop_tx.send(());
    writer.join().unwrap();
    let err = stderr_of(daemon);
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("grace period over"), "{err}");
    // Nothing committed, nothing visible, no upload left open.
    assert_eq!(env.manifests("stream"), 0);
    assert!(
        !moto::keys(&s3, &bucket)
            .await
            .iter()
            .any(|k| k.ends_with("manifest.json") || k.ends_with("/data"))
    );
    assert_eq!(moto::open_uploads(&s3, &bucket).await, 0);
    assert!(env.list().is_empty());
}

/// GET /metrics over a plain socket (no proxy), parsed with prometheus-parse.
fn scrape(port: u16) -> prometheus_parse::Scrape {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| {
            x.metric == name
                && labels
                    .iter()
                    .all(|(k, v)| x.labels.get(k).is_some_and(|l| l == *v))
        })
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_daemon_runs_the_matrix_prunes_and_serves_metrics() {
    let server = redis::Server::start();
    server.fill(0, "k:", 300, None);
    let env = Env::new(
        &format!(
            r#"
[sources.app]
kind = "sqlite"
path = "DIR/app.db"
schedule = "*/2 * * * * *"
rpo = "1h"
destinations = ["local"]
retention = {{ keep-last = 2 }}

[sources.cache]
kind = "redis"
url = "{}"
schedule = "*/3 * * * * *"
rpo = "1h"
destinations = ["local"]
retention = {{ keep-last = 1 }}
"#,
            server.url()
        ),
        "max-concurrent = 2",
    );
    make_db(&env.dir.path().join("app.db"), 500);
    // Prune keeps every backup until one is verified: verify a first one of each.
    for source in ["app", "cache"] {
        let out = env.cmd().args(["backup", source]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        env.cmd()
            .args(["verify", "--all"])
            .status()
            .unwrap()
            .success()
    );

    let port = free_port();
    let started = chrono::Utc::now();
    let mut daemon = env
        .cmd()
        .args(["schedule", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let several runs of each happen.
    std::thread::sleep(Duration::from_secs(10));
    let m = scrape(port);
    signal(&daemon, "-TERM");
    let status = wait_exit(&mut daemon, Duration::from_secs(30));
    let err = stderr_of(daemon);
    assert!(status.success(), "{status}: {err}");

    assert_eq!(value(&m, "lifeboat_scheduler_up", &[]), Some(1.0));
    let successes = |s: &str| {
        value(
            &m,
            "lifeboat_backup_attempts_total",
            &[("source", s), ("result", "success")],
        )
        .unwrap_or(0.0)
    };
    assert!(successes("app") >= 3.0, "app: {}\n{err}", successes("app"));
    assert!(
        successes("cache") >= 2.0,
        "cache: {}\n{err}",
        successes("cache")
    );
    for (s, interval) in [("app", 2.0), ("cache", 3.0)] {
        assert_eq!(
            value(
                &m,
                "lifeboat_backup_schedule_interval_seconds",
                &[("source", s)]
            ),
            Some(interval)
        );
        assert_eq!(
            value(&m, "lifeboat_backup_rpo_target_seconds", &[("source", s)]),
            Some(3600.0)
        );
        assert_eq!(
            value(&m, "lifeboat_backup_rpo_breached", &[("source", s)]),
            Some(0.0)
        );
        let last = value(
            &m,
            "lifeboat_backup_last_success_timestamp_seconds",
            &[("source", s)],
        )
        .unwrap();
        assert!(
            last >= started.timestamp() as f64,
            "{s}: last success {last}"
        );
    }
    assert!(value(&m, "lifeboat_backup_last_bytes", &[("source", "app")]).unwrap() > 0.0);

    // Pruned after each backup: the newest `keep-last`, plus the verified one.
    let rows = env.list();
    let count = |s: &str| rows.iter().filter(|r| r["source"] == s).count();
    assert_eq!(count("app"), 3, "{rows:#?}");
    assert_eq!(count("cache"), 2, "{rows:#?}");
    assert!(
        rows.iter()
            .any(|r| r["source"] == "app" && r["verified"] == true)
    );
}

#[test]
fn sighup_refuses_an_invalid_policy_set_and_switches_to_a_valid_one() {
    let env = Env::new(
        r#"
[sources.a]
kind = "sqlite"
path = "DIR/a.db"
schedule = "0 3 * * *"
destinations = ["local"]
"#,
        "",
    );
    make_db(&env.dir.path().join("a.db"), 10);
    make_db(&env.dir.path().join("b.db"), 20);
    let policy = env.policies.join("lifeboat.toml");
    let good = std::fs::read_to_string(&policy).unwrap();
    let mut daemon = env
        .cmd()
        .arg("schedule")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Never backed up: `a` runs at start.
    wait_for("the first backup of a", Duration::from_secs(30), || {
        env.manifests("a") == 1
    });
    // A broken set is refused and the daemon goes on with the old one.
    std::fs::write(&policy, format!("{good}\n[sources.b]\nkind = \"sqlite\"\n")).unwrap();
    signal(&daemon, "-HUP");
    std::thread::sleep(Duration::from_secs(1));
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon stopped");
    // A valid set with a new source on a seconds schedule: it starts running.
    std::fs::write(
        &policy,
        format!(
            "{good}\n[sources.b]\nkind = \"sqlite\"\npath = \"{}\"\nschedule = \"*/2 * * * * *\"\ndestinations = [\"local\"]\n",
            env.dir.path().join("b.db").display()
        ),
    )
    .unwrap();
    signal(&daemon, "-HUP");
    wait_for(
        "a backup of the new source",
        Duration::from_secs(30),
        || env.manifests("b") >= 1,
    );
    signal(&daemon, "-TERM");
    let status = wait_exit(&mut daemon, Duration::from_secs(30));
    let err = stderr_of(daemon);
    assert!(status.success(), "{err}");
    assert!(err.contains("reload refused"), "{err}");
    assert!(err.contains("sources.b.path: missing"), "{err}");
    assert_eq!(env.manifests("a"), 1);
}

#[test]
fn a_policy_set_without_any_schedule_is_refused() {
    let env = Env::new(
        r#"
[sources.a]
kind = "sqlite"
path = "DIR/a.db"
destinations = ["local"]
"#,
        "",
    );
    for args in [&["schedule", "--once"][..], &["schedule"][..]] {
        let out = env.cmd().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("has a schedule"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn an_unreachable_first_repository_moves_the_lease_to_the_next() {
    let env = Env::new(
        r#"
[repositories.broken]
url = "file:///dev/null/repository"

[sources.a]
kind = "sqlite"
path = "DIR/a.db"
schedule = "0 3 * * *"
destinations = ["broken", "local"]
"#,
        "",
    );
    make_db(&env.dir.path().join("a.db"), 10);
    let out = env.cmd().args(["schedule", "--once"]).output().unwrap();
    // Committed on `local` only: a partial run.
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.manifests("a"), 1);
    assert!(!files_under(&env.repo.join("_leases").join("a")).is_empty());
}
