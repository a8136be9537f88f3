//! Terraform inputs derived from a policy set.
//!
//! `terraform/` holds the modules for the infrastructure lifeboat needs: S3 buckets,
//! Azure storage, least-privilege IAM and DNS failover. `lifeboat terraform vars` writes
//! their inputs from the policies lifeboat runs with, so a bucket's object lock, a
//! repository's prefix or the DR region cannot drift from what the backups assume.
//!
//! Pure: a validated [`PolicySet`] and the text of its DR plans in, [`TerraformVars`] out;
//! every problem is reported at once, with its file and field.

use crate::engine::rds::snapshot_id;
use crate::error::{Error, Result};
use crate::policy::{Backend, LockMode, PolicyError, PolicyErrors, PolicySet, SourceConfig, Sse};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file `lifeboat terraform vars` writes; terraform loads `*.auto.tfvars.json` by itself.
pub const VARS_FILE: &str = "lifeboat.auto.tfvars.json";

/// The DR step kind whose hosted zone lifeboat must be allowed to change.
const DNS_STEP_KIND: &str = "route53_failover";

/// The inputs of a root module such as `terraform/environments/bizra`: one key per
/// variable of its `lifeboat.variables.tf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TerraformVars {
    /// Region of the S3 buckets and of the RDS instances.
    pub primary_region: String,
    /// The region RDS snapshots are copied to, where the buckets replicate and the
    /// runbooks restore.
    pub dr_region: String,
    /// S3 buckets by bucket name.
    pub s3_buckets: BTreeMap<String, S3Bucket>,
    /// Azure storage by account name.
    pub azure_storage: BTreeMap<String, AzureStorage>,
    /// RDS sources by source name (the value of their `lifeboat:source` tag).
    pub rds_sources: BTreeMap<String, RdsSource>,
    /// The hosted zone DR plans switch; `None` when no plan switches DNS.
    pub route53: Option<Route53>,
    /// Repositories left out and why (nothing to provision for them); not a terraform input.
    #[serde(skip)]
    pub skipped: Vec<String>,
}

/// One S3 bucket holding one or more repositories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct S3Bucket {
    /// The repositories stored in it.
    pub repositories: Vec<String>,
    /// Their key prefixes (`""`: the whole bucket); lifeboat's IAM reaches nothing else.
    pub prefixes: Vec<String>,
    /// `aws:kms` or `AES256`.
    pub sse_algorithm: String,
    /// The policy's `kms-key-id`: an alias (`alias/NAME`, created by the module) or a key
    /// ARN; `None` with `aws:kms` lets the module create a key for the bucket.
    pub kms_key_id: Option<String>,
    /// Object lock; `None` when the repository does not lock objects.
    pub object_lock: Option<ObjectLock>,
}

/// Object lock of a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectLock {
    /// `GOVERNANCE` or `COMPLIANCE`, as S3 spells them.
    pub mode: String,
    /// The bucket's default retention, for objects put without a retain-until of
    /// their own. lifeboat gives every backup object its own, so this is at most the
    /// shortest `keep-within` of the sources stored in the bucket (a longer default
    /// would hold objects past the date prune may delete them); `None` when no source
    /// sets `keep-within` or it is under a day (S3's smallest default).
    pub default_retention_days: Option<u32>,
}

/// One Azure storage account and its container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AzureStorage {
    /// The repositories stored in it.
    pub repositories: Vec<String>,
    /// The container.
    pub container: String,
    /// Blob name prefixes of the repositories (`""`: the whole container).
    pub prefixes: Vec<String>,
}

/// An RDS source: the instance lifeboat snapshots and where the copies go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RdsSource {
    /// DB instance identifier.
    pub instance: String,
    /// The instance's region.
    pub region: String,
    /// Every snapshot lifeboat makes of this source is named with this prefix.
    pub snapshot_prefix: String,
    /// The copies made of every snapshot.
    pub copies: Vec<RdsCopy>,
}

/// One region an RDS source's snapshots are copied to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RdsCopy {
    /// The region.
    pub region: String,
    /// KMS key the copy is encrypted with (alias or ARN), if any.
    pub kms_key_id: Option<String>,
}

/// The hosted zone DR plans switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route53 {
    /// Hosted zone id, without `/hostedzone/`.
    pub zone_id: String,
    /// The record names the plans write, lower case without the final dot (as IAM's
    /// `route53:ChangeResourceRecordSetsNormalizedRecordNames` compares them).
    pub record_names: Vec<String>,
    /// Health checks the plans wait on.
    pub health_check_ids: Vec<String>,
}

/// The DR plan files of a set (`dr/*.toml`), as text, in name order.
pub fn read_plan_texts(set: &PolicySet) -> Result<Vec<(PathBuf, String)>> {
    let dir = set.root.join("dr");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io(format!("listing DR plans in {}", dir.display()), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f)
                .map_err(|e| Error::io(format!("reading DR plan {}", f.display()), e))?;
            Ok((f, text))
        })
        .collect()
}

/// A value and where the policy set says it.
struct Said<'a> {
    value: String,
    file: &'a Path,
    field: String,
}

fn problem(file: &Path, field: impl Into<String>, text: impl Into<String>) -> PolicyError {
    PolicyError {
        file: file.to_path_buf(),
        field: field.into(),
        problem: text.into(),
    }
}

/// The terraform inputs of `set`, whose DR plans are `plans` (file, text).
pub fn vars(
    set: &PolicySet,
    plans: &[(PathBuf, String)],
) -> std::result::Result<TerraformVars, PolicyErrors> {
    let mut errs = Vec::new();
    let mut skipped = Vec::new();
    let mut primary: Vec<Said<'_>> = Vec::new();
    let mut s3_buckets: BTreeMap<String, S3Bucket> = BTreeMap::new();
    // The first repository of each bucket, whose settings the others must share.
    let mut bucket_first: BTreeMap<String, (&str, &Path)> = BTreeMap::new();
    let mut azure_storage: BTreeMap<String, AzureStorage> = BTreeMap::new();

    for repo in set.repositories.values() {
        let file = repo.file.as_path();
        let field = |k: &str| format!("repositories.{}.{k}", repo.name);
        match &repo.backend {
            Backend::Local { .. } => {
                skipped.push(format!("{}: a local directory", repo.name));
            }
            Backend::S3(cfg) if cfg.endpoint.is_some() => {
                skipped.push(format!(
                    "{}: an S3-compatible store at {} (not AWS)",
                    repo.name,
                    cfg.endpoint.as_deref().unwrap_or_default()
                ));
            }
            Backend::S3(cfg) => {
                match &cfg.region {
                    Some(r) => primary.push(Said {
                        value: r.clone(),
                        file,
                        field: field("region"),
                    }),
                    None => errs.push(problem(
                        file,
                        field("region"),
                        "missing: terraform creates the bucket in this region (add region = \"us-east-1\")",
                    )),
                }
                if let Some(Sse::Kms(Some(k))) = &cfg.sse {
                    check_key(&mut errs, file, field("kms-key-id"), k);
                }
                let (sse_algorithm, kms_key_id) = match &cfg.sse {
                    Some(Sse::Kms(k)) => ("aws:kms", k.clone()),
                    Some(Sse::Aes256) | None => ("AES256", None),
                };
                let object_lock = cfg.object_lock.map(|mode| ObjectLock {
                    mode: match mode {
                        LockMode::Governance => "GOVERNANCE",
                        LockMode::Compliance => "COMPLIANCE",
                    }
                    .to_string(),
                    default_retention_days: None,
                });
                let entry = S3Bucket {
                    repositories: vec![repo.name.clone()],
                    prefixes: vec![cfg.prefix.clone()],
                    sse_algorithm: sse_algorithm.to_string(),
                    kms_key_id,
                    object_lock,
                };
                match s3_buckets.get_mut(&cfg.bucket) {
                    None => {
                        bucket_first.insert(cfg.bucket.clone(), (&repo.name, file));
                        s3_buckets.insert(cfg.bucket.clone(), entry);
                    }
                    Some(b) => {
                        let (first, first_file) = bucket_first[&cfg.bucket];
                        let same = b.sse_algorithm == entry.sse_algorithm
                            && b.kms_key_id == entry.kms_key_id
                            && b.object_lock == entry.object_lock;
                        if !same {
                            errs.push(problem(
                                file,
                                format!("repositories.{}", repo.name),
                                format!(
                                    "shares bucket {} with repositories.{first} ({}) but not its sse, kms-key-id and object-lock: \
                                     one bucket has one setting (give both the same, or use another bucket)",
                                    cfg.bucket,
                                    first_file.display()
                                ),
                            ));
                        }
                        b.repositories.push(repo.name.clone());
                        if !b.prefixes.contains(&cfg.prefix) {
                            b.prefixes.push(cfg.prefix.clone());
                        }
                    }
                }
            }
            Backend::Azure(cfg) if cfg.endpoint.is_some() => {
                skipped.push(format!(
                    "{}: an Azure endpoint at {} (not provisioned here)",
                    repo.name,
                    cfg.endpoint.as_deref().unwrap_or_default()
                ));
            }
            Backend::Azure(cfg) => match azure_storage.get_mut(&cfg.account) {
                None => {
                    azure_storage.insert(
                        cfg.account.clone(),
                        AzureStorage {
                            repositories: vec![repo.name.clone()],
                            container: cfg.container.clone(),
                            prefixes: vec![cfg.prefix.clone()],
                        },
                    );
                }
                Some(a) if a.container != cfg.container => errs.push(problem(
                    file,
                    field("url"),
                    format!(
                        "account {} is used with containers {} and {}: the azure-backup-storage module \
                         provisions one container per account (use one container, or another account)",
                        cfg.account, a.container, cfg.container
                    ),
                )),
                Some(a) => {
                    a.repositories.push(repo.name.clone());
                    if !a.prefixes.contains(&cfg.prefix) {
                        a.prefixes.push(cfg.prefix.clone());
                    }
                }
            },
        }
    }

    // The default retention of a locking bucket: the shortest keep-within of the
    // sources stored in it, in whole days.
    for b in s3_buckets.values_mut() {
        let Some(lock) = b.object_lock.as_mut() else {
            continue;
        };
        let shortest = set
            .sources
            .values()
            .filter(|s| s.destinations.iter().any(|d| b.repositories.contains(d)))
            .filter_map(|s| s.retention.keep_within)
            .min();
        lock.default_retention_days = shortest
            .map(|d| d.num_days())
            .filter(|d| *d >= 1)
            .map(|d| u32::try_from(d).unwrap_or(u32::MAX));
    }

    let mut rds_sources = BTreeMap::new();
    let mut dr: Vec<Said<'_>> = Vec::new();
    for source in set.sources.values() {
        let SourceConfig::Rds(cfg) = &source.config else {
            continue;
        };
        let file = source.file.as_path();
        let Some(region) = &cfg.region else {
            errs.push(problem(
                file,
                format!("sources.{}.region", source.name),
                "missing: terraform scopes lifeboat's RDS rights to the instance's region (add region = \"us-east-1\")",
            ));
            continue;
        };
        primary.push(Said {
            value: region.clone(),
            file,
            field: format!("sources.{}.region", source.name),
        });
        if cfg.copies.is_empty() {
            errs.push(problem(
                file,
                format!("sources.{}.copy-to-regions", source.name),
                "missing: a region failover restores from a copy in the DR region \
                 (add copy-to-regions = [{ region = \"us-west-2\", kms-key-id = \"alias/NAME\" }])",
            ));
        }
        for (i, c) in cfg.copies.iter().enumerate() {
            if let Some(k) = &c.kms_key_id {
                check_key(
                    &mut errs,
                    file,
                    format!("sources.{}.copy-to-regions[{i}].kms-key-id", source.name),
                    k,
                );
            }
            dr.push(Said {
                value: c.region.clone(),
                file,
                field: format!("sources.{}.copy-to-regions[{i}].region", source.name),
            });
        }
        rds_sources.insert(
            source.name.clone(),
            RdsSource {
                instance: cfg.instance.clone(),
                region: region.clone(),
                snapshot_prefix: format!("{}-", snapshot_id(&source.name, "")),
                copies: cfg
                    .copies
                    .iter()
                    .map(|c| RdsCopy {
                        region: c.region.clone(),
                        kms_key_id: c.kms_key_id.clone(),
                    })
                    .collect(),
            },
        );
    }

    let first_file = set.files.first().map(PathBuf::as_path).unwrap_or(&set.root);
    if s3_buckets.is_empty() && azure_storage.is_empty() && rds_sources.is_empty() {
        errs.push(problem(
            first_file,
            "repositories",
            format!(
                "nothing to provision: no S3 or Azure repository and no rds source{} \
                 (terraform/ provisions cloud repositories; a local directory needs none)",
                if skipped.is_empty() {
                    String::new()
                } else {
                    format!(" (left out: {})", skipped.join("; "))
                }
            ),
        ));
        return Err(PolicyErrors(errs));
    }

    let primary_region = one_region(&mut errs, &primary, "primary region", || {
        problem(
            first_file,
            "repositories",
            "no S3 repository or rds source names a region: the environment needs its primary region \
             (add region = \"us-east-1\" to an S3 repository)",
        )
    });
    let dr_region = one_region(&mut errs, &dr, "DR region", || {
        problem(
            first_file,
            "sources",
            "no rds source names a DR region: the environment replicates and restores there \
             (add copy-to-regions = [{ region = \"us-west-2\" }] to an rds source)",
        )
    });
    if let (Some(p), Some(d)) = (&primary_region, &dr_region)
        && p == d
    {
        let s = primary.iter().find(|s| &s.value == d).expect("said");
        errs.push(problem(
            s.file,
            &s.field,
            format!("`{d}` is also the DR region: a region failover needs another region"),
        ));
    }

    let route53 = dns_zone(&mut errs, plans);

    if !errs.is_empty() {
        return Err(PolicyErrors(errs));
    }
    Ok(TerraformVars {
        primary_region: primary_region.expect("checked"),
        dr_region: dr_region.expect("checked"),
        s3_buckets,
        azure_storage,
        rds_sources,
        route53,
        skipped,
    })
}

/// A KMS key as terraform can create it (an alias) or IAM can name it (an ARN).
fn check_key(errs: &mut Vec<PolicyError>, file: &Path, field: String, key: &str) {
    if !(key.starts_with("alias/") || key.starts_with("arn:")) {
        errs.push(problem(
            file,
            field,
            format!(
                "`{key}` is a bare key id: terraform creates a key by alias and lifeboat's IAM policy names it by ARN \
                 (write \"alias/NAME\" or the key's ARN)"
            ),
        ));
    }
}

/// The one region all of `said` name; an error for each that names another.
fn one_region(
    errs: &mut Vec<PolicyError>,
    said: &[Said<'_>],
    what: &str,
    none: impl FnOnce() -> PolicyError,
) -> Option<String> {
    let Some(first) = said.first() else {
        errs.push(none());
        return None;
    };
    let mut ok = true;
    for s in &said[1..] {
        if s.value != first.value {
            ok = false;
            errs.push(problem(
                s.file,
                &s.field,
                format!(
                    "`{}`, but {} ({}) says `{}`: the environment has one {what} \
                     (use one region, or split the policy set)",
                    s.value,
                    first.field,
                    first.file.display(),
                    first.value
                ),
            ));
        }
    }
    ok.then(|| first.value.clone())
}

/// The hosted zone of the DR plans' DNS steps. The plans themselves are validated by
/// `lifeboat policy check`; only the fields terraform needs are read here.
fn dns_zone(errs: &mut Vec<PolicyError>, plans: &[(PathBuf, String)]) -> Option<Route53> {
    let mut zone: Option<(String, PathBuf, String)> = None;
    let mut names: Vec<String> = Vec::new();
    let mut checks: Vec<String> = Vec::new();
    for (file, text) in plans {
        let table: toml::Table = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                errs.push(problem(
                    file,
                    "syntax",
                    format!("not valid TOML: {}", e.message()),
                ));
                continue;
            }
        };
        let steps = table
            .get("steps")
            .and_then(|s| s.as_array())
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (i, step) in steps.iter().enumerate() {
            let Some(step) = step.as_table() else {
                continue;
            };
            if step.get("kind").and_then(|k| k.as_str()) != Some(DNS_STEP_KIND) {
                continue;
            }
            let field = format!("steps[{i}].zone");
            let Some(z) = step.get("zone").and_then(|z| z.as_str()) else {
                errs.push(problem(
                    file,
                    &field,
                    "missing: the hosted zone id lifeboat changes (add zone = \"Z0123456789ABCDEFGHIJ\")",
                ));
                continue;
            };
            let z = z.trim_start_matches("/hostedzone/").to_string();
            match &zone {
                None => zone = Some((z, file.clone(), field)),
                Some((first, first_file, first_field)) if *first != z => errs.push(problem(
                    file,
                    &field,
                    format!(
                        "`{z}`, but {first_field} ({}) says `{first}`: lifeboat is granted one hosted zone \
                         (move the records into one zone)",
                        first_file.display()
                    ),
                )),
                Some(_) => {}
            }
            let records = step
                .get("records")
                .and_then(|r| r.as_array())
                .map(Vec::as_slice)
                .unwrap_or_default();
            for r in records {
                if let Some(name) = r.get("name").and_then(|n| n.as_str()) {
                    let name = name.trim_end_matches('.').to_ascii_lowercase();
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
            if let Some(h) = step.get("require-healthy").and_then(|h| h.as_str())
                && !checks.iter().any(|c| c == h)
            {
                checks.push(h.to_string());
            }
        }
    }
    zone.map(|(zone_id, _, _)| Route53 {
        zone_id,
        record_names: names,
        health_check_ids: checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> PolicySet {
        PolicySet::from_texts(
            PathBuf::from("/set"),
            &[(PathBuf::from("/set/p.toml"), text.to_string())],
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    const BIZRA_LIKE: &str = r#"
        [repositories.s3]
        url = "s3://backups-bucket/prod"
        region = "us-east-1"
        sse = "aws:kms"
        kms-key-id = "alias/lb"
        object-lock = { mode = "governance" }
        [repositories.azure]
        url = "azure://lbaccount/backups/prod"
        [sources.redis]
        kind = "sqlite"
        path = "r.db"
        destinations = ["s3", "azure"]
        retention = { keep-within = "36h" }
        [sources.cfg]
        kind = "sqlite"
        path = "c.db"
        destinations = ["s3"]
        retention = { keep-within = "90d" }
        [sources.hive]
        kind = "sqlite"
        path = "h.db"
        destinations = ["s3"]
        retention = { keep-last = 3 }
        [sources.rds]
        kind = "rds"
        instance = "prod-db"
        region = "us-east-1"
        copy-to-regions = [{ region = "us-west-2", kms-key-id = "alias/dr" }]
        destinations = ["azure"]
    "#;

    #[test]
    fn a_bizra_like_set_gives_every_input() {
        let v = vars(&set(BIZRA_LIKE), &[]).unwrap();
        assert_eq!(v.primary_region, "us-east-1");
        assert_eq!(v.dr_region, "us-west-2");
        let b = &v.s3_buckets["backups-bucket"];
        assert_eq!(b.prefixes, vec!["prod"]);
        assert_eq!(b.sse_algorithm, "aws:kms");
        assert_eq!(b.kms_key_id.as_deref(), Some("alias/lb"));
        // 36 h is one whole day: a default of two would outlast the redis backups.
        assert_eq!(
            b.object_lock,
            Some(ObjectLock {
                mode: "GOVERNANCE".into(),
                default_retention_days: Some(1)
            })
        );
        assert_eq!(v.azure_storage["lbaccount"].container, "backups");
        let rds = &v.rds_sources["rds"];
        assert_eq!(rds.snapshot_prefix, "lifeboat-rds-");
        assert_eq!(rds.copies[0].kms_key_id.as_deref(), Some("alias/dr"));
        assert_eq!(v.route53, None);
    }

    #[rstest::rstest]
    #[case::under_a_day("12h", None)]
    #[case::exactly_a_day("1d", Some(1))]
    #[case::rounded_down("71h", Some(2))]
    fn default_retention_is_never_longer_than_keep_within(
        #[case] keep_within: &str,
        #[case] want: Option<u32>,
    ) {
        let text = format!(
            r#"
            [repositories.s3]
            url = "s3://backups-bucket/prod"
            region = "us-east-1"
            object-lock = {{ mode = "compliance" }}
            [sources.a]
            kind = "sqlite"
            path = "a.db"
            destinations = ["s3"]
            retention = {{ keep-within = "{keep_within}", keep-last = 2 }}
            [sources.b]
            kind = "sqlite"
            path = "b.db"
            destinations = ["s3"]
            retention = {{ keep-within = "30d" }}
            [sources.db]
            kind = "rds"
            instance = "prod-db"
            region = "us-east-1"
            copy-to-regions = [{{ region = "us-west-2" }}]
            destinations = ["s3"]
            "#
        );
        let v = vars(&set(&text), &[]).unwrap();
        let lock = v.s3_buckets["backups-bucket"].object_lock.clone().unwrap();
        assert_eq!(lock.mode, "COMPLIANCE");
        assert_eq!(lock.default_retention_days, want);
    }

    #[test]
    fn dns_steps_of_the_plans_name_the_zone_and_records() {
        let plan = r#"
            name = "region"
            [[steps]]
            id = "dns"
            kind = "route53_failover"
            zone = "/hostedzone/Z123"
            require-healthy = "hc-1"
            records = [{ name = "API.Example.com.", type = "A" }, { name = "www.example.com", type = "CNAME" }]
            [[steps]]
            id = "other"
            kind = "command"
        "#;
        let v = vars(
            &set(BIZRA_LIKE),
            &[(PathBuf::from("/set/dr/region.toml"), plan.to_string())],
        )
        .unwrap();
        assert_eq!(
            v.route53,
            Some(Route53 {
                zone_id: "Z123".into(),
                record_names: vec!["api.example.com".into(), "www.example.com".into()],
                health_check_ids: vec!["hc-1".into()],
            })
        );
    }

    #[test]
    fn every_problem_names_its_file_field_and_fix() {
        let text = r#"
            [repositories.a]
            url = "s3://shared-bucket/a"
            [repositories.b]
            url = "s3://shared-bucket/b"
            region = "eu-west-1"
            object-lock = { mode = "governance" }
            [repositories.c]
            url = "azure://acct/one/x"
            [repositories.d]
            url = "azure://acct/two/x"
            [repositories.e]
            url = "s3://other-bucket/x"
            region = "us-east-1"
            sse = "aws:kms"
            kms-key-id = "1234abcd-12ab-34cd-56ef-1234567890ab"
            [sources.db]
            kind = "rds"
            instance = "prod-db"
            region = "us-east-1"
            destinations = ["a"]
        "#;
        let plans = [
            (
                PathBuf::from("/set/dr/x.toml"),
                "[[steps]]\nkind = \"route53_failover\"\nzone = \"Z1\"\n[[steps]]\nkind = \"route53_failover\"\nzone = \"Z2\"\n".to_string(),
            ),
        ];
        let text = vars(&set(text), &plans).unwrap_err().to_string();
        for want in [
            "/set/p.toml: repositories.a.region: missing: terraform creates the bucket in this region",
            "/set/p.toml: repositories.b: shares bucket shared-bucket with repositories.a",
            "/set/p.toml: repositories.d.url: account acct is used with containers one and two",
            "/set/p.toml: sources.db.copy-to-regions: missing",
            "/set/p.toml: repositories.e.kms-key-id: `1234abcd-12ab-34cd-56ef-1234567890ab` is a bare key id",
            "/set/p.toml: sources.db.region: `us-east-1`, but repositories.b.region (/set/p.toml) says `eu-west-1`",
            "/set/p.toml: sources: no rds source names a DR region",
            "/set/dr/x.toml: steps[1].zone: `Z2`, but steps[0].zone (/set/dr/x.toml) says `Z1`",
        ] {
            assert!(text.contains(want), "missing `{want}` in:\n{text}");
        }
    }

    #[test]
    fn a_set_with_nothing_in_the_cloud_is_refused_with_the_reason() {
        let text = vars(
            &set("[repositories.l]\nurl = \"file:./r\"\n[sources.a]\nkind = \"sqlite\"\npath = \"a.db\"\ndestinations = [\"l\"]\n"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            text.contains("/set/p.toml: repositories: nothing to provision")
                && text.contains("l: a local directory"),
            "{text}"
        );
    }
}
