//! Engine-specific parts of `[sources.NAME]` for the database engines.

use super::PolicyError;
use super::fields::Fields;
use std::path::{Path, PathBuf};

/// Where a secret comes from; never the policy text itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SecretRef {
    /// Nothing configured (the tool's own defaults apply, e.g. `.pgpass`).
    #[default]
    None,
    /// An environment variable's value.
    Env(String),
    /// A file's content (trailing newline removed).
    File(PathBuf),
}

impl SecretRef {
    /// Resolve the secret; `what` names it in errors (never its value).
    pub fn resolve(&self, what: &str) -> crate::Result<Option<String>> {
        match self {
            SecretRef::None => Ok(None),
            SecretRef::Env(var) => std::env::var(var).map(Some).map_err(|_| {
                crate::Error::bad_input(format!(
                    "{what}: environment variable {var} is not set (set it, or use password-file)"
                ))
            }),
            SecretRef::File(p) => std::fs::read_to_string(p)
                .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|e| crate::Error::io(format!("{what}: password file {}", p.display()), e)),
        }
    }
}

/// A PostgreSQL (or RDS PostgreSQL) database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `postgres://user@host:port/dbname`, without a password.
    pub url: String,
    /// The password, if not from `.pgpass`.
    pub password: SecretRef,
    /// Tables to count (all user tables when `None`).
    pub count_tables: Option<Vec<String>>,
    /// A query returning one timestamp: the data's freshness (the consistency point).
    pub freshness: Option<String>,
    /// Folder holding `pg_dump` and `pg_restore` (default: found on PATH).
    pub bin_dir: Option<PathBuf>,
    /// CA certificates (PEM) that sign the server's certificate, e.g. the RDS bundle;
    /// default: the public web roots.
    pub ssl_root_cert: Option<PathBuf>,
}

/// How a Redis snapshot is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisMode {
    /// `redis-cli --rdb -`: the server streams a fresh RDB over the replication
    /// protocol (point in time: the server's fork for the transfer).
    Replication,
    /// `BGSAVE` on the server, then its RDB file is read here (beside the server).
    Bgsave {
        /// The server's RDB file.
        rdb_path: PathBuf,
    },
}

/// Tolerated difference of key counts after a restore (keys with a TTL may expire).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// Counts must be equal.
    Exact,
    /// Up to this many keys fewer per count.
    Absolute(u64),
    /// Up to this percentage fewer per count.
    Percent(f64),
}

/// Restoring a Redis RDB into a target folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisRestore {
    /// RDB file name inside the target folder.
    pub rdb_name: String,
    /// Command run after the swap (e.g. a restart of the server that loads the folder).
    pub restart: Option<Vec<String>>,
    /// Server counted after the restart; without it, a throwaway `redis-server` on a
    /// free loopback port loads the restored file and is counted.
    pub check_url: Option<String>,
    /// `restart-in-drills`: a DR drill runs `restart` and `check-url` too (they act on
    /// the running server; by default only a real restore runs them).
    pub restart_in_drills: bool,
}

/// A Redis server.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    /// `redis://host:port`.
    pub url: String,
    /// The password (AUTH), if any.
    pub password: SecretRef,
    /// Snapshot mode.
    pub mode: RedisMode,
    /// Allowed key-count difference after a restore.
    pub tolerance: Tolerance,
    /// `redis-cli` to run.
    pub cli: PathBuf,
    /// `redis-server` to run for checks.
    pub server: PathBuf,
    /// Restore settings.
    pub restore: RedisRestore,
}

/// FAISS index files (and their sidecars).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaissConfig {
    /// The files, read consistently; restored into a target folder under their names.
    pub paths: Vec<PathBuf>,
    /// Command run after a restore (e.g. a rollout restart).
    pub post_restore: Option<Vec<String>>,
    /// Its timeout.
    pub post_restore_timeout: std::time::Duration,
    /// `post-restore-in-drills`: a DR drill runs `post-restore` too (it acts on the
    /// running service; by default only a real restore runs it).
    pub post_restore_in_drills: bool,
}

/// How a Neo4j database is copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Neo4jMode {
    /// Enterprise: `neo4j-admin database backup` of the running database; the artifact
    /// is then streamed.
    OnlineBackup {
        /// With a wrapper: the folder inside the container in which each backup gets
        /// its own subfolder (read back with `cat`, removed afterwards).
        backup_path: Option<String>,
    },
    /// Community: the server is stopped, `neo4j-admin database dump --to-stdout` is
    /// streamed, and the server is started again.
    OfflineDump,
}

/// Integrity counts of a Neo4j database beyond the totals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Neo4jCounts {
    /// Labels counted as `nodes.LABEL`.
    pub labels: Vec<String>,
    /// Relationship types counted as `relationships.TYPE`.
    pub relationship_types: Vec<String>,
}

/// A Neo4j database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neo4jConfig {
    /// The HTTP endpoint, `http://HOST:7474`, without credentials.
    pub http_url: String,
    /// The database backed up (default `neo4j`).
    pub database: String,
    /// The user counting through HTTP (default `neo4j`).
    pub user: String,
    /// The user's password.
    pub password: SecretRef,
    /// How the database is copied.
    pub mode: Neo4jMode,
    /// The `neo4j-admin` program (default: found on PATH, or inside the wrapper).
    pub neo4j_admin: String,
    /// Prefixed to every `neo4j-admin` call, e.g. `kubectl exec -i neo4j-0 --`.
    pub wrapper: Vec<String>,
    /// Stops the server (required for offline dumps).
    pub stop: Option<Vec<String>>,
    /// Starts it again (required for offline dumps).
    pub start: Option<Vec<String>>,
    /// Per-label and per-type counts.
    pub counts: Neo4jCounts,
    /// Limit for `stop`, `start`, the wrapper's file commands and each HTTP request.
    pub command_timeout: std::time::Duration,
    /// How long the server may take to answer over HTTP after `start`.
    pub start_timeout: std::time::Duration,
}

pub(crate) const POSTGRES_KEYS: &[&str] = &[
    "url",
    "password-env",
    "password-file",
    "counts",
    "freshness",
    "pg-bin",
    "ssl-root-cert",
];
pub(crate) const REDIS_KEYS: &[&str] = &[
    "url",
    "password-env",
    "password-file",
    "mode",
    "rdb-path",
    "tolerance",
    "redis-cli",
    "redis-server",
    "restore",
];
pub(crate) const NEO4J_KEYS: &[&str] = &[
    "http-url",
    "database",
    "user",
    "password-env",
    "password-file",
    "mode",
    "neo4j-admin",
    "wrapper",
    "backup-path",
    "stop",
    "start",
    "counts",
    "command-timeout",
    "start-timeout",
];
pub(crate) const FAISS_KEYS: &[&str] = &[
    "paths",
    "post-restore",
    "post-restore-timeout",
    "post-restore-in-drills",
];

/// An optional boolean key; a missing one is false.
fn opt_bool(errs: &mut Vec<PolicyError>, f: &mut Fields<'_>, key: &str) -> bool {
    match f.opt_value(key) {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(other) => {
            f.error(
                errs,
                key,
                format!(
                    "expected true or false, found {} `{other}`",
                    other.type_str()
                ),
            );
            false
        }
    }
}

fn secret(errs: &mut Vec<PolicyError>, f: &mut Fields<'_>, base: &Path) -> SecretRef {
    let env = f.opt_str(errs, "password-env");
    let file = f.opt_str(errs, "password-file");
    match (env, file) {
        (Some(_), Some(_)) => {
            f.error(
                errs,
                "password-file",
                "give password-env or password-file, not both",
            );
            SecretRef::None
        }
        (Some(v), None) => SecretRef::Env(v.to_string()),
        (None, Some(p)) => SecretRef::File(base.join(p)),
        (None, None) => SecretRef::None,
    }
}

/// Refuse a URL that carries a password: secrets do not belong in policy text.
fn url_without_password(
    errs: &mut Vec<PolicyError>,
    f: &mut Fields<'_>,
    schemes: &[&str],
    hint: &str,
) -> Option<String> {
    let u = f.req_str(errs, "url", hint)?;
    let parsed = match url::Url::parse(u) {
        Ok(p) if schemes.contains(&p.scheme()) => p,
        _ => {
            // Never echo the value: it may hold a password.
            f.error(
                errs,
                "url",
                format!("not a {} URL ({hint})", schemes.join(" or ")),
            );
            return None;
        }
    };
    if parsed.password().is_some() {
        f.error(
            errs,
            "url",
            "holds a password: remove it and use password-env or password-file",
        );
        return None;
    }
    Some(u.to_string())
}

fn command(errs: &mut Vec<PolicyError>, f: &mut Fields<'_>, key: &str) -> Option<Vec<String>> {
    let cmd = f.str_list(errs, key)?;
    if cmd.is_empty() {
        f.error(errs, key, "empty (give the program and its arguments, e.g. [\"systemctl\", \"restart\", \"redis\"])");
        return None;
    }
    Some(cmd.into_iter().map(str::to_string).collect())
}

pub(crate) fn read_postgres(
    errs: &mut Vec<PolicyError>,
    f: &mut Fields<'_>,
    base: &Path,
) -> Option<PostgresConfig> {
    let url = url_without_password(
        errs,
        f,
        &["postgres", "postgresql"],
        "url = \"postgres://USER@HOST:5432/DBNAME\"",
    );
    let password = secret(errs, f, base);
    let count_tables = f.opt_table(errs, "counts").and_then(|t| {
        let mut cf = Fields::new(f.file(), f.path("counts"), t);
        let tables = cf
            .str_list(errs, "tables")
            .map(|v| v.into_iter().map(str::to_string).collect());
        cf.finish(errs, &["tables"]);
        tables
    });
    let freshness = f.opt_str(errs, "freshness").map(str::to_string);
    let bin_dir = f.opt_str(errs, "pg-bin").map(|p| base.join(p));
    let ssl_root_cert = f.opt_str(errs, "ssl-root-cert").map(|p| base.join(p));
    Some(PostgresConfig {
        url: url?,
        password,
        count_tables,
        freshness,
        bin_dir,
        ssl_root_cert,
    })
}

pub(crate) fn read_redis(
    errs: &mut Vec<PolicyError>,
    f: &mut Fields<'_>,
    base: &Path,
) -> Option<RedisConfig> {
    let url = url_without_password(errs, f, &["redis"], "url = \"redis://HOST:6379\"");
    let password = secret(errs, f, base);
    let rdb_path = f.opt_str(errs, "rdb-path").map(|p| base.join(p));
    let mode = match f.opt_str(errs, "mode").unwrap_or("replication") {
        "replication" => Some(RedisMode::Replication),
        "bgsave" => match rdb_path {
            Some(rdb_path) => Some(RedisMode::Bgsave { rdb_path }),
            None => {
                f.error(errs, "rdb-path", "missing: mode = \"bgsave\" reads the server's RDB file (add rdb-path = \"/var/lib/redis/dump.rdb\")");
                None
            }
        },
        other => {
            f.error(
                errs,
                "mode",
                format!("`{other}`: use \"replication\" or \"bgsave\""),
            );
            None
        }
    };
    let tolerance = match f.opt_table(errs, "tolerance") {
        None => Tolerance::Exact,
        Some(t) => {
            let mut tf = Fields::new(f.file(), f.path("tolerance"), t);
            let tol = match t.get("keys") {
                None => Tolerance::Exact,
                Some(toml::Value::Integer(n)) if *n >= 0 => Tolerance::Absolute(*n as u64),
                Some(toml::Value::String(s)) => match s
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse::<f64>().ok())
                    .filter(|p| (0.0..=100.0).contains(p))
                {
                    Some(p) => Tolerance::Percent(p),
                    None => {
                        tf.error(
                            errs,
                            "keys",
                            format!("`{s}`: write a percentage such as \"1%\" or a number of keys"),
                        );
                        Tolerance::Exact
                    }
                },
                Some(other) => {
                    tf.error(
                        errs,
                        "keys",
                        format!("`{other}`: write a percentage such as \"1%\" or a number of keys"),
                    );
                    Tolerance::Exact
                }
            };
            tf.opt_value("keys");
            tf.finish(errs, &["keys"]);
            tol
        }
    };
    let cli = PathBuf::from(f.opt_str(errs, "redis-cli").unwrap_or("redis-cli"));
    let server = PathBuf::from(f.opt_str(errs, "redis-server").unwrap_or("redis-server"));
    let restore = match f.opt_table(errs, "restore") {
        None => RedisRestore {
            rdb_name: "dump.rdb".into(),
            restart: None,
            check_url: None,
            restart_in_drills: false,
        },
        Some(t) => {
            let mut rf = Fields::new(f.file(), f.path("restore"), t);
            let r = RedisRestore {
                rdb_name: rf
                    .opt_str(errs, "rdb-name")
                    .unwrap_or("dump.rdb")
                    .to_string(),
                restart: command(errs, &mut rf, "restart"),
                check_url: rf.opt_str(errs, "check-url").map(str::to_string),
                restart_in_drills: opt_bool(errs, &mut rf, "restart-in-drills"),
            };
            if r.restart_in_drills && r.restart.is_none() && r.check_url.is_none() {
                rf.error(
                    errs,
                    "restart-in-drills",
                    "set, but there is no `restart` or `check-url` to run in a drill (remove it, or add them)",
                );
            }
            rf.finish(
                errs,
                &["rdb-name", "restart", "check-url", "restart-in-drills"],
            );
            r
        }
    };
    Some(RedisConfig {
        url: url?,
        password,
        mode: mode?,
        tolerance,
        cli,
        server,
        restore,
    })
}

pub(crate) fn read_faiss(
    errs: &mut Vec<PolicyError>,
    f: &mut Fields<'_>,
    base: &Path,
) -> Option<FaissConfig> {
    let paths: Vec<PathBuf> = match f.str_list(errs, "paths") {
        Some(p) if !p.is_empty() => p.into_iter().map(|p| base.join(p)).collect(),
        Some(_) | None => {
            f.error(errs, "paths", "missing or empty (list the index files and their sidecars, e.g. paths = [\"index.faiss\", \"ids.json\"])");
            return None;
        }
    };
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in paths.iter().enumerate() {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        match name {
            Some(n) if names.insert(n.clone()) => {}
            _ => f.error(
                errs,
                &format!("paths[{i}]"),
                "file names must be distinct: they are restored side by side",
            ),
        }
    }
    let post_restore = command(errs, f, "post-restore");
    let post_restore_timeout = f
        .opt_duration(errs, "post-restore-timeout")
        .and_then(|d| d.to_std().ok())
        .unwrap_or(std::time::Duration::from_secs(300));
    let post_restore_in_drills = opt_bool(errs, f, "post-restore-in-drills");
    if post_restore_in_drills && post_restore.is_none() {
        f.error(
            errs,
            "post-restore-in-drills",
            "set, but there is no `post-restore` command to run in a drill (remove it, or add post-restore)",
        );
    }
    Some(FaissConfig {
        paths,
        post_restore,
        post_restore_timeout,
        post_restore_in_drills,
    })
}

/// A copy of every snapshot of an RDS source into another region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdsCopy {
    /// The region the copy lives in (e.g. the DR region).
    pub region: String,
    /// KMS key the copy is re-encrypted with (required by RDS for encrypted snapshots
    /// copied across regions, since KMS keys are regional).
    pub kms_key_id: Option<String>,
}

/// The instance whose freshness is read right after a snapshot completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdsFreshness {
    /// `postgres://user@host:port/dbname`, without a password.
    pub url: String,
    /// The password, if not from `.pgpass`.
    pub password: SecretRef,
    /// A query returning one timestamp.
    pub query: String,
    /// CA certificates (PEM) that sign the server's certificate (the RDS bundle).
    pub ssl_root_cert: Option<PathBuf>,
}

/// An RDS DB instance, backed up as manual snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdsConfig {
    /// The DB instance identifier.
    pub instance: String,
    /// The instance's region (default: the standard AWS chain).
    pub region: Option<String>,
    /// Endpoint URL of the RDS API (VPC endpoints, test servers); default: AWS's.
    pub endpoint: Option<String>,
    /// Regions every snapshot is copied to.
    pub copies: Vec<RdsCopy>,
    /// How long to wait for a snapshot (or a copy) to become available.
    pub wait_timeout: std::time::Duration,
    /// Freshness read from the instance after the snapshot (an approximate count).
    pub freshness: Option<RdsFreshness>,
}

pub(crate) const RDS_KEYS: &[&str] = &[
    "instance",
    "region",
    "endpoint",
    "copy-to-regions",
    "wait-timeout",
    "freshness",
];

/// An AWS region name as AWS spells them (`us-west-2`, `eu-central-1`).
fn is_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

pub(crate) fn read_rds(
    errs: &mut Vec<PolicyError>,
    f: &mut Fields<'_>,
    base: &Path,
) -> Option<RdsConfig> {
    let n = errs.len();
    let instance = f.req_str(errs, "instance", "instance = \"DB-INSTANCE-IDENTIFIER\"");
    // RDS identifiers: 1-63 letters, digits and hyphens, starting with a letter.
    if let Some(i) = instance
        && !(i.len() <= 63
            && i.starts_with(|c: char| c.is_ascii_alphabetic())
            && i.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !i.ends_with('-')
            && !i.contains("--"))
    {
        f.error(
            errs,
            "instance",
            format!("`{i}` is not a DB instance identifier (1-63 letters, digits and single hyphens, starting with a letter)"),
        );
    }
    let region = f.opt_str(errs, "region").map(str::to_string);
    if let Some(r) = &region
        && !is_region(r)
    {
        f.error(
            errs,
            "region",
            format!("`{r}` is not a region name (e.g. \"us-east-1\")"),
        );
    }
    let endpoint = super::http_url(errs, f, "endpoint");
    let mut copies: Vec<RdsCopy> = Vec::new();
    match f.opt_value("copy-to-regions") {
        None => {}
        Some(toml::Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let key = format!("copy-to-regions[{i}]");
                let Some(t) = item.as_table() else {
                    f.error(errs, &key, "expected a table, e.g. { region = \"us-west-2\", kms-key-id = \"alias/lifeboat\" }");
                    continue;
                };
                let mut cf = Fields::new(f.file(), f.path(&key), t);
                let r = cf.req_str(errs, "region", "region = \"us-west-2\"");
                let kms_key_id = cf.opt_str(errs, "kms-key-id").map(str::to_string);
                cf.finish(errs, &["region", "kms-key-id"]);
                let Some(r) = r else { continue };
                if !is_region(r) {
                    f.error(errs, &format!("{key}.region"), format!("`{r}` is not a region name (e.g. \"us-west-2\")"));
                } else if region.as_deref() == Some(r) {
                    f.error(errs, &format!("{key}.region"), format!("`{r}` is the instance's own region: a copy protects only in another region"));
                } else if copies.iter().any(|c| c.region == r) {
                    f.error(errs, &format!("{key}.region"), format!("`{r}` is listed twice"));
                } else {
                    copies.push(RdsCopy {
                        region: r.to_string(),
                        kms_key_id,
                    });
                }
            }
        }
        Some(other) => f.error(
            errs,
            "copy-to-regions",
            format!("expected a list of tables, found `{other}` (write copy-to-regions = [{{ region = \"us-west-2\" }}])"),
        ),
    }
    let wait_timeout = f
        .opt_duration(errs, "wait-timeout")
        .and_then(|d| d.to_std().ok())
        .unwrap_or(std::time::Duration::from_secs(2 * 3600));
    let freshness = f.opt_table(errs, "freshness").and_then(|t| {
        let mut ff = Fields::new(f.file(), f.path("freshness"), t);
        let url = url_without_password(
            errs,
            &mut ff,
            &["postgres", "postgresql"],
            "url = \"postgres://USER@INSTANCE-ENDPOINT:5432/DBNAME\"",
        );
        let password = secret(errs, &mut ff, base);
        let query = ff.req_str(
            errs,
            "query",
            "query = \"SELECT max(created_at) FROM orders\"",
        );
        let ssl_root_cert = ff.opt_str(errs, "ssl-root-cert").map(|p| base.join(p));
        ff.finish(
            errs,
            &[
                "url",
                "password-env",
                "password-file",
                "query",
                "ssl-root-cert",
            ],
        );
        Some(RdsFreshness {
            url: url?,
            password,
            query: query?.to_string(),
            ssl_root_cert,
        })
    });
    (errs.len() == n).then(|| RdsConfig {
        instance: instance.unwrap_or_default().to_string(),
        region,
        endpoint,
        copies,
        wait_timeout,
        freshness,
    })
}
/// Whether `name` is a Neo4j database name: an ASCII letter, then letters, digits, dots
/// and dashes, at most 63 characters. It goes into URL paths and Cypher, so nothing
/// else is accepted.
pub fn is_neo4j_database_name(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

/// The HTTP endpoint of a Neo4j server: http or https, no credentials, no query.
fn neo4j_http_url(errs: &mut Vec<PolicyError>, f: &mut Fields<'_>) -> Option<String> {
    let hint = "http-url = \"http://HOST:7474\"";
    let u = f.req_str(errs, "http-url", hint)?;
    let parsed = match url::Url::parse(u) {
        Ok(p) if ["http", "https"].contains(&p.scheme()) && p.has_host() => p,
        _ => {
            // Never echo the value: it may hold credentials.
            f.error(
                errs,
                "http-url",
                format!("not an http or https URL ({hint})"),
            );
            return None;
        }
    };
    if parsed.password().is_some() || !parsed.username().is_empty() {
        f.error(
            errs,
            "http-url",
            "holds credentials: remove them and use user with password-env or password-file",
        );
        return None;
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        f.error(
            errs,
            "http-url",
            format!("must not have a query or fragment ({hint})"),
        );
        return None;
    }
    Some(u.trim_end_matches('/').to_string())
}

pub(crate) fn read_neo4j(
    errs: &mut Vec<PolicyError>,
    f: &mut Fields<'_>,
    base: &Path,
) -> Option<Neo4jConfig> {
    let http_url = neo4j_http_url(errs, f);
    let database = f.opt_str(errs, "database").unwrap_or("neo4j").to_string();
    let database_ok = is_neo4j_database_name(&database);
    if !database_ok {
        f.error(
            errs,
            "database",
            format!(
                "`{database}` is not a Neo4j database name (a letter, then letters, digits, dots or dashes)"
            ),
        );
    }
    let user = f.opt_str(errs, "user").unwrap_or("neo4j").to_string();
    let password = secret(errs, f, base);
    let neo4j_admin = f
        .opt_str(errs, "neo4j-admin")
        .unwrap_or("neo4j-admin")
        .to_string();
    let wrapper = match f.opt_value("wrapper") {
        None => Vec::new(),
        Some(_) => command(errs, f, "wrapper").unwrap_or_default(),
    };
    let given = [
        f.opt_value("stop").is_some(),
        f.opt_value("start").is_some(),
    ];
    let stop = command(errs, f, "stop");
    let start = command(errs, f, "start");
    let backup_path = f.opt_str(errs, "backup-path").map(str::to_string);
    let mode = match f.req_str(
        errs,
        "mode",
        "mode = \"online-backup\" (Enterprise) or \"offline-dump\" (Community)",
    ) {
        Some("online-backup") => {
            if given[0] != given[1] {
                let missing = if given[0] { "start" } else { "stop" };
                f.error(
                    errs,
                    missing,
                    "missing: give both stop and start, or neither (the database is then stopped and started with Cypher on the system database for a restore)",
                );
            }
            match (&backup_path, wrapper.is_empty()) {
                (None, false) => {
                    f.error(errs, "backup-path", "missing: with a wrapper, the backup is written inside the container (add backup-path = \"/backups\", a folder there with room for one backup)");
                    None
                }
                (Some(p), false) if !p.starts_with('/') => {
                    f.error(
                        errs,
                        "backup-path",
                        format!("`{p}`: write an absolute path inside the container"),
                    );
                    None
                }
                (Some(_), true) => {
                    f.error(errs, "backup-path", "only used with a wrapper (without one, the backup is written to the spool folder); remove it");
                    None
                }
                _ => Some(Neo4jMode::OnlineBackup {
                    backup_path: backup_path.clone(),
                }),
            }
        }
        Some("offline-dump") => {
            for (key, given, example) in [
                ("stop", given[0], "[\"systemctl\", \"stop\", \"neo4j\"]"),
                ("start", given[1], "[\"systemctl\", \"start\", \"neo4j\"]"),
            ] {
                if !given {
                    f.error(
                        errs,
                        key,
                        format!("missing: mode = \"offline-dump\" stops the server for the dump (add {key} = {example})"),
                    );
                }
            }
            if backup_path.is_some() {
                f.error(
                    errs,
                    "backup-path",
                    "only used by mode = \"online-backup\"; remove it",
                );
            }
            Some(Neo4jMode::OfflineDump)
        }
        Some(other) => {
            f.error(
                errs,
                "mode",
                format!(
                    "`{other}`: use \"online-backup\" (Enterprise) or \"offline-dump\" (Community)"
                ),
            );
            None
        }
        None => None,
    };
    let counts = match f.opt_table(errs, "counts") {
        None => Neo4jCounts::default(),
        Some(t) => {
            let mut cf = Fields::new(f.file(), f.path("counts"), t);
            let mut list = |cf: &mut Fields<'_>, key: &str| -> Vec<String> {
                let items = cf.str_list(errs, key).unwrap_or_default();
                for (i, item) in items.iter().enumerate() {
                    if item.is_empty() {
                        cf.error(errs, &format!("{key}[{i}]"), "empty name");
                    }
                }
                items.into_iter().map(str::to_string).collect()
            };
            let c = Neo4jCounts {
                labels: list(&mut cf, "labels"),
                relationship_types: list(&mut cf, "relationship-types"),
            };
            cf.finish(errs, &["labels", "relationship-types"]);
            c
        }
    };
    let timeout = |f: &mut Fields<'_>, errs: &mut Vec<PolicyError>, key: &str, default: u64| {
        f.opt_duration(errs, key)
            .and_then(|d| d.to_std().ok())
            .unwrap_or(std::time::Duration::from_secs(default))
    };
    let command_timeout = timeout(f, errs, "command-timeout", 600);
    let start_timeout = timeout(f, errs, "start-timeout", 300);
    if !database_ok {
        return None;
    }
    Some(Neo4jConfig {
        http_url: http_url?,
        database,
        user,
        password,
        mode: mode?,
        neo4j_admin,
        wrapper,
        stop,
        start,
        counts,
        command_timeout,
        start_timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{PolicySet, SourceConfig};
    use super::*;

    /// The policy set of one file holding a local repository and `source` as
    /// `[sources.graph]`.
    fn check(source: &str) -> Result<PolicySet, String> {
        let text = format!(
            "[repositories.local]\nurl = \"file:./repo\"\n[sources.graph]\nkind = \"neo4j\"\ndestinations = [\"local\"]\n{source}"
        );
        PolicySet::from_texts(
            PathBuf::from("/set"),
            &[(PathBuf::from("/set/p.toml"), text)],
        )
        .map_err(|e| e.to_string())
    }

    fn neo4j(set: &PolicySet) -> &Neo4jConfig {
        match &set.sources["graph"].config {
            SourceConfig::Neo4j(c) => c,
            other => panic!("not neo4j: {other:?}"),
        }
    }

    #[test]
    fn an_offline_dump_source_gets_its_defaults() {
        let set = check(
            r#"
            http-url = "http://neo4j.db.svc:7474/"
            mode = "offline-dump"
            password-env = "NEO4J_PASSWORD"
            stop = ["systemctl", "stop", "neo4j"]
            start = ["systemctl", "start", "neo4j"]
            counts = { labels = ["Person"], relationship-types = ["KNOWS"] }
            "#,
        )
        .unwrap();
        let c = neo4j(&set);
        assert_eq!(c.http_url, "http://neo4j.db.svc:7474");
        assert_eq!(c.database, "neo4j");
        assert_eq!(c.user, "neo4j");
        assert_eq!(c.neo4j_admin, "neo4j-admin");
        assert_eq!(c.mode, Neo4jMode::OfflineDump);
        assert_eq!(c.password, SecretRef::Env("NEO4J_PASSWORD".into()));
        assert!(c.wrapper.is_empty());
        assert_eq!(c.counts.labels, ["Person"]);
        assert_eq!(c.counts.relationship_types, ["KNOWS"]);
        assert_eq!(c.command_timeout, std::time::Duration::from_secs(600));
        assert_eq!(c.start_timeout, std::time::Duration::from_secs(300));
        assert_eq!(set.sources["graph"].config.kind(), "neo4j");
    }

    #[test]
    fn an_online_backup_through_a_wrapper_writes_inside_the_container() {
        let set = check(
            r#"
            http-url = "https://neo4j.example:7473"
            mode = "online-backup"
            database = "sales.eu-1"
            user = "backup"
            password-file = "secrets/neo4j"
            wrapper = ["kubectl", "exec", "-i", "neo4j-0", "-n", "db", "--"]
            backup-path = "/backups"
            command-timeout = "2m"
            start-timeout = "30s"
            "#,
        )
        .unwrap();
        let c = neo4j(&set);
        assert_eq!(
            c.mode,
            Neo4jMode::OnlineBackup {
                backup_path: Some("/backups".into())
            }
        );
        assert_eq!(c.wrapper.len(), 7);
        assert_eq!(c.password, SecretRef::File("/set/secrets/neo4j".into()));
        assert_eq!(c.command_timeout, std::time::Duration::from_secs(120));
        assert_eq!(c.start_timeout, std::time::Duration::from_secs(30));
    }

    #[test]
    fn an_offline_dump_without_stop_and_start_names_both_keys() {
        let e = check("http-url = \"http://h:7474\"\nmode = \"offline-dump\"").unwrap_err();
        assert!(
            e.contains(
                "/set/p.toml: sources.graph.stop: missing: mode = \"offline-dump\" stops the server"
            ),
            "{e}"
        );
        assert!(
            e.contains("/set/p.toml: sources.graph.start: missing"),
            "{e}"
        );
    }

    #[test]
    fn credentials_in_the_url_are_refused_and_never_echoed() {
        let e = check("http-url = \"http://neo4j:hunter2@h:7474\"\nmode = \"online-backup\"")
            .unwrap_err();
        assert!(
            e.contains("sources.graph.http-url: holds credentials"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        let e = check("http-url = \"bolt://neo4j:hunter2@h:7687\"\nmode = \"online-backup\"")
            .unwrap_err();
        assert!(
            e.contains("sources.graph.http-url: not an http or https URL"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn every_mistake_is_reported_at_once_with_its_field() {
        let e = check(
            r#"
            mode = "hot"
            database = "../etc"
            wrapper = []
            password-env = "A"
            password-file = "b"
            counts = { labels = ["Person"], types = ["KNOWS"] }
            start-timeout = "soon"
            stop-command = ["x"]
            "#,
        )
        .unwrap_err();
        for want in [
            "sources.graph.http-url: missing (add http-url = \"http://HOST:7474\")",
            "sources.graph.mode: `hot`: use \"online-backup\" (Enterprise) or \"offline-dump\" (Community)",
            "sources.graph.database: `../etc` is not a Neo4j database name",
            "sources.graph.wrapper: empty",
            "sources.graph.password-file: give password-env or password-file, not both",
            "sources.graph.counts.types: unknown key",
            "sources.graph.start-timeout: ",
            "sources.graph.stop-command: unknown key (did you mean `stop`?",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
        assert_eq!(e.lines().count(), 8, "{e}");
    }

    #[test]
    fn a_wrapper_needs_a_backup_path_for_online_backups() {
        let base = "http-url = \"http://h:7474\"\nmode = \"online-backup\"\n";
        let e = check(&format!(
            "{base}wrapper = [\"docker\", \"exec\", \"-i\", \"neo4j\"]"
        ))
        .unwrap_err();
        assert!(
            e.contains("sources.graph.backup-path: missing: with a wrapper"),
            "{e}"
        );
        let e = check(&format!(
            "{base}wrapper = [\"docker\", \"exec\", \"-i\", \"neo4j\"]\nbackup-path = \"backups\""
        ))
        .unwrap_err();
        assert!(e.contains("`backups`: write an absolute path"), "{e}");
        let e = check(&format!("{base}backup-path = \"/backups\"")).unwrap_err();
        assert!(
            e.contains("sources.graph.backup-path: only used with a wrapper"),
            "{e}"
        );
        let e = check(&format!(
            "{base}stop = [\"systemctl\", \"stop\", \"neo4j\"]"
        ))
        .unwrap_err();
        assert!(
            e.contains("sources.graph.start: missing: give both stop and start"),
            "{e}"
        );
    }
}

/// Keys of a `files` source.
pub(crate) const FILES_KEYS: &[&str] = &["paths"];

/// One entry of a `files` source's `paths`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesPath {
    /// Its name in the archive and under a restore target: the path as written, without
    /// a leading `/` or `./` or a trailing `/`.
    pub name: String,
    /// Where it is read (relative paths are taken from the policy file's folder).
    pub path: PathBuf,
}

/// Files and folders backed up together as one archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesConfig {
    /// The files and folders (folders are read recursively), in policy order.
    pub paths: Vec<FilesPath>,
}

/// The archive name of a `paths` entry, or why it is refused.
fn files_entry_name(written: &str) -> Result<String, String> {
    use std::path::Component;
    if written.contains(['*', '?', '[']) {
        return Err(format!(
            "`{written}`: globs are not supported; list the files or their folder"
        ));
    }
    let mut parts = Vec::new();
    for c in Path::new(written).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => {
                return Err(format!(
                    "`{written}`: `..` is not allowed (entries are restored under the target folder by this name); move the policy or give an absolute path"
                ));
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if parts.is_empty() {
        return Err(format!(
            "`{written}`: names no file or folder (name the folders to back up, not the policy folder itself)"
        ));
    }
    Ok(parts.join("/"))
}

pub(crate) fn read_files(
    errs: &mut Vec<PolicyError>,
    f: &mut Fields<'_>,
    base: &Path,
) -> Option<FilesConfig> {
    let written = match f.str_list(errs, "paths") {
        Some(p) if !p.is_empty() => p,
        _ => {
            f.error(
                errs,
                "paths",
                "missing or empty (list files and folders, relative to the policy file, e.g. paths = [\"values/\", \"k8s/app.yaml\"])",
            );
            return None;
        }
    };
    let n = errs.len();
    let mut paths: Vec<FilesPath> = Vec::new();
    for (i, w) in written.iter().enumerate() {
        let field = format!("paths[{i}]");
        let name = match files_entry_name(w) {
            Ok(name) => name,
            Err(e) => {
                f.error(errs, &field, e);
                continue;
            }
        };
        let inside = |outer: &str, inner: &str| inner.starts_with(&format!("{outer}/"));
        if paths.iter().any(|p| p.name == name) {
            f.error(errs, &field, format!("`{w}` is listed twice"));
            continue;
        }
        if let Some(other) = paths
            .iter()
            .find(|p| inside(&p.name, &name) || inside(&name, &p.name))
        {
            let (inner, outer) = if inside(&other.name, &name) {
                (w.to_string(), other.name.clone())
            } else {
                (other.name.clone(), w.to_string())
            };
            f.error(
                errs,
                &field,
                format!("`{inner}` is inside `{outer}`: list it once"),
            );
            continue;
        }
        paths.push(FilesPath {
            name,
            path: base.join(w),
        });
    }
    (errs.len() == n).then_some(FilesConfig { paths })
}
