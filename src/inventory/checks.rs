//! Semantic checks: names, addresses, server parameters, pg_hba rules and the replication
//! topology. Each reports into `Diagnostics` and answers whether the value passed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::diag::Diagnostics;
use crate::model::pg_params::{self, Context};
use crate::model::{HbaRule, Host, Role};
use crate::yaml::node::{Key, Node, Pos};

pub const HBA_TYPES: [&str; 6] = [
    "local",
    "host",
    "hostssl",
    "hostnossl",
    "hostgssenc",
    "hostnogssenc",
];
pub const HBA_METHODS: [&str; 13] = [
    "scram-sha-256",
    "md5",
    "password",
    "peer",
    "ident",
    "cert",
    "reject",
    "trust",
    "gss",
    "sspi",
    "ldap",
    "radius",
    "pam",
];

/// Parameters pgha derives from other keys; setting them twice would leave two truths.
const MANAGED_ELSEWHERE: [(&str, &str); 7] = [
    ("port", "postgres.port"),
    ("listen_addresses", "postgres.listen_addresses"),
    ("max_wal_senders", "replication.max_wal_senders"),
    ("max_replication_slots", "replication.max_replication_slots"),
    (
        "max_slot_wal_keep_size",
        "replication.max_slot_wal_keep_size",
    ),
    ("archive_mode", "replication.archive.mode"),
    ("archive_command", "replication.archive.command"),
];

/// Parameters whose location Debian's cluster layout fixes.
const DEBIAN_OWNED: [&str; 5] = [
    "data_directory",
    "hba_file",
    "ident_file",
    "config_file",
    "external_pid_file",
];

#[derive(Debug, Clone, Copy)]
pub enum NameKind {
    Cluster,
    Host,
    Role,
}

/// Names end up in file names, unit names, slot names and SQL: keep them to a safe alphabet.
pub fn name(d: &mut Diagnostics, node: &Node, path: &str, value: &str, kind: NameKind) -> bool {
    let (ok, rule) = match kind {
        NameKind::Cluster | NameKind::Host => (
            !value.is_empty()
                && value.len() <= 63
                && value.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && value
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'),
            "lower-case letters, digits, `-` and `_`, starting with a letter or digit, at most 63",
        ),
        NameKind::Role => (
            !value.is_empty()
                && value.len() <= 63
                && value.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && value
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "lower-case letters, digits and `_`, starting with a letter or `_`, at most 63",
        ),
    };
    if !ok {
        d.error(
            node.pos,
            path,
            format!("`{value}` is not a valid name for `{path}`: use {rule}"),
        );
    }
    ok
}

pub use crate::yaml::decode::address;

/// One entry of `postgres.parameters`.
pub fn parameter(d: &mut Diagnostics, key: &Key, value: &Node, path: &str, text: &str) -> bool {
    let name = key.name.to_ascii_lowercase();
    if let Some((_, instead)) = MANAGED_ELSEWHERE.iter().find(|(p, _)| *p == name) {
        d.error_with_help(
            key.pos,
            path,
            format!("`{name}` is set by pgha from `{instead}`"),
            format!("set `{instead}` instead"),
        );
        return false;
    }
    if DEBIAN_OWNED.contains(&name.as_str()) {
        d.error(
            key.pos,
            path,
            format!(
                "`{name}` is fixed by the Debian cluster layout (postgres.data_dir / conf_dir)"
            ),
        );
        return false;
    }
    if pg_params::is_custom(&name) {
        return true;
    }
    let Some(param) = pg_params::lookup(&name) else {
        let message = format!("`{}` is not a PostgreSQL 15 server parameter", key.name);
        d.unknown(key.pos, path, message, &name, pg_params::names(), None);
        return false;
    };
    if param.context == Context::Internal {
        d.error(
            key.pos,
            path,
            format!(
                "`{}` is read-only: it is fixed when PostgreSQL is built or initdb runs",
                param.name
            ),
        );
        return false;
    }
    if let Err(why) = pg_params::check_value(param, text) {
        d.error(value.pos, path, why);
        return false;
    }
    // Streaming replication needs WAL for it; `minimal` would break every standby.
    if name == "wal_level" && text.eq_ignore_ascii_case("minimal") {
        d.error(
            value.pos,
            path,
            "`wal_level = minimal` cannot feed standbys: use replica or logical",
        );
        return false;
    }
    true
}

pub fn hba_rule(
    d: &mut Diagnostics,
    rule: &HbaRule,
    address_pos: Pos,
    method_pos: Option<Pos>,
    path: &str,
    allow_network_trust: bool,
) -> bool {
    let method_pos = method_pos.unwrap_or(address_pos);
    if rule.kind == "local" {
        if rule.address.is_some() {
            d.error(
                address_pos,
                &format!("{path}.address"),
                "a `local` rule takes no address (it matches Unix-socket connections)",
            );
            return false;
        }
        return true;
    }
    let Some(address) = &rule.address else {
        d.error(
            address_pos,
            &format!("{path}.address"),
            format!(
                "a `{}` rule needs an address (a CIDR such as 10.0.0.0/24)",
                rule.kind
            ),
        );
        return false;
    };
    let keyword = ["all", "samehost", "samenet"].contains(&address.as_str());
    if let Ok(ip) = address.parse::<IpAddr>() {
        // PostgreSQL would read the method as the netmask and refuse the whole file.
        let one = if ip.is_ipv4() { 32 } else { 128 };
        d.error_with_help(
            address_pos,
            &format!("{path}.address"),
            format!("`{address}` has no mask: pg_hba.conf needs a CIDR"),
            format!("write {address}/{one} for this one host"),
        );
        return false;
    }
    if !keyword && address.parse::<ipnet::IpNet>().is_err() {
        d.error(
            address_pos,
            &format!("{path}.address"),
            format!(
                "`{address}` is not a CIDR address (like 10.0.0.0/24) nor all/samehost/samenet"
            ),
        );
        return false;
    }
    if rule.method == "peer" {
        d.error(
            method_pos,
            &format!("{path}.method"),
            "`peer` works only for `local` rules; use scram-sha-256 for network connections",
        );
        return false;
    }
    if rule.method == "trust" && !allow_network_trust {
        d.error_with_help(
            method_pos,
            &format!("{path}.method"),
            format!("`trust` from the network ({address}) lets anyone who reaches the port in as any user, without a password"),
            "use scram-sha-256; if you really mean it, set `postgres.allow_network_trust: true`",
        );
        return false;
    }
    true
}

/// Where a host's keys stand, for topology errors.
#[derive(Debug, Clone)]
pub struct HostPositions {
    pub item: Pos,
    pub name: Pos,
    pub address: Pos,
    pub role: Pos,
    pub upstream: Option<Pos>,
    pub path: String,
}

/// Unique names and addresses, exactly one primary, upstreams that reach the primary.
/// Fills in the default upstream (the primary) of standbys.
pub fn topology(
    d: &mut Diagnostics,
    list: &Node,
    hosts: &mut [Host],
    pos: &[HostPositions],
) -> bool {
    let before = d.items.len();
    let mut names = BTreeMap::new();
    let mut addresses = BTreeMap::new();
    for (h, p) in hosts.iter().zip(pos) {
        if let Some(first) = names.insert(h.name.clone(), p.path.clone()) {
            d.error(
                p.name,
                &format!("{}.name", p.path),
                format!("host name `{}` is used twice (first at {first})", h.name),
            );
        }
        let key = (h.address.to_ascii_lowercase(), h.ssh.port);
        if let Some(first) = addresses.insert(key, p.path.clone()) {
            d.error(
                p.address,
                &format!("{}.address", p.path),
                format!("address `{}` is used twice (first at {first})", h.address),
            );
        }
    }
    let primaries: Vec<usize> = hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| h.role == Role::Primary)
        .map(|(i, _)| i)
        .collect();
    match primaries.as_slice() {
        [] => d.error(
            list.pos,
            "hosts",
            "no host has `role: primary`: exactly one must",
        ),
        [_] => {}
        [_, rest @ ..] => {
            for i in rest {
                d.error(pos[*i].role, &format!("{}.role", pos[*i].path), format!(
                    "`{}` is a second primary: exactly one host has `role: primary` (the others are standbys)",
                    hosts[*i].name
                ));
            }
        }
    }
    let Some(&primary) = primaries.first() else {
        return false;
    };
    let primary_name = hosts[primary].name.clone();
    let roles: BTreeMap<String, Role> = hosts.iter().map(|h| (h.name.clone(), h.role)).collect();
    for (h, p) in hosts.iter_mut().zip(pos) {
        let at = p.upstream.unwrap_or(p.item);
        let path = format!("{}.upstream", p.path);
        match (h.role, h.upstream.as_deref()) {
            (Role::Primary, Some(_)) => d.error(
                at,
                &path,
                format!("the primary `{}` cannot have an upstream", h.name),
            ),
            (Role::Member(m), Some(_)) => d.error(
                at,
                &path,
                format!(
                    "`{}` is {}, which does not replicate: it has no upstream",
                    h.name, m.description
                ),
            ),
            (Role::Standby, Some(up)) if up == h.name => {
                d.error(at, &path, format!("`{}` cannot stream from itself", h.name))
            }
            (Role::Standby, Some(up)) => match roles.get(up) {
                None => {
                    let message = format!("upstream `{up}` is not a host of this inventory");
                    d.unknown(
                        at,
                        &path,
                        message,
                        up,
                        roles.keys().map(String::as_str),
                        None,
                    );
                }
                Some(Role::Member(m)) => d.error(
                    at,
                    &path,
                    format!(
                        "upstream `{up}` is {}, which holds no data to stream",
                        m.description
                    ),
                ),
                Some(_) => {}
            },
            (Role::Standby, None) => h.upstream = Some(primary_name.clone()),
            (Role::Primary | Role::Member(_), None) => {}
        }
    }
    if d.items.len() != before {
        return false;
    }
    // Every chain of upstreams must end at the primary.
    let upstream_of: BTreeMap<&str, &str> = hosts
        .iter()
        .filter_map(|h| h.upstream.as_deref().map(|u| (h.name.as_str(), u)))
        .collect();
    for (h, p) in hosts.iter().zip(pos) {
        let mut seen = BTreeSet::new();
        let mut at = h.name.as_str();
        while let Some(up) = upstream_of.get(at) {
            if !seen.insert(at) {
                d.error(
                    p.upstream.unwrap_or(p.item),
                    &format!("{}.upstream", p.path),
                    format!(
                        "upstream of `{}` runs in a cycle ({}) and never reaches the primary",
                        h.name,
                        seen.iter().copied().collect::<Vec<_>>().join(" -> ")
                    ),
                );
                break;
            }
            at = up;
        }
    }
    d.items.len() == before
}
