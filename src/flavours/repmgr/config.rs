//! The repmgr flavour's settings, as read from the `repmgr:` section and the hosts' `repmgr:`
//! keys.

use std::collections::BTreeMap;

use crate::model::SecretRef;

#[derive(Debug, Clone)]
pub struct Repmgr {
    /// repmgr's own superuser role and its database (the metadata: `repmgr.nodes`).
    pub user: String,
    pub password: SecretRef,
    pub database: String,
    /// `automatic`: repmgrd promotes; `manual`: it only reports.
    pub failover: String,
    pub monitor_interval_secs: i64,
    pub reconnect_attempts: i64,
    pub reconnect_interval: i64,
    /// Seconds a connection attempt may take (in every conninfo: repmgrd's checks use it as
    /// written).
    pub connect_timeout: i64,
    /// A standby promotes only when no sibling (the witness included) still sees the primary.
    pub primary_visibility_consensus: bool,
    /// Run on the primary when its standbys have gone (repmgr's one self-fencing hook).
    pub child_nodes_disconnect_command: Option<String>,
    /// Per host: node id, priority, location.
    pub nodes: BTreeMap<String, Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: i64,
    pub priority: i64,
    pub location: String,
}

impl Repmgr {
    pub fn node_id(&self, host: &str) -> i64 {
        self.nodes.get(host).map_or(0, |n| n.id)
    }
}
