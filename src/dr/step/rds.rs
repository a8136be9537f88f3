//! `rds_restore` steps: the newest snapshot that already exists in the recovery region,
//! restored into a new DB instance, waited for until it is available.
//!
//! Restoring twice would make a second instance (or fail on the identifier), so the
//! step is idempotent by its target: the restored instance is tagged with the run id,
//! and an attempt that finds an instance of that name tagged for this run waits for it
//! instead of restoring again. An instance of that name that this run did not create is
//! never touched.

use super::Effect;
use crate::aws;
use crate::dr::plan::cloud::{RdsRestore, SnapshotSelect, valid_db_identifier};
use crate::error::{Error, Result};
use crate::failpoint;
use aws_sdk_rds::Client;
use aws_sdk_rds::types::{DbInstance, DbSnapshot, Tag};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tracing::info;

/// Tag naming the DR run that created an instance.
pub const TAG_RUN: &str = "lifeboat:dr-run";
/// Tag naming the plan and step that created an instance.
pub const TAG_STEP: &str = "lifeboat:dr-step";

const POLL_FIRST: Duration = Duration::from_secs(2);
const POLL_CAP: Duration = Duration::from_secs(30);

/// An `rds_restore` step, resolved: which snapshot goes into which instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RdsEffect {
    /// Region restored in.
    pub region: String,
    /// Snapshot identifier.
    pub snapshot: String,
    /// Snapshot ARN.
    pub snapshot_arn: Option<String>,
    /// When the snapshot was taken: the restored data's consistency point.
    pub snapshot_time: Option<DateTime<Utc>>,
    /// The instance the snapshot was taken of.
    pub source_instance: Option<String>,
    /// Identifier of the restored instance.
    pub target: String,
    /// Instance class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_class: Option<String>,
    /// Subnet group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_group: Option<String>,
    /// Security groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// Parameter group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_group: Option<String>,
    /// The run whose tag the instance carries.
    pub run_id: String,
    /// `PLAN/STEP`.
    pub step: String,
}

/// The identifier a drill restores into: the target suffixed with a short digest of the
/// run id, cut to RDS's 63 characters.
pub fn drill_identifier(target: &str, run_id: &str) -> String {
    let id = super::drill_suffixed(target, run_id, 63);
    debug_assert!(valid_db_identifier(&id));
    id
}

fn time(t: Option<&aws_sdk_rds::primitives::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp_millis(t.to_millis().ok()?))
}

/// Every snapshot in the region matching `select` (one page at a time).
async fn snapshots(client: &Client, select: &SnapshotSelect) -> Result<Vec<DbSnapshot>> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut req = client.describe_db_snapshots().set_marker(marker.clone());
        req = match select {
            SnapshotSelect::Instance(i) => req.db_instance_identifier(i),
            SnapshotSelect::Name(n) => req.db_snapshot_identifier(n),
            SnapshotSelect::Tag { .. } => req,
        };
        let page = match req.send().await {
            Ok(p) => p,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_db_snapshot_not_found_fault()) =>
            {
                return Ok(out);
            }
            Err(e) => return Err(Error::failed(aws::error_line("describing DB snapshots", e))),
        };
        out.extend(page.db_snapshots().iter().cloned());
        marker = page.marker().map(String::from);
        if marker.is_none() {
            return Ok(out);
        }
    }
}

/// Choose the snapshot: the newest available one in the region that matches.
async fn choose(client: &Client, region: &str, select: &SnapshotSelect) -> Result<DbSnapshot> {
    let all = snapshots(client, select).await?;
    let matching: Vec<&DbSnapshot> = all
        .iter()
        .filter(|s| match select {
            SnapshotSelect::Tag { key, value } => s
                .tag_list()
                .iter()
                .any(|t| t.key() == Some(key) && t.value() == Some(value)),
            _ => true,
        })
        .collect();
    let what = match select {
        SnapshotSelect::Instance(i) => format!("of DB instance {i}"),
        SnapshotSelect::Name(n) => format!("named {n}"),
        SnapshotSelect::Tag { key, value } => format!("tagged {key}={value}"),
    };
    let available = matching
        .iter()
        .filter(|s| s.status() == Some("available"))
        .max_by_key(|s| time(s.snapshot_create_time()));
    match available {
        Some(s) => Ok((*s).clone()),
        None if matching.is_empty() => Err(Error::failed(format!(
            "no snapshot {what} in {region}: a region failover restores only snapshots already copied there (check `copy-to-regions` of the rds source and `lifeboat list`)"
        ))),
        None => Err(Error::failed(format!(
            "no available snapshot {what} in {region} ({} found, none available yet: {})",
            matching.len(),
            matching
                .iter()
                .map(|s| format!(
                    "{} is {}",
                    s.db_snapshot_identifier().unwrap_or("?"),
                    s.status().unwrap_or("unknown")
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Resolve an `rds_restore` step: the region, the snapshot (read-only calls) and the
/// target identifier (suffixed in a drill).
pub async fn resolve(
    r: &RdsRestore,
    plan_region: Option<&str>,
    plan: &str,
    step: &str,
    drill: bool,
    run_id: &str,
) -> Result<Effect> {
    let region = r
        .region
        .clone()
        .or_else(|| plan_region.map(String::from))
        .ok_or_else(|| Error::bad_input(format!("step {step}: no region")))?;
    let (client, _) = aws::rds_client(Some(&region), None).await;
    let snap = choose(&client, &region, &r.select).await?;
    let target = if drill {
        drill_identifier(&r.target, run_id)
    } else {
        r.target.clone()
    };
    Ok(Effect {
        kind: "rds_restore".into(),
        target: Some(target.clone()),
        rds: Some(RdsEffect {
            region,
            snapshot: snap
                .db_snapshot_identifier()
                .unwrap_or_default()
                .to_string(),
            snapshot_arn: snap.db_snapshot_arn().map(String::from),
            snapshot_time: time(snap.snapshot_create_time()),
            source_instance: snap.db_instance_identifier().map(String::from),
            target,
            instance_class: r.instance_class.clone(),
            subnet_group: r.subnet_group.clone(),
            security_groups: r.security_groups.clone(),
            parameter_group: r.parameter_group.clone(),
            run_id: run_id.to_string(),
            step: format!("{plan}/{step}"),
        }),
        ..Effect::default()
    })
}

/// The instance `id`; `None` when it does not exist.
async fn describe(client: &Client, id: &str) -> Result<Option<DbInstance>> {
    match client
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
    {
        Ok(out) => Ok(out.db_instances().first().cloned()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_db_instance_not_found_fault()) =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::failed(aws::error_line(
            &format!("describing DB instance {id}"),
            e,
        ))),
    }
}

/// The run that created `inst` (its `lifeboat:dr-run` tag).
async fn created_by(client: &Client, inst: &DbInstance) -> Result<Option<String>> {
    let Some(arn) = inst.db_instance_arn() else {
        return Ok(None);
    };
    let tags = client
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(|e| Error::failed(aws::error_line(&format!("reading the tags of {arn}"), e)))?;
    Ok(tags
        .tag_list()
        .iter()
        .find(|t| t.key() == Some(TAG_RUN))
        .and_then(|t| t.value().map(String::from)))
}

/// Restore (unless an earlier attempt of this run already did) and wait until the
/// instance is available. `after_call` is the failpoint hit right after the restore call.
pub async fn run(effect: &Effect, after_call: &str) -> Result<BTreeMap<String, String>> {
    let Some(e) = &effect.rds else {
        return Err(Error::failed("rds_restore step without a resolved restore"));
    };
    let (client, _) = aws::rds_client(Some(&e.region), None).await;
    match describe(&client, &e.target).await? {
        Some(inst) => {
            let owner = created_by(&client, &inst).await?;
            if owner.as_deref() != Some(e.run_id.as_str()) {
                return Err(Error::failed(format!(
                    "DB instance {} already exists in {} and was not created by this run ({TAG_RUN} = {}); choose another `target`, or delete it if it is a leftover",
                    e.target,
                    e.region,
                    owner.as_deref().unwrap_or("none")
                )));
            }
            info!(instance = %e.target, "restored by an earlier attempt of this run; waiting for it");
        }
        None => {
            let tags = [(TAG_RUN, e.run_id.as_str()), (TAG_STEP, e.step.as_str())]
                .into_iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect();
            let snapshot = e.snapshot_arn.clone().unwrap_or_else(|| e.snapshot.clone());
            client
                .restore_db_instance_from_db_snapshot()
                .db_snapshot_identifier(&snapshot)
                .db_instance_identifier(&e.target)
                .set_db_instance_class(e.instance_class.clone())
                .set_db_subnet_group_name(e.subnet_group.clone())
                .set_vpc_security_group_ids(
                    (!e.security_groups.is_empty()).then(|| e.security_groups.clone()),
                )
                .set_db_parameter_group_name(e.parameter_group.clone())
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|err| {
                    Error::failed(aws::error_line(
                        &format!(
                            "restoring snapshot {} into DB instance {} in {}",
                            e.snapshot, e.target, e.region
                        ),
                        err,
                    ))
                    .retryable(true)
                })?;
            info!(snapshot = %e.snapshot, instance = %e.target, region = %e.region, "restore requested");
            failpoint::hit(after_call);
        }
    }
    let inst = wait_available(&client, &e.region, &e.target).await?;
    let endpoint = inst.endpoint();
    let mut out = BTreeMap::from([
        ("instance".to_string(), e.target.clone()),
        ("region".to_string(), e.region.clone()),
        ("snapshot".to_string(), e.snapshot.clone()),
        (
            "endpoint".to_string(),
            endpoint
                .and_then(|p| p.address())
                .unwrap_or_default()
                .to_string(),
        ),
        (
            "port".to_string(),
            endpoint
                .and_then(|p| p.port())
                .map(|p| p.to_string())
                .unwrap_or_default(),
        ),
        (
            "arn".to_string(),
            inst.db_instance_arn().unwrap_or_default().to_string(),
        ),
    ]);
    if let Some(t) = e.snapshot_time {
        out.insert("consistency-point".into(), t.to_rfc3339());
    }
    Ok(out)
}

/// Poll until the instance is available (the step's timeout bounds the wait).
async fn wait_available(client: &Client, region: &str, id: &str) -> Result<DbInstance> {
    let mut pause = POLL_FIRST;
    loop {
        let inst = describe(client, id).await?.ok_or_else(|| {
            Error::failed(format!(
                "DB instance {id} in {region} disappeared while it was being restored"
            ))
        })?;
        match inst.db_instance_status() {
            Some("available") => return Ok(inst),
            Some(
                s @ ("failed"
                | "incompatible-restore"
                | "incompatible-parameters"
                | "incompatible-network"
                | "storage-full"
                | "inaccessible-encryption-credentials"
                | "deleting"),
            ) => {
                return Err(Error::failed(format!(
                    "DB instance {id} in {region} is `{s}`, not available"
                )));
            }
            _ => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(POLL_CAP);
            }
        }
    }
}

/// Delete an instance this run created (drill teardown). Only an instance tagged for
/// this run is deleted; returns what was done, `None` when nothing was there.
pub async fn delete_created(effect: &Effect) -> Result<Option<String>> {
    let Some(e) = &effect.rds else {
        return Ok(None);
    };
    let (client, _) = aws::rds_client(Some(&e.region), None).await;
    let Some(inst) = describe(&client, &e.target).await? else {
        return Ok(None);
    };
    if created_by(&client, &inst).await?.as_deref() != Some(e.run_id.as_str()) {
        return Ok(Some(format!(
            "DB instance {} in {} was not created by this run: left alone",
            e.target, e.region
        )));
    }
    if inst.db_instance_status() == Some("deleting") {
        return Ok(Some(format!(
            "DB instance {} is already being deleted",
            e.target
        )));
    }
    client
        .delete_db_instance()
        .db_instance_identifier(&e.target)
        .skip_final_snapshot(true)
        .delete_automated_backups(true)
        .send()
        .await
        .map_err(|err| {
            Error::failed(aws::error_line(
                &format!("deleting drill DB instance {} in {}", e.target, e.region),
                err,
            ))
        })?;
    Ok(Some(format!(
        "deleting DB instance {} in {}",
        e.target, e.region
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_identifiers_are_valid_and_fit() {
        let long = "a".repeat(63);
        for t in ["bizra-postgres-dr", long.as_str(), "x"] {
            let id = drill_identifier(t, "region-failover-20261130T070715Z-abcd");
            assert!(valid_db_identifier(&id), "{id}");
            assert!(id.contains("-drill-"), "{id}");
        }
        assert_ne!(
            drill_identifier("db", "run-a"),
            drill_identifier("db", "run-b")
        );
    }
}
