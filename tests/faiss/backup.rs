//! Backups: counts equal what faiss reports, damaged indexes and files that change
//! during the copy never reach a repository.

use crate::cloud::local_repo;
use crate::common::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

#[test]
fn the_manifest_counts_equal_what_faiss_reports_for_each_index_type() {
    let env = Env::new();
    let repo = env.dir.path().join("repo");
    env.policy(
        &[("local", local_repo(&repo))],
        &[("vectors", env.all_paths(), "")],
    );
    let id = env.backup("vectors");

    let rows = env.list();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let counts = &rows[0]["counts"];
    for (name, _) in INDEXES {
        assert_eq!(
            counts[format!("vectors.{name}")].as_u64(),
            Some(env.fact(name, "ntotal")),
            "{name}: {counts}"
        );
        assert_eq!(
            counts[format!("dim.{name}")].as_u64(),
            Some(env.fact(name, "d")),
            "{name}: {counts}"
        );
    }
    // Two counts per index, none for the sidecar.
    assert_eq!(
        counts.as_object().unwrap().len(),
        2 * INDEXES.len(),
        "{counts}"
    );

    // The manifest records each file's type code and SHA-256.
    let m = local_manifest(&repo, "vectors", &id);
    let files = m["engine"]["files"].as_array().unwrap();
    let expected: Vec<(&str, &str)> = INDEXES
        .iter()
        .copied()
        .chain([(SIDECAR, "sidecar")])
        .collect();
    assert_eq!(files.len(), expected.len());
    for (f, (name, code)) in files.iter().zip(expected) {
        assert_eq!(f["name"], name);
        assert_eq!(f["type"], code, "{f}");
        assert_eq!(
            f["sha256"].as_str().unwrap(),
            sha256_file(&env.src.join(name))
        );
    }
    assert_eq!(
        files[0]["class"],
        env.facts["indexes"]["flat_l2.faiss"]["type"]
    );
}

#[test]
fn a_truncated_index_fails_the_backup_and_nothing_is_committed() {
    let env = Env::new();
    let repo = env.dir.path().join("repo");
    env.policy(
        &[("local", local_repo(&repo))],
        &[("vectors", env.all_paths(), "")],
    );

    // Cut inside the header of the IVF index...
    let ivf = env.src.join("ivf_flat.faiss");
    let bytes = std::fs::read(&ivf).unwrap();
    std::fs::write(&ivf, &bytes[..20]).unwrap();
    let out = env.run(&["backup", "vectors"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&ivf.display().to_string()), "{err}");
    assert!(err.contains("truncated"), "{err}");
    std::fs::write(&ivf, &bytes).unwrap();

    // ...and inside the vectors of the flat index, whose header is whole.
    let flat = env.src.join("flat_l2.faiss");
    let len = std::fs::metadata(&flat).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&flat)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let out = env.run(&["backup", "vectors"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&flat.display().to_string()), "{err}");
    assert!(err.contains("truncated or damaged"), "{err}");

    assert!(env.list().is_empty());
    assert!(manifests_under(&repo).is_empty());
    assert!(env.spool_is_empty());
}

#[test]
fn an_index_rewritten_during_the_copy_fails_the_backup_naming_it() {
    let env = Env::new();
    let repo = env.dir.path().join("repo");
    let big = env.src.join("big.faiss");
    make_faiss(&["big", big.to_str().unwrap(), "64"]);
    env.policy(
        &[("local", local_repo(&repo))],
        &[("vectors", vec![big.clone(), env.src.join(SIDECAR)], "")],
    );

    // A writer that keeps updating vectors in place, as a serving application would.
    let stop = env.dir.path().join("stop-writer");
    let mut writer = make_faiss_cmd(&["churn", big.to_str().unwrap(), stop.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(writer.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");

    let out = env.run(&["backup", "vectors"]);
    std::fs::write(&stop, b"").unwrap();
    assert!(writer.wait().unwrap().success());

    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&big.display().to_string()), "{err}");
    assert!(err.contains("changed while it was copied"), "{err}");
    assert!(err.contains("in each of 3 attempts"), "{err}");
    assert!(env.list().is_empty());
    assert!(manifests_under(&repo).is_empty());
    assert!(env.spool_is_empty());

    // Once the writer is idle, the copy is the file as it is.
    let id = env.backup("vectors");
    let m = local_manifest(&repo, "vectors", &id);
    assert_eq!(
        m["engine"]["files"][0]["sha256"].as_str().unwrap(),
        sha256_file(&big)
    );
    assert_eq!(m["engine"]["attempts"], 1);
}
