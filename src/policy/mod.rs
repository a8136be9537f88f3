//! Policy sets: TOML text -> validated model, with no I/O beyond reading the files.
//!
//! A policy set is a folder whose top-level `*.toml` files declare `[repositories.NAME]`
//! and `[sources.NAME]` (DR plans live under `dr/`). A single file is a set too.
//! Validation reports every problem at once, each as `FILE: dotted.field: problem (fix)`.

pub(crate) mod fields;
pub mod schedule;
pub mod sources;
pub mod units;

use crate::error::{Error, Result};
use chrono::Duration;
use fields::Fields;
pub use schedule::Schedule;
pub use sources::{
    FaissConfig, FilesConfig, FilesPath, Neo4jConfig, Neo4jCounts, Neo4jMode, PostgresConfig,
    RdsConfig, RdsCopy, RdsFreshness, RedisConfig, RedisMode, RedisRestore, SecretRef, Tolerance,
};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The policy set shipped inside the binary (`policies/local/`), written out by `quickstart`.
pub const EMBEDDED_DEFAULT: &[(&str, &str)] = &[(
    "lifeboat.toml",
    include_str!("../../policies/local/lifeboat.toml"),
)];

/// Default size of the chunks whose hashes the manifest records (and of upload parts).
pub const DEFAULT_PART_SIZE: u64 = 16 << 20;

/// One validation problem, located by file and dotted field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The policy file.
    pub file: PathBuf,
    /// The dotted field, e.g. `sources.app.retention.keep-within`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl PolicyError {
    fn new(file: &Path, field: impl Into<String>, problem: impl Into<String>) -> Self {
        PolicyError {
            file: file.to_path_buf(),
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.file.display(),
            self.field,
            self.problem
        )
    }
}

/// Every problem found in a policy set.
#[derive(Debug, Clone)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl From<PolicyErrors> for Error {
    fn from(errs: PolicyErrors) -> Self {
        Error::bad_input(format!(
            "{errs}\n{} problem(s) in the policy set",
            errs.0.len()
        ))
    }
}

/// A validated policy set.
#[derive(Debug, Clone)]
pub struct PolicySet {
    /// The folder of the set (for a single file, its folder).
    pub root: PathBuf,
    /// The policy files read, in order.
    pub files: Vec<PathBuf>,
    /// Repositories by name.
    pub repositories: BTreeMap<String, Repository>,
    /// Sources by name.
    pub sources: BTreeMap<String, Source>,
    /// Settings of `lifeboat schedule`.
    pub scheduler: SchedulerConfig,
}

/// `[scheduler]`: how `lifeboat schedule` runs the matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Backups running at once, across sources.
    pub max_concurrent: usize,
    /// How long a source's lease lasts unless renewed; a holder that died loses it
    /// after this long.
    pub lease_ttl: Duration,
    /// On SIGTERM, how long running backups may take to finish before their uploads
    /// are aborted.
    pub grace_period: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_concurrent: 2,
            lease_ttl: Duration::minutes(5),
            grace_period: Duration::minutes(5),
        }
    }
}

/// Object-lock mode of an S3 repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with a special permission may still shorten or remove the lock.
    Governance,
    /// Nobody can remove the lock before it expires.
    Compliance,
}

/// Server-side encryption of an S3 repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// SSE-S3 (`AES256`).
    Aes256,
    /// SSE-KMS with the given key (the bucket default when `None`).
    Kms(Option<String>),
}

/// An S3 (or S3-compatible) repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// Region; the standard AWS chain decides when absent.
    pub region: Option<String>,
    /// Endpoint URL of an S3-compatible store.
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`).
    pub path_style: bool,
    /// Storage class of the objects written.
    pub storage_class: Option<String>,
    /// Server-side encryption.
    pub sse: Option<Sse>,
    /// Object lock applied to every object written.
    pub object_lock: Option<LockMode>,
}

/// An Azure Blob repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureConfig {
    /// Storage account.
    pub account: String,
    /// Container.
    pub container: String,
    /// Blob name prefix (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// Endpoint URL (Azurite, sovereign clouds); default `https://ACCOUNT.blob.core.windows.net`.
    pub endpoint: Option<String>,
}

/// Where and how a repository stores objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A local (or mounted) directory.
    Local {
        /// The folder.
        path: PathBuf,
    },
    /// Amazon S3 or compatible.
    S3(S3Config),
    /// Azure Blob Storage.
    Azure(AzureConfig),
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Local { path } => write!(f, "file://{}", path.display()),
            Backend::S3(c) => write!(f, "s3://{}/{}", c.bucket, c.prefix),
            Backend::Azure(c) => write!(f, "azure://{}/{}/{}", c.account, c.container, c.prefix),
        }
    }
}

/// A repository declared as `[repositories.NAME]`.
#[derive(Debug, Clone)]
pub struct Repository {
    /// Its name in the policy.
    pub name: String,
    /// Its location and settings.
    pub backend: Backend,
    /// Chunk size of stored objects (and upload part size).
    pub part_size: u64,
    /// Upload parts in flight at once.
    pub max_in_flight: usize,
    /// How long a request may wait for the store's next bytes before it is abandoned
    /// (and retried, when the error allows).
    pub read_timeout: std::time::Duration,
    /// The file that declares it.
    pub file: PathBuf,
}

/// Retention rules of a source (see [`crate::backup::retention`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep the N newest backups.
    pub keep_last: Option<u32>,
    /// Keep every backup younger than this; also each backup's `keep-until` floor.
    pub keep_within: Option<Duration>,
    /// Keep the newest backup of each of the last N hours that have one.
    pub keep_hourly: Option<u32>,
    /// ... days.
    pub keep_daily: Option<u32>,
    /// ... ISO weeks.
    pub keep_weekly: Option<u32>,
    /// ... months.
    pub keep_monthly: Option<u32>,
    /// ... years.
    pub keep_yearly: Option<u32>,
}

impl Retention {
    /// True when no rule is set: nothing is ever deleted.
    pub fn is_empty(&self) -> bool {
        *self == Retention::default()
    }
}

/// The "successful but empty" check of a source (`anomaly = { max-drop = 0.5 }`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnomalyRule {
    /// A backup whose raw size or any count is smaller than the previous backup's by
    /// this fraction or more (0 < max-drop <= 1) is committed but flagged.
    pub max_drop: f64,
}

/// The engine-specific part of a source.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// A SQLite database file.
    Sqlite {
        /// Path of the database file.
        path: PathBuf,
    },
    /// One file (or a named pipe), read once as it is.
    File {
        /// Path of the file.
        path: PathBuf,
    },
    /// A PostgreSQL database.
    Postgres(PostgresConfig),
    /// A Redis server.
    Redis(RedisConfig),
    /// FAISS index files.
    Faiss(FaissConfig),
    /// An RDS DB instance, backed up as manual snapshots (copied to other regions).
    Rds(RdsConfig),
    /// A Neo4j database.
    Neo4j(Neo4jConfig),
    /// Files and folders (configuration), archived together; unchanged content is
    /// not backed up again.
    Files(FilesConfig),
}

impl SourceConfig {
    /// The engine kind as written in policies.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Sqlite { .. } => "sqlite",
            SourceConfig::File { .. } => "file",
            SourceConfig::Postgres(_) => "postgres",
            SourceConfig::Redis(_) => "redis",
            SourceConfig::Faiss(_) => "faiss",
            SourceConfig::Rds(_) => "rds",
            SourceConfig::Neo4j(_) => "neo4j",
            SourceConfig::Files(_) => "files",
        }
    }

    /// How a restore of this kind names its target. Plans are checked against it at
    /// `policy check` time, and the DR runner resolves targets by it (a path is made
    /// absolute against the policy set; a URL or a database name is taken as written).
    pub fn restore_target(&self) -> RestoreTarget {
        match self {
            SourceConfig::Sqlite { .. }
            | SourceConfig::File { .. }
            | SourceConfig::Redis(_)
            | SourceConfig::Faiss(_)
            | SourceConfig::Files(_) => RestoreTarget::Path,
            SourceConfig::Postgres(_) => RestoreTarget::PostgresUrl,
            SourceConfig::Neo4j(_) => RestoreTarget::Neo4jDatabase,
            SourceConfig::Rds(_) => RestoreTarget::None,
        }
    }

    /// Check a restore target as a plan writes it (pure, no I/O): `Err` says what is
    /// wrong and what to write instead. Parts held in `${...}` references are known
    /// only at run time; a target made of one is not checked.
    pub fn check_restore_target(&self, target: &str) -> Result<(), String> {
        if target.trim().is_empty() {
            return Err("empty (name where the backup is restored)".into());
        }
        if target.starts_with("${") && target.ends_with('}') {
            return Ok(());
        }
        let url = target.contains("://");
        let kind = self.kind();
        match self.restore_target() {
            RestoreTarget::Path if url => Err(format!(
                "`{target}` is a URL, but a {kind} source restores into a path (a file or folder, relative to the policy set folder or absolute)"
            )),
            RestoreTarget::Path => Ok(()),
            RestoreTarget::PostgresUrl
                if target.starts_with("postgres://") || target.starts_with("postgresql://") =>
            {
                Ok(())
            }
            RestoreTarget::PostgresUrl => Err(format!(
                "`{target}`: a postgres source restores into a database named by URL (postgres://USER@HOST:5432/DB)"
            )),
            RestoreTarget::Neo4jDatabase if sources::is_neo4j_database_name(target) => Ok(()),
            RestoreTarget::Neo4jDatabase => Err(format!(
                "`{target}` is not a Neo4j database name: a neo4j source restores into a database of its server, named by a letter, then letters, digits, dots or dashes (e.g. target = \"neo4j\")"
            )),
            RestoreTarget::None => Err(format!(
                "a {kind} source is restored by an rds_restore step (a new DB instance from its snapshot), not by a restore step"
            )),
        }
    }
}

/// How a restore names its target, per engine kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreTarget {
    /// A file or folder path (relative to the policy set folder, or absolute).
    Path,
    /// A PostgreSQL URL.
    PostgresUrl,
    /// A database of the source's Neo4j server, by name.
    Neo4jDatabase,
    /// Not restored by a `restore` step (RDS: `rds_restore`).
    None,
}

/// A source declared as `[sources.NAME]`.
#[derive(Debug, Clone)]
pub struct Source {
    /// Its name (also its folder in every repository).
    pub name: String,
    /// Engine and connection.
    pub config: SourceConfig,
    /// When the scheduler backs it up (in its time zone); `None`: on demand only.
    pub schedule: Option<Schedule>,
    /// A random delay of up to this much after each scheduled time, so that sources
    /// (and hosts) sharing a schedule do not all start at once.
    pub jitter: Option<Duration>,
    /// Recovery point objective.
    pub rpo: Option<Duration>,
    /// Repository names, in order of preference for restores.
    pub destinations: Vec<String>,
    /// Retention rules.
    pub retention: Retention,
    /// Flag backups that shrank suspiciously against the previous one.
    pub anomaly: Option<AnomalyRule>,
    /// Scheduled verification and trial restores.
    pub verify: Option<VerifyPolicy>,
    /// The file that declares it.
    pub file: PathBuf,
}

const KINDS: &[&str] = &[
    "sqlite", "file", "files", "postgres", "redis", "faiss", "rds", "neo4j",
];
const SOURCE_KEYS: &[&str] = &[
    "kind",
    "description",
    "schedule",
    "timezone",
    "jitter",
    "rpo",
    "destinations",
    "retention",
    "anomaly",
    "verify",
];
const ANOMALY_KEYS: &[&str] = &["max-drop"];
const VERIFY_KEYS: &[&str] = &["schedule", "restore-test", "target"];

/// How a source's backups are proven restorable (`verify = { schedule, restore-test,
/// target }`): on `schedule`, the newest backup is read back in full on every
/// destination and, with `restore-test`, restored into a scratch target and recounted.
#[derive(Debug, Clone)]
pub struct VerifyPolicy {
    /// When the scheduler verifies (in the source's time zone); `None`: on demand.
    pub schedule: Option<Schedule>,
    /// Restore into a scratch target and compare the counts with the manifest.
    pub restore_test: bool,
    /// The scratch target [default: a temporary file or folder; for postgres a
    /// temporary database on the source's server]. Replaced by every trial restore.
    pub target: Option<String>,
}
const SQLITE_KEYS: &[&str] = &["path"];
const RETENTION_KEYS: &[&str] = &[
    "keep-last",
    "keep-within",
    "keep-hourly",
    "keep-daily",
    "keep-weekly",
    "keep-monthly",
    "keep-yearly",
];
const REPOSITORY_KEYS: &[&str] = &[
    "url",
    "part-size",
    "max-in-flight",
    "read-timeout",
    "description",
];
const S3_KEYS: &[&str] = &[
    "region",
    "endpoint",
    "path-style",
    "storage-class",
    "sse",
    "kms-key-id",
    "object-lock",
];
const AZURE_KEYS: &[&str] = &["endpoint"];
const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
];

const TOP_KEYS: &[&str] = &["repositories", "sources", "scheduler"];
const SCHEDULER_KEYS: &[&str] = &["max-concurrent", "lease-ttl", "grace-period"];

/// Where a policy set is found when `--policies` is not given.
pub const POLICIES_ENV: &str = "LIFEBOAT_POLICIES";

impl PolicySet {
    /// Load and validate the set at `path` (a folder or a single `.toml` file).
    pub fn load(path: &Path) -> Result<PolicySet> {
        let (root, files) = list_files(path)?;
        let mut texts = Vec::new();
        for f in &files {
            let bytes = std::fs::read(f)
                .map_err(|e| Error::io(format!("reading policy file {}", f.display()), e))?;
            let text = String::from_utf8(bytes).map_err(|e| {
                Error::bad_input(format!(
                    "{}: not UTF-8 text (invalid byte at offset {}): save the file as UTF-8",
                    f.display(),
                    e.utf8_error().valid_up_to()
                ))
            })?;
            texts.push((f.clone(), text));
        }
        Self::from_texts(root, &texts).map_err(Error::from)
    }

    /// Validate policy texts (pure: no I/O). `root` resolves relative paths.
    pub fn from_texts(
        root: PathBuf,
        texts: &[(PathBuf, String)],
    ) -> std::result::Result<PolicySet, PolicyErrors> {
        let mut errs = Vec::new();
        // Names declared anywhere (valid or not) and every source's destinations, so the
        // cross-references are checked even for tables that had other problems.
        let mut declared_repos: Vec<String> = Vec::new();
        let mut references: Vec<(PathBuf, String, Vec<String>)> = Vec::new();
        let mut set = PolicySet {
            root: root.clone(),
            files: texts.iter().map(|(f, _)| f.clone()).collect(),
            repositories: BTreeMap::new(),
            sources: BTreeMap::new(),
            scheduler: SchedulerConfig::default(),
        };
        let mut scheduler_file: Option<PathBuf> = None;
        for (file, text) in texts {
            let table: toml::Table = match toml::from_str(text) {
                Ok(t) => t,
                Err(e) => {
                    let msg = e.message().to_string();
                    let where_ = e
                        .span()
                        .map(|s| {
                            let line = text[..s.start].matches('\n').count() + 1;
                            format!("line {line}")
                        })
                        .unwrap_or_else(|| "syntax".into());
                    errs.push(PolicyError::new(
                        file,
                        where_,
                        format!("not valid TOML: {msg}"),
                    ));
                    continue;
                }
            };
            let base = file.parent().unwrap_or(&root).to_path_buf();
            let mut top = Fields::new(file, "", &table);
            if let Some(repos) = top.opt_table(&mut errs, "repositories") {
                for (name, value) in repos {
                    let field = format!("repositories.{name}");
                    check_name(&mut errs, file, &field, name);
                    let Some(t) = value.as_table() else {
                        errs.push(PolicyError::new(
                            file,
                            &field,
                            "expected a table, e.g. [repositories.local] url = \"file:./repository\"",
                        ));
                        continue;
                    };
                    if let Some(prev) = set.repositories.get(name) {
                        errs.push(PolicyError::new(
                            file,
                            &field,
                            format!(
                                "declared again (first in {}); give each repository one name",
                                prev.file.display()
                            ),
                        ));
                        continue;
                    }
                    declared_repos.push(name.clone());
                    if let Some(repo) = read_repository(&mut errs, file, &base, name, t) {
                        set.repositories.insert(name.clone(), repo);
                    }
                }
            }
            if let Some(sources) = top.opt_table(&mut errs, "sources") {
                for (name, value) in sources {
                    let field = format!("sources.{name}");
                    check_name(&mut errs, file, &field, name);
                    let Some(t) = value.as_table() else {
                        errs.push(PolicyError::new(
                            file,
                            &field,
                            "expected a table, e.g. [sources.app] kind = \"sqlite\"",
                        ));
                        continue;
                    };
                    if let Some(prev) = set.sources.get(name) {
                        errs.push(PolicyError::new(
                            file,
                            &field,
                            format!(
                                "declared again (first in {}); give each source one name",
                                prev.file.display()
                            ),
                        ));
                        continue;
                    }
                    let (src, destinations) = read_source(&mut errs, file, &base, name, t);
                    references.push((file.clone(), name.clone(), destinations));
                    if let Some(src) = src {
                        set.sources.insert(name.clone(), src);
                    }
                }
            }
            if let Some(t) = top.opt_table(&mut errs, "scheduler") {
                if let Some(prev) = &scheduler_file {
                    errs.push(PolicyError::new(
                        file,
                        "scheduler",
                        format!(
                            "declared again (first in {}); keep one [scheduler] table per set",
                            prev.display()
                        ),
                    ));
                } else {
                    scheduler_file = Some(file.clone());
                    set.scheduler = read_scheduler(&mut errs, file, t);
                }
            }
            top.finish(&mut errs, TOP_KEYS);
        }
        // Cross-references are checked once every file is read.
        declared_repos.sort();
        for (file, source, destinations) in &references {
            for (i, dest) in destinations.iter().enumerate() {
                if !declared_repos.contains(dest) {
                    let known: Vec<&str> = declared_repos.iter().map(|s| s.as_str()).collect();
                    errs.push(PolicyError::new(
                        file,
                        format!("sources.{source}.destinations[{i}]"),
                        format!(
                            "unknown repository `{dest}` (declared: {}; add [repositories.{dest}])",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                }
            }
        }
        if set.sources.is_empty() && errs.is_empty() {
            errs.push(PolicyError::new(
                texts.first().map(|(f, _)| f.as_path()).unwrap_or(&root),
                "sources",
                "the set declares no source (add a [sources.NAME] table)",
            ));
        }
        if errs.is_empty() {
            Ok(set)
        } else {
            Err(PolicyErrors(errs))
        }
    }

    /// The source `name`, or an error listing the declared ones.
    pub fn source(&self, name: &str) -> Result<&Source> {
        self.sources.get(name).ok_or_else(|| {
            Error::bad_input(format!(
                "unknown source `{name}` (declared in {}: {})",
                self.root.display(),
                self.sources.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The default catalog path: `.lifeboat/catalog.db` inside the set's folder.
    pub fn default_catalog(&self) -> PathBuf {
        self.root.join(".lifeboat").join("catalog.db")
    }
}

/// The files of a set: `*.toml` at the top of a folder, sorted; or the one file named.
fn list_files(path: &Path) -> Result<(PathBuf, Vec<PathBuf>)> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::bad_input(format!(
            "policy set {}: {e} (name a folder of *.toml files or one file with --policies or ${POLICIES_ENV})",
            path.display()
        ))
    })?;
    if meta.is_file() {
        let root = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        return Ok((root, vec![path.to_path_buf()]));
    }
    let mut files = Vec::new();
    let entries = std::fs::read_dir(path)
        .map_err(|e| Error::io(format!("listing policy set {}", path.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(path.display(), e))?;
        let p = entry.path();
        if p.is_file() && p.extension().is_some_and(|x| x == "toml") {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::bad_input(format!(
            "policy set {}: no *.toml file at its top level (see policies/local/ for an example)",
            path.display()
        )));
    }
    Ok((path.to_path_buf(), files))
}

/// Names become folder names in every repository: keep them portable.
fn check_name(errs: &mut Vec<PolicyError>, file: &Path, field: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        errs.push(PolicyError::new(
            file,
            field,
            format!(
                "name `{name}` must be 1-64 of a-z, 0-9, - and _, starting with a letter or digit (it becomes a folder in every repository)"
            ),
        ));
    }
}

fn read_repository(
    errs: &mut Vec<PolicyError>,
    file: &Path,
    base: &Path,
    name: &str,
    t: &toml::Table,
) -> Option<Repository> {
    let n = errs.len();
    let mut f = Fields::new(file, format!("repositories.{name}"), t);
    let url = f.req_str(
        errs,
        "url",
        "url = \"file:./repository\", \"s3://bucket/prefix\" or \"azure://account/container/prefix\"",
    );
    let part_size = f.opt_size(errs, "part-size").unwrap_or(DEFAULT_PART_SIZE);
    // S3 takes parts of 5 MiB and up (but the last); local and Azure take smaller ones.
    let min_part: u64 = if url.is_some_and(|u| u.starts_with("s3:")) {
        5 << 20
    } else {
        64 << 10
    };
    if !(min_part..=(5u64 << 30)).contains(&part_size) {
        f.error(
            errs,
            "part-size",
            format!("must be between {}KiB and 5GiB", min_part >> 10),
        );
    }
    let max_in_flight = f.opt_u32(errs, "max-in-flight").unwrap_or(4) as usize;
    if !(1..=64).contains(&max_in_flight) {
        f.error(errs, "max-in-flight", "must be between 1 and 64");
    }
    let read_timeout = f
        .opt_duration(errs, "read-timeout")
        .and_then(|d| d.to_std().ok())
        .unwrap_or(std::time::Duration::from_secs(60));
    f.opt_str(errs, "description");
    let mut allowed: Vec<&str> = REPOSITORY_KEYS.to_vec();
    let backend = match url {
        Some(u) if u.starts_with("file:") => match parse_local_url(u, base) {
            Ok(b) => Some(b),
            Err(p) => {
                f.error(errs, "url", p);
                None
            }
        },
        Some(u) if u.starts_with("s3:") => {
            allowed.extend_from_slice(S3_KEYS);
            read_s3(errs, &mut f, u).map(Backend::S3)
        }
        Some(u) if u.starts_with("azure:") => {
            allowed.extend_from_slice(AZURE_KEYS);
            read_azure(errs, &mut f, u).map(Backend::Azure)
        }
        Some(u) => {
            let scheme = u.split_once(':').map(|(s, _)| s).unwrap_or(u);
            f.error(
                errs,
                "url",
                format!(
                    "`{u}`: unsupported scheme `{scheme}` (supported: file:///absolute/path, \
                     file:relative/path, s3://bucket/prefix, azure://account/container/prefix)"
                ),
            );
            // Do not also report the other keys of a repository as unknown.
            allowed.extend_from_slice(S3_KEYS);
            None
        }
        None => None,
    };
    f.finish(errs, &allowed);
    match backend {
        Some(backend) if errs.len() == n => Some(Repository {
            name: name.to_string(),
            backend,
            part_size,
            max_in_flight,
            read_timeout,
            file: file.to_path_buf(),
        }),
        _ => None,
    }
}

/// `file:///abs`, `file://./rel`, `file:rel`; relative paths are resolved against `base`.
fn parse_local_url(url: &str, base: &Path) -> std::result::Result<Backend, String> {
    let rest = url.strip_prefix("file:").unwrap_or(url);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    if rest.is_empty() {
        return Err(format!("`{url}`: no path (write \"file:./repository\")"));
    }
    let p = Path::new(rest);
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    // Drop `.` components so paths print as users expect.
    Ok(Backend::Local {
        path: full
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect(),
    })
}

/// The `/`-separated parts of `SCHEME://a/b/c`.
fn url_parts<'a>(url: &'a str, scheme: &str) -> Vec<&'a str> {
    url.strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .map(|r| r.split('/').collect())
        .unwrap_or_default()
}

fn clean_prefix(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/")
}

fn http_url(errs: &mut Vec<PolicyError>, f: &mut Fields<'_>, key: &str) -> Option<String> {
    let e = f.opt_str(errs, key)?;
    if e.starts_with("http://") || e.starts_with("https://") {
        Some(e.trim_end_matches('/').to_string())
    } else {
        f.error(
            errs,
            key,
            format!("`{e}`: must start with http:// or https://"),
        );
        None
    }
}

fn read_s3(errs: &mut Vec<PolicyError>, f: &mut Fields<'_>, url: &str) -> Option<S3Config> {
    let n = errs.len();
    let parts = url_parts(url, "s3");
    let bucket = parts.first().copied().unwrap_or("");
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !bucket_ok {
        f.error(
            errs,
            "url",
            format!(
                "`{url}`: write s3://BUCKET/PREFIX with a valid bucket name (3-63 of a-z, 0-9, '-', '.')"
            ),
        );
    }
    let region = f.opt_str(errs, "region").map(str::to_string);
    let endpoint = http_url(errs, f, "endpoint");
    let path_style = match f.opt_value("path-style") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(other) => {
            f.error(
                errs,
                "path-style",
                format!("expected true or false, found `{other}`"),
            );
            false
        }
    };
    let storage_class = f.opt_str(errs, "storage-class").map(str::to_string);
    if let Some(c) = &storage_class
        && !STORAGE_CLASSES.contains(&c.as_str())
    {
        f.error(
            errs,
            "storage-class",
            format!(
                "`{c}` is not allowed (allowed: {}; archive classes need a rehydration before any restore)",
                STORAGE_CLASSES.join(", ")
            ),
        );
    }
    let kms_key_id = f.opt_str(errs, "kms-key-id").map(str::to_string);
    let sse = match f.opt_str(errs, "sse") {
        None => None,
        Some("AES256") => Some(Sse::Aes256),
        Some("aws:kms") => Some(Sse::Kms(kms_key_id.clone())),
        Some(other) => {
            f.error(
                errs,
                "sse",
                format!("`{other}`: use \"AES256\" or \"aws:kms\""),
            );
            None
        }
    };
    if kms_key_id.is_some() && !matches!(sse, Some(Sse::Kms(_))) {
        f.error(errs, "kms-key-id", "only with sse = \"aws:kms\"");
    }
    let object_lock = match f.opt_table(errs, "object-lock") {
        None => None,
        Some(t) => {
            let mut lf = Fields::new(f.file(), f.path("object-lock"), t);
            let mode = match lf.req_str(errs, "mode", "mode = \"governance\" or \"compliance\"") {
                Some("governance") => Some(LockMode::Governance),
                Some("compliance") => Some(LockMode::Compliance),
                Some(other) => {
                    lf.error(
                        errs,
                        "mode",
                        format!("`{other}`: use \"governance\" or \"compliance\""),
                    );
                    None
                }
                None => None,
            };
            lf.finish(errs, &["mode"]);
            mode
        }
    };
    (errs.len() == n).then(|| S3Config {
        bucket: bucket.to_string(),
        prefix: clean_prefix(parts.get(1..).unwrap_or_default()),
        region,
        endpoint,
        path_style,
        storage_class,
        sse,
        object_lock,
    })
}

fn read_azure(errs: &mut Vec<PolicyError>, f: &mut Fields<'_>, url: &str) -> Option<AzureConfig> {
    let n = errs.len();
    let parts = url_parts(url, "azure");
    let account = parts.first().copied().unwrap_or("");
    let container = parts.get(1).copied().unwrap_or("");
    let account_ok = (3..=24).contains(&account.len())
        && account
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let container_ok = (3..=63).contains(&container.len())
        && container
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !container.starts_with('-');
    if !account_ok || !container_ok {
        f.error(
            errs,
            "url",
            format!(
                "`{url}`: write azure://ACCOUNT/CONTAINER/PREFIX (account: 3-24 of a-z and 0-9; \
                 container: 3-63 of a-z, 0-9 and '-')"
            ),
        );
    }
    let endpoint = http_url(errs, f, "endpoint");
    (errs.len() == n).then(|| AzureConfig {
        account: account.to_string(),
        container: container.to_string(),
        prefix: clean_prefix(parts.get(2..).unwrap_or_default()),
        endpoint,
    })
}

fn read_source(
    errs: &mut Vec<PolicyError>,
    file: &Path,
    base: &Path,
    name: &str,
    t: &toml::Table,
) -> (Option<Source>, Vec<String>) {
    let n = errs.len();
    let mut f = Fields::new(file, format!("sources.{name}"), t);
    let kind = f.req_str(errs, "kind", &format!("kind = one of {}", KINDS.join(", ")));
    f.opt_str(errs, "description");
    let schedule = read_schedule(errs, &mut f);
    let schedule = match f.opt_str(errs, "timezone") {
        None => schedule,
        Some(tz) => match tz.parse::<chrono_tz::Tz>() {
            Ok(tz) => {
                if schedule.is_none() && t.get("schedule").is_none() {
                    f.error(errs, "timezone", "given without a schedule (add schedule = \"0 3 * * *\", or remove timezone)");
                }
                schedule.map(|s| s.in_timezone(tz))
            }
            Err(_) => {
                f.error(
                    errs,
                    "timezone",
                    format!("`{tz}` is not an IANA time zone name (e.g. \"Europe/Berlin\", \"America/New_York\", \"UTC\")"),
                );
                schedule
            }
        },
    };
    let jitter = f.opt_duration(errs, "jitter");
    if jitter.is_some() && t.get("schedule").is_none() {
        f.error(
            errs,
            "jitter",
            "given without a schedule (jitter delays scheduled runs)",
        );
    }
    let rpo = f.opt_duration(errs, "rpo");
    let destinations: Vec<String> = match f.str_list(errs, "destinations") {
        Some(d) if d.is_empty() => {
            f.error(errs, "destinations", "empty (name at least one repository)");
            vec![]
        }
        Some(d) => d.iter().map(|s| s.to_string()).collect(),
        None => {
            if !t.contains_key("destinations") {
                f.error(
                    errs,
                    "destinations",
                    "missing (add destinations = [\"REPOSITORY\", ...])",
                );
            }
            vec![]
        }
    };
    for (i, d) in destinations.iter().enumerate() {
        if destinations[..i].contains(d) {
            f.error(
                errs,
                &format!("destinations[{i}]"),
                format!("`{d}` is listed twice"),
            );
        }
    }
    let retention = match f.opt_table(errs, "retention") {
        Some(rt) => read_retention(errs, file, name, rt),
        None => Retention::default(),
    };
    let anomaly = f
        .opt_table(errs, "anomaly")
        .and_then(|at| read_anomaly(errs, file, name, at));
    let verify = f
        .opt_table(errs, "verify")
        .and_then(|vt| read_verify(errs, file, base, name, kind, t, vt));
    let mut allowed: Vec<&str> = SOURCE_KEYS.to_vec();
    let config = match kind {
        Some("sqlite") => {
            allowed.extend_from_slice(SQLITE_KEYS);
            f.req_str(errs, "path", "path = \"path/to/database.db\"")
                .map(|p| SourceConfig::Sqlite { path: base.join(p) })
        }
        Some("file") => {
            allowed.push("path");
            f.req_str(errs, "path", "path = \"path/to/file\"")
                .map(|p| SourceConfig::File { path: base.join(p) })
        }
        Some("postgres") => {
            allowed.extend_from_slice(sources::POSTGRES_KEYS);
            sources::read_postgres(errs, &mut f, base).map(SourceConfig::Postgres)
        }
        Some("redis") => {
            allowed.extend_from_slice(sources::REDIS_KEYS);
            sources::read_redis(errs, &mut f, base).map(SourceConfig::Redis)
        }
        Some("faiss") => {
            allowed.extend_from_slice(sources::FAISS_KEYS);
            sources::read_faiss(errs, &mut f, base).map(SourceConfig::Faiss)
        }
        Some("rds") => {
            allowed.extend_from_slice(sources::RDS_KEYS);
            sources::read_rds(errs, &mut f, base).map(SourceConfig::Rds)
        }
        Some("neo4j") => {
            allowed.extend_from_slice(sources::NEO4J_KEYS);
            sources::read_neo4j(errs, &mut f, base).map(SourceConfig::Neo4j)
        }
        Some("files") => {
            allowed.extend_from_slice(sources::FILES_KEYS);
            sources::read_files(errs, &mut f, base).map(SourceConfig::Files)
        }
        Some(other) => {
            f.error(
                errs,
                "kind",
                format!("unknown kind `{other}` (valid kinds: {})", KINDS.join(", ")),
            );
            None
        }
        None => None,
    };
    f.finish(errs, &allowed);
    let source = match config {
        Some(config) if errs.len() == n => Some(Source {
            name: name.to_string(),
            config,
            schedule,
            jitter,
            rpo,
            destinations: destinations.clone(),
            retention,
            anomaly,
            verify,
            file: file.to_path_buf(),
        }),
        _ => None,
    };
    (source, destinations)
}

fn read_scheduler(errs: &mut Vec<PolicyError>, file: &Path, t: &toml::Table) -> SchedulerConfig {
    let mut f = Fields::new(file, "scheduler", t);
    let d = SchedulerConfig::default();
    let max_concurrent = f
        .opt_u32(errs, "max-concurrent")
        .map_or(d.max_concurrent, |n| n as usize);
    if !(1..=64).contains(&max_concurrent) {
        f.error(errs, "max-concurrent", "must be between 1 and 64");
    }
    let lease_ttl = f.opt_duration(errs, "lease-ttl").unwrap_or(d.lease_ttl);
    if lease_ttl < Duration::seconds(2) {
        f.error(
            errs,
            "lease-ttl",
            "must be at least 2s (it is renewed every third of it)",
        );
    }
    let grace_period = f
        .opt_duration(errs, "grace-period")
        .unwrap_or(d.grace_period);
    f.finish(errs, SCHEDULER_KEYS);
    SchedulerConfig {
        max_concurrent,
        lease_ttl,
        grace_period,
    }
}

fn read_retention(
    errs: &mut Vec<PolicyError>,
    file: &Path,
    name: &str,
    t: &toml::Table,
) -> Retention {
    let mut f = Fields::new(file, format!("sources.{name}.retention"), t);
    let r = Retention {
        keep_last: f.opt_u32(errs, "keep-last"),
        keep_within: f.opt_duration(errs, "keep-within"),
        keep_hourly: f.opt_u32(errs, "keep-hourly"),
        keep_daily: f.opt_u32(errs, "keep-daily"),
        keep_weekly: f.opt_u32(errs, "keep-weekly"),
        keep_monthly: f.opt_u32(errs, "keep-monthly"),
        keep_yearly: f.opt_u32(errs, "keep-yearly"),
    };
    f.finish(errs, RETENTION_KEYS);
    r
}

/// The `schedule` key of a table, parsed.
fn read_schedule(errs: &mut Vec<PolicyError>, f: &mut Fields<'_>) -> Option<Schedule> {
    let text = f.opt_str(errs, "schedule")?;
    match Schedule::parse(text) {
        Ok(s) => Some(s),
        Err(e) => {
            f.error(errs, "schedule", e);
            None
        }
    }
}

fn read_verify(
    errs: &mut Vec<PolicyError>,
    file: &Path,
    base: &Path,
    name: &str,
    kind: Option<&str>,
    source: &toml::Table,
    t: &toml::Table,
) -> Option<VerifyPolicy> {
    let mut f = Fields::new(file, format!("sources.{name}.verify"), t);
    let n = errs.len();
    let schedule = read_schedule(errs, &mut f);
    // The verification schedule reads in the source's time zone, like its backups.
    let schedule = match source
        .get("timezone")
        .and_then(|v| v.as_str())
        .and_then(|tz| tz.parse::<chrono_tz::Tz>().ok())
    {
        Some(tz) => schedule.map(|s| s.in_timezone(tz)),
        None => schedule,
    };
    let restore_test = match f.opt_value("restore-test") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(v) => {
            f.error(
                errs,
                "restore-test",
                format!("expected true or false, found {}", v.type_str()),
            );
            false
        }
    };
    let target = f.opt_str(errs, "target").map(|t| {
        if t.contains("://") || kind == Some("neo4j") {
            t.to_string()
        } else {
            base.join(t).display().to_string()
        }
    });
    if target.is_some() && !restore_test {
        f.error(
            errs,
            "target",
            "given without restore-test = true (the target is where trial restores go)",
        );
    }
    if restore_test {
        match kind {
            Some("rds") => f.error(
                errs,
                "restore-test",
                "an rds backup is a snapshot: rehearse its restore with a DR drill (an rds_restore step), and keep verify for the checksum read-back",
            ),
            Some("neo4j") if target.is_none() => f.error(
                errs,
                "target",
                "missing (a Neo4j trial restore needs a scratch database: add target = \"trial\"; it is overwritten by every trial)",
            ),
            _ => {}
        }
    }
    f.finish(errs, VERIFY_KEYS);
    (errs.len() == n).then_some(VerifyPolicy {
        schedule,
        restore_test,
        target,
    })
}

fn read_anomaly(
    errs: &mut Vec<PolicyError>,
    file: &Path,
    name: &str,
    t: &toml::Table,
) -> Option<AnomalyRule> {
    let mut f = Fields::new(file, format!("sources.{name}.anomaly"), t);
    let hint = "a fraction in (0, 1], e.g. max-drop = 0.5 flags a backup half the size of the previous one";
    let max_drop = match f.opt_value("max-drop") {
        None => {
            f.error(errs, "max-drop", format!("missing (add {hint})"));
            None
        }
        Some(v) => match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
            Some(x) if x > 0.0 && x <= 1.0 => Some(x),
            Some(x) => {
                f.error(
                    errs,
                    "max-drop",
                    format!("{x} is out of range (expected {hint})"),
                );
                None
            }
            None => {
                f.error(
                    errs,
                    "max-drop",
                    format!("expected a number, found {} `{v}` ({hint})", v.type_str()),
                );
                None
            }
        },
    };
    f.finish(errs, ANOMALY_KEYS);
    max_drop.map(|max_drop| AnomalyRule { max_drop })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> std::result::Result<PolicySet, PolicyErrors> {
        PolicySet::from_texts(
            PathBuf::from("/set"),
            &[(PathBuf::from("/set/p.toml"), text.to_string())],
        )
    }

    #[test]
    fn a_valid_policy_builds_the_model() {
        let set = check(
            r#"
            [repositories.local]
            url = "file:./repo"
            part-size = "1MiB"
            [sources.app]
            kind = "sqlite"
            path = "app.db"
            schedule = "@hourly"
            rpo = "1h"
            destinations = ["local"]
            retention = { keep-last = 3, keep-within = "1d" }
            "#,
        )
        .unwrap();
        assert_eq!(
            set.repositories["local"].backend,
            Backend::Local {
                path: PathBuf::from("/set/repo")
            }
        );
        assert_eq!(set.repositories["local"].part_size, 1 << 20);
        let app = &set.sources["app"];
        assert_eq!(app.retention.keep_last, Some(3));
        assert_eq!(app.rpo, Some(Duration::hours(1)));
    }

    #[test]
    fn an_rds_source_with_copies_and_freshness() {
        let set = check(
            r#"
            [repositories.local]
            url = "file:./repo"
            [sources.db]
            kind = "rds"
            instance = "bizra-prod"
            region = "us-east-1"
            copy-to-regions = [{ region = "us-west-2", kms-key-id = "alias/lifeboat" }]
            freshness = { url = "postgres://app@db.example:5432/app", password-env = "PGPW", query = "SELECT max(created_at) FROM tasks" }
            destinations = ["local"]
            "#,
        )
        .unwrap();
        let SourceConfig::Rds(cfg) = &set.sources["db"].config else {
            panic!("not rds")
        };
        assert_eq!(cfg.instance, "bizra-prod");
        assert_eq!(
            cfg.copies,
            vec![RdsCopy {
                region: "us-west-2".into(),
                kms_key_id: Some("alias/lifeboat".into())
            }]
        );
        let f = cfg.freshness.as_ref().unwrap();
        assert_eq!(f.password, SecretRef::Env("PGPW".into()));
        assert_eq!(cfg.wait_timeout, std::time::Duration::from_secs(7200));
    }

    #[test]
    fn rds_mistakes_name_the_field_and_the_fix() {
        let errs = check(
            r#"
            [repositories.local]
            url = "file:./repo"
            [sources.db]
            kind = "rds"
            instance = "bizra_prod"
            region = "us-east-1"
            copy-to-regions = [{ region = "us-east-1" }, { region = "west" }, { regoin = "x" }]
            freshness = { url = "postgres://app:hunter2@db/app", query = "SELECT 1" }
            destinations = ["local"]
            "#,
        )
        .unwrap_err();
        let text = errs.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        for want in [
            "sources.db.instance: `bizra_prod` is not a DB instance identifier",
            "sources.db.copy-to-regions[0].region: `us-east-1` is the instance's own region",
            "sources.db.copy-to-regions[1].region: `west` is not a region name",
            "sources.db.copy-to-regions[2].regoin: unknown key (did you mean `region`?",
            "sources.db.copy-to-regions[2].region: missing",
            "sources.db.freshness.url: holds a password",
        ] {
            assert!(text.contains(want), "missing `{want}` in:\n{text}");
        }
    }

    #[test]
    fn scheduler_settings_timezone_and_jitter_are_read_and_checked() {
        let set = check(
            r#"
            [scheduler]
            max-concurrent = 3
            lease-ttl = "30s"
            [repositories.local]
            url = "file:./repo"
            [sources.app]
            kind = "sqlite"
            path = "app.db"
            schedule = "30 2 * * *"
            timezone = "Europe/Berlin"
            jitter = "30s"
            destinations = ["local"]
            "#,
        )
        .unwrap();
        assert_eq!(set.scheduler.max_concurrent, 3);
        assert_eq!(set.scheduler.lease_ttl, Duration::seconds(30));
        assert_eq!(set.scheduler.grace_period, Duration::minutes(5));
        let app = &set.sources["app"];
        assert_eq!(app.jitter, Some(Duration::seconds(30)));
        assert_eq!(
            app.schedule.as_ref().unwrap().timezone(),
            Some(chrono_tz::Europe::Berlin)
        );

        let errs = check(
            r#"
            [scheduler]
            max-concurrent = 0
            lease-ttl = "1s"
            lease = "5m"
            [repositories.local]
            url = "file:./repo"
            [sources.app]
            kind = "sqlite"
            path = "app.db"
            schedule = "@hourly"
            timezone = "Mars/Olympus"
            destinations = ["local"]
            [sources.ondemand]
            kind = "sqlite"
            path = "b.db"
            jitter = "10s"
            destinations = ["local"]
            "#,
        )
        .unwrap_err()
        .to_string();
        for want in [
            "scheduler.max-concurrent: must be between 1 and 64",
            "scheduler.lease-ttl: must be at least 2s",
            "scheduler.lease: unknown key (did you mean `lease-ttl`?",
            "sources.app.timezone: `Mars/Olympus` is not an IANA time zone name",
            "sources.ondemand.jitter: given without a schedule",
        ] {
            assert!(errs.contains(want), "missing `{want}` in:\n{errs}");
        }
    }

    #[test]
    fn every_mistake_is_reported_with_file_and_field() {
        let errs = check(
            r#"
            [repositories.local]
            url = "ftp://x"
            [sources.app]
            kind = "sqlite"
            path = "app.db"
            schedul = "@hourly"
            rpo = "1 fortnight"
            destinations = ["local", "offsite"]
            retention = { keep-last = -1 }
            "#,
        )
        .unwrap_err();
        let text = errs.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            text.contains("/set/p.toml: repositories.local.url: `ftp://x`: unsupported scheme")
        );
        assert!(text.contains("sources.app.schedul: unknown key (did you mean `schedule`?"));
        assert!(text.contains("sources.app.rpo: `1 fortnight`"));
        assert!(text.contains("sources.app.retention.keep-last: expected a whole number"));
        assert!(text.contains("sources.app.destinations[1]: unknown repository `offsite`"));
    }

    fn with_source(source: &str) -> String {
        format!(
            "[repositories.local]\nurl = \"file:./repo\"\n[sources.app]\ndestinations = [\"local\"]\n{source}\n"
        )
    }

    #[test]
    fn anomaly_max_drop_is_read() {
        let set = check(&with_source(
            "kind = \"sqlite\"\npath = \"a.db\"\nanomaly = { max-drop = 0.5 }",
        ))
        .unwrap();
        assert_eq!(
            set.sources["app"].anomaly,
            Some(AnomalyRule { max_drop: 0.5 })
        );
        let set = check(&with_source(
            "kind = \"sqlite\"\npath = \"a.db\"\nanomaly = { max-drop = 1 }",
        ))
        .unwrap();
        assert_eq!(set.sources["app"].anomaly.unwrap().max_drop, 1.0);
    }

    #[rstest::rstest]
    #[case::zero(
        "max-drop = 0",
        "sources.app.anomaly.max-drop: 0 is out of range (expected a fraction in (0, 1]"
    )]
    #[case::above_one("max-drop = 1.5", "sources.app.anomaly.max-drop: 1.5 is out of range")]
    #[case::negative(
        "max-drop = -0.2",
        "sources.app.anomaly.max-drop: -0.2 is out of range"
    )]
    #[case::a_string(
        "max-drop = \"50%\"",
        "sources.app.anomaly.max-drop: expected a number, found string"
    )]
    #[case::missing("", "sources.app.anomaly.max-drop: missing (add a fraction in (0, 1]")]
    #[case::unknown_key(
        "max-drop = 0.5, max-dorp = 1",
        "sources.app.anomaly.max-dorp: unknown key (did you mean `max-drop`?"
    )]
    fn anomaly_mistakes_name_the_field_and_the_fix(#[case] table: &str, #[case] want: &str) {
        let text = check(&with_source(&format!(
            "kind = \"sqlite\"\npath = \"a.db\"\nanomaly = {{ {table} }}"
        )))
        .unwrap_err()
        .to_string();
        assert!(
            text.contains(&format!("/set/p.toml: {want}")),
            "missing `{want}` in:\n{text}"
        );
    }

    #[rstest::rstest]
    #[case::rds(
        "kind = \"rds\"\ninstance = \"db\"\nregion = \"us-east-1\"\nverify = { restore-test = true }",
        "sources.app.verify.restore-test: an rds backup is a snapshot"
    )]
    #[case::neo4j_without_target(
        "kind = \"neo4j\"\nhttp-url = \"http://n:7474\"\nverify = { restore-test = true }",
        "sources.app.verify.target: missing (a Neo4j trial restore needs a scratch database"
    )]
    #[case::target_alone(
        "kind = \"sqlite\"\npath = \"a.db\"\nverify = { target = \"t.db\" }",
        "sources.app.verify.target: given without restore-test = true"
    )]
    #[case::bad_schedule(
        "kind = \"sqlite\"\npath = \"a.db\"\nverify = { schedule = \"daily\" }",
        "sources.app.verify.schedule:"
    )]
    #[case::unknown_key(
        "kind = \"sqlite\"\npath = \"a.db\"\nverify = { restore-tset = true }",
        "sources.app.verify.restore-tset: unknown key (did you mean `restore-test`?"
    )]
    fn verify_mistakes_name_the_field_and_the_fix(#[case] source: &str, #[case] want: &str) {
        let text = check(&with_source(source)).unwrap_err().to_string();
        assert!(
            text.contains(&format!("/set/p.toml: {want}")),
            "missing `{want}` in:\n{text}"
        );
    }

    #[test]
    fn a_verify_policy_is_read_in_the_source_time_zone() {
        let set = check(&with_source(
            "kind = \"sqlite\"\npath = \"a.db\"\nschedule = \"0 * * * *\"\ntimezone = \"Europe/Berlin\"\nverify = { schedule = \"30 5 * * *\", restore-test = true, target = \"trial/a.db\" }",
        ))
        .unwrap();
        let v = set.sources["app"].verify.clone().unwrap();
        assert!(v.restore_test);
        assert_eq!(v.target.as_deref(), Some("/set/trial/a.db"));
        let s = v.schedule.unwrap();
        assert_eq!(s.timezone(), Some(chrono_tz::Europe::Berlin));
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-30T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        // 05:30 in Berlin is 04:30 UTC in winter.
        assert_eq!(
            s.next_after(t).unwrap().to_rfc3339(),
            "2026-11-30T04:30:00+00:00"
        );
    }

    #[test]
    fn a_files_source_names_its_entries_as_written() {
        let set = check(&with_source(
            "kind = \"files\"\npaths = [\"values/\", \"./k8s/app.yaml\", \"/etc/app.conf\"]",
        ))
        .unwrap();
        let SourceConfig::Files(cfg) = &set.sources["app"].config else {
            panic!("not files")
        };
        let got: Vec<(&str, &Path)> = cfg
            .paths
            .iter()
            .map(|p| (p.name.as_str(), p.path.as_path()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("values", Path::new("/set/values/")),
                ("k8s/app.yaml", Path::new("/set/./k8s/app.yaml")),
                ("etc/app.conf", Path::new("/etc/app.conf")),
            ]
        );
    }

    #[rstest::rstest]
    #[case::missing("", "sources.app.paths: missing or empty (list files and folders")]
    #[case::empty("paths = []", "sources.app.paths: missing or empty")]
    #[case::parent(
        "paths = [\"../secrets\"]",
        "sources.app.paths[0]: `../secrets`: `..` is not allowed"
    )]
    #[case::glob(
        "paths = [\"k8s/*.yaml\"]",
        "sources.app.paths[0]: `k8s/*.yaml`: globs are not supported"
    )]
    #[case::nothing(
        "paths = [\".\"]",
        "sources.app.paths[0]: `.`: names no file or folder"
    )]
    #[case::nested(
        "paths = [\"values\", \"values/a.yaml\"]",
        "sources.app.paths[1]: `values/a.yaml` is inside `values`"
    )]
    #[case::twice(
        "paths = [\"values\", \"./values/\"]",
        "sources.app.paths[1]: `./values/` is listed twice"
    )]
    #[case::unknown_key(
        "paths = [\"a\"]\npath = \"b\"",
        "sources.app.path: unknown key (did you mean `paths`?"
    )]
    fn files_mistakes_name_the_field_and_the_fix(#[case] keys: &str, #[case] want: &str) {
        let text = check(&with_source(&format!("kind = \"files\"\n{keys}")))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains(&format!("/set/p.toml: {want}")),
            "missing `{want}` in:\n{text}"
        );
    }
}
