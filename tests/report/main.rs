//! `lifeboat report` and `lifeboat verify --restore` on real SQLite sources and a local
//! repository, with a synthetic history: backups made at pinned times (`LIFEBOAT_NOW`),
//! so every figure of the report is exact.

#[path = "../support/chromium.rs"]
mod chromium;
#[path = "../support/util.rs"]
mod util;

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};
use util::{local_repo, stderr, stdout};

struct Env {
    dir: tempfile::TempDir,
    policies: PathBuf,
    repo: PathBuf,
}

fn make_db(path: &Path, users: usize) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
    )
    .unwrap();
    for i in 0..users {
        c.execute(
            "INSERT INTO users (name) VALUES (?1)",
            [format!("user {i}")],
        )
        .unwrap();
    }
}

impl Env {
    /// Sources `app` (RPO 6h, keep-within 1d, trial restores) with data, `quiet` (RPO
    /// 1h) with data but never backed up, and `lost` whose backups all fail verification.
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(policies.join("data")).unwrap();
        let repo = dir.path().join("repo");
        for (db, n) in [("app.db", 50), ("quiet.db", 5), ("lost.db", 7)] {
            make_db(&policies.join("data").join(db), n);
        }
        std::fs::write(
            policies.join("lifeboat.toml"),
            format!(
                r#"[repositories.local]
{}

[sources.app]
kind = "sqlite"
path = "data/app.db"
schedule = "0 */4 * * *"
rpo = "6h"
destinations = ["local"]
retention = {{ keep-within = "1d" }}
verify = {{ schedule = "30 5 * * *", restore-test = true }}

[sources.quiet]
kind = "sqlite"
path = "data/quiet.db"
rpo = "1h"
destinations = ["local"]

[sources.lost]
kind = "sqlite"
path = "data/lost.db"
destinations = ["local"]
"#,
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

    fn cmd(&self, now: &str) -> Command {
        let mut c = Command::cargo_bin("lifeboat").unwrap();
        c.arg("--policies")
            .arg(&self.policies)
            .env_remove("LIFEBOAT_POLICIES")
            .env_remove("LIFEBOAT_FAILPOINT")
            .env("LIFEBOAT_NOW", now)
            .env("LIFEBOAT_SPOOL_DIR", self.dir.path().join("spool"))
            .timeout(std::time::Duration::from_secs(120));
        c
    }

    /// Back up `source` at `now`; returns the backup id.
    fn backup(&self, source: &str, now: &str) -> String {
        let out = self
            .cmd(now)
            .args(["--json", "backup", source])
            .output()
            .unwrap();
        assert!(out.status.success(), "backup at {now}: {}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["backups"][0]["backup-id"].as_str().unwrap().to_string()
    }

    fn report(&self, now: &str, args: &[&str]) -> (Option<i32>, Value) {
        let out = self
            .cmd(now)
            .args(["--json", "report"])
            .args(args)
            .output()
            .unwrap();
        let v = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
        (out.status.code(), v)
    }

    /// Flip one byte in the middle of a backup's stored data.
    fn alter(&self, source: &str, id: &str) {
        let data = self.repo.join(source).join(id).join("data");
        let mut bytes = std::fs::read(&data).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&data, &bytes).unwrap();
    }
}

fn source<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no source {name} in {r:#}"))
}

/// The history every test starts from: `app` at 00:00, 05:00, 12:00 (a 7 h gap) and
/// 17:00 on 2026-11-29; `lost` at 01:00, then altered in the repository and verified.
/// Returns the ids of app's backups, then lost's.
fn history(env: &Env) -> Vec<String> {
    let ids: Vec<String> = [
        "2026-11-29T00:00:00Z",
        "2026-11-29T05:00:00Z",
        "2026-11-29T12:00:00Z",
        "2026-11-29T17:00:00Z",
    ]
    .iter()
    .map(|t| env.backup("app", t))
    .collect();
    let lost = env.backup("lost", "2026-11-29T01:00:00Z");
    env.alter("lost", &lost);
    let out = env
        .cmd("2026-11-29T02:00:00Z")
        .args(["verify", "--source", "lost"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let mut ids = ids;
    ids.push(lost);
    ids
}

#[test]
fn figures_on_a_synthetic_history_are_exact() {
    let env = Env::new();
    let ids = history(&env);
    let out = env
        .cmd("2026-11-29T17:30:00Z")
        .args(["verify", "--restore", "--source", "app"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let now = "2026-11-29T20:00:00Z";
    let (code, r) = env.report(now, &["--since", "1d"]);
    assert_eq!(code, Some(5), "{r:#}");
    assert_eq!(r["format"], "lifeboat.report.v1");
    assert_eq!(r["verdict"], "FAIL");
    let app = source(&r, "app");
    assert_eq!(app["worst-gap"]["from"], "2026-11-29T05:00:00Z");
    assert_eq!(app["worst-gap"]["to"], "2026-11-29T12:00:00Z");
    assert_eq!(app["worst-gap"]["secs"], 7 * 3600);
    assert_eq!(app["exposure-secs"], 3 * 3600);
    // 1 h of the 20 h since the first backup was beyond the 6 h RPO.
    assert_eq!(app["within-target"], 0.95);
    assert_eq!(app["rpo-verdict"], "FAIL");
    let breaches: Vec<String> = r["breaches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            format!(
                "{}: {}",
                b["subject"].as_str().unwrap(),
                b["what"].as_str().unwrap()
            )
        })
        .collect();
    assert!(breaches.contains(
        &"source app: gap of 7h from 2026-11-29 05:00:00Z to 2026-11-29 12:00:00Z exceeds the RPO of 6h".to_string()
    ), "{breaches:#?}");
    assert!(
        breaches.contains(
            &"source quiet: no committed backup at all: nothing can be restored".to_string()
        ),
        "{breaches:#?}"
    );
    assert!(
        breaches.iter().any(|b| b.starts_with(
            "source lost: every backup (1) failed verification: nothing known to be restorable"
        )),
        "{breaches:#?}"
    );
    assert_eq!(app["last-trial"]["ok"], true);
    assert_eq!(
        app["last-trial"]["counts"]["rows.users"],
        serde_json::json!({"expected": 50, "actual": 50})
    );
    assert_eq!(app["coverage"]["reach-secs"], 20 * 3600);
    assert_eq!(app["coverage"]["verdict"], "FAIL");
    // Every cell of a source without backups says so.
    let quiet = source(&r, "quiet");
    assert_eq!(quiet["verdict"], "FAIL");
    assert_eq!(quiet["newest"], Value::Null);
    assert_eq!(quiet["rpo-verdict"], "FAIL");

    // The same figures, as a person reads them.
    let out = env
        .cmd(now)
        .args(["report", "--since", "1d"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    // Backup ids end in a random suffix; everything else is fixed by the pinned clock.
    let mut table = stdout(&out);
    for (i, id) in ids.iter().enumerate() {
        table = table.replace(id.as_str(), &format!("<backup {i}>"));
    }
    insta::assert_snapshot!("synthetic_history_table", table);
}

#[test]
fn a_newest_verified_backup_older_than_the_newest_backup_is_said() {
    let env = Env::new();
    let ids = history(&env);
    let out = env
        .cmd("2026-11-29T06:00:00Z")
        .args(["verify", "--source", "app", ids[1].as_str()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, r) = env.report("2026-11-29T18:00:00Z", &["--source", "app"]);
    let app = source(&r, "app");
    assert_eq!(app["newest-verified"]["backup-id"], ids[1].as_str());
    let flags = app["flags"].to_string();
    assert!(
        flags.contains(&format!(
            "the newest verified backup ({}, 2026-11-29 05:00:00Z) is older than the newest committed backup ({}, 2026-11-29 17:00:00Z)",
            ids[1], ids[3]
        )),
        "{flags}"
    );
    // --source leaves the other sources and the DR plans out.
    assert_eq!(r["sources"].as_array().unwrap().len(), 1);
}

#[test]
fn an_altered_backup_fails_its_trial_restore_and_the_report_shows_it() {
    let env = Env::new();
    let ids = history(&env);
    env.alter("app", &ids[3]);
    let out = env
        .cmd("2026-11-29T17:30:00Z")
        .args(["--json", "verify", "--restore", "--source", "app"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let trial = &v["restore-tests"][0];
    assert_eq!(trial["ok"], false);
    assert!(
        trial["problems"].to_string().contains("sha256"),
        "{trial:#}"
    );

    let (code, r) = env.report("2026-11-29T18:00:00Z", &["--source", "app"]);
    assert_eq!(code, Some(5));
    let app = source(&r, "app");
    assert_eq!(app["verdict"], "FAIL");
    assert_eq!(app["last-trial"]["ok"], false);
    let breaches = app["breaches"].to_string();
    assert!(breaches.contains("the last trial restore"), "{breaches}");
    assert!(breaches.contains("the last verification"), "{breaches}");

    // The result lives beside the manifest too: a rebuilt catalog still knows it.
    assert!(
        env.repo
            .join("app")
            .join(&ids[3])
            .join("restore-test.json")
            .is_file()
    );
    std::fs::remove_file(env.policies.join(".lifeboat").join("catalog.db")).unwrap();
    let (_, r) = env.report("2026-11-29T18:00:00Z", &["--source", "app"]);
    assert_eq!(source(&r, "app")["last-trial"]["ok"], false);
    assert_eq!(
        source(&r, "app")["last-trial"]["backup-id"],
        ids[3].as_str()
    );
}

#[test]
fn the_scheduler_runs_due_verifications_with_their_trial_restore() {
    let env = Env::new();
    env.backup("app", "2026-11-29T04:00:00Z");
    // 05:30 passed and nothing was verified: `schedule --once` catches up.
    let out = env
        .cmd("2026-11-29T06:00:00Z")
        .args(["--json", "schedule", "--once"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(text.contains("verify:app"), "{text}\n{}", stderr(&out));
    let (_, r) = env.report("2026-11-29T06:10:00Z", &["--source", "app"]);
    let app = source(&r, "app");
    assert_eq!(app["last-trial"]["ok"], true, "{app:#}");
    assert_eq!(app["last-check"]["ok"], true);
    assert_eq!(app["newest-verified"]["at"], "2026-11-29T04:00:00Z");
}

#[test]
fn bad_report_flags_are_named() {
    let env = Env::new();
    let out = env
        .cmd("2026-11-29T06:00:00Z")
        .args(["report", "--since", "soon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--since soon"), "{}", stderr(&out));
    let out = env
        .cmd("2026-11-29T06:00:00Z")
        .args(["report", "--source", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}

#[test]
fn drills_are_reported_per_plan_with_their_objectives() {
    let env = Env::new();
    env.backup("app", "2026-11-29T12:00:00Z");
    std::fs::create_dir_all(env.policies.join("dr")).unwrap();
    for (name, rpo) in [("tight", "1h"), ("loose", "6h")] {
        std::fs::write(
            env.policies.join("dr").join(format!("{name}.toml")),
            format!(
                r#"name = "{name}"
rto = "30m"
rpo = "{rpo}"

[[steps]]
id = "restore-app"
kind = "restore"
source = "app"
target = "data/app-restored.db"

[[steps]]
id = "check"
kind = "integrity"
after = ["restore-app"]
of = "restore-app"
"#
            ),
        )
        .unwrap();
    }
    std::fs::write(
        env.policies.join("dr").join("never.toml"),
        "name = \"never\"\nrto = \"1h\"\nrpo = \"1h\"\n\n[[steps]]\nid = \"gate\"\nkind = \"approval\"\nprompt = \"ok?\"\n",
    )
    .unwrap();
    // Drilled 3 h after the backup: the tight plan misses its 1 h RPO.
    for plan in ["tight", "loose"] {
        let out = env
            .cmd("2026-11-29T15:00:00Z")
            .args(["dr", "drill", plan])
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0) | Some(5)),
            "{}",
            stderr(&out)
        );
    }
    let (code, r) = env.report("2026-11-29T16:00:00Z", &["--since", "1d"]);
    assert_eq!(code, Some(5));
    let plan = |name: &str| {
        r["plans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no plan {name}: {r:#}"))
            .clone()
    };
    let loose = plan("loose");
    assert_eq!(loose["verdict"], "PASS", "{loose:#}");
    let drill = &loose["drills"][0];
    assert_eq!(drill["mode"], "drill");
    assert_eq!(drill["rpo"]["achieved-secs"], 3 * 3600);
    assert_eq!(drill["rto"]["verdict"], "PASS");
    assert_eq!(drill["steps"].as_array().unwrap().len(), 2);
    assert!(drill["slowest-step"][0].is_string());
    let tight = plan("tight");
    assert_eq!(tight["verdict"], "FAIL");
    assert_eq!(tight["drills"][0]["rpo"]["verdict"], "FAIL");
    assert!(
        r["breaches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["subject"] == "plan tight"
                && b["what"]
                    .as_str()
                    .unwrap()
                    .contains("RPO 3h (target 1h) FAIL")),
        "{:#}",
        r["breaches"]
    );
    let never = plan("never");
    assert_eq!(never["verdict"], "N/A");
    assert!(
        never["flags"][0]
            .as_str()
            .unwrap()
            .contains("no drill in the window")
    );
    assert!(!r["breaches"].to_string().contains("plan never"));
}

/// The history behind the end-to-end checks: every source state at once (a breach, no
/// backup, all backups failing verification) and a drilled plan.
fn full_history(env: &Env) {
    history(env);
    let out = env
        .cmd("2026-11-29T17:30:00Z")
        .args(["verify", "--restore", "--source", "app"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::create_dir_all(env.policies.join("dr")).unwrap();
    std::fs::write(
        env.policies.join("dr").join("app.toml"),
        "name = \"app-restore\"\nrto = \"30m\"\nrpo = \"6h\"\n\n[[steps]]\nid = \"restore-app\"\nkind = \"restore\"\nsource = \"app\"\ntarget = \"data/app-restored.db\"\n",
    )
    .unwrap();
    let out = env
        .cmd("2026-11-29T18:00:00Z")
        .args(["dr", "drill", "app-restore"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn the_json_the_command_prints_validates_against_the_published_schema() {
    let env = Env::new();
    full_history(&env);
    let (code, r) = env.report("2026-11-29T20:00:00Z", &["--since", "1d"]);
    assert_eq!(code, Some(5));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&r)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert_eq!(errors, Vec::<String>::new(), "{r:#}");
    assert_eq!(r["plans"][0]["drills"].as_array().unwrap().len(), 1);
}

#[test]
fn the_html_the_command_writes_renders_in_chromium_with_every_source_and_verdict() {
    let env = Env::new();
    full_history(&env);
    let page = env.dir.path().join("report.html");
    let out = env
        .cmd("2026-11-29T20:00:00Z")
        .args(["report", "--since", "1d", "--format", "html", "--out"])
        .arg(&page)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "--out writes the file, not stdout");
    let run = chromium::run_chromium(&page, &["--enable-logging=stderr", "--v=0", "--dump-dom"]);
    assert_eq!(run.console(), Vec::<&str>::new(), "console output");
    let dom = run.stdout;
    assert!(dom.trim_end().ends_with("</html>"), "no whole DOM: {dom}");
    for (name, verdict) in [("app", "FAIL"), ("quiet", "FAIL"), ("lost", "FAIL")] {
        assert!(
            dom.contains(&format!("id=\"source-{name}\"")),
            "source {name} missing"
        );
        let at = dom.find(&format!("id=\"source-{name}\"")).unwrap();
        let tag_end = dom[at..].find('>').unwrap();
        assert!(
            dom[at..at + tag_end].contains(&format!("data-verdict=\"{verdict}\"")),
            "{name}: {}",
            &dom[at..at + tag_end]
        );
    }
    assert!(dom.contains("id=\"verdict\""));
    assert!(dom.contains("gap of 7h from 2026-11-29 05:00:00Z to 2026-11-29 12:00:00Z"));
    assert!(dom.contains("app-restore"));
    assert!(
        dom.contains("class=\"chart timeline\""),
        "timeline chart missing"
    );
    assert!(dom.contains("class=\"chart gantt\""), "gantt chart missing");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-e2e.png");
    let _ = std::fs::remove_file(&shot);
    chromium::run_chromium(
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2400",
        ],
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "screenshot kept at {}",
        shot.display()
    );
}
