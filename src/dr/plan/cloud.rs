//! The cloud step kinds of a plan: `rds_restore`, `helm` and `route53_failover`, as read
//! from TOML and validated. Execution lives in `dr::step::{rds, helm, route53}`.

use crate::policy::PolicyError;
use crate::policy::fields::Fields;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which snapshot an `rds_restore` step restores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotSelect {
    /// The newest available snapshot (manual or automated) of this DB instance.
    Instance(String),
    /// This snapshot (identifier or ARN).
    Name(String),
    /// The newest available snapshot carrying this tag.
    Tag {
        /// Tag key.
        key: String,
        /// Tag value.
        value: String,
    },
}

/// An `rds_restore` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RdsRestore {
    /// Region to restore in [default: the plan's `region`].
    pub region: Option<String>,
    /// The snapshot.
    pub select: SnapshotSelect,
    /// DB instance identifier of the restored instance.
    pub target: String,
    /// DB instance class [default: the snapshot's].
    pub instance_class: Option<String>,
    /// DB subnet group.
    pub subnet_group: Option<String>,
    /// VPC security group ids.
    pub security_groups: Vec<String>,
    /// DB parameter group.
    pub parameter_group: Option<String>,
}

/// What a drill does with a `helm` step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HelmDrill {
    /// Install into a drill namespace, uninstalled (and deleted) at teardown.
    Namespace,
    /// Not run in a drill.
    Skip,
}

/// A `helm` step: `helm upgrade --install`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Helm {
    /// Release name.
    pub release: String,
    /// Chart (reference, path or URL).
    pub chart: String,
    /// Chart version.
    pub version: Option<String>,
    /// Namespace.
    pub namespace: String,
    /// kube context [default: the current one].
    pub kube_context: Option<String>,
    /// Values files (`-f`), relative to the policy set folder.
    pub values: Vec<String>,
    /// `--set` pairs (values may hold `${...}` references).
    pub set: BTreeMap<String, String>,
    /// The helm program.
    pub helm: String,
    /// The kubectl program (drill teardown deletes the drill namespace with it).
    pub kubectl: String,
    /// Drill behaviour.
    pub drill: HelmDrill,
}

/// An alias target of a record set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Alias {
    /// Hosted zone id of the alias target.
    pub zone: String,
    /// DNS name of the alias target (may hold `${...}` references).
    pub dns_name: String,
    /// Evaluate the target's health.
    pub evaluate_health: bool,
}

/// One record set, as a plan declares it and as lifeboat captures it before a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Record {
    /// Fully qualified name, lower case, with the final dot.
    pub name: String,
    /// Record type (`A`, `AAAA`, `CNAME`, ...).
    #[serde(rename = "type")]
    pub rtype: String,
    /// TTL in seconds (not for alias records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    /// Values (not for alias records; may hold `${...}` references).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Alias target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<Alias>,
    /// Set identifier (failover, weighted and latency records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_identifier: Option<String>,
    /// `PRIMARY` or `SECONDARY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<String>,
    /// Weight of a weighted record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    /// Region of a latency record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_region: Option<String>,
    /// Multivalue answer routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multivalue: Option<bool>,
    /// Health check id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<String>,
}

impl Record {
    /// The identity of a record set in its zone: name, type and set identifier.
    pub fn key(&self) -> (String, String, Option<String>) {
        (
            self.name.clone(),
            self.rtype.clone(),
            self.set_identifier.clone(),
        )
    }

    /// What the record set holds, for dry runs and rollbacks: its values or alias
    /// target, TTL and routing, e.g. `api.us-west-2.bizra.ai (ttl 60, PRIMARY)`.
    pub fn show(&self) -> String {
        let data = match &self.alias {
            Some(a) => format!("alias {} in {}", a.dns_name, a.zone),
            None => self.values.join(", "),
        };
        let mut extra = Vec::new();
        if let Some(t) = self.ttl {
            extra.push(format!("ttl {t}"));
        }
        if let Some(f) = &self.failover {
            extra.push(f.clone());
        }
        if let Some(w) = self.weight {
            extra.push(format!("weight {w}"));
        }
        if let Some(r) = &self.latency_region {
            extra.push(format!("latency {r}"));
        }
        if let Some(h) = &self.health_check {
            extra.push(format!("health check {h}"));
        }
        if extra.is_empty() {
            data
        } else {
            format!("{data} ({})", extra.join(", "))
        }
    }

    /// `name type [set-identifier]`, for messages.
    pub fn describe(&self) -> String {
        match &self.set_identifier {
            Some(s) => format!("{} {} ({s})", self.name, self.rtype),
            None => format!("{} {}", self.name, self.rtype),
        }
    }
}

/// What a drill does with a `route53_failover` step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DnsDrill {
    /// Write drill record names (`lifeboat-drill-ID.NAME`), deleted at teardown.
    Record,
    /// Not run in a drill.
    Skip,
}

/// A `route53_failover` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Route53Failover {
    /// Hosted zone id.
    pub zone: String,
    /// The record sets to write (UPSERT).
    pub records: Vec<Record>,
    /// A health check that must report healthy once the change is in sync.
    pub require_healthy: Option<String>,
    /// Drill behaviour.
    pub drill: DnsDrill,
}

/// A `kubernetes_scale` step: `kubectl scale deployment/NAME --replicas=N`, with the
/// replica count found before it captured (and checkpointed), so that the undo and a
/// later scale-up restore exactly that count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Scale {
    /// Deployment name.
    pub deployment: String,
    /// Namespace.
    pub namespace: String,
    /// kube context [default: the current one].
    pub kube_context: Option<String>,
    /// Replicas to scale to: a number, or a reference such as
    /// `${steps.scale-down.outputs.replicas-before}` (the count a step before found).
    pub replicas: String,
    /// The kubectl program.
    pub kubectl: String,
}

/// Keys of a `kubernetes_scale` step.
pub const SCALE_KEYS: &[&str] = &[
    "deployment",
    "namespace",
    "kube-context",
    "replicas",
    "kubectl",
];

/// Whether `name` is a Kubernetes object name (DNS-1123: 1-63 lower-case letters,
/// digits and `-`, starting and ending with a letter or digit).
fn valid_k8s_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Read a `kubernetes_scale` step; a `replicas` reference goes to `templated`.
pub(crate) fn read_scale(
    errs: &mut Vec<PolicyError>,
    f: &mut Fields<'_>,
    templated: &mut Vec<(String, String)>,
) -> Option<Scale> {
    fn name(
        errs: &mut Vec<PolicyError>,
        f: &mut Fields<'_>,
        key: &str,
        example: &str,
    ) -> Option<String> {
        let v = f.req_str(errs, key, example).map(String::from);
        if let Some(n) = &v
            && !valid_k8s_name(n)
        {
            f.error(
                errs,
                key,
                format!("`{n}`: a Kubernetes name is 1-63 lower-case letters, digits and -"),
            );
        }
        v
    }
    let deployment = name(errs, f, "deployment", "deployment = \"bizra-apex\"");
    let namespace = name(errs, f, "namespace", "namespace = \"bizra-testnet\"");
    let kube_context = opt_string(errs, f, "kube-context");
    let replicas = match f.opt_value("replicas") {
        None => {
            f.error(
                errs,
                "replicas",
                "missing (add replicas = 0, or replicas = \"${steps.ID.outputs.replicas-before}\" to restore the count a step before found)",
            );
            None
        }
        Some(toml::Value::Integer(n)) if (0..=i64::from(u32::MAX)).contains(n) => {
            Some(n.to_string())
        }
        Some(toml::Value::String(s)) if s.contains("${") => {
            templated.push((f.path("replicas"), s.clone()));
            Some(s.clone())
        }
        Some(toml::Value::String(s)) if s.parse::<u32>().is_ok() => Some(s.clone()),
        Some(other) => {
            f.error(
                errs,
                "replicas",
                format!(
                    "`{other}`: write a number of replicas (0 or more) or a reference to the count a step before found"
                ),
            );
            None
        }
    };
    let kubectl = opt_string(errs, f, "kubectl").unwrap_or_else(|| "kubectl".into());
    Some(Scale {
        deployment: deployment?,
        namespace: namespace?,
        kube_context,
        replicas: replicas?,
        kubectl,
    })
}

/// Keys of an `rds_restore` step.
pub const RDS_KEYS: &[&str] = &[
    "region",
    "instance",
    "snapshot",
    "tag",
    "target",
    "instance-class",
    "subnet-group",
    "security-groups",
    "parameter-group",
];
/// Keys of a `helm` step.
pub const HELM_KEYS: &[&str] = &[
    "release",
    "chart",
    "version",
    "namespace",
    "kube-context",
    "values",
    "set",
    "helm",
    "kubectl",
    "drill",
];
/// Keys of a `route53_failover` step.
pub const DNS_KEYS: &[&str] = &["zone", "records", "require-healthy", "drill"];
const RECORD_KEYS: &[&str] = &[
    "name",
    "type",
    "ttl",
    "values",
    "alias",
    "set-identifier",
    "failover",
    "weight",
    "latency-region",
    "multivalue",
    "health-check",
];

/// Whether `id` is a valid DB instance identifier: 1 to 63 letters, digits and hyphens,
/// starting with a letter, without two hyphens in a row or a hyphen at the end.
pub fn valid_db_identifier(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !id.contains("--")
        && !id.ends_with('-')
}

/// A DNS name as Route53 returns it: lower case, with the final dot.
pub fn fqdn(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    if n.ends_with('.') { n } else { format!("{n}.") }
}

fn opt_string(errs: &mut Vec<PolicyError>, f: &mut Fields<'_>, key: &str) -> Option<String> {
    f.opt_str(errs, key).map(String::from)
}

/// Read an `rds_restore` step.
pub(crate) fn read_rds(
    errs: &mut Vec<PolicyError>,
    f: &mut Fields<'_>,
    plan_region: Option<&str>,
) -> Option<RdsRestore> {
    let region = opt_string(errs, f, "region");
    if region.is_none() && plan_region.is_none() {
        f.error(
            errs,
            "region",
            "missing (set region = \"us-west-2\" on the step or on the plan: the region to restore in)",
        );
    }
    let instance = opt_string(errs, f, "instance");
    let snapshot = opt_string(errs, f, "snapshot");
    let tag = match f.opt_table(errs, "tag") {
        Some(t) if t.len() == 1 => match t.iter().next() {
            Some((k, toml::Value::String(v))) => Some((k.clone(), v.clone())),
            _ => {
                f.error(
                    errs,
                    "tag",
                    "expected { KEY = \"VALUE\" } with a string value",
                );
                None
            }
        },
        Some(_) => {
            f.error(
                errs,
                "tag",
                "expected exactly one tag, e.g. tag = { \"lifeboat:source\" = \"rds\" }",
            );
            None
        }
        None => None,
    };
    let chosen = [instance.is_some(), snapshot.is_some(), tag.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if chosen != 1 {
        f.error(
            errs,
            "instance",
            "name the snapshot with exactly one of instance = \"DB-INSTANCE\" (its newest snapshot), snapshot = \"ID-OR-ARN\" or tag = { KEY = \"VALUE\" }",
        );
    }
    let target = f
        .req_str(errs, "target", "target = \"bizra-postgres-dr\"")
        .map(String::from);
    if let Some(t) = &target
        && !valid_db_identifier(t)
    {
        f.error(
            errs,
            "target",
            format!(
                "`{t}` is not a DB instance identifier (1-63 letters, digits and hyphens, starting with a letter, no `--`, no final `-`)"
            ),
        );
    }
    let instance_class = opt_string(errs, f, "instance-class");
    let subnet_group = opt_string(errs, f, "subnet-group");
    let security_groups = f
        .str_list(errs, "security-groups")
        .unwrap_or_default()
        .into_iter()
        .map(String::from)
        .collect();
    let parameter_group = opt_string(errs, f, "parameter-group");
    let select = match (instance, snapshot, tag) {
        (Some(i), None, None) => SnapshotSelect::Instance(i),
        (None, Some(s), None) => SnapshotSelect::Name(s),
        (None, None, Some((key, value))) => SnapshotSelect::Tag { key, value },
        _ => return None,
    };
    Some(RdsRestore {
        region,
        select,
        target: target?,
        instance_class,
        subnet_group,
        security_groups,
        parameter_group,
    })
}

/// Read a `helm` step; strings that may hold references go to `templated`.
pub(crate) fn read_helm(
    errs: &mut Vec<PolicyError>,
    f: &mut Fields<'_>,
    templated: &mut Vec<(String, String)>,
) -> Option<Helm> {
    let release = f
        .req_str(errs, "release", "release = \"bizra\"")
        .map(String::from);
    let chart = f
        .req_str(errs, "chart", "chart = \"oci://registry/bizra\" or a path")
        .map(String::from);
    let version = opt_string(errs, f, "version");
    let namespace = f
        .req_str(errs, "namespace", "namespace = \"bizra\"")
        .map(String::from);
    if let Some(ns) = &namespace
        && (ns.is_empty()
            || ns.len() > 63
            || !ns
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        f.error(
            errs,
            "namespace",
            format!("`{ns}`: a Kubernetes namespace is 1-63 lower-case letters, digits and -"),
        );
    }
    let kube_context = opt_string(errs, f, "kube-context");
    let values: Vec<String> = f
        .str_list(errs, "values")
        .unwrap_or_default()
        .into_iter()
        .map(String::from)
        .collect();
    let mut set = BTreeMap::new();
    if let Some(t) = f.opt_table(errs, "set") {
        for (k, v) in t {
            match v.as_str() {
                Some(s) => {
                    templated.push((format!("{}.{k}", f.path("set")), s.to_string()));
                    set.insert(k.clone(), s.to_string());
                }
                None => f.error(
                    errs,
                    &format!("set.{k}"),
                    "expected a string (write numbers and booleans in quotes)",
                ),
            }
        }
    }
    let helm = opt_string(errs, f, "helm").unwrap_or_else(|| "helm".into());
    let kubectl = opt_string(errs, f, "kubectl").unwrap_or_else(|| "kubectl".into());
    let drill = match f.opt_str(errs, "drill") {
        None | Some("namespace") => HelmDrill::Namespace,
        Some("skip") => HelmDrill::Skip,
        Some(other) => {
            f.error(
                errs,
                "drill",
                format!(
                    "`{other}`: write \"namespace\" (install into a drill namespace, removed afterwards) or \"skip\""
                ),
            );
            HelmDrill::Namespace
        }
    };
    Some(Helm {
        release: release?,
        chart: chart?,
        version,
        namespace: namespace?,
        kube_context,
        values,
        set,
        helm,
        kubectl,
        drill,
    })
}

/// Read a `route53_failover` step; strings that may hold references go to `templated`.
pub(crate) fn read_route53(
    errs: &mut Vec<PolicyError>,
    f: &mut Fields<'_>,
    templated: &mut Vec<(String, String)>,
) -> Option<Route53Failover> {
    let zone = f
        .req_str(
            errs,
            "zone",
            "zone = \"Z0123456789ABCDEFGHIJ\" (the hosted zone id)",
        )
        .map(|z| z.trim_start_matches("/hostedzone/").to_string());
    let mut records = Vec::new();
    match f.opt_value("records") {
        Some(toml::Value::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                let field = format!("{}[{i}]", f.path("records"));
                match item.as_table() {
                    Some(t) => {
                        let mut rf = Fields::new(f.file(), field, t);
                        if let Some(r) = read_record(errs, &mut rf, templated) {
                            records.push(r);
                        }
                        rf.finish(errs, RECORD_KEYS);
                    }
                    None => f.error(
                        errs,
                        &format!("records[{i}]"),
                        "expected a table { name, type, ttl, values } or { name, type, alias }",
                    ),
                }
            }
        }
        Some(_) => f.error(
            errs,
            "records",
            "expected a non-empty list of record tables ([[steps.records]])",
        ),
        None => f.error(
            errs,
            "records",
            "missing (add [[steps.records]] with name, type and values or alias)",
        ),
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in &records {
        if !seen.insert(r.key()) {
            f.error(
                errs,
                "records",
                format!(
                    "{} declared twice (give each record set one entry)",
                    r.describe()
                ),
            );
        }
    }
    let require_healthy = opt_string(errs, f, "require-healthy");
    let drill = match f.opt_str(errs, "drill") {
        None | Some("record") => DnsDrill::Record,
        Some("skip") => DnsDrill::Skip,
        Some(other) => {
            f.error(
                errs,
                "drill",
                format!(
                    "`{other}`: write \"record\" (drill record names, removed afterwards) or \"skip\""
                ),
            );
            DnsDrill::Record
        }
    };
    Some(Route53Failover {
        zone: zone?,
        records,
        require_healthy,
        drill,
    })
}

fn read_record(
    errs: &mut Vec<PolicyError>,
    f: &mut Fields<'_>,
    templated: &mut Vec<(String, String)>,
) -> Option<Record> {
    let n = errs.len();
    let name = f.req_str(errs, "name", "name = \"api.bizra.ai\"").map(fqdn);
    let rtype = f
        .req_str(errs, "type", "type = \"CNAME\"")
        .map(|t| t.to_ascii_uppercase());
    let ttl = match f.opt_value("ttl") {
        Some(toml::Value::Integer(t)) if *t >= 0 => Some(*t),
        Some(_) => {
            f.error(errs, "ttl", "expected seconds as a whole number >= 0");
            None
        }
        None => None,
    };
    let values: Vec<String> = f
        .str_list(errs, "values")
        .unwrap_or_default()
        .into_iter()
        .map(String::from)
        .collect();
    for (i, v) in values.iter().enumerate() {
        templated.push((format!("{}[{i}]", f.path("values")), v.clone()));
    }
    let alias = match f.opt_table(errs, "alias") {
        Some(t) => {
            let mut af = Fields::new(f.file(), f.path("alias"), t);
            let zone = af.req_str(
                errs,
                "zone",
                "zone = \"Z35SXDOTRQ7X7K\" (the target's hosted zone id)",
            );
            let dns_name = af.req_str(errs, "dns-name", "dns-name = \"lb-west.elb.amazonaws.com\"");
            if let Some(d) = dns_name {
                templated.push((af.path("dns-name"), d.to_string()));
            }
            let evaluate_health = match af.opt_value("evaluate-health") {
                None => false,
                Some(toml::Value::Boolean(b)) => *b,
                Some(_) => {
                    af.error(errs, "evaluate-health", "expected true or false");
                    false
                }
            };
            let a = match (zone, dns_name) {
                (Some(z), Some(d)) => Some(Alias {
                    zone: z.trim_start_matches("/hostedzone/").to_string(),
                    dns_name: d.to_string(),
                    evaluate_health,
                }),
                _ => None,
            };
            af.finish(errs, &["zone", "dns-name", "evaluate-health"]);
            a
        }
        None => None,
    };
    match (&alias, values.is_empty(), ttl) {
        (Some(_), false, _) | (Some(_), _, Some(_)) => f.error(
            errs,
            "alias",
            "an alias record has no values and no ttl (remove them, or the alias)",
        ),
        (None, true, _) => f.error(
            errs,
            "values",
            "missing (add values = [\"...\"], or alias = { zone, dns-name })",
        ),
        (None, false, None) => f.error(errs, "ttl", "missing (add ttl = 60)"),
        _ => {}
    }
    let set_identifier = opt_string(errs, f, "set-identifier");
    let failover = f.opt_str(errs, "failover").map(|s| s.to_ascii_uppercase());
    if let Some(fo) = &failover
        && fo != "PRIMARY"
        && fo != "SECONDARY"
    {
        f.error(
            errs,
            "failover",
            format!("`{fo}`: write \"PRIMARY\" or \"SECONDARY\""),
        );
    }
    let weight = match f.opt_value("weight") {
        Some(toml::Value::Integer(w)) if (0..=255).contains(w) => Some(*w),
        Some(_) => {
            f.error(errs, "weight", "expected a whole number from 0 to 255");
            None
        }
        None => None,
    };
    let latency_region = opt_string(errs, f, "latency-region");
    let multivalue = match f.opt_value("multivalue") {
        None => None,
        Some(toml::Value::Boolean(b)) => Some(*b),
        Some(_) => {
            f.error(errs, "multivalue", "expected true or false");
            None
        }
    };
    let routed = failover.is_some() as u8
        + weight.is_some() as u8
        + latency_region.is_some() as u8
        + multivalue.is_some() as u8;
    if routed > 1 {
        f.error(
            errs,
            "failover",
            "use one routing policy per record: failover, weight, latency-region or multivalue",
        );
    }
    if routed == 1 && set_identifier.is_none() {
        f.error(
            errs,
            "set-identifier",
            "missing (a failover, weighted, latency or multivalue record needs set-identifier = \"...\")",
        );
    }
    let health_check = opt_string(errs, f, "health-check");
    if errs.len() != n {
        return None;
    }
    Some(Record {
        name: name?,
        rtype: rtype?,
        ttl,
        values,
        alias,
        set_identifier,
        failover,
        weight,
        latency_region,
        multivalue,
        health_check,
    })
}
