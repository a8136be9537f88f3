//! `lifeboat policy check`: every mistake reported at once, naming file and field; and
//! every policy set shipped in the repository is valid.

use crate::common::*;
use assert_cmd::Command;
use std::path::Path;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_broken_policy_set_reports_one_error_per_mistake() {
    let dir = fixture("broken-policies");
    let out = Command::cargo_bin("lifeboat")
        .unwrap()
        .args(["policy", "check", &dir])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let expected = [
        (
            "a-repositories.toml",
            "repositories.local.url",
            "unsupported scheme `ftp`",
        ),
        (
            "a-repositories.toml",
            "repositories.Offsite",
            "name `Offsite` must be",
        ),
        ("b-sources.toml", "sources.app.schedule", "day-of-week"),
        ("b-sources.toml", "sources.app.rpo", "`1 fortnight`"),
        (
            "b-sources.toml",
            "sources.app.destinations[1]",
            "unknown repository `nowhere`",
        ),
        (
            "b-sources.toml",
            "sources.app.retention.keep-last",
            "expected a whole number",
        ),
        (
            "b-sources.toml",
            "sources.app.retention.keep-dayly",
            "did you mean `keep-daily`?",
        ),
        (
            "b-sources.toml",
            "sources.cache.kind",
            "unknown kind `memcached` (valid kinds: sqlite",
        ),
        ("c-syntax.toml", "line 1", "not valid TOML"),
    ];
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(".toml: ")).collect();
    assert_eq!(lines.len(), expected.len(), "{err}");
    for (file, field, problem) in expected {
        let want = format!("{}: {field}: ", Path::new(&dir).join(file).display());
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&want) && l.contains(problem)),
            "missing `{want}...{problem}` in:\n{err}"
        );
    }
}

#[test]
fn every_shipped_policy_set_is_valid_and_shows_next_runs() {
    let root = format!("{}/policies", env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let set = entry.unwrap().path();
        if !set.is_dir() {
            continue;
        }
        let out = Command::cargo_bin("lifeboat")
            .unwrap()
            .args(["--json", "policy", "check"])
            .arg(&set)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", set.display(), stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for s in v["sources"].as_array().unwrap() {
            if !s["schedule"].is_null() {
                assert_eq!(s["next-runs"].as_array().unwrap().len(), 3, "{s}");
            }
        }
        checked += 1;
    }
    assert!(
        checked >= 2,
        "expected policies/local and policies/bizra under {root}"
    );
}

#[test]
fn without_a_policy_set_the_error_says_how_to_name_one() {
    let out = Command::cargo_bin("lifeboat")
        .unwrap()
        .env_remove("LIFEBOAT_POLICIES")
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("--policies") && err.contains("LIFEBOAT_POLICIES"),
        "{err}"
    );
}

#[test]
fn next_runs_follow_crontab_weekdays() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(
        &p,
        r#"
[repositories.r]
url = "file:./r"
[sources.s]
kind = "sqlite"
path = "s.db"
schedule = "0 3 * * 1"
destinations = ["r"]
"#,
    )
    .unwrap();
    let out = Command::cargo_bin("lifeboat")
        .unwrap()
        .env("LIFEBOAT_NOW", "2026-11-22T12:00:00Z")
        .args(["--json", "policy", "check"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["sources"][0]["next-runs"],
        serde_json::json!([
            "2026-11-23 03:00:00Z",
            "2026-11-30 03:00:00Z",
            "2026-12-07 03:00:00Z"
        ])
    );
}

#[test]
fn the_runbooks_matrix_validates_without_credentials() {
    let set = format!("{}/policies/bizra", env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::cargo_bin("lifeboat").unwrap();
    // Validation does no I/O: no cloud credential and no secret is needed.
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AZURE_STORAGE_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
        "NEO4J_PASSWORD",
        "REDIS_PASSWORD",
        "PGPASSWORD_BIZRA",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .args(["--json", "policy", "check"])
        .arg(&set)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sources = v["sources"].as_array().unwrap();
    let by_name = |n: &str| {
        sources
            .iter()
            .find(|s| s["name"] == n)
            .unwrap_or_else(|| panic!("no source {n}"))
    };
    for (name, kind, schedule) in [
        ("neo4j", "neo4j", "0 * * * *"),
        ("redis", "redis", "*/5 * * * *"),
        ("faiss", "faiss", "30 2 * * *"),
        ("config", "files", "*/15 * * * *"),
        ("postgres", "postgres", "0 */3 * * *"),
        ("rds", "rds", "0 4 * * *"),
        ("hive", "sqlite", "@hourly"),
    ] {
        let s = by_name(name);
        assert_eq!(s["kind"], kind, "{name}");
        assert_eq!(s["schedule"], schedule, "{name}");
        // S3 primary first, Azure Blob secondary.
        assert_eq!(
            s["destinations"],
            serde_json::json!(["s3", "azure"]),
            "{name}"
        );
    }
    assert_eq!(by_name("hive")["timezone"], "Europe/Berlin");
    assert_eq!(sources.len(), 7);
}

/// A restore target is checked in the form its engine takes, at `policy check` time:
/// the shipped region plan once named its Neo4j database so that the run joined it
/// onto the policy folder, and only a real failover reached that step.
#[test]
fn restore_targets_in_the_wrong_form_for_their_engine_fail_policy_check() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("dr")).unwrap();
    std::fs::write(
        dir.path().join("lifeboat.toml"),
        r#"
[repositories.r]
url = "file:./r"
[sources.graph]
kind = "neo4j"
mode = "online-backup"
http-url = "http://neo4j.example:7474"
password-env = "NEO4J_PASSWORD"
destinations = ["r"]
[sources.db]
kind = "postgres"
url = "postgres://app@db.example:5432/app"
destinations = ["r"]
[sources.cache]
kind = "redis"
url = "redis://cache.example:6379"
destinations = ["r"]
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("dr/wrong.toml"),
        r#"
name = "wrong"
rto = "1h"
rpo = "6h"

[[steps]]
id = "graph-path"
kind = "restore"
source = "graph"
target = "/var/lib/neo4j/data"
drill = "skip"

[[steps]]
id = "graph-drill"
kind = "restore"
source = "graph"
target = "neo4j"

[[steps]]
id = "db-name"
kind = "restore"
source = "db"
target = "app_dr"

[[steps]]
id = "cache-url"
kind = "restore"
source = "cache"
target = "redis://cache-dr.example:6379"
"#,
    )
    .unwrap();
    let out = Command::cargo_bin("lifeboat")
        .unwrap()
        .env_remove("LIFEBOAT_POLICIES")
        .args(["policy", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    for want in [
        "steps.graph-path.target: source graph: `/var/lib/neo4j/data` is not a Neo4j database name",
        "steps.graph-drill.drill: missing drill = \"skip\"",
        "steps.db-name.target: source db: `app_dr`: a postgres source restores into a database named by URL",
        "steps.cache-url.target: source cache: `redis://cache-dr.example:6379` is a URL, but a redis source restores into a path",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}
