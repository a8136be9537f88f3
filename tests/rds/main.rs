//! Black-box tests of the RDS engine against moto's RDS and KMS APIs (started by
//! scripts/test.sh): snapshots, cross-region copies, verification, retention by tag,
//! and the freshness read from a real PostgreSQL server.

#[path = "../support/moto.rs"]
mod moto;
#[path = "../support/postgres.rs"]
mod postgres;
#[path = "../support/util.rs"]
mod util;

use assert_cmd::Command;
use aws_sdk_rds::types::Tag;
use serde_json::Value;
use std::path::PathBuf;
use util::{local_repo, s3_repo, stderr, stdout};

const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";

async fn rds(region: &str) -> aws_sdk_rds::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .load()
        .await;
    aws_sdk_rds::Client::from_conf(
        aws_sdk_rds::config::Builder::from(&shared)
            .endpoint_url(moto::endpoint())
            .build(),
    )
}

async fn kms_key(region: &str) -> String {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .load()
        .await;
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&shared)
            .endpoint_url(moto::endpoint())
            .build(),
    );
    let key = kms.create_key().send().await.unwrap();
    key.key_metadata().unwrap().arn().unwrap().to_string()
}

/// A new PostgreSQL instance in moto (us-east-1); returns its identifier.
async fn create_instance(tag: &str) -> String {
    let id = format!("lb-{tag}-{:08x}", rand::random::<u32>());
    rds(EAST)
        .await
        .create_db_instance()
        .db_instance_identifier(&id)
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .engine_version("16.3")
        .master_username("app")
        .master_user_password("not-used-by-lifeboat")
        .allocated_storage(20)
        .send()
        .await
        .unwrap();
    id
}

/// Manual snapshots of `instance` in `region`: (id, tags as key=value).
async fn manual_snapshots(region: &str, instance: &str) -> Vec<(String, Vec<String>)> {
    let c = rds(region).await;
    let out = c
        .describe_db_snapshots()
        .snapshot_type("manual")
        .send()
        .await
        .unwrap();
    let mut found = Vec::new();
    for s in out.db_snapshots() {
        if s.db_instance_identifier() != Some(instance) {
            continue;
        }
        let tags = c
            .list_tags_for_resource()
            .resource_name(s.db_snapshot_arn().unwrap())
            .send()
            .await
            .unwrap();
        let tags = tags
            .tag_list()
            .iter()
            .map(|t| format!("{}={}", t.key().unwrap_or(""), t.value().unwrap_or("")))
            .collect::<Vec<_>>();
        let mut tags = tags;
        tags.sort();
        found.push((s.db_snapshot_identifier().unwrap().to_string(), tags));
    }
    found.sort();
    found
}

struct Env {
    dir: tempfile::TempDir,
    policies: PathBuf,
}

impl Env {
    /// A policy set with one rds source `db` of `instance`, to a local repository and
    /// a bucket on moto; `extra` is appended to the source table.
    async fn new(instance: &str, extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let bucket = moto::bucket_name("rds");
        moto::create_bucket(&moto::client().await, &bucket).await;
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        std::fs::write(
            policies.join("lifeboat.toml"),
            format!(
                "[repositories.local]\n{}\n\n[repositories.s3]\n{}\n\n\
                 [sources.db]\nkind = \"rds\"\ninstance = \"{instance}\"\nregion = \"{EAST}\"\n\
                 endpoint = \"{}\"\nwait-timeout = \"30s\"\ndestinations = [\"s3\", \"local\"]\n{extra}\n",
                local_repo(&dir.path().join("repo")),
                s3_repo(&moto::endpoint(), &bucket),
                moto::endpoint(),
            ),
        )
        .unwrap();
        Env { dir, policies }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("lifeboat").unwrap();
        c.arg("--policies")
            .arg(&self.policies)
            .env_remove("LIFEBOAT_FAILPOINT")
            .env_remove("LIFEBOAT_NOW")
            .env("LIFEBOAT_SPOOL_DIR", self.dir.path().join("spool"));
        c
    }

    fn list(&self) -> Vec<Value> {
        let out = self.cmd().args(["--json", "list"]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_is_copied_to_the_dr_region_listed_and_verified() {
    let instance = create_instance("copy").await;
    let key = kms_key(WEST).await;
    let env = Env::new(
        &instance,
        &format!("copy-to-regions = [{{ region = \"{WEST}\", kms-key-id = \"{key}\" }}]"),
    )
    .await;
    let out = env.cmd().args(["--json", "backup", "db"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let backup_id = report["backups"][0]["backup-id"]
        .as_str()
        .unwrap()
        .to_string();

    // moto holds a tagged manual snapshot in each region, named after the backup.
    let tags = vec![
        format!("lifeboat:backup-id={backup_id}"),
        "lifeboat:source=db".to_string(),
    ];
    let east = manual_snapshots(EAST, &instance).await;
    assert_eq!(east.len(), 1, "{east:?}");
    assert_eq!(east[0].1, tags);
    let snapshot_id = east[0].0.clone();
    assert!(snapshot_id.starts_with("lifeboat-db-"), "{snapshot_id}");
    let west_copy = rds(WEST)
        .await
        .describe_db_snapshots()
        .db_snapshot_identifier(&snapshot_id)
        .send()
        .await
        .unwrap();
    let copy = &west_copy.db_snapshots()[0];
    assert_eq!(copy.status(), Some("available"));
    assert_eq!(copy.kms_key_id(), Some(key.as_str()));

    // Both repositories hold the backup; the manifest records snapshot and copy.
    let rows = env.list();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert_eq!(r["kind"], "rds");
        assert_eq!(r["backup-id"], backup_id.as_str());
        let e = &r["engine"];
        assert_eq!(e["instance"], instance.as_str());
        assert_eq!(e["engine"], "postgres");
        assert_eq!(e["engine-version"], "16.3");
        assert_eq!(e["snapshot"]["id"], snapshot_id.as_str());
        assert_eq!(e["snapshot"]["region"], EAST);
        assert!(
            e["snapshot"]["arn"]
                .as_str()
                .unwrap()
                .contains(":us-east-1:")
        );
        assert_eq!(e["copies"][0]["region"], WEST);
        assert!(
            e["copies"][0]["arn"]
                .as_str()
                .unwrap()
                .contains(":us-west-2:")
        );
        // The consistency point is the snapshot's creation time.
        assert_eq!(r["consistency-point"], e["created-at"]);
    }

    let out = env
        .cmd()
        .args(["verify", "--source", "db"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // A copy deleted behind lifeboat's back makes the backup unrestorable in the DR
    // region: verification fails and names it.
    rds(WEST)
        .await
        .delete_db_snapshot()
        .db_snapshot_identifier(&snapshot_id)
        .send()
        .await
        .unwrap();
    let out = env
        .cmd()
        .args(["verify", "--source", "db"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains(&format!("snapshot {snapshot_id} in {WEST} does not exist")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_deletes_an_expired_snapshot_and_its_copy_and_nothing_it_did_not_make() {
    let instance = create_instance("prune").await;
    let key = kms_key(WEST).await;
    let env = Env::new(
        &instance,
        &format!(
            "copy-to-regions = [{{ region = \"{WEST}\", kms-key-id = \"{key}\" }}]\nretention = {{ keep-last = 1 }}"
        ),
    )
    .await;
    // A snapshot an operator made by hand, and one tagged for another source.
    let east = rds(EAST).await;
    for (id, tags) in [
        (format!("{instance}-by-hand"), vec![]),
        (
            format!("{instance}-other"),
            vec![
                Tag::builder().key("lifeboat:source").value("other").build(),
                Tag::builder()
                    .key("lifeboat:backup-id")
                    .value("20261101T000000Z-0000")
                    .build(),
            ],
        ),
    ] {
        east.create_db_snapshot()
            .db_snapshot_identifier(id)
            .db_instance_identifier(&instance)
            .set_tags(Some(tags))
            .send()
            .await
            .unwrap();
    }

    let old = env
        .cmd()
        .args(["--json", "backup", "db"])
        .env("LIFEBOAT_NOW", "2026-11-01T03:00:00Z")
        .output()
        .unwrap();
    assert!(old.status.success(), "{}", stderr(&old));
    let old_id = serde_json::from_slice::<Value>(&old.stdout).unwrap()["backups"][0]["backup-id"]
        .as_str()
        .unwrap()
        .to_string();
    let new = env.cmd().args(["--json", "backup", "db"]).output().unwrap();
    assert!(new.status.success(), "{}", stderr(&new));
    let new_id = serde_json::from_slice::<Value>(&new.stdout).unwrap()["backups"][0]["backup-id"]
        .as_str()
        .unwrap()
        .to_string();
    let names = |v: &[(String, Vec<String>)]| v.iter().map(|s| s.0.clone()).collect::<Vec<_>>();
    assert_eq!(manual_snapshots(EAST, &instance).await.len(), 4);
    assert_eq!(manual_snapshots(WEST, &instance).await.len(), 2);

    // Prune deletes nothing from a source without a verified backup.
    env.cmd().args(["verify", "--all"]).assert().success();
    // A dry run sends no mutating call to AWS (recorded by the client layer).
    let record = env.dir.path().join("aws-operations");
    let out = env
        .cmd()
        .args(["prune", "db", "--dry-run"])
        .env("LIFEBOAT_AWS_RECORD", &record)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let sent = std::fs::read_to_string(&record).unwrap_or_default();
    assert!(sent.contains("S3:ListObjectsV2"), "{sent}");
    let mutating: Vec<&str> = sent
        .lines()
        .filter(|op| {
            let name = op.rsplit(':').next().unwrap_or("");
            [
                "Create", "Copy", "Delete", "Put", "Complete", "Abort", "Restore", "Modify",
            ]
            .iter()
            .any(|verb| name.starts_with(verb))
        })
        .collect();
    assert!(mutating.is_empty(), "a dry run sent {mutating:?}");
    assert_eq!(manual_snapshots(EAST, &instance).await.len(), 4);

    std::fs::remove_file(&record).ok();
    let out = env
        .cmd()
        .args(["prune", "db"])
        .env("LIFEBOAT_AWS_RECORD", &record)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("deleted snapshot lifeboat-db-"), "{text}");
    // Exactly the old snapshot and its copy were deleted, each after its tags were read.
    let sent = std::fs::read_to_string(&record).unwrap();
    let deletes = sent
        .lines()
        .filter(|l| *l == "RDS:DeleteDBSnapshot")
        .count();
    assert_eq!(deletes, 2, "{sent}");
    let first_tags = sent.lines().position(|l| l == "RDS:ListTagsForResource");
    let first_delete = sent.lines().position(|l| l == "RDS:DeleteDBSnapshot");
    assert!(first_tags < first_delete, "{sent}");

    let old_snap = format!("lifeboat-db-{}", old_id.to_ascii_lowercase());
    let new_snap = format!("lifeboat-db-{}", new_id.to_ascii_lowercase());
    let mut want_east = vec![
        format!("{instance}-by-hand"),
        format!("{instance}-other"),
        new_snap.clone(),
    ];
    want_east.sort();
    assert_eq!(names(&manual_snapshots(EAST, &instance).await), want_east);
    assert_eq!(
        names(&manual_snapshots(WEST, &instance).await),
        vec![new_snap.clone()]
    );
    assert!(!want_east.contains(&old_snap));
    // moto's automated snapshot of the instance is untouched too.
    let automated = east
        .describe_db_snapshots()
        .db_instance_identifier(&instance)
        .snapshot_type("automated")
        .send()
        .await
        .unwrap();
    assert!(!automated.db_snapshots().is_empty());

    let rows = env.list();
    assert!(
        rows.iter().all(|r| r["backup-id"] == new_id.as_str()),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_that_fails_fails_the_backup_and_leaves_no_snapshot_behind() {
    let instance = create_instance("nokey").await;
    let env = Env::new(
        &instance,
        &format!(
            "copy-to-regions = [{{ region = \"{WEST}\", kms-key-id = \"arn:aws:kms:{WEST}:123456789012:key/00000000-0000-0000-0000-000000000000\" }}]"
        ),
    )
    .await;
    let out = env.cmd().args(["backup", "db"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("to {WEST}")), "{err}");
    assert!(env.list().is_empty());
    assert!(manual_snapshots(EAST, &instance).await.is_empty());
    assert!(manual_snapshots(WEST, &instance).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_freshness_read_after_the_snapshot_is_recorded_as_approximate() {
    let db = postgres::db_name("rdsfresh");
    postgres::create_db(&db, 3, 50).await;
    let instance = create_instance("fresh").await;
    let pw_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pw_file.path(), postgres::password()).unwrap();
    let env = Env::new(
        &instance,
        &format!(
            "freshness = {{ url = \"{}\", password-file = \"{}\", query = \"SELECT max(created_at) FROM tasks\", ssl-root-cert = \"{}\" }}",
            postgres::url(&db),
            pw_file.path().display(),
            postgres::ca()
        ),
    )
    .await;
    let out = env.cmd().args(["backup", "db"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = env.list();
    let f = &rows[0]["engine"]["freshness"];
    assert_eq!(f["approximate"], true);
    assert_eq!(f["query"], "SELECT max(created_at) FROM tasks");
    // create_db writes tasks one second apart from 2026-11-01T00:00:00Z.
    let value: chrono::DateTime<chrono::Utc> = f["value"].as_str().unwrap().parse().unwrap();
    assert_eq!(value.to_rfc3339(), "2026-11-01T00:00:50+00:00");
    // The password appears nowhere the tool writes.
    let manifest_text: String = util::files_under(&env.dir.path().join("repo"))
        .iter()
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect();
    assert!(!manifest_text.contains(&postgres::password()));
    assert!(!stderr(&out).contains(&postgres::password()));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_rds_backup_is_not_restored_as_a_stream() {
    let instance = create_instance("norestore").await;
    let env = Env::new(&instance, "").await;
    env.cmd().args(["backup", "db"]).assert().success();
    let out = env
        .cmd()
        .args(["restore", "db", "--to", "somewhere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("restore-db-instance-from-db-snapshot"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_finds_the_instance_and_a_missing_kms_key() {
    let instance = create_instance("doctor").await;
    let key = kms_key(WEST).await;
    let env = Env::new(
        &instance,
        &format!(
            "copy-to-regions = [{{ region = \"{WEST}\", kms-key-id = \"{key}\" }}, {{ region = \"eu-west-1\", kms-key-id = \"alias/missing\" }}]"
        ),
    )
    .await;
    let out = env.cmd().args(["--json", "doctor"]).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = report.to_string();
    assert!(
        text.contains(&format!("{instance} in {EAST}: postgres 16.3")),
        "{text}"
    );
    assert!(text.contains("kms key in us-west-2"), "{text}");
    assert!(text.contains("alias/missing in eu-west-1"), "{text}");
    assert_ne!(out.status.code(), Some(0), "a missing key fails doctor");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_whose_backup_never_committed_is_swept_after_the_grace_period() {
    let instance = create_instance("orphan").await;
    let key = kms_key(WEST).await;
    let env = Env::new(
        &instance,
        &format!("copy-to-regions = [{{ region = \"{WEST}\", kms-key-id = \"{key}\" }}]"),
    )
    .await;
    // The process dies after the snapshot and the uploads, before any manifest.
    let out = env
        .cmd()
        .args(["backup", "db"])
        .env("LIFEBOAT_FAILPOINT", "backup.before-manifest")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(env.list().is_empty());
    assert_eq!(manual_snapshots(EAST, &instance).await.len(), 1);
    assert_eq!(manual_snapshots(WEST, &instance).await.len(), 1);

    // Within 24 hours it may belong to a run still going elsewhere: left alone.
    env.cmd().args(["prune", "db"]).assert().success();
    assert_eq!(manual_snapshots(EAST, &instance).await.len(), 1);

    let later = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let out = env
        .cmd()
        .args(["prune", "db"])
        .env("LIFEBOAT_NOW", &later)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("was never committed"),
        "{}",
        stdout(&out)
    );
    assert!(manual_snapshots(EAST, &instance).await.is_empty());
    assert!(manual_snapshots(WEST, &instance).await.is_empty());
}
