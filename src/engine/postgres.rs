//! PostgreSQL (self-managed, or an RDS endpoint): a logical backup with `pg_dump`,
//! counted in the very snapshot it dumps.
//!
//! Backup: one session opens a `REPEATABLE READ, READ ONLY` transaction and exports its
//! snapshot (`pg_export_snapshot()`); `pg_dump --format=custom -Z0 --snapshot=ID` dumps
//! exactly that snapshot to its stdout, which is streamed (never a temporary file of the
//! whole dump; our pipeline compresses, faster and smaller than pg_dump's zlib). While
//! the dump streams, the first session counts rows per table and reads the configured
//! freshness query in the same snapshot, so the counts describe exactly the dumped data;
//! it holds the snapshot open until pg_dump has finished. The freshness value, when
//! configured, is the backup's consistency point.
//!
//! Restore: streamed into `pg_restore` (one job: parallel jobs would need the whole
//! dump on disk first) into a staging database beside the target, recounted and compared; then
//! swapped in by renaming both databases in one transaction. On any mismatch the staging
//! database is dropped and the target is untouched.
//!
//! The password comes from the policy's `password-env` / `password-file` (or .pgpass),
//! reaches child processes only as `PGPASSWORD` in their environment, and is never on a
//! command line or in any message.

use super::counts::Counts;
use super::spool::Spool;
use super::{Engine, RestoreJob, RestoreOutcome, Snapshot, SnapshotCounts};
use crate::error::{Error, Result};
use crate::policy::PostgresConfig;
use crate::storage::{Check, CheckStatus};
use chrono::{DateTime, Utc};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::runtime::Handle;
use tokio_postgres::Client;

/// Keep this much of a child's stderr for error messages.
const STDERR_KEEP: usize = 16 << 10;

/// The PostgreSQL engine of one source.
#[derive(Debug, Clone)]
pub struct PostgresEngine {
    cfg: PostgresConfig,
}

/// Connection settings of one database, with the password kept apart from the URL.
#[derive(Clone)]
struct Target {
    /// The URL as given, without a password.
    url: String,
    config: tokio_postgres::Config,
    password: Option<String>,
    /// CA bundle for TLS (None: the public web roots).
    root_cert: Option<PathBuf>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl Target {
    fn parse(url: &str, password: Option<String>, root_cert: Option<PathBuf>) -> Result<Target> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            Error::bad_input(format!(
                "`{}`: not a PostgreSQL URL ({e}); write postgres://USER@HOST:5432/DBNAME",
                redact(url)
            ))
        })?;
        if config.get_password().is_some() {
            return Err(Error::bad_input(
                "the PostgreSQL URL holds a password: remove it and use password-env or password-file",
            ));
        }
        let password = password.or_else(|| {
            // As pg_dump would: ~/.pgpass, for the session that counts.
            let host = config.get_hosts().iter().find_map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => Some(h.clone()),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(_) => None,
            })?;
            let port = config.get_ports().first().copied().unwrap_or(5432);
            pgpass(&host, port, config.get_dbname()?, config.get_user()?)
        });
        if let Some(p) = &password {
            config.password(p);
        }
        Ok(Target {
            url: url.to_string(),
            config,
            password,
            root_cert,
        })
    }

    fn dbname(&self) -> Result<&str> {
        self.config.get_dbname().ok_or_else(|| {
            Error::bad_input(format!(
                "`{}` names no database; write postgres://USER@HOST:5432/DBNAME",
                self.url
            ))
        })
    }

    /// The same server, another database.
    fn with_db(&self, db: &str) -> Target {
        let mut t = self.clone();
        t.config.dbname(db);
        t.url = format!("{} (database {db})", self.url);
        t
    }

    async fn connect(&self) -> Result<Client> {
        let (client, connection) = self
            .config
            .connect(self.tls()?)
            .await
            .map_err(|e| pg_error(&format!("connecting to {}", self.url), e))?;
        tokio::spawn(async move {
            // Errors surface on the client's next call.
            let _ = connection.await;
        });
        Ok(client)
    }

    /// TLS as the URL's sslmode says (default prefer: TLS when the server offers it),
    /// always with the server's certificate verified.
    fn tls(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                use rustls::pki_types::CertificateDer;
                use rustls::pki_types::pem::PemObject;
                let bad = |e: &dyn std::fmt::Display| {
                    Error::bad_input(format!("ssl-root-cert {}: {e}", path.display()))
                };
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                    roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::failed(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }

    /// A libpq connection string for child processes: no password in it.
    fn conninfo(&self) -> String {
        let mut parts = Vec::new();
        let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        for h in self.config.get_hosts() {
            if let tokio_postgres::config::Host::Tcp(h) = h {
                parts.push(format!("host={}", quote(h)));
            }
            #[cfg(unix)]
            if let tokio_postgres::config::Host::Unix(p) = h {
                parts.push(format!("host={}", quote(&p.to_string_lossy())));
            }
        }
        if let Some(p) = self.config.get_ports().first() {
            parts.push(format!("port={p}"));
        }
        if let Some(u) = self.config.get_user() {
            parts.push(format!("user={}", quote(u)));
        }
        if let Some(d) = self.config.get_dbname() {
            parts.push(format!("dbname={}", quote(d)));
        }
        match self.config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => parts.push("sslmode=disable".into()),
            tokio_postgres::config::SslMode::Require => parts.push(if self.root_cert.is_some() {
                "sslmode=verify-full".into()
            } else {
                "sslmode=require".into()
            }),
            _ => {}
        }
        if let Some(p) = &self.root_cert {
            parts.push(format!("sslrootcert={}", quote(&p.to_string_lossy())));
        }
        parts.join(" ")
    }

    /// A child command with the password in its environment only.
    fn command(&self, program: PathBuf) -> Command {
        let mut c = Command::new(program);
        c.env_remove("PGPASSWORD");
        if let Some(p) = &self.password {
            c.env("PGPASSWORD", p);
        }
        c
    }
}

/// The password for (host, port, db, user) in a `.pgpass` file, as libpq finds it:
/// `$PGPASSFILE`, else `~/.pgpass`; lines `host:port:db:user:password`, `*` matches any
/// value, `\:` and `\\` escape. Like libpq, a file readable by others is ignored.
fn pgpass(host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let path = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(file = %path.display(), "ignoring a password file readable by others (chmod 600 it)");
            return None;
        }
    }
    pgpass_lookup(&std::fs::read_to_string(path).ok()?, host, port, db, user)
}

fn pgpass_lookup(text: &str, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => cur.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() != 5 {
            continue;
        }
        let ok = |f: &str, v: &str| f == "*" || f == v;
        if ok(&fields[0], host)
            && ok(&fields[1], &port)
            && ok(&fields[2], db)
            && ok(&fields[3], user)
        {
            return Some(fields[4].clone());
        }
    }
    None
}

/// A URL with any password replaced, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn pg_error(what: &str, e: tokio_postgres::Error) -> Error {
    let mut detail = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    };
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        detail.push_str(&format!(": {c}"));
        cause = c.source();
    }
    if detail.contains("TLS") || detail.contains("certificate") {
        detail.push_str(
            " (set ssl-root-cert to the CA bundle that signs the server's certificate, \
             e.g. the RDS bundle, or sslmode=disable in the URL on a trusted network)",
        );
    }
    Error::failed(format!("{what}: {detail}"))
}

/// Quote an identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The count name of a table: `rows.TABLE` in schema public, `rows.SCHEMA.TABLE` else.
fn count_name(schema: &str, table: &str) -> String {
    if schema == "public" {
        format!("rows.{table}")
    } else {
        format!("rows.{schema}.{table}")
    }
}

/// Count rows of the user tables (or those listed) in the client's current snapshot.
async fn count_rows(client: &Client, only: Option<&[String]>) -> Result<Counts> {
    let rows = client
        .query(
            "SELECT schemaname, tablename FROM pg_catalog.pg_tables
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| pg_error("listing tables", e))?;
    let mut out = Counts::new();
    for r in rows {
        let (schema, table): (String, String) = (r.get(0), r.get(1));
        let name = count_name(&schema, &table);
        if let Some(only) = only
            && !only
                .iter()
                .any(|t| t == &table || *t == format!("{schema}.{table}"))
        {
            continue;
        }
        let n: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {}.{}", ident(&schema), ident(&table)),
                &[],
            )
            .await
            .map_err(|e| pg_error(&format!("counting {schema}.{table}"), e))?
            .get(0);
        out.insert(name, n.max(0) as u64);
    }
    if let Some(only) = only {
        for t in only {
            let found = out
                .keys()
                .any(|k| k == &format!("rows.{t}") || k.ends_with(&format!(".{t}")));
            if !found {
                return Err(Error::bad_input(format!(
                    "counts.tables names `{t}`, which the database does not have"
                )));
            }
        }
    }
    Ok(out)
}

/// Read a freshness query's value from a live database, outside any snapshot (RDS:
/// right after the instance's snapshot completed).
pub(crate) async fn read_freshness(
    url: &str,
    password: Option<String>,
    root_cert: Option<PathBuf>,
    sql: &str,
) -> Result<Option<DateTime<Utc>>> {
    let target = Target::parse(url, password, root_cert)?;
    let client = target.connect().await?;
    freshness(&client, sql).await
}

/// Run the freshness query; its single value is a timestamp.
async fn freshness(client: &Client, sql: &str) -> Result<Option<DateTime<Utc>>> {
    let row = client
        .query_one(sql, &[])
        .await
        .map_err(|e| pg_error(&format!("freshness query `{sql}`"), e))?;
    // timestamptz reads as a UTC instant; a plain timestamp is taken as UTC.
    if let Ok(v) = row.try_get::<_, Option<DateTime<Utc>>>(0) {
        return Ok(v);
    }
    row.try_get::<_, Option<chrono::NaiveDateTime>>(0)
        .map(|v| v.map(|t| t.and_utc()))
        .map_err(|e| {
            Error::bad_input(format!(
                "freshness query `{sql}` must return one timestamp or timestamptz ({e})"
            ))
        })
}

/// Collects the tail of a child's stderr on a thread.
fn collect_stderr(child: &mut Child) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    if let Some(mut err) = child.stderr.take() {
        let b = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut v = b.lock().unwrap_or_else(|e| e.into_inner());
                v.extend_from_slice(&chunk[..n]);
                if v.len() > STDERR_KEEP {
                    let cut = v.len() - STDERR_KEEP;
                    v.drain(..cut);
                }
            }
        });
    }
    buf
}

fn stderr_text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap_or_else(|e| e.into_inner()))
        .trim()
        .to_string()
}

/// pg_dump's stdout; at its end, the exit status is checked, and the counting session
/// is told the dump is over (dropping `done`).
struct DumpReader {
    child: Child,
    stdout: ChildStdout,
    stderr: Arc<Mutex<Vec<u8>>>,
    done: Option<tokio::sync::oneshot::Sender<()>>,
    finished: bool,
}

impl Read for DumpReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stdout.read(buf)?;
        if n == 0 && !self.finished {
            self.finished = true;
            let status = self.child.wait()?;
            self.done.take();
            if !status.success() {
                return Err(io::Error::other(format!(
                    "pg_dump failed ({status}): {}",
                    stderr_text(&self.stderr)
                )));
            }
        }
        Ok(n)
    }
}

impl Drop for DumpReader {
    fn drop(&mut self) {
        if !self.finished {
            // Abandoned (a failed upload): stop the dump.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.done.take();
    }
}

/// The longest database name PostgreSQL keeps (NAMEDATALEN - 1); longer ones are cut.
const MAX_DB_NAME: usize = 63;

/// A database beside `db` for a restore's `role` (`staging`, or `old` for the replaced
/// database on its way out): `DB_lb_ROLE_PID_HOST_RANDOM`, named after this process so
/// that a later run can tell a dead restore's leftover from a live one (see
/// [`super::staging`]). `DB` is cut so that the whole fits.
fn staging_name(db: &str, role: &str) -> String {
    let me = super::staging::Owner::me();
    let tail = format!(
        "_lb_{role}_{}_{}_{:04x}",
        me.pid,
        me.host,
        rand::random::<u16>()
    );
    let mut head: String = db.to_string();
    while head.len() + tail.len() > MAX_DB_NAME {
        head.pop();
    }
    format!("{head}{tail}")
}

/// The comment a staging database carries: which target it stands beside, for whom.
/// A sweep trusts a name only with this comment (a cut name could match another
/// database's prefix).
fn staging_comment(db: &str, job: &RestoreJob) -> String {
    let me = super::staging::Owner::me();
    format!(
        "lifeboat staging of database {db}: source {}, backup {}, pid {} on host {}",
        job.source, job.backup_id, me.pid, me.host
    )
}

/// A SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The owner named in a staging database's name, when it is one of `db`'s.
fn staging_owner(name: &str, db: &str) -> Option<super::staging::Owner> {
    for role in ["staging", "old"] {
        if let Some(rest) = name.strip_prefix(&format!("{db}_lb_{role}_")) {
            let mut parts = rest.split('_');
            let pid = parts.next()?.parse().ok()?;
            let host = parts.next()?.to_string();
            return Some(super::staging::Owner { pid, host });
        }
    }
    None
}

/// Drop the staging databases beside `db` (and replaced databases left on their way
/// out) whose restore is dead: made on this host by a process that no longer runs,
/// labelled for `db`, and with no session on them. Returns what was dropped.
async fn sweep_databases(admin: &Target, db: &str) -> Result<Vec<String>> {
    let client = admin.connect().await?;
    let rows = client
        .query(
            "SELECT d.datname, coalesce(shobj_description(d.oid, 'pg_database'), ''),
                    (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname)
             FROM pg_database d WHERE d.datname LIKE '%\\_lb\\_staging\\_%' OR d.datname LIKE '%\\_lb\\_old\\_%'",
            &[],
        )
        .await
        .map_err(|e| pg_error("listing staging databases", e))?;
    let mut dropped = Vec::new();
    let label = format!("lifeboat staging of database {db}:");
    for r in rows {
        let (name, comment, sessions): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
        let owner = match staging_owner(&name, db) {
            Some(o) => Some(o),
            // A cut name: trust the label only.
            None if comment.starts_with(&label) => parse_comment_owner(&comment),
            None => None,
        };
        let Some(owner) = owner else { continue };
        // The replaced database carries no label: its name alone must match.
        let ours = comment.starts_with(&label) || staging_owner(&name, db).is_some();
        if !ours || sessions > 0 || !owner.is_local() || owner.may_be_alive() {
            continue;
        }
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                ident(&name)
            ))
            .await
            .map_err(|e| pg_error(&format!("dropping leftover staging database {name}"), e))?;
        tracing::info!(database = %name, "dropped the staging database of a restore that did not finish");
        dropped.push(format!("database {name}"));
    }
    Ok(dropped)
}

/// The owner in a staging database's label.
fn parse_comment_owner(comment: &str) -> Option<super::staging::Owner> {
    let rest = comment.split(", pid ").nth(1)?;
    let (pid, host) = rest.split_once(" on host ")?;
    Some(super::staging::Owner {
        pid: pid.parse().ok()?,
        host: host.trim().to_string(),
    })
}

impl PostgresEngine {
    /// The drill twin of a restore target: the same server, database `DB_drill_SUFFIX`,
    /// so that a drill never writes the database it rehearses restoring.
    pub fn drill_target(url: &str, suffix: &str) -> Result<String> {
        Self::renamed_target(url, &format!("drill_{suffix}"))
    }

    /// `url` with its database `DB` renamed `DB_SUFFIX` (same server, same options).
    pub fn renamed_target(url: &str, suffix: &str) -> Result<String> {
        let mut u = url::Url::parse(url).map_err(|e| {
            Error::bad_input(format!(
                "`{}`: a drill or trial restore renames the target database, which needs a URL postgres://USER@HOST:5432/DBNAME ({e})",
                redact(url)
            ))
        })?;
        let db = u.path().trim_start_matches('/').to_string();
        if db.is_empty() || db.contains('/') {
            return Err(Error::bad_input(format!(
                "`{}` names no database; write postgres://USER@HOST:5432/DBNAME",
                redact(url)
            )));
        }
        u.set_path(&format!("/{db}_{suffix}"));
        Ok(u.to_string())
    }

    /// The first column of the first row `sql` returns on a restore target, as text
    /// (empty for NULL), in a read-only transaction: a DR integrity check reads, it
    /// never writes.
    pub async fn query_target(&self, url: &str, sql: &str) -> Result<String> {
        let t = self.target(url)?;
        let client = t.connect().await?;
        client
            .batch_execute("BEGIN TRANSACTION READ ONLY")
            .await
            .map_err(|e| pg_error("starting a read-only transaction", e))?;
        // Preparing is the extended protocol, which takes exactly one statement: the
        // text cannot first switch the transaction to READ WRITE and then write.
        client.prepare(sql).await.map_err(|e| {
            pg_error(
                &format!("`{sql}` (an integrity query is one read-only statement)"),
                e,
            )
        })?;
        let rows = client
            .simple_query(sql)
            .await
            .map_err(|e| pg_error(&format!("`{sql}`"), e))?;
        let _ = client.batch_execute("ROLLBACK").await;
        let value = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
            _ => None,
        });
        value.ok_or_else(|| Error::failed(format!("`{sql}` returned no row")))
    }

    /// Drop a restore target's database (drill teardown); true when it existed.
    pub async fn drop_target(&self, url: &str) -> Result<bool> {
        let t = self.target(url)?;
        let db = t.dbname()?.to_string();
        let admin = t.with_db("postgres").connect().await?;
        let existed = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
            .await
            .map_err(|e| pg_error(&format!("looking up database {db}"), e))?
            .is_some();
        if existed {
            admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    ident(&db)
                ))
                .await
                .map_err(|e| pg_error(&format!("dropping database {db}"), e))?;
        }
        Ok(existed)
    }

    /// An engine for `cfg`.
    pub fn new(cfg: PostgresConfig) -> Self {
        PostgresEngine { cfg }
    }

    fn source(&self) -> Result<Target> {
        let password = self.cfg.password.resolve("postgres source")?;
        Target::parse(&self.cfg.url, password, self.cfg.ssl_root_cert.clone())
    }

    /// A restore target: a URL naming the database to create or replace; the
    /// password is the source's unless PGPASSWORD is set for lifeboat itself.
    fn target(&self, url: &str) -> Result<Target> {
        let password = match self.cfg.password.resolve("postgres target")? {
            Some(p) => Some(p),
            None => std::env::var("PGPASSWORD").ok(),
        };
        Target::parse(url, password, self.cfg.ssl_root_cert.clone())
    }

    fn bin(&self, name: &str) -> PathBuf {
        match &self.cfg.bin_dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        }
    }

    /// Count the tables of a target database (optionally only those configured).
    fn count(&self, target: &Target) -> Result<Counts> {
        let only = self.cfg.count_tables.clone();
        let t = target.clone();
        Handle::current().block_on(async move {
            let client = t.connect().await?;
            count_rows(&client, only.as_deref()).await
        })
    }

    /// The server's major version and whether the database has user tables.
    async fn probe(target: &Target) -> Result<(u32, bool)> {
        let client = target.connect().await?;
        let v: String = client
            .query_one("SHOW server_version_num", &[])
            .await
            .map_err(|e| pg_error("server version", e))?
            .get(0);
        let tables: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_tables
                 WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
                &[],
            )
            .await
            .map_err(|e| pg_error("listing tables", e))?
            .get(0);
        Ok((v.parse::<u32>().unwrap_or(0) / 10000, tables > 0))
    }

    /// The major version of a PostgreSQL client program.
    fn tool_major(&self, name: &str) -> Result<u32> {
        let out = Command::new(self.bin(name))
            .arg("--version")
            .output()
            .map_err(|e| {
                Error::io(
                    format!("running {name} (install postgresql-client, or set pg-bin)"),
                    e,
                )
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .find_map(|w| w.split('.').next()?.parse::<u32>().ok())
            .ok_or_else(|| Error::failed(format!("{name} --version said `{}`", text.trim())))
    }
}

impl Engine for PostgresEngine {
    fn snapshot(&self, _spool: &Spool, now: &dyn Fn() -> DateTime<Utc>) -> Result<Snapshot> {
        let source = self.source()?;
        let handle = Handle::current();
        let (snap_tx, snap_rx) = mpsc::channel::<Result<String>>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let only = self.cfg.count_tables.clone();
        let fresh_sql = self.cfg.freshness.clone();
        let consistency_point = now();

        // The session that exports the snapshot, counts in it, and keeps it open until
        // the dump is over.
        let s = source.clone();
        let counting = std::thread::spawn(move || {
            handle.block_on(async move {
                let client = match s.connect().await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = snap_tx.send(Err(e.context("postgres source")));
                        return Err(Error::failed("postgres source: could not connect"));
                    }
                };
                let exported = async {
                    client
                        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                        .await
                        .map_err(|e| pg_error("starting the snapshot transaction", e))?;
                    let id: String = client
                        .query_one("SELECT pg_export_snapshot()", &[])
                        .await
                        .map_err(|e| pg_error("exporting the snapshot", e))?
                        .get(0);
                    Ok::<_, Error>(id)
                }
                .await;
                let failed = exported.is_err();
                let _ = snap_tx.send(exported);
                if failed {
                    return Err(Error::failed("postgres source: no snapshot"));
                }
                let counted = async {
                    let counts = count_rows(&client, only.as_deref()).await?;
                    let fresh = match &fresh_sql {
                        Some(sql) => freshness(&client, sql).await?,
                        None => None,
                    };
                    Ok::<_, Error>((counts, fresh))
                }
                .await;
                // pg_dump must have imported the snapshot before it is released: hold it
                // until the dump ends (the reader drops its sender).
                let _ = done_rx.await;
                let _ = client.batch_execute("COMMIT").await;
                counted
            })
        });

        let snapshot_id = match snap_rx.recv() {
            Ok(Ok(id)) => id,
            Ok(Err(e)) => {
                let _ = counting.join();
                return Err(e);
            }
            Err(_) => {
                return counting
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
                    .map(|_| unreachable!("a snapshot id is always sent first"));
            }
        };
        let mut cmd = source.command(self.bin("pg_dump"));
        cmd.args(["--format=custom", "--compress=0", "--no-password"])
            .arg(format!("--snapshot={snapshot_id}"))
            .arg(format!("--dbname={}", source.conninfo()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            Error::io(
                "starting pg_dump (install postgresql-client, or set pg-bin)",
                e,
            )
        })?;
        let stderr = collect_stderr(&mut child);
        let stdout = child.stdout.take().expect("piped");
        Ok(Snapshot {
            reader: Box::new(DumpReader {
                child,
                stdout,
                stderr,
                done: Some(done_tx),
                finished: false,
            }),
            counts: SnapshotCounts::Pending(counting),
            consistency_point,
            size_hint: None,
            details: serde_json::json!({
                "url": source.url,
                "format": "pg_dump custom, uncompressed",
                "snapshot": snapshot_id,
                "freshness-query": self.cfg.freshness,
            }),
        })
    }

    fn check_target(&self, target: &str, force: bool) -> Result<()> {
        let t = self.target(target)?;
        let db = t.dbname()?.to_string();
        let probe = t.clone();
        let has_tables = Handle::current().block_on(async move {
            match Self::probe(&probe).await {
                Ok((_, tables)) => Ok(tables),
                // A database that does not exist yet is an empty target.
                Err(e) if e.message().contains("3D000") => Ok(false),
                Err(e) => Err(e),
            }
        })?;
        if has_tables && !force {
            return Err(Error::bad_input(format!(
                "restore target database {db} has tables; pass --force to replace it"
            )));
        }
        Ok(())
    }

    fn restore(
        &self,
        target: &str,
        stream: &mut dyn Read,
        expected: &Counts,
        job: &RestoreJob,
    ) -> Result<RestoreOutcome> {
        let t = self.target(target)?;
        let db = t.dbname()?.to_string();
        let admin = t.with_db("postgres");
        let handle = Handle::current();
        {
            let admin = admin.clone();
            let db = db.clone();
            handle.block_on(async move { sweep_databases(&admin, &db).await })?;
        }
        let staging = staging_name(&db, "staging");
        {
            let (admin, staging) = (admin.clone(), staging.clone());
            let comment = staging_comment(&db, job);
            handle.block_on(async move {
                let client = admin.connect().await?;
                client
                    .batch_execute(&format!("CREATE DATABASE {}", ident(&staging)))
                    .await
                    .map_err(|e| pg_error(&format!("creating staging database {staging}"), e))?;
                client
                    .batch_execute(&format!(
                        "COMMENT ON DATABASE {} IS {}",
                        ident(&staging),
                        literal(&comment)
                    ))
                    .await
                    .map_err(|e| pg_error(&format!("labelling staging database {staging}"), e))
            })?;
        }
        let mut stream = job.control.reader(stream);
        let drop_staging = |why: &str| {
            let (a, st) = (admin.clone(), staging.clone());
            let r = handle.block_on(async move {
                a.connect()
                    .await?
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        ident(&st)
                    ))
                    .await
                    .map_err(|e| pg_error(&format!("dropping staging database {st}"), e))
            });
            if let Err(e) = r {
                tracing::warn!(database = %staging, error = %e, reason = why, "staging database left behind; drop it by hand");
            }
        };
        let restored = (|| {
            let staged = t.with_db(&staging);
            let mut cmd = staged.command(self.bin("pg_restore"));
            cmd.args(["--no-password", "--exit-on-error", "--no-owner"])
                .arg(format!("--dbname={}", staged.conninfo()))
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().map_err(|e| {
                Error::io(
                    "starting pg_restore (install postgresql-client, or set pg-bin)",
                    e,
                )
            })?;
            let stderr = collect_stderr(&mut child);
            let mut stdin = child.stdin.take().expect("piped");
            let mut buf = vec![0u8; 1 << 20];
            let fed: Result<()> = loop {
                let n = match stream.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => break Err(crate::pipeline::read_error("reading the backup", e)),
                };
                if n == 0 {
                    break Ok(());
                }
                if let Err(e) = stdin.write_all(&buf[..n]) {
                    break Err(Error::failed(format!(
                        "pg_restore stopped reading ({e}): {}",
                        stderr_text(&stderr)
                    )));
                }
            };
            drop(stdin);
            if fed.is_err() {
                let _ = child.kill();
            }
            let status = child.wait().map_err(|e| Error::io("pg_restore", e))?;
            fed?;
            if !status.success() {
                return Err(Error::failed(format!(
                    "pg_restore into {staging} failed ({status}): {}",
                    stderr_text(&stderr)
                )));
            }
            self.count(&staged)
        })();
        let actual = match restored {
            Ok(a) => a,
            Err(e) => {
                drop_staging("restore failed");
                return Err(e);
            }
        };
        let report = self.compare(expected, &actual);
        if !report.ok() {
            drop_staging("counts differ");
            return Ok(RestoreOutcome {
                counts: report,
                swapped: false,
                after_swap_error: None,
            });
        }
        // Swap: both renames in one transaction, so the target name always names a
        // whole database; the old one is dropped afterwards.
        let old = staging_name(&db, "old");
        let (a, d, o, st) = (admin.clone(), db.clone(), old.clone(), staging.clone());
        let swapped = job.control.commit(|| handle.block_on(async move {
            let client = a.connect().await?;
            let exists: bool = client
                .query_one("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", &[&d])
                .await
                .map_err(|e| pg_error("looking up the target database", e))?
                .get(0);
            if exists {
                client
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                        &[&d],
                    )
                    .await
                    .map_err(|e| pg_error("closing sessions on the target database", e))?;
            }
            let mut sql = String::from("BEGIN;");
            if exists {
                sql.push_str(&format!("ALTER DATABASE {} RENAME TO {};", ident(&d), ident(&o)));
            }
            sql.push_str(&format!("ALTER DATABASE {} RENAME TO {};COMMIT;", ident(&st), ident(&d)));
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| pg_error(&format!("swapping {st} in as {d}"), e))?;
            if exists
                && let Err(e) = client
                    .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", ident(&o)))
                    .await
            {
                tracing::warn!(database = %o, error = %e, "the replaced database was kept; drop it by hand");
            }
            Ok::<_, Error>(())
        }));
        if let Err(e) = swapped {
            drop_staging("swap failed");
            return Err(e);
        }
        Ok(RestoreOutcome {
            counts: report,
            swapped: true,
            after_swap_error: None,
        })
    }

    fn count_target(&self, target: &str) -> Result<Counts> {
        self.count(&self.target(target)?)
    }

    fn sweep_staging(&self, target: &str) -> Result<Vec<String>> {
        let t = self.target(target)?;
        let db = t.dbname()?.to_string();
        let admin = t.with_db("postgres");
        Handle::current().block_on(async move { sweep_databases(&admin, &db).await })
    }

    fn checks(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        let source = match self.source() {
            Ok(s) => s,
            Err(e) => return vec![Check::new("credentials", CheckStatus::Fail, e.to_string())],
        };
        let server = {
            let s = source.clone();
            Handle::current().block_on(async move { Self::probe(&s).await })
        };
        let server_major = match server {
            Ok((v, _)) => {
                checks.push(Check::new(
                    "reachable",
                    CheckStatus::Ok,
                    format!("PostgreSQL {v}"),
                ));
                v
            }
            Err(e) => {
                checks.push(Check::new("reachable", CheckStatus::Fail, e.to_string()));
                return checks;
            }
        };
        for tool in ["pg_dump", "pg_restore"] {
            checks.push(match self.tool_major(tool) {
                Ok(v) if v >= server_major => {
                    Check::new(tool, CheckStatus::Ok, format!("version {v}"))
                }
                Ok(v) => Check::new(
                    tool,
                    CheckStatus::Fail,
                    format!(
                        "version {v} is older than the server's {server_major}: install \
                         postgresql-client-{server_major} and set pg-bin = \"/usr/lib/postgresql/{server_major}/bin\""
                    ),
                ),
                Err(e) => Check::new(tool, CheckStatus::Fail, e.to_string()),
            });
        }
        checks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_passwords_are_refused_and_never_echoed() {
        let e = Target::parse("postgres://app:s3cret@db:5432/app", None, None).unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn child_connection_strings_carry_no_password() {
        let t = Target::parse(
            "postgres://app@db.internal:6543/app?sslmode=require",
            Some("s3cret".into()),
            None,
        )
        .unwrap();
        let c = t.conninfo();
        assert!(!c.contains("s3cret"));
        assert!(
            c.contains("host='db.internal'")
                && c.contains("port=6543")
                && c.contains("dbname='app'")
                && c.contains("sslmode=require"),
            "{c}"
        );
    }

    #[test]
    fn pgpass_lines_match_like_libpq() {
        let text = "# comment\ndb.internal:5432:app:app:first\n*:*:*:ops:p\\:w\\\\d\n";
        assert_eq!(
            pgpass_lookup(text, "db.internal", 5432, "app", "app").as_deref(),
            Some("first")
        );
        assert_eq!(
            pgpass_lookup(text, "other", 6543, "x", "ops").as_deref(),
            Some("p:w\\d")
        );
        assert_eq!(pgpass_lookup(text, "db.internal", 5433, "app", "app"), None);
    }

    #[test]
    fn tables_outside_public_keep_their_schema() {
        assert_eq!(count_name("public", "users"), "rows.users");
        assert_eq!(count_name("audit", "log"), "rows.audit.log");
    }
}
