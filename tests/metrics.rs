//! The metrics endpoint over real HTTP, and the shipped alert rules and dashboard
//! against the metrics the scheduler really exports.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use lifeboat::ErrorKind;
use lifeboat::metrics::{Attempt, Metrics, NowFn, SourceInfo, serve};
use prometheus_parse::{Scrape, Value};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

/// A state in which every family has at least one sample.
fn populated() -> Metrics {
    let m = Metrics::new();
    m.set_sources(&[SourceInfo {
        name: "app".to_string(),
        kind: "postgres".to_string(),
        interval_seconds: Some(3600.0),
        rpo_seconds: Some(7200.0),
    }]);
    let finished = now() - TimeDelta::hours(3);
    m.record_attempt(&Attempt {
        source: "app".to_string(),
        result: "failed".to_string(),
        started: finished - TimeDelta::seconds(90),
        finished,
        bytes: 512,
    });
    m.set_last_success("app", now() - TimeDelta::hours(4), 2048);
    m.set_anomaly("app", true);
    m.set_doubtful("app", 1);
    m.set_running("app", false);
    m.set_last_verification("app", now() - TimeDelta::hours(5), true);
    m.set_last_restore_test("app", now() - TimeDelta::hours(5), true, 12.0);
    m
}

fn parse(body: &str) -> Scrape {
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// Every metric name `render` emits.
fn emitted() -> BTreeSet<String> {
    let names: BTreeSet<String> = parse(&populated().render(now()))
        .samples
        .into_iter()
        .map(|s| s.metric)
        .collect();
    assert!(names.len() >= 15, "{names:?}");
    names
}

fn gauge(s: &Scrape, metric: &str) -> f64 {
    match s
        .samples
        .iter()
        .find(|x| x.metric == metric)
        .map(|x| &x.value)
    {
        Some(Value::Gauge(v)) => *v,
        other => panic!("{metric}: {other:?}"),
    }
}

/// Loopback only: the machine's proxy variables must not apply.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn scrape_over_http_then_stop() {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let at: NowFn = Arc::new(now);
    let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), populated(), at, async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    assert_ne!(addr.port(), 0, "the bound port is returned");
    let http = client();
    let base = format!("http://{addr}");

    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let s = parse(&r.text().await.unwrap());
    assert_eq!(gauge(&s, "lifeboat_scheduler_up"), 1.0);
    assert_eq!(gauge(&s, "lifeboat_backup_age_seconds"), 4.0 * 3600.0);
    assert_eq!(gauge(&s, "lifeboat_backup_rpo_breached"), 1.0);
    assert_eq!(gauge(&s, "lifeboat_backup_last_attempt_success"), 0.0);
    assert_eq!(gauge(&s, "lifeboat_backup_last_duration_seconds"), 90.0);
    let failed = s
        .samples
        .iter()
        .find(|x| {
            x.metric == "lifeboat_backup_attempts_total" && x.labels.get("result") == Some("failed")
        })
        .unwrap();
    assert_eq!(failed.value, Value::Counter(1.0));
    assert_eq!(failed.labels.get("source"), Some("app"));

    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");

    for path in ["/", "/metricsx", "/healthz/x", "/favicon.ico"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = http
        .post(format!("{base}/metrics"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("server stops on shutdown")
        .unwrap();
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "still listening on {addr} after shutdown");
}

#[tokio::test]
async fn each_scrape_takes_the_time_then() {
    let ticks = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let t = ticks.clone();
    let at: NowFn = Arc::new(move || {
        now() + TimeDelta::seconds(t.fetch_add(60, std::sync::atomic::Ordering::SeqCst))
    });
    let (addr, task) = serve(
        "127.0.0.1:0".parse().unwrap(),
        populated(),
        at,
        std::future::pending(),
    )
    .await
    .unwrap();
    let http = client();
    let mut ages = Vec::new();
    for _ in 0..2 {
        let body = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        ages.push(gauge(&parse(&body), "lifeboat_backup_age_seconds"));
    }
    assert_eq!(ages, [14_400.0, 14_460.0]);
    task.abort();
}

#[tokio::test]
async fn a_busy_address_fails_at_once_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let at: NowFn = Arc::new(now);
    let err = serve(addr, Metrics::new(), at, std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadInput);
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    assert!(err.to_string().contains("--metrics-addr"), "{err}");
}

fn deploy(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The `lifeboat_*` metric names in a PromQL expression, string literals left out.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut code = String::new();
    let mut quote = None;
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => {
                quote = Some(c);
                code.push(' ');
            }
            (None, c) => code.push(c),
        }
    }
    assert!(quote.is_none(), "unterminated string in {expr}");
    code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("lifeboat_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn metric_names_skip_strings() {
    assert_eq!(
        metric_names(
            r#"increase(lifeboat_a_total{result="lifeboat_b"}[1h]) > on(source) lifeboat_c"#
        ),
        BTreeSet::from(["lifeboat_a_total".to_string(), "lifeboat_c".to_string()])
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleGroup {
    name: String,
    #[serde(default)]
    interval: Option<String>,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    alert: String,
    expr: String,
    #[serde(rename = "for", default)]
    for_: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

#[test]
fn shipped_alert_rules_use_only_exported_metrics() {
    let file: RuleFile =
        serde_yaml_ng::from_str(&deploy("prometheus/lifeboat-alerts.yml")).unwrap();
    let emitted = emitted();
    let mut alerts = BTreeSet::new();
    let mut used = BTreeSet::new();
    for group in &file.groups {
        assert!(!group.name.is_empty());
        assert!(
            group.interval.is_none(),
            "the global evaluation interval applies"
        );
        for rule in &group.rules {
            let name = &rule.alert;
            assert!(alerts.insert(name.clone()), "{name} twice");
            let names = metric_names(&rule.expr);
            assert!(
                !names.is_empty() || rule.expr.contains("up{"),
                "{name}: no lifeboat metric in {}",
                rule.expr
            );
            for m in &names {
                assert!(
                    emitted.contains(m),
                    "{name}: {m} is not exported; exported: {emitted:?}"
                );
            }
            used.extend(names.iter().cloned());
            if let Some(d) = &rule.for_ {
                assert!(
                    d.ends_with('m') && d[..d.len() - 1].parse::<u32>().is_ok(),
                    "{name}: for {d}"
                );
            }
            assert!(
                ["critical", "warning"].contains(&rule.labels["severity"].as_str()),
                "{name}: severity"
            );
            for key in ["summary", "description"] {
                assert!(
                    rule.annotations
                        .get(key)
                        .is_some_and(|s| !s.trim().is_empty()),
                    "{name}: {key}"
                );
            }
            let description = &rule.annotations["description"];
            assert!(
                description.contains("lifeboat "),
                "{name}: a command to run"
            );
            // Only alerts on per-source series can name the source.
            if names.iter().any(|m| m.starts_with("lifeboat_backup_")) {
                assert!(
                    rule.annotations["summary"].contains("{{ $labels.source }}"),
                    "{name}"
                );
            }
        }
    }
    for needed in [
        "lifeboat_backup_rpo_breached",
        "lifeboat_backup_anomaly",
        "lifeboat_backup_time_doubtful",
        "lifeboat_scheduler_up",
        "lifeboat_backup_attempts_total",
        "lifeboat_backup_last_attempt_result",
        "lifeboat_verify_last_success",
        "lifeboat_restore_test_last_success",
    ] {
        assert!(used.contains(needed), "no alert on {needed}");
    }
}

#[test]
fn shipped_dashboard_queries_only_exported_metrics() {
    let dash: serde_json::Value =
        serde_json::from_str(&deploy("grafana/lifeboat-dashboard.json")).unwrap();
    let emitted = emitted();
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 36);
    assert_eq!(dash["__inputs"][0]["name"], "DS_PROMETHEUS");
    let ds = serde_json::json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"});

    let mut exprs = Vec::new();
    for var in dash["templating"]["list"].as_array().unwrap() {
        assert_eq!(var["datasource"], ds);
        exprs.push((
            "templating".to_string(),
            var["definition"].as_str().unwrap().to_string(),
        ));
    }
    let mut panels: Vec<&serde_json::Value> = dash["panels"].as_array().unwrap().iter().collect();
    let mut ids = BTreeSet::new();
    while let Some(p) = panels.pop() {
        // Rows hold their own panels.
        if let Some(inner) = p["panels"].as_array() {
            panels.extend(inner);
        }
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap();
        assert!(ids.insert(p["id"].as_u64().unwrap()), "{title}: id twice");
        assert_eq!(p["datasource"], ds, "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"], ds, "{title}");
            exprs.push((title.to_string(), t["expr"].as_str().unwrap().to_string()));
        }
    }
    let mut used = BTreeSet::new();
    for (title, expr) in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{title}: no lifeboat metric in {expr}");
        for m in &names {
            assert!(
                emitted.contains(m),
                "{title}: {m} is not exported; exported: {emitted:?}"
            );
        }
        used.extend(names);
    }
    for needed in [
        "lifeboat_backup_age_seconds",
        "lifeboat_backup_rpo_target_seconds",
        "lifeboat_backup_rpo_breached",
        "lifeboat_backup_attempts_total",
        "lifeboat_backup_last_duration_seconds",
        "lifeboat_backup_last_success_bytes",
        "lifeboat_backup_anomaly",
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }
}
