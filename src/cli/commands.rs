//! One function per command: call the library, print the report, return the exit code.

use super::{Global, clock};
use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use indicatif::HumanBytes;
use lifeboat::backup::restore::RestoreOptions;
use lifeboat::backup::run::{self, BackupOptions};
use lifeboat::backup::verify::VerifySelection;
use lifeboat::backup::{Context, list, prune, reconcile, restore, verify};
use lifeboat::catalog::CatalogBackup;
use lifeboat::policy::{PolicySet, units::format_duration};
use lifeboat::{Error, ErrorKind};
use serde_json::json;
use std::path::{Path, PathBuf};

pub fn print_json(v: &impl serde::Serialize) {
    emit(&(serde_json::to_string_pretty(v).expect("reports serialise") + "\n"));
}

/// Write `text` to stdout. A reader that went away (`lifeboat report | head`) ends the
/// output quietly instead of a panic, and the exit code still says what the command
/// found; any other write error is said on stderr.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => eprintln!("lifeboat: writing to stdout: {e}"),
    }
}

fn t(ts: DateTime<Utc>) -> String {
    ts.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// Parse `--before`: RFC 3339, or a date (midnight UTC at its end is not assumed:
/// `2026-11-22` means 2026-11-22T00:00:00Z).
pub fn parse_time(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    anyhow::bail!("not a time: write RFC 3339 (2026-11-22T09:30:00Z) or a date (2026-11-22)")
}

pub fn policy_check(g: &Global, path: &Path) -> anyhow::Result<i32> {
    let now = clock().now();
    // DR plans are checked against the set they belong to, so only a valid set's plans.
    let loaded = PolicySet::load(path).and_then(|set| {
        let plans = lifeboat::dr::plan::load_plans(&set)?;
        Ok((set, plans))
    });
    match loaded {
        Ok((set, plans)) => {
            let sources: Vec<_> = set
                .sources
                .values()
                .map(|s| {
                    let next: Vec<String> = s
                        .schedule
                        .as_ref()
                        .map(|sch| sch.upcoming(now, 3).into_iter().map(t).collect())
                        .unwrap_or_default();
                    (s, next)
                })
                .collect();
            if g.json {
                print_json(&json!({
                    "valid": true,
                    "policies": set.root,
                    "repositories": set.repositories.values().map(|r| json!({"name": r.name, "url": r.backend.to_string()})).collect::<Vec<_>>(),
                    "sources": sources.iter().map(|(s, next)| json!({
                        "name": s.name,
                        "kind": s.config.kind(),
                        "schedule": s.schedule.as_ref().map(|x| x.text()),
                        "timezone": s.schedule.as_ref().and_then(|x| x.timezone()).map(|z| z.to_string()),
                        "rpo": s.rpo.map(format_duration),
                        "destinations": s.destinations,
                        "next-runs": next,
                    })).collect::<Vec<_>>(),
                    "dr-plans": plans.iter().map(|p| json!({
                        "name": p.name,
                        "file": p.file,
                        "steps": p.steps.len(),
                        "rto": format_duration(chrono::Duration::seconds(p.rto_secs)),
                        "rpo": format_duration(chrono::Duration::seconds(p.rpo_secs)),
                    })).collect::<Vec<_>>(),
                }));
            } else {
                println!(
                    "policy set {}: valid ({} sources, {} repositories)",
                    set.root.display(),
                    set.sources.len(),
                    set.repositories.len()
                );
                for (s, next) in &sources {
                    let when = match &s.schedule {
                        Some(sch) => {
                            let tz = sch
                                .timezone()
                                .map(|z| format!(" in {z}"))
                                .unwrap_or_default();
                            format!("schedule \"{}\"{tz}, next: {}", sch.text(), next.join(", "))
                        }
                        None => "no schedule (on demand only)".into(),
                    };
                    println!(
                        "  {} ({}) -> {}: {}{}",
                        s.name,
                        s.config.kind(),
                        s.destinations.join(", "),
                        when,
                        s.rpo
                            .map(|r| format!(", rpo {}", format_duration(r)))
                            .unwrap_or_default()
                            + &s.verify
                                .as_ref()
                                .map(|v| {
                                    format!(
                                        ", verify {}{}",
                                        v.schedule
                                            .as_ref()
                                            .map(|sch| format!("\"{}\"", sch.text()))
                                            .unwrap_or_else(|| "on demand".into()),
                                        if v.restore_test {
                                            " with trial restore"
                                        } else {
                                            ""
                                        }
                                    )
                                })
                                .unwrap_or_default()
                    );
                }
                for p in &plans {
                    println!(
                        "  dr plan {}: {} steps, rto {}, rpo {}",
                        p.name,
                        p.steps.len(),
                        format_duration(chrono::Duration::seconds(p.rto_secs)),
                        format_duration(chrono::Duration::seconds(p.rpo_secs))
                    );
                }
            }
            Ok(0)
        }
        Err(e) if e.kind() == ErrorKind::BadInput => {
            if g.json {
                print_json(
                    &json!({"valid": false, "errors": e.message().lines().collect::<Vec<_>>()}),
                );
            } else {
                eprintln!("{e}");
            }
            Ok(ErrorKind::BadInput.exit_code())
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn backup(
    g: &Global,
    ctx: &Context,
    sources: Vec<String>,
    all: bool,
    dry_run: bool,
) -> anyhow::Result<i32> {
    let names: Vec<String> = if all {
        ctx.policies.sources.keys().cloned().collect()
    } else if sources.is_empty() {
        return Err(Error::bad_input(format!(
            "name the sources to back up, or --all (sources: {})",
            ctx.policies
                .sources
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into());
    } else {
        sources
    };
    let mut reports = Vec::new();
    let mut worst: Option<ErrorKind> = None;
    let mut errors = Vec::new();
    for name in &names {
        let source = ctx.policies.source(name)?;
        match run::backup(
            ctx,
            source,
            &BackupOptions {
                dry_run,
                ..BackupOptions::default()
            },
        )
        .await
        {
            Ok(r) => {
                if let Some(e) = run::report_error(&r) {
                    worst = worse(worst, e.kind());
                    errors.push(e.to_string());
                }
                if !g.json {
                    print_backup(&r);
                }
                reports.push(r);
            }
            Err(e) => {
                worst = worse(worst, e.kind());
                eprintln!("lifeboat: backup {name} failed: {e}");
                errors.push(format!("{name}: {e}"));
            }
        }
    }
    if g.json {
        print_json(&json!({"backups": reports, "errors": errors}));
    }
    Ok(worst.map_or(0, ErrorKind::exit_code))
}

fn worse(a: Option<ErrorKind>, b: ErrorKind) -> Option<ErrorKind> {
    // A total failure outranks a partial one.
    match a {
        Some(ErrorKind::RunFailed) => a,
        _ if b == ErrorKind::Partial && a.is_some() => a,
        _ => Some(b),
    }
}

fn print_backup(r: &run::BackupReport) {
    if r.dry_run {
        println!("dry run: would back up {} as {}", r.source, r.backup_id);
        for d in &r.destinations {
            println!("  -> {} : {}", d.repository, d.data_key);
        }
        return;
    }
    if let Some(skipped) = &r.skipped {
        println!("{}: skipped: {skipped}", r.source);
        return;
    }
    let secs = (r.finished_at - r.started_at).num_milliseconds() as f64 / 1000.0;
    println!(
        "{} {}: {} raw in {:.1}s, consistent at {}",
        r.source,
        r.backup_id,
        HumanBytes(r.raw_size),
        secs,
        r.consistency_point.map(t).unwrap_or_default()
    );
    for d in &r.destinations {
        if d.committed {
            println!(
                "  {}: committed, {} stored in {} chunk(s)",
                d.repository,
                HumanBytes(d.stored_size),
                d.chunks
            );
        } else {
            println!(
                "  {}: FAILED: {}",
                d.repository,
                d.error.as_deref().unwrap_or("unknown")
            );
        }
    }
    let counts: Vec<String> = r.counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("  counts: {}", counts.join(" "));
    for a in &r.anomalies {
        println!("  ANOMALY (committed, flagged): {a}");
    }
}

fn verify_state(b: &CatalogBackup) -> String {
    match &b.last_verify {
        Some(v) if v.ok => format!("ok {}", t(v.verified_at)),
        Some(v) => format!("FAILED {}", t(v.verified_at)),
        None => "-".into(),
    }
}

pub async fn list(g: &Global, ctx: &Context, source: Option<String>) -> anyhow::Result<i32> {
    let listing = list::list(ctx, source.as_deref()).await?;
    let backups = &listing.backups;
    // A corrupt backup is a finding, as for verify: the listing says so in its exit code.
    let code = if listing.corrupt.is_empty() {
        0
    } else {
        eprintln!(
            "lifeboat: {} backup(s) with a manifest that cannot be trusted (CORRUPT): never restored nor counted by retention; see `lifeboat verify --all`",
            listing.corrupt.len()
        );
        ErrorKind::Integrity.exit_code()
    };
    if g.json {
        let mut rows: Vec<_> = backups
            .iter()
            .map(|b| {
                let m = &b.manifest;
                json!({
                    "source": m.source,
                    "backup-id": m.backup_id,
                    "repository": m.repository,
                    "kind": m.kind,
                    "started-at": m.started_at,
                    "consistency-point": m.consistency_point,
                    "raw-size": m.raw.size,
                    "stored-size": m.stored.size,
                    "stored-sha256": m.stored.sha256,
                    "counts": m.counts,
                    "engine": m.engine,
                    "keep-until": m.keep_until,
                    "anomalies": m.anomalies,
                    "verified": b.verified(),
                    "last-verification": b.last_verify,
                })
            })
            .collect();
        rows.extend(listing.corrupt.iter().map(|c| {
            json!({
                "source": c.source,
                "backup-id": c.backup_id,
                "repository": c.repository,
                "corrupt": true,
                "problem": c.problem,
                "verified": false,
            })
        }));
        print_json(&rows);
        return Ok(code);
    }
    if backups.is_empty() && listing.corrupt.is_empty() {
        println!("no committed backups");
        return Ok(0);
    }
    println!(
        "{:<12} {:<22} {:<12} {:<21} {:>10} {:>10}  {:<24} KEEP-UNTIL",
        "SOURCE", "BACKUP", "REPOSITORY", "CONSISTENT AT", "RAW", "STORED", "VERIFIED"
    );
    for b in backups {
        let m = &b.manifest;
        println!(
            "{:<12} {:<22} {:<12} {:<21} {:>10} {:>10}  {:<24} {}",
            m.source,
            m.backup_id,
            m.repository,
            t(m.consistency_point),
            HumanBytes(m.raw.size).to_string(),
            HumanBytes(m.stored.size).to_string(),
            verify_state(b),
            t(m.keep_until)
        );
    }
    for c in &listing.corrupt {
        println!(
            "{:<12} {:<22} {:<12} CORRUPT: {}",
            c.source, c.backup_id, c.repository, c.problem
        );
    }
    Ok(code)
}

pub async fn verify(g: &Global, ctx: &Context, sel: VerifySelection) -> anyhow::Result<i32> {
    let results = verify::verify(ctx, &sel).await?;
    let failed = results.iter().filter(|r| !r.ok).count();
    if g.json {
        print_json(&results);
    } else {
        if results.is_empty() {
            println!("nothing to verify: no committed backups");
        }
        for r in &results {
            if r.ok {
                println!(
                    "OK      {}/{} in {} ({}): sha256 {}",
                    r.source, r.backup_id, r.repository, r.mode, r.expected_sha256
                );
            } else {
                println!("FAILED  {}/{} in {}:", r.source, r.backup_id, r.repository);
                for p in &r.problems {
                    println!("  {p}");
                }
            }
        }
    }
    if failed > 0 {
        eprintln!(
            "lifeboat: {failed} of {} verification(s) failed",
            results.len()
        );
        return Ok(ErrorKind::Integrity.exit_code());
    }
    Ok(0)
}

/// `verify --restore`: the newest backup of each source read back on every
/// destination, then restored into a scratch target and recounted.
pub async fn verify_restore(
    g: &Global,
    ctx: &Context,
    sel: VerifySelection,
) -> anyhow::Result<i32> {
    use lifeboat::backup::trial;
    let results = verify::verify(ctx, &sel).await?;
    let sources: Vec<String> = match &sel.source {
        Some(s) => vec![s.clone()],
        None => ctx.policies.sources.keys().cloned().collect(),
    };
    let mut trials = Vec::new();
    let mut skipped = Vec::new();
    for s in &sources {
        let src = ctx.policies.source(s)?;
        if let Some(why) = trial::unsupported(src) {
            if sel.source.is_some() {
                return Err(Error::bad_input(format!("source {s}: {why}")).into());
            }
            skipped.push(serde_json::json!({"source": s, "why": why}));
            continue;
        }
        if !ctx
            .catalog
            .backups(Some(s), None)?
            .iter()
            .any(|b| src.destinations.contains(&b.manifest.repository))
        {
            skipped.push(serde_json::json!({"source": s, "why": "no committed backup"}));
            continue;
        }
        trials.push(trial::restore_test(ctx, s).await?);
    }
    let failed = results.iter().filter(|r| !r.ok).count() + trials.iter().filter(|t| !t.ok).count();
    if g.json {
        print_json(&serde_json::json!({
            "verifications": results,
            "restore-tests": trials,
            "skipped": skipped,
        }));
    } else {
        for r in &results {
            if r.ok {
                println!(
                    "OK      {}/{} in {}: read back, sha256 {}",
                    r.source, r.backup_id, r.repository, r.expected_sha256
                );
            } else {
                println!("FAILED  {}/{} in {}:", r.source, r.backup_id, r.repository);
                for p in &r.problems {
                    println!("  {p}");
                }
            }
        }
        for t in &trials {
            if t.ok {
                println!(
                    "OK      {}/{} from {}: restored into {} in {:.1}s, {} counts match",
                    t.source,
                    t.backup_id,
                    t.repository,
                    t.target,
                    t.duration_secs,
                    t.counts.len()
                );
            } else {
                println!(
                    "FAILED  {}/{} trial restore from {}:",
                    t.source, t.backup_id, t.repository
                );
                for p in &t.problems {
                    println!("  {p}");
                }
            }
        }
        for s in &skipped {
            println!(
                "SKIPPED {}: {}",
                s["source"].as_str().unwrap_or(""),
                s["why"].as_str().unwrap_or("")
            );
        }
    }
    if failed > 0 {
        eprintln!("lifeboat: {failed} verification(s) or trial restore(s) failed");
        return Ok(ErrorKind::Integrity.exit_code());
    }
    Ok(0)
}

pub async fn restore(g: &Global, ctx: &Context, opts: RestoreOptions) -> anyhow::Result<i32> {
    let r = restore::restore(ctx, &opts).await?;
    if g.json {
        print_json(&r);
    } else {
        for f in &r.fallbacks {
            println!("fell back past {f}");
        }
        println!(
            "{} {} from {} (consistent at {}) -> {}",
            r.source,
            r.backup_id,
            r.repository,
            t(r.consistency_point),
            r.target
        );
        print!("{}", r.counts);
        if r.swapped && r.counts.ok() {
            println!("restored: counts match; {} replaced", r.target);
        }
    }
    if let Some(e) = &r.after_swap_error {
        eprintln!(
            "lifeboat: {} restored into {}, but the step after it failed: {e}",
            r.backup_id, r.target
        );
        return Ok(ErrorKind::RunFailed.exit_code());
    }
    if r.swapped && !r.counts.ok() {
        // An engine that loads in place (Neo4j) has no staging copy to refuse.
        eprintln!(
            "lifeboat: {}/{} was loaded into {} in place, but its counts differ from the manifest ({}); inspect the target, or restore another backup",
            r.source,
            r.backup_id,
            r.target,
            r.counts.mismatches().join("; ")
        );
        return Ok(ErrorKind::Integrity.exit_code());
    }
    if !r.swapped {
        eprintln!(
            "lifeboat: restore of {}/{} refused: counts differ from the manifest ({}); {} left untouched",
            r.source,
            r.backup_id,
            r.counts.mismatches().join("; "),
            r.target
        );
        return Ok(ErrorKind::Integrity.exit_code());
    }
    Ok(0)
}

/// Prune under the lease of every source it prunes, as a scheduled run does: two
/// prunes (or a prune and a backup) of one source at once, each from its own catalog,
/// could otherwise each delete what the other counts on. A dry run deletes nothing
/// and takes no lease.
async fn prune_leased(
    ctx: &Context,
    sources: &[String],
    dry_run: bool,
) -> anyhow::Result<prune::PrunePlan> {
    use lifeboat::scheduler::lease;
    if dry_run {
        return Ok(prune::prune(ctx, sources, dry_run).await?);
    }
    let names: Vec<String> = if sources.is_empty() {
        ctx.policies.sources.keys().cloned().collect()
    } else {
        sources.to_vec()
    };
    let holder = lease::holder_id();
    let ttl = ctx.policies.scheduler.lease_ttl;
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut held = Vec::new();
    let mut failure = None;
    for name in &names {
        let src = ctx.policies.source(name)?;
        match lease::acquire_for_source(ctx, src, &holder, ttl).await {
            Ok(l) => held.push(l.hold(ctx.clock.clone(), lost.clone())),
            Err(e) => {
                failure = Some(e.context("prune takes the lease of every source it prunes"));
                break;
            }
        }
    }
    let result = match failure {
        Some(e) => Err(e),
        None => prune::prune(ctx, sources, dry_run).await,
    };
    for h in held {
        h.release(ctx.clock.now()).await;
    }
    Ok(result?)
}

pub async fn prune(
    g: &Global,
    ctx: &Context,
    sources: Vec<String>,
    dry_run: bool,
) -> anyhow::Result<i32> {
    let plan = prune_leased(ctx, &sources, dry_run).await?;
    if g.json {
        print_json(&plan);
        return Ok(0);
    }
    for i in &plan.items {
        println!(
            "{:<6} {:<12} {:<12} {}  {}",
            if i.keep { "keep" } else { "DELETE" },
            i.source,
            i.repository,
            i.backup_id,
            i.reasons.join("; ")
        );
    }
    let to_delete = plan.items.iter().filter(|i| !i.keep).count();
    if dry_run {
        println!("dry run: {to_delete} to delete, nothing deleted");
    } else {
        println!(
            "deleted {} backup(s), {} leftover(s) of unfinished uploads",
            plan.deleted, plan.incomplete_uploads_removed
        );
        for e in &plan.external_deleted {
            println!("deleted {e}");
        }
    }
    Ok(0)
}

pub async fn catalog_rebuild(g: &Global, ctx: &Context) -> anyhow::Result<i32> {
    let r = reconcile::rebuild(ctx).await?;
    if g.json {
        print_json(&r);
    } else {
        println!(
            "catalog {} rebuilt: {} backup(s), {} verification result(s)",
            ctx.catalog.path().display(),
            r.added,
            r.verifications
        );
        for i in &r.invalid {
            println!("  CORRUPT (not restorable, not counted): {i}");
        }
        for u in &r.unreachable {
            println!("  unreachable: {u}");
        }
    }
    Ok(if !r.invalid.is_empty() {
        // A manifest that cannot be trusted is a corrupt backup: an integrity finding.
        ErrorKind::Integrity.exit_code()
    } else if r.unreachable.is_empty() {
        0
    } else {
        ErrorKind::Partial.exit_code()
    })
}

pub async fn quickstart(g: &Global, dir: Option<PathBuf>) -> anyhow::Result<i32> {
    let r = lifeboat::quickstart::quickstart(dir, clock(), g.progress()).await?;
    if g.json {
        print_json(&r);
        return Ok(0);
    }
    println!("lifeboat quickstart on the embedded default\n");
    for b in &r.backups {
        print_backup(b);
    }
    println!();
    for v in &r.verified {
        println!(
            "verified {}/{} in {}: full read-back matched",
            v.source, v.backup_id, v.repository
        );
    }
    println!(
        "\nrestored {} into {}:",
        r.restore.backup_id,
        r.restored.display()
    );
    print!("{}", r.restore.counts);
    println!("\nprune plan:");
    for i in &r.prune.items {
        println!(
            "  {:<6} {}  {}",
            if i.keep { "keep" } else { "DELETE" },
            i.backup_id,
            i.reasons.join("; ")
        );
    }
    let p = r.policies.display();
    println!("\nwhere everything is:");
    println!("  policy set   {p}/lifeboat.toml");
    println!("  database     {}", r.database.display());
    println!("  repository   {}", r.repository.display());
    println!("  catalog      {}", r.catalog.display());
    println!("  restored     {}", r.restored.display());
    println!("\nnext: lifeboat --policies {p} list   (or: export LIFEBOAT_POLICIES={p})");
    Ok(0)
}

pub async fn doctor(g: &Global, ctx: &Context) -> anyhow::Result<i32> {
    let report = lifeboat::doctor::doctor(ctx).await;
    if g.json {
        print_json(&report);
    } else {
        for s in &report.subjects {
            println!("{}", s.name);
            for c in &s.checks {
                let status = match c.status {
                    lifeboat::storage::CheckStatus::Ok => "ok",
                    lifeboat::storage::CheckStatus::Warn => "WARN",
                    lifeboat::storage::CheckStatus::Fail => "FAIL",
                };
                println!("  {status:<4} {:<18} {}", c.name, c.detail);
            }
        }
    }
    Ok(if report.failed() {
        ErrorKind::RunFailed.exit_code()
    } else {
        0
    })
}

pub async fn compare(
    g: &Global,
    ctx: &Context,
    source: &str,
    target: &str,
    backup: Option<&str>,
) -> anyhow::Result<i32> {
    let r = lifeboat::backup::compare::compare(ctx, source, target, backup).await?;
    if g.json {
        print_json(&r);
    } else {
        println!("{} {} against {}:", r.source, r.backup_id, r.target);
        print!("{}", r.counts);
    }
    if r.counts.ok() {
        Ok(0)
    } else {
        eprintln!(
            "lifeboat: {} differs from backup {}: {}",
            r.target,
            r.backup_id,
            r.counts.mismatches().join("; ")
        );
        Ok(ErrorKind::Integrity.exit_code())
    }
}

/// Each source's newest committed backup (on any repository) whose time is believed,
/// from the catalog, and how many of its backups have a time that is not.
fn newest_backups(
    ctx: &Context,
) -> anyhow::Result<(
    std::collections::BTreeMap<String, lifeboat::catalog::manifest::Manifest>,
    std::collections::BTreeMap<String, u64>,
)> {
    use lifeboat::backup::dating;
    let now = ctx.clock.now();
    let mut newest = std::collections::BTreeMap::new();
    let mut doubtful = std::collections::BTreeMap::new();
    for name in ctx.policies.sources.keys() {
        let backups = ctx.catalog.backups(Some(name), None)?;
        let doubts = dating::doubtful(&backups, now);
        for (b, why) in &doubts {
            tracing::warn!(source = %name, repository = %b.manifest.repository, backup = %b.manifest.backup_id, doubt = %why, "backup time not believed: not counted for catch-up or the RPO");
        }
        doubtful.insert(name.clone(), doubts.len() as u64);
        if let Some(b) = dating::newest_believed(backups, now) {
            newest.insert(name.clone(), b.manifest);
        }
    }
    Ok((newest, doubtful))
}

/// What the metrics know of each scheduled source.
fn metric_sources(set: &PolicySet, now: DateTime<Utc>) -> Vec<lifeboat::metrics::SourceInfo> {
    set.sources
        .values()
        .map(|s| lifeboat::metrics::SourceInfo {
            name: s.name.clone(),
            kind: s.config.kind().to_string(),
            interval_seconds: s.schedule.as_ref().and_then(|sch| {
                let a = sch.next_after(now)?;
                let b = sch.next_after(a)?;
                Some((b - a).num_milliseconds() as f64 / 1000.0)
            }),
            rpo_seconds: s.rpo.map(|r| r.num_milliseconds() as f64 / 1000.0),
        })
        .collect()
}

pub async fn schedule(
    g: &Global,
    once: bool,
    max_concurrent: Option<usize>,
    metrics_addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<i32> {
    use lifeboat::scheduler::{self, Control, Daemon, RunResult, job::BackupJob, lease};
    let path = g.policies_path()?;
    let ctx = std::sync::Arc::new(g.context().await?);
    if let Some(0) = max_concurrent {
        return Err(Error::bad_input("--max-concurrent 0: give at least 1").into());
    }
    // Catch-up decisions need the repositories' view, not only this host's catalog.
    let names: Vec<String> = ctx.policies.sources.keys().cloned().collect();
    let rec = reconcile::reconcile_sources(&ctx, &names).await?;
    for u in &rec.unreachable {
        tracing::warn!(repository = %u, "unreachable at start: its backups are not counted for catch-up");
    }
    let (newest_backups, doubtful) = newest_backups(&ctx)?;
    let mut newest: std::collections::BTreeMap<String, DateTime<Utc>> = newest_backups
        .iter()
        .map(|(n, m)| (n.clone(), m.started_at))
        .collect();
    // A verification task is behind when its schedule passed since the last check.
    for s in ctx.policies.sources.values().filter(|s| s.verify.is_some()) {
        let checked = ctx
            .catalog
            .verifications(&s.name)?
            .first()
            .map(|v| v.verified_at);
        let tried = ctx
            .catalog
            .restore_tests(&s.name)?
            .first()
            .map(|t| t.tested_at);
        if let Some(last) = checked.max(tried) {
            newest.insert(scheduler::verify_task(&s.name), last);
        }
    }
    let plans = scheduler::plans(&ctx.policies);
    if plans.is_empty() {
        return Err(Error::bad_input(format!(
            "no source of {} has a schedule: add schedule = \"0 3 * * *\" (crontab) to the sources to run",
            path.display()
        ))
        .into());
    }
    let daemon = Daemon {
        clock: ctx.clock.clone(),
        max_concurrent: max_concurrent.unwrap_or(ctx.policies.scheduler.max_concurrent),
        grace: ctx
            .policies
            .scheduler
            .grace_period
            .to_std()
            .unwrap_or_default(),
    };
    let metrics = lifeboat::metrics::Metrics::new();
    metrics.set_sources(&metric_sources(&ctx.policies, ctx.clock.now()));
    for s in ctx.policies.sources.values() {
        if let Some(v) = ctx.catalog.last_verification(&s.name)? {
            metrics.set_last_verification(&s.name, v.verified_at, v.ok);
        }
        if let Some(t) = ctx.catalog.restore_tests(&s.name)?.first() {
            metrics.set_last_restore_test(&s.name, t.tested_at, t.ok, t.duration_secs);
        }
    }
    for (name, n) in &doubtful {
        metrics.set_doubtful(name, *n);
    }
    for (name, m) in &newest_backups {
        metrics.set_last_success(name, m.started_at, m.raw.size);
        metrics.set_anomaly(name, !m.anomalies.is_empty());
    }
    let job = std::sync::Arc::new(
        BackupJob::new(ctx.clone(), lease::holder_id()).with_metrics(metrics.clone()),
    );
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_server = match metrics_addr {
        Some(addr) => {
            let clock = ctx.clock.clone();
            let (bound, handle) = lifeboat::metrics::serve(
                addr,
                metrics.clone(),
                std::sync::Arc::new(move || clock.now()),
                async move {
                    let _ = metrics_stopped.await;
                },
            )
            .await?;
            tracing::info!(addr = %bound, "serving metrics on /metrics");
            Some(handle)
        }
        None => None,
    };
    if once {
        let outcomes = daemon.run_once(job, &plans, &newest).await;
        if g.json {
            print_json(&outcomes);
        } else if outcomes.is_empty() {
            println!("nothing due");
        } else {
            for o in &outcomes {
                println!(
                    "{:<10} {:<16} {} {}",
                    o.result.as_str(),
                    o.source,
                    o.backup_id.as_deref().unwrap_or("-"),
                    o.detail
                );
            }
        }
        let worst = outcomes
            .iter()
            .filter_map(|o| match o.result {
                RunResult::Success | RunResult::Skipped => None,
                RunResult::Partial => Some(ErrorKind::Partial),
                RunResult::Locked => Some(ErrorKind::Locked),
                RunResult::Failed | RunResult::Cancelled => Some(ErrorKind::RunFailed),
            })
            .fold(None, worse);
        return Ok(worst.map_or(0, |k| k.exit_code()));
    }

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let signals = {
        let job = job.clone();
        let metrics = metrics.clone();
        let g_policies = path.clone();
        let reload_ctx = ReloadContext::of(g);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::hangup()),
            ) else {
                tracing::error!("cannot install signal handlers");
                return;
            };
            loop {
                tokio::select! {
                    _ = term.recv() => { let _ = tx.send(Control::Shutdown).await; return; }
                    _ = int.recv() => { let _ = tx.send(Control::Shutdown).await; return; }
                    _ = hup.recv() => {
                        match reload_ctx.load(&g_policies).await {
                            Ok(ctx) => {
                                let plans = scheduler::plans(&ctx.policies);
                                metrics.set_sources(&metric_sources(&ctx.policies, ctx.clock.now()));
                                job.replace(std::sync::Arc::new(ctx));
                                let _ = tx.send(Control::Reload(plans)).await;
                            }
                            Err(e) => tracing::error!(error = %format!("{e:#}"), "reload refused: keeping the previous policy set"),
                        }
                    }
                }
            }
        })
    };
    let outcomes = daemon.run(job, plans, &newest, rx).await;
    signals.abort();
    let _ = stop_metrics.send(());
    if let Some(h) = metrics_server {
        let _ = h.await;
    }
    if g.json {
        print_json(&outcomes);
    }
    Ok(0)
}

/// What a reload needs to build a new context (the daemon's own flags).
struct ReloadContext {
    catalog: Option<std::path::PathBuf>,
    spool_dir: Option<std::path::PathBuf>,
    quiet: bool,
    json: bool,
}

impl ReloadContext {
    fn of(g: &Global) -> Self {
        ReloadContext {
            catalog: g.catalog.clone(),
            spool_dir: g.spool_dir.clone(),
            quiet: g.quiet,
            json: g.json,
        }
    }

    /// Validate the policy set at `path` and build its context.
    async fn load(&self, path: &std::path::Path) -> anyhow::Result<Context> {
        let g = Global {
            policies: Some(path.to_path_buf()),
            catalog: self.catalog.clone(),
            spool_dir: self.spool_dir.clone(),
            json: self.json,
            verbose: 0,
            quiet: self.quiet,
        };
        let set = lifeboat::policy::PolicySet::load(path)?;
        g.context_of(set).await
    }
}

/// `lifeboat report`: exit 5 when a target is breached.
pub async fn report(
    ctx: &Context,
    since: &str,
    sources: Vec<String>,
    format: super::ReportFormat,
    out: Option<&std::path::Path>,
) -> anyhow::Result<i32> {
    use lifeboat::report::{compute, text};
    let since = lifeboat::policy::units::parse_duration(since)
        .map_err(|e| Error::bad_input(format!("--since {since}: {e} (e.g. 30d, 12h)")))?;
    if since <= chrono::Duration::zero() {
        return Err(Error::bad_input("--since: give a window longer than zero (e.g. 30d)").into());
    }
    // The report reads the catalog: bring it in line with the repositories first.
    let names: Vec<String> = if sources.is_empty() {
        ctx.policies.sources.keys().cloned().collect()
    } else {
        sources.clone()
    };
    for s in &names {
        ctx.policies.source(s)?;
    }
    let rec = reconcile::reconcile_sources(ctx, &names).await?;
    for u in &rec.unreachable {
        tracing::warn!(repository = %u, "unreachable: the report shows what the catalog knows of it");
    }
    let report = compute::build(ctx, &compute::ReportOptions { since, sources })?;
    let rendered = match format {
        super::ReportFormat::Table => text::render_table(&report),
        super::ReportFormat::Markdown => text::render_markdown(&report),
        super::ReportFormat::Json => {
            serde_json::to_string_pretty(&report).expect("reports serialise") + "\n"
        }
        super::ReportFormat::Html => lifeboat::report::html::render(&report),
    };
    match out {
        Some(path) => {
            // Written whole or not at all: a cron job's half-written report would lie.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("writing {}", path.display()))?;
            std::io::Write::write_all(&mut tmp, rendered.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            tmp.persist(path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => emit(&rendered),
    }
    Ok(report.exit_code)
}
