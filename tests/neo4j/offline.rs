//! mode = "offline-dump": stop, stream the dump, start; the downtime in the manifest;
//! start after every stop, also when the dump or the stop fails; load in place.

use crate::common::*;

fn admin(args: &str) -> String {
    format!("neo4j-admin {args}")
}

#[test]
fn a_dump_runs_between_stop_and_start_and_records_the_downtime() {
    let env = Env::new();
    env.policy(&env.offline());
    let id = env.backup();

    assert_eq!(
        env.commands(),
        vec![
            "ctl stop".to_string(),
            admin("database dump neo4j --to-stdout"),
            "ctl start".to_string(),
        ]
    );
    // Counted before the stop, probed after the start.
    let log = env.log();
    let first_http = log.iter().position(|e| e["who"] == "http").unwrap();
    let stop = log.iter().position(|e| e["argv"][0] == "stop").unwrap();
    assert!(first_http < stop, "counted after the stop: {log:?}");
    assert_eq!(env.requests("/db/neo4j/tx/commit")[0], count_statements());
    assert_eq!(
        env.requests("/db/neo4j/tx/commit").last().unwrap(),
        &vec!["RETURN 1".to_string()]
    );
    assert_eq!(env.state()["server"], "running");

    let m = env.manifest(&id);
    assert_eq!(m["kind"], "neo4j");
    assert_eq!(m["counts"], expected_counts());
    let e = &m["engine"];
    assert_eq!(e["mode"], "offline-dump");
    assert_eq!(e["database"], "neo4j");
    let downtime = e["downtime-seconds"].as_f64().expect("downtime recorded");
    let stopped = chrono::DateTime::parse_from_rfc3339(e["stopped-at"].as_str().unwrap()).unwrap();
    let started = chrono::DateTime::parse_from_rfc3339(e["started-at"].as_str().unwrap()).unwrap();
    assert!((0.0..60.0).contains(&downtime), "{e}");
    assert!(started >= stopped, "{e}");
    // The stand-ins' clock agrees: the downtime spans stop to start.
    let t = |who: &str| {
        log.iter().find(|x| x["argv"][0] == who).unwrap()["t"]
            .as_f64()
            .unwrap()
    };
    assert!(
        downtime >= t("start") - t("stop"),
        "{downtime} < {}",
        t("start") - t("stop")
    );

    // The listing shows the backup with the counts taken before the stop.
    let out = env.run(&["--json", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["backup-id"], id.as_str());
    assert_eq!(listed[0]["counts"], expected_counts());
}

#[test]
fn a_failing_dump_still_starts_the_server_once_and_commits_nothing() {
    let env = Env::new();
    env.policy(&env.offline());
    let out = env.run_with(&["backup", "graph"], &[("STANDIN_DUMP_FAIL", "1")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("disk full while dumping"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        env.commands(),
        vec![
            "ctl stop".to_string(),
            admin("database dump neo4j --to-stdout"),
            "ctl start".to_string(),
        ]
    );
    assert_eq!(env.state()["server"], "running");
    assert!(env.manifests().is_empty(), "{:?}", env.manifests());
    let out = env.run(&["--json", "list"]);
    assert_eq!(stdout(&out).trim(), "[]");
}

#[test]
fn a_failing_stop_still_runs_start_and_fails_without_dumping() {
    let env = Env::new();
    env.policy(&env.offline());
    let out = env.run_with(&["backup", "graph"], &[("STANDIN_FAIL_STOP", "1")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("stopping the server failed (start was run)"),
        "{err}"
    );
    assert!(err.contains("stop failed (stand-in failure)"), "{err}");
    assert_eq!(env.commands(), vec!["ctl stop", "ctl start"]);
    assert!(env.manifests().is_empty());
}

#[test]
fn a_server_that_does_not_come_back_fails_the_backup() {
    let env = Env::new();
    env.policy(&env.offline());
    let out = env.run_with(&["backup", "graph"], &[("STANDIN_FAIL_START", "1")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("did not come back; start it by hand"), "{err}");
    assert_eq!(env.commands().last().unwrap(), "ctl start");
    assert!(env.manifests().is_empty());
}

#[test]
fn a_restore_loads_in_place_between_stop_and_start_and_recounts() {
    let env = Env::new();
    env.policy(&env.offline());
    let id = env.backup();
    env.set_state(|s| s["graph"] = changed_graph());

    // The target has nodes: refused before anything is stopped.
    env.clear_log();
    let out = env.run(&["restore", "graph", "--to", "neo4j"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("has 10 nodes"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert!(env.commands().is_empty(), "{:?}", env.commands());
    assert_eq!(env.state()["graph"], changed_graph());

    env.clear_log();
    let out = env.run(&["restore", "graph", "--to", "neo4j", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&id), "{}", stdout(&out));
    assert!(stdout(&out).contains("counts match"), "{}", stdout(&out));
    assert_eq!(
        env.commands(),
        vec![
            "ctl stop".to_string(),
            admin("database load neo4j --from-stdin --overwrite-destination=true"),
            "ctl start".to_string(),
        ]
    );
    assert_eq!(env.state()["graph"], graph());
    assert_eq!(env.state()["server"], "running");
    // Recounted after the start.
    assert_eq!(
        env.requests("/db/neo4j/tx/commit").last().unwrap(),
        &count_statements()
    );
}

#[test]
fn a_recount_that_differs_from_the_manifest_exits_4() {
    let env = Env::new();
    env.policy(&env.offline());
    env.backup();
    // The server reports one node more than it holds.
    env.set_state(|s| s["skew"] = 1.into());
    let out = env.run(&["restore", "graph", "--to", "neo4j", "--force"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("loaded into neo4j in place"), "{err}");
    assert!(err.contains("nodes: expected 5, actual 6"), "{err}");
    assert!(!stdout(&out).contains("counts match"), "{}", stdout(&out));
    assert_eq!(env.commands().last().unwrap(), "ctl start");
}

#[test]
fn the_password_reaches_only_the_http_endpoint() {
    let env = Env::new();
    env.policy(&env.offline());
    let id = env.backup();
    let out = env.run(&["restore", "graph", "--to", "neo4j", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // run() checked stdout and stderr, manifest() the manifest; the command lines:
    let log = std::fs::read_to_string(&env.log).unwrap();
    assert!(log.contains("neo4j-admin"));
    for e in env.log().iter().filter(|e| e["who"] != "http") {
        assert!(!e.to_string().contains(PASSWORD), "{e}");
    }
    env.manifest(&id);
    for f in crate::util::files_under(&env.repo) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "{}",
            f.display()
        );
    }
    // A wrong password fails, naming the user and never the value.
    let out = env.run_with(
        &["backup", "graph"],
        &[("LIFEBOAT_TEST_NEO4J_PASSWORD", "wrong-Zq9-value")],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("user neo4j was refused"), "{err}");
    assert!(!err.contains("wrong-Zq9-value"), "{err}");
}

#[test]
fn doctor_checks_neo4j_admin_and_the_http_endpoint() {
    let env = Env::new();
    env.policy(&env.offline());
    let out = env.run(&["doctor"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("neo4j-admin") && text.contains("says 5.26.0"),
        "{text}"
    );
    assert!(
        text.contains("answers for database neo4j as neo4j"),
        "{text}"
    );
    assert_eq!(
        env.commands(),
        vec![admin("--version")],
        "doctor changes nothing"
    );
    let out = env.run_with(&["doctor"], &[("LIFEBOAT_TEST_NEO4J_PASSWORD", "nope")]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("FAIL http"), "{}", stdout(&out));
}
