//! The Patroni flavour's settings: DCS timing, synchronous replication, watchdog, etcd, an
//! optional standby cluster.

use serde::Serialize;

use std::collections::BTreeMap;

use crate::model::SecretRef;

#[derive(Debug, Clone, Serialize)]
pub struct Patroni {
    /// Patroni's own data directory, never Debian's cluster directory.
    pub data_dir: String,
    pub namespace: String,
    pub restapi_port: u16,
    /// Leader key lifetime. Patroni's rules: ttl >= 20, loop_wait + 2 * retry_timeout <= ttl.
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
    pub primary_start_timeout: u32,
    pub maximum_lag_on_failover: u64,
    pub use_pg_rewind: bool,
    pub use_slots: bool,
    pub synchronous_mode: bool,
    pub synchronous_mode_strict: bool,
    pub synchronous_node_count: u32,
    pub watchdog: Watchdog,
    pub rewind_user: String,
    pub rewind_password: SecretRef,
    pub etcd: Etcd,
    pub standby_cluster: Option<StandbyCluster>,
    /// Physical slots kept on the leader for consumers outside the cluster (a standby
    /// cluster's `primary_slot_name`): the DCS `slots` map.
    pub permanent_slots: Vec<String>,
    /// A rolling restart hands the leader role over before restarting the old leader.
    pub switchover_for_restart: bool,
    /// Each host's tags (`hosts[].tags`); a host without any has none set.
    pub tags: BTreeMap<String, Tags>,
}

impl Patroni {
    pub fn tags_of(&self, host: &str) -> Tags {
        self.tags.get(host).cloned().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Watchdog {
    /// off | automatic | required
    pub mode: String,
    pub device: String,
    pub safety_margin: u32,
    /// Load the softdog module on the hosts (an explicit opt-in: a real kernel watchdog reboots
    /// a machine whose Patroni hangs).
    pub load_softdog: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Etcd {
    /// Hosts running an etcd member (PostgreSQL hosts or dedicated `role: etcd` hosts).
    pub members: Vec<String>,
    pub client_port: u16,
    pub peer_port: u16,
}

#[derive(Debug, Clone, Serialize)]
pub struct StandbyCluster {
    pub host: String,
    pub port: u16,
    pub primary_slot_name: Option<String>,
}

/// Patroni tags of one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tags {
    pub nofailover: bool,
    pub noloadbalance: bool,
    pub clonefrom: bool,
    pub nosync: bool,
}
