//! The campaigns, one per command: set up, kill at a random moment, check, run again,
//! check again.

use crate::record::Campaign;
use crate::set::{KEEP_LAST, Kind, Set, digest, key_of, kind_of};
use crate::util::{stderr, stdout};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

// The campaigns, one per command.

/// `backup --all` killed; then the repository checks, the next backup, no leftovers.
pub fn backup_campaign(name: &'static str, mut set: Set, trials: usize) {
    let mut c = Campaign::new(name, trials);
    c.measured = set.run_ok(&["backup", "--all"]);
    let listed = set.list(None).unwrap();
    set.adopt(&listed);
    for trial in 1..=trials {
        set.change_sources(trial);
        let fate = set.run_killed(&["backup", "--all"], c.delay());
        c.killed(trial, &fate);
        set.check_repository(&mut c, trial);
        let out = set.run(&["backup", "--all"]);
        c.check(
            trial,
            out.status.success(),
            "the next backup succeeds",
            format_args!("exit {:?}: {}", out.status.code(), stderr(&out)),
        );
        if let Ok(listed) = set.list(None) {
            set.adopt(&listed);
        }
        set.check_no_leftovers(&mut c, trial, "the next backup");
        set.prune_between_trials(&mut c, trial);
    }
    set.check_repository(&mut c, trials + 1);
    c.finish();
}

/// `prune app` killed while it has backups to delete; the newest backup and the
/// verified one it counted on survive, and the next prune finishes the job.
pub fn prune_campaign(trials: usize) {
    let mut c = Campaign::new("prune", trials);
    let mut set = Set::local();
    for n in 0..KEEP_LAST + 2 {
        backup_app(&mut set, 1000 + n);
    }
    set.run_ok(&["verify"]);
    c.measured = set.run_ok(&["prune", "app"]);
    for trial in 1..=trials {
        backup_app(&mut set, 2000 + 2 * trial);
        backup_app(&mut set, 2001 + 2 * trial);
        set.run_ok(&["verify", "--source", "app"]);
        let before = set.list(None).unwrap();
        let newest = before
            .iter()
            .find(|b| b["source"] == "app")
            .map(key_of)
            .unwrap();
        let fate = set.run_killed(&["prune", "app"], c.delay());
        c.killed(trial, &fate);
        set.check_repository(&mut c, trial);
        let after: BTreeSet<_> = set
            .list(None)
            .unwrap_or_default()
            .iter()
            .map(key_of)
            .collect();
        c.check(
            trial,
            after.contains(&newest),
            "a killed prune keeps the newest (verified) backup",
            format_args!("{newest:?} is gone; left {after:?}"),
        );
        let out = set.run(&["prune", "app"]);
        c.check(
            trial,
            out.status.success(),
            "the next prune succeeds",
            format_args!("exit {:?}: {}", out.status.code(), stderr(&out)),
        );
        let apps = set
            .list(None)
            .unwrap_or_default()
            .iter()
            .filter(|b| b["source"] == "app")
            .count();
        c.check(
            trial,
            apps == KEEP_LAST,
            "the next prune leaves what retention keeps",
            format_args!("{apps} backups of app, keep-last = {KEEP_LAST}"),
        );
        set.check_no_leftovers(&mut c, trial, "the next prune");
    }
    c.finish();
}

/// One backup of `app`, of content of its own (`n`).
pub fn backup_app(set: &mut Set, n: usize) {
    set.change_sources(n);
    set.run_ok(&["backup", "app"]);
    let listed = set.list(None).unwrap();
    set.adopt(&listed);
}

/// Two backups of each restorable source: (old, new) ids and their digests.
pub struct TwoBackups {
    pub ids: BTreeMap<&'static str, (String, String)>,
}

pub fn two_backups(set: &mut Set) -> TwoBackups {
    let mut ids = BTreeMap::new();
    for (n, round) in ["old", "new"].into_iter().enumerate() {
        set.change_sources(500 + n);
        set.run_ok(&["backup", "app", "conf"]);
        let listed = set.list(None).unwrap();
        set.adopt(&listed);
        for source in ["app", "conf"] {
            let id = listed.iter().find(|b| b["source"] == source).unwrap()["backup-id"]
                .as_str()
                .unwrap()
                .to_string();
            let e: &mut (String, String) = ids.entry(source).or_default();
            if round == "old" {
                e.0 = id;
            } else {
                e.1 = id;
            }
        }
    }
    TwoBackups { ids }
}

/// Where the campaign's restores of `source` go.
pub fn target_of(set: &Set, source: &str) -> PathBuf {
    match kind_of(source) {
        Kind::Sqlite => set.targets.join("app.db"),
        _ => set.targets.join("conf"),
    }
}

/// `restore --force` of the new backup over the old content, killed; the target holds
/// one or the other, and the next restore completes it and leaves nothing beside it.
pub fn restore_campaign(trials: usize) {
    let mut c = Campaign::new("restore", trials);
    let mut set = Set::local();
    let two = two_backups(&mut set);
    // The quickest of three unkilled runs: kills then land mid-run most of the time.
    let mut measured = BTreeMap::new();
    for source in ["app", "conf"] {
        let (old, new) = &two.ids[source];
        let t = target_of(&set, source).display().to_string();
        let quickest = (0..3)
            .map(|_| {
                set.run_ok(&Set::restore_args(source, old, &t));
                set.run_ok(&Set::restore_args(source, new, &t))
            })
            .min()
            .unwrap();
        measured.insert(source, quickest);
    }
    for trial in 1..=trials {
        let source = if c.rng.next().is_multiple_of(2) {
            "app"
        } else {
            "conf"
        };
        c.measured = measured[source];
        let (old, new) = two.ids[source].clone();
        let (want_old, want_new) = (set.expected[&old].clone(), set.expected[&new].clone());
        let target = target_of(&set, source);
        let t = target.display().to_string();
        set.run_ok(&Set::restore_args(source, &old, &t));
        let fate = set.run_killed(&Set::restore_args(source, &new, &t), c.delay());
        c.killed(trial, &fate);
        let got = digest(kind_of(source), &target, true);
        c.check(
            trial,
            got.as_ref().is_ok_and(|d| *d == want_old || *d == want_new),
            "a killed restore leaves the old content or the complete new one",
            format_args!("{source} at {t} after {fate:?}: {got:?}"),
        );
        let out = set.run(&Set::restore_args(source, &new, &t));
        c.check(
            trial,
            out.status.success(),
            "the next restore succeeds",
            format_args!("exit {:?}: {}", out.status.code(), stderr(&out)),
        );
        let got = digest(kind_of(source), &target, true);
        c.check(
            trial,
            got.as_ref().ok() == Some(&want_new),
            "the next restore leaves the new content",
            format_args!("{source} at {t}: {got:?}"),
        );
        set.check_no_leftovers(&mut c, trial, "the next restore");
    }
    set.check_repository(&mut c, trials + 1);
    c.finish();
}

/// `dr run` of a plan restoring `app` and `conf` over their old content, killed; the
/// targets hold old or new content, and resuming (or running again when the killed run
/// left no record) completes the run and leaves nothing beside the targets.
pub fn dr_campaign(trials: usize) {
    let mut c = Campaign::new("dr-run", trials);
    let mut set = Set::local();
    let two = two_backups(&mut set);
    std::fs::create_dir_all(set.policies.join("dr")).unwrap();
    std::fs::write(
        set.policies.join("dr/campaign.toml"),
        format!(
            r#"name = "campaign"
rto = "5m"
rpo = "1h"

[[steps]]
id = "restore-app"
kind = "restore"
source = "app"
target = "{app}"
replace = true

[[steps]]
id = "restore-conf"
kind = "restore"
source = "conf"
target = "{conf}"
replace = true
"#,
            app = target_of(&set, "app").display(),
            conf = target_of(&set, "conf").display()
        ),
    )
    .unwrap();
    let reset = |set: &Set| {
        for source in ["app", "conf"] {
            let t = target_of(set, source).display().to_string();
            set.run_ok(&Set::restore_args(source, &two.ids[source].0, &t));
        }
    };
    c.measured = (0..3)
        .map(|_| {
            reset(&set);
            set.run_ok(&["dr", "run", "campaign"])
        })
        .min()
        .unwrap();
    for trial in 1..=trials {
        reset(&set);
        let before = dr_status(&set);
        let fate = set.run_killed(&["dr", "run", "campaign"], c.delay());
        c.killed(trial, &fate);
        for source in ["app", "conf"] {
            let (old, new) = &two.ids[source];
            let target = target_of(&set, source);
            let got = digest(kind_of(source), &target, true);
            c.check(
                trial,
                got.as_ref()
                    .is_ok_and(|d| *d == set.expected[old] || *d == set.expected[new]),
                "a killed dr run leaves each target old or complete new",
                format_args!("{source} at {} after {fate:?}: {got:?}", target.display()),
            );
        }
        let after = dr_status(&set);
        let next = match &after {
            Some((run, status))
                if status == "running" && Some(run) != before.as_ref().map(|b| &b.0) =>
            {
                vec!["dr".to_string(), "resume".into(), run.clone()]
            }
            _ => vec!["dr".to_string(), "run".into(), "campaign".into()],
        };
        let next: Vec<&str> = next.iter().map(String::as_str).collect();
        let out = set.run(&next);
        c.check(
            trial,
            out.status.success(),
            "the next dr run (or resume) succeeds",
            format_args!(
                "`{}` exited {:?}: {}{}",
                next.join(" "),
                out.status.code(),
                stdout(&out),
                stderr(&out)
            ),
        );
        for source in ["app", "conf"] {
            let new = &two.ids[source].1;
            let target = target_of(&set, source);
            let got = digest(kind_of(source), &target, true);
            c.check(
                trial,
                got.as_ref().ok() == Some(&set.expected[new]),
                "after the next dr run each target holds the new content",
                format_args!("{source} at {}: {got:?}", target.display()),
            );
        }
        set.check_no_leftovers(&mut c, trial, &format!("`{}`", next.join(" ")));
    }
    set.check_repository(&mut c, trials + 1);
    c.finish();
}

/// The newest DR run: (run id, status), or `None` before the first.
pub fn dr_status(set: &Set) -> Option<(String, String)> {
    let out = set.run(&["--json", "dr", "status"]);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((
        v["run-id"].as_str()?.to_string(),
        v["status"].as_str()?.to_string(),
    ))
}
