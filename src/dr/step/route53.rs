//! `route53_failover` steps: the record sets as they are are captured (and checkpointed
//! with the step's effect) before anything changes; then one UPSERT batch, a wait until
//! Route53 reports the change INSYNC, and optionally a health check that must be healthy.
//! A rollback writes back exactly the captured records (deleting the ones that did not
//! exist), never records read after a resume.

use super::Effect;
use crate::aws;
use crate::dr::plan::cloud::{Alias, DnsDrill, Record, Route53Failover, fqdn};
use crate::error::{Error, Result};
use crate::failpoint;
use aws_sdk_route53::Client;
use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord,
    ResourceRecordSet, ResourceRecordSetFailover, ResourceRecordSetRegion, RrType,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tracing::info;

const POLL_FIRST: Duration = Duration::from_secs(2);
const POLL_CAP: Duration = Duration::from_secs(15);

/// One record set: what the run writes and what was there before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DnsChange {
    /// The record set the step writes.
    pub after: Record,
    /// The record set before the run; `None` when there was none.
    pub before: Option<Record>,
}

/// A `route53_failover` step, resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DnsEffect {
    /// Hosted zone id.
    pub zone: String,
    /// The record sets.
    pub changes: Vec<DnsChange>,
    /// Health check that must be healthy afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_healthy: Option<String>,
}

/// The name a drill writes instead of `name`.
pub fn drill_name(name: &str, run_id: &str) -> String {
    format!(
        "lifeboat-drill-{}.{}",
        super::drill_digest(run_id),
        fqdn(name)
    )
}

fn sdk_error<E, R>(what: &str, e: aws_smithy_runtime_api::client::result::SdkError<E, R>) -> Error
where
    E: aws_sdk_rds::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    Error::failed(aws::error_line(what, e)).retryable(true)
}

/// A record set as Route53 takes it.
fn to_sdk(r: &Record) -> Result<ResourceRecordSet> {
    let bad = |e: aws_sdk_route53::error::BuildError| {
        Error::bad_input(format!("record {}: {e}", r.describe()))
    };
    let records = if r.values.is_empty() {
        None
    } else {
        Some(
            r.values
                .iter()
                .map(|v| ResourceRecord::builder().value(v).build().map_err(bad))
                .collect::<Result<Vec<_>>>()?,
        )
    };
    let alias = match &r.alias {
        Some(a) => Some(
            AliasTarget::builder()
                .hosted_zone_id(&a.zone)
                .dns_name(&a.dns_name)
                .evaluate_target_health(a.evaluate_health)
                .build()
                .map_err(bad)?,
        ),
        None => None,
    };
    ResourceRecordSet::builder()
        .name(&r.name)
        .r#type(RrType::from(r.rtype.as_str()))
        .set_ttl(r.ttl)
        .set_resource_records(records)
        .set_alias_target(alias)
        .set_set_identifier(r.set_identifier.clone())
        .set_failover(r.failover.as_deref().map(ResourceRecordSetFailover::from))
        .set_weight(r.weight)
        .set_region(
            r.latency_region
                .as_deref()
                .map(ResourceRecordSetRegion::from),
        )
        .set_multi_value_answer(r.multivalue)
        .set_health_check_id(r.health_check.clone())
        .build()
        .map_err(bad)
}

/// A record set as captured. Routing lifeboat cannot write back faithfully is refused
/// here, before anything changes, rather than lost at rollback.
fn from_sdk(s: &ResourceRecordSet) -> Result<Record> {
    let r = Record {
        name: fqdn(s.name()),
        rtype: s.r#type().as_str().to_string(),
        ttl: s.ttl(),
        values: s
            .resource_records()
            .iter()
            .map(|v| v.value().to_string())
            .collect(),
        alias: s.alias_target().map(|a| Alias {
            zone: a.hosted_zone_id().to_string(),
            dns_name: a.dns_name().to_string(),
            evaluate_health: a.evaluate_target_health(),
        }),
        set_identifier: s.set_identifier().map(String::from),
        failover: s.failover().map(|f| f.as_str().to_string()),
        weight: s.weight(),
        latency_region: s.region().map(|r| r.as_str().to_string()),
        multivalue: s.multi_value_answer(),
        health_check: s.health_check_id().map(String::from),
    };
    if s.geo_location().is_some()
        || s.geo_proximity_location().is_some()
        || s.cidr_routing_config().is_some()
        || s.traffic_policy_instance_id().is_some()
    {
        return Err(Error::failed(format!(
            "record {} uses geolocation, geoproximity, CIDR or traffic-policy routing, which lifeboat cannot capture and restore faithfully; switch it by hand",
            r.describe()
        )));
    }
    Ok(r)
}

/// The record set with `name`, `type` and set identifier in `zone`, if any.
async fn find(client: &Client, zone: &str, key: &Record) -> Result<Option<Record>> {
    let (name, rtype) = (fqdn(&key.name), key.rtype.as_str());
    let mut start: Option<(String, RrType, Option<String>)> = Some((
        name.clone(),
        RrType::from(rtype),
        key.set_identifier.clone(),
    ));
    while let Some((n, t, id)) = start.take() {
        let page = client
            .list_resource_record_sets()
            .hosted_zone_id(zone)
            .start_record_name(n)
            .start_record_type(t)
            .set_start_record_identifier(id)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("reading {} in zone {zone}", key.describe()), e))?;
        // Record sets come sorted by name, then type: ours come first, if there are any.
        for s in page.resource_record_sets() {
            if fqdn(s.name()) != name || s.r#type().as_str() != rtype {
                return Ok(None);
            }
            if s.set_identifier() == key.set_identifier.as_deref() {
                return from_sdk(s).map(Some);
            }
        }
        if page.is_truncated() {
            start = page.next_record_name().map(|n| {
                (
                    n.to_string(),
                    page.next_record_type()
                        .cloned()
                        .unwrap_or(RrType::from(rtype)),
                    page.next_record_identifier().map(String::from),
                )
            });
        }
    }
    Ok(None)
}

/// Resolve a `route53_failover` step: the records to write (references substituted,
/// drill names applied) and each one as it is now (read-only calls).
pub async fn resolve(
    d: &Route53Failover,
    drill: bool,
    run_id: &str,
    sub: &(dyn Fn(&str) -> Result<String> + Sync),
) -> Result<Effect> {
    if drill && d.drill == DnsDrill::Skip {
        return Ok(Effect {
            kind: "none".into(),
            note: Some(format!(
                "skipped in a drill: {}",
                d.records
                    .iter()
                    .map(Record::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            ..Effect::default()
        });
    }
    let client = aws::route53_client().await;
    let mut changes = Vec::new();
    for r in &d.records {
        let mut after = r.clone();
        after.values = r.values.iter().map(|v| sub(v)).collect::<Result<_>>()?;
        if let Some(a) = &mut after.alias {
            a.dns_name = sub(&a.dns_name)?;
        }
        if drill {
            after.name = drill_name(&r.name, run_id);
            // Set identifiers are unique per name, so the real ones could be kept; a
            // drill suffix makes drill records plain to see in the console and keeps
            // a DELETE of one (at teardown) from matching a real record by identifier
            // alone, as some Route53 implementations do.
            after.set_identifier = r
                .set_identifier
                .as_ref()
                .map(|s| format!("{s}-drill-{}", super::drill_digest(run_id)));
        }
        let before = find(&client, &d.zone, &after).await?;
        changes.push(DnsChange { after, before });
    }
    Ok(Effect {
        kind: "route53_failover".into(),
        target: Some(format!("zone {}", d.zone)),
        dns: Some(DnsEffect {
            zone: d.zone.clone(),
            changes,
            require_healthy: d.require_healthy.clone(),
        }),
        ..Effect::default()
    })
}

/// One change of a batch.
fn change_of(action: ChangeAction, r: &Record) -> Result<Change> {
    Change::builder()
        .action(action)
        .resource_record_set(to_sdk(r)?)
        .build()
        .map_err(|e| Error::failed(format!("change of {}: {e}", r.describe())))
}

/// Send one change batch and wait until Route53 reports it INSYNC; returns its id.
async fn change(
    client: &Client,
    zone: &str,
    changes: Vec<Change>,
    comment: &str,
    after_call: Option<&str>,
) -> Result<String> {
    let batch = ChangeBatch::builder()
        .comment(comment)
        .set_changes(Some(changes))
        .build()
        .map_err(|e| Error::failed(format!("change batch: {e}")))?;
    let out = client
        .change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(batch)
        .send()
        .await
        .map_err(|e| sdk_error(&format!("changing record sets in zone {zone}"), e))?;
    let id = out
        .change_info()
        .map(|c| c.id().trim_start_matches("/change/").to_string())
        .unwrap_or_default();
    info!(zone = %zone, change = %id, "record sets changed; waiting until in sync");
    if let Some(fp) = after_call {
        failpoint::hit(fp);
    }
    let mut pause = POLL_FIRST;
    loop {
        let c = client
            .get_change()
            .id(&id)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("reading change {id}"), e))?;
        if c.change_info().map(|i| i.status()) == Some(&ChangeStatus::Insync) {
            return Ok(id);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(POLL_CAP);
    }
}

/// Wait until every checker of `health_check` reports success.
async fn wait_healthy(client: &Client, health_check: &str) -> Result<()> {
    let mut pause = POLL_FIRST;
    loop {
        let s = client
            .get_health_check_status()
            .health_check_id(health_check)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("reading health check {health_check}"), e))?;
        let obs = s.health_check_observations();
        let healthy = !obs.is_empty()
            && obs.iter().all(|o| {
                o.status_report()
                    .and_then(|r| r.status())
                    .is_some_and(|s| s.starts_with("Success"))
            });
        if healthy {
            return Ok(());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(POLL_CAP);
    }
}

/// Write the records (UPSERT), wait INSYNC, then for the health check.
pub async fn run(effect: &Effect, after_call: &str) -> Result<BTreeMap<String, String>> {
    let Some(d) = &effect.dns else {
        return Err(Error::failed(
            "route53_failover step without resolved records",
        ));
    };
    let client = aws::route53_client().await;
    let changes = d
        .changes
        .iter()
        .map(|c| change_of(ChangeAction::Upsert, &c.after))
        .collect::<Result<Vec<_>>>()?;
    let id = change(
        &client,
        &d.zone,
        changes,
        "lifeboat dr failover",
        Some(after_call),
    )
    .await?;
    if let Some(h) = &d.require_healthy {
        wait_healthy(&client, h).await?;
    }
    Ok(BTreeMap::from([
        ("change-id".to_string(), id),
        (
            "records".to_string(),
            d.changes
                .iter()
                .map(|c| c.after.name.clone())
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]))
}

/// Put back the records captured before the run: UPSERT the ones that existed, DELETE
/// the ones the run created. Returns a description of what was written.
pub async fn restore(effect: &Effect) -> Result<String> {
    let Some(d) = &effect.dns else {
        return Ok(String::new());
    };
    let client = aws::route53_client().await;
    let mut changes = Vec::new();
    let mut done = Vec::new();
    for c in &d.changes {
        match &c.before {
            Some(b) => {
                changes.push(change_of(ChangeAction::Upsert, b)?);
                done.push(format!("restored {}", b.describe()));
            }
            None => {
                // A DELETE must name the record set exactly as it is now.
                if let Some(now) = find(&client, &d.zone, &c.after).await? {
                    changes.push(change_of(ChangeAction::Delete, &now)?);
                    done.push(format!("deleted {}", now.describe()));
                }
            }
        }
    }
    if changes.is_empty() {
        return Ok("nothing to restore".into());
    }
    change(&client, &d.zone, changes, "lifeboat dr rollback", None).await?;
    Ok(done.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_the_round_trip_through_the_sdk() {
        let r = Record {
            name: "api.bizra.ai.".into(),
            rtype: "CNAME".into(),
            ttl: Some(60),
            values: vec!["db.us-west-2.example.".into()],
            alias: None,
            set_identifier: Some("west".into()),
            failover: Some("SECONDARY".into()),
            weight: None,
            latency_region: None,
            multivalue: None,
            health_check: Some("hc-1".into()),
        };
        assert_eq!(from_sdk(&to_sdk(&r).unwrap()).unwrap(), r);
        let a = Record {
            alias: Some(Alias {
                zone: "Z1".into(),
                dns_name: "lb.example.".into(),
                evaluate_health: true,
            }),
            ttl: None,
            values: vec![],
            rtype: "A".into(),
            failover: None,
            set_identifier: None,
            health_check: None,
            ..r
        };
        assert_eq!(from_sdk(&to_sdk(&a).unwrap()).unwrap(), a);
    }

    #[test]
    fn drill_names_are_new_names_in_the_same_zone() {
        let n = drill_name("api.bizra.ai", "run-1");
        assert!(
            n.starts_with("lifeboat-drill-") && n.ends_with(".api.bizra.ai."),
            "{n}"
        );
    }
}
