//! What pgha asks a repmgr host in the facts round trip: repmgr's metadata as the local server
//! holds it (`repmgr.nodes`: replicated from the primary on a standby, a copy on the witness)
//! and the local repmgrd's state, in one psql call on the repmgr database.

use serde::Deserialize;

use crate::facts::gather::Probe;
use crate::facts::HostFacts;

pub const REPMGR: &str = "repmgr";

/// One row of `repmgr.nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NodeRecord {
    pub node_id: i64,
    pub node_name: String,
    /// `primary`, `standby` or `witness`.
    #[serde(rename = "type")]
    pub kind: String,
    pub upstream_node_id: Option<i64>,
    pub active: bool,
    pub priority: i64,
    pub location: String,
    /// How the other nodes reach it (and standbys' primary_conninfo is written from).
    #[serde(default)]
    pub conninfo: String,
}

/// The local view of repmgr.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RepmgrFact {
    #[serde(default)]
    pub nodes: Vec<NodeRecord>,
    /// repmgrd runs here (its shared memory says so).
    #[serde(default)]
    pub repmgrd: Option<bool>,
    #[serde(default)]
    pub paused: Option<bool>,
}

impl RepmgrFact {
    /// The probe's answer on `facts`' host, when repmgr's database is there.
    pub fn of(facts: &HostFacts) -> Option<RepmgrFact> {
        let line = facts.probes.get(REPMGR)?.first()?;
        serde_json::from_str(line).ok()
    }

    pub fn node(&self, name: &str) -> Option<&NodeRecord> {
        self.nodes.iter().find(|n| n.node_name == name)
    }
}

/// The metadata and repmgrd's state, as one JSON line (nothing when the database is absent).
pub fn repmgr_probe(port: u16, database: &str, version: u32) -> Probe {
    let sql = "SELECT json_build_object('nodes', (SELECT coalesce(json_agg(json_build_object('node_id', node_id, 'node_name', node_name, 'type', type, 'upstream_node_id', upstream_node_id, 'active', active, 'priority', priority, 'location', location, 'conninfo', conninfo) ORDER BY node_id), '[]') FROM repmgr.nodes), 'repmgrd', repmgr.repmgrd_is_running(), 'paused', repmgr.repmgrd_is_paused())";
    Probe {
        name: REPMGR,
        script: format!(
            "cd / && runuser -u postgres -- /usr/lib/postgresql/{version}/bin/psql -X -At -p {port} -d {} -c {} 2>/dev/null || true",
            shell_words::quote(database),
            shell_words::quote(sql)
        ),
    }
}
