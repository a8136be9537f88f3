//! RDS: a backup is a manual DB snapshot, tagged with the lifeboat source and backup id,
//! copied to the DR regions before the backup counts as made.
//!
//! The repository holds what describes the snapshot: the stream is a small JSON
//! document (instance, engine and version, snapshot id and ARN, creation time, the
//! copies), hashed and committed like any other backup, and the same document is the
//! manifest's `engine` field. A region failover can only restore what already exists
//! in the surviving region, so the run waits until every copy is available; a copy
//! that fails fails the backup, and the snapshots it made are deleted again.
//!
//! An RDS snapshot carries no counts. When a freshness query is configured, its value
//! is read from the instance right after the snapshot completed and recorded as
//! approximate (the instance went on taking writes); the DR integrity step recounts
//! after a restore.
//!
//! Deletion touches only snapshots whose tags name this source and backup id: a
//! snapshot someone made by hand, or one of another tool, is never deleted.

use super::counts::Counts;
use super::spool::Spool;
use super::{Engine, RestoreOutcome, Snapshot};
use crate::error::{Error, Result};
use crate::policy::{RdsConfig, RdsCopy};
use crate::storage::{Check, CheckStatus};
use aws_sdk_rds::Client;
use aws_sdk_rds::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_rds::types::{DbSnapshot, Tag};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::time::Duration;
use tokio::runtime::Handle;
use tracing::{info, warn};

/// Tag naming the source a snapshot belongs to.
pub const TAG_SOURCE: &str = "lifeboat:source";
/// Tag naming the backup id a snapshot belongs to.
pub const TAG_BACKUP: &str = "lifeboat:backup-id";

/// First pause between two looks at a snapshot's status; it doubles up to the cap.
const POLL_FIRST: Duration = Duration::from_secs(2);
const POLL_CAP: Duration = Duration::from_secs(30);

/// The RDS engine of one source.
#[derive(Debug, Clone)]
pub struct RdsEngine {
    source: String,
    cfg: RdsConfig,
}

/// One snapshot in one region, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotRef {
    /// Region.
    pub region: String,
    /// DB snapshot identifier.
    pub id: String,
    /// Its ARN.
    pub arn: String,
    /// KMS key of an encrypted snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

/// The freshness read after the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Freshness {
    /// The query.
    pub query: String,
    /// Its value (none when the table was empty).
    pub value: Option<DateTime<Utc>>,
    /// When it was read.
    pub read_at: DateTime<Utc>,
    /// Always true: read from the live instance after the snapshot, not from it.
    pub approximate: bool,
}

/// What an RDS backup is: the stream's content and the manifest's `engine` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RdsBackup {
    /// DB instance identifier.
    pub instance: String,
    /// Its ARN.
    pub instance_arn: Option<String>,
    /// Database engine (`postgres`, `mysql`, ...).
    pub engine: Option<String>,
    /// Engine version.
    pub engine_version: Option<String>,
    /// When RDS took the snapshot: the consistency point.
    pub created_at: DateTime<Utc>,
    /// Whether the snapshot is encrypted.
    pub encrypted: bool,
    /// The snapshot in the instance's region.
    pub snapshot: SnapshotRef,
    /// Its copies in other regions, each available when the backup was committed.
    pub copies: Vec<SnapshotRef>,
    /// The instance's freshness right after the snapshot, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<Freshness>,
}

impl RdsBackup {
    /// The snapshot and its copies, primary first.
    pub fn all(&self) -> impl Iterator<Item = &SnapshotRef> {
        std::iter::once(&self.snapshot).chain(self.copies.iter())
    }
}

/// The snapshot identifier of a backup: `lifeboat-SOURCE-BACKUPID`, lowercase, with
/// the characters RDS refuses (`_`, repeated hyphens) replaced.
pub fn snapshot_id(source: &str, backup_id: &str) -> String {
    let raw = format!("lifeboat-{source}-{backup_id}").to_ascii_lowercase();
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out.trim_end_matches('-').to_string()
}

/// An SDK error as one line: the service's code and message when it answered, the
/// transport's error chain otherwise (the SDK already retried transient faults).
fn aws_error<E, R>(what: &str, e: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    Error::failed(crate::aws::error_line(what, e))
}

fn chrono_time(t: Option<&aws_sdk_rds::primitives::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp_millis(t.to_millis().ok()?))
}

impl RdsEngine {
    /// The engine of source `source`.
    pub fn new(source: String, cfg: RdsConfig) -> Self {
        RdsEngine { source, cfg }
    }

    /// An RDS client for `region` (the instance's region when `None`).
    pub async fn client(&self, region: Option<&str>) -> Result<(Client, String)> {
        let (client, resolved) = crate::aws::rds_client(
            region.or(self.cfg.region.as_deref()),
            self.cfg.endpoint.as_deref(),
        )
        .await;
        let Some(region) = resolved else {
            return Err(Error::bad_input(format!(
                "source {}: no AWS region (set `region` in the policy or AWS_REGION)",
                self.source
            )));
        };
        Ok((client, region))
    }

    fn tags(&self, backup_id: &str) -> Vec<Tag> {
        [(TAG_SOURCE, self.source.as_str()), (TAG_BACKUP, backup_id)]
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect()
    }

    /// Describe one snapshot; `None` when it does not exist.
    async fn describe(client: &Client, id: &str) -> Result<Option<DbSnapshot>> {
        match client
            .describe_db_snapshots()
            .db_snapshot_identifier(id)
            .send()
            .await
        {
            Ok(out) => Ok(out.db_snapshots().first().cloned()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_db_snapshot_not_found_fault()) =>
            {
                Ok(None)
            }
            Err(e) => Err(aws_error(&format!("describing snapshot {id}"), e)),
        }
    }

    /// Wait until snapshot `id` is available, within the configured timeout.
    async fn wait_available(&self, client: &Client, region: &str, id: &str) -> Result<DbSnapshot> {
        let deadline = tokio::time::Instant::now() + self.cfg.wait_timeout;
        let mut pause = POLL_FIRST;
        loop {
            let snap = Self::describe(client, id).await?.ok_or_else(|| {
                Error::failed(format!(
                    "snapshot {id} in {region} disappeared while it was being made"
                ))
            })?;
            match snap.status() {
                Some("available") => return Ok(snap),
                Some(s @ ("failed" | "incompatible-restore" | "deleting")) => {
                    return Err(Error::failed(format!(
                        "snapshot {id} in {region} is `{s}`, not available"
                    )));
                }
                other => {
                    if tokio::time::Instant::now() + pause > deadline {
                        return Err(Error::failed(format!(
                            "snapshot {id} in {region} is still `{}` after {}s (raise wait-timeout for large instances)",
                            other.unwrap_or("unknown"),
                            self.cfg.wait_timeout.as_secs()
                        )));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(POLL_CAP);
                }
            }
        }
    }

    /// Copy the snapshot to one region and wait for the copy.
    async fn copy(&self, from: &SnapshotRef, to: &RdsCopy, backup_id: &str) -> Result<SnapshotRef> {
        let (client, region) = self.client(Some(&to.region)).await?;
        let mut req = client
            .copy_db_snapshot()
            .source_db_snapshot_identifier(&from.arn)
            .target_db_snapshot_identifier(&from.id)
            .set_tags(Some(self.tags(backup_id)));
        if let Some(k) = &to.kms_key_id {
            req = req.kms_key_id(k);
        }
        let out = req
            .send()
            .await
            .map_err(|e| aws_error(&format!("copying snapshot {} to {}", from.id, to.region), e))?;
        let arn = out
            .db_snapshot()
            .and_then(|s| s.db_snapshot_arn())
            .map(str::to_string);
        let snap = self.wait_available(&client, &region, &from.id).await?;
        Ok(SnapshotRef {
            region,
            id: from.id.clone(),
            arn: snap
                .db_snapshot_arn()
                .map(str::to_string)
                .or(arn)
                .unwrap_or_default(),
            kms_key_id: snap.kms_key_id().map(str::to_string),
        })
    }

    /// Make the snapshot and its copies; on failure delete what was made.
    async fn take(&self, backup_id: &str, now: DateTime<Utc>) -> Result<RdsBackup> {
        let (client, region) = self.client(None).await?;
        let inst = client
            .describe_db_instances()
            .db_instance_identifier(&self.cfg.instance)
            .send()
            .await
            .map_err(|e| aws_error(&format!("describing DB instance {}", self.cfg.instance), e))?;
        let inst = inst.db_instances().first().cloned().ok_or_else(|| {
            Error::failed(format!(
                "DB instance {} not found in {region}",
                self.cfg.instance
            ))
        })?;
        let id = snapshot_id(&self.source, backup_id);
        client
            .create_db_snapshot()
            .db_snapshot_identifier(&id)
            .db_instance_identifier(&self.cfg.instance)
            .set_tags(Some(self.tags(backup_id)))
            .send()
            .await
            .map_err(|e| {
                aws_error(
                    &format!(
                        "creating snapshot {id} of DB instance {}",
                        self.cfg.instance
                    ),
                    e,
                )
            })?;
        info!(source = %self.source, snapshot = %id, region = %region, "snapshot requested");
        let mut made = vec![(region.clone(), id.clone())];
        let result = async {
            let snap = self.wait_available(&client, &region, &id).await?;
            let primary = SnapshotRef {
                region: region.clone(),
                id: id.clone(),
                arn: snap.db_snapshot_arn().unwrap_or_default().to_string(),
                kms_key_id: snap.kms_key_id().map(str::to_string),
            };
            let mut copies = Vec::new();
            for to in &self.cfg.copies {
                made.push((to.region.clone(), id.clone()));
                let c = self.copy(&primary, to, backup_id).await?;
                info!(source = %self.source, snapshot = %id, region = %c.region, "copy available");
                copies.push(c);
            }
            Ok::<_, Error>(RdsBackup {
                instance: self.cfg.instance.clone(),
                instance_arn: inst.db_instance_arn().map(str::to_string),
                engine: inst.engine().map(str::to_string),
                engine_version: inst.engine_version().map(str::to_string),
                created_at: chrono_time(snap.snapshot_create_time()).unwrap_or(now),
                encrypted: snap.encrypted().unwrap_or(false),
                snapshot: primary,
                copies,
                freshness: None,
            })
        }
        .await;
        match result {
            Ok(b) => Ok(b),
            Err(e) => {
                // A snapshot without a committed backup is a cost nobody tracks.
                for (r, sid) in made.iter().rev() {
                    if let Err(d) = self.delete_tagged(r, sid, backup_id).await {
                        warn!(source = %self.source, snapshot = %sid, region = %r, error = %d, "could not delete the snapshot of a failed backup");
                    }
                }
                Err(e)
            }
        }
    }

    /// Delete snapshot `id` in `region` if, and only if, its tags name this source and
    /// `backup_id`. Returns whether it was deleted (false: already gone).
    async fn delete_tagged(&self, region: &str, id: &str, backup_id: &str) -> Result<bool> {
        let (client, region) = self.client(Some(region)).await?;
        let Some(snap) = Self::describe(&client, id).await? else {
            return Ok(false);
        };
        if snap.snapshot_type().is_some_and(|t| t != "manual") {
            return Err(Error::failed(format!(
                "snapshot {id} in {region} is of type `{}`: only manual snapshots made by lifeboat are deleted",
                snap.snapshot_type().unwrap_or_default()
            )));
        }
        let arn = snap.db_snapshot_arn().unwrap_or_default();
        let tags = client
            .list_tags_for_resource()
            .resource_name(arn)
            .send()
            .await
            .map_err(|e| aws_error(&format!("reading the tags of snapshot {id} in {region}"), e))?;
        let tag = |k: &str| {
            tags.tag_list()
                .iter()
                .find(|t| t.key() == Some(k))
                .and_then(|t| t.value())
        };
        if tag(TAG_SOURCE) != Some(self.source.as_str()) || tag(TAG_BACKUP) != Some(backup_id) {
            return Err(Error::failed(format!(
                "snapshot {id} in {region} is not tagged {TAG_SOURCE}={} and {TAG_BACKUP}={backup_id}: \
                 left alone (lifeboat deletes only the snapshots it made)",
                self.source
            )));
        }
        match client
            .delete_db_snapshot()
            .db_snapshot_identifier(id)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_db_snapshot_not_found_fault()) =>
            {
                Ok(false)
            }
            Err(e) => Err(aws_error(&format!("deleting snapshot {id} in {region}"), e)),
        }
    }

    /// Manual snapshots in `region` tagged for this source whose backup id no repository
    /// holds, made before `before`: (region, snapshot id, backup id).
    async fn orphans(
        &self,
        region: Option<&str>,
        held: &std::collections::BTreeSet<String>,
        before: DateTime<Utc>,
    ) -> Result<Vec<(String, String, String)>> {
        let (client, region) = self.client(region).await?;
        let mut found = Vec::new();
        let prefix = format!("{}-", snapshot_id(&self.source, ""));
        let mut marker: Option<String> = None;
        loop {
            let out = client
                .describe_db_snapshots()
                .snapshot_type("manual")
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| aws_error(&format!("listing manual snapshots in {region}"), e))?;
            for s in out.db_snapshots() {
                let (Some(id), Some(arn)) = (s.db_snapshot_identifier(), s.db_snapshot_arn())
                else {
                    continue;
                };
                // Cheap filters first: lifeboat's naming, this source's instance (another
                // policy set in the account may have a source of the same name, whose
                // backups this catalog cannot know), and old enough.
                let young = chrono_time(s.snapshot_create_time()).is_none_or(|t| t >= before);
                let ours = s.db_instance_identifier() == Some(self.cfg.instance.as_str());
                if !id.starts_with(&prefix) || !ours || young {
                    continue;
                }
                let tags = client
                    .list_tags_for_resource()
                    .resource_name(arn)
                    .send()
                    .await
                    .map_err(|e| {
                        aws_error(&format!("reading the tags of snapshot {id} in {region}"), e)
                    })?;
                let tag = |k: &str| {
                    tags.tag_list()
                        .iter()
                        .find(|t| t.key() == Some(k))
                        .and_then(|t| t.value())
                        .map(str::to_string)
                };
                if let (Some(src), Some(b)) = (tag(TAG_SOURCE), tag(TAG_BACKUP))
                    && src == self.source
                    && !held.contains(&b)
                {
                    found.push((region.clone(), id.to_string(), b));
                }
            }
            match out.marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(found)
    }

    fn parse(details: &serde_json::Value) -> Result<RdsBackup> {
        serde_json::from_value(details.clone()).map_err(|e| {
            Error::integrity(format!(
                "the manifest's engine details do not describe an RDS snapshot ({e})"
            ))
        })
    }

    fn refuse_restore(&self) -> Error {
        Error::bad_input(format!(
            "source {}: an rds backup is a DB snapshot in AWS, not a stream to restore into a target; \
             restore it with `aws rds restore-db-instance-from-db-snapshot --db-snapshot-identifier ID` \
             (`lifeboat list --json` shows each backup's snapshot ids per region)",
            self.source
        ))
    }
}

/// Blocking bridge: engines run on blocking threads, the SDK is async.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    Handle::current().block_on(f)
}

impl Engine for RdsEngine {
    fn snapshot(&self, _spool: &Spool, _now: &dyn Fn() -> DateTime<Utc>) -> Result<Snapshot> {
        Err(Error::failed(format!(
            "source {}: an RDS snapshot is named after its backup id (use snapshot_as)",
            self.source
        )))
    }

    fn snapshot_as(
        &self,
        backup_id: &str,
        _spool: &Spool,
        now: &dyn Fn() -> DateTime<Utc>,
    ) -> Result<Snapshot> {
        let mut backup = block_on(self.take(backup_id, now()))?;
        if let Some(f) = &self.cfg.freshness {
            let read = f.password.resolve("freshness password").and_then(|pw| {
                block_on(super::postgres::read_freshness(
                    &f.url,
                    pw,
                    f.ssl_root_cert.clone(),
                    &f.query,
                ))
            });
            match read {
                Ok(value) => {
                    backup.freshness = Some(Freshness {
                        query: f.query.clone(),
                        value,
                        read_at: now(),
                        approximate: true,
                    })
                }
                Err(e) => {
                    // The snapshot is good; without its freshness the backup is not
                    // what the policy asked for, so it is not kept.
                    for s in backup.all().collect::<Vec<_>>().into_iter().rev() {
                        let _ = block_on(self.delete_tagged(&s.region, &s.id, backup_id));
                    }
                    return Err(e.context("freshness query after the snapshot"));
                }
            }
        }
        let details = serde_json::to_value(&backup).expect("serialisable");
        let body = serde_json::to_vec_pretty(&backup).expect("serialisable");
        Ok(Snapshot {
            size_hint: Some(body.len() as u64),
            reader: Box::new(std::io::Cursor::new(body)),
            counts: Counts::new().into(),
            consistency_point: backup.created_at,
            details,
        })
    }

    fn check_target(&self, _target: &str, _force: bool) -> Result<()> {
        Err(self.refuse_restore())
    }

    fn restore(
        &self,
        _target: &str,
        _stream: &mut dyn Read,
        _expected: &Counts,
        _job: &super::RestoreJob,
    ) -> Result<RestoreOutcome> {
        Err(self.refuse_restore())
    }

    fn count_target(&self, _target: &str) -> Result<Counts> {
        Err(self.refuse_restore())
    }

    fn verify_external(&self, details: &serde_json::Value) -> Vec<String> {
        let backup = match Self::parse(details) {
            Ok(b) => b,
            Err(e) => return vec![e.to_string()],
        };
        let mut problems = Vec::new();
        for s in backup.all() {
            let found = block_on(async {
                let (client, _) = self.client(Some(&s.region)).await?;
                Self::describe(&client, &s.id).await
            });
            match found {
                Ok(Some(snap)) if snap.status() == Some("available") => {}
                Ok(Some(snap)) => problems.push(format!(
                    "snapshot {} in {} is `{}`, not available",
                    s.id,
                    s.region,
                    snap.status().unwrap_or("unknown")
                )),
                Ok(None) => problems.push(format!(
                    "snapshot {} in {} does not exist (deleted outside lifeboat?)",
                    s.id, s.region
                )),
                Err(e) => problems.push(e.to_string()),
            }
        }
        problems
    }

    fn delete_external(&self, backup_id: &str, details: &serde_json::Value) -> Result<Vec<String>> {
        let backup = Self::parse(details)?;
        let mut deleted = Vec::new();
        // Copies first: the primary is the one an operator looks for.
        for s in backup
            .copies
            .iter()
            .chain(std::iter::once(&backup.snapshot))
        {
            if block_on(self.delete_tagged(&s.region, &s.id, backup_id))? {
                info!(source = %self.source, snapshot = %s.id, region = %s.region, "snapshot deleted");
                deleted.push(format!("snapshot {} in {}", s.id, s.region));
            }
        }
        Ok(deleted)
    }

    fn sweep_external(
        &self,
        held: &std::collections::BTreeSet<String>,
        before: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        let mut deleted = Vec::new();
        let regions: Vec<Option<&str>> = std::iter::once(None)
            .chain(self.cfg.copies.iter().map(|c| Some(c.region.as_str())))
            .collect();
        for region in regions {
            let orphans = block_on(self.orphans(region, held, before))?;
            for (region, id, backup_id) in orphans {
                if block_on(self.delete_tagged(&region, &id, &backup_id))? {
                    info!(source = %self.source, snapshot = %id, region = %region, "snapshot of a failed backup deleted");
                    deleted.push(format!(
                        "snapshot {id} in {region} (backup {backup_id} was never committed)"
                    ));
                }
            }
        }
        Ok(deleted)
    }

    fn checks(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        let inst = block_on(async {
            let (client, region) = self.client(None).await?;
            let out = client
                .describe_db_instances()
                .db_instance_identifier(&self.cfg.instance)
                .send()
                .await
                .map_err(|e| {
                    aws_error(&format!("describing DB instance {}", self.cfg.instance), e)
                })?;
            Ok::<_, Error>((out.db_instances().first().cloned(), region))
        });
        checks.push(match inst {
            Ok((Some(i), region)) => Check::new(
                "instance",
                CheckStatus::Ok,
                format!(
                    "{} in {region}: {} {} ({})",
                    self.cfg.instance,
                    i.engine().unwrap_or("?"),
                    i.engine_version().unwrap_or("?"),
                    i.db_instance_status().unwrap_or("?")
                ),
            ),
            Ok((None, region)) => Check::new(
                "instance",
                CheckStatus::Fail,
                format!("DB instance {} not found in {region}", self.cfg.instance),
            ),
            Err(e) => Check::new("instance", CheckStatus::Fail, e.to_string()),
        });
        for c in &self.cfg.copies {
            let Some(key) = &c.kms_key_id else {
                checks.push(Check::new(
                    format!("copy to {}", c.region),
                    CheckStatus::Ok,
                    "no KMS key configured (an encrypted snapshot needs one in that region)",
                ));
                continue;
            };
            let found = block_on(async {
                let shared = crate::aws::shared_config(Some(&c.region)).await;
                let mut b = aws_sdk_kms::config::Builder::from(&shared)
                    .interceptor(crate::aws::RecordOperations);
                if let Some(e) = &self.cfg.endpoint {
                    b = b.endpoint_url(e);
                }
                aws_sdk_kms::Client::from_conf(b.build())
                    .describe_key()
                    .key_id(key)
                    .send()
                    .await
            });
            checks.push(match found {
                Ok(out) if out.key_metadata().is_some_and(|m| m.enabled()) => Check::new(
                    format!("kms key in {}", c.region),
                    CheckStatus::Ok,
                    format!("{key} is enabled"),
                ),
                Ok(_) => Check::new(
                    format!("kms key in {}", c.region),
                    CheckStatus::Fail,
                    format!(
                        "{key} exists but is disabled: copies to {} will fail",
                        c.region
                    ),
                ),
                Err(e) => Check::new(
                    format!("kms key in {}", c.region),
                    CheckStatus::Fail,
                    aws_error(&format!("{key} in {}", c.region), e).to_string()
                        + " (copies are re-encrypted with a key of the target region)",
                ),
            });
        }
        checks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_ids_are_valid_rds_identifiers() {
        assert_eq!(
            snapshot_id("orders", "20261122T093000Z-3f9a"),
            "lifeboat-orders-20261122t093000z-3f9a"
        );
        // Underscores and repeated hyphens are refused by RDS.
        assert_eq!(
            snapshot_id("hive_db--x", "20261122T093000Z-00ff"),
            "lifeboat-hive-db-x-20261122t093000z-00ff"
        );
    }
}
