//! What `terraform validate` would catch first: references to nothing, module inputs
//! that do not exist or are missing, outputs read that a module does not have.

use crate::tf::{Module, Ref, module_dirs, references};
use std::path::Path;

/// Names terraform itself provides wherever they may appear.
const BUILTIN_ROOTS: &[&str] = &["each", "count", "path", "terraform", "self"];

/// Module meta arguments, not inputs.
const META: &[&str] = &[
    "source",
    "version",
    "providers",
    "count",
    "for_each",
    "depends_on",
];

/// The module a call's `source` names (a local path).
fn called(m: &Module, source: &str) -> Module {
    assert!(
        source.starts_with("./") || source.starts_with("../"),
        "{}: module source `{source}` is not a local path",
        m.dir.display()
    );
    Module::load(&m.dir.join(source))
}

/// Every problem with the references of `m`, one line each.
pub fn reference_problems(m: &Module) -> Vec<String> {
    let mut problems = Vec::new();
    let refs = references(m);
    let at = |r: &Ref| format!("{}: `{}`", r.file.display(), r.text());
    for r in &refs {
        let p = &r.path;
        let name = p.get(1).map(String::as_str).unwrap_or("");
        match p[0].as_str() {
            "var" if !m.variables.contains_key(name) => {
                problems.push(format!("{}: no variable `{name}` is declared", at(r)));
            }
            "local" if !m.locals.contains_key(name) => {
                problems.push(format!("{}: no local `{name}` is declared", at(r)));
            }
            "data" => {
                let key = format!(
                    "data.{}.{}",
                    name,
                    p.get(2).map(String::as_str).unwrap_or("")
                );
                if !m.resources.contains(&key) {
                    problems.push(format!("{}: no {key} is declared", at(r)));
                }
            }
            "module" => match m.calls.get(name) {
                None => problems.push(format!("{}: no module `{name}` is called", at(r))),
                Some((source, _)) => {
                    // module.NAME[key].OUTPUT or module.NAME.OUTPUT
                    let output = p[2..].iter().find(|s| *s != "[]");
                    let target = called(m, source);
                    if let Some(o) = output
                        && !target.outputs.contains(o)
                    {
                        problems.push(format!("{}: module {source} has no output `{o}`", at(r)));
                    }
                }
            },
            "var" | "local" => {}
            root if BUILTIN_ROOTS.contains(&root) => {}
            root if root.starts_with("aws_") || root.starts_with("azurerm_") => {
                let key = format!("{root}.{name}");
                if !m.resources.contains(&key) {
                    problems.push(format!("{}: no resource {key} is declared", at(r)));
                }
            }
            root => problems.push(format!("{}: `{root}` names nothing here", at(r))),
        }
    }
    for (name, v) in &m.variables {
        if !refs
            .iter()
            .any(|r| r.path[0] == "var" && r.path.get(1) == Some(name))
        {
            problems.push(format!(
                "{}: variable `{name}` is never used",
                v.file.display()
            ));
        }
    }
    for name in m.locals.keys() {
        if !refs
            .iter()
            .any(|r| r.path[0] == "local" && r.path.get(1) == Some(name))
        {
            problems.push(format!("{}: local `{name}` is never used", m.dir.display()));
        }
    }
    problems
}

/// Every problem with the module calls of `m`: inputs the called module does not
/// declare, required inputs not given.
pub fn call_problems(m: &Module) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, (source, block)) in &m.calls {
        let target = called(m, source);
        let given: Vec<&str> = block.body().attributes().map(|a| a.key()).collect();
        for g in &given {
            if !META.contains(g) && !target.variables.contains_key(*g) {
                problems.push(format!(
                    "{}: module {name}: input `{g}` is not a variable of {source} (its variables: {})",
                    m.dir.display(),
                    target.variables.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        for (v, decl) in &target.variables {
            if !decl.has_default && !given.contains(&v.as_str()) {
                problems.push(format!(
                    "{}: module {name}: required input `{v}` of {source} is not given",
                    m.dir.display()
                ));
            }
        }
    }
    problems
}

fn show(dir: &Path, problems: &[String]) -> String {
    format!("{}:\n  {}", dir.display(), problems.join("\n  "))
}

#[test]
fn every_reference_is_declared_and_every_variable_used() {
    for dir in module_dirs() {
        let m = Module::load(&dir);
        let problems = reference_problems(&m);
        assert!(problems.is_empty(), "{}", show(&dir, &problems));
    }
}

#[test]
fn every_module_input_exists_and_every_required_one_is_given() {
    let mut calls = 0;
    for dir in module_dirs() {
        let m = Module::load(&dir);
        calls += m.calls.len();
        let problems = call_problems(&m);
        assert!(problems.is_empty(), "{}", show(&dir, &problems));
    }
    assert!(calls >= 4, "the environment calls every module");
}

#[test]
fn every_variable_and_output_is_described() {
    for dir in module_dirs() {
        for (f, body) in &Module::load(&dir).files {
            for b in body.blocks() {
                if matches!(b.identifier(), "variable" | "output") {
                    let described = matches!(
                        crate::tf::attr(b.body(), "description"),
                        Some(hcl::Expression::String(s)) if !s.is_empty()
                    );
                    assert!(
                        described,
                        "{}: {} {} has no description",
                        f.display(),
                        b.identifier(),
                        b.labels()[0].as_str()
                    );
                }
            }
        }
    }
}

/// The checks can fail: a misspelt variable, an undeclared resource, a module input
/// that does not exist and an output that is not there are each reported.
#[test]
fn the_reference_checks_reject_what_terraform_would() {
    let dir = crate::tf::root().join("environments/bizra");
    let main = dir.join("main.tf");
    let text = std::fs::read_to_string(&main).unwrap();
    let cases = [
        (
            "var.dr_region",
            "var.dr_regoin",
            "no variable `dr_regoin` is declared",
        ),
        (
            "aws_kms_key.rds_copy[each.key].key_id",
            "aws_kms_key.rds_copyy[each.key].key_id",
            "no resource aws_kms_key.rds_copyy is declared",
        ),
        (
            "module.backup_bucket[bucket].bucket_arn",
            "module.backup_bucket[bucket].bucket_id",
            "has no output `bucket_id`",
        ),
        (
            "  lifeboat_principal_id = var.azure_lifeboat_principal_id",
            "  principal_id          = var.azure_lifeboat_principal_id",
            "input `principal_id` is not a variable of ../../modules/azure-backup-storage",
        ),
        (
            "  oidc_issuer       = var.eks_oidc_issuer\n",
            "",
            "required input `oidc_issuer` of ../../modules/lifeboat-iam is not given",
        ),
    ];
    for (from, to, want) in cases {
        assert!(text.contains(from), "main.tf no longer contains `{from}`");
        let altered = text.replacen(from, to, 1);
        let mut texts: Vec<_> = crate::tf::tf_files(&dir)
            .into_iter()
            .filter(|f| *f != main)
            .map(|f| {
                let t = std::fs::read_to_string(&f).unwrap();
                (f, t)
            })
            .collect();
        texts.push((main.clone(), altered));
        let m = Module::from_texts(&dir, &texts);
        let mut problems = reference_problems(&m);
        problems.extend(call_problems(&m));
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "`{from}` -> `{to}`: expected `{want}` in:\n{}",
            problems.join("\n")
        );
    }
}
