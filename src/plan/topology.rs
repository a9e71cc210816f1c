//! The cluster's real topology, read from the hosts' facts. The inventory's `role: primary`
//! holds only until a cluster exists; afterwards the hosts say who is primary and who streams
//! from whom, and pgha plans with that.

use std::collections::BTreeMap;

use crate::facts::HostFacts;
use crate::flavours::Flavour;
use crate::model::{Cluster, Topology};

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("more than one primary is running: {}. pgha will not pick one; stop the wrong one (it holds writes the other lacks) and run plan again", .0.join(", "))]
    SplitBrain(Vec<String>),
}

/// The observed topology and notes on where it differs from the inventory.
pub fn observe(
    cluster: &Cluster,
    flavour: &dyn Flavour,
    facts: &BTreeMap<String, HostFacts>,
) -> Result<(Topology, Vec<String>), TopologyError> {
    let declared = Topology::declared(cluster);
    let mut notes = Vec::new();
    let running_primaries: Vec<String> = cluster
        .hosts
        .iter()
        .filter(|h| h.role.holds_data())
        .filter(|h| {
            facts
                .get(&h.name)
                .and_then(|f| f.postgres.as_ref())
                .is_some_and(|pg| pg.running && !pg.in_recovery && !pg.pristine)
        })
        .map(|h| h.name.clone())
        .collect();
    // Where the flavour keeps its own word on the leader (a leader key) it decides, unless it
    // names a server that is not the one running as primary. In a standby cluster every
    // server is in recovery and the leader is the standby leader.
    let flavour_leader = flavour
        .leader(cluster, facts)
        .filter(|l| running_primaries.is_empty() || running_primaries.contains(l));
    let primary = match (flavour_leader, running_primaries.as_slice()) {
        (Some(leader), [] | [_]) => leader,
        (None, []) => declared.primary.clone(),
        (None, [one]) => one.clone(),
        (_, many) => {
            // A fresh Debian cluster on a standby-to-be is "not in recovery" too; only data
            // that is not pristine counts as a primary, and two of those is a split brain.
            return Err(TopologyError::SplitBrain(many.to_vec()));
        }
    };
    if primary != declared.primary {
        notes.push(format!(
            "{primary} is the primary (the inventory says {}): planning with the real topology, nothing is switched back",
            declared.primary
        ));
    }
    let by_address: BTreeMap<&str, &str> = cluster
        .hosts
        .iter()
        .map(|h| (h.address.as_str(), h.name.as_str()))
        .collect();
    let mut upstream = BTreeMap::new();
    for h in &cluster.hosts {
        // Only standbys stream: a witness or an etcd host holds no copy of the data.
        if h.name == primary || !h.role.holds_data() {
            continue;
        }
        let streaming_from = facts
            .get(&h.name)
            .and_then(|f| f.postgres.as_ref())
            .and_then(|pg| pg.wal_receiver.as_ref())
            .and_then(|w| by_address.get(w.sender_host.as_str()).copied())
            .filter(|u| *u != h.name);
        let wanted = match declared.upstream.get(&h.name) {
            // The declared upstream is the old primary, or itself now primary: follow the real one.
            Some(u) if *u == declared.primary || *u == primary => primary.clone(),
            Some(u) => u.clone(),
            None => primary.clone(),
        };
        if let Some(actual) = streaming_from {
            if actual != wanted {
                notes.push(format!(
                    "{} streams from {actual}; the inventory wants {wanted}: plan re-points it",
                    h.name
                ));
            }
        }
        upstream.insert(h.name.clone(), wanted);
    }
    Ok((Topology { primary, upstream }, notes))
}
