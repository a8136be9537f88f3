//! Bad input in a policy file or a flag: a clear error naming the file, field and fix,
//! exit 2, never a panic.

use crate::common::*;

fn set_policy(env: &Env, edit: impl Fn(String) -> String) {
    let p = env.policies.join("lifeboat.toml");
    std::fs::write(&p, edit(std::fs::read_to_string(&p).unwrap())).unwrap();
}

fn check(env: &Env) -> std::process::Output {
    env.cmd().args(["policy", "check"]).output().unwrap()
}

#[test]
fn an_absurd_duration_is_refused_by_policy_check_not_a_panic() {
    for rpo in [
        "9999999999999999s",
        "8000000000000s",
        "99999999999999999999w",
    ] {
        let env = Env::new("64KiB", "keep-last = 5");
        set_policy(&env, |t| {
            t.replace("rpo = \"1h\"", &format!("rpo = \"{rpo}\""))
        });
        let out = check(&env);
        assert_eq!(out.status.code(), Some(2), "{rpo}: {}", stderr(&out));
        let err = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            err.contains("sources.app.rpo") && err.contains("at most 36500d"),
            "{rpo}: {err}"
        );
    }
}

#[test]
fn an_absurd_report_window_is_refused_not_a_panic() {
    let env = Env::new("64KiB", "keep-last = 5");
    let out = env
        .cmd()
        .args(["report", "--since", "100000000d"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("at most 36500d"), "{}", stderr(&out));
}

#[test]
fn a_schedule_that_can_never_fire_is_refused() {
    for (field, edit) in [
        (
            "sources.app.schedule",
            "schedule = \"0 0 30 2 *\"".to_string(),
        ),
        (
            "sources.app.verify.schedule",
            "schedule = \"@hourly\"\nverify = { schedule = \"0 0 31 4,6,9,11 *\" }".to_string(),
        ),
    ] {
        let env = Env::new("64KiB", "keep-last = 5");
        set_policy(&env, |t| t.replace("schedule = \"@hourly\"", &edit));
        let out = check(&env);
        assert_eq!(out.status.code(), Some(2), "{field}: {}", stdout(&out));
        let err = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            err.contains(field) && err.contains("never runs"),
            "{field}: {err}"
        );
    }
}

#[test]
fn a_cron_field_out_of_range_is_one_line_with_the_range() {
    let env = Env::new("64KiB", "keep-last = 5");
    set_policy(&env, |t| t.replace("@hourly", "61 * * * *"));
    let out = check(&env);
    assert_eq!(out.status.code(), Some(2));
    let err = format!("{}{}", stdout(&out), stderr(&out));
    let line = err
        .lines()
        .find(|l| l.contains("sources.app.schedule"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("minutes must be 0-59"), "{err}");
    assert!(!err.contains('^'), "no caret art: {err}");
}

#[test]
fn a_policy_file_that_is_not_utf8_names_the_file_and_offset() {
    let env = Env::new("64KiB", "keep-last = 5");
    let p = env.policies.join("broken.toml");
    std::fs::write(&p, b"[sources.x]\nkind = \"sql\xffite\"\n").unwrap();
    let out = check(&env);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("broken.toml") && err.contains("offset 23") && err.contains("UTF-8"),
        "{err}"
    );
}
