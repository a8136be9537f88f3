//! lifeboat's IAM policy (terraform/modules/lifeboat-iam) against what lifeboat calls.
//!
//! `operations.txt` maps every AWS operation lifeboat sends to the IAM actions it needs.
//! The checks: every operation recorded while the test suite ran (the client layer's
//! suite-wide record, `LIFEBOAT_AWS_RECORD_ALL`) is listed; the policy document allows
//! exactly the listed actions; and, evaluated on the inputs `lifeboat terraform vars`
//! writes for policies/bizra, every statement is scoped to lifeboat's own resources: no
//! `*` action or resource, objects under the repository prefixes, snapshots named and
//! tagged after their source, DR instances tagged by their run, the one hosted zone.

use crate::tf::{Module, attr, root};
use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::{Block, Body, Expression, Value};
use lifeboat::policy::PolicySet;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ACCOUNT: &str = "111122223333";

fn module_dir() -> PathBuf {
    root().join("modules/lifeboat-iam")
}

// --- operations.txt

/// The operations lifeboat may send, each with the IAM actions it needs.
pub fn operations(text: &str) -> Result<BTreeMap<String, Vec<String>>, Vec<String>> {
    let mut ops = BTreeMap::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((op, actions)) = line.split_once(" = ") else {
            problems.push(format!(
                "line {}: expected `Service:Operation = action ...`",
                n + 1
            ));
            continue;
        };
        let actions: Vec<String> = actions.split_whitespace().map(str::to_string).collect();
        for a in &actions {
            let ok = a.split_once(':').is_some_and(|(s, name)| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && name.chars().all(|c| c.is_ascii_alphanumeric())
                    && !name.is_empty()
            });
            if !ok {
                problems.push(format!(
                    "line {}: `{a}` is not one IAM action (service:Name, no wildcard)",
                    n + 1
                ));
            }
        }
        if actions.is_empty() {
            problems.push(format!("line {}: {op} maps to no action", n + 1));
        }
        if ops.insert(op.trim().to_string(), actions).is_some() {
            problems.push(format!("line {}: {op} is listed twice", n + 1));
        }
    }
    if problems.is_empty() {
        Ok(ops)
    } else {
        Err(problems)
    }
}

fn listed() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(module_dir().join("operations.txt")).unwrap();
    operations(&text).unwrap_or_else(|p| panic!("operations.txt:\n{}", p.join("\n")))
}

fn listed_actions(ops: &BTreeMap<String, Vec<String>>) -> BTreeSet<String> {
    ops.values().flatten().cloned().collect()
}

// --- the policy document, read and evaluated

fn lifeboat_document(m: &Module) -> &Block {
    m.block("data", "aws_iam_policy_document", "lifeboat")
}

/// The `statement` blocks of a document, static and the content of dynamic ones.
fn statement_bodies(doc: &Block) -> Vec<&Body> {
    doc.body()
        .blocks()
        .filter_map(|b| match b.identifier() {
            "statement" => Some(b.body()),
            "dynamic" if b.labels()[0].as_str() == "statement" => b
                .body()
                .blocks()
                .find(|c| c.identifier() == "content")
                .map(|c| c.body()),
            _ => None,
        })
        .collect()
}

/// Every action the document names; each must be a literal, or nobody can tell what
/// the policy allows without applying it.
fn document_actions(m: &Module) -> Result<BTreeSet<String>, Vec<String>> {
    let mut actions = BTreeSet::new();
    let mut problems = Vec::new();
    for body in statement_bodies(lifeboat_document(m)) {
        for key in ["actions", "not_actions"] {
            match attr(body, key) {
                None => {}
                Some(Expression::Array(items)) => {
                    for i in items {
                        match i {
                            Expression::String(s) => {
                                actions.insert(s.clone());
                            }
                            other => {
                                problems.push(format!("{key}: `{other:?}` is not a literal action"))
                            }
                        }
                    }
                }
                Some(other) => problems.push(format!(
                    "{key}: `{other:?}` is not a list of literal actions"
                )),
            }
        }
    }
    if problems.is_empty() {
        Ok(actions)
    } else {
        Err(problems)
    }
}

/// One evaluated statement.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: String,
    pub actions: Vec<String>,
    pub not_actions: bool,
    pub resources: Vec<String>,
    pub not_resources: bool,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone)]
pub struct Condition {
    pub test: String,
    pub variable: String,
    pub values: Vec<String>,
}

impl Statement {
    fn name(&self) -> String {
        format!(
            "statement {} {:?}",
            self.sid.as_deref().unwrap_or("(no sid)"),
            self.actions
        )
    }

    fn condition(&self, variable: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.variable == variable)
    }

    /// A condition on one of lifeboat's tags, on the resource or the request.
    fn lifeboat_tag_condition(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| {
            c.variable.starts_with("aws:ResourceTag/lifeboat:")
                || c.variable.starts_with("aws:RequestTag/lifeboat:")
        })
    }
}

fn args_array(args: &FuncArgs, i: usize) -> Result<Vec<Value>, String> {
    match args.get(i) {
        Some(Value::Array(a)) => Ok(a.clone()),
        other => Err(format!("expected a list, got {other:?}")),
    }
}

fn f_concat(args: FuncArgs) -> Result<Value, String> {
    let mut out = Vec::new();
    for i in 0..args.len() {
        out.extend(args_array(&args, i)?);
    }
    Ok(Value::Array(out))
}

fn flat(v: Vec<Value>, out: &mut Vec<Value>) {
    for i in v {
        match i {
            Value::Array(a) => flat(a, out),
            other => out.push(other),
        }
    }
}

fn f_flatten(args: FuncArgs) -> Result<Value, String> {
    let mut out = Vec::new();
    flat(args_array(&args, 0)?, &mut out);
    Ok(Value::Array(out))
}

fn f_distinct(args: FuncArgs) -> Result<Value, String> {
    let mut out: Vec<Value> = Vec::new();
    for v in args_array(&args, 0)? {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(Value::Array(out))
}

fn f_compact(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Array(
        args_array(&args, 0)?
            .into_iter()
            .filter(|v| !matches!(v, Value::Null) && v.as_str() != Some(""))
            .collect(),
    ))
}

fn f_length(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::Array(a) => Ok(Value::from(a.len() as u64)),
        Value::Object(o) => Ok(Value::from(o.len() as u64)),
        Value::String(s) => Ok(Value::from(s.chars().count() as u64)),
        other => Err(format!("length of {other}")),
    }
}

fn context(m: &Module, inputs: &serde_json::Value) -> Context<'static> {
    let mut ctx = Context::new();
    ctx.declare_func(
        "concat",
        FuncDef::builder()
            .variadic_param(ParamType::Any)
            .build(f_concat),
    );
    for (name, f) in [
        ("flatten", f_flatten as hcl::eval::Func),
        ("distinct", f_distinct),
        ("compact", f_compact),
        ("length", f_length),
    ] {
        ctx.declare_func(name, FuncDef::new(f, [ParamType::Any]));
    }
    let mut vars = hcl::Map::new();
    for (name, v) in &m.variables {
        let value = match inputs.get(name) {
            Some(given) => hcl::to_value(given).unwrap(),
            None => match &v.default {
                Some(d) => d
                    .evaluate(&ctx)
                    .unwrap_or_else(|e| panic!("default of {name}: {e}")),
                None => panic!("the sample inputs lack required variable `{name}`"),
            },
        };
        vars.insert(name.clone(), value);
    }
    ctx.declare_var("var", Value::Object(vars));
    let data = serde_json::json!({
        "aws_partition": { "current": { "partition": "aws" } },
        "aws_caller_identity": { "current": { "account_id": ACCOUNT } },
    });
    ctx.declare_var("data", hcl::to_value(&data).unwrap());
    // Locals may use each other: evaluate them until none is left.
    let mut locals = hcl::Map::new();
    let mut pending: Vec<(&String, &Expression)> = m.locals.iter().collect();
    while !pending.is_empty() {
        let mut with_locals = ctx.clone();
        with_locals.declare_var("local", Value::Object(locals.clone()));
        let before = pending.len();
        let mut failed = Vec::new();
        pending.retain(|(name, e)| match e.evaluate(&with_locals) {
            Ok(v) => {
                locals.insert((*name).clone(), v);
                false
            }
            Err(err) => {
                failed.push(format!("{name}: {err}"));
                true
            }
        });
        assert!(
            pending.len() < before,
            "locals cannot be evaluated:\n{}",
            failed.join("\n")
        );
    }
    ctx.declare_var("local", Value::Object(locals));
    ctx
}

/// The instances of blocks named `name` in `body`: static ones, and the content of
/// dynamic ones once per element of their `for_each`, with the iterator declared.
fn expand(body: &Body, name: &str, ctx: &Context<'static>) -> Vec<(Body, Context<'static>)> {
    let mut out = Vec::new();
    for b in body.blocks() {
        if b.identifier() == name {
            out.push((b.body().clone(), ctx.clone()));
        } else if b.identifier() == "dynamic" && b.labels()[0].as_str() == name {
            let for_each = attr(b.body(), "for_each")
                .expect("for_each")
                .evaluate(ctx)
                .unwrap_or_else(|e| panic!("dynamic {name}: for_each: {e}"));
            let content = b
                .body()
                .blocks()
                .find(|c| c.identifier() == "content")
                .expect("content")
                .body()
                .clone();
            let items: Vec<(Value, Value)> = match for_each {
                Value::Array(a) => a
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (Value::from(i as u64), v))
                    .collect(),
                Value::Object(o) => o.into_iter().map(|(k, v)| (Value::from(k), v)).collect(),
                other => panic!("dynamic {name}: for_each is {other}"),
            };
            for (key, value) in items {
                let mut c = ctx.clone();
                let mut it = hcl::Map::new();
                it.insert("key".to_string(), key);
                it.insert("value".to_string(), value);
                c.declare_var(name, Value::Object(it));
                out.push((content.clone(), c));
            }
        }
    }
    out
}

fn eval_strings(body: &Body, key: &str, ctx: &Context<'static>) -> Option<Vec<String>> {
    attr(body, key).map(
        |e| match e.evaluate(ctx).unwrap_or_else(|err| panic!("{key}: {err}")) {
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => s,
                    other => panic!("{key}: `{other}` is not a string"),
                })
                .collect(),
            other => panic!("{key}: `{other}` is not a list"),
        },
    )
}

fn eval_string(body: &Body, key: &str, ctx: &Context<'static>) -> Option<String> {
    attr(body, key).map(
        |e| match e.evaluate(ctx).unwrap_or_else(|err| panic!("{key}: {err}")) {
            Value::String(s) => s,
            other => panic!("{key}: `{other}` is not a string"),
        },
    )
}

/// The statements of the lifeboat document, evaluated on `inputs` (variable values).
pub fn evaluate(m: &Module, inputs: &serde_json::Value) -> Vec<Statement> {
    let ctx = context(m, inputs);
    expand(lifeboat_document(m).body(), "statement", &ctx)
        .into_iter()
        .map(|(body, ctx)| Statement {
            sid: eval_string(&body, "sid", &ctx),
            effect: eval_string(&body, "effect", &ctx).unwrap_or_else(|| "Allow".into()),
            actions: eval_strings(&body, "actions", &ctx).unwrap_or_default(),
            not_actions: attr(&body, "not_actions").is_some(),
            resources: eval_strings(&body, "resources", &ctx).unwrap_or_default(),
            not_resources: attr(&body, "not_resources").is_some(),
            conditions: expand(&body, "condition", &ctx)
                .into_iter()
                .map(|(c, ctx)| Condition {
                    test: eval_string(&c, "test", &ctx).expect("test"),
                    variable: eval_string(&c, "variable", &ctx).expect("variable"),
                    values: eval_strings(&c, "values", &ctx).expect("values"),
                })
                .collect(),
        })
        .collect()
}

// --- the sample: the inputs the environment passes for policies/bizra

/// What lifeboat's resources are for the sample inputs, to judge the statements by.
pub struct Scope {
    /// Per bucket: ARN, replica ARN, prefixes.
    buckets: Vec<(String, String, Vec<String>)>,
    s3_keys: BTreeSet<String>,
    /// Per RDS source: name, instance ARN, snapshot prefix, regions.
    rds: Vec<(String, String, String, Vec<String>)>,
    rds_keys: BTreeSet<String>,
    dr_region: String,
    zone: String,
    records: Vec<String>,
    health_checks: Vec<String>,
}

/// The lifeboat-iam inputs the environment builds from `lifeboat terraform vars` on
/// policies/bizra, with a hosted zone added (the set's plans switch none yet) so the
/// DNS statements are judged too.
pub fn sample() -> (serde_json::Value, Scope) {
    let set =
        PolicySet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/bizra")).unwrap();
    let plans = lifeboat::terraform::read_plan_texts(&set).unwrap();
    let v = lifeboat::terraform::vars(&set, &plans).unwrap();
    let key = |region: &str, id: &str| format!("arn:aws:kms:{region}:{ACCOUNT}:key/{id}");
    let mut s3 = serde_json::Map::new();
    let mut scope = Scope {
        buckets: Vec::new(),
        s3_keys: BTreeSet::new(),
        rds: Vec::new(),
        rds_keys: BTreeSet::new(),
        dr_region: v.dr_region.clone(),
        zone: "Z0SAMPLEZONE".into(),
        records: vec!["api.bizra.example".into()],
        health_checks: vec!["hc-0sample".into()],
    };
    for (bucket, b) in &v.s3_buckets {
        let arn = format!("arn:aws:s3:::{bucket}");
        let replica = format!("arn:aws:s3:::{bucket}-{}", v.dr_region);
        let kms = b.sse_algorithm == "aws:kms";
        let (k, rk) = (key(&v.primary_region, bucket), key(&v.dr_region, bucket));
        if kms {
            scope.s3_keys.extend([k.clone(), rk.clone()]);
        }
        s3.insert(
            bucket.clone(),
            serde_json::json!({
                "bucket_arn": arn,
                "region": v.primary_region,
                "prefixes": b.prefixes,
                "kms_key_arn": if kms { Some(&k) } else { None },
                "replica_bucket_arn": replica,
                "replica_region": v.dr_region,
                "replica_kms_key_arn": if kms { Some(&rk) } else { None },
            }),
        );
        scope.buckets.push((arn, replica, b.prefixes.clone()));
    }
    let mut rds = serde_json::Map::new();
    for (source, s) in &v.rds_sources {
        let keys: Vec<String> = s
            .copies
            .iter()
            .filter(|c| c.kms_key_id.is_some())
            .map(|c| key(&c.region, &format!("{source}-copy")))
            .collect();
        scope.rds_keys.extend(keys.iter().cloned());
        let regions: Vec<String> = s.copies.iter().map(|c| c.region.clone()).collect();
        rds.insert(
            source.clone(),
            serde_json::json!({
                "instance": s.instance,
                "region": s.region,
                "snapshot_prefix": s.snapshot_prefix,
                "copy_regions": regions,
                "kms_key_arns": keys,
            }),
        );
        let mut all = vec![s.region.clone()];
        all.extend(regions);
        scope.rds.push((
            source.clone(),
            format!("arn:aws:rds:{}:{ACCOUNT}:db:{}", s.region, s.instance),
            s.snapshot_prefix.clone(),
            all,
        ));
    }
    assert!(!scope.buckets.is_empty() && !scope.rds.is_empty() && !scope.s3_keys.is_empty());
    let inputs = serde_json::json!({
        "name": "bizra-lifeboat",
        "s3_repositories": s3,
        "rds_sources": rds,
        "dr_region": v.dr_region,
        "route53": {
            "zone_id": scope.zone,
            "record_names": scope.records,
            "health_check_ids": scope.health_checks,
        },
        "oidc_provider_arn": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE"),
        "oidc_issuer": "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE",
        "service_account": { "namespace": "bizra", "name": "lifeboat" },
    });
    (inputs, scope)
}

// --- the judgement

const S3_OBJECT_WRITE: &[&str] = &[
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:PutObjectRetention",
];
const S3_OBJECT_READ: &[&str] = &["s3:GetObject", "s3:GetObjectRetention"];
const S3_BUCKET: &[&str] = &[
    "s3:ListBucketMultipartUploads",
    "s3:GetBucketObjectLockConfiguration",
];

fn read_only(action: &str) -> bool {
    let name = action.split_once(':').map(|(_, n)| n).unwrap_or(action);
    name.starts_with("Describe") || name.starts_with("List") || name.starts_with("Get")
}

/// Every way the statements allow more than lifeboat's operations on lifeboat's
/// resources, or less than the operations listed.
pub fn scope_problems(
    stmts: &[Statement],
    scope: &Scope,
    ops: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let listed = listed_actions(ops);
    let mut problems = Vec::new();
    let mut allowed = BTreeSet::new();
    for st in stmts {
        let at = st.name();
        if st.effect != "Allow" {
            continue;
        }
        if st.not_actions || st.not_resources {
            problems.push(format!(
                "{at}: NotAction and NotResource allow everything else"
            ));
        }
        if st.actions.is_empty() || st.resources.is_empty() {
            problems.push(format!("{at}: an Allow needs actions and resources"));
        }
        for a in &st.actions {
            allowed.insert(a.clone());
            if a.contains('*') || a.contains('?') {
                problems.push(format!(
                    "{at}: `{a}`: a wildcard action allows what lifeboat never calls"
                ));
            } else if !listed.contains(a) {
                problems.push(format!("{at}: `{a}` is no action operations.txt lists"));
            }
        }
        for r in &st.resources {
            if r == "*" {
                problems.push(format!(
                    "{at}: Resource \"*\": every resource of the account"
                ));
                continue;
            }
            for a in &st.actions {
                if let Some(p) = resource_problem(st, a, r, scope) {
                    problems.push(format!("{at}: {a} on {r}: {p}"));
                }
            }
        }
        for a in &st.actions {
            if let Some(p) = condition_problem(st, a, scope) {
                problems.push(format!("{at}: {a}: {p}"));
            }
        }
    }
    for a in listed.difference(&allowed) {
        problems.push(format!(
            "operations.txt lists {a}, but no statement allows it"
        ));
    }
    problems
}

/// Why `action` on `resource` reaches beyond lifeboat's own, if it does.
fn resource_problem(st: &Statement, action: &str, resource: &str, scope: &Scope) -> Option<String> {
    let objects = |replica: bool| -> Vec<String> {
        scope
            .buckets
            .iter()
            .flat_map(|(b, rb, prefixes)| {
                let mut buckets = vec![b.clone()];
                if replica {
                    buckets.push(rb.clone());
                }
                buckets
                    .into_iter()
                    .flat_map(|bucket| {
                        prefixes.iter().map(move |p| {
                            if p.is_empty() {
                                format!("{bucket}/*")
                            } else {
                                format!("{bucket}/{p}/*")
                            }
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let service = action.split_once(':').map(|(s, _)| s).unwrap_or("");
    match service {
        "s3" if S3_OBJECT_WRITE.contains(&action) => {
            (!objects(false).iter().any(|o| o == resource))
                .then(|| "writes only under a repository prefix of the primary bucket".to_string())
        }
        "s3" if S3_OBJECT_READ.contains(&action) => (!objects(true).iter().any(|o| o == resource))
            .then(|| "reads only under a repository prefix (primary or replica)".to_string()),
        "s3" if action == "s3:ListBucket" => (!scope
            .buckets
            .iter()
            .any(|(b, rb, _)| b == resource || rb == resource))
        .then(|| "lists only lifeboat's buckets".to_string()),
        "s3" if S3_BUCKET.contains(&action) => {
            (!scope.buckets.iter().any(|(b, _, _)| b == resource))
                .then(|| "only the primary bucket".to_string())
        }
        "kms" => {
            let keys = if matches!(action, "kms:GenerateDataKey" | "kms:Decrypt") {
                &scope.s3_keys
            } else {
                &scope.rds_keys
            };
            (!keys.contains(resource)).then(|| "not one of lifeboat's keys".to_string())
        }
        "rds" => rds_resource_problem(st, action, resource, scope),
        "route53" => {
            let zone = format!("arn:aws:route53:::hostedzone/{}", scope.zone);
            let ok = match action {
                "route53:ChangeResourceRecordSets" | "route53:ListResourceRecordSets" => {
                    resource == zone
                }
                "route53:GetChange" => resource == "arn:aws:route53:::change/*",
                "route53:GetHealthCheckStatus" => scope
                    .health_checks
                    .iter()
                    .any(|h| resource == format!("arn:aws:route53:::healthcheck/{h}")),
                _ => false,
            };
            (!ok).then(|| "not the plans' zone, a change or their health checks".to_string())
        }
        other => Some(format!("lifeboat calls no `{other}` API")),
    }
}

fn rds_resource_problem(
    st: &Statement,
    action: &str,
    resource: &str,
    scope: &Scope,
) -> Option<String> {
    let parts: Vec<&str> = resource.splitn(7, ':').collect();
    let [arn, partition, service, region, account, kind, name] = parts.as_slice() else {
        return Some("not an RDS ARN".into());
    };
    if (*arn, *partition, *service, *account) != ("arn", "aws", "rds", ACCOUNT) {
        return Some("not an RDS resource of the account".into());
    }
    let regions: BTreeSet<&str> = scope
        .rds
        .iter()
        .flat_map(|(_, _, _, r)| r.iter().map(String::as_str))
        .chain([scope.dr_region.as_str()])
        .collect();
    if !regions.contains(region) {
        return Some(format!(
            "{region} is neither a source's region nor a copy's"
        ));
    }
    let dr_run = st
        .lifeboat_tag_condition()
        .is_some_and(|c| c.variable.ends_with("/lifeboat:dr-run"));
    let in_dr = *region == scope.dr_region;
    match *kind {
        "snapshot" => {
            let named = scope
                .rds
                .iter()
                .any(|(_, _, prefix, _)| *name == format!("{prefix}*"));
            (!(named || (read_only(action) && *name == "*")))
                .then(|| "a snapshot not named after a lifeboat source".to_string())
        }
        "db" => {
            let instance = scope.rds.iter().any(|(_, arn, _, _)| arn == resource);
            let restored = in_dr && *name == "*" && (read_only(action) || dr_run);
            (!(instance || restored))
                .then(|| "neither a source's instance nor one a DR run tagged".to_string())
        }
        "og" | "pg" | "subgrp" => {
            (!(in_dr && action == "rds:RestoreDBInstanceFromDBSnapshot" && dr_run))
                .then(|| "groups are named only by a DR run's restore".to_string())
        }
        other => Some(format!("lifeboat touches no RDS `{other}`")),
    }
}

/// The conditions some actions must carry.
fn condition_problem(st: &Statement, action: &str, scope: &Scope) -> Option<String> {
    let service = action.split_once(':').map(|(s, _)| s).unwrap_or("");
    match action {
        "s3:ListBucket" => match st.condition("s3:prefix") {
            None => Some("without an s3:prefix condition it lists the whole bucket".into()),
            Some(c) => {
                let ok_values: BTreeSet<String> = scope
                    .buckets
                    .iter()
                    .flat_map(|(_, _, ps)| ps.iter())
                    .flat_map(|p| {
                        if p.is_empty() {
                            vec!["*".to_string()]
                        } else {
                            vec![p.clone(), format!("{p}/*")]
                        }
                    })
                    .collect();
                c.values
                    .iter()
                    .find(|v| !ok_values.contains(*v))
                    .map(|v| format!("s3:prefix `{v}` is no repository prefix"))
            }
        },
        "kms:GenerateDataKey" | "kms:Decrypt" => st
            .condition("kms:ViaService")
            .is_none()
            .then(|| "only S3 may use the repository keys (kms:ViaService)".into()),
        "kms:CreateGrant" => st
            .condition("kms:GrantIsForAWSResource")
            .is_none()
            .then(|| "grants only for an AWS service (kms:GrantIsForAWSResource)".into()),
        "route53:ChangeResourceRecordSets" => {
            match st.condition("route53:ChangeResourceRecordSetsNormalizedRecordNames") {
                Some(c)
                    if c.test.starts_with("ForAllValues:")
                        && c.values.iter().all(|v| scope.records.contains(v)) =>
                {
                    None
                }
                _ => Some(
                    "changes only the plans' records (ForAllValues on the normalized record names)"
                        .into(),
                ),
            }
        }
        _ if service == "rds" && !read_only(action) => st
            .lifeboat_tag_condition()
            .is_none()
            .then(|| "changes RDS without a lifeboat: tag condition".into()),
        _ => None,
    }
}

fn policy_problems(m: &Module) -> Vec<String> {
    let ops = listed();
    let (inputs, scope) = sample();
    let mut problems = match document_actions(m) {
        Ok(actions) => {
            let listed = listed_actions(&ops);
            let mut p: Vec<String> = actions
                .difference(&listed)
                .map(|a| format!("the document names {a}, which operations.txt does not list"))
                .collect();
            p.extend(
                listed
                    .difference(&actions)
                    .map(|a| format!("operations.txt lists {a}, which the document never names")),
            );
            p
        }
        Err(p) => p,
    };
    problems.extend(scope_problems(&evaluate(m, &inputs), &scope, &ops));
    problems
}

// --- the tests

#[test]
fn operations_list_is_well_formed_and_names_each_operation_s_own_action() {
    let ops = listed();
    for (op, actions) in &ops {
        let (service, name) = op
            .split_once(':')
            .unwrap_or_else(|| panic!("{op}: not Service:Operation"));
        // RDS, Route53 and KMS actions are the operation's own name; S3's are mapped.
        let own = match service {
            "RDS" => Some(format!("rds:{name}")),
            "Route 53" => Some(format!("route53:{name}")),
            "KMS" => Some(format!("kms:{name}")),
            "S3" => None,
            other => panic!("{op}: lifeboat has no {other} client"),
        };
        if let Some(own) = own {
            assert_eq!(actions.first(), Some(&own), "{op}");
        }
    }
    for op in [
        "RDS:DescribeDBSnapshots",
        "RDS:DescribeDBInstances",
        "RDS:RestoreDBInstanceFromDBSnapshot",
        "RDS:DeleteDBInstance",
        "RDS:AddTagsToResource",
        "RDS:ListTagsForResource",
        "Route 53:ListResourceRecordSets",
        "Route 53:ChangeResourceRecordSets",
        "Route 53:GetChange",
        "Route 53:GetHealthCheckStatus",
    ] {
        assert!(ops.contains_key(op), "the DR steps call {op}");
    }
    assert!(operations("S3:GetObject = s3:*").is_err());
    assert!(operations("S3:GetObject = s3:GetObject\nS3:GetObject = s3:GetObject").is_err());
}

#[test]
fn the_policy_allows_exactly_the_listed_actions_each_on_lifeboat_s_resources() {
    let m = Module::load(&module_dir());
    let problems = policy_problems(&m);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checks can fail: each alteration of main.tf below widens or narrows the policy
/// and is reported.
#[test]
fn a_broader_or_narrower_policy_is_rejected() {
    let dir = module_dir();
    let main = dir.join("main.tf");
    let text = std::fs::read_to_string(&main).unwrap();
    let cases = [
        (
            r#"actions   = ["s3:GetObject", "s3:GetObjectRetention"]"#,
            r#"actions   = ["s3:*", "s3:GetObjectRetention"]"#,
            "`s3:*`: a wildcard action",
        ),
        (
            "resources = statement.value.write",
            r#"resources = ["*"]"#,
            "Resource \"*\"",
        ),
        (
            "resources = statement.value.write",
            r#"resources = [for b in statement.value.buckets : "${b}/*"]"#,
            "writes only under a repository prefix of the primary bucket",
        ),
        (
            r#"variable = "s3:prefix""#,
            r#"variable = "s3:delimiter""#,
            "without an s3:prefix condition it lists the whole bucket",
        ),
        (
            r#"actions   = ["rds:DescribeDBSnapshots", "rds:ListTagsForResource"]"#,
            r#"actions   = ["rds:DescribeDBSnapshots", "rds:ListTagsForResource", "rds:DeleteDBSnapshot"]"#,
            "rds:DeleteDBSnapshot: changes RDS without a lifeboat: tag condition",
        ),
        (
            r#"actions   = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:PutObjectRetention"]"#,
            r#"actions   = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:PutObjectRetention", "s3:PutBucketPolicy"]"#,
            "`s3:PutBucketPolicy` is no action operations.txt lists",
        ),
        (
            r#"actions   = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:PutObjectRetention"]"#,
            r#"actions   = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]"#,
            "operations.txt lists s3:PutObjectRetention, but no statement allows it",
        ),
        (
            r#"resources = ["arn:${local.partition}:route53:::change/*"]"#,
            r#"resources = ["arn:${local.partition}:route53:::*"]"#,
            "not the plans' zone, a change or their health checks",
        ),
        (
            r#"test     = "ForAllValues:StringEquals""#,
            r#"test     = "ForAnyValue:StringEquals""#,
            "changes only the plans' records",
        ),
    ];
    for (from, to, want) in cases {
        assert!(text.contains(from), "main.tf no longer contains `{from}`");
        let others: Vec<(PathBuf, String)> = crate::tf::tf_files(&dir)
            .into_iter()
            .filter(|f| *f != main)
            .map(|f| {
                let t = std::fs::read_to_string(&f).unwrap();
                (f, t)
            })
            .collect();
        let mut texts = others;
        texts.push((main.clone(), text.replacen(from, to, 1)));
        let problems = policy_problems(&Module::from_texts(&dir, &texts));
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "`{from}` -> `{to}`: expected `{want}` in:\n{}",
            problems.join("\n")
        );
    }
}

/// The suite-wide record, when this run has one (scripts/test.sh sets
/// LIFEBOAT_AWS_RECORD_ALL): every operation in it is listed. Other tests may still be
/// adding to it; whatever is there already must be listed.
fn unlisted_recorded_operations(record: &Path) -> (usize, Vec<String>) {
    let ops = listed();
    let text = std::fs::read_to_string(record).unwrap_or_default();
    let recorded: BTreeSet<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let unlisted = recorded
        .iter()
        .filter(|op| !ops.contains_key(**op))
        .map(|op| op.to_string())
        .collect();
    (recorded.len(), unlisted)
}

fn record_path() -> Option<PathBuf> {
    std::env::var_os(lifeboat::aws::RECORD_ALL_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

#[test]
fn every_operation_recorded_so_far_is_listed() {
    let Some(record) = record_path() else {
        return;
    };
    let (_, unlisted) = unlisted_recorded_operations(&record);
    assert!(
        unlisted.is_empty(),
        "{} records operations operations.txt does not list (add them with their IAM actions): {unlisted:?}",
        record.display()
    );
}

/// Run by scripts/test.sh once the whole suite has run (`--run-ignored only`): the
/// record must exist, hold operations, and every one of them must be listed.
#[test]
#[ignore = "needs the suite-wide record: scripts/test.sh runs it after the suite"]
fn every_operation_the_suite_recorded_is_listed() {
    let record = record_path().unwrap_or_else(|| {
        panic!(
            "{} is not set: scripts/test.sh sets it for the whole suite",
            lifeboat::aws::RECORD_ALL_ENV
        )
    });
    let (count, unlisted) = unlisted_recorded_operations(&record);
    assert!(
        count > 0,
        "{} holds no operation: did the suite run?",
        record.display()
    );
    assert!(
        unlisted.is_empty(),
        "{} records operations operations.txt does not list (add them with their IAM actions): {unlisted:?}",
        record.display()
    );
}

#[test]
fn the_record_check_rejects_an_operation_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    std::fs::write(
        &record,
        "S3:PutObject\nS3:PutBucketPolicy\nRDS:CreateDBSnapshot\n",
    )
    .unwrap();
    let (count, unlisted) = unlisted_recorded_operations(&record);
    assert_eq!(
        (count, unlisted),
        (3, vec!["S3:PutBucketPolicy".to_string()])
    );
}

/// The other policy documents (the replication role's, the buckets' TLS-only policy)
/// name their actions one by one too; only a Deny may use a wildcard.
#[test]
fn no_policy_document_allows_a_wildcard_action() {
    let mut documents = 0;
    for dir in crate::tf::module_dirs() {
        let m = Module::load(&dir);
        for (file, b) in m.blocks() {
            if b.identifier() != "data" || b.labels()[0].as_str() != "aws_iam_policy_document" {
                continue;
            }
            documents += 1;
            for st in statement_bodies(b) {
                let deny = matches!(attr(st, "effect"), Some(Expression::String(e)) if e == "Deny");
                let Some(Expression::Array(actions)) = attr(st, "actions") else {
                    panic!(
                        "{}: {}: actions must be a literal list",
                        file.display(),
                        b.labels()[1].as_str()
                    );
                };
                for a in actions {
                    let Expression::String(a) = a else {
                        panic!(
                            "{}: {}: `{a:?}` is not a literal action",
                            file.display(),
                            b.labels()[1].as_str()
                        );
                    };
                    assert!(
                        deny || !a.contains('*'),
                        "{}: {}: `{a}` allows every action it matches",
                        file.display(),
                        b.labels()[1].as_str()
                    );
                }
                assert!(
                    attr(st, "not_actions").is_none() || deny,
                    "{}: NotAction in an Allow",
                    file.display()
                );
            }
        }
    }
    assert!(documents >= 5, "found {documents} policy documents");
}
