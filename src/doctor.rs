//! `lifeboat doctor`: check, without changing anything that stays, that every
//! repository is reachable with the credentials at hand, accepts a conditional write,
//! has object lock where the policy asks for it, and agrees with this host's clock;
//! and that every source can be read.

use crate::backup::Context;
use crate::policy::SourceConfig;
use crate::storage::{Check, CheckStatus, PutOptions, StorageError};
use bytes::Bytes;
use serde::Serialize;

/// Clock skew that deserves a warning; S3 refuses requests beyond 15 minutes.
const SKEW_WARN_SECS: i64 = 60;
const SKEW_FAIL_SECS: i64 = 15 * 60;

/// The checks of one repository or source.
#[derive(Debug, Clone, Serialize)]
pub struct Subject {
    /// `repository NAME` or `source NAME`.
    pub name: String,
    /// Its checks.
    pub checks: Vec<Check>,
}

/// Everything doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// Per repository and source.
    pub subjects: Vec<Subject>,
}

impl DoctorReport {
    /// Whether any check failed.
    pub fn failed(&self) -> bool {
        self.subjects
            .iter()
            .flat_map(|s| &s.checks)
            .any(|c| c.status == CheckStatus::Fail)
    }
}

/// Run every check.
pub async fn doctor(ctx: &Context) -> DoctorReport {
    let mut subjects = Vec::new();
    for name in ctx.repository_names() {
        subjects.push(Subject {
            name: format!("repository {name}"),
            checks: check_repository(ctx, &name).await,
        });
    }
    for src in ctx.policies.sources.values() {
        let mut checks = Vec::new();
        if let SourceConfig::Sqlite { path } | SourceConfig::File { path } = &src.config {
            checks.push(match std::fs::File::open(path) {
                Ok(_) => Check::new("readable", CheckStatus::Ok, path.display().to_string()),
                Err(e) => Check::new(
                    "readable",
                    CheckStatus::Fail,
                    format!("{}: {e} (check the source's `path`)", path.display()),
                ),
            });
        }
        // Engine checks may block (they talk to servers and run tools).
        let engine = crate::engine::for_source(src);
        match tokio::task::spawn_blocking(move || engine.checks()).await {
            Ok(c) => checks.extend(c),
            Err(e) => checks.push(Check::new("engine", CheckStatus::Fail, e.to_string())),
        }
        subjects.push(Subject {
            name: format!("source {}", src.name),
            checks,
        });
    }
    DoctorReport { subjects }
}

async fn check_repository(ctx: &Context, name: &str) -> Vec<Check> {
    let mut checks = Vec::new();
    let store = match ctx.store(name) {
        Ok(s) => s,
        Err(e) => return vec![Check::new("configured", CheckStatus::Fail, e.to_string())],
    };
    // Reachable: a listing of a prefix that holds nothing of ours.
    if let Err(e) = store.list("lifeboat-doctor/").await {
        checks.push(Check::new(
            "reachable",
            CheckStatus::Fail,
            format!("{e} (check the url, the endpoint, the network and the credentials)"),
        ));
        return checks;
    }
    checks.push(Check::new("reachable", CheckStatus::Ok, "listing works"));

    // A conditional write, the same kind a backup commits its manifest with; then a
    // second one that must be refused; then clean up.
    let key = format!(
        "lifeboat-doctor/{}-{:08x}",
        gethostname::gethostname().to_string_lossy(),
        rand::random::<u32>()
    );
    let before = ctx.clock.now();
    let first = store
        .put(
            &key,
            Bytes::from_static(b"lifeboat doctor"),
            &PutOptions::create(),
        )
        .await;
    let after = ctx.clock.now();
    match first {
        Err(e) => {
            checks.push(Check::new(
                "conditional write",
                CheckStatus::Fail,
                format!("{e} (the credentials need write access to the repository prefix)"),
            ));
            return checks;
        }
        Ok(()) => {
            let second = store
                .put(&key, Bytes::from_static(b"again"), &PutOptions::create())
                .await;
            checks.push(match second {
                Err(StorageError::AlreadyExists { .. }) => Check::new(
                    "conditional write",
                    CheckStatus::Ok,
                    "create-only writes work and refuse an existing object",
                ),
                Ok(()) => Check::new(
                    "conditional write",
                    CheckStatus::Fail,
                    "the store overwrote an object a create-only write must not replace; \
                     manifests could be overwritten (use a store that honours If-None-Match)",
                ),
                Err(e) => Check::new("conditional write", CheckStatus::Fail, e.to_string()),
            });
        }
    }
    match store.head(&key).await {
        Ok(meta) => {
            // Stores keep whole seconds: compare with the window the write happened in.
            let lo = before.timestamp() - 1;
            let hi = after.timestamp() + 1;
            let t = meta.modified.timestamp();
            let skew = if t < lo {
                t - lo
            } else if t > hi {
                t - hi
            } else {
                0
            };
            let status = match skew.abs() {
                s if s >= SKEW_FAIL_SECS => CheckStatus::Fail,
                s if s >= SKEW_WARN_SECS => CheckStatus::Warn,
                _ => CheckStatus::Ok,
            };
            checks.push(Check::new(
                "clock skew",
                status,
                format!("{skew:+}s between this host and the store (fix with NTP when large)"),
            ));
        }
        Err(e) => checks.push(Check::new("clock skew", CheckStatus::Warn, e.to_string())),
    }
    if let Err(e) = store.delete(&key).await {
        checks.push(Check::new(
            "delete",
            CheckStatus::Warn,
            format!("could not remove the test object {key}: {e} (prune needs delete access)"),
        ));
    }
    checks.extend(store.backend_checks().await);
    checks
}
