//! repmgr's own checks, from facts alone (polled with the role and stream checks): every node
//! registered in repmgr's metadata with the role it really has, repmgrd running and not
//! paused on every node (the witness's too: without it the standbys cannot ask whether it
//! still sees the primary), and the consensus setting the same everywhere.

use crate::flavours::repmgr::probes::RepmgrFact;
use crate::flavours::repmgr::{Repmgr, CONFIG_FILE};
use crate::flavours::{CheckResult, ClusterView};
use crate::model::Topology;

/// The node id repmgr should record as `host`'s upstream.
fn upstream_id(r: &Repmgr, topology: &Topology, host: &str, kind: &str) -> Option<i64> {
    match kind {
        "primary" => None,
        "witness" => Some(r.node_id(&topology.primary)),
        _ => topology.upstream.get(host).map(|u| r.node_id(u)),
    }
}

pub(super) fn checks(r: &Repmgr, view: &ClusterView<'_>) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let topology = view.topology;
    // The primary's metadata is the one repmgr writes; the others hold copies.
    let metadata = view.facts.get(&topology.primary).and_then(RepmgrFact::of);
    let mut consensus: Vec<(String, String)> = Vec::new();
    for h in view.cluster.hosts.iter().filter(|h| h.role.has_postgres()) {
        if view.unreachable.contains_key(&h.name) {
            continue;
        }
        let want = if h.name == topology.primary {
            "primary"
        } else if h.role.holds_data() {
            "standby"
        } else {
            "witness"
        };
        let record = metadata.as_ref().and_then(|m| m.node(&h.name));
        let id = r.node_id(&h.name);
        let (ok, detail) = match record {
            None => (false, format!("no record for {} in repmgr.nodes", h.name)),
            Some(n) if n.node_id != id => (
                false,
                format!(
                    "registered as node {} (the inventory makes it {id})",
                    n.node_id
                ),
            ),
            Some(n) if !n.active => (false, format!("node {} is registered inactive", n.node_id)),
            Some(n) if n.kind != want => (
                false,
                format!("registered as {} but it is the {want}", n.kind),
            ),
            // A standby's upstream is the node it streams from; the witness's, the primary.
            Some(n) if n.upstream_node_id != upstream_id(r, topology, &h.name, want) => (
                false,
                format!(
                    "node {} is registered with upstream {} but follows {}",
                    n.node_id,
                    n.upstream_node_id
                        .map_or("none".to_owned(), |u| u.to_string()),
                    upstream_id(r, topology, &h.name, want)
                        .map_or("none".to_owned(), |u| u.to_string()),
                ),
            ),
            Some(n) => (
                true,
                match n.upstream_node_id {
                    Some(u) => format!("node {} registered as {}, upstream {u}", n.node_id, n.kind),
                    None => format!("node {} registered as {}", n.node_id, n.kind),
                },
            ),
        };
        out.push(CheckResult::new(&h.name, "repmgr registration", ok, detail));
        let local = view.facts.get(&h.name).and_then(RepmgrFact::of);
        let (ok, detail) = match local.as_ref().map(|l| (l.repmgrd, l.paused)) {
            Some((Some(true), Some(false))) => (true, "running".to_owned()),
            Some((Some(true), _)) => (false, "running but paused".to_owned()),
            Some((Some(false), _)) => (false, "not running".to_owned()),
            _ => (false, "repmgr's database does not answer here".to_owned()),
        };
        out.push(CheckResult::new(&h.name, "repmgrd", ok, detail));
        let setting = view
            .facts
            .get(&h.name)
            .and_then(|f| f.files.get(CONFIG_FILE))
            .and_then(|f| {
                f.content
                    .lines()
                    .find_map(|l| l.strip_prefix("primary_visibility_consensus="))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "(unset)".to_owned());
        consensus.push((h.name.clone(), setting));
    }
    if let Some((first_host, first)) = consensus.first().cloned() {
        let differ: Vec<String> = consensus
            .iter()
            .filter(|(_, v)| *v != first)
            .map(|(h, v)| format!("{h}: {v}"))
            .collect();
        out.push(CheckResult::new(
            &first_host,
            "consensus identical",
            differ.is_empty(),
            if differ.is_empty() {
                format!("primary_visibility_consensus={first} on every node")
            } else {
                format!("{first_host}: {first}; {}", differ.join("; "))
            },
        ));
    }
    out
}
