//! Prometheus metrics of the scheduler: what it knows about each source's backups
//! (freshness against the RPO, the last attempt, attempt counters, anomalies) and a
//! small HTTP endpoint that serves them.
//!
//! The scheduler pushes facts in ([`Metrics::set_sources`], [`Metrics::record_attempt`],
//! [`Metrics::set_last_success`], ...); [`Metrics::render`] turns them into the text
//! exposition format 0.0.4 at an instant it is given, so everything that depends on
//! time (age, RPO breached) is computed at scrape time and testable at any instant.
//! [`serve`] answers `GET /metrics` and `GET /healthz` on a plain
//! [`tokio::net::TcpListener`]: one request per connection, nothing more, which is all
//! a Prometheus scrape needs.
//!
//! The alert rules and the Grafana dashboard in `deploy/` use the names defined here;
//! a test checks that they name only metrics that [`Metrics::render`] emits.

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

/// The results an attempt can end with, in the order they are rendered. Each declared
/// source has an `attempts_total` series for every one of them from the start, so
/// that `increase()` sees the first failure of a source too.
pub const RESULTS: [&str; 6] = [
    "success",
    "partial",
    "failed",
    "skipped",
    "locked",
    "cancelled",
];

/// A source as declared by the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// Source name (the `source` label).
    pub name: String,
    /// Engine kind, e.g. `postgres` (the `kind` label).
    pub kind: String,
    /// Seconds between scheduled backups, when the source has a schedule.
    pub interval_seconds: Option<f64>,
    /// Recovery point objective in seconds, when the source has one.
    pub rpo_seconds: Option<f64>,
}

/// A backup attempt that has ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// Source name.
    pub source: String,
    /// One of [`RESULTS`].
    pub result: String,
    /// When the attempt started.
    pub started: DateTime<Utc>,
    /// When it ended.
    pub finished: DateTime<Utc>,
    /// Raw bytes read from the source.
    pub bytes: u64,
}

/// What is known about one source. A source exists here as soon as anything is said
/// about it, but is rendered only while declared by [`Metrics::set_sources`]: the
/// scheduler may load the catalog's last successes before it declares the sources.
#[derive(Debug, Default)]
struct SourceState {
    declared: Option<SourceInfo>,
    last_success: Option<(DateTime<Utc>, u64)>,
    last_attempt: Option<LastAttempt>,
    /// Duration and bytes of the last attempt that did run a backup.
    last_run: Option<(Duration, u64)>,
    attempts: BTreeMap<String, u64>,
    anomaly: bool,
    /// Backups whose time is not believed (dated ahead of the clock, or against their id).
    doubtful: u64,
    running: bool,
    /// The last verification: when, and whether every read-back matched.
    last_check: Option<(DateTime<Utc>, bool)>,
    /// The last trial restore: when, whether it matched, how long it took.
    last_trial: Option<(DateTime<Utc>, bool, f64)>,
}

#[derive(Debug)]
struct LastAttempt {
    result: String,
    finished: DateTime<Utc>,
}

/// The scheduler's metrics. Cheap to clone; every clone shares one state.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    state: Arc<Mutex<BTreeMap<String, SourceState>>>,
}

impl Metrics {
    /// No sources yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, SourceState>> {
        // Every update is a handful of plain assignments, so a panic elsewhere cannot
        // leave the map half-changed; keep serving rather than poison the endpoint.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Declare the sources (at start and after every policy reload). Sources no longer
    /// declared are dropped with everything known about them, counters included.
    pub fn set_sources(&self, sources: &[SourceInfo]) {
        let mut state = self.lock();
        let declared: BTreeSet<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        state.retain(|name, _| declared.contains(name.as_str()));
        for info in sources {
            state.entry(info.name.clone()).or_default().declared = Some(info.clone());
        }
    }

    /// A backup attempt ended. `result` is one of [`RESULTS`]; another value is counted
    /// under its own label and logged, rather than lost.
    ///
    /// This does not move the last success: the scheduler reports the committed
    /// backup with [`Metrics::set_last_success`], from the catalog, which is the one
    /// place that knows. A `skipped` or `locked` attempt ran no backup, so it leaves
    /// the last duration and bytes as they were.
    pub fn record_attempt(&self, a: &Attempt) {
        if !RESULTS.contains(&a.result.as_str()) {
            warn!(source = %a.source, result = %a.result, valid = ?RESULTS, "unknown backup attempt result");
        }
        let mut state = self.lock();
        let s = state.entry(a.source.clone()).or_default();
        *s.attempts.entry(a.result.clone()).or_default() += 1;
        s.last_attempt = Some(LastAttempt {
            result: a.result.clone(),
            finished: a.finished,
        });
        if !matches!(a.result.as_str(), "skipped" | "locked") {
            // A clock stepping backwards mid-run must not yield a negative duration.
            let took = (a.finished - a.started).to_std().unwrap_or_default();
            s.last_run = Some((took, a.bytes));
        }
    }

    /// The newest committed backup of `source`: from the catalog at start-up, then after
    /// each success, so freshness survives restarts.
    pub fn set_last_success(&self, source: &str, at: DateTime<Utc>, raw_bytes: u64) {
        self.lock()
            .entry(source.to_string())
            .or_default()
            .last_success = Some((at, raw_bytes));
    }

    /// Whether the newest backup of `source` is flagged as an anomaly (size or counts
    /// dropped).
    pub fn set_anomaly(&self, source: &str, flagged: bool) {
        self.lock().entry(source.to_string()).or_default().anomaly = flagged;
    }

    /// How many backups of `source` have a time that is not believed (dated in the
    /// future, or against their id): they serve no schedule and count for no RPO.
    pub fn set_doubtful(&self, source: &str, count: u64) {
        self.lock().entry(source.to_string()).or_default().doubtful = count;
    }

    /// The last verification of `source` (every destination's read-back of its newest
    /// backup): from the catalog at start-up, then after each scheduled verification.
    pub fn set_last_verification(&self, source: &str, at: DateTime<Utc>, ok: bool) {
        self.lock()
            .entry(source.to_string())
            .or_default()
            .last_check = Some((at, ok));
    }

    /// The last trial restore of `source`.
    pub fn set_last_restore_test(&self, source: &str, at: DateTime<Utc>, ok: bool, secs: f64) {
        self.lock()
            .entry(source.to_string())
            .or_default()
            .last_trial = Some((at, ok, secs));
    }

    /// Whether a backup of `source` is running now.
    pub fn set_running(&self, source: &str, running: bool) {
        self.lock().entry(source.to_string()).or_default().running = running;
    }

    /// The metrics in the Prometheus text exposition format 0.0.4, computed at `now`.
    ///
    /// A source with an RPO is breached when `now` minus its last success exceeds the
    /// RPO, or when it has no success at all; a source without an RPO is never
    /// breached. Age is not clamped: a negative age shows a clock running behind.
    pub fn render(&self, now: DateTime<Utc>) -> String {
        let state = self.lock();
        let sources: Vec<(&SourceInfo, &SourceState)> = state
            .values()
            .filter_map(|s| s.declared.as_ref().map(|d| (d, s)))
            .collect();
        let mut out = Exposition::default();

        out.family(
            "lifeboat_scheduler_up",
            Kind::Gauge,
            "1 while the lifeboat scheduler is running and serving metrics.",
        );
        out.sample("lifeboat_scheduler_up", &[], "1");

        let per_source =
            |out: &mut Exposition,
             name: &str,
             kind: Kind,
             help: &str,
             value: &dyn Fn(&SourceInfo, &SourceState) -> Option<String>| {
                out.family(name, kind, help);
                for (info, s) in &sources {
                    if let Some(v) = value(info, s) {
                        out.sample(name, &[("source", &info.name), ("kind", &info.kind)], &v);
                    }
                }
            };

        per_source(
            &mut out,
            "lifeboat_backup_schedule_interval_seconds",
            Kind::Gauge,
            "Seconds between scheduled backups of the source.",
            &|i, _| i.interval_seconds.map(float),
        );
        per_source(
            &mut out,
            "lifeboat_backup_rpo_target_seconds",
            Kind::Gauge,
            "Recovery point objective of the source, in seconds.",
            &|i, _| i.rpo_seconds.map(float),
        );
        per_source(
            &mut out,
            "lifeboat_backup_last_success_timestamp_seconds",
            Kind::Gauge,
            "Unix time of the newest committed backup of the source.",
            &|_, s| s.last_success.map(|(at, _)| unix_seconds(at)),
        );
        per_source(
            &mut out,
            "lifeboat_backup_last_success_bytes",
            Kind::Gauge,
            "Raw bytes of the newest committed backup of the source.",
            &|_, s| s.last_success.map(|(_, b)| b.to_string()),
        );
        per_source(
            &mut out,
            "lifeboat_backup_age_seconds",
            Kind::Gauge,
            "Seconds since the newest committed backup of the source (absent before the first one).",
            &|_, s| s.last_success.map(|(at, _)| seconds(now - at)),
        );
        per_source(
            &mut out,
            "lifeboat_backup_rpo_breached",
            Kind::Gauge,
            "1 when the newest committed backup is older than the RPO or there is none, 0 otherwise or without an RPO.",
            &|i, s| Some(bool01(breached(i, s, now))),
        );
        per_source(
            &mut out,
            "lifeboat_backup_last_attempt_timestamp_seconds",
            Kind::Gauge,
            "Unix time at which the last backup attempt of the source ended.",
            &|_, s| s.last_attempt.as_ref().map(|a| unix_seconds(a.finished)),
        );
        per_source(
            &mut out,
            "lifeboat_backup_last_attempt_success",
            Kind::Gauge,
            "1 when the last backup attempt of the source succeeded, 0 otherwise.",
            &|_, s| {
                s.last_attempt
                    .as_ref()
                    .map(|a| bool01(a.result == "success"))
            },
        );

        let result_family =
            |out: &mut Exposition,
             name: &str,
             kind: Kind,
             help: &str,
             value: &dyn Fn(&SourceState, &str) -> Option<String>| {
                out.family(name, kind, help);
                for (info, s) in &sources {
                    // The known results always, in a fixed order, then any other seen.
                    let others = s
                        .attempts
                        .keys()
                        .map(String::as_str)
                        .filter(|r| !RESULTS.contains(r));
                    for result in RESULTS.iter().copied().chain(others) {
                        if let Some(v) = value(s, result) {
                            out.sample(
                                name,
                                &[
                                    ("source", &info.name),
                                    ("kind", &info.kind),
                                    ("result", result),
                                ],
                                &v,
                            );
                        }
                    }
                }
            };
        result_family(
            &mut out,
            "lifeboat_backup_last_attempt_result",
            Kind::Gauge,
            "1 for the result the last backup attempt of the source ended with, 0 for the others.",
            &|s, r| s.last_attempt.as_ref().map(|a| bool01(a.result == r)),
        );
        result_family(
            &mut out,
            "lifeboat_backup_attempts_total",
            Kind::Counter,
            "Backup attempts of the source by result since the scheduler started.",
            &|s, r| Some(s.attempts.get(r).copied().unwrap_or(0).to_string()),
        );

        per_source(
            &mut out,
            "lifeboat_backup_last_duration_seconds",
            Kind::Gauge,
            "Duration of the last backup attempt of the source that ran (not skipped or locked).",
            &|_, s| s.last_run.map(|(d, _)| float(d.as_secs_f64())),
        );
        per_source(
            &mut out,
            "lifeboat_backup_last_bytes",
            Kind::Gauge,
            "Raw bytes read by the last backup attempt of the source that ran (not skipped or locked).",
            &|_, s| s.last_run.map(|(_, b)| b.to_string()),
        );
        per_source(
            &mut out,
            "lifeboat_backup_anomaly",
            Kind::Gauge,
            "1 when the newest backup of the source is flagged as an anomaly (size or counts dropped).",
            &|_, s| Some(bool01(s.anomaly)),
        );
        per_source(
            &mut out,
            "lifeboat_backup_time_doubtful",
            Kind::Gauge,
            "Backups of the source dated ahead of the clock or against their id; they serve no schedule and count for neither the RPO nor retention.",
            &|_, s| Some(s.doubtful.to_string()),
        );
        per_source(
            &mut out,
            "lifeboat_backup_running",
            Kind::Gauge,
            "Backups of the source running now (0 or 1).",
            &|_, s| Some(bool01(s.running)),
        );
        per_source(
            &mut out,
            "lifeboat_verify_last_timestamp_seconds",
            Kind::Gauge,
            "When the newest backup of the source was last read back in full (Unix time).",
            &|_, s| s.last_check.map(|(at, _)| unix_seconds(at)),
        );
        per_source(
            &mut out,
            "lifeboat_verify_last_success",
            Kind::Gauge,
            "1 when the last read-back of the source matched on every destination, 0 when it did not.",
            &|_, s| s.last_check.map(|(_, ok)| bool01(ok)),
        );
        per_source(
            &mut out,
            "lifeboat_restore_test_last_timestamp_seconds",
            Kind::Gauge,
            "When the source was last trial-restored into a scratch target (Unix time).",
            &|_, s| s.last_trial.map(|(at, _, _)| unix_seconds(at)),
        );
        per_source(
            &mut out,
            "lifeboat_restore_test_last_success",
            Kind::Gauge,
            "1 when the last trial restore of the source restored and every count matched, else 0.",
            &|_, s| s.last_trial.map(|(_, ok, _)| bool01(ok)),
        );
        per_source(
            &mut out,
            "lifeboat_restore_test_last_duration_seconds",
            Kind::Gauge,
            "How long the last trial restore of the source took.",
            &|_, s| s.last_trial.map(|(_, _, secs)| float(secs)),
        );
        out.text
    }
}

fn breached(info: &SourceInfo, s: &SourceState, now: DateTime<Utc>) -> bool {
    match (info.rpo_seconds, s.last_success) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(rpo), Some((at, _))) => delta_seconds(now - at) > rpo,
    }
}

fn delta_seconds(d: chrono::TimeDelta) -> f64 {
    // Milliseconds are exact in an f64 for any realistic span; nanoseconds are not.
    d.num_milliseconds() as f64 / 1000.0
}

fn seconds(d: chrono::TimeDelta) -> String {
    float(delta_seconds(d))
}

fn unix_seconds(t: DateTime<Utc>) -> String {
    float(t.timestamp_millis() as f64 / 1000.0)
}

fn bool01(b: bool) -> String {
    if b { "1" } else { "0" }.to_string()
}

/// A sample value as the exposition format spells it: Rust writes `inf` and `NaN`,
/// Prometheus reads `+Inf`, `-Inf` and `NaN`.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        v.to_string()
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        // Writing into a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label_value(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// Label values escape backslash, double quote and line feed (exposition format 0.0.4).
fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escapes backslash and line feed only.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The function [`serve`] calls for the time of each scrape.
pub type NowFn = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Limits of one connection, so that a slow or hostile client costs little.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Largest request head read; a scrape's is a few hundred bytes.
    max_head: usize,
    /// Time to receive the whole request head.
    head_timeout: Duration,
    /// Time to write the response.
    write_timeout: Duration,
    /// Connections served at once; more are closed at once.
    max_connections: usize,
}

const LIMITS: Limits = Limits {
    max_head: 8 * 1024,
    head_timeout: Duration::from_secs(5),
    write_timeout: Duration::from_secs(10),
    max_connections: 32,
};

/// Serve `GET /metrics` (text/plain; version=0.0.4) and `GET /healthz` on `addr` until
/// `shutdown` resolves; `now` gives the time of each scrape.
///
/// Binds before returning, so a bad or busy address is an error at once that names it.
/// Returns the bound address (the real port when `addr` asks for port 0) and the
/// server task, which ends once `shutdown` has fired, the listener is closed and the
/// requests in flight are answered.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    now: NowFn,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, JoinHandle<()>)> {
    serve_with(addr, metrics, now, shutdown, LIMITS).await
}

async fn serve_with(
    addr: SocketAddr,
    metrics: Metrics,
    now: NowFn,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| bind_error(addr, e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io(format!("metrics endpoint {addr}"), e))?;
    info!(addr = %local, "serving metrics");
    let task = tokio::spawn(accept_loop(listener, metrics, now, shutdown, limits));
    Ok((local, task))
}

fn bind_error(addr: SocketAddr, e: std::io::Error) -> Error {
    let msg = format!(
        "metrics endpoint: cannot listen on {addr}: {e} (is another process using it? choose another --metrics-addr)"
    );
    match e.kind() {
        // A busy or foreign address is the user's choice to fix, not a failed run.
        std::io::ErrorKind::AddrInUse
        | std::io::ErrorKind::AddrNotAvailable
        | std::io::ErrorKind::PermissionDenied => Error::bad_input(msg).with_source(e),
        _ => Error::io(format!("metrics endpoint: cannot listen on {addr}"), e),
    }
}

async fn accept_loop(
    listener: TcpListener,
    metrics: Metrics,
    now: NowFn,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) {
    tokio::pin!(shutdown);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if conns.len() >= limits.max_connections {
                        warn!(peer = %peer, limit = limits.max_connections, "metrics endpoint busy, connection closed");
                        continue;
                    }
                    let (metrics, now) = (metrics.clone(), now.clone());
                    conns.spawn(async move { handle(stream, peer, &metrics, &now, limits).await });
                }
                Err(e) => {
                    // Out of file descriptors and the like: give it a moment rather than spin.
                    warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    // Each connection is bounded by its limits, so this wait is too.
    while conns.join_next().await.is_some() {}
    info!("metrics endpoint stopped");
}

/// Answer one request and close the connection.
async fn handle(
    mut stream: TcpStream,
    peer: SocketAddr,
    metrics: &Metrics,
    now: &NowFn,
    limits: Limits,
) {
    let head = match tokio::time::timeout(
        limits.head_timeout,
        read_head(&mut stream, limits.max_head),
    )
    .await
    {
        Ok(Ok(head)) => head,
        Ok(Err(HeadError::TooLarge)) => {
            respond(
                &mut stream,
                peer,
                limits,
                Response::plain(
                    431,
                    "Request Header Fields Too Large",
                    "request head too large\n",
                ),
                false,
            )
            .await;
            return;
        }
        Ok(Err(HeadError::Closed)) => return,
        Ok(Err(HeadError::Io(e))) => {
            debug!(peer = %peer, error = %e, "metrics endpoint: read failed");
            return;
        }
        Err(_) => {
            debug!(peer = %peer, timeout = ?limits.head_timeout, "metrics endpoint: request head not received in time");
            respond(
                &mut stream,
                peer,
                limits,
                Response::plain(
                    408,
                    "Request Timeout",
                    "request head not received in time\n",
                ),
                false,
            )
            .await;
            return;
        }
    };
    let Some((method, path)) = request_line(&head) else {
        respond(
            &mut stream,
            peer,
            limits,
            Response::plain(400, "Bad Request", "malformed request line\n"),
            false,
        )
        .await;
        return;
    };
    let response = route(method, path, metrics, now);
    debug!(peer = %peer, method, path, status = response.status, "metrics endpoint request");
    respond(&mut stream, peer, limits, response, method == "HEAD").await;
}

fn route(method: &str, path: &str, metrics: &Metrics, now: &NowFn) -> Response {
    // The query string is ignored: Prometheus may add parameters of its own.
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let body = match path {
        "/metrics" => None,
        "/healthz" => Some("ok\n".to_string()),
        _ => return Response::plain(404, "Not Found", "not found; try /metrics or /healthz\n"),
    };
    if method != "GET" && method != "HEAD" {
        let mut r = Response::plain(405, "Method Not Allowed", "only GET and HEAD\n");
        r.allow = true;
        return r;
    }
    match body {
        Some(body) => Response::plain(200, "OK", &body),
        None => Response {
            status: 200,
            reason: "OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics.render(now()),
            allow: false,
        },
    }
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    allow: bool,
}

impl Response {
    fn plain(status: u16, reason: &'static str, body: &str) -> Self {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
            allow: false,
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    peer: SocketAddr,
    limits: Limits,
    r: Response,
    head_only: bool,
) {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        r.reason,
        r.content_type,
        r.body.len()
    );
    if r.allow {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&r.body);
    }
    let write = async {
        stream.write_all(out.as_bytes()).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(limits.write_timeout, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(peer = %peer, error = %e, "metrics endpoint: write failed"),
        Err(_) => debug!(peer = %peer, "metrics endpoint: response not taken in time"),
    }
}

enum HeadError {
    TooLarge,
    Closed,
    Io(std::io::Error),
}

/// Read up to the blank line that ends the request head; a body, if any, is ignored.
async fn read_head(stream: &mut TcpStream, max: usize) -> std::result::Result<String, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        // Look for the end only where it can be: in the new bytes and the 3 before.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_head_end(&buf[from..]) {
            // A large head may arrive in a single read: the limit applies all the same.
            if from + end > max {
                return Err(HeadError::TooLarge);
            }
            buf.truncate(from + end);
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        if buf.len() > max {
            return Err(HeadError::TooLarge);
        }
    }
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    // Bare LF line ends are tolerated, as RFC 9112 section 2.2 allows.
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = b.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Method and target of `METHOD SP target SP HTTP/x.y`.
fn request_line(head: &str) -> Option<(&str, &str)> {
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let ok = parts.next().is_none()
        && !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && target.starts_with('/')
        && version.starts_with("HTTP/1.");
    ok.then_some((method, target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use prometheus_parse::{Scrape, Value};
    use rstest::rstest;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn source(name: &str, rpo: Option<f64>) -> SourceInfo {
        SourceInfo {
            name: name.to_string(),
            kind: "postgres".to_string(),
            interval_seconds: Some(3600.0),
            rpo_seconds: rpo,
        }
    }

    fn attempt(source: &str, result: &str, ended_ago_s: i64, took_ms: i64, bytes: u64) -> Attempt {
        let finished = now() - chrono::TimeDelta::seconds(ended_ago_s);
        Attempt {
            source: source.to_string(),
            result: result.to_string(),
            started: finished - chrono::TimeDelta::milliseconds(took_ms),
            finished,
            bytes,
        }
    }

    /// One sample as read by the strict reader below.
    #[derive(Debug)]
    struct Line {
        name: String,
        labels: Vec<(String, String)>,
        value: String,
    }

    /// Read `text` strictly: every line is a HELP, a TYPE or a sample; each family has
    /// one HELP and one TYPE before its samples and its samples are contiguous; label
    /// values are unescaped. prometheus-parse skips what it cannot read and does not
    /// unescape, so it alone would not catch a broken line.
    fn strict(text: &str) -> Vec<Line> {
        assert!(text.ends_with('\n'), "exposition must end with a line feed");
        let mut helped = BTreeSet::new();
        let mut typed = BTreeMap::new();
        let mut finished_families = BTreeSet::new();
        let mut current: Option<String> = None;
        let mut out = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(helped.insert(name.clone()), "second HELP for {name}");
                if let Some(c) = current.replace(name.clone()) {
                    finished_families.insert(c);
                }
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["gauge", "counter"].contains(&kind), "{line}");
                assert_eq!(
                    current.as_deref(),
                    Some(name),
                    "TYPE right after HELP: {line}"
                );
                assert!(typed.insert(name.to_string(), kind.to_string()).is_none());
            } else {
                let l = sample_line(line);
                assert_eq!(
                    current.as_deref(),
                    Some(l.name.as_str()),
                    "sample outside its family: {line}"
                );
                assert!(!finished_families.contains(&l.name), "family split: {line}");
                assert!(typed.contains_key(&l.name), "sample before TYPE: {line}");
                out.push(l);
            }
        }
        assert_eq!(helped.len(), typed.len());
        out
    }

    fn sample_line(line: &str) -> Line {
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value: {line}"));
        let name = &line[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name in {line:?}"
        );
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            let mut chars = after.char_indices().peekable();
            loop {
                let (start, _) = *chars.peek().expect("unterminated labels");
                let eq = after[start..].find('=').expect("label without =") + start;
                let key = after[start..eq].to_string();
                assert!(
                    key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "bad label name {key:?}"
                );
                while chars.next_if(|&(i, _)| i <= eq).is_some() {}
                assert_eq!(
                    chars.next().map(|(_, c)| c),
                    Some('"'),
                    "label value must be quoted: {line:?}"
                );
                let mut value = String::new();
                loop {
                    match chars.next().expect("unterminated label value") {
                        (_, '\\') => match chars.next().expect("dangling escape").1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            c => panic!("invalid escape \\{c} in {line:?}"),
                        },
                        (_, '"') => break,
                        (_, '\n') => panic!("raw line feed in label value"),
                        (_, c) => value.push(c),
                    }
                }
                labels.push((key, value));
                match chars.next().expect("unterminated labels") {
                    (_, ',') => continue,
                    (i, '}') => {
                        rest = &after[i + 1..];
                        break;
                    }
                    (_, c) => panic!("unexpected {c:?} after label value in {line:?}"),
                }
            }
        }
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before value: {line:?}"));
        assert!(!value.contains(' '), "timestamps are not emitted: {line:?}");
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value in {line:?}"
        );
        Line {
            name: name.to_string(),
            labels,
            value: value.to_string(),
        }
    }

    /// Render at `now()`, check the text strictly, then parse it as Prometheus would.
    fn scrape(m: &Metrics) -> Scrape {
        let text = m.render(now());
        strict(&text);
        Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
    }

    /// The value of `metric` for `source` (and `result`, when given); `None` when absent.
    fn get(s: &Scrape, metric: &str, source: &str, result: Option<&str>) -> Option<f64> {
        let hits: Vec<f64> = s
            .samples
            .iter()
            .filter(|x| {
                x.metric == metric
                    && x.labels.get("source") == Some(source)
                    && x.labels.get("result") == result
            })
            .map(|x| match x.value {
                Value::Gauge(v) => v,
                Value::Counter(v) => {
                    assert!(metric.ends_with("_total"), "{metric} typed counter");
                    v
                }
                ref v => panic!("{metric}: unexpected type {v:?}"),
            })
            .collect();
        assert!(hits.len() <= 1, "{metric}{{source={source}}} twice");
        hits.first().copied()
    }

    fn gauge(s: &Scrape, metric: &str, source: &str) -> Option<f64> {
        get(s, metric, source, None)
    }

    #[test]
    fn recent_success_is_fresh_and_every_family_has_its_value() {
        let m = Metrics::new();
        m.set_sources(&[source("app", Some(7200.0))]);
        m.record_attempt(&attempt("app", "success", 1800, 61_500, 4096));
        m.set_last_success("app", now() - chrono::TimeDelta::seconds(1800), 4000);
        m.set_running("app", true);
        let s = scrape(&m);

        let up: Vec<_> = s
            .samples
            .iter()
            .filter(|x| x.metric == "lifeboat_scheduler_up")
            .collect();
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].value, Value::Gauge(1.0));
        assert!(up[0].labels.is_empty());

        let ended = (now().timestamp() - 1800) as f64;
        assert_eq!(
            gauge(&s, "lifeboat_backup_schedule_interval_seconds", "app"),
            Some(3600.0)
        );
        assert_eq!(
            gauge(&s, "lifeboat_backup_rpo_target_seconds", "app"),
            Some(7200.0)
        );
        assert_eq!(
            gauge(&s, "lifeboat_backup_last_success_timestamp_seconds", "app"),
            Some(ended)
        );
        assert_eq!(
            gauge(&s, "lifeboat_backup_last_success_bytes", "app"),
            Some(4000.0)
        );
        assert_eq!(
            gauge(&s, "lifeboat_backup_age_seconds", "app"),
            Some(1800.0)
        );
        assert_eq!(gauge(&s, "lifeboat_backup_rpo_breached", "app"), Some(0.0));
        assert_eq!(
            gauge(&s, "lifeboat_backup_last_attempt_timestamp_seconds", "app"),
            Some(ended)
        );
        assert_eq!(
            gauge(&s, "lifeboat_backup_last_attempt_success", "app"),
            Some(1.0)
        );
        assert_eq!(
            gauge(&s, "lifeboat_backup_last_duration_seconds", "app"),
            Some(61.5)
        );
        assert_eq!(gauge(&s, "lifeboat_backup_last_bytes", "app"), Some(4096.0));
        assert_eq!(gauge(&s, "lifeboat_backup_anomaly", "app"), Some(0.0));
        assert_eq!(gauge(&s, "lifeboat_backup_running", "app"), Some(1.0));
        for r in RESULTS {
            let hit = if r == "success" { 1.0 } else { 0.0 };
            assert_eq!(
                get(&s, "lifeboat_backup_last_attempt_result", "app", Some(r)),
                Some(hit),
                "{r}"
            );
            assert_eq!(
                get(&s, "lifeboat_backup_attempts_total", "app", Some(r)),
                Some(hit),
                "{r}"
            );
        }
        let kinds: BTreeSet<_> = s
            .samples
            .iter()
            .filter_map(|x| x.labels.get("source").map(|_| x.labels.get("kind")))
            .collect();
        assert_eq!(
            kinds,
            BTreeSet::from([Some("postgres")]),
            "every per-source series has the kind"
        );
        assert!(s.docs.contains_key("lifeboat_backup_rpo_breached"));
    }

    #[test]
    fn verifications_and_trial_restores_are_exported_once_known() {
        let m = Metrics::new();
        m.set_sources(&[source("app", Some(3600.0)), source("new", None)]);
        let at = now() - chrono::TimeDelta::seconds(600);
        m.set_last_verification("app", at, true);
        m.set_last_restore_test("app", at, false, 2.5);
        let s = scrape(&m);
        assert_eq!(
            gauge(&s, "lifeboat_verify_last_timestamp_seconds", "app"),
            Some(at.timestamp() as f64)
        );
        assert_eq!(gauge(&s, "lifeboat_verify_last_success", "app"), Some(1.0));
        assert_eq!(
            gauge(&s, "lifeboat_restore_test_last_success", "app"),
            Some(0.0)
        );
        assert_eq!(
            gauge(&s, "lifeboat_restore_test_last_duration_seconds", "app"),
            Some(2.5)
        );
        // Never verified: no sample, rather than a misleading 0 or 1.
        assert_eq!(gauge(&s, "lifeboat_verify_last_success", "new"), None);
        assert_eq!(gauge(&s, "lifeboat_restore_test_last_success", "new"), None);
    }

    #[test]
    fn success_older_than_rpo_is_breached_with_exact_age() {
        let m = Metrics::new();
        m.set_sources(&[source("app", Some(3600.0))]);
        let at = now() - chrono::TimeDelta::milliseconds(7_200_500);
        m.set_last_success("app", at, 1);
        let s = scrape(&m);
        assert_eq!(
            gauge(&s, "lifeboat_backup_age_seconds", "app"),
            Some(7200.5)
        );
        assert_eq!(gauge(&s, "lifeboat_backup_rpo_breached", "app"), Some(1.0));
        assert_eq!(
            gauge(&s, "lifeboat_backup_last_success_timestamp_seconds", "app"),
            Some(at.timestamp_millis() as f64 / 1000.0)
        );
    }

    #[rstest]
    #[case::just_inside(3599, 0.0)]
    #[case::exactly_at_the_target(3600, 0.0)]
    #[case::one_second_past(3601, 1.0)]
    fn breach_starts_only_past_the_target(#[case] age: i64, #[case] breached: f64) {
        let m = Metrics::new();
        m.set_sources(&[source("app", Some(3600.0))]);
        m.set_last_success("app", now() - chrono::TimeDelta::seconds(age), 1);
        assert_eq!(
            gauge(&scrape(&m), "lifeboat_backup_rpo_breached", "app"),
            Some(breached)
        );
    }

    #[test]
    fn rpo_without_any_success_is_breached_and_no_rpo_never_is() {
        let m = Metrics::new();
        let mut loose = source("loose", None);
        loose.interval_seconds = None;
        m.set_sources(&[source("new", Some(3600.0)), loose]);
        let s = scrape(&m);
        assert_eq!(gauge(&s, "lifeboat_backup_rpo_breached", "new"), Some(1.0));
        assert_eq!(
            gauge(&s, "lifeboat_backup_age_seconds", "new"),
            None,
            "no age without a success"
        );
        assert_eq!(
            gauge(&s, "lifeboat_backup_last_success_timestamp_seconds", "new"),
            None
        );
        assert_eq!(
            gauge(&s, "lifeboat_backup_last_attempt_success", "new"),
            None
        );
        assert_eq!(
            get(&s, "lifeboat_backup_attempts_total", "new", Some("failed")),
            Some(0.0),
            "counters start at zero"
        );

        assert_eq!(
            gauge(&s, "lifeboat_backup_rpo_breached", "loose"),
            Some(0.0)
        );
        assert_eq!(
            gauge(&s, "lifeboat_backup_rpo_target_seconds", "loose"),
            None
        );
        assert_eq!(
            gauge(&s, "lifeboat_backup_schedule_interval_seconds", "loose"),
            None
        );
    }

    #[test]
    fn attempts_count_per_result_and_only_real_runs_set_duration_and_bytes() {
        let m = Metrics::new();
        m.set_sources(&[source("app", Some(3600.0))]);
        m.record_attempt(&attempt("app", "success", 500, 2_000, 10));
        m.record_attempt(&attempt("app", "failed", 400, 3_000, 20));
        m.record_attempt(&attempt("app", "failed", 300, 4_000, 30));
        m.record_attempt(&attempt("app", "partial", 200, 5_000, 40));
        m.record_attempt(&attempt("app", "locked", 100, 0, 0));
        let s = scrape(&m);
        let count = |r| get(&s, "lifeboat_backup_attempts_total", "app", Some(r));
        assert_eq!(
            RESULTS.map(count),
            [
                Some(1.0),
                Some(1.0),
                Some(2.0),
                Some(0.0),
                Some(1.0),
                Some(0.0)
            ],
            "{RESULTS:?}"
        );
        assert_eq!(
            gauge(&s, "lifeboat_backup_last_attempt_success", "app"),
            Some(0.0)
        );
        assert_eq!(
            get(
                &s,
                "lifeboat_backup_last_attempt_result",
                "app",
                Some("locked")
            ),
            Some(1.0)
        );
        assert_eq!(
            gauge(&s, "lifeboat_backup_last_attempt_timestamp_seconds", "app"),
            Some((now().timestamp() - 100) as f64)
        );
        // The locked attempt ran nothing: the partial run's numbers stay.
        assert_eq!(
            gauge(&s, "lifeboat_backup_last_duration_seconds", "app"),
            Some(5.0)
        );
        assert_eq!(gauge(&s, "lifeboat_backup_last_bytes", "app"), Some(40.0));
        // A success alone does not move freshness; the catalog does.
        assert_eq!(
            gauge(&s, "lifeboat_backup_last_success_timestamp_seconds", "app"),
            None
        );

        m.record_attempt(&attempt("app", "exploded", 50, 1_000, 0));
        let s = scrape(&m);
        assert_eq!(
            get(
                &s,
                "lifeboat_backup_attempts_total",
                "app",
                Some("exploded")
            ),
            Some(1.0)
        );
        assert_eq!(
            get(&s, "lifeboat_backup_attempts_total", "app", Some("failed")),
            Some(2.0)
        );
    }

    #[test]
    fn undeclared_sources_disappear_and_come_back_fresh() {
        let m = Metrics::new();
        // The catalog may be read before the policy is: the fact waits for the declaration.
        m.set_last_success("kept", now() - chrono::TimeDelta::seconds(60), 1);
        assert_eq!(
            gauge(&scrape(&m), "lifeboat_backup_age_seconds", "kept"),
            None
        );
        m.set_sources(&[source("kept", Some(3600.0)), source("gone", Some(3600.0))]);
        m.record_attempt(&attempt("gone", "failed", 10, 1_000, 0));
        m.set_anomaly("gone", true);
        let s = scrape(&m);
        assert_eq!(gauge(&s, "lifeboat_backup_age_seconds", "kept"), Some(60.0));
        assert_eq!(gauge(&s, "lifeboat_backup_anomaly", "gone"), Some(1.0));

        m.set_sources(&[source("kept", Some(3600.0))]);
        let s = scrape(&m);
        assert!(
            s.samples
                .iter()
                .all(|x| x.labels.get("source") != Some("gone")),
            "{:?}",
            s.samples
        );
        assert_eq!(gauge(&s, "lifeboat_backup_age_seconds", "kept"), Some(60.0));

        m.set_sources(&[source("kept", Some(3600.0)), source("gone", None)]);
        let s = scrape(&m);
        assert_eq!(
            get(&s, "lifeboat_backup_attempts_total", "gone", Some("failed")),
            Some(0.0)
        );
        assert_eq!(gauge(&s, "lifeboat_backup_anomaly", "gone"), Some(0.0));
    }

    #[test]
    fn a_reload_updates_kind_interval_and_rpo() {
        let m = Metrics::new();
        m.set_sources(&[source("app", Some(3600.0))]);
        m.set_last_success("app", now() - chrono::TimeDelta::seconds(5000), 1);
        assert_eq!(
            gauge(&scrape(&m), "lifeboat_backup_rpo_breached", "app"),
            Some(1.0)
        );
        let mut relaxed = source("app", Some(86_400.0));
        relaxed.kind = "sqlite".to_string();
        m.set_sources(&[relaxed]);
        let s = scrape(&m);
        assert_eq!(gauge(&s, "lifeboat_backup_rpo_breached", "app"), Some(0.0));
        let sample = s
            .samples
            .iter()
            .find(|x| x.metric == "lifeboat_backup_rpo_breached")
            .unwrap();
        assert_eq!(sample.labels.get("kind"), Some("sqlite"));
    }

    #[test]
    fn tricky_label_values_are_escaped() {
        let tricky = "we\"ird\\path\nnext,line=}{";
        let m = Metrics::new();
        m.set_sources(&[source(tricky, Some(60.0))]);
        let text = m.render(now());
        assert!(
            text.contains(r#"lifeboat_backup_rpo_breached{source="we\"ird\\path\nnext,line=}{",kind="postgres"} 1"#),
            "{text}"
        );
        let lines = strict(&text);
        let breached: Vec<_> = lines
            .iter()
            .filter(|l| l.name == "lifeboat_backup_rpo_breached")
            .collect();
        assert_eq!(breached.len(), 1);
        assert_eq!(
            breached[0].labels,
            [
                ("source".to_string(), tricky.to_string()),
                ("kind".to_string(), "postgres".to_string())
            ]
        );
        assert_eq!(breached[0].value, "1");
        // prometheus-parse reads no `}` inside a label value (its pattern stops at the
        // first one) and does not unescape, so it checks only that quote, backslash and
        // line feed leave every sample on its own line.
        let readable = "we\"ird\\path\nnext,line";
        m.set_sources(&[source(readable, Some(60.0))]);
        let text = m.render(now());
        let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        assert_eq!(parsed.samples.len(), strict(&text).len());
        assert_eq!(
            parsed.samples.len(),
            1 + 12,
            "up and the 12 series of a declared source"
        );
    }

    #[rstest]
    #[case::plain(1.5, "1.5")]
    #[case::whole(1_772_366_400.0, "1772366400")]
    #[case::infinite(f64::INFINITY, "+Inf")]
    #[case::negative_infinite(f64::NEG_INFINITY, "-Inf")]
    #[case::not_a_number(f64::NAN, "NaN")]
    fn values_are_spelt_as_prometheus_reads_them(#[case] v: f64, #[case] text: &str) {
        assert_eq!(float(v), text);
    }

    #[rstest]
    #[case::get("GET /metrics HTTP/1.1", Some(("GET", "/metrics")))]
    #[case::query("GET /metrics?x=1 HTTP/1.0", Some(("GET", "/metrics?x=1")))]
    #[case::two_spaces("GET  /metrics HTTP/1.1", None)]
    #[case::no_version("GET /metrics", None)]
    #[case::http2("GET /metrics HTTP/2", None)]
    #[case::lowercase("get /metrics HTTP/1.1", None)]
    #[case::absolute("GET http://x/metrics HTTP/1.1", None)]
    #[case::empty("", None)]
    fn request_lines(#[case] line: &str, #[case] expected: Option<(&str, &str)>) {
        assert_eq!(request_line(&format!("{line}\r\nHost: x\r\n")), expected);
    }

    #[rstest]
    #[case::crlf(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody", Some(23))]
    #[case::lf(b"GET / HTTP/1.1\nHost: x\n\n", Some(22))]
    #[case::incomplete(b"GET / HTTP/1.1\r\nHost: x\r\n", None)]
    fn head_ends(#[case] bytes: &[u8], #[case] end: Option<usize>) {
        assert_eq!(find_head_end(bytes), end);
    }

    async fn exchange(limits: Limits, request: &[u8], then_wait: bool) -> String {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let at: NowFn = Arc::new(now);
        let addr = "127.0.0.1:0".parse().unwrap();
        let (addr, task) = serve_with(
            addr,
            Metrics::new(),
            at,
            async { stopped.await.unwrap_or(()) },
            limits,
        )
        .await
        .unwrap();
        let mut conn = TcpStream::connect(addr).await.unwrap();
        // The server may answer and close before the whole request is sent.
        let _ = conn.write_all(request).await;
        if !then_wait {
            let _ = conn.shutdown().await;
        }
        let mut answer = String::new();
        let _ = conn.read_to_string(&mut answer).await;
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        answer
    }

    #[tokio::test]
    async fn a_silent_client_gets_408_after_the_head_timeout() {
        let limits = Limits {
            head_timeout: Duration::from_millis(200),
            ..LIMITS
        };
        let started = std::time::Instant::now();
        let answer = exchange(limits, b"GET /metrics HTTP/1.1\r\n", true).await;
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn an_oversized_head_gets_431() {
        let limits = Limits {
            max_head: 64,
            ..LIMITS
        };
        let request = format!(
            "GET /metrics HTTP/1.1\r\nX-Padding: {}\r\n\r\n",
            "a".repeat(200)
        );
        let answer = exchange(limits, request.as_bytes(), true).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    }

    #[tokio::test]
    async fn garbage_gets_400_and_head_gets_no_body() {
        let answer = exchange(LIMITS, b"BREW /pot HTCPCP/1.0\r\n\r\n", false).await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        let answer = exchange(LIMITS, b"HEAD /metrics HTTP/1.1\r\n\r\n", false).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert!(answer.ends_with("\r\n\r\n"), "{answer}");
        let length: usize = answer
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            length,
            Metrics::new().render(now()).len(),
            "HEAD announces the GET body's length"
        );
    }
}
