//! mode = "online-backup": `neo4j-admin database backup` into a fresh folder, the
//! artifact streamed; restored with `neo4j-admin database restore` while the database
//! is stopped through Cypher; and the same through a `kubectl exec` wrapper.

use crate::common::*;

/// The one argument of `args` starting with `prefix`, without it.
fn arg_after<'a>(args: &'a str, prefix: &str) -> &'a str {
    args.split(' ')
        .find_map(|a| a.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {args}"))
}

#[test]
fn an_online_backup_streams_its_artifact_from_the_spool_and_restores_it() {
    let env = Env::new();
    env.policy("mode = \"online-backup\"");
    let id = env.backup();

    let cmds = env.commands();
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    let to = arg_after(&cmds[0], "--to-path=");
    assert_eq!(
        cmds[0],
        format!("neo4j-admin database backup neo4j --to-path={to}")
    );
    let spool = env.spool().canonicalize().unwrap();
    assert!(
        std::path::Path::new(to).starts_with(&spool)
            || to.starts_with(&*env.spool().to_string_lossy()),
        "{to} is not in the spool folder"
    );
    assert!(
        !std::path::Path::new(to).exists(),
        "backup folder left behind"
    );
    assert_eq!(
        env.requests("/db/neo4j/tx/commit"),
        vec![count_statements()]
    );
    let m = env.manifest(&id);
    assert_eq!(m["counts"], expected_counts());
    assert_eq!(m["engine"]["mode"], "online-backup");
    assert_eq!(m["engine"]["artifact"], "neo4j-2025-01-02T03-04-05.backup");
    assert_eq!(env.state()["server"], "running");

    env.set_state(|s| s["graph"] = changed_graph());
    env.clear_log();
    let out = env.run(&["restore", "graph", "--to", "neo4j", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cmds = env.commands();
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    let from = arg_after(&cmds[0], "--from-path=");
    assert_eq!(
        cmds[0],
        format!(
            "neo4j-admin database restore --from-path={from} neo4j --overwrite-destination=true"
        )
    );
    assert!(
        !std::path::Path::new(from).exists(),
        "staged artifact left behind"
    );
    assert_eq!(
        env.requests("/db/system/tx/commit"),
        vec![
            vec!["STOP DATABASE `neo4j` WAIT".to_string()],
            vec!["CREATE DATABASE `neo4j` IF NOT EXISTS WAIT".to_string()],
            vec!["START DATABASE `neo4j` WAIT".to_string()],
        ]
    );
    // The stop came before the restore, the start after it.
    let log = env.log();
    let at = |f: &dyn Fn(&serde_json::Value) -> bool| log.iter().position(f).unwrap();
    let stop = at(&|e| e["statements"][0] == "STOP DATABASE `neo4j` WAIT");
    let restore = at(&|e| e["who"] == "neo4j-admin");
    let start = at(&|e| e["statements"][0] == "START DATABASE `neo4j` WAIT");
    assert!(stop < restore && restore < start, "{log:?}");
    assert_eq!(env.state()["graph"], graph());
    assert_eq!(env.state()["online"], true);
    assert_eq!(
        env.requests("/db/neo4j/tx/commit").last().unwrap(),
        &count_statements()
    );
}

#[test]
fn through_a_wrapper_every_call_is_prefixed_and_the_artifact_is_read_back_with_cat() {
    let env = Env::new();
    let pod = env.dir.path().join("pod-backups");
    std::fs::create_dir_all(&pod).unwrap();
    let kubectl = standin("standin_kubectl.py");
    env.policy(&format!(
        "mode = \"online-backup\"\nwrapper = [\"{kubectl}\", \"exec\", \"-i\", \"neo4j-0\", \"-n\", \"graph\", \"--\"]\nbackup-path = \"{}\"",
        pod.display()
    ));
    let id = env.backup();

    let w = "kubectl exec -i neo4j-0 -n graph --";
    let admin = standin("standin_neo4j_admin.py");
    let cmds = env.commands();
    assert_eq!(cmds.len(), 6, "{cmds:?}");
    let dir = cmds[0]
        .strip_prefix(&format!("{w} mkdir -p "))
        .unwrap_or_else(|| panic!("{cmds:?}"));
    assert!(
        dir.starts_with(&format!("{}/lifeboat-", pod.display())),
        "{dir}"
    );
    let artifact = format!("{dir}/neo4j-2025-01-02T03-04-05.backup");
    assert_eq!(
        cmds[1..],
        [
            format!("{w} {admin} database backup neo4j --to-path={dir}"),
            "neo4j-admin database backup neo4j --to-path=".to_string() + dir,
            format!("{w} ls -1 {dir}"),
            format!("{w} cat {artifact}"),
            format!("{w} rm -r -f {dir}"),
        ]
    );
    assert_eq!(
        std::fs::read_dir(&pod).unwrap().count(),
        0,
        "backup folder left in the pod"
    );
    assert_eq!(
        env.manifest(&id)["engine"]["artifact"],
        "neo4j-2025-01-02T03-04-05.backup"
    );

    env.set_state(|s| s["graph"] = changed_graph());
    env.clear_log();
    let out = env.run(&["restore", "graph", "--to", "neo4j", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cmds = env.commands();
    assert_eq!(cmds.len(), 5, "{cmds:?}");
    let dir = cmds[0]
        .strip_prefix(&format!("{w} mkdir -p "))
        .unwrap_or_else(|| panic!("{cmds:?}"));
    assert!(
        dir.starts_with(&format!("{}/lifeboat-restore-", pod.display())),
        "{dir}"
    );
    let file = format!("{dir}/neo4j.backup");
    assert_eq!(
        cmds[1..],
        [
            format!("{w} dd of={file} bs=1M"),
            format!(
                "{w} {admin} database restore --from-path={file} neo4j --overwrite-destination=true"
            ),
            format!(
                "neo4j-admin database restore --from-path={file} neo4j --overwrite-destination=true"
            ),
            format!("{w} rm -r -f {dir}"),
        ]
    );
    assert_eq!(
        std::fs::read_dir(&pod).unwrap().count(),
        0,
        "restore folder left in the pod"
    );
    assert_eq!(env.state()["graph"], graph());
}
