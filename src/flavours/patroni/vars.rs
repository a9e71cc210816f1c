//! What the Patroni flavour's templates and playbook see under `patroni`: its settings plus
//! what is derived from the hosts (etcd endpoints, members' REST APIs, the DCS settings).

use serde_json::{json, Map, Value};

use crate::flavours::patroni::config::Patroni;
use crate::flavours::patroni::rest::{self, Request};
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
        .map(|m| format!("{m}={}://{}:{}", p.scheme(), address(m), p.etcd.peer_port))
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
        .map(|h| (h.name.clone(), Value::String(p.rest_api(h))))
        .collect();
    // PostgreSQL's listen_addresses on each member (`postgresql.listen`): its own address and
    // localhost; every address (`0.0.0.0`) where a VIP comes and goes, which the playbook
    // decides, as the VIP is the routing component's.
    let data_hosts = || cluster.hosts.iter().filter(|h| h.role.has_postgres());
    let listen_own: serde_json::Map<String, Value> = data_hosts()
        .map(|h| (h.name.clone(), json!(format!("{},127.0.0.1", h.address))))
        .collect();
    let listen_any: serde_json::Map<String, Value> = data_hosts()
        .map(|h| (h.name.clone(), json!("0.0.0.0")))
        .collect();
    json!({
        "decommissioned": cluster.decommission.iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
        "listen_own": listen_own,
        "listen_any": listen_any,
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
        "restapi_user": p.restapi_user,
        "scheme": p.scheme(),
        "tls": p.tls,
        "etcdctl": p.etcdctl(),
        "etcd": p.etcd,
        "etcd_urls": etcd_hosts.iter().map(|h| format!("{}://{h}", p.scheme())).collect::<Vec<_>>(),
        "etcd_hosts": etcd_hosts,
        "etcd_initial_cluster": initial.join(","),
        // The membership the inventory wants, in its order (etcd_member_remove, _join).
        "etcd_wanted": p.etcd.members.iter().map(|m| json!({"name": m, "peer_url": format!("{}://{}:{}", p.scheme(), address(m), p.etcd.peer_port)})).collect::<Vec<_>>(),
        "member_addresses": cluster.hosts.iter().filter(|h| h.role.has_postgres()).map(|h| json!({"name": h.name, "address": h.address})).collect::<Vec<_>>(),
        "host_names": cluster.hosts.iter().map(|h| h.name.clone()).collect::<Vec<_>>(),
        "etcd_endpoint": p.etcd_endpoint(),
        "standby_cluster": p.standby_cluster,
        "dcs_parameters": dcs_settings["postgresql"]["parameters"],
        // PostgreSQL's TLS parameters, set before a running cluster's members move to TLS.
        "tls_parameters": dcs_settings["postgresql"]["parameters"].as_object().map(|o| o.iter().filter(|(k, _)| k.starts_with("ssl")).map(|(k, v)| (k.clone(), v.clone())).collect::<Map<String, Value>>()),
        "dcs_settings": dcs_settings,
        "members": members,
        "service": format!("patroni@{instance}"),
        "config_file": config_file(cluster),
    })
}

/// Patroni's configuration on every member (Debian's `patroni@<version>-<cluster>` reads it).
fn config_file(cluster: &Cluster) -> String {
    format!(
        "/etc/patroni/{}-{}.yml",
        cluster.postgres.version, cluster.postgres.debian_cluster
    )
}

/// What differs from host to host under `patroni`: cascading under Patroni, a declared upstream
/// other than the primary, is `replicatefrom`; the settings of pgha's REST client there (a
/// host without PostgreSQL has only etcd's certificate).
pub(super) fn vars_of_host(p: &Patroni, cluster: &Cluster, host: &Host) -> Map<String, Value> {
    let declared_primary = &cluster.primary().name;
    let replicatefrom = host.upstream.clone().filter(|u| u != declared_primary);
    let mut m = Map::new();
    m.insert("replicatefrom".to_owned(), json!(replicatefrom));
    let data = host.role.has_postgres();
    let client = match &p.tls {
        Some(t) if data => json!({"ca": t.ca_file, "cert": t.cert_file, "key": t.key_file}),
        Some(t) => json!({"ca": t.etcd_ca_file, "cert": t.etcd_cert_file, "key": t.etcd_key_file}),
        None => json!({}),
    };
    let mut client = client.as_object().cloned().unwrap_or_default();
    if data {
        client.insert("patroni_config".to_owned(), json!(config_file(cluster)));
    }
    m.insert("api_client".to_owned(), Value::Object(client));
    // True once this member's REST API answers (after a reload that changed its certificate
    // it listens again a moment later). On http too while a cluster an earlier pgha built
    // without TLS has not moved to it yet: a reload then leaves it there.
    if data {
        let liveness = |url: String| {
            rest::condition(&[Request::get(format!("{url}/liveness"))], &[Vec::new()])
        };
        let mut answers = liveness(p.rest_api(host));
        if p.tls.is_some() {
            let plain = format!("http://{}:{}", host.address, p.restapi_port);
            answers = format!("{{ {answers} || {}; }}", liveness(plain));
        }
        m.insert("rest_answers".to_owned(), json!(answers));
    }
    m
}
