//! Hostile manifests: a repository someone else can write may hold a manifest whose
//! seal is intact (the seal is a digest, anyone can recompute it) but whose fields are
//! absurd. Read by a new host (no catalog to compare with), `list`, `verify` and
//! `restore` must refuse such a manifest with an error, never panic, abort on a huge
//! allocation, or hang; and no target may be left half-made.
//!
//! The short form runs every hand-written mutation and a few seeded random ones; the
//! long form (`--ignored`, `LIFEBOAT_HOSTILE_TRIALS`) runs many more random ones.

use crate::common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// A tiny deterministic generator: the seed is printed so any failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn reseal(body: &Value) -> Vec<u8> {
    let text = serde_json::to_string_pretty(body).unwrap();
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    format!(
        "{{\n\"format\": \"lifeboat-manifest/1\",\n\"body-sha256\": \"{digest}\",\n\"body\": {text}\n}}\n"
    )
    .into_bytes()
}

/// Values a hostile writer would try.
fn hostile_values() -> Vec<Value> {
    vec![
        json!(0),
        json!(1),
        json!(-1),
        json!(1u64 << 40),
        json!(u64::MAX),
        json!(i64::MAX),
        json!(1e300),
        json!(""),
        json!("../../../../etc/passwd"),
        json!("x".repeat(100_000)),
        json!(null),
        json!([]),
        json!({}),
        json!(true),
        json!("9999-12-31T23:59:59Z"),
        json!("0000-01-01T00:00:00Z"),
    ]
}

/// Every leaf of `v` as a JSON pointer.
fn leaves(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                leaves(
                    x,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                leaves(x, format!("{at}/{i}"), out);
            }
        }
        _ => out.push(at),
    }
}

/// Named mutations, each a change to the manifest body.
fn named(body: &Value) -> Vec<(String, Value)> {
    let size = body["stored"]["size"].as_u64().unwrap();
    let chunks = body["stored"]["chunks"].clone();
    let mut out: Vec<(String, Value)> = Vec::new();
    let mut set = |name: &str, edits: &[(&str, Value)]| {
        let mut b = body.clone();
        for (p, v) in edits {
            *b.pointer_mut(p).unwrap() = v.clone();
        }
        out.push((name.to_string(), b));
    };
    set(
        "stored size and chunk size 2^40",
        &[
            ("/stored/size", json!(1u64 << 40)),
            ("/stored/chunk-size", json!(1u64 << 40)),
        ],
    );
    set("stored size u64::MAX", &[("/stored/size", json!(u64::MAX))]);
    set(
        "stored size one short",
        &[("/stored/size", json!(size - 1))],
    );
    set("stored size one long", &[("/stored/size", json!(size + 1))]);
    set("chunk size 0", &[("/stored/chunk-size", json!(0))]);
    set("chunk size 1", &[("/stored/chunk-size", json!(1))]);
    set(
        "chunk size u64::MAX",
        &[("/stored/chunk-size", json!(u64::MAX))],
    );
    set("no chunks", &[("/stored/chunks", json!([]))]);
    {
        let mut many = chunks.as_array().unwrap().clone();
        let first = many[0].clone();
        many.extend(std::iter::repeat_n(first, 100_000));
        set(
            "a hundred thousand chunks",
            &[("/stored/chunks", Value::Array(many))],
        );
    }
    set(
        "a chunk hash that is not hex",
        &[("/stored/chunks/0", json!("zz".repeat(32)))],
    );
    set("raw size u64::MAX", &[("/raw/size", json!(u64::MAX))]);
    set("compression gzip", &[("/compression", json!("gzip"))]);
    set("encryption aes", &[("/encryption", json!("aes-256-gcm"))]);
    set("another kind", &[("/kind", json!("redis"))]);
    set(
        "start at the end of time",
        &[("/started-at", json!("9999-12-31T23:59:59Z"))],
    );
    set(
        "consistency point at year 0",
        &[("/consistency-point", json!("0000-01-01T00:00:00Z"))],
    );
    set(
        "keep until the end of time",
        &[("/keep-until", json!("9999-12-31T23:59:59Z"))],
    );
    set(
        "a count of u64::MAX",
        &[("/counts", json!({"rows.events": u64::MAX}))],
    );
    set(
        "a count named like a path",
        &[("/counts", json!({"../../x": 1, "rows.\n": 2}))],
    );
    set(
        "engine path elsewhere",
        &[("/engine/path", json!("/etc/passwd"))],
    );
    set(
        "engine details deeply nested",
        &[(
            "/engine",
            serde_json::from_str(&format!("{}{}", "[".repeat(120), "]".repeat(120))).unwrap(),
        )],
    );
    out
}

fn random(body: &Value, rng: &mut Rng) -> Value {
    let mut b = body.clone();
    let values = hostile_values();
    for _ in 0..1 + rng.below(3) {
        let mut paths = Vec::new();
        leaves(&b, String::new(), &mut paths);
        let p = paths[rng.below(paths.len())].clone();
        *b.pointer_mut(&p).unwrap() = values[rng.below(values.len())].clone();
    }
    b
}

/// Run `args` on a fresh catalog; the exit code, which must be a documented one (a
/// crash is added to `failures`, and counts as 1).
fn survive(
    env: &Env,
    what: &str,
    args: &[&str],
    target: Option<&std::path::Path>,
    failures: &mut Vec<String>,
) -> i32 {
    let _ = std::fs::remove_dir_all(env.policies.join(".lifeboat"));
    let mut c = env.cmd();
    c.args(args).timeout(Duration::from_secs(60));
    if let Some(t) = target {
        c.arg(t);
    }
    let out = c.output().unwrap();
    let err = stderr(&out);
    let code = out.status.code();
    if !matches!(code, Some(0 | 1 | 2 | 4)) || err.contains("panicked") {
        let first = err.lines().take(2).collect::<Vec<_>>().join(" / ");
        failures.push(format!(
            "{what}: `lifeboat {}` ended with {:?}: {first}",
            args.join(" "),
            out.status
        ));
        return 1;
    }
    code.unwrap()
}

fn campaign(trials: usize, seed: u64) {
    eprintln!("hostile manifest campaign: seed {seed}, {trials} random trials");
    let env = Env::new("64KiB", "keep-last = 5");
    make_db(&env.db, 800, 200);
    let id = env.backup();
    let path = env.object(&id, "manifest.json");
    let original = std::fs::read(&path).unwrap();
    let sealed: Value = serde_json::from_slice(&original).unwrap();
    let body = sealed["body"].clone();
    let mut rng = Rng(seed | 1);
    let mut cases = named(&body);
    for i in 0..trials {
        cases.push((format!("random {i}"), random(&body, &mut rng)));
    }
    let target = env.dir.path().join("restored.db");
    let mut failures = Vec::new();
    for (what, b) in &cases {
        std::fs::write(&path, reseal(b)).unwrap();
        survive(&env, what, &["list"], None, &mut failures);
        survive(&env, what, &["verify", "--all"], None, &mut failures);
        let r = survive(
            &env,
            what,
            &["restore", "app", "--backup", &id, "--to"],
            Some(&target),
            &mut failures,
        );
        if r == 0 {
            // Accepted (the change touched nothing a restore depends on): then the
            // target is the whole database.
            assert_eq!(count(&target, "events"), 800, "{what}");
            assert!(integrity_ok(&target), "{what}");
            std::fs::remove_file(&target).unwrap();
        } else if target.exists() {
            failures.push(format!("{what}: a refused restore left a target"));
            let _ = std::fs::remove_file(&target);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile manifests broke a command:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    std::fs::write(&path, &original).unwrap();
    let _ = std::fs::remove_dir_all(env.policies.join(".lifeboat"));
    env.cmd().args(["verify", "--all"]).assert().success();
}

#[test]
fn hostile_resealed_manifests_are_refused_without_a_crash() {
    campaign(6, 0x5eed_0001);
}

#[test]
#[ignore = "long form: LIFEBOAT_HOSTILE_TRIALS random mutations (default 200)"]
fn hostile_resealed_manifests_long_campaign() {
    let trials = std::env::var("LIFEBOAT_HOSTILE_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seed = std::env::var("LIFEBOAT_HOSTILE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    campaign(trials, seed);
}
