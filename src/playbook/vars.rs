//! The variables a host's steps and templates see.

use serde::Serialize;
use serde_json::{json, Value};

use crate::model::{server_parameters, Cluster, Host, Role, Topology};
use crate::secret::mark;

/// pgha's own pg_hba rules, before the user's: local peer for the postgres OS user, and
/// replication between the cluster's hosts with SCRAM. Nothing from elsewhere.
fn hba(cluster: &Cluster) -> Vec<Value> {
    let rule = |kind: &str, db: &str, user: &str, address: Option<String>, method: &str| json!({"type": kind, "database": db, "user": user, "address": address, "method": method});
    let repl = &cluster.replication.user;
    let mut rules = vec![
        rule("local", "all", "postgres", None, "peer"),
        rule("local", "all", "all", None, "peer"),
        rule(
            "host",
            "all",
            "all",
            Some("127.0.0.1/32".into()),
            "scram-sha-256",
        ),
        rule(
            "host",
            "all",
            "all",
            Some("::1/128".into()),
            "scram-sha-256",
        ),
        // Patroni checks a replica's timeline over a local replication connection.
        rule(
            "host",
            "replication",
            repl,
            Some("127.0.0.1/32".into()),
            "scram-sha-256",
        ),
    ];
    for h in &cluster.hosts {
        let address = match h.ip() {
            Some(std::net::IpAddr::V4(ip)) => format!("{ip}/32"),
            Some(std::net::IpAddr::V6(ip)) => format!("{ip}/128"),
            None => h.address.clone(),
        };
        rules.push(rule(
            "host",
            "replication",
            repl,
            Some(address.clone()),
            "scram-sha-256",
        ));
        // pg_rewind and status checks connect to a normal database.
        rules.push(rule(
            "host",
            "postgres",
            repl,
            Some(address.clone()),
            "scram-sha-256",
        ));
        if let Some(p) = &cluster.patroni {
            // Patroni's pg_rewind of a former leader connects as the rewind user.
            rules.push(rule(
                "host",
                "postgres",
                &p.rewind_user,
                Some(address),
                "scram-sha-256",
            ));
        }
    }
    for r in &cluster.postgres.hba {
        rules.push(serde_json::to_value(r).unwrap_or(Value::Null));
    }
    rules
}

#[derive(Serialize)]
struct HostVars<'a> {
    name: &'a str,
    address: &'a str,
    role: Role,
    upstream: Option<&'a str>,
    allow_wipe: bool,
    depth: usize,
    tags: &'a crate::model::patroni::Tags,
    /// Runs an etcd member (Patroni flavour).
    etcd_member: bool,
}

fn host_vars<'a>(cluster: &Cluster, topology: &'a Topology, h: &'a Host) -> HostVars<'a> {
    HostVars {
        name: &h.name,
        address: &h.address,
        role: topology.role(h),
        upstream: topology.upstream.get(&h.name).map(String::as_str),
        allow_wipe: h.allow_wipe,
        depth: topology.depth(&h.name),
        tags: &h.tags,
        etcd_member: cluster
            .patroni
            .as_ref()
            .is_some_and(|p| p.etcd.members.contains(&h.name)),
    }
}

/// Everything `host`'s steps and templates may use, as one JSON value.
pub fn host_vars_json(cluster: &Cluster, topology: &Topology, host: &Host) -> Value {
    let pg = &cluster.postgres;
    let upstream = topology
        .upstream
        .get(&host.name)
        .and_then(|u| cluster.host(u))
        .map(|u| json!({"name": u.name, "address": u.address}));
    let primary = cluster
        .host(&topology.primary)
        .map(|p| json!({"name": p.name, "address": p.address}));
    let downstreams: Vec<Value> = topology
        .downstreams(cluster, &host.name)
        .iter()
        .map(|d| json!({"name": d.name, "address": d.address, "slot": cluster.slot_name(&d.name)}))
        .collect();
    let slot = (cluster.replication.slots && topology.upstream.contains_key(&host.name))
        .then(|| cluster.slot_name(&host.name));
    let users: Vec<Value> = cluster
        .users
        .iter()
        .map(|u| {
            json!({
                "name": u.name, "login": u.login, "superuser": u.superuser, "createdb": u.createdb,
                "createrole": u.createrole, "connection_limit": u.connection_limit,
                "password_label": u.password.as_ref().map(|_| format!("users[{}].password", u.name)),
            })
        })
        .collect();
    let extensions: Vec<Value> = cluster
        .databases
        .iter()
        .flat_map(|db| {
            db.extensions
                .iter()
                .map(move |e| json!({"database": db.name, "name": e}))
        })
        .collect();
    json!({
        "cluster": {"name": cluster.name, "flavour": cluster.flavour},
        "pg": {
            "version": pg.version,
            "port": pg.port,
            "debian_cluster": pg.debian_cluster,
            "data_dir": pg.data_dir,
            "conf_dir": pg.conf_dir,
            "bin_dir": format!("/usr/lib/postgresql/{}/bin", pg.version),
            "service": format!("postgresql@{}-{}", pg.version, pg.debian_cluster),
        },
        "parameters": server_parameters(cluster),
        "hba": hba(cluster),
        "replication": {
            "user": cluster.replication.user,
            "slots": cluster.replication.slots,
        },
        "host": host_vars(cluster, topology, host),
        "upstream": upstream,
        "primary": primary,
        "hosts": cluster.hosts.iter().filter(|h| h.role.has_postgres()).map(|h| host_vars(cluster, topology, h)).collect::<Vec<_>>(),
        "patroni": patroni_vars(cluster, host),
        "downstreams": downstreams,
        "slot": slot,
        "users": users,
        "databases": cluster.databases,
        "extensions": extensions,
        "packages": cluster.packages,
        "secrets": {
            "replication_password": mark("replication.password", None),
            "superuser_password": cluster.postgres.superuser_password.as_ref().map(|_| mark("postgres.superuser_password", None)),
            "rewind_password": cluster.patroni.as_ref().map(|_| mark("patroni.rewind.password", None)),
        },
    })
}

/// What Patroni's templates need: the settings plus what is derived from the hosts.
fn patroni_vars(cluster: &Cluster, host: &Host) -> Value {
    let Some(p) = &cluster.patroni else {
        return Value::Null;
    };
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
    // Cascading under Patroni: a declared upstream other than the primary is `replicatefrom`.
    let declared_primary = cluster.primary().name.clone();
    let replicatefrom = host.upstream.clone().filter(|u| *u != declared_primary);
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
        "replicatefrom": replicatefrom,
        "dcs_parameters": dcs_settings["postgresql"]["parameters"],
        "dcs_settings": dcs_settings,
        "members": members,
        "service": format!("patroni@{instance}"),
        "config_file": format!("/etc/patroni/{instance}.yml"),
    })
}
