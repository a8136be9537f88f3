//! The HTML rendering in a real browser: headless Chromium loads the page from a file,
//! and the tests read the DOM it built, its console and a screenshot.

use super::{GRAPH_BREACH, PG_GAP_BREACH, PG_TRIAL_BREACH, PLAN_BREACH, report};
use crate::chromium::run_chromium;
use lifeboat::report::html;
use lifeboat::report::model::Report;
use rstest::rstest;
use std::fs;
use std::path::{Path, PathBuf};

/// Writes the page into a fresh directory (tests run in parallel) and returns both.
fn write_page(html: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    fs::write(&page, html).unwrap();
    (dir, page)
}

/// The DOM Chromium built from `report`'s page, with its console checked.
fn rendered_dom(report: &Report) -> String {
    let (_dir, page) = write_page(&html::render(report));
    let run = run_chromium(&page, &["--enable-logging=stderr", "--v=0", "--dump-dom"]);
    eprintln!("chromium loaded and dumped the page in {:.2?}", run.took);
    assert_eq!(run.console(), Vec::<&str>::new(), "console output");
    assert!(
        run.stdout.trim_end().ends_with("</html>"),
        "no whole DOM dumped: {}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    run.stdout
}

#[rstest]
fn the_browser_shows_every_source_plan_verdict_breach_and_chart(report: Report) {
    let dom = rendered_dom(&report);
    assert!(
        dom.contains(r#"id="verdict" class="verdict fail" data-verdict="FAIL">FAIL<"#),
        "{dom}"
    );
    for s in &report.sources {
        let hook = format!(r#"id="source-{}" data-verdict="{}""#, s.name, s.verdict);
        assert!(dom.contains(&hook), "no {hook}");
        assert!(dom.contains(&format!("<h2>{} <span class=\"kind\">", s.name)));
        // A source's breaches are also listed in its own section.
        for b in &s.breaches {
            assert!(
                dom.contains(&format!("<li>{b}</li>")),
                "breach missing: {b}"
            );
        }
    }
    for p in &report.plans {
        let hook = format!(r#"id="plan-{}" data-verdict="{}""#, p.name, p.verdict);
        assert!(dom.contains(&hook), "no {hook}");
    }
    // Every breach is listed at the top with its subject.
    for b in &report.breaches {
        let item = format!("<li><strong>{}</strong>: {}</li>", b.subject, b.what);
        assert!(dom.contains(&item), "breach missing: {item}");
    }
    for what in [GRAPH_BREACH, PG_GAP_BREACH, PG_TRIAL_BREACH, PLAN_BREACH] {
        assert!(dom.contains(what), "breach missing: {what}");
    }
    assert_eq!(
        dom.matches(r#"<svg class="chart timeline""#).count(),
        report.sources.len()
    );
    // One Gantt chart: region-failover's newest drill; node0-sqlite has no drill.
    assert_eq!(dom.matches(r#"<svg class="chart gantt""#).count(), 1);
    // The source without a backup is red and says so.
    assert!(dom.contains(r#"<section class="source fail" id="source-graph""#));
    assert!(dom.contains("No backup: nothing of this source can be restored."));
}

#[rstest]
fn a_hostile_source_name_stays_text_in_the_browser(mut report: Report) {
    let evil = "<script>alert(1)</script>";
    report.sources[1].name = evil.into();
    report.sources[1].flags.push(format!("flag {evil}"));
    let dom = rendered_dom(&report);
    assert!(!dom.contains("<script"), "markup injected: {dom}");
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[test]
fn the_console_check_catches_a_page_error() {
    // Without this, a Chromium that logged nothing would let any page pass.
    let (_dir, page) = write_page(
        "<!DOCTYPE html><html><body><p>x</p><script>console.error('spoilt'); \
         missing();</script></body></html>",
    );
    let run = run_chromium(&page, &["--enable-logging=stderr", "--v=0", "--dump-dom"]);
    let console = run.console();
    assert!(
        console.iter().any(|l| l.contains("spoilt")),
        "{console:#?}\n{}",
        run.stderr
    );
    assert!(
        console.iter().any(|l| l.contains("Uncaught")),
        "{console:#?}"
    );
}

#[rstest]
fn the_page_makes_a_full_screenshot(report: Report) {
    // Kept beside the test binaries for a person to look at.
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let page = keep.join("report.html");
    let png = keep.join("report.png");
    fs::write(&page, html::render(&report)).unwrap();
    let _ = fs::remove_file(&png);
    let run = run_chromium(
        &page,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,2000",
            "--hide-scrollbars",
        ],
    );
    eprintln!(
        "chromium took the screenshot in {:.2?}: {}",
        run.took,
        png.display()
    );
    let bytes = fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {}: {e}\nstderr:\n{}",
            png.display(),
            run.stderr
        )
    });
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // The IHDR chunk follows the signature: width and height, big-endian.
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 2000));
    // A blank page compresses to a few kilobytes; this one has text and charts.
    assert!(bytes.len() > 50_000, "{} bytes", bytes.len());
}
