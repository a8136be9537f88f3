//! Real runs: parallel steps, dry runs, rollback, approval gates.

use crate::common::{Env, count, step};

#[test]
fn independent_steps_run_in_parallel() {
    // Each step waits for the other's file: run one after the other, the first would
    // wait in vain and fail; run together, both finish.
    let env = Env::new();
    let (a, b) = (env.dir.path().join("a.here"), env.dir.path().join("b.here"));
    env.plan(
        "barrier",
        &format!(
            r#"
name = "barrier"
rto = "5m"
rpo = "1h"

[[steps]]
id = "a"
kind = "command"
argv = ["python3", "{barrier}", "{a}", "{b}"]
timeout = "30s"
drill = "run"

[[steps]]
id = "b"
kind = "command"
argv = ["python3", "{barrier}", "{b}", "{a}"]
timeout = "30s"
drill = "run"

[[steps]]
id = "both"
kind = "command"
after = ["a", "b"]
argv = ["python3", "{append}", "{log}", "both"]
drill = "run"
restores-service = true
"#,
            barrier = env.script("barrier.py"),
            append = env.script("append.py"),
            a = a.display(),
            b = b.display(),
            log = env.log.display()
        ),
    );
    let (code, r, err) = env.json(&["dr", "run", "barrier"]);
    assert_eq!(code, Some(0), "{r:#}\n{err}");
    for s in ["a", "b", "both"] {
        assert_eq!(step(&r, s)["state"], "succeeded", "{r:#}");
    }
    assert_eq!(env.log_lines(), ["both"]);
    // Nothing is restored by this plan: no data point, so no RPO to judge.
    assert_eq!(r["rpo"]["verdict"], "N/A");
}

fn restore_plan(env: &Env, target: &std::path::Path) -> String {
    format!(
        r#"
name = "restore"
rto = "5m"
rpo = "1h"

[[steps]]
id = "announce"
kind = "command"
argv = ["python3", "{append}", "{log}", "announce"]
undo = ["python3", "{append}", "{log}", "undo-announce"]
drill = "skip"

[[steps]]
id = "restore"
kind = "restore"
after = ["announce"]
source = "hive"
from = "local"
target = "{target}"

[[steps]]
id = "check"
kind = "integrity"
after = ["restore"]
of = "restore"
freshness = "SELECT MAX(created_at) FROM tasks"
queries = {{ users = "SELECT COUNT(*) FROM users" }}
min = {{ users = 3 }}

[[steps]]
id = "finish"
kind = "command"
after = ["check"]
argv = ["python3", "{append}", "{log}", "${{steps.check.outputs.users}} users in ${{steps.restore.outputs.target}}"]
drill = "skip"
restores-service = true
on-failure = "rollback"
"#,
        append = env.script("append.py"),
        log = env.log.display(),
        target = target.display()
    )
}

#[test]
fn dry_run_resolves_the_plan_and_changes_nothing() {
    let env = Env::new();
    let target = env.dir.path().join("restored.db");
    env.plan("restore", &restore_plan(&env, &target));
    let id = env.backup();
    let before = env.snapshot();
    let (code, r, err) = env.json(&["dr", "run", "restore", "--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    let restore = step(&r, "restore");
    assert_eq!(restore["effect"]["backup-id"], id.as_str());
    assert_eq!(restore["effect"]["target"], target.display().to_string());
    let finish = step(&r, "finish");
    let argv = finish["effect"]["argv"].as_array().unwrap();
    // Outputs known before the run are filled in; the others stay as written.
    assert_eq!(
        argv[3],
        format!(
            "${{steps.check.outputs.users}} users in {}",
            target.display()
        )
    );
    assert_eq!(env.snapshot(), before);
    assert!(!target.exists());
    assert!(env.log_lines().is_empty());
    let (code, _, err) = env.json(&["dr", "status"]);
    assert_eq!(code, Some(2), "no run was recorded: {err}");
    // Text output names the backup, the target and the commands too.
    let out = env
        .cmd()
        .args(["dr", "run", "restore", "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&id) && text.contains("restored.db") && text.contains("append.py"),
        "{text}"
    );
}

#[test]
fn a_run_restores_checks_and_substitutes_outputs() {
    let env = Env::new();
    let target = env.dir.path().join("restored.db");
    env.plan("restore", &restore_plan(&env, &target));
    env.backup();
    let (code, r, err) = env.json(&["dr", "run", "restore"]);
    assert_eq!(code, Some(0), "{r:#}\n{err}");
    assert_eq!(
        env.log_lines(),
        [
            "announce".to_string(),
            format!("3 users in {}", target.display())
        ]
    );
    assert_eq!(count(&target, "users"), 3);
    // The status of the newest run is the same report, with a timeline.
    let (code, s, _) = env.json(&["dr", "status"]);
    assert_eq!(code, Some(0));
    assert_eq!(s["run-id"], r["run-id"]);
    assert!(s["timeline"].as_array().unwrap().len() >= 8, "{s:#}");
}

#[test]
fn rollback_undoes_what_the_run_did_newest_first() {
    let env = Env::new();
    let target = env.dir.path().join("restored.db");
    let plan = restore_plan(&env, &target).replace(
        "\"${steps.check.outputs.users} users in ${steps.restore.outputs.target}\"]",
        "\"x\"]\ntimeout = \"5s\"",
    );
    // The last step fails: its program does not exist.
    let plan = plan.replace(
        &format!(
            "argv = [\"python3\", \"{}\", \"{}\", \"x\"]",
            env.script("append.py"),
            env.log.display()
        ),
        "argv = [\"/nonexistent/lifeboat-test-program\"]",
    );
    env.plan("restore", &plan);
    env.backup();
    let (code, r, err) = env.json(&["dr", "run", "restore"]);
    assert_eq!(code, Some(1), "{r:#}\n{err}");
    assert_eq!(step(&r, "finish")["state"], "failed");
    assert_eq!(step(&r, "restore")["state"], "rolled-back");
    assert_eq!(step(&r, "announce")["state"], "rolled-back");
    assert!(
        !target.exists(),
        "the restore target the run created is removed"
    );
    assert_eq!(env.log_lines(), ["announce", "undo-announce"]);
}

#[test]
fn an_approval_gate_waits_for_yes() {
    let env = Env::new();
    env.plan(
        "gate",
        &format!(
            r#"
name = "gate"
rto = "5m"
rpo = "1h"

[[steps]]
id = "dns"
kind = "approval"
prompt = "DNS points at the new region?"

[[steps]]
id = "announce"
kind = "command"
after = ["dns"]
argv = ["python3", "{append}", "{log}", "announced"]
drill = "skip"
"#,
            append = env.script("append.py"),
            log = env.log.display()
        ),
    );
    let (code, r, err) = env.json(&["dr", "run", "gate"]);
    assert_eq!(code, Some(1), "{r:#}\n{err}");
    assert_eq!(r["status"], "waiting");
    assert!(env.log_lines().is_empty());
    let run = r["run-id"].as_str().unwrap();
    let (code, r, err) = env.json(&["dr", "resume", run, "--yes"]);
    assert_eq!(code, Some(0), "{r:#}\n{err}");
    assert_eq!(env.log_lines(), ["announced"]);
}
