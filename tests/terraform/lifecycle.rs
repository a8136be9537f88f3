//! No lifecycle rule may delete what the policy promises to keep: retention belongs to
//! prune, which knows which backup is the last good one. A rule may abort unfinished
//! uploads, remove versions that stopped being current, and expire only objects a
//! prune tagged as given up; it never expires, deletes or archives a current object by
//! age.

use crate::tf::{Module, attr, root};
use hcl::{Block, Body, Structure};
use std::path::{Path, PathBuf};

/// The rules of a lifecycle resource: `rule` blocks and the content of `dynamic "rule"`.
fn rules(body: &Body) -> Vec<&Body> {
    let mut out = Vec::new();
    for b in body.blocks() {
        match b.identifier() {
            "rule" => out.push(b.body()),
            "dynamic" if b.labels().first().is_some_and(|l| l.as_str() == "rule") => {
                out.extend(content(b));
            }
            _ => {}
        }
    }
    out
}

fn content(dynamic: &Block) -> Option<&Body> {
    dynamic
        .body()
        .blocks()
        .find(|c| c.identifier() == "content")
        .map(|c| c.body())
}

/// The nested blocks named `name`, static or dynamic.
fn nested<'a>(body: &'a Body, name: &str) -> Vec<&'a Body> {
    let mut out = Vec::new();
    for s in body.iter() {
        if let Structure::Block(b) = s {
            if b.identifier() == name {
                out.push(b.body());
            } else if b.identifier() == "dynamic"
                && b.labels().first().is_some_and(|l| l.as_str() == name)
            {
                out.extend(content(b));
            }
        }
    }
    out
}

fn rule_name(rule: &Body) -> String {
    attr(rule, "id")
        .or_else(|| attr(rule, "name"))
        .map(|e| match e {
            hcl::Expression::String(s) => s.clone(),
            other => format!("{other:?}"),
        })
        .unwrap_or_else(|| "(unnamed)".into())
}

/// Every S3 lifecycle rule of `m` that could age out a current object.
pub fn s3_problems(m: &Module) -> Vec<String> {
    let mut problems = Vec::new();
    for (file, res) in m.resources_of("aws_s3_bucket_lifecycle_configuration") {
        let at = format!("{}: {}", file.display(), res.labels()[1].as_str());
        for rule in rules(res.body()) {
            let name = rule_name(rule);
            // Tagged by prune as given up: the only current objects a rule may expire.
            let tagged = nested(rule, "filter").iter().any(|f| {
                !nested(f, "tag").is_empty()
                    || nested(f, "and").iter().any(|a| attr(a, "tags").is_some())
            });
            for e in nested(rule, "expiration") {
                for key in ["days", "date"] {
                    if attr(e, key).is_some() && !tagged {
                        problems.push(format!(
                            "{at}: rule {name}: expiration {{ {key} = ... }} expires current objects by age; \
                             retention belongs to prune (filter on the tag a prune sets, or remove the rule)"
                        ));
                    }
                }
            }
            if !nested(rule, "transition").is_empty() {
                problems.push(format!(
                    "{at}: rule {name}: a transition moves current objects by age; an archive class needs \
                     a rehydration before any restore"
                ));
            }
        }
    }
    problems
}

/// Every Azure management policy rule of `m` that could age out a current blob.
pub fn azure_problems(m: &Module) -> Vec<String> {
    let mut problems = Vec::new();
    for (file, res) in m.resources_of("azurerm_storage_management_policy") {
        let at = format!("{}: {}", file.display(), res.labels()[1].as_str());
        for rule in rules(res.body()) {
            let name = rule_name(rule);
            let tagged = nested(rule, "filters")
                .iter()
                .any(|f| !nested(f, "match_blob_index_tag").is_empty());
            for actions in nested(rule, "actions") {
                for base in nested(actions, "base_blob") {
                    for a in base.attributes() {
                        let ages_out = a.key().starts_with("delete_");
                        let archives = a.key().contains("archive");
                        if (ages_out && !tagged) || archives {
                            problems.push(format!(
                                "{at}: rule {name}: base_blob {{ {} }} acts on current blobs by age; \
                                 retention belongs to prune",
                                a.key()
                            ));
                        }
                    }
                }
                for old in nested(actions, "version")
                    .into_iter()
                    .chain(nested(actions, "snapshot"))
                {
                    for a in old.attributes().filter(|a| a.key().contains("archive")) {
                        problems.push(format!(
                            "{at}: rule {name}: {} archives previous versions, which a restore of an older backup reads",
                            a.key()
                        ));
                    }
                }
            }
        }
    }
    problems
}

fn module(name: &str) -> PathBuf {
    root().join("modules").join(name)
}

fn altered(dir: &Path, from: &str, to: &str) -> Module {
    let main = dir.join("main.tf");
    let text = std::fs::read_to_string(&main).unwrap();
    assert!(
        text.contains(from),
        "{} no longer contains `{from}`",
        main.display()
    );
    Module::from_texts(dir, &[(main, text.replacen(from, to, 1))])
}

#[test]
fn no_lifecycle_rule_ages_out_a_current_backup() {
    let s3 = Module::load(&module("backup-bucket"));
    assert_eq!(
        s3.resources_of("aws_s3_bucket_lifecycle_configuration")
            .len(),
        2
    );
    assert_eq!(s3_problems(&s3), Vec::<String>::new());
    let azure = Module::load(&module("azure-backup-storage"));
    assert_eq!(
        azure
            .resources_of("azurerm_storage_management_policy")
            .len(),
        1
    );
    assert_eq!(azure_problems(&azure), Vec::<String>::new());
}

/// The check can fail: an age-based expiry, a transition, a tag rule that lost its
/// tag, an Azure delete of current blobs are each rejected.
#[test]
fn a_rule_that_ages_out_current_objects_is_rejected() {
    let dir = module("backup-bucket");
    let abort = "    abort_incomplete_multipart_upload {\n      days_after_initiation = var.abort_incomplete_multipart_days\n    }\n";
    for (from, to, want) in [
        (
            abort,
            format!("{abort}\n    expiration {{\n      days = 400\n    }}\n"),
            "rule abort-incomplete-multipart-uploads: expiration { days = ... } expires current objects by age",
        ),
        (
            abort,
            format!(
                "{abort}\n    transition {{\n      days          = 30\n      storage_class = \"GLACIER\"\n    }}\n"
            ),
            "rule abort-incomplete-multipart-uploads: a transition moves current objects by age",
        ),
        (
            "        tag {\n          key   = rule.value.key\n          value = rule.value.value\n        }\n",
            String::new(),
            "rule expire-tagged-deleted: expiration { days = ... } expires current objects by age",
        ),
    ] {
        let problems = s3_problems(&altered(&dir, from, &to));
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "expected `{want}` in {problems:?}"
        );
    }

    let dir = module("azure-backup-storage");
    let version = "      version {\n        delete_after_days_since_creation = var.previous_version_days\n      }\n";
    for (to, want) in [
        (
            "      base_blob {\n        delete_after_days_since_modification_greater_than = 90\n      }\n",
            "rule expire-previous-versions: base_blob { delete_after_days_since_modification_greater_than }",
        ),
        (
            "      version {\n        change_tier_to_archive_after_days_since_creation = 7\n      }\n",
            "change_tier_to_archive_after_days_since_creation archives previous versions",
        ),
    ] {
        let problems = azure_problems(&altered(&dir, version, to));
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "expected `{want}` in {problems:?}"
        );
    }
}
