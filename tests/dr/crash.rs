//! Crash at every failpoint of a run, then `dr resume`: the run completes and every side
//! effect happened exactly once.

use crate::common::{Env, count, inode, stderr, step};

#[test]
fn crash_at_every_failpoint_then_resume_makes_each_effect_once() {
    let steps = ["first", "restore", "check", "last"];
    for id in steps {
        for point in ["before-effect", "after-effect"] {
            let fp = format!("dr.step.{id}.{point}");
            let env = Env::new();
            let target = env.dir.path().join("restored.db");
            env.plan(
                "crashy",
                &format!(
                    r#"
name = "crashy"
rto = "5m"
rpo = "1h"

[[steps]]
id = "first"
kind = "command"
argv = ["python3", "{append}", "{log}", "first"]
drill = "skip"

[[steps]]
id = "restore"
kind = "restore"
after = ["first"]
source = "hive"
target = "{target}"

[[steps]]
id = "check"
kind = "integrity"
after = ["restore"]
of = "restore"

[[steps]]
id = "last"
kind = "command"
after = ["check"]
argv = ["python3", "{append}", "{log}", "last"]
drill = "skip"
"#,
                    append = env.script("append.py"),
                    log = env.log.display(),
                    target = target.display()
                ),
            );
            env.backup();
            let out = env
                .cmd()
                .args(["dr", "run", "crashy"])
                .env("LIFEBOAT_FAILPOINT", &fp)
                .output()
                .unwrap();
            assert!(!out.status.success(), "{fp}: the run should have aborted");
            assert!(
                stderr(&out).contains(&format!("failpoint {fp} reached")),
                "{fp}: {}",
                stderr(&out)
            );
            let (_, status, _) = env.json(&["dr", "status"]);
            assert_eq!(status["status"], "running", "{fp}");
            let run = status["run-id"].as_str().unwrap().to_string();
            // The restored file as the crash left it: a resume must not restore again.
            let restored_before = target.exists().then(|| inode(&target));
            let (code, r, err) = env.json(&["dr", "resume", &run]);
            assert_eq!(code, Some(0), "{fp}: {r:#}\n{err}");
            assert_eq!(r["status"], "succeeded", "{fp}");
            assert_eq!(
                env.log_lines(),
                ["first", "last"],
                "{fp}: each command ran once"
            );
            assert_eq!(count(&target, "users"), 3, "{fp}");
            if let Some(ino) = restored_before {
                assert_eq!(inode(&target), ino, "{fp}: the restore was repeated");
            }
            let restore_done_before_crash = steps.iter().position(|s| *s == id).unwrap() > 1
                || (id == "restore" && point == "after-effect");
            assert_eq!(restored_before.is_some(), restore_done_before_crash, "{fp}");
            let attempts = step(&r, "restore")["attempts"].as_u64().unwrap();
            let expected = if fp == "dr.step.restore.before-effect" {
                2
            } else {
                1
            };
            assert_eq!(attempts, expected, "{fp}");
        }
    }
}

/// Plan `one`: a single restore of `hive` into `restored.db`; returns that target.
fn one_restore_plan(env: &Env) -> std::path::PathBuf {
    let target = env.dir.path().join("restored.db");
    env.plan(
        "one",
        &format!(
            "name = \"one\"\nrto = \"5m\"\nrpo = \"1h\"\n\n[[steps]]\nid = \"restore\"\nkind = \"restore\"\nsource = \"hive\"\ntarget = \"{}\"\n",
            target.display()
        ),
    );
    target
}

/// The window the failpoints cannot reach, between a restore's swap and its journal
/// file: the target that did not exist before is there whole, so resume adopts it.
#[test]
fn a_restore_interrupted_before_its_journal_is_not_made_twice() {
    let env = Env::new();
    let target = one_restore_plan(&env);
    env.backup();
    let out = env
        .cmd()
        .args(["dr", "run", "one"])
        .env("LIFEBOAT_FAILPOINT", "dr.step.restore.after-effect")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let (_, status, _) = env.json(&["dr", "status"]);
    let run = status["run-id"].as_str().unwrap().to_string();
    // As if the process had died a moment earlier, before the journal was written.
    let journal = env
        .policies
        .join(".lifeboat/dr")
        .join(&run)
        .join("restore.done.json");
    std::fs::remove_file(&journal).unwrap();
    let ino = inode(&target);
    let (code, r, err) = env.json(&["dr", "resume", &run]);
    assert_eq!(code, Some(0), "{r:#}\n{err}");
    assert_eq!(inode(&target), ino, "the restore was made again");
    assert_eq!(step(&r, "restore")["attempts"], 1);
    assert!(step(&r, "restore")["outputs"]["consistency-point"].is_string());
}

#[test]
fn an_unfinished_run_or_a_held_lock_refuses_a_second_run_with_exit_6() {
    let env = Env::new();
    let target = one_restore_plan(&env);
    env.backup();
    // Another process drives a run of the plan: it holds the plan's lock.
    let lock_path = env.policies.join(".lifeboat/dr/one.lock");
    std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let held = std::fs::File::create(&lock_path).unwrap();
    held.try_lock().unwrap();
    let (code, _, err) = env.json(&["dr", "run", "one"]);
    assert_eq!(code, Some(6), "{err}");
    assert!(
        err.contains("being run by another lifeboat process"),
        "{err}"
    );
    drop(held);
    // A crashed run must be resumed, not run over.
    let out = env
        .cmd()
        .args(["dr", "run", "one"])
        .env("LIFEBOAT_FAILPOINT", "dr.step.restore.before-effect")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let (code, _, err) = env.json(&["dr", "run", "one"]);
    assert_eq!(code, Some(6), "{err}");
    assert!(
        err.contains("is unfinished: continue it with `lifeboat dr resume"),
        "{err}"
    );
    let (_, status, _) = env.json(&["dr", "status"]);
    let run = status["run-id"].as_str().unwrap().to_string();
    let (code, r, err) = env.json(&["dr", "resume", &run]);
    assert_eq!(code, Some(0), "{r:#}\n{err}");
    assert!(target.exists());
}

/// A restore killed with its staging copy written in full: `dr resume` removes the copy
/// and restores again; nothing is left beside the target.
#[test]
fn a_restore_killed_before_its_swap_is_cleaned_up_by_resume() {
    let env = Env::new();
    let target = one_restore_plan(&env);
    env.backup();
    let out = env
        .cmd()
        .args(["dr", "run", "one"])
        .env("LIFEBOAT_FAILPOINT", "restore.before-swap")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("restore.before-swap"),
        "{}",
        stderr(&out)
    );
    assert!(!target.exists());
    let leftovers = || -> Vec<String> {
        std::fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("lifeboat-staging"))
            .collect()
    };
    assert_eq!(leftovers().len(), 1, "{:?}", leftovers());
    let (_, status, _) = env.json(&["dr", "status"]);
    let run = status["run-id"].as_str().unwrap().to_string();
    let (code, r, err) = env.json(&["dr", "resume", &run]);
    assert_eq!(code, Some(0), "{r:#}\n{err}");
    assert_eq!(count(&target, "users"), 3);
    assert_eq!(leftovers(), Vec::<String>::new());
    assert_eq!(step(&r, "restore")["attempts"], 2);
}
