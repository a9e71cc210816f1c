//! Rules across sections, run once the cluster is read: what the servers need of each other
//! (enough WAL senders and slots for every standby, addresses they listen on, synchronous
//! standbys that exist), settings PostgreSQL refuses only in combination, ports that clash
//! on one host, and the slot names the flavour derives from host names.
//!
//! Errors point at the key that decides, found again in the document; when the inventory
//! leaves a setting to its default, at the section that would hold it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::diag::Diagnostics;
use crate::flavours::Flavour;
use crate::model::pg_names::slot_name_problem;
use crate::model::pg_params;
use crate::model::sync_standbys;
use crate::model::{same_machine, Cluster, Host};
use crate::yaml::node::{Node, Pos};

/// The most server processes PostgreSQL counts (MAX_BACKENDS).
const MAX_BACKENDS: f64 = 262_143.0;

/// Positions in the document, by path.
struct At<'a> {
    root: &'a Node,
}

impl At<'_> {
    /// The node at `path`, or the nearest of its parents that is there.
    fn pos(&self, path: &str) -> Pos {
        self.root.pos_near(path)
    }

    /// The value of a server parameter as written (any letter case), or None.
    fn param(&self, name: &str) -> Option<Pos> {
        let params = self.root.at("postgres.parameters")?;
        params.get_ignore_case(name).map(|(_, v)| v.pos)
    }

    /// The first of `names` the inventory sets, else the parameters section.
    fn param_or_section(&self, names: &[&str]) -> Pos {
        names
            .iter()
            .find_map(|n| self.param(n))
            .unwrap_or_else(|| self.pos("postgres.parameters"))
    }
}

/// Every rule of this module; errors go to `d`.
pub fn check(d: &mut Diagnostics, root: &Node, cluster: &Cluster, flavour: &dyn Flavour) {
    let at = At { root };
    senders_and_slots(d, &at, cluster, flavour);
    connections(d, &at, cluster);
    listen_addresses(d, &at, cluster);
    synchronous_standbys(d, &at, cluster);
    ssl_rules(d, &at, cluster);
    ports(d, &at, cluster);
    slot_names(d, &at, cluster, flavour);
}

fn data_hosts(cluster: &Cluster) -> impl Iterator<Item = (usize, &Host)> {
    cluster
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| h.role.holds_data())
}

/// After a switchover or a failover any data host may be the primary, fed from by all others.
fn senders_and_slots(d: &mut Diagnostics, at: &At, cluster: &Cluster, flavour: &dyn Flavour) {
    let standbys = data_hosts(cluster).count().saturating_sub(1);
    let r = &cluster.replication;
    if (r.max_wal_senders as usize) < standbys {
        d.error_with_help(
            at.pos("replication.max_wal_senders"),
            "replication.max_wal_senders",
            format!("max_wal_senders {} is fewer than the {standbys} standbys: a primary needs one WAL sender for each", r.max_wal_senders),
            format!("set replication.max_wal_senders to at least {standbys} (plus 2 to clone a new standby while all stream)"),
        );
    }
    let slots = flavour.slots_needed(cluster);
    if (r.max_replication_slots as usize) < slots {
        d.error_with_help(
            at.pos("replication.max_replication_slots"),
            "replication.max_replication_slots",
            format!("max_replication_slots {} is fewer than the {slots} replication slots a primary of this cluster keeps", r.max_replication_slots),
            format!("set replication.max_replication_slots to at least {slots}"),
        );
    }
}

/// A parameter's numeric value as the servers will run with it.
fn number(cluster: &Cluster, name: &str) -> f64 {
    let value = cluster
        .postgres
        .parameters
        .get(name)
        .map(String::as_str)
        .or_else(|| pg_params::default_value(name));
    value
        .zip(pg_params::lookup(name))
        .and_then(|(v, p)| pg_params::number(p, v))
        .unwrap_or(0.0)
}

/// What the postmaster refuses to start with (PostgreSQL 15's postmaster.c and GUC checks).
fn connections(d: &mut Diagnostics, at: &At, cluster: &Cluster) {
    let max = number(cluster, "max_connections");
    let reserved = number(cluster, "superuser_reserved_connections");
    if reserved >= max {
        d.error(
            at.param_or_section(&["superuser_reserved_connections", "max_connections"]),
            "postgres.parameters",
            format!("superuser_reserved_connections ({reserved}) must be less than max_connections ({max}): PostgreSQL refuses to start"),
        );
    }
    let senders = f64::from(cluster.replication.max_wal_senders);
    let backends = max
        + number(cluster, "autovacuum_max_workers")
        + number(cluster, "max_worker_processes")
        + senders
        + 1.0;
    if backends > MAX_BACKENDS {
        d.error(
            at.param_or_section(&["max_connections", "max_worker_processes", "autovacuum_max_workers"]),
            "postgres.parameters",
            format!("max_connections + autovacuum_max_workers + max_worker_processes + max_wal_senders + 1 is {backends}, more than the {MAX_BACKENDS} server processes PostgreSQL counts: it refuses to start"),
        );
    }
}

/// Each data host's server must listen on the address the others reach it at.
fn listen_addresses(d: &mut Diagnostics, at: &At, cluster: &Cluster) {
    let text = &cluster.postgres.listen_addresses;
    let items: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.contains(&"*") {
        return;
    }
    let listed: Vec<String> = items.iter().map(|i| same_machine(i)).collect();
    let loopback =
        |item: &str| item == "localhost" || item.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    // A host known by a DNS name may be any of the addresses listed: only loopback ones
    // surely leave it out.
    let anything_else = items.iter().any(|i| !loopback(i));
    let covered = |h: &Host| match h.address.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
        // The server binds IPv6 sockets IPv6-only: `::` does not cover IPv4 addresses.
        Ok(IpAddr::V4(_)) if items.contains(&"0.0.0.0") => true,
        Ok(IpAddr::V6(_)) if items.contains(&"::") => true,
        Ok(_) => listed.contains(&same_machine(&h.address)),
        Err(_) => anything_else || listed.contains(&same_machine(&h.address)),
    };
    if let Some((_, h)) = data_hosts(cluster).find(|(_, h)| !covered(h)) {
        d.error_with_help(
            at.pos("postgres.listen_addresses"),
            "postgres.listen_addresses",
            format!("listen_addresses `{text}` leaves out the address of `{}` ({}): its standbys and clients could not connect", h.name, h.address),
            "use \"*\", or list every host's address (each server listens on those it has)",
        );
    }
}

/// Standbys named in synchronous_standby_names are hosts (by the application_name pgha gives
/// each, its name), and as many as a commit waits for exist: otherwise commits hang.
fn synchronous_standbys(d: &mut Diagnostics, at: &At, cluster: &Cluster) {
    let Some(text) = cluster.postgres.parameters.get("synchronous_standby_names") else {
        return;
    };
    let pos = at.param_or_section(&["synchronous_standby_names"]);
    let key = "postgres.parameters.synchronous_standby_names";
    let setting = match sync_standbys::parse(text) {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(why) => {
            d.error(
                pos,
                key,
                format!("PostgreSQL cannot read synchronous_standby_names `{text}`: {why}"),
            );
            return;
        }
    };
    let hosts: Vec<&str> = data_hosts(cluster).map(|(_, h)| h.name.as_str()).collect();
    for name in setting.names.iter().filter(|n| *n != "*") {
        if !hosts.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            let message = format!("`{name}` in synchronous_standby_names is not a data host of this inventory: each standby's application_name is its host name");
            d.unknown(pos, key, message, name, hosts.iter().copied(), None);
            return;
        }
    }
    let standbys = hosts.len().saturating_sub(1);
    let wildcard = setting.names.iter().any(|n| n == "*");
    let count = setting.count as usize;
    if (!wildcard && count > setting.names.len()) || count > standbys {
        d.error(
            pos,
            key,
            format!("synchronous_standby_names waits for {count} standbys among {} names, and the cluster has {standbys} standbys: every commit would wait forever", setting.names.len()),
        );
    }
}

/// A hostssl rule with SSL off is an error the server records for the file (and pgha's reload
/// refuses a pg_hba.conf with errors).
fn ssl_rules(d: &mut Diagnostics, at: &At, cluster: &Cluster) {
    let ssl = cluster.postgres.parameters.get("ssl");
    if ssl.and_then(|v| pg_params::parse_bool(v)) != Some(false) {
        return;
    }
    for (i, rule) in cluster.postgres.hba.iter().enumerate() {
        if rule.kind == "hostssl" {
            let path = format!("postgres.hba[{i}].type");
            d.error(
                at.pos(&path),
                &path,
                "a `hostssl` rule cannot match: `ssl` is off in postgres.parameters",
            );
        }
    }
}

/// Listeners of one host that would share a port, and ports the server may not open.
fn ports(d: &mut Diagnostics, at: &At, cluster: &Cluster) {
    let port = cluster.postgres.port;
    if port < 1024 {
        d.error(
            at.pos("postgres.port"),
            "postgres.port",
            format!("port {port} is below 1024: only root may listen there, and PostgreSQL runs as the postgres user"),
        );
    }
    let mut reported = Vec::new();
    let pg_hosts = cluster
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| h.role.has_postgres());
    for (i, h) in pg_hosts.clone() {
        if h.ssh.port != port {
            continue;
        }
        let own = format!("hosts[{i}].ssh.port");
        let path = if at.root.at(&own).is_some() {
            own
        } else {
            "ssh.port".to_owned()
        };
        let pos = at.pos(&path);
        if !reported.contains(&pos) {
            reported.push(pos);
            d.error(
                pos,
                &path,
                format!(
                    "`{}` would have sshd and PostgreSQL both on port {port}",
                    h.name
                ),
            );
        }
    }
    let mut machines: BTreeMap<String, &str> = BTreeMap::new();
    for (i, h) in pg_hosts {
        if let Some(first) = machines.insert(same_machine(&h.address), &h.name) {
            let path = format!("hosts[{i}].address");
            let other = cluster.host(first).map(|f| f.ssh.port);
            // The same address and ssh port is already a host listed twice.
            if other != Some(h.ssh.port) {
                d.error(
                    at.pos(&path),
                    &path,
                    format!("`{first}` and `{}` are one machine ({}): both PostgreSQL servers would listen on port {port}", h.name, h.address),
                );
            }
        }
    }
}

/// The slot each data host streams through must be a name the server takes, one per host.
fn slot_names(d: &mut Diagnostics, at: &At, cluster: &Cluster, flavour: &dyn Flavour) {
    if flavour.slots_needed(cluster) == 0 {
        return;
    }
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (i, h) in data_hosts(cluster) {
        let slot = flavour.slot_name(&h.name);
        let path = format!("hosts[{i}].name");
        if let Some(why) = slot_name_problem(&slot) {
            d.error(
                at.pos(&path),
                &path,
                format!("host name `{}` gives the replication slot name `{slot}`, which PostgreSQL refuses: {why}", h.name),
            );
        } else if let Some(first) = seen.insert(slot.clone(), &h.name) {
            d.error(
                at.pos(&path),
                &path,
                format!(
                    "hosts `{first}` and `{}` would share the replication slot `{slot}`",
                    h.name
                ),
            );
        }
    }
}
