//! Per-step behaviour: retries, timeouts, `on-failure = "continue"`.

use crate::common::{Env, step};

/// Fails the first time (leaving a marker), succeeds the second.
const FLAKY: &str = "import os, sys\nif not os.path.exists(sys.argv[1]):\n    open(sys.argv[1], 'w').close()\n    sys.exit('first attempt fails')\n";

#[test]
fn retries_timeouts_and_continue() {
    let env = Env::new();
    std::fs::write(env.dir.path().join("flaky.py"), FLAKY).unwrap();
    let marker = env.dir.path().join("flaky.marker");
    env.plan(
        "steps",
        &format!(
            r#"
name = "steps"
rto = "5m"
rpo = "1h"

[[steps]]
id = "flaky"
kind = "command"
argv = ["python3", "{flaky}", "{marker}"]
retries = 1
drill = "run"

[[steps]]
id = "slow"
kind = "command"
argv = ["sleep", "30"]
timeout = "1s"
on-failure = "continue"
drill = "run"

[[steps]]
id = "after-slow"
kind = "command"
after = ["slow"]
argv = ["python3", "{append}", "{log}", "after-slow"]
drill = "run"

[[steps]]
id = "after-flaky"
kind = "command"
after = ["flaky"]
argv = ["python3", "{append}", "{log}", "after-flaky"]
drill = "run"
"#,
            flaky = env.script("flaky.py"),
            marker = marker.display(),
            append = env.script("append.py"),
            log = env.log.display()
        ),
    );
    let started = std::time::Instant::now();
    let (code, r, err) = env.json(&["dr", "run", "steps"]);
    assert_eq!(code, Some(1), "{r:#}\n{err}");
    assert!(
        started.elapsed().as_secs() < 20,
        "the timed-out command was not stopped"
    );
    let flaky = step(&r, "flaky");
    assert_eq!(
        (flaky["state"].as_str(), flaky["attempts"].as_u64()),
        (Some("succeeded"), Some(2))
    );
    let slow = step(&r, "slow");
    assert_eq!(slow["state"], "failed");
    assert!(
        slow["error"]
            .as_str()
            .unwrap()
            .contains("did not finish within 1s"),
        "{slow:#}"
    );
    // "continue": only the steps after the failed one are skipped.
    assert_eq!(step(&r, "after-slow")["state"], "blocked");
    assert_eq!(step(&r, "after-flaky")["state"], "succeeded");
    assert_eq!(env.log_lines(), ["after-flaky"]);
    assert_eq!(r["status"], "failed");
}

#[test]
fn an_incident_start_in_the_future_is_refused() {
    let env = Env::new();
    env.shipped_node_plan();
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let (code, _, err) = env.json(&["dr", "drill", "node0-sqlite", "--incident-start", &tomorrow]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("in the future"), "{err}");
}
