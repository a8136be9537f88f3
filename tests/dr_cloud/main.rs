//! The region-failover DR steps against real peers: moto for RDS and Route53 (started by
//! scripts/test.sh), real PostgreSQL, Redis and FAISS restores through the engines, and
//! a helm/kubectl STAND-IN (no Kubernetes cluster can run here; `standin_helm.py`
//! accepts exactly the command lines the helm step sends and can be told to fail or
//! hang). moto answers at once, so the crash tests use failpoints, not timing.

#[path = "../support/moto.rs"]
mod moto;
#[path = "../support/postgres.rs"]
mod postgres;
#[path = "../support/redis.rs"]
mod redis;
#[path = "../support/util.rs"]
mod util;

mod node;

use assert_cmd::Command;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HealthCheckConfig, HealthCheckType, ResourceRecord,
    ResourceRecordSet, ResourceRecordSetFailover, RrType,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use util::{local_repo, stderr};

const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";

async fn shared(region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .endpoint_url(moto::endpoint())
        .load()
        .await
}

async fn rds(region: &str) -> aws_sdk_rds::Client {
    aws_sdk_rds::Client::new(&shared(region).await)
}

/// A PostgreSQL DB instance in moto.
async fn create_instance(region: &str, id: &str) {
    rds(region)
        .await
        .create_db_instance()
        .db_instance_identifier(id)
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .engine_version("16.3")
        .master_username("app")
        .master_user_password("not-used-by-lifeboat")
        .allocated_storage(20)
        .send()
        .await
        .unwrap();
}

async fn route53() -> aws_sdk_route53::Client {
    aws_sdk_route53::Client::new(&shared(EAST).await)
}

/// A set with an `rds` source (a moto instance in us-east-1 whose snapshots lifeboat
/// copies to us-west-2), and optionally real postgres, redis and faiss sources; a
/// hosted zone with PRIMARY/SECONDARY records; the helm stand-in.
struct Env {
    dir: tempfile::TempDir,
    policies: PathBuf,
    tag: String,
    source: String,
    zone: String,
    zone_name: String,
    health_check: String,
    bin: PathBuf,
    record: PathBuf,
    /// Real peers restored by the drill: (postgres db, redis server, faiss folder).
    pg_db: Option<String>,
    /// The Redis server backed up; kept running while the test uses the set.
    _redis: Option<redis::Server>,
}

fn python() -> PathBuf {
    std::env::var_os("LIFEBOAT_TEST_PYTHON")
        .map(PathBuf::from)
        .expect("LIFEBOAT_TEST_PYTHON is not set: run the tests through scripts/test.sh")
}

impl Env {
    async fn new(with_data: bool) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(policies.join("dr")).unwrap();
        let tag = format!("{:08x}", rand::random::<u32>());
        let source = format!("rds-{tag}");

        // The production instance in us-east-1 and a KMS key for the copies in us-west-2.
        let instance = format!("lb-prod-{tag}");
        create_instance(EAST, &instance).await;
        let kms = aws_sdk_kms::Client::new(&shared(WEST).await);
        let key = kms.create_key().send().await.unwrap();
        let key = key.key_metadata().unwrap().arn().unwrap().to_string();

        // The zone, with the primary in us-east-1 and the secondary in us-west-2.
        let r53 = route53().await;
        let zone_name = format!("lb-{tag}.example.");
        let z = r53
            .create_hosted_zone()
            .name(&zone_name)
            .caller_reference(&tag)
            .send()
            .await
            .unwrap();
        let zone = z
            .hosted_zone()
            .unwrap()
            .id()
            .trim_start_matches("/hostedzone/")
            .to_string();
        let hc = r53
            .create_health_check()
            .caller_reference(format!("hc-{tag}"))
            .health_check_config(
                HealthCheckConfig::builder()
                    .r#type(HealthCheckType::Https)
                    .fully_qualified_domain_name(format!("api.west.{zone_name}"))
                    .port(443)
                    .resource_path("/healthz")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let health_check = hc.health_check().unwrap().id().to_string();
        let api = format!("api.{zone_name}");
        let rr = |set: &str, fo: ResourceRecordSetFailover, value: &str| {
            ResourceRecordSet::builder()
                .name(&api)
                .r#type(RrType::Cname)
                .ttl(60)
                .set_identifier(set)
                .failover(fo)
                .resource_records(ResourceRecord::builder().value(value).build().unwrap())
                .build()
                .unwrap()
        };
        let www = ResourceRecordSet::builder()
            .name(format!("www.{zone_name}"))
            .r#type(RrType::A)
            .ttl(300)
            .resource_records(
                ResourceRecord::builder()
                    .value("192.0.2.10")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let changes = [
            rr(
                "east",
                ResourceRecordSetFailover::Primary,
                "api.east.example",
            ),
            rr(
                "west",
                ResourceRecordSetFailover::Secondary,
                "api.west.example",
            ),
            www,
        ]
        .into_iter()
        .map(|r| {
            Change::builder()
                .action(ChangeAction::Create)
                .resource_record_set(r)
                .build()
                .unwrap()
        })
        .collect::<Vec<_>>();
        r53.change_resource_record_sets()
            .hosted_zone_id(&zone)
            .change_batch(
                ChangeBatch::builder()
                    .set_changes(Some(changes))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();

        // The helm and kubectl stand-ins (one script that tells them apart by its name),
        // with release bizra at revision 3 in namespace bizra.
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dr_cloud/standin_helm.py");
        for name in ["helm", "kubectl"] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::copy(&script, bin.join(name)).unwrap();
            std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        std::fs::write(
            bin.join("state.json"),
            r#"{"_namespaces": ["bizra"], "bizra/bizra": [
                {"revision": 1, "status": "superseded", "chart": "charts/bizra"},
                {"revision": 2, "status": "superseded", "chart": "charts/bizra"},
                {"revision": 3, "status": "deployed", "chart": "charts/bizra"}]}"#,
        )
        .unwrap();
        std::fs::write(policies.join("values-dr.yaml"), "region: us-west-2\n").unwrap();

        let mut text = format!(
            "[repositories.local]\n{}\n\n[sources.{source}]\nkind = \"rds\"\ninstance = \"{instance}\"\nregion = \"{EAST}\"\nendpoint = \"{}\"\nwait-timeout = \"30s\"\ncopy-to-regions = [{{ region = \"{WEST}\", kms-key-id = \"{key}\" }}]\ndestinations = [\"local\"]\n\n",
            local_repo(&dir.path().join("repo")),
            moto::endpoint(),
        );
        let (mut pg_db, mut redis_server) = (None, None);
        if with_data {
            let db = postgres::db_name("drc");
            postgres::create_db(&db, 20, 50).await;
            text.push_str(&format!(
                "[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\npassword-env = \"LIFEBOAT_TEST_PG_PASSWORD\"\nssl-root-cert = \"{}\"\ndestinations = [\"local\"]\n\n",
                postgres::url(&db),
                postgres::ca()
            ));
            pg_db = Some(db);
            let server = redis::Server::start();
            server.fill(0, "session", 40, None);
            text.push_str(&format!(
                "[sources.cache]\nkind = \"redis\"\nurl = \"{}\"\ndestinations = [\"local\"]\n\n",
                server.url()
            ));
            redis_server = Some(server);
            let src = dir.path().join("faiss-src");
            let out = std::process::Command::new(python())
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_faiss.py"))
                .args(["write", src.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(out.status.success(), "make_faiss.py: {}", stderr(&out));
            text.push_str(&format!(
                "[sources.vectors]\nkind = \"faiss\"\npaths = [{:?}, {:?}]\ndestinations = [\"local\"]\n\n",
                src.join("flat_l2.faiss").display().to_string(),
                src.join("ids.json").display().to_string()
            ));
        }
        std::fs::write(policies.join("lifeboat.toml"), text).unwrap();
        let record = dir.path().join("aws-operations.log");
        Env {
            dir,
            policies,
            tag,
            source,
            zone,
            zone_name,
            health_check,
            bin,
            record,
            pg_db,
            _redis: redis_server,
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("lifeboat").unwrap();
        c.arg("--policies")
            .arg(&self.policies)
            .env_remove("LIFEBOAT_POLICIES")
            .env_remove("LIFEBOAT_FAILPOINT")
            .env("AWS_ENDPOINT_URL", moto::endpoint())
            .env("LIFEBOAT_AWS_RECORD", &self.record)
            .env("LIFEBOAT_SPOOL_DIR", self.dir.path().join("spool"))
            .timeout(std::time::Duration::from_secs(180));
        c
    }

    fn json(&self, args: &[&str], failpoint: Option<&str>) -> (Option<i32>, Value, String) {
        let mut c = self.cmd();
        if let Some(fp) = failpoint {
            c.env("LIFEBOAT_FAILPOINT", fp);
        }
        let out = c.arg("--json").args(args).output().unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code(), v, stderr(&out))
    }

    /// Back up every source (the rds one makes a snapshot and its copy in us-west-2).
    fn backup(&self) {
        let out = self.cmd().args(["backup", "--all"]).output().unwrap();
        assert!(out.status.success(), "backup: {}", stderr(&out));
    }

    fn target_instance(&self) -> String {
        format!("lb-dr-{}", self.tag)
    }

    fn plan(&self, name: &str, text: &str) {
        std::fs::write(self.policies.join("dr").join(format!("{name}.toml")), text).unwrap();
    }

    /// The runbook's shape: RDS, (restores), helm after them, (integrity), DNS last.
    fn region_plan(&self, helm_timeout: &str, with_data: bool) -> String {
        let mut after = vec!["\"rds\"".to_string()];
        let mut text = format!(
            r#"name = "region"
rto = "1h"
rpo = "6h"
region = "{WEST}"

[[steps]]
id = "rds"
kind = "rds_restore"
tag = {{ "lifeboat:source" = "{source}" }}
target = "{target}"
instance-class = "db.t3.micro"
timeout = "2m"
on-failure = "rollback"
"#,
            source = self.source,
            target = self.target_instance(),
        );
        let mut checks = Vec::new();
        if with_data {
            let pg_target = postgres::url(&format!("{}_dr", self.pg_db.as_ref().unwrap()));
            for (id, source, target) in [
                ("pg", "pg", pg_target),
                (
                    "cache",
                    "cache",
                    self.dir.path().join("dr/redis").display().to_string(),
                ),
                (
                    "vectors",
                    "vectors",
                    self.dir.path().join("dr/faiss").display().to_string(),
                ),
            ] {
                text.push_str(&format!(
                    "\n[[steps]]\nid = \"{id}\"\nkind = \"restore\"\nsource = \"{source}\"\ntarget = \"{target}\"\non-failure = \"rollback\"\n"
                ));
                after.push(format!("\"{id}\""));
                // The database also gets its latest timestamp and a floor on its users.
                let queries = if id == "pg" {
                    "freshness = \"SELECT max(created_at) FROM tasks\"\nqueries = { users = \"SELECT count(*) FROM users\" }\nmin = { users = 20 }\n"
                } else {
                    ""
                };
                text.push_str(&format!(
                    "\n[[steps]]\nid = \"check-{id}\"\nkind = \"integrity\"\nafter = [\"helm\"]\nof = \"{id}\"\non-failure = \"rollback\"\n{queries}"
                ));
                checks.push(format!("\"check-{id}\""));
            }
        }
        let dns_after = if checks.is_empty() {
            "[\"helm\"]".to_string()
        } else {
            format!("[{}]", checks.join(", "))
        };
        text.push_str(&format!(
            r#"
[[steps]]
id = "helm"
kind = "helm"
after = [{after}]
release = "bizra"
chart = "charts/bizra"
namespace = "bizra"
kube-context = "dr"
values = ["values-dr.yaml"]
helm = "{helm}"
kubectl = "{kubectl}"
timeout = "{helm_timeout}"
on-failure = "rollback"
set = {{ "postgres.host" = "${{steps.rds.outputs.endpoint}}" }}

[[steps]]
id = "dns"
kind = "route53_failover"
after = {dns_after}
zone = "{zone}"
require-healthy = "{hc}"
on-failure = "rollback"
restores-service = true

[[steps.records]]
name = "api.{zn}"
type = "CNAME"
ttl = 60
set-identifier = "east"
failover = "SECONDARY"
values = ["api.east.example"]

[[steps.records]]
name = "api.{zn}"
type = "CNAME"
ttl = 60
set-identifier = "west"
failover = "PRIMARY"
values = ["api.west.example"]
"#,
            after = after.join(", "),
            helm = self.bin.join("helm").display(),
            kubectl = self.bin.join("kubectl").display(),
            zone = self.zone,
            hc = self.health_check,
            zn = self.zone_name,
        ));
        text
    }

    /// Every record set of the zone, as (name, type, set id, failover, values, ttl).
    async fn records(&self) -> Vec<String> {
        let out = route53()
            .await
            .list_resource_record_sets()
            .hosted_zone_id(&self.zone)
            .send()
            .await
            .unwrap();
        let mut v: Vec<String> = out
            .resource_record_sets()
            .iter()
            .filter(|r| !matches!(r.r#type(), RrType::Ns | RrType::Soa))
            .map(|r| {
                format!(
                    "{} {} {:?} {:?} {:?} {:?}",
                    r.name(),
                    r.r#type().as_str(),
                    r.set_identifier(),
                    r.failover().map(|f| f.as_str().to_string()),
                    r.resource_records()
                        .iter()
                        .map(|v| v.value().to_string())
                        .collect::<Vec<_>>(),
                    r.ttl()
                )
            })
            .collect();
        v.sort();
        v
    }

    /// DB instances in us-west-2 whose identifier starts with our target's.
    async fn dr_instances(&self) -> Vec<String> {
        rds(WEST)
            .await
            .describe_db_instances()
            .send()
            .await
            .unwrap()
            .db_instances()
            .iter()
            .filter_map(|i| i.db_instance_identifier())
            .filter(|id| id.starts_with(&self.target_instance()))
            .map(String::from)
            .collect()
    }

    /// The helm stand-in's calls, one argv per entry.
    fn helm_calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.bin.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The AWS operations lifeboat sent, in order.
    fn operations(&self) -> Vec<String> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn clear_operations(&self) {
        let _ = std::fs::remove_file(&self.record);
    }
}

fn step<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {report}"))
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// Reads are Describe*, List* and Get*; everything else changes something.
fn mutating(ops: &[String]) -> Vec<String> {
    ops.iter()
        .filter(|o| {
            let name = o.split(':').nth(1).unwrap_or("");
            !(name.starts_with("Describe") || name.starts_with("List") || name.starts_with("Get"))
        })
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_integrity_query_cannot_escape_its_read_only_transaction() {
    let env = Env::new(true).await;
    env.backup();
    let hostile =
        "SET TRANSACTION READ WRITE; CREATE TABLE pwned (x int); SELECT count(*) FROM users";
    env.plan(
        "region",
        &env.region_plan("2m", true).replace(
            "queries = { users = \"SELECT count(*) FROM users\" }",
            &format!("queries = {{ users = \"{hostile}\" }}"),
        ),
    );
    let (code, report, err) = env.json(&["dr", "drill", "region"], None);
    assert_ne!(code, Some(0), "a multi-statement query ran: {report:#}");
    let check = step(&report, "check-pg");
    assert!(
        check.to_string().contains("one read-only statement"),
        "{err}\n{check:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn region_failover_drill_passes_measures_and_leaves_nothing_behind() {
    let env = Env::new(true).await;
    // The newest task is ten minutes old: the oldest data point restored, so the RPO.
    postgres::connect(env.pg_db.as_ref().unwrap())
        .await
        .batch_execute("INSERT INTO tasks (user_id, title, created_at) VALUES (1, 'newest', date_trunc('second', now()) - interval '10 minutes')")
        .await
        .unwrap();
    env.backup();
    env.plan("region", &env.region_plan("2m", true));
    let records_before = env.records().await;
    let pg_dr = format!("{}_dr", env.pg_db.as_ref().unwrap());

    let (code, report, err) = env.json(&["dr", "drill", "region"], None);
    assert_eq!(code, Some(0), "{err}\n{report:#}");
    assert_eq!(report["status"], "succeeded", "{report:#}");
    assert_eq!(report["rto"]["verdict"], "PASS");
    assert_eq!(report["rpo"]["verdict"], "PASS");
    assert!(report["rto"]["achieved-secs"].as_i64().unwrap() < 3600);
    let rpo = report["rpo"]["achieved-secs"].as_i64().unwrap();
    assert!(
        (600..900).contains(&rpo),
        "RPO {rpo}s: the restored database's newest task is ten minutes old"
    );
    assert_eq!(
        report["oldest-data-point"],
        step(&report, "pg")["data-point"]
    );

    // RDS: the us-west-2 copy of the newest snapshot, restored under a drill identifier.
    let rds_step = step(&report, "rds");
    let drill_id = rds_step["outputs"]["instance"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        drill_id.starts_with(&format!("{}-drill-", env.target_instance())),
        "{drill_id}"
    );
    assert_eq!(rds_step["outputs"]["region"], WEST);
    assert!(
        rds_step["effect"]["rds"]["snapshot-arn"]
            .as_str()
            .unwrap()
            .contains(":us-west-2:")
    );
    let endpoint = rds_step["outputs"]["endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!endpoint.is_empty());

    // Helm: installed into a drill namespace with the restored endpoint, then removed
    // with its namespace. Production's release was not read or touched.
    let ns = step(&report, "helm")["outputs"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ns.starts_with("bizra-drill-"), "{ns}");
    let values = env.policies.join("values-dr.yaml").display().to_string();
    let calls = env.helm_calls();
    let upgrade = argv(&[
        "helm",
        "upgrade",
        "--install",
        "bizra",
        "charts/bizra",
        "--namespace",
        &ns,
        "--kube-context",
        "dr",
        "--create-namespace",
        "-f",
        &values,
        "--set",
        &format!("postgres.host={endpoint}"),
        "--wait",
        "--timeout",
        "120s",
    ]);
    assert_eq!(calls[0], upgrade, "{calls:?}");
    assert!(
        calls.contains(&argv(&[
            "helm",
            "uninstall",
            "bizra",
            "--namespace",
            &ns,
            "--kube-context",
            "dr"
        ])),
        "{calls:?}"
    );
    assert!(
        calls.contains(&argv(&[
            "kubectl",
            "delete",
            "namespace",
            &ns,
            "--ignore-not-found",
            "--context",
            "dr"
        ])),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c
            .windows(2)
            .any(|w| w[0] == "--namespace" && w[1] == "bizra")),
        "a drill must not touch the production namespace: {calls:?}"
    );

    // The real restores went to drill twins and were checked against the manifests.
    for id in ["check-pg", "check-cache", "check-vectors"] {
        assert_eq!(step(&report, id)["state"], "succeeded", "{id}");
    }
    // Read on the restored database, read-only: the newest task and the user count.
    let check = &step(&report, "check-pg")["outputs"];
    let fresh = chrono::DateTime::parse_from_rfc3339(check["freshness"].as_str().unwrap()).unwrap();
    let age = chrono::Utc::now()
        .signed_duration_since(fresh)
        .num_seconds();
    assert!((600..900).contains(&age), "{check:#}");
    assert_eq!(check["users"], "20");
    let pg_target = step(&report, "pg")["outputs"]["target"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        pg_target.contains(&format!("{pg_dr}_drill_")),
        "{pg_target}"
    );

    // Teardown: no drill instance, no drill record, no drill database or folders.
    assert_eq!(env.dr_instances().await, Vec::<String>::new());
    assert_eq!(
        env.records().await,
        records_before,
        "drill records left in the zone"
    );
    let dbs: Vec<String> = postgres::connect("postgres")
        .await
        .query("SELECT datname FROM pg_database", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !dbs.iter().any(|d| d.starts_with(&pg_dr)),
        "drill database left: {dbs:?}"
    );
    let left: Vec<_> = std::fs::read_dir(env.dir.path().join("dr"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "drill folders left: {left:?}");
    // The production release is as it was: revision 3, never rolled back or upgraded.
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(env.bin.join("state.json")).unwrap())
            .unwrap();
    assert_eq!(state["bizra/bizra"].as_array().unwrap().len(), 3);
}

/// A plan without the data restores: RDS, helm, DNS.
async fn small_env() -> Env {
    let env = Env::new(false).await;
    env.backup();
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_helm_rolls_back_the_release_and_leaves_dns_untouched() {
    let env = small_env().await;
    env.plan("region", &env.region_plan("30s", false));
    std::fs::write(env.bin.join("mode"), "fail").unwrap();
    let before = env.records().await;

    let (code, report, err) = env.json(&["dr", "run", "region"], None);
    assert_eq!(code, Some(1), "{err}\n{report:#}");
    assert_eq!(report["status"], "failed");
    assert_eq!(step(&report, "helm")["state"], "failed");
    assert!(
        step(&report, "helm")["error"]
            .as_str()
            .unwrap()
            .contains("UPGRADE FAILED")
    );
    assert_eq!(step(&report, "dns")["state"], "blocked");
    assert_eq!(report["rto"]["verdict"], "FAIL");
    assert_eq!(env.records().await, before, "DNS changed by a failed run");
    assert!(
        !env.operations()
            .contains(&"Route 53:ChangeResourceRecordSets".to_string()),
        "{:?}",
        env.operations()
    );
    // The release went back to the revision captured before the run.
    let calls = env.helm_calls();
    let rollback = argv(&[
        "helm",
        "rollback",
        "bizra",
        "3",
        "--namespace",
        "bizra",
        "--kube-context",
        "dr",
        "--wait",
        "--timeout",
        "30s",
    ]);
    assert_eq!(calls.last().unwrap(), &rollback, "{calls:?}");
    // The restored database is kept (and said so): deleting a database is not a rollback.
    let timeline = report["timeline"].to_string();
    assert!(timeline.contains("is kept"), "{timeline}");
    assert_eq!(env.dr_instances().await, vec![env.target_instance()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_helm_hits_the_step_timeout() {
    let env = small_env().await;
    env.plan("region", &env.region_plan("3s", false));
    std::fs::write(env.bin.join("mode"), "hang").unwrap();
    let started = std::time::Instant::now();
    let (code, report, err) = env.json(&["dr", "run", "region"], None);
    assert_eq!(code, Some(1), "{err}\n{report:#}");
    let helm = step(&report, "helm");
    assert_eq!(helm["state"], "failed");
    assert!(
        helm["error"].as_str().unwrap().contains("within 3s"),
        "{helm:#}"
    );
    assert!(
        started.elapsed().as_secs() < 120,
        "the timeout did not fire"
    );
    assert_eq!(step(&report, "dns")["state"], "blocked");
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_after_the_dns_change_then_resume_then_rollback_restores_the_records() {
    let env = small_env().await;
    env.plan("region", &env.region_plan("30s", false));
    let before = env.records().await;

    let (code, _, err) = env.json(&["dr", "run", "region"], Some("dr.step.dns.after-call"));
    assert_ne!(code, Some(0));
    assert!(
        err.contains("failpoint dr.step.dns.after-call reached"),
        "{err}"
    );
    let flipped = env.records().await;
    assert_ne!(flipped, before, "the UPSERT happened before the crash");

    let (_, status, _) = env.json(&["dr", "status"], None);
    let run = status["run-id"].as_str().unwrap().to_string();
    let (code, report, err) = env.json(&["dr", "resume", &run], None);
    assert_eq!(code, Some(0), "{err}\n{report:#}");
    // The records captured before the run, not those read after the resume.
    let captured = step(&report, "dns")["effect"]["dns"]["changes"].to_string();
    assert!(captured.contains("\"PRIMARY\"") && captured.contains("\"before\""));
    let east_before = &step(&report, "dns")["effect"]["dns"]["changes"][0]["before"];
    assert_eq!(east_before["failover"], "PRIMARY", "{east_before:#}");
    assert_eq!(env.records().await, flipped);

    let (code, report, err) = env.json(&["dr", "rollback", &run, "--yes"], None);
    assert_eq!(code, Some(0), "{err}\n{report:#}");
    assert_eq!(report["status"], "rolled-back");
    assert_eq!(
        env.records().await,
        before,
        "rollback did not restore the records"
    );
    // Helm went back to revision 3 too.
    assert_eq!(
        env.helm_calls().last().unwrap()[..4],
        argv(&["helm", "rollback", "bizra", "3"])[..]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_after_the_rds_restore_call_then_resume_restores_once() {
    let env = small_env().await;
    env.plan("region", &env.region_plan("30s", false));
    env.clear_operations();
    let (code, _, err) = env.json(&["dr", "run", "region"], Some("dr.step.rds.after-call"));
    assert_ne!(code, Some(0));
    assert!(
        err.contains("failpoint dr.step.rds.after-call reached"),
        "{err}"
    );
    let (_, status, _) = env.json(&["dr", "status"], None);
    let run = status["run-id"].as_str().unwrap().to_string();
    let (code, report, err) = env.json(&["dr", "resume", &run], None);
    assert_eq!(code, Some(0), "{err}\n{report:#}");
    let restores = env
        .operations()
        .iter()
        .filter(|o| o.as_str() == "RDS:RestoreDBInstanceFromDBSnapshot")
        .count();
    assert_eq!(restores, 1, "{:?}", env.operations());
    assert_eq!(env.dr_instances().await, vec![env.target_instance()]);
    assert_eq!(
        step(&report, "rds")["outputs"]["instance"],
        env.target_instance()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_the_run_did_not_create_is_never_reused() {
    let env = small_env().await;
    env.plan("region", &env.region_plan("30s", false));
    create_instance(WEST, &env.target_instance()).await;
    env.clear_operations();
    let (code, report, err) = env.json(&["dr", "run", "region"], None);
    assert_eq!(code, Some(1), "{err}\n{report:#}");
    let e = step(&report, "rds")["error"].as_str().unwrap().to_string();
    assert!(
        e.contains("already exists") && e.contains(&env.target_instance()),
        "{e}"
    );
    assert!(
        !env.operations()
            .contains(&"RDS:RestoreDBInstanceFromDBSnapshot".to_string())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_runs_send_no_mutating_call() {
    let env = small_env().await;
    env.plan("region", &env.region_plan("30s", false));
    for mode in ["run", "drill"] {
        env.clear_operations();
        let (code, v, err) = env.json(&["dr", mode, "region", "--dry-run"], None);
        assert_eq!(code, Some(0), "{mode}: {err}");
        let ops = env.operations();
        assert!(
            ops.contains(&"RDS:DescribeDBSnapshots".to_string()),
            "{ops:?}"
        );
        assert!(
            ops.iter().any(|o| o.ends_with(":ListResourceRecordSets")),
            "{ops:?}"
        );
        assert_eq!(mutating(&ops), Vec::<String>::new(), "{mode}");
        // The dry run shows what would happen: the snapshot copy and the records now.
        let steps = v["steps"].as_array().unwrap();
        let rds_step = steps.iter().find(|s| s["id"] == "rds").unwrap();
        assert!(rds_step["effect"]["rds"]["snapshot"].as_str().is_some());
        let dns = steps.iter().find(|s| s["id"] == "dns").unwrap();
        assert_eq!(dns["effect"]["dns"]["changes"].as_array().unwrap().len(), 2);
    }
    assert_eq!(env.dr_instances().await, Vec::<String>::new());
    assert!(
        env.helm_calls().iter().all(|c| c[1] == "history"),
        "{:?}",
        env.helm_calls()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_prints_the_snapshot_the_records_and_the_helm_command() {
    let env = small_env().await;
    env.plan("region", &env.region_plan("30s", false));
    let out = env
        .cmd()
        .args(["dr", "run", "region", "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = util::stdout(&out);
    let line = |id: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no line for {id}:\n{text}"))
            .to_string()
    };
    // RDS: the snapshot chosen (its copy in us-west-2) and the instance restored into.
    let rds_line = line("rds");
    assert!(
        rds_line.contains("restore snapshot ")
            && rds_line.contains(" in us-west-2 ")
            && rds_line.contains(&format!("into new DB instance {}", env.target_instance())),
        "{rds_line}"
    );
    // Helm: the whole command line, and what the rollback would return to.
    let helm_line = line("helm");
    let values = env.policies.join("values-dr.yaml").display().to_string();
    assert!(
        helm_line.contains(&format!(
            "`{} upgrade --install bizra charts/bizra --namespace bizra --kube-context dr -f {values} --set postgres.host=${{steps.rds.outputs.endpoint}} --wait --timeout 30s`",
            env.bin.join("helm").display()
        )) && helm_line.contains("revision 3 before the run"),
        "{helm_line}"
    );
    // DNS: each record set before and after.
    let dns_line = line("dns");
    let api = format!("api.{}", env.zone_name);
    for want in [
        format!(
            "{api} CNAME (east): api.east.example (ttl 60, PRIMARY) -> api.east.example (ttl 60, SECONDARY)"
        ),
        format!(
            "{api} CNAME (west): api.west.example (ttl 60, SECONDARY) -> api.west.example (ttl 60, PRIMARY)"
        ),
        format!("health check {}", env.health_check),
    ] {
        assert!(dns_line.contains(&want), "missing {want:?} in {dns_line}");
    }
}

/// The shipped region plan's steps named by `ids`, as TOML tables, changed by `edit`.
fn shipped_region_steps(ids: &[&str], edit: impl Fn(&str, &mut toml::Table)) -> Vec<toml::Value> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/bizra/dr/region-failover.toml"),
    )
    .unwrap();
    let plan: toml::Table = toml::from_str(&text).unwrap();
    ids.iter()
        .map(|id| {
            let mut t = plan["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"].as_str() == Some(id))
                .unwrap_or_else(|| panic!("no step {id} in the shipped region plan"))
                .as_table()
                .unwrap()
                .clone();
            edit(id, &mut t);
            toml::Value::Table(t)
        })
        .collect()
}

/// The shipped runbook's cluster check, infrastructure step and PostgreSQL integrity
/// step, around this set's RDS restore: the stand-ins for kubectl and terraform first in
/// `PATH`, the DR environment a folder of the test, and a real PostgreSQL (the `pg`
/// source's database) standing in for the restored instance.
fn runbook_checks_plan(env: &Env, tf_dir: &Path) -> String {
    let pg_url = postgres::url(env.pg_db.as_ref().unwrap());
    let mut steps = shipped_region_steps(
        &["dr-cluster", "infra", "integrity-postgres"],
        |id, t| match id {
            "infra" => {
                let point = |v: &toml::Value| {
                    toml::Value::String(v.as_str().unwrap().replace(
                        "/srv/bizra/deploy/terraform/environments/dr-us-west-2",
                        &tf_dir.display().to_string(),
                    ))
                };
                let argv: Vec<toml::Value> =
                    t["argv"].as_array().unwrap().iter().map(point).collect();
                let drill: Vec<toml::Value> = t["drill"]["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(point)
                    .collect();
                t.insert("argv".into(), toml::Value::Array(argv));
                t.insert(
                    "drill".into(),
                    toml::Value::Table(toml::Table::from_iter([(
                        "args".to_string(),
                        toml::Value::Array(drill),
                    )])),
                );
            }
            "integrity-postgres" => {
                t.insert("after".into(), toml::Value::Array(vec!["rds".into()]));
                t.insert("source".into(), "pg".into());
                t.insert("target".into(), pg_url.clone().into());
            }
            _ => {}
        },
    );
    let rds: toml::Table = toml::from_str(&format!(
        "id = \"rds\"\nkind = \"rds_restore\"\nafter = [\"infra\"]\ntag = {{ \"lifeboat:source\" = \"{}\" }}\ntarget = \"{}\"\ninstance-class = \"db.t3.micro\"\ntimeout = \"2m\"\non-failure = \"rollback\"\n",
        env.source,
        env.target_instance()
    ))
    .unwrap();
    steps.insert(2, toml::Value::Table(rds));
    let plan = toml::Table::from_iter([
        ("name".to_string(), toml::Value::from("region")),
        ("rto".to_string(), "1h".into()),
        ("rpo".to_string(), "6h".into()),
        ("region".to_string(), WEST.into()),
        ("steps".to_string(), toml::Value::Array(steps)),
    ]);
    toml::to_string(&plan).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_region_runbook_checks_the_cluster_applies_the_infrastructure_and_counts_the_restored_database()
 {
    let env = Env::new(true).await;
    let db = env.pg_db.clone().unwrap();
    // The newest task: ten minutes old, the data point the achieved RPO is measured by.
    postgres::connect(&db)
        .await
        .batch_execute("INSERT INTO tasks (user_id, title, created_at) VALUES (1, 'newest', now() - interval '10 minutes')")
        .await
        .unwrap();
    env.backup();
    let tf_dir = env.dir.path().join("terraform-dr");
    std::fs::create_dir_all(&tf_dir).unwrap();
    std::fs::write(tf_dir.join("main.tf"), "# the DR environment\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dr_cloud/standin_terraform.py");
        std::fs::copy(&script, env.bin.join("terraform")).unwrap();
        std::fs::set_permissions(
            env.bin.join("terraform"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    env.plan("region", &runbook_checks_plan(&env, &tf_dir));
    let path = format!(
        "{}:{}",
        env.bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |args: &[&str]| {
        let out = env
            .cmd()
            .env("PATH", &path)
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code(), v, stderr(&out))
    };
    let cluster = argv(&["kubectl", "--context", "bizra-us-west-2", "get", "nodes"]);
    let chdir = format!("-chdir={}", tf_dir.display());

    // A drill checks the cluster and only plans the infrastructure.
    let (code, r, err) = run(&["dr", "drill", "region"]);
    assert_eq!(code, Some(0), "{err}\n{r:#}");
    assert_eq!(
        env.helm_calls(),
        vec![
            cluster.clone(),
            argv(&["terraform", &chdir, "plan", "-input=false", "-lock=false"])
        ]
    );

    // A real run applies it, then counts the restored database against the newest
    // backup's manifest and reads its newest task.
    std::fs::remove_file(env.bin.join("calls.log")).unwrap();
    let (code, r, err) = run(&["dr", "run", "region"]);
    assert_eq!(code, Some(0), "{err}\n{r:#}");
    assert_eq!(
        env.helm_calls(),
        vec![
            cluster.clone(),
            argv(&[
                "terraform",
                &chdir,
                "apply",
                "-input=false",
                "-auto-approve"
            ])
        ]
    );
    let check = step(&r, "integrity-postgres");
    assert_eq!(check["state"], "succeeded", "{check:#}");
    let newest: String = postgres::connect(&db)
        .await
        .query_one("SELECT to_char(max(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') FROM tasks", &[])
        .await
        .unwrap()
        .get(0);
    let fresh = check["outputs"]["freshness"].as_str().unwrap();
    assert!(fresh.starts_with(&newest), "{fresh} vs {newest}");
    // The RDS step's data point is that task, not the snapshot's time (seconds ago).
    let rds_step = step(&r, "rds");
    assert_eq!(
        rds_step["data-point"].as_str().map(|p| p[..19].to_string()),
        Some(newest)
    );
    let rpo = r["rpo"]["achieved-secs"].as_i64().unwrap();
    assert!((600..900).contains(&rpo), "RPO {rpo}s: {r:#}");

    // Rows lost beyond the stated tolerance (5%): 2 of 20 users is 10%.
    postgres::connect(&db)
        .await
        .batch_execute("DELETE FROM users WHERE id IN (SELECT id FROM users ORDER BY id LIMIT 2)")
        .await
        .unwrap();
    let (code, r, err) = run(&["dr", "drill", "region"]);
    assert_eq!(code, Some(4), "{err}\n{r:#}");
    let check = step(&r, "integrity-postgres");
    assert_eq!(check["state"], "integrity-failed");
    let e = check["error"].as_str().unwrap();
    assert!(
        e.contains("by more than 5%") && e.contains("users: 20 in the manifest, 18 restored"),
        "{e}"
    );
}
