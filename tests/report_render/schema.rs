//! The JSON rendering against `docs/report.schema.json`: the report validates, reads
//! back unchanged, and the schema rejects what the model would not write, so a drift
//! between the two fails here.

use super::report;
use jsonschema::Validator;
use lifeboat::report::model::Report;
use rstest::rstest;
use serde_json::{Value, json};
use std::path::Path;

fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn validator() -> Validator {
    let schema = schema();
    if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
        panic!("docs/report.schema.json is not a valid 2020-12 schema: {e}");
    }
    // Formats are annotations only in 2020-12 unless asked for; the times must be
    // checked as RFC 3339.
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("docs/report.schema.json does not compile: {e}"))
}

fn errors(v: &Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn to_json(report: &Report) -> Value {
    serde_json::from_str(&serde_json::to_string(report).unwrap()).unwrap()
}

#[rstest]
fn the_report_json_validates_and_reads_back(report: Report) {
    let json = to_json(&report);
    let errs = errors(&validator(), &json);
    assert!(errs.is_empty(), "schema errors: {errs:#?}");
    let back: Report = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
}

#[rstest]
fn the_json_spells_what_the_schema_describes(report: Report) {
    let json = to_json(&report);
    // The fixture exercises both sides of the options the schema types as "or null".
    assert_eq!(json["format"], "lifeboat.report.v1");
    assert_eq!(json["sources"][0]["newest"], Value::Null);
    assert!(json["sources"][1]["newest"]["backup-id"].is_string());
    assert_eq!(
        json["plans"][1]["drills"][0]["slowest-step"],
        json!(["restore-pg", 412.0])
    );
    assert_eq!(
        json["plans"][1]["drills"][0]["steps"][4]["started-at"],
        Value::Null
    );
    assert_eq!(
        json["sources"][2]["last-trial"]["counts"]["sequences"],
        json!({"expected": 12, "actual": null})
    );
}

/// How a case spoils the valid JSON.
enum Spoil {
    /// Add a member to the object at the pointer.
    Add(&'static str, Value),
    /// Remove a member from the object at the pointer.
    Remove(&'static str),
    /// Replace the value at the pointer.
    Set(Value),
}

#[rstest]
#[case::unknown_top_level_field("", Spoil::Add("colour", json!("red")))]
#[case::unknown_source_field("/sources/1", Spoil::Add("owner", json!("ops")))]
#[case::unknown_step_field("/plans/1/drills/0/steps/0", Spoil::Add("retries", json!(2)))]
#[case::unknown_count_field(
    "/sources/2/last-trial/counts/tables",
    Spoil::Add("delta", json!(0))
)]
#[case::missing_verdict("", Spoil::Remove("verdict"))]
#[case::missing_null_option("/sources/0", Spoil::Remove("within-target"))]
#[case::missing_drill_field("/plans/1/drills/1", Spoil::Remove("rto"))]
#[case::snake_case_name("/sources/1", Spoil::Add("rpo_secs", json!(21600)))]
#[case::other_format("/format", Spoil::Set(json!("lifeboat.report.v2")))]
#[case::unknown_verdict("/sources/1/verdict", Spoil::Set(json!("OK")))]
#[case::unknown_verification("/sources/1/timeline/0/verification", Spoil::Set(json!("maybe")))]
#[case::time_not_rfc3339("/generated-at", Spoil::Set(json!("yesterday")))]
#[case::share_over_one("/sources/1/within-target", Spoil::Set(json!(1.5)))]
#[case::slowest_step_of_three("/plans/1/drills/0/slowest-step", Spoil::Set(json!(["a", 1.0, 2])))]
#[case::slowest_step_as_object(
    "/plans/1/drills/0/slowest-step",
    Spoil::Set(json!({"id": "a", "secs": 1.0}))
)]
#[case::exit_code_not_documented("/exit-code", Spoil::Set(json!(1)))]
fn the_schema_rejects(report: Report, #[case] pointer: &str, #[case] spoil: Spoil) {
    let v = validator();
    let mut json = to_json(&report);
    let target = json
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in the report"));
    match spoil {
        Spoil::Add(key, value) => {
            let object = target.as_object_mut().unwrap();
            assert!(object.insert(key.into(), value).is_none(), "{key} exists");
        }
        Spoil::Remove(key) => {
            let object = target.as_object_mut().unwrap();
            assert!(object.remove(key).is_some(), "no {key} at {pointer}");
        }
        Spoil::Set(value) => *target = value,
    }
    let errs = errors(&v, &json);
    assert!(!errs.is_empty(), "the schema accepted a spoiled {pointer}");
    // An error inside an `anyOf` (the nullable objects) is reported where the `anyOf`
    // stands, so it may name an ancestor of the spoiled spot, but never another place.
    let paths: Vec<&str> = errs.iter().map(|e| e.split(": ").next().unwrap()).collect();
    assert!(
        paths
            .iter()
            .all(|p| pointer.starts_with(p) || p.starts_with(pointer)),
        "an error away from {pointer}: {errs:#?}"
    );
}
