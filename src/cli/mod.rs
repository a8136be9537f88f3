//! Command-line interface: clap definitions and printing. No decisions are made here;
//! each command calls the library and renders its report as text or JSON.

mod commands;
mod dr;
mod terraform;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use lifeboat::backup::Context;
use lifeboat::catalog::Catalog;
use lifeboat::clock::{Clock, SystemClock};
use lifeboat::engine::spool::Spool;
use lifeboat::policy::{POLICIES_ENV, PolicySet};
use lifeboat::progress::Progress;
use lifeboat::{Error, ErrorKind};
use std::path::PathBuf;
use std::sync::Arc;

/// lifeboat: backups and disaster recovery for PostgreSQL, Redis, Neo4j, FAISS and SQLite.
#[derive(Debug, Parser)]
#[command(name = "lifeboat", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Policy set: a folder of *.toml files or one file [env: LIFEBOAT_POLICIES]
    #[arg(long, global = true, value_name = "PATH")]
    pub policies: Option<PathBuf>,
    /// Catalog database [default: .lifeboat/catalog.db in the policy set's folder]
    #[arg(long, global = true, value_name = "PATH")]
    pub catalog: Option<PathBuf>,
    /// Folder for spool files [default: the system temp folder]
    #[arg(long, global = true, value_name = "DIR", env = "LIFEBOAT_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (-v debug, -vv trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// Formats of `lifeboat report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns for a terminal
    Table,
    /// Markdown, for a ticket or a wiki
    Markdown,
    /// JSON (lifeboat.report.v1, docs/report.schema.json)
    Json,
    /// One self-contained HTML file with charts
    Html,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate policy sets
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Back up sources now
    Backup {
        /// Sources to back up
        sources: Vec<String>,
        /// Every source of the policy set
        #[arg(long, conflicts_with = "sources")]
        all: bool,
        /// Show what would be done; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// List committed backups
    List {
        /// Only this source
        source: Option<String>,
    },
    /// Read backups back in full and check every hash against the manifest
    Verify {
        /// Backup ids [default: the newest backup of each source on each destination]
        ids: Vec<String>,
        /// Only this source
        #[arg(long)]
        source: Option<String>,
        /// Every backup, not only the newest
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Read back only PERCENT of the chunks (never makes a backup "verified")
        #[arg(long, value_name = "PERCENT")]
        sample: Option<f64>,
        /// Also restore the newest backup into a scratch target and compare its counts
        #[arg(long, conflicts_with_all = ["ids", "all", "sample"])]
        restore: bool,
    },
    /// Restore a backup into a target, through a staging copy
    Restore {
        /// Source to restore
        source: String,
        /// Target (for sqlite: the database file)
        #[arg(long, value_name = "TARGET")]
        to: String,
        /// This backup id
        #[arg(long, conflicts_with = "before")]
        backup: Option<String>,
        /// The newest backup at or before this time (RFC 3339, or YYYY-MM-DD in UTC)
        #[arg(long, value_name = "TIME")]
        before: Option<String>,
        /// Only backups whose last full verification matched
        #[arg(long)]
        verified: bool,
        /// Replace a non-empty target
        #[arg(long)]
        force: bool,
        /// Read from this repository only
        #[arg(long, value_name = "REPOSITORY")]
        from: Option<String>,
    },
    /// RPO/RTO verification report: exposure, gaps, verifications, trial restores, drills
    Report {
        /// Window to look at, back from now
        #[arg(long, value_name = "DURATION", default_value = "30d")]
        since: String,
        /// Only these sources (DR plans are left out)
        #[arg(long = "source", value_name = "SOURCE")]
        sources: Vec<String>,
        /// Output format (the global --json is the same as --format json)
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
        /// Write the report to this file instead of stdout
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Recount a target and compare it with a backup's manifest
    Compare {
        /// Source the target belongs to
        source: String,
        /// Target to count (for sqlite and file: the file; postgres: the database URL)
        #[arg(long, value_name = "TARGET")]
        to: String,
        /// This backup's manifest [default: the newest backup]
        #[arg(long)]
        backup: Option<String>,
    },
    /// Delete backups that no retention rule keeps (plan first)
    Prune {
        /// Sources to prune [default: all]
        sources: Vec<String>,
        /// Show the plan; delete nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Run the backup schedule of every source as a daemon (or, with --once, what is due now)
    Schedule {
        /// Run what is due now and exit (for crontab and Kubernetes CronJobs)
        #[arg(long)]
        once: bool,
        /// Backups at once [default: the policy set's scheduler.max-concurrent, or 2]
        #[arg(long, value_name = "N")]
        max_concurrent: Option<usize>,
        /// Serve Prometheus metrics (GET /metrics) on this address, e.g. 0.0.0.0:9464
        #[arg(long, value_name = "ADDR", conflicts_with = "once")]
        metrics_addr: Option<std::net::SocketAddr>,
    },
    /// Catalog maintenance
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// DR plans: run, drill, resume, status, teardown
    #[command(subcommand)]
    Dr(dr::DrCommand),
    /// Check repositories (reachable, conditional writes, object lock, clock) and sources
    Doctor,
    /// Inputs for the infrastructure modules in terraform/, from the policy set
    #[command(subcommand)]
    Terraform(terraform::TerraformCommand),
    /// Demo on the embedded default: back up, verify, restore, prune a SQLite database
    Quickstart {
        /// Folder to create [default: a fresh folder in the system temp folder]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a policy set and show each source's next run times
    Check {
        /// Policy set [default: --policies]
        path: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Rebuild the catalog from the manifests and verification results in every repository
    Rebuild,
}

impl Global {
    /// The policy set path, or an error that says how to name one.
    pub fn policies_path(&self) -> Result<PathBuf, Error> {
        if let Some(p) = &self.policies {
            return Ok(p.clone());
        }
        match std::env::var_os(POLICIES_ENV) {
            Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
            _ => Err(Error::bad_input(format!(
                "no policy set named: pass --policies PATH (a folder of *.toml files or one file) \
                 or set ${POLICIES_ENV}; `lifeboat quickstart` writes an example"
            ))),
        }
    }

    /// Load policies, open the catalog and build the context.
    pub async fn context(&self) -> anyhow::Result<Context> {
        let path = self.policies_path()?;
        let policies = PolicySet::load(&path)?;
        self.context_of(policies).await
    }

    /// Open the catalog and build the context of a loaded policy set.
    pub async fn context_of(&self, policies: PolicySet) -> anyhow::Result<Context> {
        let catalog_path = self
            .catalog
            .clone()
            .unwrap_or_else(|| policies.default_catalog());
        let catalog = Catalog::open(&catalog_path)?;
        Ok(Context::new(
            policies,
            catalog,
            clock(),
            Spool::new(self.spool_dir.clone()),
            self.progress(),
        )
        .await?)
    }

    /// Progress display per terminal and flags.
    pub fn progress(&self) -> Progress {
        Progress::detect(self.quiet, self.json)
    }
}

/// The process clock.
pub fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// Run the command; the returned code is the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let g = &cli.global;
    if let Some(t) = lifeboat::clock::pinned()? {
        tracing::warn!(
            now = %t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "{} pins the clock: every time this run reads or records comes from it, not from this host's clock (unset it outside tests and demonstrations)",
            lifeboat::clock::PIN_VAR
        );
    }
    match cli.command {
        Command::Policy(PolicyCommand::Check { path }) => {
            let path = match path {
                Some(p) => p,
                None => g.policies_path()?,
            };
            commands::policy_check(g, &path)
        }
        Command::Backup {
            sources,
            all,
            dry_run,
        } => commands::backup(g, &g.context().await?, sources, all, dry_run).await,
        Command::List { source } => commands::list(g, &g.context().await?, source).await,
        Command::Verify {
            ids,
            source,
            all,
            sample,
            restore,
        } => {
            let sel = lifeboat::backup::verify::VerifySelection {
                ids,
                source,
                all,
                sample,
            };
            if restore {
                commands::verify_restore(g, &g.context().await?, sel).await
            } else {
                commands::verify(g, &g.context().await?, sel).await
            }
        }
        Command::Restore {
            source,
            to,
            backup,
            before,
            verified,
            force,
            from,
        } => {
            let before = before
                .map(|b| commands::parse_time(&b).with_context(|| format!("--before {b}")))
                .transpose()
                .map_err(|e| Error::bad_input(format!("{e:#}")))?;
            let opts = lifeboat::backup::restore::RestoreOptions {
                source,
                target: to,
                backup_id: backup,
                before,
                verified,
                force,
                from,
                ..Default::default()
            };
            commands::restore(g, &g.context().await?, opts).await
        }
        Command::Prune { sources, dry_run } => {
            commands::prune(g, &g.context().await?, sources, dry_run).await
        }
        Command::Schedule {
            once,
            max_concurrent,
            metrics_addr,
        } => commands::schedule(g, once, max_concurrent, metrics_addr).await,
        Command::Catalog(CatalogCommand::Rebuild) => {
            commands::catalog_rebuild(g, &g.context().await?).await
        }
        Command::Dr(cmd) => dr::run(g, cmd).await,
        Command::Quickstart { dir } => commands::quickstart(g, dir).await,
        Command::Doctor => commands::doctor(g, &g.context().await?).await,
        Command::Terraform(cmd) => terraform::run(g, cmd),
        Command::Report {
            since,
            sources,
            format,
            out,
        } => {
            let format = if g.json { ReportFormat::Json } else { format };
            commands::report(&g.context().await?, &since, sources, format, out.as_deref()).await
        }
        Command::Compare { source, to, backup } => {
            commands::compare(g, &g.context().await?, &source, &to, backup.as_deref()).await
        }
    }
}

/// The exit code for an error from `run`.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    err.downcast_ref::<Error>()
        .map(|e| e.kind())
        .unwrap_or(ErrorKind::RunFailed)
        .exit_code()
}
