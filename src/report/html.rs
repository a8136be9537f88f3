//! The auditor's rendering of a [`Report`]: one HTML5 file with the verdicts, every
//! figure behind them, a timeline per source (its backups against the RPO) and a Gantt
//! chart of each DR plan's newest drill.
//!
//! The file is self-contained (inline CSS and SVG; no script, font, image or URL) so it
//! can be archived as evidence and opened offline, years later, looking as it did. It is
//! a pure function of the report: the same report always gives the same bytes.
//!
//! Every text taken from the report is escaped. A missing value is written out ("no
//! backup", "never verified") instead of leaving a blank cell, because a blank reads as
//! "nothing to see" to a hurried reader.

use super::model::{
    CheckSummary, Coverage, DestinationState, DrillSummary, ObjectiveSummary, PlanReport, Point,
    Report, SourceReport, StepSpan, TrialSummary,
};
use super::spell;
use chrono::{DateTime, Duration, Utc};
use std::fmt::{self, Display, Write as _};

/// Writes into the page. Formatting into a `String` cannot fail, so its `fmt::Result`
/// is dropped here rather than at every call.
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

/// Render `report` as one self-contained HTML page.
pub fn render(report: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024);
    w!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>lifeboat report {} {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        Esc(&report.verdict),
        report.generated_at.format("%Y-%m-%d %H:%M UTC"),
    );
    summary(&mut out, report);
    w!(out, "<main>\n<h2 class=\"part\">Sources</h2>\n");
    if report.sources.is_empty() {
        w!(out, "<p class=\"none\">No source in this report.</p>\n");
    }
    for s in &report.sources {
        source(&mut out, report, s);
    }
    w!(out, "<h2 class=\"part\">DR plans</h2>\n");
    if report.plans.is_empty() {
        w!(out, "<p class=\"none\">No DR plan in this report.</p>\n");
    }
    for p in &report.plans {
        plan(&mut out, p);
    }
    w!(
        out,
        "</main>\n<footer>{} &middot; generated {} &middot; exit code {}</footer>\n</body>\n</html>\n",
        Esc(&report.format),
        When(report.generated_at),
        report.exit_code,
    );
    out
}

// Each colour is a variable, used by a chart's marks and by its legend alike, so that
// the two cannot drift apart.
const CSS: &str = r#"
:root{--pass:#1a7f37;--pass-bg:#dafbe1;--fail:#cf222e;--fail-bg:#ffebe9;--na:#9a6700;--na-bg:#fff8c5;--muted:#57606a;--line:#d0d7de;--ink:#1f2328;--grey:#8c959f;--skipped:#afb8c1;--blocked:#57606a;--rolled-back:#8250df;--within:#aceebb}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);margin:0 auto;max-width:1120px;padding:24px}
h1{font-size:22px;margin:0 0 12px}
h2{font-size:18px;margin:0}
h2.part{margin:32px 0 12px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:15px;margin:16px 0 6px}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
table.drills code{white-space:nowrap}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:4px 8px;border-bottom:1px solid var(--line)}
thead th{background:#f6f8fa;font-weight:600}
table.facts>tbody>tr>th{width:210px;font-weight:600;color:var(--muted)}
ul{margin:4px 0;padding-left:20px}
.verdict{display:inline-block;font-size:28px;font-weight:700;letter-spacing:.05em;padding:6px 28px;border-radius:6px;color:#fff;margin:0 0 12px}
.verdict.pass{background:var(--pass)}.verdict.fail{background:var(--fail)}.verdict.na{background:var(--na)}
.badge{display:inline-block;font-size:12px;font-weight:700;padding:1px 8px;border-radius:10px;color:#fff;vertical-align:middle}
.badge.pass{background:var(--pass)}.badge.fail{background:var(--fail)}.badge.na{background:var(--na)}
.ok{color:var(--pass);font-weight:600}.bad{color:var(--fail);font-weight:600}.warn{color:var(--na);font-weight:600}
.none{color:var(--muted);font-style:italic}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0 0 12px}
dl.facts dt{font-weight:600;color:var(--muted)}dl.facts dd{margin:0}
#breaches{border:1px solid var(--line);border-left:6px solid var(--pass);padding:8px 12px;margin:12px 0;border-radius:4px}
#breaches.fail{border-left-color:var(--fail);background:var(--fail-bg)}
#breaches h2{font-size:16px}
section.source,section.plan{border:1px solid var(--line);border-left:6px solid var(--pass);border-radius:4px;padding:12px 16px;margin:16px 0;break-inside:avoid-page}
section.fail{border-left-color:var(--fail)}section.na{border-left-color:var(--na)}
section.fail>header{background:var(--fail-bg);margin:-12px -16px 8px;padding:10px 16px}
section>header .kind{color:var(--muted);font-weight:400;font-size:14px;margin-left:6px}
.alert{background:var(--fail);color:#fff;font-weight:700;padding:6px 10px;border-radius:4px;margin:8px 0}
ul.breaches{color:var(--fail);font-weight:600}
tr.bad td{background:var(--fail-bg)}
figure{margin:8px 0 12px}figcaption{font-size:12px;color:var(--muted)}
svg.chart{display:block;width:100%;height:auto;font:11px system-ui,sans-serif}
svg .axis{stroke:var(--muted);stroke-width:1}svg .tick{fill:var(--muted)}
svg .now{stroke:var(--ink);stroke-dasharray:3 3}
svg .m-verified{fill:var(--pass)}svg .m-failed{fill:var(--fail)}svg .m-unverified{fill:var(--grey)}
svg .anomaly{stroke:var(--na);stroke-width:2.5;fill:none}
svg .within{fill:var(--within)}svg .exceeded{fill:var(--fail)}
svg .worst{fill:var(--fail);fill-opacity:.12;stroke:var(--fail);stroke-dasharray:4 3}
svg .worst-label{fill:var(--fail);font-weight:700}
svg .empty{fill:var(--fail-bg);stroke:var(--fail)}svg .empty-label{fill:var(--fail);font-weight:700;font-size:14px}
svg .row{fill:#f6f8fa}svg .label{fill:var(--ink)}
svg .s-succeeded{fill:var(--pass)}svg .s-failed{fill:var(--fail)}svg .s-skipped{fill:var(--skipped)}
svg .s-blocked{fill:var(--blocked)}svg .s-running{fill:var(--na)}svg .s-rolled-back{fill:var(--rolled-back)}svg .s-other{fill:var(--grey)}
svg .open{stroke:var(--ink);stroke-dasharray:3 2}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 10px;vertical-align:-1px}
.sw.m-verified,.sw.s-succeeded{background:var(--pass)}.sw.m-failed,.sw.s-failed{background:var(--fail)}.sw.m-unverified,.sw.s-other{background:var(--grey)}
.sw.within{background:var(--within)}.sw.exceeded{background:var(--fail)}.sw.worst{background:var(--fail-bg);outline:1px dashed var(--fail)}
.sw.s-skipped{background:var(--skipped)}.sw.s-blocked{background:var(--blocked)}.sw.s-running{background:var(--na)}.sw.s-rolled-back{background:var(--rolled-back)}
footer{margin-top:32px;color:var(--muted);font-size:12px}
@media print{body{padding:0}section.source,section.plan{break-inside:avoid}}
"#;

/// The top of the page: the overall verdict, the window, every breach and an index.
fn summary(out: &mut String, report: &Report) {
    let class = tone(&report.verdict);
    w!(
        out,
        "<header id=\"summary\">\n<h1>lifeboat verification report</h1>\n\
         <p id=\"verdict\" class=\"verdict {class}\" data-verdict=\"{v}\">{v}</p>\n\
         <dl class=\"facts\">\n<dt>Generated</dt><dd>{}</dd>\n\
         <dt>Window</dt><dd>{} to {} ({})</dd>\n<dt>Exit code</dt><dd>{}</dd>\n</dl>\n",
        When(report.generated_at),
        When(report.window.since),
        When(report.window.until),
        spell(report.window.secs),
        report.exit_code,
        v = Esc(&report.verdict),
    );
    if report.breaches.is_empty() {
        w!(
            out,
            "<section id=\"breaches\"><h2>Breaches</h2><p class=\"ok\">No target is breached.</p></section>\n"
        );
    } else {
        w!(
            out,
            "<section id=\"breaches\" class=\"fail\"><h2>Breaches ({})</h2>\n<ul class=\"breaches\">\n",
            report.breaches.len()
        );
        for b in &report.breaches {
            w!(
                out,
                "<li><strong>{}</strong>: {}</li>\n",
                Esc(&b.subject),
                Esc(&b.what)
            );
        }
        w!(out, "</ul></section>\n");
    }

    // The index lets an auditor see every subject's standing before reading details.
    w!(
        out,
        "<h3>Sources</h3>\n<table class=\"index\"><thead><tr><th>Source</th><th>Kind</th>\
         <th>Newest backup</th><th>Achieved RPO</th><th>RPO target</th><th>Verdict</th>\
         </tr></thead><tbody>\n"
    );
    for s in &report.sources {
        let newest = match (&s.newest, s.exposure_secs) {
            (None, _) => bad("no backup"),
            (Some(_), Some(e)) => format!("{} ago", spell(e)),
            (Some(p), None) => When(p.at).to_string(),
        };
        w!(
            out,
            "<tr{}><td><a href=\"#{}\">{}</a></td><td>{}</td><td>{newest}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            if is_red(s) { " class=\"bad\"" } else { "" },
            Esc(&anchor("source", &s.name)),
            Esc(&s.name),
            Esc(&s.kind),
            achieved_rpo(s),
            rpo_target(s),
            badge(&s.verdict),
        );
    }
    if report.sources.is_empty() {
        w!(
            out,
            "<tr><td colspan=\"6\" class=\"none\">no source</td></tr>\n"
        );
    }
    w!(
        out,
        "</tbody></table>\n<h3>DR plans</h3>\n<table class=\"index\"><thead><tr><th>Plan</th>\
         <th>Newest drill</th><th>RTO target</th><th>RPO target</th><th>Verdict</th></tr></thead><tbody>\n"
    );
    for p in &report.plans {
        let newest = match newest_drill(p) {
            Some(d) => format!("<code>{}</code> {}", Esc(&d.run_id), When(d.started_at)),
            None => warn("no drill in the window"),
        };
        w!(
            out,
            "<tr{}><td><a href=\"#{}\">{}</a></td><td>{newest}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            if tone(&p.verdict) == "fail" {
                " class=\"bad\""
            } else {
                ""
            },
            Esc(&anchor("plan", &p.name)),
            Esc(&p.name),
            spell(p.rto_secs),
            spell(p.rpo_secs),
            badge(&p.verdict),
        );
    }
    if report.plans.is_empty() {
        w!(
            out,
            "<tr><td colspan=\"5\" class=\"none\">no DR plan</td></tr>\n"
        );
    }
    w!(out, "</tbody></table>\n</header>\n");
}

/// Whether a source is shown in red: it failed, breached a target, or has no backup at
/// all (which must never look calm, whatever verdict the report computed).
fn is_red(s: &SourceReport) -> bool {
    tone(&s.verdict) == "fail" || !s.breaches.is_empty() || s.newest.is_none()
}

/// One source: its facts, breaches and timeline.
fn source(out: &mut String, report: &Report, s: &SourceReport) {
    let class = if is_red(s) { "fail" } else { tone(&s.verdict) };
    w!(
        out,
        "<section class=\"source {class}\" id=\"{}\" data-verdict=\"{}\">\n\
         <header><h2>{} <span class=\"kind\">{}</span> {}</h2></header>\n",
        Esc(&anchor("source", &s.name)),
        Esc(&s.verdict),
        Esc(&s.name),
        Esc(&s.kind),
        badge(&s.verdict),
    );
    if s.newest.is_none() {
        w!(
            out,
            "<p class=\"alert\">No backup: nothing of this source can be restored.</p>\n"
        );
    }
    if !s.breaches.is_empty() {
        w!(out, "<ul class=\"breaches\">\n");
        for b in &s.breaches {
            w!(out, "<li>{}</li>\n", Esc(b));
        }
        w!(out, "</ul>\n");
    }
    timeline(out, report, s);

    w!(out, "<table class=\"facts\"><tbody>\n");
    let row = |out: &mut String, label: &str, value: &str| {
        w!(out, "<tr><th>{label}</th><td>{value}</td></tr>\n");
    };
    row(out, "Kind", &Esc(&s.kind).to_string());
    row(
        out,
        "Schedule",
        &s.schedule.as_deref().map_or_else(
            || none("not scheduled"),
            |c| format!("<code>{}</code>", Esc(c)),
        ),
    );
    row(out, "RPO target", &rpo_target(s));
    row(out, "Newest backup", &newest_backup(s));
    row(out, "Worst gap (achieved RPO)", &worst_gap(report, s));
    row(out, "Within RPO target", &within_target(s));
    row(out, "RPO verdict", &badge(&s.rpo_verdict));
    row(out, "Newest verified backup", &newest_verified(s));
    row(out, "Last verification", &last_check(s.last_check.as_ref()));
    row(
        out,
        "Last trial restore",
        &last_trial(s.last_trial.as_ref()),
    );
    row(out, "Retention coverage", &coverage(&s.coverage));
    row(out, "Destinations", &destinations(&s.destinations));
    row(
        out,
        "Failed backup runs in the window",
        &if s.failed_runs == 0 {
            "0".to_string()
        } else {
            bad(&s.failed_runs.to_string())
        },
    );
    row(out, "Flags", &list(&s.flags, "warn", "none"));
    row(out, "Breaches", &list(&s.breaches, "bad", "none"));
    row(out, "Verdict", &badge(&s.verdict));
    w!(out, "</tbody></table>\n</section>\n");
}

fn rpo_target(s: &SourceReport) -> String {
    match (&s.rpo, s.rpo_secs) {
        (Some(r), _) => Esc(r).to_string(),
        (None, Some(secs)) => spell(secs),
        (None, None) => none("no RPO target"),
    }
}

fn achieved_rpo(s: &SourceReport) -> String {
    match &s.worst_gap {
        Some(g) if s.rpo_secs.is_some_and(|r| g.secs > r) => bad(&g.length),
        Some(g) => Esc(&g.length).to_string(),
        None if s.newest.is_none() => bad("no backup"),
        None => none("not measured"),
    }
}

fn newest_backup(s: &SourceReport) -> String {
    let Some(p) = &s.newest else {
        return bad("no backup");
    };
    let age = match s.exposure_secs {
        Some(e) if s.rpo_secs.is_some_and(|r| e > r) => {
            format!("age {} (exposure, over the RPO target)", bad(&spell(e)))
        }
        Some(e) => format!("age {} (exposure)", spell(e)),
        None => none("age unknown"),
    };
    format!("{}, {age}", point(p))
}

fn worst_gap(report: &Report, s: &SourceReport) -> String {
    let Some(g) = &s.worst_gap else {
        return if s.newest.is_none() {
            bad("no backup")
        } else {
            none("no gap measured")
        };
    };
    let length = if s.rpo_secs.is_some_and(|r| g.secs > r) {
        bad(&g.length)
    } else {
        format!("<strong>{}</strong>", Esc(&g.length))
    };
    // A gap that runs to the report's time is still open: it is the current exposure.
    let open = if g.to >= report.generated_at {
        " (still open: the current exposure)"
    } else {
        ""
    };
    format!("{length} from {} to {}{open}", When(g.from), When(g.to))
}

fn within_target(s: &SourceReport) -> String {
    match s.within_target {
        Some(share) => {
            let text = format!("{:.1} %", share * 100.0);
            if share < 1.0 { warn(&text) } else { text }
        }
        None if s.newest.is_none() => bad("no backup"),
        None if s.rpo_secs.is_none() => none("n/a (no RPO target)"),
        None => none("not measured"),
    }
}

fn newest_verified(s: &SourceReport) -> String {
    match (&s.newest_verified, &s.newest) {
        (None, None) => bad("no backup"),
        (None, Some(_)) => warn("no backup has been verified"),
        (Some(v), Some(n)) if v.backup_id != n.backup_id => format!(
            "{}<br><span class=\"warn\">Older than the newest backup (<code>{}</code>) by {}: \
             the newest backup has not been verified.</span>",
            point(v),
            Esc(&n.backup_id),
            spell((n.at - v.at).num_seconds()),
        ),
        (Some(v), Some(_)) => format!("{} <span class=\"ok\">(the newest backup)</span>", point(v)),
        (Some(v), None) => point(v),
    }
}

fn last_check(c: Option<&CheckSummary>) -> String {
    let Some(c) = c else {
        return warn("never verified");
    };
    format!(
        "{} at {}, backup <code>{}</code> read from {}{}",
        if c.ok { ok("ok") } else { bad("failed") },
        When(c.at),
        Esc(&c.backup_id),
        Esc(&c.repository),
        problems(&c.problems),
    )
}

fn last_trial(t: Option<&TrialSummary>) -> String {
    let Some(t) = t else {
        return warn("no trial restore");
    };
    let mut out = format!(
        "{} at {}, backup <code>{}</code> from {}, took {}",
        if t.ok { ok("ok") } else { bad("failed") },
        When(t.at),
        Esc(&t.backup_id),
        Esc(&t.repository),
        seconds(t.duration_secs),
    );
    if t.counts.is_empty() {
        w!(out, "<br>{}", none("no counts"));
    } else {
        w!(
            out,
            "<table class=\"counts\"><thead><tr><th>Count</th><th>Expected</th><th>Actual</th></tr></thead><tbody>"
        );
        for (name, pair) in &t.counts {
            let differs = pair.expected != pair.actual;
            w!(
                out,
                "<tr{}><td>{}</td><td>{}</td><td>{}</td></tr>",
                if differs { " class=\"bad\"" } else { "" },
                Esc(name),
                count(pair.expected),
                count(pair.actual),
            );
        }
        w!(out, "</tbody></table>");
    }
    out.push_str(&problems(&t.problems));
    out
}

fn count(n: Option<u64>) -> String {
    n.map_or_else(|| none("unknown"), |n| n.to_string())
}

fn coverage(c: &Coverage) -> String {
    let reach = match (c.oldest_restorable, c.reach_secs) {
        (Some(at), Some(r)) => format!("reaches back {} (to {})", spell(r), When(at)),
        (Some(at), None) => format!("reaches back to {}", When(at)),
        (None, _) => bad("nothing restorable"),
    };
    let target = c.target_secs.map_or_else(
        || none("no keep-within in the policy"),
        |t| format!("keep-within {}", spell(t)),
    );
    format!("{} {reach}; {target}", badge(&c.verdict))
}

fn destinations(ds: &[DestinationState]) -> String {
    if ds.is_empty() {
        return bad("no destination");
    }
    let mut out = String::from(
        "<table class=\"destinations\"><thead><tr><th>Repository</th><th>Backups</th><th>Newest</th><th>State</th></tr></thead><tbody>",
    );
    for d in ds {
        let state = match d.state.as_str() {
            "ok" => ok("ok"),
            "empty" => bad("empty"),
            other => warn(other),
        };
        w!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{state}</td></tr>",
            Esc(&d.repository),
            d.backups,
            d.newest
                .map_or_else(|| none("none"), |t| When(t).to_string()),
        );
    }
    out.push_str("</tbody></table>");
    out
}

fn point(p: &Point) -> String {
    format!(
        "<code>{}</code> at {} ({}{})",
        Esc(&p.backup_id),
        When(p.at),
        match p.verification.as_str() {
            "verified" => ok("verified"),
            "failed" => bad("verification failed"),
            other => warn(other),
        },
        if p.anomaly {
            format!(", {}", warn("flagged as an anomaly"))
        } else {
            String::new()
        },
    )
}

fn problems(ps: &[String]) -> String {
    if ps.is_empty() {
        return String::new();
    }
    let mut out = String::from("<ul class=\"problems bad\">");
    for p in ps {
        w!(out, "<li>{}</li>", Esc(p));
    }
    out.push_str("</ul>");
    out
}

fn list(items: &[String], class: &str, empty: &str) -> String {
    if items.is_empty() {
        return none(empty);
    }
    let mut out = format!("<ul class=\"{class}\">");
    for i in items {
        w!(out, "<li>{}</li>", Esc(i));
    }
    out.push_str("</ul>");
    out
}

// ---------------------------------------------------------------- timeline chart

const CHART_W: f64 = 960.0;

/// Maps instants onto an x range, clamping what lies outside.
struct TimeAxis {
    t0: DateTime<Utc>,
    t1: DateTime<Utc>,
    secs: f64,
    x0: f64,
    width: f64,
}

impl TimeAxis {
    fn new(t0: DateTime<Utc>, t1: DateTime<Utc>, x0: f64, width: f64) -> Self {
        // A zero-length window would divide by zero; one second draws it as a line.
        let secs = ((t1 - t0).num_milliseconds() as f64 / 1000.0).max(1.0);
        TimeAxis {
            t0,
            t1,
            secs,
            x0,
            width,
        }
    }

    fn x(&self, t: DateTime<Utc>) -> f64 {
        let f = (t - self.t0).num_milliseconds() as f64 / 1000.0 / self.secs;
        self.x0 + self.width * f.clamp(0.0, 1.0)
    }
}

/// A stretch of time during which the exposure was within the RPO target or not.
#[derive(Debug, PartialEq)]
struct Band {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    within: bool,
}

/// The RPO band: after each backup, the RPO target's length is within target; the rest
/// of the time until the next backup (or the window's end) the exposure exceeded it.
/// Before the first backup the exposure is unknown and no band is drawn, as the model's
/// share within target also starts at the first backup.
fn rpo_bands(
    points: &[DateTime<Utc>],
    rpo_secs: i64,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<Band> {
    let rpo = Duration::seconds(rpo_secs);
    let mut bands = Vec::new();
    for (i, &at) in points.iter().enumerate() {
        let end = points.get(i + 1).copied().unwrap_or(until).min(until);
        let due = (at + rpo).min(end);
        for (from, to, within) in [(at, due, true), (due, end, false)] {
            let (from, to) = (from.max(since), to.min(until));
            if from < to {
                bands.push(Band { from, to, within });
            }
        }
    }
    bands
}

/// The timeline: one mark per committed backup over the window, the RPO band and the
/// worst gap.
fn timeline(out: &mut String, report: &Report, s: &SourceReport) {
    let (since, until) = (report.window.since, report.window.until);
    let axis = TimeAxis::new(since, until, 12.0, CHART_W - 24.0);
    let h = 118.0;
    let summary = match &s.worst_gap {
        Some(g) => format!(
            "{} backups in the window; worst gap {}",
            s.timeline.len(),
            g.length
        ),
        None => format!("{} backups in the window", s.timeline.len()),
    };
    w!(
        out,
        "<figure><svg class=\"chart timeline\" viewBox=\"0 0 {CHART_W} {h}\" role=\"img\" aria-label=\"Timeline of {}: {}\">\n",
        Esc(&s.name),
        Esc(&summary),
    );

    // The points the band is measured from: the window's backups, plus the newest one
    // when it predates the window (its exposure still runs through the window).
    let mut points: Vec<DateTime<Utc>> = s.timeline.iter().map(|p| p.at).collect();
    if let Some(n) = &s.newest
        && !points.contains(&n.at)
    {
        points.push(n.at);
    }
    points.sort();

    if points.is_empty() {
        w!(
            out,
            "<rect class=\"empty\" x=\"{:.1}\" y=\"22\" width=\"{:.1}\" height=\"56\"/>\
             <text class=\"empty-label\" x=\"{:.1}\" y=\"55\" text-anchor=\"middle\">no backup</text>\n",
            axis.x0,
            axis.width,
            axis.x0 + axis.width / 2.0,
        );
    }
    if let Some(g) = &s.worst_gap {
        let (x1, x2) = (axis.x(g.from), axis.x(g.to));
        let align = if x1 + (x2 - x1) / 2.0 > CHART_W - 90.0 {
            "end"
        } else {
            "middle"
        };
        w!(
            out,
            "<rect class=\"worst\" x=\"{x1:.1}\" y=\"20\" width=\"{:.1}\" height=\"62\"><title>worst gap {} from {} to {}</title></rect>\
             <text class=\"worst-label\" x=\"{:.1}\" y=\"14\" text-anchor=\"{align}\">worst gap {}</text>\n",
            (x2 - x1).max(1.0),
            Esc(&g.length),
            g.from.to_rfc3339(),
            g.to.to_rfc3339(),
            if align == "end" {
                x2
            } else {
                x1 + (x2 - x1) / 2.0
            },
            Esc(&g.length),
        );
    }
    if let Some(rpo) = s.rpo_secs {
        for b in rpo_bands(&points, rpo, since, until) {
            let (x1, x2) = (axis.x(b.from), axis.x(b.to));
            w!(
                out,
                "<rect class=\"{}\" x=\"{x1:.1}\" y=\"70\" width=\"{:.1}\" height=\"9\"/>\n",
                if b.within { "within" } else { "exceeded" },
                (x2 - x1).max(0.5),
            );
        }
    }
    for p in &s.timeline {
        let x = axis.x(p.at);
        let class = match p.verification.as_str() {
            "verified" => "m-verified",
            "failed" => "m-failed",
            _ => "m-unverified",
        };
        w!(
            out,
            "<g><title>{} at {}: {}{}</title><rect class=\"{class}\" x=\"{:.1}\" y=\"30\" width=\"3\" height=\"34\"/>",
            Esc(&p.backup_id),
            p.at.to_rfc3339(),
            Esc(&p.verification),
            if p.anomaly { ", anomaly" } else { "" },
            x - 1.5,
        );
        if p.anomaly {
            w!(
                out,
                "<circle class=\"anomaly\" cx=\"{x:.1}\" cy=\"26\" r=\"3.5\"/>"
            );
        }
        w!(out, "</g>\n");
    }
    w!(
        out,
        "<line class=\"now\" x1=\"{x:.1}\" y1=\"18\" x2=\"{x:.1}\" y2=\"86\"/>\n",
        x = axis.x(until)
    );
    draw_axis(out, &axis, 88.0, false);
    w!(out, "</svg>\n<figcaption>");
    w!(
        out,
        "<span class=\"sw m-verified\"></span>verified<span class=\"sw m-failed\"></span>verification failed\
         <span class=\"sw m-unverified\"></span>unverified<span class=\"sw worst\"></span>worst gap"
    );
    if s.rpo_secs.is_some() {
        w!(
            out,
            "<span class=\"sw within\"></span>exposure within RPO<span class=\"sw exceeded\"></span>exposure over RPO"
        );
    } else {
        w!(out, " &middot; no RPO target, so no RPO band");
    }
    w!(out, "</figcaption></figure>\n");
}

/// Round tick steps in seconds, from a second to four weeks.
const TICK_STEPS: [i64; 22] = [
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    2 * 60,
    5 * 60,
    10 * 60,
    15 * 60,
    30 * 60,
    3600,
    2 * 3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86_400,
    2 * 86_400,
    7 * 86_400,
    14 * 86_400,
    28 * 86_400,
];

/// Ticks between `t0` and `t1`: the smallest round step that gives fewer than `max`,
/// placed at multiples of the step from `origin`, so that with the Unix epoch as origin
/// a daily tick falls on midnight UTC rather than on the window's odd start.
fn ticks(
    t0: DateTime<Utc>,
    t1: DateTime<Utc>,
    origin: DateTime<Utc>,
    max: i64,
) -> (i64, Vec<DateTime<Utc>>) {
    let span = (t1 - t0).num_seconds().max(1);
    let step = TICK_STEPS
        .into_iter()
        .find(|s| span / s < max)
        .unwrap_or(span / max + 1);
    let from = (t0 - origin).num_seconds();
    let first = -(-from).div_euclid(step) * step;
    let ticks = (first..=from + span)
        .step_by(step as usize)
        .map(|secs| origin + Duration::seconds(secs))
        .collect();
    (step, ticks)
}

/// A horizontal axis at `y` with round ticks: dates, or with `relative` the time since
/// the axis start (`+5m`).
fn draw_axis(out: &mut String, axis: &TimeAxis, y: f64, relative: bool) {
    let origin = if relative {
        axis.t0
    } else {
        DateTime::<Utc>::UNIX_EPOCH
    };
    let (step, ticks) = ticks(axis.t0, axis.t1, origin, 8);
    w!(
        out,
        "<line class=\"axis\" x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"/>\n",
        axis.x0,
        axis.x0 + axis.width
    );
    for t in ticks {
        let x = axis.x(t);
        let label = if relative {
            format!("+{}", spell((t - origin).num_seconds()))
        } else if step % 86_400 == 0 {
            t.format("%m-%d").to_string()
        } else {
            t.format("%m-%d %H:%M").to_string()
        };
        // Labels at the ends would be cut off if centred.
        let align = if x - axis.x0 < 24.0 {
            "start"
        } else if axis.x0 + axis.width - x < 24.0 {
            "end"
        } else {
            "middle"
        };
        w!(
            out,
            "<line class=\"axis\" x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{align}\">{label}</text>\n",
            y + 4.0,
            y + 16.0,
        );
    }
}

// ---------------------------------------------------------------- plans

fn newest_drill(p: &PlanReport) -> Option<&DrillSummary> {
    // The model lists drills newest first; taking the latest start does not rely on it.
    p.drills.iter().max_by_key(|d| d.started_at)
}

/// One DR plan: its drills and the newest drill's steps.
fn plan(out: &mut String, p: &PlanReport) {
    w!(
        out,
        "<section class=\"plan {}\" id=\"{}\" data-verdict=\"{}\">\n\
         <header><h2>{} <span class=\"kind\">DR plan</span> {}</h2></header>\n\
         <p>RTO target <strong>{}</strong>, RPO target <strong>{}</strong>.</p>\n",
        tone(&p.verdict),
        Esc(&anchor("plan", &p.name)),
        Esc(&p.verdict),
        Esc(&p.name),
        badge(&p.verdict),
        spell(p.rto_secs),
        spell(p.rpo_secs),
    );
    if !p.flags.is_empty() {
        w!(out, "{}\n", list(&p.flags, "warn", ""));
    }
    if p.drills.is_empty() {
        w!(
            out,
            "<p class=\"warn\">No drill or run of this plan in the window.</p>\n</section>\n"
        );
        return;
    }
    w!(
        out,
        "<table class=\"drills\"><thead><tr><th>Run</th><th>Mode</th><th>Started</th><th>Status</th>\
         <th>RTO achieved / target</th><th>RPO achieved / target</th><th>Verdict</th><th>Slowest step</th>\
         </tr></thead><tbody>\n"
    );
    for d in &p.drills {
        let status = match d.status.as_str() {
            "succeeded" => ok("succeeded"),
            "failed" => bad("failed"),
            other => warn(other),
        };
        w!(
            out,
            "<tr{}><td><code>{}</code></td><td>{}</td><td>{}</td><td>{status}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            if tone(&d.verdict) == "fail" {
                " class=\"bad\""
            } else {
                ""
            },
            Esc(&d.run_id),
            Esc(&d.mode),
            When(d.started_at),
            objective(&d.rto),
            objective(&d.rpo),
            badge(&d.verdict),
            d.slowest_step.as_ref().map_or_else(
                || none("none"),
                |(id, secs)| format!("<code>{}</code> ({})", Esc(id), seconds(*secs))
            ),
        );
    }
    w!(out, "</tbody></table>\n");
    if let Some(d) = newest_drill(p) {
        w!(
            out,
            "<h3>Steps of the newest {} <code>{}</code></h3>\n",
            Esc(&d.mode),
            Esc(&d.run_id)
        );
        gantt(out, d);
    }
    w!(out, "</section>\n");
}

fn objective(o: &ObjectiveSummary) -> String {
    let achieved = o
        .achieved_secs
        .map_or_else(|| "not measured".to_string(), spell);
    let text = format!("{achieved} / {}", spell(o.target_secs));
    match tone(&o.verdict) {
        "pass" => ok(&text),
        "fail" => bad(&text),
        _ => format!("{text} ({})", Esc(&o.verdict)),
    }
}

/// The state classes of the Gantt bars; anything else is drawn as `s-other`.
fn step_class(state: &str) -> &'static str {
    match state {
        "succeeded" => "s-succeeded",
        "failed" | "integrity-failed" => "s-failed",
        "skipped" => "s-skipped",
        "blocked" => "s-blocked",
        "running" | "waiting" => "s-running",
        "rolled-back" => "s-rolled-back",
        _ => "s-other",
    }
}

/// The Gantt chart of one drill: a bar per step from its start to its end.
fn gantt(out: &mut String, d: &DrillSummary) {
    let label_w = 230.0;
    let right = 70.0;
    let row_h = 22.0;
    let top = 6.0;
    let t0 = d
        .steps
        .iter()
        .filter_map(|s| s.started_at)
        .chain([d.started_at])
        .min()
        .unwrap_or(d.started_at);
    let t1 = d
        .steps
        .iter()
        .flat_map(|s| [s.started_at, s.finished_at])
        .flatten()
        .max()
        .unwrap_or(t0)
        .max(t0);
    let axis = TimeAxis::new(t0, t1, label_w, CHART_W - label_w - right);
    let h = top + row_h * d.steps.len().max(1) as f64 + 30.0;
    w!(
        out,
        "<figure><svg class=\"chart gantt\" viewBox=\"0 0 {CHART_W} {h}\" role=\"img\" aria-label=\"Steps of {}\">\n",
        Esc(&d.run_id)
    );
    if d.steps.is_empty() {
        w!(
            out,
            "<text class=\"label\" x=\"4\" y=\"{:.1}\">no step recorded</text>\n",
            top + 15.0
        );
    }
    for (i, st) in d.steps.iter().enumerate() {
        let y = top + row_h * i as f64;
        w!(out, "<g><title>{}</title>", Esc(&step_title(st)));
        if i % 2 == 0 {
            w!(
                out,
                "<rect class=\"row\" x=\"0\" y=\"{y:.1}\" width=\"{CHART_W}\" height=\"{row_h}\"/>"
            );
        }
        w!(
            out,
            "<text class=\"label\" x=\"4\" y=\"{:.1}\">{}</text>",
            y + 15.0,
            Esc(&truncate(&st.id, 30))
        );
        let class = step_class(&st.state);
        match (st.started_at, st.finished_at) {
            (Some(a), end) => {
                let (x1, x2) = (axis.x(a), axis.x(end.unwrap_or(t1)));
                let open = if end.is_none() { " open" } else { "" };
                let note = match end {
                    Some(e) => seconds((e - a).num_milliseconds() as f64 / 1000.0),
                    None => format!("{}, unfinished", st.state),
                };
                w!(
                    out,
                    "<rect class=\"{class}{open}\" x=\"{x1:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"2\"/>\
                     <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    y + 4.0,
                    (x2 - x1).max(2.0),
                    row_h - 8.0,
                    x2 + 4.0,
                    y + 15.0,
                    Esc(&note),
                );
            }
            (None, _) => {
                w!(
                    out,
                    "<text class=\"tick\" x=\"{label_w}\" y=\"{:.1}\">{}, not started</text>",
                    y + 15.0,
                    Esc(&st.state)
                );
            }
        }
        w!(out, "</g>\n");
    }
    let y = top + row_h * d.steps.len().max(1) as f64 + 4.0;
    draw_axis(out, &axis, y, true);
    w!(
        out,
        "</svg>\n<figcaption>From {} &middot;\
         <span class=\"sw s-succeeded\"></span>succeeded<span class=\"sw s-failed\"></span>failed\
         <span class=\"sw s-skipped\"></span>skipped<span class=\"sw s-blocked\"></span>blocked\
         <span class=\"sw s-running\"></span>running or waiting<span class=\"sw s-rolled-back\"></span>rolled back\
         <span class=\"sw s-other\"></span>other</figcaption></figure>\n",
        When(t0)
    );
}

fn step_title(st: &StepSpan) -> String {
    let when = |t: Option<DateTime<Utc>>| t.map_or_else(|| "-".to_string(), |t| t.to_rfc3339());
    format!(
        "{} ({}): {}, {} to {}",
        st.id,
        st.kind,
        st.state,
        when(st.started_at),
        when(st.finished_at)
    )
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

// ---------------------------------------------------------------- small pieces

/// Text made safe for HTML element content and quoted attribute values.
struct Esc<'a>(&'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// An instant, machine-readable in `datetime` and plain UTC for the reader.
struct When(DateTime<Utc>);

impl Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<time datetime=\"{}\">{}</time>",
            self.0.to_rfc3339(),
            self.0.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// The id of a source's or plan's section. HTML ids may hold anything but whitespace.
fn anchor(prefix: &str, name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    format!("{prefix}-{name}")
}

/// The CSS class for a verdict.
fn tone(verdict: &str) -> &'static str {
    match verdict {
        "PASS" => "pass",
        "FAIL" => "fail",
        _ => "na",
    }
}

fn badge(verdict: &str) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        tone(verdict),
        Esc(verdict)
    )
}

/// Fractional seconds: tenths below a minute, the usual spelling above.
fn seconds(secs: f64) -> String {
    if !secs.is_finite() {
        "unknown".to_string()
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        spell(secs.round() as i64)
    }
}

fn ok(text: &str) -> String {
    format!("<span class=\"ok\">{}</span>", Esc(text))
}

fn bad(text: &str) -> String {
    format!("<span class=\"bad\">{}</span>", Esc(text))
}

fn warn(text: &str) -> String {
    format!("<span class=\"warn\">{}</span>", Esc(text))
}

fn none(text: &str) -> String {
    format!("<span class=\"none\">{}</span>", Esc(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::{Breach, CountPair, FORMAT, Gap, Window};
    use chrono::TimeZone;
    use rstest::rstest;
    use std::collections::BTreeMap;

    fn t(hours: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap() + Duration::hours(hours)
    }

    fn point(id: &str, hours: i64, verification: &str) -> Point {
        Point {
            backup_id: id.into(),
            at: t(hours),
            repositories: vec!["local".into()],
            verification: verification.into(),
            anomaly: false,
        }
    }

    /// A passing source backed up every six hours, the last one verified.
    fn healthy(name: &str) -> SourceReport {
        let timeline: Vec<Point> = (0..8)
            .map(|i| point(&format!("b{i}"), 6 * i + 2, "unverified"))
            .chain([point("b8", 46, "verified")])
            .collect();
        let newest = timeline.last().cloned();
        SourceReport {
            name: name.into(),
            kind: "sqlite".into(),
            schedule: Some("0 */6 * * * (UTC)".into()),
            rpo_secs: Some(6 * 3600),
            rpo: Some("6h".into()),
            newest: newest.clone(),
            exposure_secs: Some(2 * 3600),
            worst_gap: Some(Gap {
                from: t(2),
                to: t(8),
                secs: 6 * 3600,
                length: "6h".into(),
            }),
            within_target: Some(1.0),
            rpo_verdict: "PASS".into(),
            newest_verified: newest,
            last_check: None,
            last_trial: None,
            coverage: Coverage {
                oldest_restorable: Some(t(2)),
                reach_secs: Some(46 * 3600),
                target_secs: None,
                verdict: "N/A".into(),
            },
            destinations: vec![DestinationState {
                repository: "local".into(),
                backups: 9,
                newest: Some(t(46)),
                state: "ok".into(),
            }],
            failed_runs: 0,
            flags: vec![],
            breaches: vec![],
            verdict: "PASS".into(),
            timeline,
        }
    }

    fn empty(name: &str) -> SourceReport {
        SourceReport {
            newest: None,
            exposure_secs: None,
            worst_gap: None,
            within_target: None,
            rpo_verdict: "FAIL".into(),
            newest_verified: None,
            coverage: Coverage {
                oldest_restorable: None,
                reach_secs: None,
                target_secs: None,
                verdict: "N/A".into(),
            },
            destinations: vec![],
            breaches: vec!["no backup".into()],
            verdict: "FAIL".into(),
            timeline: vec![],
            ..healthy(name)
        }
    }

    fn report(sources: Vec<SourceReport>, plans: Vec<PlanReport>) -> Report {
        let breaches: Vec<Breach> = sources
            .iter()
            .flat_map(|s| {
                s.breaches.iter().map(|b| Breach {
                    subject: format!("source {}", s.name),
                    what: b.clone(),
                })
            })
            .collect();
        let fail = !breaches.is_empty();
        Report {
            format: FORMAT.into(),
            generated_at: t(48),
            window: Window {
                since: t(0),
                until: t(48),
                secs: 48 * 3600,
            },
            verdict: if fail { "FAIL" } else { "PASS" }.into(),
            breaches,
            sources,
            plans,
            exit_code: if fail { 5 } else { 0 },
        }
    }

    fn plan(name: &str, run_id: &str) -> PlanReport {
        let step = |id: &str, state: &str, from: i64, to: Option<i64>| StepSpan {
            id: id.into(),
            kind: "command".into(),
            state: state.into(),
            started_at: Some(t(40) + Duration::seconds(from)),
            finished_at: to.map(|s| t(40) + Duration::seconds(s)),
        };
        PlanReport {
            name: name.into(),
            rto_secs: 300,
            rpo_secs: 3600,
            drills: vec![DrillSummary {
                run_id: run_id.into(),
                mode: "drill".into(),
                started_at: t(40),
                status: "succeeded".into(),
                rto: ObjectiveSummary {
                    target_secs: 300,
                    achieved_secs: Some(95),
                    verdict: "PASS".into(),
                },
                rpo: ObjectiveSummary {
                    target_secs: 3600,
                    achieved_secs: Some(1800),
                    verdict: "PASS".into(),
                },
                verdict: "PASS".into(),
                slowest_step: Some(("restore".into(), 80.0)),
                steps: vec![
                    step("scale-down", "skipped", 0, Some(0)),
                    step("restore", "succeeded", 1, Some(81)),
                    step("integrity", "succeeded", 81, Some(95)),
                ],
            }],
            verdict: "PASS".into(),
            flags: vec![],
        }
    }

    /// The text of the element whose opening tag contains `hook`, up to its section end.
    fn section<'a>(html: &'a str, hook: &str) -> &'a str {
        let start = html
            .find(hook)
            .unwrap_or_else(|| panic!("no {hook} in the page"));
        let end = html[start..].find("</section>").unwrap() + start;
        &html[start..end]
    }

    #[test]
    fn escape_covers_markup_and_both_quotes() {
        assert_eq!(
            Esc(r#"<a href="x">Tom & 'Jerry'</a>"#).to_string(),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(Esc("plain").to_string(), "plain");
    }

    #[test]
    fn a_hostile_name_problem_and_run_id_are_rendered_as_text() {
        let evil = "<script>alert(1)</script>";
        let mut s = healthy(evil);
        s.breaches = vec![format!("RPO breached by {evil}")];
        s.verdict = "FAIL".into();
        s.last_check = Some(CheckSummary {
            backup_id: evil.into(),
            repository: "local".into(),
            at: t(47),
            ok: false,
            problems: vec![evil.into()],
        });
        let html = render(&report(vec![s], vec![plan(evil, evil)]));
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("id=\"source-&lt;script&gt;alert(1)&lt;/script&gt;\""));
        assert!(html.contains("id=\"plan-&lt;script&gt;alert(1)&lt;/script&gt;\""));
    }

    #[test]
    fn a_failing_source_is_red_and_names_its_breach() {
        let mut s = healthy("pg-main");
        s.worst_gap = Some(Gap {
            from: t(10),
            to: t(17),
            secs: 7 * 3600,
            length: "7h".into(),
        });
        s.rpo_verdict = "FAIL".into();
        s.breaches = vec!["RPO 6h exceeded: gap of 7h from 10:00 to 17:00".into()];
        s.verdict = "FAIL".into();
        let html = render(&report(vec![s, healthy("redis")], vec![]));

        let pg = section(&html, "id=\"source-pg-main\"");
        assert!(html.contains(
            "<section class=\"source fail\" id=\"source-pg-main\" data-verdict=\"FAIL\">"
        ));
        assert!(pg.contains("<ul class=\"breaches\">\n<li>RPO 6h exceeded: gap of 7h"));
        assert!(pg.contains("<span class=\"bad\">7h</span>"), "{pg}");
        assert!(pg.contains("<span class=\"badge fail\">FAIL</span>"));
        assert!(
            html.contains(
                "<section class=\"source pass\" id=\"source-redis\" data-verdict=\"PASS\">"
            )
        );
        // The breach is listed at the top too, with its subject.
        assert!(html.contains("<li><strong>source pg-main</strong>: RPO 6h exceeded"));
        assert!(html.contains("id=\"verdict\" class=\"verdict fail\" data-verdict=\"FAIL\">FAIL<"));
    }

    #[test]
    fn a_source_without_backup_says_so_in_red_and_leaves_no_blank() {
        let mut s = empty("neo4j");
        // Red even if the computed verdict were not FAIL: no backup must never look calm.
        s.verdict = "PASS".into();
        s.breaches.clear();
        let html = render(&report(vec![s], vec![]));
        let neo = section(&html, "id=\"source-neo4j\"");
        assert!(html.contains("<section class=\"source fail\" id=\"source-neo4j\""));
        assert!(neo.contains("<p class=\"alert\">No backup"));
        assert!(neo.contains("<tr><th>Newest backup</th><td><span class=\"bad\">no backup</span>"));
        assert!(neo.contains("class=\"empty-label\""));
        assert!(!neo.contains("<td></td>"), "a blank cell: {neo}");
    }

    #[test]
    fn an_unverified_newest_backup_is_pointed_out() {
        let mut s = healthy("hive");
        s.newest_verified = Some(point("b6", 38, "verified"));
        let html = render(&report(vec![s], vec![]));
        assert!(html.contains("Older than the newest backup (<code>b8</code>) by 8h"));
    }

    #[test]
    fn a_failed_trial_restore_shows_the_differing_counts() {
        let mut s = healthy("pg");
        s.last_trial = Some(TrialSummary {
            backup_id: "b8".into(),
            repository: "s3".into(),
            at: t(47),
            ok: false,
            counts: BTreeMap::from([
                (
                    "rows.users".into(),
                    CountPair {
                        expected: Some(120),
                        actual: Some(118),
                    },
                ),
                (
                    "tables".into(),
                    CountPair {
                        expected: Some(4),
                        actual: Some(4),
                    },
                ),
            ]),
            problems: vec!["rows.users: expected 120, found 118".into()],
            duration_secs: 42.5,
        });
        let html = render(&report(vec![s], vec![]));
        assert!(html.contains("<span class=\"bad\">failed</span>"));
        assert!(
            html.contains("<tr class=\"bad\"><td>rows.users</td><td>120</td><td>118</td></tr>")
        );
        assert!(html.contains("<tr><td>tables</td><td>4</td><td>4</td></tr>"));
        assert!(html.contains("<li>rows.users: expected 120, found 118</li>"));
        assert!(html.contains("took 42.5s"));
    }

    #[test]
    fn charts_are_inline_svg_one_timeline_per_source_and_a_gantt_per_drilled_plan() {
        let html = render(&report(
            vec![healthy("a"), empty("b")],
            vec![plan("failover", "r1")],
        ));
        assert_eq!(html.matches("<svg class=\"chart timeline\"").count(), 2);
        assert_eq!(html.matches("<svg class=\"chart gantt\"").count(), 1);
        let gantt = section(&html, "id=\"plan-failover\"");
        assert_eq!(gantt.matches("class=\"s-succeeded\"").count(), 2);
        assert_eq!(gantt.matches("class=\"s-skipped\"").count(), 1);
        // Nine backups, nine marks; the newest one verified.
        let a = section(&html, "id=\"source-a\"");
        assert_eq!(a.matches("<rect class=\"m-").count(), 9);
        assert_eq!(a.matches("<rect class=\"m-verified\"").count(), 1);
        assert_eq!(a.matches("<rect class=\"worst\"").count(), 1);
    }

    #[test]
    fn the_page_is_self_contained_and_deterministic() {
        let r = report(vec![healthy("a"), empty("b")], vec![plan("p", "r1")]);
        let html = render(&r);
        for external in [
            "://", "<script", "<link", "<img", "<iframe", "src=", "url(", "@import",
        ] {
            assert!(!html.contains(external), "found {external}");
        }
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html, render(&r));
    }

    #[test]
    fn a_plan_without_drill_says_so() {
        let mut p = plan("failover", "r1");
        p.drills.clear();
        p.verdict = "N/A".into();
        p.flags = vec!["no drill in the window".into()];
        let html = render(&report(vec![], vec![p]));
        assert!(
            html.contains("<section class=\"plan na\" id=\"plan-failover\" data-verdict=\"N/A\">")
        );
        assert!(html.contains("No drill or run of this plan in the window."));
        assert!(!html.contains("chart gantt"));
    }

    #[rstest]
    // A week from 11:00: daily ticks on each midnight UTC, not at 11:00.
    #[case(t(11), t(11 + 7 * 24), DateTime::<Utc>::UNIX_EPOCH, 86_400, 7, t(24))]
    // A drill of 7m13s, from its start: a tick a minute, +0 to +7m.
    #[case(t(3), t(3) + Duration::seconds(433), t(3), 60, 8, t(3))]
    // Two hours: 15-minute steps would give 9 ticks, too many; 30 minutes give 5.
    #[case(t(0), t(2), DateTime::<Utc>::UNIX_EPOCH, 1800, 5, t(0))]
    fn ticks_take_a_round_step_from_the_origin(
        #[case] t0: DateTime<Utc>,
        #[case] t1: DateTime<Utc>,
        #[case] origin: DateTime<Utc>,
        #[case] step: i64,
        #[case] count: usize,
        #[case] first: DateTime<Utc>,
    ) {
        let (s, ts) = ticks(t0, t1, origin, 8);
        assert_eq!((s, ts.len(), ts[0]), (step, count, first));
        assert!(ts.iter().all(|t| *t >= t0 && *t <= t1));
    }

    #[rstest]
    // Backups at 0h and 4h with a 6h RPO, window to 12h: within until 4h and 4h..10h,
    // exceeded 10h..12h.
    #[case(&[0, 4], 6, 12, &[(0, 4, true), (4, 10, true), (10, 12, false)])]
    // A 7h gap against 6h: one hour over, then within to the end.
    #[case(&[1, 8], 6, 12, &[(1, 7, true), (7, 8, false), (8, 12, true)])]
    // A backup before the window: only the part inside the window is drawn.
    #[case(&[-3], 6, 12, &[(0, 3, true), (3, 12, false)])]
    // Nothing to measure from.
    #[case(&[], 6, 12, &[])]
    fn rpo_bands_split_each_interval_at_the_target(
        #[case] points: &[i64],
        #[case] rpo_hours: i64,
        #[case] until: i64,
        #[case] expected: &[(i64, i64, bool)],
    ) {
        let points: Vec<_> = points.iter().map(|&h| t(h)).collect();
        let bands = rpo_bands(&points, rpo_hours * 3600, t(0), t(until));
        let expected: Vec<Band> = expected
            .iter()
            .map(|&(from, to, within)| Band {
                from: t(from),
                to: t(to),
                within,
            })
            .collect();
        assert_eq!(bands, expected);
    }
}
