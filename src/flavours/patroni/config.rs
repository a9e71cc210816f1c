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
    /// Who may call the REST API's unsafe endpoints (switchover, restart, configuration).
    pub restapi_user: String,
    pub restapi_password: SecretRef,
    /// Where the REST API's and etcd's certificates live, when the cluster has TLS.
    pub tls: Option<ApiTls>,
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

/// PostgreSQL's certificate under Patroni (also the REST API's, and Patroni's etcd client's).
pub const PATRONI_TLS_DIR: &str = "/etc/patroni/tls";

/// etcd's own copy of its host's certificate: etcd runs as its own user and reads only its
/// own 0600 key.
pub const ETCD_TLS_DIR: &str = "/etc/etcd/pgha-tls";

/// The certificates of a cluster with TLS, as paths on a host. PostgreSQL's (owned by
/// postgres) also serve Patroni's REST API and are Patroni's client certificate towards etcd;
/// etcd has its own copies.
#[derive(Debug, Clone, Serialize)]
pub struct ApiTls {
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    pub etcd_ca_file: String,
    pub etcd_cert_file: String,
    pub etcd_key_file: String,
}

impl ApiTls {
    pub fn new(postgres_tls_dir: &str) -> ApiTls {
        ApiTls {
            ca_file: format!("{postgres_tls_dir}/ca.crt"),
            cert_file: format!("{postgres_tls_dir}/server.crt"),
            key_file: format!("{postgres_tls_dir}/server.key"),
            etcd_ca_file: format!("{ETCD_TLS_DIR}/ca.crt"),
            etcd_cert_file: format!("{ETCD_TLS_DIR}/server.crt"),
            etcd_key_file: format!("{ETCD_TLS_DIR}/server.key"),
        }
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
