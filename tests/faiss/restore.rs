//! Restores from a local repository and from S3, `lifeboat compare`, and post-restore.

use crate::cloud::{local_repo, s3_repo};
use crate::common::*;
use crate::moto;
use std::path::Path;
use std::time::{Duration, Instant};

fn assert_same_files(env: &Env, restored: &Path) {
    for p in env.all_paths() {
        let name = p.file_name().unwrap();
        assert_eq!(
            std::fs::read(restored.join(name)).unwrap(),
            std::fs::read(&p).unwrap(),
            "{} differs from its source",
            name.to_string_lossy()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn restores_from_local_and_s3_are_identical_and_compare_sees_a_missing_vector() {
    let s3 = moto::client().await;
    let bucket = moto::bucket_name("faiss");
    moto::create_bucket(&s3, &bucket).await;
    let env = Env::new();
    let repo = env.dir.path().join("repo");
    env.policy(
        &[
            ("local", local_repo(&repo)),
            ("s3", s3_repo(&moto::endpoint(), &bucket)),
        ],
        &[("vectors", env.all_paths(), "")],
    );
    env.backup("vectors");
    let rows = env.list();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["counts"], rows[1]["counts"]);

    for from in ["local", "s3"] {
        let target = env.dir.path().join(format!("restored-{from}"));
        let t = target.to_str().unwrap();
        let out = env.run(&["restore", "vectors", "--from", from, "--to", t]);
        assert!(
            out.status.success(),
            "restore from {from}: {}",
            stderr(&out)
        );
        assert_same_files(&env, &target);
        let out = env.run(&["compare", "vectors", "--to", t]);
        assert!(out.status.success(), "compare: {}", stderr(&out));

        // A restore never overwrites what is there unless told to.
        let out = env.run(&["restore", "vectors", "--from", from, "--to", t]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    }

    // One vector fewer in a restored index: compare names the index and both counts.
    let target = env.dir.path().join("restored-s3");
    let index = target.join("flat_l2.faiss");
    let n = env.fact("flat_l2.faiss", "ntotal");
    let now = make_faiss(&["drop-one", index.to_str().unwrap()]);
    assert_eq!(now["ntotal"].as_u64(), Some(n - 1));
    let out = env.run(&["compare", "vectors", "--to", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "vectors.flat_l2.faiss: expected {n}, actual {}",
            n - 1
        )),
        "{err}"
    );

    // --force puts the backed-up index back.
    let out = env.run(&[
        "restore",
        "vectors",
        "--from",
        "s3",
        "--force",
        "--to",
        target.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_files(&env, &target);
}

#[test]
fn post_restore_runs_after_the_files_are_in_place_and_is_killed_at_its_timeout() {
    let env = Env::new();
    let repo = env.dir.path().join("repo");
    let marker = env.dir.path().join("marker");
    // The files must be in place when it runs; it runs in the target folder.
    let hook = format!(
        "post-restore = [\"sh\", \"-c\", \"test -s flat_l2.faiss && test -s ids.json && printf %s \\\"$LIFEBOAT_RESTORE_DIR\\\" > {}\"]",
        marker.display()
    );
    env.policy(
        &[("local", local_repo(&repo))],
        &[
            ("vectors", env.all_paths(), &hook),
            (
                "slow",
                env.all_paths(),
                "post-restore = [\"sleep\", \"60\"]\npost-restore-timeout = \"1s\"",
            ),
        ],
    );
    env.backup("vectors");
    env.backup("slow");

    let target = env.dir.path().join("restored");
    let out = env.run(&["restore", "vectors", "--to", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        target.display().to_string()
    );

    let slow_target = env.dir.path().join("restored-slow");
    let started = Instant::now();
    let out = env.run(&["restore", "slow", "--to", slow_target.to_str().unwrap()]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // The run failed (exit 1), but as a step after the restore, not as bad input.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("`sleep 60` timed out after 1s"), "{err}");
    assert!(err.contains("restored files are in place"), "{err}");
    // The timeout is the command's; the restore itself went through.
    assert_same_files(&env, &slow_target);
}

/// A DR restore of a faiss source killed while it staged (here: killed before its
/// effect, the staging state then laid out as a kill mid-stage leaves it: the target
/// folder created, a partial staging copy in it) is not taken for done by
/// `dr resume`: it restores again, and only the restore's own marker proves a swap.
#[test]
fn resume_does_not_take_a_half_finished_faiss_restore_for_done() {
    let env = Env::new();
    let repo = env.dir.path().join("repo");
    env.policy(
        &[("local", local_repo(&repo))],
        &[("vectors", env.all_paths(), "")],
    );
    let target = env.dir.path().join("restored");
    std::fs::create_dir_all(env.policies.join("dr")).unwrap();
    std::fs::write(
        env.policies.join("dr").join("vec.toml"),
        format!(
            "name = \"vec\"\nrto = \"10m\"\nrpo = \"1d\"\n\n[[steps]]\nid = \"restore\"\nkind = \"restore\"\nsource = \"vectors\"\ntarget = \"{}\"\n",
            target.display()
        ),
    )
    .unwrap();
    env.backup("vectors");
    let out = env
        .cmd()
        .args(["dr", "run", "vec"])
        .env("LIFEBOAT_FAILPOINT", "dr.step.restore.before-effect")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", stderr(&out));
    // What the kill mid-stage leaves: the folder, and part of one staged file, owned by
    // a process that is gone.
    let gone = {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    };
    std::fs::create_dir_all(&target).unwrap();
    let partial = target.join(format!(
        ".flat_l2.faiss.lifeboat-staging.{gone}.{}.vectors.b.partial",
        host_tag()
    ));
    std::fs::write(
        &partial,
        &std::fs::read(env.src.join("flat_l2.faiss")).unwrap()[..64],
    )
    .unwrap();

    let status = env.run(&["--json", "dr", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let run = status["run-id"].as_str().unwrap().to_string();
    let out = env.run(&["--json", "dr", "resume", &run]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_files(&env, &target);
    assert!(!partial.exists(), "the dead restore's staging copy is left");
}

/// The host part of a staging copy's name: a digest of the host name.
fn host_tag() -> String {
    use sha2::Digest;
    let host = gethostname::gethostname();
    hex::encode(&sha2::Sha256::digest(host.to_string_lossy().as_bytes())[..4])
}
