//! How Patroni members show in `pgha status`: patronictl's words, the member's own state,
//! its tags; under the table the etcd members, a standby cluster's source and the
//! synchronous mode.

use std::collections::BTreeMap;

use crate::facts::HostFacts;
use crate::flavours::patroni::probes::PatroniFact;
use crate::flavours::patroni::{etcd_of, Patroni};
use crate::flavours::MemberStatus;
use crate::model::Host;

pub(super) fn member(
    p: &Patroni,
    host: &Host,
    is_leader: bool,
    sync: bool,
    facts: Option<&HostFacts>,
) -> MemberStatus {
    let role = match (is_leader, sync) {
        (true, _) if p.standby_cluster.is_some() => "standby leader",
        (true, _) => "leader",
        (false, true) => "sync standby",
        (false, false) => "replica",
    };
    let state = facts
        .and_then(PatroniFact::of)
        .map(|m| m.state)
        .filter(|s| !s.is_empty() && s != "running");
    let t = p.tags_of(&host.name);
    let tags = [
        ("nofailover", t.nofailover),
        ("noloadbalance", t.noloadbalance),
        ("clonefrom", t.clonefrom),
        ("nosync", t.nosync),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(t, _)| *t)
    .collect::<Vec<_>>()
    .join(",");
    MemberStatus {
        role: Some(role.to_owned()),
        state,
        columns: Vec::new(),
        tags,
    }
}

pub(super) fn footer(
    p: &Patroni,
    facts: &BTreeMap<String, HostFacts>,
    sync_standbys: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    let etcd: Vec<String> = p
        .etcd
        .members
        .iter()
        .map(|m| match etcd_of(facts, m) {
            Some(e) if e.healthy && e.leader == Some(true) => format!("{m} healthy (leader)"),
            Some(e) if e.healthy => format!("{m} healthy"),
            _ => format!("{m} NOT healthy"),
        })
        .collect();
    out.push(format!("etcd: {}.", etcd.join(", ")));
    if let Some(source) = &p.standby_cluster {
        out.push(format!(
            "Standby cluster of {}:{}{}.",
            source.host,
            source.port,
            source
                .primary_slot_name
                .as_ref()
                .map(|s| format!(" (slot {s})"))
                .unwrap_or_default()
        ));
    }
    if p.synchronous_mode {
        out.push(format!(
            "Synchronous mode{}: sync standby {}.",
            if p.synchronous_mode_strict {
                " (strict)"
            } else {
                ""
            },
            if sync_standbys.is_empty() {
                "none".to_owned()
            } else {
                sync_standbys.join(", ")
            }
        ));
    }
    out
}
