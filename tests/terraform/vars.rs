//! `lifeboat terraform vars` writes exactly the variables of `lifeboat.variables.tf`,
//! each of its declared type; the other variables of the environment are shown in its
//! example tfvars or have defaults.

use crate::tf::{Module, root, tf_files};
use assert_cmd::Command;
use hcl::Expression;
use hcl::expr::FuncName;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn env_dir() -> PathBuf {
    root().join("environments/bizra")
}

fn bizra() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/bizra")
}

fn lifeboat() -> Command {
    let mut c = Command::cargo_bin("lifeboat").unwrap();
    c.env_remove("LIFEBOAT_POLICIES");
    c
}

/// The variables lifeboat sets: those declared in `lifeboat.variables.tf`.
fn policy_variables() -> Vec<(String, Expression)> {
    let m = Module::load(&env_dir());
    m.variables
        .iter()
        .filter(|(_, v)| v.file.ends_with("lifeboat.variables.tf"))
        .map(|(name, v)| {
            assert!(
                !v.has_default,
                "{name}: lifeboat sets it; a default would hide a missing key"
            );
            (
                name.clone(),
                v.type_expr
                    .clone()
                    .unwrap_or_else(|| panic!("{name}: no type")),
            )
        })
        .collect()
}

/// `lifeboat terraform vars` on policies/bizra, as JSON.
pub fn generated() -> Value {
    let out = tempfile::tempdir().unwrap();
    lifeboat()
        .args(["terraform", "vars", "--policies"])
        .arg(bizra())
        .arg("--out")
        .arg(out.path())
        .assert()
        .success();
    let text = std::fs::read_to_string(out.path().join("lifeboat.auto.tfvars.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn func_name(f: &FuncName) -> String {
    f.name.to_string()
}

/// Every way `value` does not fit the terraform type constraint `ty`, at `path`.
/// Like terraform, any value may be null; an object must have each attribute that is
/// not `optional(...)`, and no other.
pub fn type_problems(ty: &Expression, value: &Value, path: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut bad = |want: &str| problems.push(format!("{path}: expected {want}, found {value}"));
    if value.is_null() {
        return problems;
    }
    match ty {
        Expression::Variable(v) => match v.as_str() {
            "string" if !value.is_string() => bad("a string"),
            "number" if !value.is_number() => bad("a number"),
            "bool" if !value.is_boolean() => bad("a bool"),
            "string" | "number" | "bool" | "any" => {}
            other => panic!("{path}: unknown type `{other}`"),
        },
        Expression::FuncCall(f) => match (func_name(&f.name).as_str(), f.args.as_slice()) {
            ("list" | "set", [elem]) => match value.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        problems.extend(type_problems(elem, item, &format!("{path}[{i}]")));
                    }
                }
                None => bad("a list"),
            },
            ("map", [elem]) => match value.as_object() {
                Some(map) => {
                    for (k, item) in map {
                        problems.extend(type_problems(elem, item, &format!("{path}[\"{k}\"]")));
                    }
                }
                None => bad("a map"),
            },
            ("object", [Expression::Object(attrs)]) => match value.as_object() {
                Some(map) => {
                    let mut declared = BTreeSet::new();
                    for (k, t) in attrs {
                        let key = match k {
                            hcl::ObjectKey::Identifier(i) => i.to_string(),
                            hcl::ObjectKey::Expression(Expression::Variable(v)) => v.to_string(),
                            other => panic!("{path}: unexpected attribute {other:?}"),
                        };
                        let (t, optional) = match t {
                            Expression::FuncCall(f) if func_name(&f.name) == "optional" => {
                                (&f.args[0], true)
                            }
                            t => (t, false),
                        };
                        match map.get(&key) {
                            Some(v) => {
                                problems.extend(type_problems(t, v, &format!("{path}.{key}")))
                            }
                            None if optional => {}
                            None => problems.push(format!("{path}.{key}: missing")),
                        }
                        declared.insert(key);
                    }
                    for k in map.keys().filter(|k| !declared.contains(*k)) {
                        problems.push(format!("{path}.{k}: not an attribute of the type"));
                    }
                }
                None => bad("an object"),
            },
            (other, _) => panic!("{path}: unknown type constructor `{other}`"),
        },
        other => panic!("{path}: unknown type expression {other:?}"),
    }
    problems
}

/// Every way a tfvars document does not match the variables: keys not declared,
/// variables not set, values not of their type.
pub fn tfvars_problems(vars: &[(String, Expression)], doc: &Value) -> Vec<String> {
    let obj = doc.as_object().expect("a JSON object");
    let mut problems = Vec::new();
    for k in obj.keys() {
        if !vars.iter().any(|(n, _)| n == k) {
            problems.push(format!(
                "{k}: written, but lifeboat.variables.tf declares no such variable"
            ));
        }
    }
    for (name, ty) in vars {
        match obj.get(name) {
            None => problems.push(format!("{name}: declared, but not written")),
            Some(v) => problems.extend(type_problems(ty, v, name)),
        }
    }
    problems
}

#[test]
fn the_generated_tfvars_set_exactly_the_lifeboat_variables_with_their_types() {
    let vars = policy_variables();
    assert!(vars.len() >= 6, "{vars:?}");
    let doc = generated();
    let problems = tfvars_problems(&vars, &doc);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // What the runbooks rely on, from policies/bizra.
    assert_eq!(doc["primary_region"], "us-east-1");
    assert_eq!(doc["dr_region"], "us-west-2");
    let bucket = &doc["s3_buckets"]["bizra-lifeboat-backups"];
    assert_eq!(bucket["prefixes"], serde_json::json!(["prod"]));
    assert_eq!(bucket["kms_key_id"], "alias/bizra-lifeboat");
    assert_eq!(bucket["object_lock"]["mode"], "GOVERNANCE");
    // The shortest keep-within of the matrix is redis's 24 h.
    assert_eq!(bucket["object_lock"]["default_retention_days"], 1);
    assert_eq!(
        doc["rds_sources"]["rds"]["snapshot_prefix"],
        "lifeboat-rds-"
    );
    assert_eq!(
        doc["azure_storage"]["bizralifeboat"]["container"],
        "backups"
    );
}

/// The check can fail: a key too many, one missing, a value of the wrong type.
#[test]
fn the_tfvars_check_rejects_keys_and_types_that_do_not_match() {
    let vars = policy_variables();
    let doc = generated();
    let mut extra = doc.clone();
    extra["replica_region"] = "us-west-2".into();
    let mut missing = doc.clone();
    missing.as_object_mut().unwrap().remove("route53");
    let mut wrong = doc.clone();
    wrong["s3_buckets"]["bizra-lifeboat-backups"]["object_lock"]["default_retention_days"] =
        "1d".into();
    let mut unknown_attr = doc.clone();
    unknown_attr["rds_sources"]["rds"]["copies"][0]["kms_key"] = "alias/x".into();
    for (doc, want) in [
        (
            extra,
            "replica_region: written, but lifeboat.variables.tf declares no such variable",
        ),
        (missing, "route53: declared, but not written"),
        (
            wrong,
            "s3_buckets[\"bizra-lifeboat-backups\"].object_lock.default_retention_days: expected a number",
        ),
        (
            unknown_attr,
            "rds_sources[\"rds\"].copies[0].kms_key: not an attribute of the type",
        ),
    ] {
        let problems = tfvars_problems(&vars, &doc);
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "expected `{want}` in {problems:?}"
        );
    }
}

/// Variables lifeboat does not set have a default or are shown in the example.
#[test]
fn every_other_variable_has_a_default_or_an_example() {
    let dir = env_dir();
    let m = Module::load(&dir);
    let example = std::fs::read_to_string(dir.join("bizra.tfvars.example")).unwrap();
    let example = hcl::parse(&example).unwrap();
    let shown: BTreeSet<String> = example.attributes().map(|a| a.key().to_string()).collect();
    for k in &shown {
        let v = m
            .variables
            .get(k)
            .unwrap_or_else(|| panic!("bizra.tfvars.example sets `{k}`, which is not a variable"));
        assert!(
            !v.file.ends_with("lifeboat.variables.tf"),
            "bizra.tfvars.example sets `{k}`, which lifeboat writes"
        );
    }
    for (name, v) in &m.variables {
        if v.file.ends_with("lifeboat.variables.tf") || v.has_default {
            continue;
        }
        assert!(
            shown.contains(name),
            "variable `{name}` has no default and is not in bizra.tfvars.example"
        );
    }
    assert!(
        tf_files(&dir)
            .iter()
            .any(|f| f.ends_with("lifeboat.variables.tf"))
    );
}

#[test]
fn a_policy_terraform_cannot_provision_is_refused_naming_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(
        &policy,
        r#"
[repositories.s3]
url = "s3://some-bucket/x"
[sources.db]
kind = "rds"
instance = "prod-db"
region = "us-east-1"
destinations = ["s3"]
"#,
    )
    .unwrap();
    let out = lifeboat()
        .args(["terraform", "vars", "--policies"])
        .arg(&policy)
        .arg("--out")
        .arg(dir.path())
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    for want in [
        "p.toml: repositories.s3.region: missing: terraform creates the bucket in this region (add region = \"us-east-1\")",
        "p.toml: sources.db.copy-to-regions: missing: a region failover restores from a copy in the DR region",
    ] {
        assert!(stderr.contains(want), "missing `{want}` in:\n{stderr}");
    }
    assert!(
        !dir.path().join("lifeboat.auto.tfvars.json").exists(),
        "nothing is written on error"
    );
}

#[test]
fn json_output_names_the_file_written() {
    let out = tempfile::tempdir().unwrap();
    let assert = lifeboat()
        .args(["--json", "terraform", "vars", "--policies"])
        .arg(bizra())
        .arg("--out")
        .arg(out.path())
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    let written = out.path().join("lifeboat.auto.tfvars.json");
    assert_eq!(v["written"], written.display().to_string());
    assert_eq!(v["vars"]["dr_region"], "us-west-2");
}
