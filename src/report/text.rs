//! The report as a terminal table and as Markdown. Every cell says something: a source
//! without a backup reads "no backup", never an empty cell.

use super::model::*;
use super::{at, spell};

/// One row of the source table, as cells.
fn source_cells(s: &SourceReport) -> Vec<String> {
    let newest = match (&s.newest, s.exposure_secs) {
        (Some(p), Some(e)) => format!("{} ({} ago)", at(p.at), spell(e)),
        _ => "no backup".into(),
    };
    let gap = match &s.worst_gap {
        Some(g) => format!("{} ({} -> {})", g.length, at(g.from), at(g.to)),
        None => "no backup".into(),
    };
    let within = s
        .within_target
        .map(|w| format!("{:.1}%", w * 100.0))
        .unwrap_or_else(|| "n/a".into());
    let verified = match (&s.newest_verified, &s.newest) {
        (Some(v), Some(n)) if v.backup_id == n.backup_id => format!("newest ({})", at(v.at)),
        (Some(v), _) => format!("older: {}", at(v.at)),
        (None, _) => "none".into(),
    };
    let trial = match &s.last_trial {
        Some(t) if t.ok => format!("ok {}", at(t.at)),
        Some(t) => format!("FAILED {}", at(t.at)),
        None => "none".into(),
    };
    vec![
        s.name.clone(),
        s.kind.clone(),
        s.rpo.clone().unwrap_or_else(|| "none".into()),
        newest,
        gap,
        within,
        verified,
        trial,
        s.verdict.clone(),
    ]
}

const SOURCE_HEADER: [&str; 9] = [
    "source",
    "kind",
    "rpo",
    "newest backup",
    "worst gap (achieved rpo)",
    "within rpo",
    "verified",
    "trial restore",
    "verdict",
];

fn drill_cells(p: &PlanReport, d: &DrillSummary) -> Vec<String> {
    let obj = |o: &ObjectiveSummary| {
        format!(
            "{} / {} {}",
            o.achieved_secs
                .map(spell)
                .unwrap_or_else(|| "not measured".into()),
            spell(o.target_secs),
            o.verdict
        )
    };
    vec![
        p.name.clone(),
        d.run_id.clone(),
        d.mode.clone(),
        d.status.clone(),
        obj(&d.rto),
        obj(&d.rpo),
        d.slowest_step
            .as_ref()
            .map(|(id, secs)| format!("{id} ({secs:.1}s)"))
            .unwrap_or_else(|| "none".into()),
        d.verdict.clone(),
    ]
}

const DRILL_HEADER: [&str; 8] = [
    "plan",
    "run",
    "mode",
    "status",
    "rto achieved / target",
    "rpo achieved / target",
    "slowest step",
    "verdict",
];

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_uppercase()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

fn notes(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for s in &r.sources {
        for f in &s.flags {
            out.push(format!("source {}: {f}", s.name));
        }
    }
    for p in &r.plans {
        for f in &p.flags {
            out.push(format!("plan {}: {f}", p.name));
        }
    }
    out
}

/// The terminal table.
pub fn render_table(r: &Report) -> String {
    let mut out = format!(
        "lifeboat report at {}, window {} (since {}): {}\n\n",
        at(r.generated_at),
        spell(r.window.secs),
        at(r.window.since),
        r.verdict
    );
    let rows: Vec<Vec<String>> = r.sources.iter().map(source_cells).collect();
    out.push_str(&table(&SOURCE_HEADER, &rows));
    let drills: Vec<Vec<String>> = r
        .plans
        .iter()
        .flat_map(|p| p.drills.iter().map(move |d| drill_cells(p, d)))
        .collect();
    if !r.plans.is_empty() {
        out.push('\n');
        if drills.is_empty() {
            out.push_str("DR plans: no drill in the window\n");
        } else {
            out.push_str(&table(&DRILL_HEADER, &drills));
        }
    }
    if !r.breaches.is_empty() {
        out.push_str("\nBreaches:\n");
        for b in &r.breaches {
            out.push_str(&format!("  {}: {}\n", b.subject, b.what));
        }
    }
    let notes = notes(r);
    if !notes.is_empty() {
        out.push_str("\nTo look at:\n");
        for n in notes {
            out.push_str(&format!("  {n}\n"));
        }
    }
    out
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn md_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n", header.join(" | "));
    out.push_str(&format!(
        "|{}\n",
        header.iter().map(|_| " --- |").collect::<String>()
    ));
    for r in rows {
        out.push_str(&format!(
            "| {} |\n",
            r.iter()
                .map(|c| md_escape(c))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    out
}

/// Markdown, for a ticket or a wiki page.
pub fn render_markdown(r: &Report) -> String {
    let mut out = format!(
        "# lifeboat report: {}\n\nAt {}, window {} (since {}).\n\n",
        r.verdict,
        at(r.generated_at),
        spell(r.window.secs),
        at(r.window.since)
    );
    if r.breaches.is_empty() {
        out.push_str("No target is breached.\n\n");
    } else {
        out.push_str("## Breaches\n\n");
        for b in &r.breaches {
            out.push_str(&format!(
                "- **{}**: {}\n",
                md_escape(&b.subject),
                md_escape(&b.what)
            ));
        }
        out.push('\n');
    }
    out.push_str("## Sources\n\n");
    let rows: Vec<Vec<String>> = r.sources.iter().map(source_cells).collect();
    out.push_str(&md_table(&SOURCE_HEADER, &rows));
    for s in &r.sources {
        out.push_str(&format!("\n### {} ({})\n\n", md_escape(&s.name), s.verdict));
        if let Some(c) = &s.last_check {
            out.push_str(&format!(
                "- last verification: {} of {} in {}: {}\n",
                at(c.at),
                c.backup_id,
                c.repository,
                if c.ok {
                    "ok".to_string()
                } else {
                    format!("FAILED: {}", md_escape(&c.problems.join("; ")))
                }
            ));
        } else {
            out.push_str("- last verification: none\n");
        }
        match &s.last_trial {
            Some(t) => {
                let counts = t
                    .counts
                    .iter()
                    .map(|(k, v)| {
                        let show = |x: Option<u64>| x.map_or("missing".into(), |x| x.to_string());
                        format!("{k} {}/{}", show(v.actual), show(v.expected))
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                out.push_str(&format!(
                    "- last trial restore: {} of {} from {} in {:.1}s: {} (counts restored/expected: {})\n",
                    at(t.at),
                    t.backup_id,
                    t.repository,
                    t.duration_secs,
                    if t.ok {
                        "ok".to_string()
                    } else {
                        format!("FAILED: {}", md_escape(&t.problems.join("; ")))
                    },
                    if counts.is_empty() { "none".into() } else { counts }
                ));
            }
            None => out.push_str("- last trial restore: none\n"),
        }
        out.push_str(&format!(
            "- retention: reaches back {} (keep-within {}): {}\n",
            s.coverage
                .reach_secs
                .map(spell)
                .unwrap_or_else(|| "nothing".into()),
            s.coverage
                .target_secs
                .map(spell)
                .unwrap_or_else(|| "not set".into()),
            s.coverage.verdict
        ));
        let dests = s
            .destinations
            .iter()
            .map(|d| format!("{} {} ({} backups)", d.repository, d.state, d.backups))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!("- destinations: {dests}\n"));
        for b in &s.breaches {
            out.push_str(&format!("- **breach**: {}\n", md_escape(b)));
        }
        for f in &s.flags {
            out.push_str(&format!("- to look at: {}\n", md_escape(f)));
        }
    }
    if !r.plans.is_empty() {
        out.push_str("\n## DR plans\n\n");
        let drills: Vec<Vec<String>> = r
            .plans
            .iter()
            .flat_map(|p| p.drills.iter().map(move |d| drill_cells(p, d)))
            .collect();
        if drills.is_empty() {
            out.push_str("No drill in the window.\n");
        } else {
            out.push_str(&md_table(&DRILL_HEADER, &drills));
        }
        for p in &r.plans {
            for f in &p.flags {
                out.push_str(&format!("\n- {}: {}", md_escape(&p.name), md_escape(f)));
            }
        }
        out.push('\n');
    }
    out
}
