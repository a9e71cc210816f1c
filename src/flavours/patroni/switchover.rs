//! Under Patroni the switchover is Patroni's: POST /switchover to the leader's REST API (what
//! `patronictl switchover` does), then wait until the target leads and the old leader runs as
//! a replica.

use std::time::Duration;

// tokio's clock, so tests can run these waits on a paused one.
use tokio::time::Instant;

use crate::flavours::patroni::probes::PatroniFact;
use crate::flavours::patroni::rest::{self, Request};
use crate::flavours::patroni::Patroni;
use crate::flavours::{ClusterView, Handover, ProcedureError};

pub(super) async fn run(
    p: &Patroni,
    view: &ClusterView<'_>,
    target: &str,
) -> Result<Handover, ProcedureError> {
    let cluster = view.cluster;
    let old = view.topology.primary.clone();
    if cluster
        .host(target)
        .filter(|h| h.role.has_postgres())
        .is_none()
    {
        return Err(ProcedureError::Refused(format!(
            "{target} is not a PostgreSQL host of this inventory"
        )));
    }
    if target == old {
        return Err(ProcedureError::Refused(format!(
            "{target} is already the leader"
        )));
    }
    if p.tags_of(target).nofailover {
        return Err(ProcedureError::Refused(format!(
            "{target} has the tag nofailover: Patroni will not promote it"
        )));
    }
    // Patroni refuses (412) any other candidate: say why, and which one it would take.
    if p.synchronous_mode {
        let sync: Vec<&str> = view
            .facts
            .get(&old)
            .and_then(|f| f.postgres.as_ref())
            .map(|pg| {
                pg.replication
                    .iter()
                    .filter(|r| r.sync_state == "sync" && r.state == "streaming")
                    .map(|r| r.application_name.as_str())
                    .collect()
            })
            .unwrap_or_default();
        if !sync.is_empty() && !sync.contains(&target) {
            return Err(ProcedureError::Refused(format!(
                "{target} is not a synchronous standby ({} is): with synchronous_mode Patroni hands the leader role only to one, which holds every acknowledged commit. Switch over to {}",
                sync.join(", "),
                sync[0]
            )));
        }
    }
    let Some(leader) = cluster.host(&old) else {
        return Err(ProcedureError::Refused(format!(
            "the leader {old} is not in the inventory"
        )));
    };
    let url = format!("{}/switchover", p.rest_api(leader));
    let body = serde_json::json!({"leader": old, "candidate": target});
    let started = Instant::now();
    let reply = rest::one(view.transport(&old)?, Request::post(url, body)).await?;
    if !reply.ok() {
        return Err(ProcedureError::Step {
            host: old.clone(),
            what: "Patroni switchover".to_owned(),
            reason: format!("answered {}: {}", reply.status, reply.body),
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut write_gap = None;
    loop {
        let facts = view.gather().await;
        let member = |name: &str| facts.get(name).and_then(PatroniFact::of);
        let leads = member(target).is_some_and(|m| m.is_leader());
        if leads && write_gap.is_none() {
            write_gap = Some(started.elapsed());
        }
        let old_follows = member(&old).is_some_and(|m| m.state == "running" && !m.is_leader());
        if leads && old_follows {
            break;
        }
        if Instant::now() > deadline {
            return Err(ProcedureError::Refused(format!(
                "{target} did not take over from {old} within 60 s; see `pgha status`"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(Handover {
        write_gap: write_gap.unwrap_or_default(),
        converge: false,
    })
}

/// Restart one member's PostgreSQL through its REST API and wait until Patroni says it runs.
pub(super) async fn restart(
    p: &Patroni,
    view: &ClusterView<'_>,
    name: &str,
) -> Result<(), ProcedureError> {
    let Some(host) = view.cluster.host(name) else {
        return Err(ProcedureError::Refused(format!(
            "{name} is not a host of this inventory"
        )));
    };
    let url = format!("{}/restart", p.rest_api(host));
    let reply = rest::one(
        view.transport(name)?,
        Request::post(url, serde_json::json!({})),
    )
    .await?;
    if !matches!(reply.status, 200 | 202) {
        return Err(ProcedureError::Step {
            host: name.to_owned(),
            what: "Patroni restart".to_owned(),
            reason: format!("answered {}: {}", reply.status, reply.body),
        });
    }
    Ok(())
}
