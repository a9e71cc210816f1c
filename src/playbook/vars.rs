//! The variables a host's steps and templates see.
//!
//! Most of them are the same for every host of one expansion (the cluster's settings, pg_hba
//! rules for every host, the list of hosts): `Vars` builds those once, as template values
//! shared by reference, and a host's context adds only its own few (`host`, `upstream`,
//! `downstreams`, `slot`, a flavour's or component's per-host entries). A host's context costs
//! the size of its own variables, not the cluster's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use minijinja::value::{merge_maps, Serde};
use minijinja::Value as Tmpl;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::components::Component;
use crate::flavours::Flavour;
use crate::model::{server_parameters, Cluster, Host, Role, Topology};
use crate::secret::mark;

/// pgha's own pg_hba rules, before the user's: local peer for the postgres OS user, and
/// replication between the cluster's hosts with SCRAM. Nothing from elsewhere.
fn hba(cluster: &Cluster, flavour: &dyn Flavour, components: &[Arc<dyn Component>]) -> Vec<Value> {
    let rule = |kind: &str, db: &str, user: &str, address: Option<String>, method: &str| json!({"type": kind, "database": db, "user": user, "address": address, "method": method});
    let repl = &cluster.replication.user;
    let mut rules = vec![
        rule("local", "all", "postgres", None, "peer"),
        rule("local", "all", "all", None, "peer"),
    ];
    for r in components.iter().flat_map(|c| c.hba()) {
        rules.push(serde_json::to_value(r).unwrap_or(Value::Null));
    }
    rules.extend([
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
        // Patroni checks a replica's timeline over a local replication connection, through
        // the socket (over TCP to localhost it would check the server's certificate for a
        // name the certificate does not have). `all` does not match replication.
        rule("local", "replication", repl, None, "scram-sha-256"),
    ]);
    // With TLS, every rule for another host's address takes TLS connections only.
    let network = if cluster.tls.is_some() {
        "hostssl"
    } else {
        "host"
    };
    // Only a host that runs PostgreSQL replicates or connects as the replication user (not
    // an etcd or a proxy host).
    for h in cluster.hosts.iter().filter(|h| h.role.has_postgres()) {
        let address = match h.ip() {
            Some(std::net::IpAddr::V4(ip)) => format!("{ip}/32"),
            Some(std::net::IpAddr::V6(ip)) => format!("{ip}/128"),
            None => h.address.clone(),
        };
        rules.push(rule(
            network,
            "replication",
            repl,
            Some(address.clone()),
            "scram-sha-256",
        ));
        // pg_rewind and status checks connect to a normal database.
        rules.push(rule(
            network,
            "postgres",
            repl,
            Some(address.clone()),
            "scram-sha-256",
        ));
        for mut r in flavour.hba(&address) {
            if r.kind == "host" {
                r.kind = network.to_owned();
            }
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

/// A template value from JSON. Through `serde_json::Value`, so that maps keep the order they
/// always had (sorted keys).
fn tmpl(value: &Value) -> Tmpl {
    Tmpl::from(Serde(value))
}

/// The names a host's context sets itself, over the shared ones (and `item` in a loop): a
/// template that reads none of them renders alike on every host.
pub const PER_HOST: [&str; 5] = ["host", "upstream", "downstreams", "slot", "item"];

/// The variables of one expansion: built once, then a context per host.
pub struct Vars<'a> {
    cluster: &'a Cluster,
    flavour: &'a dyn Flavour,
    components: &'a [Arc<dyn Component>],
    topology: &'a Topology,
    /// Everything that is the same on every host, as one map.
    shared: Tmpl,
    /// The flavour's and components' shared variables, by name, for the ones that add
    /// per-host entries over them.
    plugged: BTreeMap<&'static str, Tmpl>,
    /// Each host's `host` (also the items of `hosts`).
    host: BTreeMap<&'a str, Tmpl>,
    /// `{name, address, ...}` of each host, for `upstream`.
    brief_of: BTreeMap<&'a str, Tmpl>,
    /// `downstreams` of each upstream, in the inventory's order of hosts.
    downstreams: BTreeMap<&'a str, Vec<Tmpl>>,
    /// Names of per-host variables besides `PER_HOST`: the flavour's and components' names
    /// when they add per-host entries.
    per_host: BTreeSet<&'static str>,
}

impl<'a> Vars<'a> {
    pub fn new(
        cluster: &'a Cluster,
        flavour: &'a dyn Flavour,
        components: &'a [Arc<dyn Component>],
        topology: &'a Topology,
    ) -> Self {
        let pg = &cluster.postgres;
        let host_json = |h: &'a Host| {
            serde_json::to_value(HostVars {
                name: &h.name,
                address: &h.address,
                role: topology.role(h),
                upstream: topology.upstream.get(&h.name).map(String::as_str),
                allow_wipe: h.allow_wipe,
                depth: topology.depth(&h.name),
                flavour: flavour.host_vars(h),
            })
            .unwrap_or(Value::Null)
        };
        let host: BTreeMap<&str, Tmpl> = cluster
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), tmpl(&host_json(h))))
            .collect();
        // Name, address and the flavour's own keys (a repmgr node id): `upstream`, `primary`.
        let brief = |h: &Host| {
            let mut m = flavour.host_vars(h);
            m.insert("name".into(), json!(h.name));
            m.insert("address".into(), json!(h.address));
            Value::Object(m)
        };
        let brief_of: BTreeMap<&str, Tmpl> = cluster
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), tmpl(&brief(h))))
            .collect();
        let mut downstreams: BTreeMap<&str, Vec<Tmpl>> = BTreeMap::new();
        for h in &cluster.hosts {
            if let Some(up) = topology.upstream.get(&h.name) {
                downstreams.entry(up.as_str()).or_default().push(tmpl(
                    &json!({"name": h.name, "address": h.address, "slot": flavour.slot_name(&h.name)}),
                ));
            }
        }
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
        let primary = brief_of
            .get(topology.primary.as_str())
            .cloned()
            .unwrap_or(Tmpl::from(()));
        let mut shared: BTreeMap<String, Tmpl> = BTreeMap::new();
        let mut set = |key: &str, value: Tmpl| {
            shared.insert(key.to_owned(), value);
        };
        set(
            "cluster",
            tmpl(&json!({"name": cluster.name, "flavour": cluster.flavour})),
        );
        set(
            "pg",
            tmpl(&json!({
                "version": pg.version,
                "port": pg.port,
                "debian_cluster": pg.debian_cluster,
                "data_dir": pg.data_dir,
                "conf_dir": pg.conf_dir,
                "bin_dir": pg.bin_dir(),
                "service": format!("postgresql@{}-{}", pg.version, pg.debian_cluster),
                // The exact version a fresh host installs (`package`'s pins).
                "package_pins": pg.package_version.as_ref().map(|v| {
                    pg.server_packages().into_iter().map(|p| (p, json!(v))).collect::<serde_json::Map<_, _>>()
                }).unwrap_or_default(),
            })),
        );
        let mut parameters = server_parameters(cluster);
        flavour.parameters(&mut parameters);
        set("parameters", tmpl(&json!(parameters)));
        set(
            "hba",
            tmpl(&Value::Array(hba(cluster, flavour, components))),
        );
        set(
            "replication",
            tmpl(&json!({
                "user": cluster.replication.user,
                "slots": cluster.replication.slots,
                // Every member's slot name: another pgha slot in use is a departed standby's.
                "member_slots": cluster.hosts.iter().filter(|h| h.role.holds_data()).map(|h| flavour.slot_name(&h.name)).collect::<Vec<_>>(),
            })),
        );
        set("primary", primary);
        set(
            "hosts",
            Tmpl::from(
                cluster
                    .hosts
                    .iter()
                    .filter(|h| h.role.has_postgres())
                    .map(|h| host[h.name.as_str()].clone())
                    .collect::<Vec<_>>(),
            ),
        );
        set(
            "tls",
            tmpl(&match &cluster.tls {
                Some(t) => {
                    let dir = &t.dir;
                    json!({
                        "enabled": true,
                        "dir": dir,
                        "ca_file": format!("{dir}/ca.crt"),
                        "cert_file": format!("{dir}/server.crt"),
                        "key_file": format!("{dir}/server.key"),
                        "ca_cert": t.ca_cert,
                        "validity_days": t.validity_days,
                        "extra_names": t.extra_names,
                        // Each host's certificate issued elsewhere, or null: pgha issues it.
                        "provided": cluster.hosts.iter().map(|h| {
                            let p = t.provided.get(&h.name).map(|p| json!({
                                "cert": p.cert,
                                "key": crate::model::ProvidedCertificate::key_label(&h.name),
                            }));
                            (h.name.clone(), json!(p))
                        }).collect::<serde_json::Map<String, Value>>(),
                        "renew_before_days": t.renew_before_days,
                        // What a client adds to its connection string to check the server.
                        "conninfo": format!("sslmode=verify-full sslrootcert={dir}/ca.crt"),
                    })
                }
                None => json!({"enabled": false, "conninfo": ""}),
            }),
        );
        set("users", tmpl(&Value::Array(users)));
        set("databases", tmpl(&json!(cluster.databases)));
        // Named apart from the `extensions` component's own variables.
        set("database_extensions", tmpl(&Value::Array(extensions)));
        set(
            "apt_sources",
            tmpl(&Value::Array(
                crate::components::apt_sources(components)
                    .iter()
                    .map(|s| s.vars())
                    .collect(),
            )),
        );
        set("secrets", tmpl(&secrets));
        // The flavour's and the components' own variables, each under its name (`patroni.*`).
        // Those with per-host entries are merged with them in each host's context.
        let mut plugged = BTreeMap::new();
        let mut per_host = BTreeSet::new();
        let mut plug = |name: &'static str, vars: Value, has_own: bool| {
            let vars = tmpl(&vars);
            if has_own {
                per_host.insert(name);
                plugged.insert(name, vars.clone());
            }
            set(name, vars);
        };
        let has_own = |f: &dyn Fn(&Host) -> bool| cluster.hosts.iter().any(f);
        plug(
            flavour.name(),
            flavour.vars(cluster),
            has_own(&|h| !flavour.vars_of_host(cluster, h).is_empty()),
        );
        for c in components {
            plug(
                c.name(),
                c.vars(cluster),
                has_own(&|h| !c.vars_of_host(cluster, h).is_empty()),
            );
        }
        Vars {
            cluster,
            flavour,
            components,
            topology,
            shared: Tmpl::from(shared),
            plugged,
            host,
            brief_of,
            downstreams,
            per_host,
        }
    }

    /// Whether a variable differs from host to host (or is a loop's `item`).
    pub fn is_per_host(&self, name: &str) -> bool {
        PER_HOST.contains(&name) || self.per_host.contains(name)
    }

    /// Everything `host`'s steps and templates may use, as one value.
    pub fn context(&self, host: &Host) -> Tmpl {
        let topology = self.topology;
        let upstream = topology
            .upstream
            .get(&host.name)
            .and_then(|u| self.brief_of.get(u.as_str()))
            .cloned()
            .unwrap_or(Tmpl::from(()));
        let downstreams = self
            .downstreams
            .get(host.name.as_str())
            .cloned()
            .unwrap_or_default();
        let slot = (self.cluster.replication.slots && topology.upstream.contains_key(&host.name))
            .then(|| self.flavour.slot_name(&host.name));
        let mut own: BTreeMap<&str, Tmpl> = BTreeMap::from([
            (
                "host",
                self.host
                    .get(host.name.as_str())
                    .cloned()
                    .unwrap_or_default(),
            ),
            ("upstream", upstream),
            ("downstreams", Tmpl::from(downstreams)),
            ("slot", Tmpl::from(slot)),
        ]);
        // A flavour's or component's per-host entries, over its shared variables.
        let mut overlay = |name: &'static str, entries: Map<String, Value>| {
            if let Some(shared) = self.plugged.get(name) {
                own.insert(
                    name,
                    merge_maps([shared.clone(), tmpl(&Value::Object(entries))]),
                );
            }
        };
        overlay(
            self.flavour.name(),
            self.flavour.vars_of_host(self.cluster, host),
        );
        for c in self.components {
            overlay(c.name(), c.vars_of_host(self.cluster, host));
        }
        merge_maps([self.shared.clone(), Tmpl::from(own)])
    }
}
