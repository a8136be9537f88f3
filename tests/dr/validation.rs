//! Plan validation through `lifeboat policy check`: every problem at once, each with
//! its file and field.

use crate::common::{Env, stderr, stdout};

#[test]
fn policy_check_reports_every_plan_problem_at_once() {
    let env = Env::new();
    env.plan(
        "broken",
        r#"
name = "broken"
rto = "5m"
rpo = "1h"

[[steps]]
id = "a"
kind = "command"
argv = ["true"]
after = ["b"]
drill = "skip"

[[steps]]
id = "b"
kind = "command"
argv = ["true"]
after = ["a"]
drill = "run"

[[steps]]
id = "c"
kind = "command"
argv = ["echo", "${steps.ghost.outputs.target}"]
after = ["nowhere"]

[[steps]]
id = "d"
kind = "restore"
source = "hive"
target = "x.db"
after = ["c"]
retires = 2
"#,
    );
    let out = env.cmd().args(["policy", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    let file = env.policies.join("dr").join("broken.toml");
    let f = file.display();
    for want in [
        format!("{f}: steps.a.after: cycle a -> b -> a"),
        format!("{f}: steps.c.after[0]: unknown step `nowhere` (steps: a, b, c, d)"),
        format!("{f}: steps.c.argv[1]: `${{steps.ghost.outputs.target}}`: unknown step `ghost`"),
        format!("{f}: steps.c.drill: missing drill behaviour"),
        format!("{f}: steps.d.retires: unknown key (did you mean `retries`?"),
    ] {
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    }
    // The same problems stop a run before anything happens.
    let out = env.cmd().args(["dr", "run", "broken"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn references_to_missing_outputs_and_later_steps_are_rejected() {
    let env = Env::new();
    env.plan(
        "refs",
        r#"
name = "refs"
rto = "5m"
rpo = "1h"

[[steps]]
id = "restore"
kind = "restore"
source = "hive"
target = "restored.db"

[[steps]]
id = "early"
kind = "command"
argv = ["echo", "${steps.restore.outputs.target}"]
drill = "run"

[[steps]]
id = "late"
kind = "command"
argv = ["echo", "${steps.restore.outputs.endpoint}"]
after = ["restore"]
drill = "run"
"#,
    );
    let out = env.cmd().args(["policy", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("steps.early.argv[1]: `${steps.restore.outputs.target}`: step `restore` does not run before this one (add it to after)"),
        "{err}"
    );
    assert!(
        err.contains("steps.late.argv[1]: `${steps.restore.outputs.endpoint}`: step `restore` has no output `endpoint` (its outputs: target, backup-id, consistency-point, repository, source)"),
        "{err}"
    );
}

#[test]
fn the_shipped_node_plan_checks_clean_in_a_set_that_declares_hive() {
    let env = Env::new();
    env.shipped_node_plan();
    let out = env.cmd().args(["policy", "check"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("dr plan node0-sqlite: 4 steps, rto 5m, rpo 1h"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_bizra_set_checks_clean_with_its_node_plan() {
    let set = format!("{}/policies/bizra", env!("CARGO_MANIFEST_DIR"));
    let out = assert_cmd::Command::cargo_bin("lifeboat")
        .unwrap()
        .env_remove("LIFEBOAT_POLICIES")
        .args(["--json", "policy", "check"])
        .arg(&set)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let plans = v["dr-plans"].as_array().unwrap();
    assert!(
        plans
            .iter()
            .any(|p| p["name"] == "node0-sqlite" && p["rto"] == "5m" && p["rpo"] == "1h"),
        "{v:#}"
    );
}
