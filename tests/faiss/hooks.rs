//! `post-restore` runs only for real restores into the real target: never for a drill's
//! copy (unless the source says so explicitly) and never for a trial restore.

use crate::cloud::local_repo;
use crate::common::*;
use std::path::{Path, PathBuf};

/// A stand-in `kubectl`: it records its arguments, `LIFEBOAT_RESTORE_PURPOSE` and
/// `LIFEBOAT_RESTORE_DIR` as one line in `calls`, and succeeds.
fn standin_kubectl(dir: &Path, calls: &Path) -> PathBuf {
    let path = dir.join("kubectl");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nprintf '%s|%s|%s\\n' \"$*\" \"$LIFEBOAT_RESTORE_PURPOSE\" \"$LIFEBOAT_RESTORE_DIR\" >> {}\n",
            calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn calls(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// The set: source `search` whose post-restore restarts "production" through the
/// stand-in, `extra` more lines for it, and plan `search-dr` restoring it into
/// `restored/`. Returns the calls file and the real restore target.
fn search_env(env: &Env, extra: &str) -> (PathBuf, PathBuf) {
    let calls = env.dir.path().join("kubectl.calls");
    let kubectl = standin_kubectl(env.dir.path(), &calls);
    let repo = env.dir.path().join("repo");
    let lines = format!(
        "post-restore = [\"{}\", \"-n\", \"bizra\", \"rollout\", \"restart\", \"deployment/search\"]\nverify = {{ restore-test = true }}\n{extra}",
        kubectl.display()
    );
    env.policy(
        &[("local", local_repo(&repo))],
        &[("search", env.all_paths(), &lines)],
    );
    let target = env.dir.path().join("restored");
    std::fs::create_dir_all(env.policies.join("dr")).unwrap();
    std::fs::write(
        env.policies.join("dr").join("search-dr.toml"),
        format!(
            "name = \"search-dr\"\nrto = \"10m\"\nrpo = \"1d\"\n\n[[steps]]\nid = \"restore-search\"\nkind = \"restore\"\nsource = \"search\"\ntarget = \"{}\"\n",
            target.display()
        ),
    )
    .unwrap();
    (calls, target)
}

#[test]
fn drills_and_trial_restores_never_run_post_restore_against_production() {
    let env = Env::new();
    let (calls_file, target) = search_env(&env, "");
    env.backup("search");

    let out = env.run(&["--json", "dr", "drill", "search-dr"]);
    assert!(out.status.success(), "drill: {}", stderr(&out));
    assert_eq!(
        calls(&calls_file),
        Vec::<String>::new(),
        "the drill ran post-restore"
    );

    let out = env.run(&["--json", "verify", "--restore", "--source", "search"]);
    assert!(out.status.success(), "trial restore: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["restore-tests"][0]["ok"], true, "{v:#}");
    assert_eq!(
        calls(&calls_file),
        Vec::<String>::new(),
        "the trial restore ran post-restore"
    );

    // A real run restores into the real target, and then restarts the service.
    let out = env.run(&["--json", "dr", "run", "search-dr"]);
    assert!(out.status.success(), "run: {}", stderr(&out));
    assert_eq!(
        calls(&calls_file),
        [format!(
            "-n bizra rollout restart deployment/search|restore|{}",
            target.display()
        )]
    );
}

#[test]
fn a_source_that_allows_post_restore_in_drills_runs_it_on_the_drill_copy() {
    let env = Env::new();
    let (calls_file, target) = search_env(&env, "post-restore-in-drills = true");
    env.backup("search");
    let out = env.run(&["--json", "dr", "drill", "search-dr"]);
    assert!(out.status.success(), "drill: {}", stderr(&out));
    let lines = calls(&calls_file);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let fields: Vec<&str> = lines[0].split('|').collect();
    assert_eq!(
        fields[..2],
        ["-n bizra rollout restart deployment/search", "drill"]
    );
    assert_ne!(
        fields[2],
        target.display().to_string(),
        "ran on the real target"
    );
    assert!(fields[2].contains(".drill-search-dr-"), "{}", fields[2]);
    // Trials never run it, whatever the source allows for drills.
    let out = env.run(&["--json", "verify", "--restore", "--source", "search"]);
    assert!(out.status.success(), "trial restore: {}", stderr(&out));
    assert_eq!(calls(&calls_file).len(), 1);
}

#[test]
fn post_restore_in_drills_without_post_restore_is_refused_by_policy_check() {
    let env = Env::new();
    let repo = env.dir.path().join("repo");
    env.policy(
        &[("local", local_repo(&repo))],
        &[("search", env.all_paths(), "post-restore-in-drills = true")],
    );
    let out = env.run(&["policy", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("sources.search.post-restore-in-drills") && err.contains("no `post-restore`"),
        "{err}"
    );
    env.policy(
        &[("local", local_repo(&repo))],
        &[(
            "search",
            env.all_paths(),
            "post-restore-in-drills = \"yes\"",
        )],
    );
    let out = env.run(&["policy", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("expected true or false"),
        "{}",
        stderr(&out)
    );
}
