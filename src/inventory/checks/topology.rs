//! Hosts and the replication topology: unique names and addresses, exactly one primary,
//! upstreams that reach it.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::Diagnostics;
use crate::model::{same_machine, Host, Role};
use crate::yaml::node::{Node, Pos};

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
        let key = (same_machine(&h.address), h.ssh.port);
        if let Some(first) = addresses.insert(key, p.path.clone()) {
            d.error(
                p.address,
                &format!("{}.address", p.path),
                format!(
                    "address `{}` is used twice (first at {first}): one machine, two hosts",
                    h.address
                ),
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
