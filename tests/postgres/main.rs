//! The postgres engine against a real PostgreSQL server (scripts/peers/postgres.sh), with
//! a local repository and S3 (moto).

#[path = "../cloud/common.rs"]
#[allow(dead_code)]
mod common;
#[path = "../support/moto.rs"]
mod moto;
#[path = "../support/postgres.rs"]
mod pg;
#[path = "../support/util.rs"]
mod util;

// The shared policy helpers refer to Azurite's constants.
#[path = "../support/azurite.rs"]
mod azurite;

use assert_cmd::Command;
use serde_json::Value;
use std::path::PathBuf;

struct Env {
    dir: tempfile::TempDir,
    policies: PathBuf,
}

/// A policy set with source `db` (postgres `db_url`) -> local + s3.
async fn env(db: &str, extra: &str) -> Env {
    let s3 = moto::client().await;
    let bucket = moto::bucket_name("pg");
    moto::create_bucket(&s3, &bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let text = format!(
        "[repositories.local]\n{}\n\n[repositories.s3]\n{}\n\n[sources.db]\nkind = \"postgres\"\nurl = \"{}\"\npassword-env = \"LIFEBOAT_TEST_PG_PASSWORD\"\nssl-root-cert = \"{}\"\ndestinations = [\"local\", \"s3\"]\n{extra}\n",
        common::local_repo(&dir.path().join("repo")),
        common::s3_repo(&moto::endpoint(), &bucket),
        pg::url(db),
        pg::ca(),
    );
    std::fs::write(policies.join("lifeboat.toml"), text).unwrap();
    Env { dir, policies }
}

impl Env {
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("lifeboat").unwrap();
        c.arg("--policies")
            .arg(&self.policies)
            .env_remove("PGPASSWORD")
            .env("LIFEBOAT_SPOOL_DIR", self.dir.path().join("spool"));
        c
    }
}

fn manifest_counts(env: &Env) -> Value {
    let out = env.cmd().args(["--json", "list"]).output().unwrap();
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows[0]["counts"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_restore_from_each_repository_and_compare() {
    let db = pg::db_name("chain");
    pg::create_db(&db, 300, 2000).await;
    let env = env(&db, "freshness = \"SELECT MAX(created_at) FROM tasks\"").await;
    let out = env.cmd().args(["--json", "backup", "db"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let b = &report["backups"][0];
    assert_eq!(b["counts"]["rows.users"], 300);
    assert_eq!(b["counts"]["rows.tasks"], 2000);
    assert_eq!(b["counts"]["rows.audit.poi_records"], 7);
    // The freshness value is the consistency point: MAX(created_at) of tasks.
    assert_eq!(b["consistency-point"], "2026-11-01T00:33:20Z");

    for repo in ["local", "s3"] {
        let restored = format!("{db}_{repo}");
        let target = pg::url(&restored);
        let out = env
            .cmd()
            .args(["restore", "db", "--from", repo, "--to", &target])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{repo}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(pg::count(&restored, "tasks").await, 2000);
        assert_eq!(pg::count(&restored, "audit.poi_records").await, 7);
        env.cmd()
            .args(["compare", "db", "--to", &target])
            .assert()
            .success();
    }

    // A row removed from the restored database: compare names the table.
    let restored = format!("{db}_s3");
    pg::connect(&restored)
        .await
        .batch_execute("DELETE FROM tasks WHERE id = 42")
        .await
        .unwrap();
    let out = env
        .cmd()
        .args(["compare", "db", "--to", &pg::url(&restored)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rows.tasks: expected 2000, actual 1999"),
        "{err}"
    );

    // A target with tables is refused without --force, and replaced with it.
    let out = env
        .cmd()
        .args(["restore", "db", "--to", &pg::url(&restored)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    env.cmd()
        .args(["restore", "db", "--force", "--to", &pg::url(&restored)])
        .assert()
        .success();
    assert_eq!(pg::count(&restored, "tasks").await, 2000);
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_come_from_the_dumped_snapshot_while_a_writer_inserts() {
    let db = pg::db_name("writer");
    pg::create_db(&db, 100, 200_000).await;
    let env = env(&db, "").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        tokio::spawn(async move {
            let c = pg::connect(&db).await;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.execute("INSERT INTO tasks (user_id, title) VALUES (1, 'live')", &[])
                    .await
                    .unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let at_start = pg::count(&db, "tasks").await;
    let e = env.cmd().args(["backup", "db"]).output().unwrap();
    let at_end = pg::count(&db, "tasks").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    let in_manifest = manifest_counts(&env)["rows.tasks"].as_i64().unwrap();
    assert!(
        at_start < in_manifest && in_manifest < at_end,
        "expected start {at_start} < manifest {in_manifest} < end {at_end}"
    );
    let restored = format!("{db}_r");
    env.cmd()
        .args(["restore", "db", "--to", &pg::url(&restored)])
        .assert()
        .success();
    assert_eq!(pg::count(&restored, "tasks").await, in_manifest);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_is_on_no_command_line_and_in_no_output() {
    let db = pg::db_name("secret");
    pg::create_db(&db, 10, 300_000).await;
    let env = env(&db, "").await;
    let password = pg::password();
    // Output goes to files: pipes left unread would stall a verbose child.
    let out_path = env.dir.path().join("out.log");
    let err_path = env.dir.path().join("err.log");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("lifeboat"))
        .arg("--policies")
        .arg(&env.policies)
        .args(["-vv", "backup", "db"])
        .env_remove("PGPASSWORD")
        .env("LIFEBOAT_SPOOL_DIR", env.dir.path().join("spool"))
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    // Watch every process's command line while the backup runs.
    let mut saw_pg_dump = false;
    let started = std::time::Instant::now();
    let status = loop {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                assert!(
                    !text.contains(&password),
                    "the password is on a command line: {text}"
                );
                saw_pg_dump |= text.contains("pg_dump") && text.contains("--snapshot=");
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "the backup did not finish"
        );
    };
    let (out, err) = (
        std::fs::read_to_string(&out_path).unwrap(),
        std::fs::read_to_string(&err_path).unwrap(),
    );
    assert!(status.success(), "{err}");
    assert!(
        saw_pg_dump,
        "pg_dump was never seen running: the check proved nothing"
    );
    assert!(err.contains("DEBUG"), "expected verbose output");
    for o in [&out, &err] {
        assert!(!o.contains(&password));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_checks_the_server_and_the_client_tools() {
    let db = pg::db_name("doc");
    pg::create_db(&db, 1, 1).await;
    let env = env(&db, "").await;
    let out = env.cmd().args(["--json", "doctor"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let source = v["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "source db")
        .unwrap();
    let names: Vec<&str> = source["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["reachable", "pg_dump", "pg_restore"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_is_verified_against_the_configured_ca() {
    let db = pg::db_name("tls");
    pg::create_db(&db, 5, 5).await;
    let url = format!("{}?sslmode=require", pg::url(&db));
    let dir = tempfile::tempdir().unwrap();
    let write = |root_cert: &str| {
        std::fs::write(
            dir.path().join("p.toml"),
            format!(
                "[repositories.local]\nurl = \"file://{}\"\n[sources.db]\nkind = \"postgres\"\nurl = \"{url}\"\npassword-env = \"LIFEBOAT_TEST_PG_PASSWORD\"\n{root_cert}\ndestinations = [\"local\"]\n",
                dir.path().join("repo").display()
            ),
        )
        .unwrap();
    };
    let run = || {
        Command::cargo_bin("lifeboat")
            .unwrap()
            .arg("--policies")
            .arg(dir.path().join("p.toml"))
            .args(["backup", "db"])
            .env_remove("PGPASSWORD")
            .output()
            .unwrap()
    };
    // The server's certificate is signed by a CA no public root knows: refused.
    write("");
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate"), "{err}");
    // With the CA configured, TLS is verified and the backup runs (pg_dump too, with
    // sslmode=verify-full).
    write(&format!("ssl-root-cert = \"{}\"", pg::ca()));
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_can_come_from_a_pgpass_file() {
    use std::os::unix::fs::PermissionsExt;
    let db = pg::db_name("pgpass");
    pg::create_db(&db, 3, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let pgpass = dir.path().join("pgpass");
    std::fs::write(
        &pgpass,
        format!("127.0.0.1:*:{db}:lifeboat:{}\n", pg::password()),
    )
    .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        format!(
            "[repositories.local]\nurl = \"file://{}\"\n[sources.db]\nkind = \"postgres\"\nurl = \"{}\"\nssl-root-cert = \"{}\"\ndestinations = [\"local\"]\n",
            dir.path().join("repo").display(),
            pg::url(&db),
            pg::ca()
        ),
    )
    .unwrap();
    let out = Command::cargo_bin("lifeboat")
        .unwrap()
        .arg("--policies")
        .arg(dir.path().join("p.toml"))
        .args(["--json", "backup", "db"])
        .env_remove("PGPASSWORD")
        .env("PGPASSFILE", &pgpass)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backups"][0]["counts"]["rows.users"], 3);
}

/// A trial restore goes into a temporary database on the source's server, is recounted
/// against the manifest, and the temporary database is dropped afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn a_trial_restore_uses_a_temporary_database_and_drops_it() {
    let db = pg::db_name("trial");
    pg::create_db(&db, 30, 120).await;
    let env = env(&db, "verify = { restore-test = true }").await;
    env.cmd().args(["backup", "db"]).assert().success();
    let out = env
        .cmd()
        .args(["--json", "verify", "--restore", "--source", "db"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verifications"].as_array().unwrap().len(), 2, "{v:#}");
    let t = &v["restore-tests"][0];
    assert_eq!(t["ok"], true, "{t:#}");
    assert_eq!(
        t["target"],
        format!("temporary database {db}_lb_restore_test")
    );
    let counts: Vec<(String, Option<u64>, Option<u64>)> = t["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["expected"].as_u64(),
                c["actual"].as_u64(),
            )
        })
        .collect();
    assert!(
        counts.contains(&("rows.tasks".into(), Some(120), Some(120))),
        "{counts:?}"
    );
    let left: Vec<String> = pg::connect("postgres")
        .await
        .query("SELECT datname FROM pg_database", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .filter(|n: &String| n.starts_with(&db) && n != &db)
        .collect();
    assert!(left.is_empty(), "temporary databases left: {left:?}");
}

/// Databases whose name starts with `prefix`.
async fn databases_like(prefix: &str) -> Vec<String> {
    pg::connect("postgres")
        .await
        .query(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1",
            &[&prefix],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_restore_leaves_no_staging_database_after_the_next_restore() {
    let db = pg::db_name("stage");
    pg::create_db(&db, 20, 50).await;
    let env = env(&db, "").await;
    env.cmd().args(["backup", "db"]).assert().success();
    let restored = format!("{db}_r");
    let target = pg::url(&restored);
    // Killed (as by kill -9) with the staging database loaded in full.
    let out = env
        .cmd()
        .env("LIFEBOAT_FAILPOINT", "restore.before-swap")
        .args(["restore", "db", "--from", "local", "--to", &target])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let staging = format!("{restored}_lb_staging_");
    assert_eq!(databases_like(&staging).await.len(), 1);
    env.cmd()
        .args(["restore", "db", "--from", "local", "--to", &target])
        .assert()
        .success();
    assert_eq!(databases_like(&staging).await, Vec::<String>::new());
    assert_eq!(pg::count(&restored, "tasks").await, 50);
}
