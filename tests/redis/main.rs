//! Black-box tests of the redis engine: real `redis-server` processes, the real
//! `redis-cli`, the real binary, local repositories and S3 (moto, started by
//! scripts/test.sh).

#[path = "../support/moto.rs"]
mod moto;
#[path = "../support/redis.rs"]
mod redis_server;
#[path = "../support/util.rs"]
mod util;

mod common;

use common::*;
use redis_server::{Options, Server};
use serde_json::Value;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn source<'a>(
    name: &'a str,
    server: &Server,
    extra: &str,
    destinations: &'a [&'a str],
) -> Source<'a> {
    Source {
        name,
        url: server.url(),
        extra: extra.to_string(),
        destinations,
    }
}

/// Files in a restore target other than the RDB (staging copies left behind).
fn leftovers(dir: &Path) -> Vec<std::path::PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.file_name().unwrap() != "dump.rdb")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_server_is_backed_up_to_local_and_s3_restored_and_compared() {
    let server = Server::start();
    server.fill(0, "k:", 500, None);
    server.fill(0, "t:", 50, Some(3600));
    server.fill_types(0);
    server.fill(1, "one:", 20, None);
    server.fill(3, "three:", 7, Some(3600));
    server.fill_types(3);
    let s3 = moto::client().await;
    let bucket = moto::bucket_name("redis");
    moto::create_bucket(&s3, &bucket).await;
    let local = tempfile::tempdir().unwrap();
    let env = env(
        &[
            ("local", local_repo(local.path())),
            ("s3", s3_repo(&moto::endpoint(), &bucket)),
        ],
        &[source("cache", &server, "", &["local", "s3"])],
    );

    let report = env.backup("cache");
    let expected = server.keyspace();
    assert_eq!(
        counts(&report),
        expected,
        "counts from the RDB equal the server's"
    );
    assert_eq!(expected["keys.db0"], 560);
    assert_eq!(expected["expires.db3"], 7);
    let rows = env.list();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        files_under(&env.spool()).is_empty(),
        "the spool file is removed"
    );

    for repo in ["local", "s3"] {
        let target = env.dir.path().join(format!("restored-{repo}"));
        let out = env
            .cmd()
            .args(["--json", "restore", "cache", "--from", repo, "--to"])
            .arg(&target)
            .output()
            .unwrap();
        assert!(out.status.success(), "{repo}: {}", stderr(&out));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["swapped"], true);
        assert!(target.join("dump.rdb").is_file());
        assert!(leftovers(&target).is_empty(), "{:?}", leftovers(&target));
    }

    let target = env.dir.path().join("restored-local");
    let out = env
        .cmd()
        .args(["compare", "cache", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // The restored data loses one key: compare names the database and both numbers.
    let n = expected["keys.db0"];
    let restored = Server::start_with(Options {
        dir: Some(target.clone()),
        ..Options::default()
    });
    assert_eq!(restored.dbsize(0), n);
    restored.cmd(0, &["DEL", "k:0"]);
    restored.save_and_stop();
    let out = env
        .cmd()
        .args(["compare", "cache", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let want = format!("keys.db0: expected {n}, actual {}", n - 1);
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));

    // A second restore into the same folder needs --force.
    let out = env
        .cmd()
        .args(["restore", "cache", "--from", "local", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
}

#[test]
fn the_counts_describe_exactly_the_snapshot_while_a_writer_adds_keys() {
    // A one-second delay before the fork keeps the writer busy during the backup.
    let server = Server::start_with(Options {
        diskless_delay: 1,
        ..Options::default()
    });
    server.fill(0, "base:", 2000, None);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut c = server.conn();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                c.cmd(&["SET", &format!("w:{i}"), "x"]);
                i += 1;
            }
            i
        })
    };
    let repo = tempfile::tempdir().unwrap();
    let env = env(
        &[("local", local_repo(repo.path()))],
        &[source("cache", &server, "", &["local"])],
    );
    std::thread::sleep(Duration::from_millis(200));
    let before = server.dbsize(0);
    let report = env.backup("cache");
    let after = server.dbsize(0);
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    let in_backup = counts(&report)["keys.db0"];
    assert!(
        before < in_backup && in_backup < after,
        "the snapshot is one instant during the run: {before} < {in_backup} < {after} ({written} writes)"
    );

    // The uploaded RDB holds exactly the counted keys: restore it and load it in a
    // server of our own.
    let target = env.dir.path().join("restored");
    env.cmd()
        .args(["restore", "cache", "--to"])
        .arg(&target)
        .assert()
        .success();
    let loaded = Server::start_with(Options {
        dir: Some(target),
        ..Options::default()
    });
    assert_eq!(loaded.dbsize(0), in_backup);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_rdb_with_one_flipped_byte_is_rejected_before_upload() {
    let server = Server::start();
    server.fill(0, "k:", 300, None);
    server.fill_types(2);
    server.conn().cmd(&["SAVE"]);
    let work = tempfile::tempdir().unwrap();
    let bad = work.path().join("flipped.rdb");
    let good = server.rdb_path("dump.rdb");
    let len = std::fs::metadata(&good).unwrap().len() as usize;
    redis_server::copy_flipped(&good, &bad, len / 2);
    // A stand-in for redis-cli: whatever it is asked, it writes the damaged RDB to
    // stdout and reports success, as redis-cli does after a transfer.
    let stand_in = work.path().join("redis-cli-stand-in");
    std::fs::write(
        &stand_in,
        format!(
            "#!/bin/sh\ncat '{}'\necho 'Transfer finished with success.' >&2\n",
            bad.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();

    let s3 = moto::client().await;
    let bucket = moto::bucket_name("redisbad");
    moto::create_bucket(&s3, &bucket).await;
    let local = tempfile::tempdir().unwrap();
    let env = env(
        &[
            ("local", local_repo(local.path())),
            ("s3", s3_repo(&moto::endpoint(), &bucket)),
        ],
        &[source(
            "cache",
            &server,
            &format!("redis-cli = \"{}\"", stand_in.display()),
            &["local", "s3"],
        )],
    );
    let out = env.cmd().args(["backup", "cache"]).output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("refusing to upload"), "{err}");
    assert!(
        err.contains("checksum mismatch") || err.contains("corrupt"),
        "{err}"
    );
    assert!(
        files_under(local.path()).is_empty(),
        "{:?}",
        files_under(local.path())
    );
    assert!(moto::keys(&s3, &bucket).await.is_empty());
    assert_eq!(moto::open_uploads(&s3, &bucket).await, 0);
    assert!(env.list().is_empty());
    assert!(
        files_under(&env.spool()).is_empty(),
        "the spool file is removed"
    );

    // The same stand-in fed the sound file is accepted: the flip was the only fault.
    std::fs::copy(&good, &bad).unwrap();
    env.backup("cache");
}

/// Every process's command line, NUL separators as spaces.
fn command_lines() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let mut s = Vec::new();
        if let Ok(mut f) = std::fs::File::open(e.path().join("cmdline"))
            && f.read_to_end(&mut s).is_ok()
        {
            out.push((pid, String::from_utf8_lossy(&s).replace('\0', " ")));
        }
    }
    out
}

#[test]
fn the_password_is_never_on_a_command_line_nor_in_output() {
    let password = format!("pw-{:016x}", rand::random::<u64>());
    // Two seconds before the fork keep redis-cli running long enough to be seen.
    let server = Server::start_with(Options {
        password: Some(password.clone()),
        diskless_delay: 2,
        ..Options::default()
    });
    server.fill(0, "k:", 100, None);
    let repo = tempfile::tempdir().unwrap();
    let env = env(
        &[("local", local_repo(repo.path()))],
        &[source(
            "cache",
            &server,
            "password-env = \"LB_TEST_REDIS_PASSWORD\"",
            &["local"],
        )],
    );
    let out_path = env.dir.path().join("backup.out");
    let err_path = env.dir.path().join("backup.err");
    let mut child = env
        .std_cmd()
        .args(["-vv", "backup", "cache"])
        .env("LB_TEST_REDIS_PASSWORD", &password)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let mut saw_cli = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        for (pid, line) in command_lines() {
            assert!(
                !line.contains(&password),
                "process {pid} has the password on its command line: {line}"
            );
            if line.contains("--rdb") && line.contains(&server.port.to_string()) {
                saw_cli = true;
            }
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "backup did not finish");
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut outputs = vec![
        std::fs::read_to_string(&out_path).unwrap(),
        std::fs::read_to_string(&err_path).unwrap(),
    ];
    assert!(status.success(), "{}", outputs[1]);
    assert!(saw_cli, "the redis-cli child was seen running");
    assert!(outputs[1].contains("DEBUG"), "verbose output expected");

    let mut run = |args: &[&str]| {
        let out = env
            .cmd()
            .args(args)
            .env("LB_TEST_REDIS_PASSWORD", &password)
            .output()
            .unwrap();
        outputs.push(format!("{}{}", stdout(&out), stderr(&out)));
        out.status
    };
    let target = env.dir.path().join("restored");
    assert!(run(&["-vv", "restore", "cache", "--to", target.to_str().unwrap()]).success());
    assert!(run(&["-vv", "compare", "cache", "--to", target.to_str().unwrap()]).success());
    assert!(
        run(&["-vv", "--json", "doctor"]).success(),
        "{}",
        outputs.last().unwrap()
    );
    // Without the password, the error says what to set, and still shows no secret.
    let out = env
        .cmd()
        .args(["-vv", "backup", "cache"])
        .env("LB_TEST_REDIS_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("password"), "{}", stderr(&out));
    outputs.push(stderr(&out));
    for o in &outputs {
        assert!(!o.contains(&password), "the password leaked: {o}");
    }
    for f in files_under(repo.path()) {
        if f.file_name().unwrap() == "manifest.json" {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(!text.contains(&password), "{}", f.display());
        }
    }
}

#[test]
fn a_tolerance_accepts_a_few_expired_keys_where_exact_counts_refuse() {
    let server = Server::start();
    server.fill(0, "k:", 200, None);
    server.fill(0, "long:", 40, Some(3600));
    server.fill(0, "short:", 3, Some(6));
    let repo = tempfile::tempdir().unwrap();
    let env = env(
        &[("local", local_repo(repo.path()))],
        &[
            source(
                "tolerant",
                &server,
                "tolerance = { keys = \"10%\" }",
                &["local"],
            ),
            source("exact", &server, "", &["local"]),
        ],
    );
    let t = counts(&env.backup("tolerant"));
    let e = counts(&env.backup("exact"));
    assert_eq!((t["keys.db0"], t["expires.db0"]), (243, 43));
    assert_eq!(e, t);
    // Wait for the short TTLs to pass.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.dbsize(0) > 240 {
        assert!(Instant::now() < deadline, "keys did not expire");
        std::thread::sleep(Duration::from_millis(100));
    }

    let refused = env.dir.path().join("exact");
    let out = env
        .cmd()
        .args(["restore", "exact", "--to"])
        .arg(&refused)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("keys.db0: expected 243, actual 240"),
        "{}",
        stderr(&out)
    );
    assert!(
        !refused.join("dump.rdb").exists(),
        "the target is left untouched"
    );
    assert!(files_under(&refused).is_empty(), "no staging copy is left");

    let accepted = env.dir.path().join("tolerant");
    let out = env
        .cmd()
        .args(["restore", "tolerant", "--to"])
        .arg(&accepted)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(accepted.join("dump.rdb").is_file());
    env.cmd()
        .args(["compare", "tolerant", "--to"])
        .arg(&accepted)
        .assert()
        .success();
    let out = env
        .cmd()
        .args(["compare", "exact", "--to"])
        .arg(&accepted)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("keys.db0: expected 243, actual 240"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bgsave_mode_reads_the_file_the_server_just_saved() {
    let server = Server::start();
    server.fill(0, "k:", 120, None);
    server.fill(4, "four:", 9, Some(3600));
    let repo = tempfile::tempdir().unwrap();
    // A copy that no save rewrites: the backup must notice it is stale.
    let stale = repo.path().join("stale.rdb");
    server.conn().cmd(&["SAVE"]);
    std::fs::copy(server.rdb_path("dump.rdb"), &stale).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    server.fill(0, "later:", 5, None);

    let env = env(
        &[("local", local_repo(&repo.path().join("repo")))],
        &[
            source(
                "saved",
                &server,
                &format!(
                    "mode = \"bgsave\"\nrdb-path = \"{}\"",
                    server.rdb_path("dump.rdb").display()
                ),
                &["local"],
            ),
            source(
                "stale",
                &server,
                &format!("mode = \"bgsave\"\nrdb-path = \"{}\"", stale.display()),
                &["local"],
            ),
        ],
    );
    let report = env.backup("saved");
    assert_eq!(counts(&report), server.keyspace());
    assert_eq!(counts(&report)["keys.db0"], 125);

    let out = env.cmd().args(["backup", "stale"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not rewritten by the BGSAVE"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_restart_command_brings_up_the_server_that_check_url_counts() {
    let server = Server::start();
    server.fill(0, "k:", 50, None);
    server.fill(2, "two:", 5, None);
    let repo = tempfile::tempdir().unwrap();
    let target = repo.path().join("live");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // The "restart": start a server on the restored folder, as a service manager would.
    let restart = format!(
        "restore = {{ restart = [\"redis-server\", \"--port\", \"{port}\", \"--bind\", \"127.0.0.1\", \"--dir\", \"{}\", \"--save\", \"\", \"--appendonly\", \"no\", \"--daemonize\", \"yes\", \"--pidfile\", \"{}\"], check-url = \"redis://127.0.0.1:{port}\" }}",
        target.display(),
        repo.path().join("live.pid").display()
    );
    let env = env(
        &[("local", local_repo(&repo.path().join("repo")))],
        &[source("cache", &server, &restart, &["local"])],
    );
    env.backup("cache");
    let out = env
        .cmd()
        .args(["--json", "restore", "cache", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    // Whatever happened, stop the restarted server.
    let stop = || {
        if let Ok(mut c) = redis_server::Conn::connect(port) {
            let _ = c.try_cmd(&["SHUTDOWN", "NOSAVE"]);
        }
    };
    if !out.status.success() {
        stop();
        panic!("{}", stderr(&out));
    }
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["swapped"], true);
    let checks = r["counts"]["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 4, "{checks:?}");
    // compare counts the server at check-url.
    let out = env
        .cmd()
        .args(["compare", "cache", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    let mut c = redis_server::Conn::connect(port).unwrap();
    c.cmd(&["SELECT", "2"]);
    c.cmd(&["DEL", "two:0"]);
    let after = env
        .cmd()
        .args(["compare", "cache", "--to"])
        .arg(&target)
        .output()
        .unwrap();
    stop();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(after.status.code(), Some(4));
    assert!(
        stderr(&after).contains("keys.db2: expected 5, actual 4"),
        "{}",
        stderr(&after)
    );
}

#[test]
fn a_server_saving_to_disk_without_checksums_is_backed_up_with_a_warning() {
    // The RDB is written to the server's disk before the transfer, and its trailer is zero.
    let server = Server::start_with(Options {
        extra: ["--repl-diskless-sync", "no", "--rdbchecksum", "no"]
            .map(String::from)
            .to_vec(),
        ..Options::default()
    });
    server.fill(0, "k:", 30, Some(3600));
    let repo = tempfile::tempdir().unwrap();
    let env = env(
        &[("local", local_repo(repo.path()))],
        &[source("cache", &server, "", &["local"])],
    );
    let out = env
        .cmd()
        .args(["--json", "backup", "cache"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("no checksum"), "{}", stderr(&out));
    let manifest = files_under(repo.path())
        .into_iter()
        .find(|f| f.file_name().unwrap() == "manifest.json")
        .unwrap();
    let m: Value = serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    assert_eq!(m["body"]["engine"]["checksum"], "disabled");
    assert_eq!(m["body"]["engine"]["mode"], "replication");
    assert_eq!(m["body"]["counts"]["expires.db0"], 30);
    let target = env.dir.path().join("restored");
    env.cmd()
        .args(["restore", "cache", "--to"])
        .arg(&target)
        .assert()
        .success();
}

/// A trial restore loads the RDB in a throwaway redis-server under a temporary folder,
/// compares its keyspace with the manifest, and leaves nothing in the spool folder.
#[test]
fn a_trial_restore_loads_the_backup_in_a_scratch_server() {
    let server = Server::start();
    server.fill(0, "k:", 120, None);
    server.fill(2, "two:", 9, Some(3600));
    let local = tempfile::tempdir().unwrap();
    let env = env(
        &[("local", local_repo(local.path()))],
        &[source(
            "cache",
            &server,
            "verify = { restore-test = true }",
            &["local"],
        )],
    );
    env.backup("cache");
    let out = env
        .cmd()
        .args(["--json", "verify", "--restore", "--source", "cache"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &v["restore-tests"][0];
    assert_eq!(t["ok"], true, "{t:#}");
    assert_eq!(t["target"], "a temporary folder");
    let names: Vec<&str> = t["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"keys.db0") && names.contains(&"keys.db2"),
        "{names:?}"
    );
    assert!(
        files_under(&env.spool()).is_empty(),
        "scratch folder left: {:?}",
        files_under(&env.spool())
    );
}

/// A stand-in restart command: records its arguments as one line in `calls` (and
/// `LIFEBOAT_RESTORE_PURPOSE`, which only a faiss `post-restore` is given).
fn standin_restart(dir: &Path, calls: &Path) -> std::path::PathBuf {
    let path = dir.join("restart-redis");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nprintf '%s|%s\\n' \"$*\" \"$LIFEBOAT_RESTORE_PURPOSE\" >> {}\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_drill_or_trial_restore_never_runs_the_sources_restart() {
    let server = Server::start();
    server.fill(0, "k:", 20, None);
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("restart.calls");
    let restart = standin_restart(dir.path(), &calls);
    let target = dir.path().join("redis-data");
    let env = env(
        &[("local", local_repo(&dir.path().join("repo")))],
        &[source(
            "cache",
            &server,
            &format!(
                "verify = {{ restore-test = true }}\nrestore = {{ restart = [\"{}\", \"production\"] }}",
                restart.display()
            ),
            &["local"],
        )],
    );
    std::fs::create_dir_all(env.policies.join("dr")).unwrap();
    std::fs::write(
        env.policies.join("dr").join("cache-dr.toml"),
        format!(
            "name = \"cache-dr\"\nrto = \"10m\"\nrpo = \"1d\"\n\n[[steps]]\nid = \"restore-cache\"\nkind = \"restore\"\nsource = \"cache\"\ntarget = \"{}\"\n",
            target.display()
        ),
    )
    .unwrap();
    env.backup("cache");
    let recorded = || std::fs::read_to_string(&calls).unwrap_or_default();
    let out = env
        .cmd()
        .args(["--json", "dr", "drill", "cache-dr"])
        .output()
        .unwrap();
    assert!(out.status.success(), "drill: {}", stderr(&out));
    assert_eq!(recorded(), "", "the drill restarted production");
    let out = env
        .cmd()
        .args(["--json", "verify", "--restore", "--source", "cache"])
        .output()
        .unwrap();
    assert!(out.status.success(), "trial: {}", stderr(&out));
    assert_eq!(recorded(), "", "the trial restore restarted production");
    let out = env
        .cmd()
        .args(["--json", "dr", "run", "cache-dr"])
        .output()
        .unwrap();
    assert!(out.status.success(), "run: {}", stderr(&out));
    assert_eq!(recorded(), "production|\n");
}

/// Whether process `pid` runs (Linux).
fn running(pid: &str) -> bool {
    Path::new("/proc").join(pid.trim()).exists()
}

/// A DR restore step past its timeout is stopped, not abandoned: its throwaway
/// redis-server (here a stand-in that hangs until released, then runs the real one) is
/// killed, and nothing swaps the backup in after the run reported the step failed.
#[test]
fn a_timed_out_dr_restore_is_stopped_and_never_swaps_its_copy_in_later() {
    let server = Server::start();
    server.fill(0, "k:", 20, None);
    let dir = tempfile::tempdir().unwrap();
    let (pid_file, release) = (dir.path().join("standin.pid"), dir.path().join("release"));
    let standin = dir.path().join("redis-server");
    std::fs::write(
        &standin,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then exec redis-server --version; fi\necho $$ > {pid}\nwhile [ ! -e {release} ]; do sleep 0.05; done\nexec redis-server \"$@\"\n",
            pid = pid_file.display(),
            release = release.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&standin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let target = dir.path().join("redis-data");
    let env = env(
        &[("local", local_repo(&dir.path().join("repo")))],
        &[source(
            "cache",
            &server,
            &format!("redis-server = \"{}\"", standin.display()),
            &["local"],
        )],
    );
    std::fs::create_dir_all(env.policies.join("dr")).unwrap();
    std::fs::write(
        env.policies.join("dr").join("slow.toml"),
        format!(
            "name = \"slow\"\nrto = \"10m\"\nrpo = \"1d\"\n\n[[steps]]\nid = \"restore-cache\"\nkind = \"restore\"\nsource = \"cache\"\ntarget = \"{}\"\ntimeout = \"2s\"\n",
            target.display()
        ),
    )
    .unwrap();
    env.backup("cache");
    let mut run = env
        .std_cmd()
        .args(["dr", "run", "slow"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the run has recorded its outcome.
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        let out = env.cmd().args(["--json", "dr", "status"]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let s = v["status"].as_str().unwrap_or("").to_string();
        if s != "running" && !s.is_empty() {
            break v;
        }
        assert!(Instant::now() < deadline, "the run never finished: {v:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["status"], "failed", "{status:#}");
    let standin_pid = std::fs::read_to_string(&pid_file).expect("the restore started its server");
    // From here on nothing may touch the target: let a surviving attempt go on.
    std::fs::write(&release, b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let exited = loop {
        if let Some(s) = run.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let alive = running(&standin_pid);
    if alive {
        let _ = std::process::Command::new("kill")
            .arg(standin_pid.trim())
            .status();
    }
    if exited.is_none() {
        let _ = run.kill();
        let _ = run.wait();
    }
    assert!(exited.is_some(), "dr run did not exit");
    assert!(
        !alive,
        "the timed-out attempt's redis-server was left running"
    );
    assert!(
        !target.join("dump.rdb").exists(),
        "the timed-out attempt swapped its copy in after the run failed"
    );
    assert_eq!(leftovers(&target), Vec::<std::path::PathBuf>::new());
}
