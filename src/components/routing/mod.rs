//! Client routing that follows the primary (`routing:` in the inventory), for every flavour:
//! a virtual IP moved by the flavour's role callback (Patroni) or by keepalived, and haproxy
//! with health checks on the data hosts (a write port to the primary, a read port to the
//! streaming replicas).
//!
//! Health: a flavour with a REST API of its own answers the checks (Patroni's `/primary`,
//! `/replica?lag=`); for the others pgha installs a socket-activated endpoint
//! (`pgha-health.socket`: one process that systemd starts on the first check) that asks the
//! local server. keepalived's track script runs the same program in its `check` form, with weight 0:
//! a failing check puts the instance in FAULT and drops the VIP, so only the member that
//! takes writes can hold it (with a positive weight an isolated node that hears no adverts
//! would still make itself MASTER).
//!
//! haproxy may also run on dedicated proxy hosts (`role: proxy`): such a host holds no data
//! and runs only this component's own playbook (`routing-proxy.yml`): haproxy, and the cluster
//! CA for its checks.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::components::{Component, Entry, SectionInput};
use crate::facts::gather::Probe;
use crate::flavours::{BoxFuture, CheckResult, ClusterView, Flavour, FlavourSecret, HealthCheck};
use crate::model::{Cluster, Host, MemberRole, Role};

pub mod connect;
pub mod probes;
pub mod section;
pub mod verify;

pub mod steps {
    crate::kinds! {
        vip: Vip,
    }
}

pub use section::{Section, VipMode};

pub const ENTRY: Entry = Entry {
    name: "routing",
    kinds: steps::KINDS,
    roles: &[PROXY_ROLE],
    roles_need: "a proxy host runs haproxy: give the inventory `routing.haproxy` (and the host in `routing.haproxy.hosts`), or make it a data host",
    load,
};

/// A host that runs haproxy for the cluster and nothing else: no data, no PostgreSQL.
pub const PROXY_ROLE: MemberRole = MemberRole {
    name: "proxy",
    runs_postgres: false,
    description: "a proxy host",
};

/// Where a proxy host keeps the cluster CA for haproxy's checks (it has no PostgreSQL, so
/// none of the server's folders).
pub const PROXY_CA_FILE: &str = "/etc/haproxy/pgha-ca.crt";

/// The program behind the health endpoint and keepalived's check.
pub const HEALTH_BIN: &str = "/usr/local/lib/pgha/pgha-health";

fn load(mut input: SectionInput<'_>) -> Option<Arc<dyn Component>> {
    let flavour = input.flavour.clone();
    let mut ports: Vec<(u16, String)> = vec![(input.postgres_port, "postgres.port".to_owned())];
    if let Some(h) = input.hosts.first() {
        ports.push((h.ssh.port, "ssh.port".to_owned()));
    }
    ports.extend(flavour.ports());
    let cx = section::Context {
        hosts: input.hosts,
        role_callbacks: flavour.role_callbacks(),
        flavour_health: matches!(flavour.health(), HealthCheck::Http { .. }),
        listen_addresses: (!flavour.writes_listen_addresses()).then_some(input.listen_addresses),
        ports,
    };
    let section = section::read(&mut input, &cx)?;
    Some(Arc::new(Routing { section, flavour }))
}

/// keepalived's PASS authentication reads 8 characters (more are cut off without a word), in
/// double quotes in its configuration.
fn vrrp_password(value: &str) -> Result<(), String> {
    if value.chars().count() > 8 {
        return Err("VRRP PASS authentication takes at most 8 characters (keepalived would silently cut it)".to_owned());
    }
    if value.contains(['"', '\\']) || value.chars().any(char::is_whitespace) {
        return Err("it may not hold a double quote, a backslash or a space (keepalived's configuration quoting)".to_owned());
    }
    Ok(())
}

#[derive(Debug)]
pub struct Routing {
    pub section: Section,
    flavour: Arc<dyn Flavour>,
}

impl Routing {
    /// Where the health checks go: `(port, own endpoint)`.
    fn health(&self) -> (u16, bool) {
        match self.flavour.health() {
            HealthCheck::Http { port, .. } => (port, false),
            HealthCheck::Sql { .. } => (self.section.health_port, true),
        }
    }

    /// What the plan says it renders: users of other tools keep asking why "the VIP did not
    /// follow the leader" when theirs sat on the proxies.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(v) = &self.section.vip {
            out.push(match v.mode {
                VipMode::Callback => format!(
                    "routing: VIP {} on {} follows the primary: the flavour's role callback adds it on the new primary and removes it elsewhere",
                    v.net, v.interface
                ),
                VipMode::Keepalived => format!(
                    "routing: VIP {} on {} follows the primary: keepalived on every data host, its check of the local role with weight 0 (a member that does not take writes is in FAULT and cannot hold it)",
                    v.net, v.interface
                ),
            });
        }
        if let Some(h) = &self.section.haproxy {
            out.push(format!(
                "routing: haproxy on {}{}: port {} to the primary, port {} to replicas at most {} bytes behind",
                h.hosts.join(", "),
                if h.proxies_by_default {
                    " (the proxy hosts only: `routing.haproxy.hosts` is left out)"
                } else {
                    ""
                },
                h.primary_port,
                h.replica_port,
                h.max_lag
            ));
            if self.section.vip.is_some() && !h.on_every_data_host {
                out.push("routing: the VIP follows the primary and not every data host runs haproxy: clients reach haproxy at its hosts' addresses, not at the VIP".to_owned());
            }
        }
        out
    }
}

impl Component for Routing {
    fn name(&self) -> &'static str {
        "routing"
    }

    // keepalived first: a leaving host must not answer for the VIP a moment longer.
    fn units(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.section.keepalived.is_some() {
            out.push("keepalived".to_owned());
        }
        if self.section.haproxy.is_some() {
            out.push("haproxy".to_owned());
        }
        if self.health().1 {
            out.extend([
                "pgha-health.socket".to_owned(),
                "pgha-health.service".to_owned(),
            ]);
        }
        out
    }

    fn fragments(&self) -> &'static [(&'static str, &'static str)] {
        &[
            (
                "packages",
                include_str!("../../../playbooks/components/routing-packages.yml"),
            ),
            (
                "running",
                include_str!("../../../playbooks/components/routing.yml"),
            ),
        ]
    }

    fn templates(&self) -> &'static [(&'static str, &'static str)] {
        &[
            (
                "routing/pgha-health.py.j2",
                include_str!("../../../templates/routing/pgha-health.py.j2"),
            ),
            (
                "routing/pgha-health.socket.j2",
                include_str!("../../../templates/routing/pgha-health.socket.j2"),
            ),
            (
                "routing/pgha-health.service.j2",
                include_str!("../../../templates/routing/pgha-health.service.j2"),
            ),
            (
                "routing/haproxy.cfg.j2",
                include_str!("../../../templates/routing/haproxy.cfg.j2"),
            ),
            (
                "routing/keepalived.conf.j2",
                include_str!("../../../templates/routing/keepalived.conf.j2"),
            ),
            (
                "routing/sudoers.j2",
                include_str!("../../../templates/routing/sudoers.j2"),
            ),
        ]
    }

    fn secrets(&self) -> Vec<FlavourSecret<'_>> {
        self.section
            .keepalived
            .iter()
            .map(|k| FlavourSecret {
                label: "routing.keepalived.password".to_owned(),
                var: "vrrp_password",
                reference: &k.password,
                rule: Some(vrrp_password),
            })
            .collect()
    }

    fn certificate_names(&self, hosts: &[Host]) -> Vec<String> {
        let mut names = Vec::new();
        // Clients verify the server's certificate against the address they dialled: the VIP,
        // or (haproxy passes TLS through) any haproxy host's.
        if let Some(v) = &self.section.vip {
            names.push(v.address().to_string());
        }
        if let Some(h) = &self.section.haproxy {
            for name in &h.hosts {
                if let Some(host) = hosts.iter().find(|h| &h.name == name) {
                    names.push(host.name.clone());
                    names.push(host.address.clone());
                }
            }
        }
        names
    }

    fn roles(&self) -> &'static [MemberRole] {
        if self.section.haproxy.is_some() {
            &[PROXY_ROLE]
        } else {
            &[]
        }
    }

    fn host_playbook(&self, role: Role) -> Option<(&'static str, &'static str)> {
        (role == Role::Member(PROXY_ROLE)).then_some((
            "components/routing-proxy.yml",
            include_str!("../../../playbooks/components/routing-proxy.yml"),
        ))
    }

    fn host_state(&self, host: &Host, facts: Option<&crate::facts::HostFacts>) -> Option<String> {
        if host.role != Role::Member(PROXY_ROLE) {
            return None;
        }
        Some(match facts.and_then(probes::haproxy_backends) {
            Some(_) => "haproxy running".to_owned(),
            None => "haproxy not answering".to_owned(),
        })
    }

    fn vars(&self, cluster: &Cluster) -> Value {
        let s = &self.section;
        let data: Vec<&Host> = cluster
            .hosts
            .iter()
            .filter(|h| h.role.holds_data())
            .collect();
        let (port, own) = self.health();
        let max_lag = s.haproxy.as_ref().map_or(1 << 20, |h| h.max_lag);
        let scheme = if cluster.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut packages = Vec::new();
        if own || s.keepalived.is_some() {
            packages.push("python3");
        }
        if s.vip.as_ref().is_some_and(|v| v.mode == VipMode::Callback) {
            // `arping` (Thomas Habets') conflicts with it and reads `-i` differently.
            packages.push("iputils-arping");
        }
        if s.keepalived.is_some() {
            packages.push("keepalived");
        }
        let checks = crate::components::timing::haproxy_checks(cluster.objectives.as_ref());
        json!({
            "vip": s.vip.as_ref().map(|v| json!({
                "address": v.address().to_string(),
                "prefix": v.net.prefix_len(),
                "cidr": v.net.to_string(),
                "interface": v.interface,
                "mode": v.mode.as_str(),
            })),
            "vip_by_callback": s.vip.as_ref().is_some_and(|v| v.mode == VipMode::Callback),
            "keepalived": s.keepalived.as_ref().map(|k| json!({
                "virtual_router_id": k.virtual_router_id,
                "unicast": k.unicast,
                "peers": data.iter().map(|h| h.address.clone()).collect::<Vec<_>>(),
                "advert_int": 1,
            })),
            "haproxy": s.haproxy.as_ref().map(|h| json!({
                "hosts": h.hosts,
                "primary_port": h.primary_port,
                "replica_port": h.replica_port,
                "max_lag": h.max_lag,
                "proxy_ca_file": PROXY_CA_FILE,
                // A member that stops answering leaves the write route after two checks
                // (2 s; 1 s under a tight rto); one good answer brings a new primary in.
                "inter_ms": checks.inter_ms,
                "fall": checks.fall,
                "rise": checks.rise,
                "backends": data.iter().map(|b| json!({
                    "name": b.name, "address": b.address, "port": cluster.postgres.port,
                })).collect::<Vec<_>>(),
            })),
            "health": {
                "own": own,
                "port": port,
                "scheme": scheme,
                "primary_path": "/primary",
                "replica_path": format!("/replica?lag={max_lag}"),
                "max_lag": max_lag,
            },
            "bin": HEALTH_BIN,
            "packages": packages,
        })
    }

    fn probes(&self, _cluster: &Cluster, host: &Host) -> Vec<Probe> {
        let mut out = Vec::new();
        if self.section.vip.is_some() && host.role.holds_data() {
            out.push(probes::vip_probe());
        }
        if self
            .section
            .haproxy
            .as_ref()
            .is_some_and(|h| h.hosts.contains(&host.name))
        {
            out.push(probes::haproxy_probe());
        }
        out
    }

    fn polled_checks(&self, view: &ClusterView<'_>) -> Vec<CheckResult> {
        verify::polled(self, view)
    }

    fn checks<'a>(&'a self, view: &'a ClusterView<'a>) -> BoxFuture<'a, Vec<CheckResult>> {
        Box::pin(verify::routes(self, view))
    }

    fn status_lines(
        &self,
        cluster: &Cluster,
        facts: &std::collections::BTreeMap<String, crate::facts::HostFacts>,
    ) -> Vec<String> {
        verify::status_lines(self, cluster, facts)
    }

    fn plan_notes(&self, _hardware: Option<crate::model::Hardware>) -> Vec<String> {
        self.describe()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
