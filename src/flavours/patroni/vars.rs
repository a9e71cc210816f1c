//! What the Patroni flavour's templates and playbook see under `patroni`: its settings plus
//! what is derived from the hosts (etcd endpoints, members' REST APIs, the DCS settings).

use serde_json::{json, Map, Value};

use crate::flavours::patroni::config::Patroni;
use crate::model::{server_parameters, Cluster, Host};

/// What Patroni's templates need: the settings plus what is derived from the hosts, the same
/// on every host.
pub(super) fn vars(p: &Patroni, cluster: &Cluster) -> Value {
    let address = |name: &str| {
        cluster
            .host(name)
            .map(|h| h.address.clone())
            .unwrap_or_default()
    };
    let etcd_hosts: Vec<String> = p
        .etcd
        .members
        .iter()
        .map(|m| format!("{}:{}", address(m), p.etcd.client_port))
        .collect();
    let initial: Vec<String> = p
        .etcd
        .members
        .iter()
        .map(|m| format!("{m}=http://{}:{}", address(m), p.etcd.peer_port))
        .collect();
    // Server parameters live in the DCS under Patroni; these are Patroni's own or its
    // defaults and stay out: listen_addresses/port (postgresql.listen), hot_standby,
    // wal_level, archive settings are kept.
    let mut dcs_parameters = server_parameters(cluster);
    for managed in [
        "listen_addresses",
        "port",
        "cluster_name",
        "password_encryption",
    ] {
        dcs_parameters.remove(managed);
    }
    dcs_parameters.insert("password_encryption".into(), "scram-sha-256".into());
    let instance = format!(
        "{}-{}",
        cluster.postgres.version, cluster.postgres.debian_cluster
    );
    // What pgha keeps in the DCS after bootstrap (changed through PATCH /config).
    let dcs_settings = json!({
        "ttl": p.ttl,
        "loop_wait": p.loop_wait,
        "retry_timeout": p.retry_timeout,
        "primary_start_timeout": p.primary_start_timeout,
        "maximum_lag_on_failover": p.maximum_lag_on_failover,
        "synchronous_mode": p.synchronous_mode,
        "synchronous_mode_strict": p.synchronous_mode_strict,
        "synchronous_node_count": p.synchronous_node_count,
        "standby_cluster": p.standby_cluster.as_ref().map(|s| json!({"host": s.host, "port": s.port, "primary_slot_name": s.primary_slot_name})),
        // Permanent slots: the whole map is pgha's (a slot dropped from the inventory is
        // dropped from the DCS); null when there are none.
        "slots": (!p.permanent_slots.is_empty()).then(|| p.permanent_slots.iter().map(|n| (n.clone(), json!({"type": "physical"}))).collect::<serde_json::Map<String, Value>>()),
        "postgresql": {
            "use_pg_rewind": p.use_pg_rewind,
            "use_slots": p.use_slots,
            "parameters": dcs_parameters,
        },
    });
    let members: serde_json::Map<String, Value> = cluster
        .hosts
        .iter()
        .filter(|h| h.role.has_postgres())
        .map(|h| {
            (
                h.name.clone(),
                Value::String(format!("http://{}:{}", h.address, p.restapi_port)),
            )
        })
        .collect();
    json!({
        "data_dir": p.data_dir,
        "namespace": p.namespace,
        "restapi_port": p.restapi_port,
        "ttl": p.ttl,
        "loop_wait": p.loop_wait,
        "retry_timeout": p.retry_timeout,
        "primary_start_timeout": p.primary_start_timeout,
        "maximum_lag_on_failover": p.maximum_lag_on_failover,
        "use_pg_rewind": p.use_pg_rewind,
        "use_slots": p.use_slots,
        "switchover_for_restart": p.switchover_for_restart,
        "synchronous_mode": p.synchronous_mode,
        "synchronous_mode_strict": p.synchronous_mode_strict,
        "synchronous_node_count": p.synchronous_node_count,
        "watchdog": p.watchdog,
        "rewind_user": p.rewind_user,
        "etcd": p.etcd,
        "etcd_hosts": etcd_hosts,
        "etcd_initial_cluster": initial.join(","),
        "etcd_endpoint": format!("http://127.0.0.1:{}", p.etcd.client_port),
        "standby_cluster": p.standby_cluster,
        "dcs_parameters": dcs_settings["postgresql"]["parameters"],
        "dcs_settings": dcs_settings,
        "members": members,
        "service": format!("patroni@{instance}"),
        "config_file": format!("/etc/patroni/{instance}.yml"),
    })
}

/// What differs from host to host under `patroni`: cascading under Patroni, a declared upstream
/// other than the primary, is `replicatefrom`.
pub(super) fn vars_of_host(cluster: &Cluster, host: &Host) -> Map<String, Value> {
    let declared_primary = &cluster.primary().name;
    let replicatefrom = host.upstream.clone().filter(|u| u != declared_primary);
    let mut m = Map::new();
    m.insert("replicatefrom".to_owned(), json!(replicatefrom));
    m
}
