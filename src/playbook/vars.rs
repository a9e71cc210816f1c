//! The variables a host's steps and templates see.

use serde::Serialize;
use serde_json::{json, Value};

use std::sync::Arc;

use crate::components::Component;
use crate::flavours::Flavour;
use crate::model::{server_parameters, Cluster, Host, Role, Topology};
use crate::secret::mark;

/// pgha's own pg_hba rules, before the user's: local peer for the postgres OS user, and
/// replication between the cluster's hosts with SCRAM. Nothing from elsewhere.
fn hba(cluster: &Cluster, flavour: &dyn Flavour) -> Vec<Value> {
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
        for r in flavour.hba(&address) {
            rules.push(serde_json::to_value(r).unwrap_or(Value::Null));
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
    /// The flavour's own host variables.
    #[serde(flatten)]
    flavour: serde_json::Map<String, Value>,
}

fn host_vars<'a>(flavour: &dyn Flavour, topology: &'a Topology, h: &'a Host) -> HostVars<'a> {
    HostVars {
        name: &h.name,
        address: &h.address,
        role: topology.role(h),
        upstream: topology.upstream.get(&h.name).map(String::as_str),
        allow_wipe: h.allow_wipe,
        depth: topology.depth(&h.name),
        flavour: flavour.host_vars(h),
    }
}

/// Everything `host`'s steps and templates may use, as one JSON value.
pub fn host_vars_json(
    cluster: &Cluster,
    flavour: &dyn Flavour,
    components: &[Arc<dyn Component>],
    topology: &Topology,
    host: &Host,
) -> Value {
    let pg = &cluster.postgres;
    // Name, address and the flavour's own keys (a repmgr node id).
    let brief = |h: &Host| {
        let mut m = flavour.host_vars(h);
        m.insert("name".into(), json!(h.name));
        m.insert("address".into(), json!(h.address));
        Value::Object(m)
    };
    let upstream = topology
        .upstream
        .get(&host.name)
        .and_then(|u| cluster.host(u))
        .map(brief);
    let primary = cluster.host(&topology.primary).map(brief);
    let downstreams: Vec<Value> = topology
        .downstreams(cluster, &host.name)
        .iter()
        .map(|d| json!({"name": d.name, "address": d.address, "slot": flavour.slot_name(&d.name)}))
        .collect();
    let slot = (cluster.replication.slots && topology.upstream.contains_key(&host.name))
        .then(|| flavour.slot_name(&host.name));
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
    let mut secrets = json!({
        "replication_password": mark("replication.password", None),
        "superuser_password": cluster.postgres.superuser_password.as_ref().map(|_| mark("postgres.superuser_password", None)),
    });
    let mut plugged = flavour.secrets();
    for c in components {
        plugged.extend(c.secrets());
    }
    for s in plugged {
        secrets[s.var] = Value::String(mark(&s.label, None));
    }
    let mut parameters = server_parameters(cluster);
    flavour.parameters(&mut parameters);
    let mut vars = json!({
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
        "parameters": parameters,
        "hba": hba(cluster, flavour),
        "replication": {
            "user": cluster.replication.user,
            "slots": cluster.replication.slots,
        },
        "host": host_vars(flavour, topology, host),
        "upstream": upstream,
        "primary": primary,
        "hosts": cluster.hosts.iter().filter(|h| h.role.has_postgres()).map(|h| host_vars(flavour, topology, h)).collect::<Vec<_>>(),
        "downstreams": downstreams,
        "slot": slot,
        "users": users,
        "databases": cluster.databases,
        "extensions": extensions,
        "secrets": secrets,
    });
    // The flavour's and the components' own variables, each under its name (`patroni.*`).
    vars[flavour.name()] = flavour.vars(cluster, host);
    for c in components {
        vars[c.name()] = c.vars(cluster, host);
    }
    vars
}
