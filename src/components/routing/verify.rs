//! Proofs that every route leads where it must, and the routes in `pgha status`.
//!
//! Polled with the role checks (facts alone): the VIP is on exactly one host, the primary;
//! haproxy's own view of its backends (its stats socket) matches the roles. Once those pass,
//! a connection through each route from another host: the server that answers is told by the
//! certificate it presents (signed by the cluster CA, named for its host), and that host's
//! role by `pg_is_in_recovery()` in the facts. No password is needed for that, so no route
//! check ever holds one.

use std::collections::BTreeMap;

use crate::facts::HostFacts;
use crate::flavours::{CheckResult, ClusterView};
use crate::model::Cluster;
use crate::transport::RemoteCommand;

use super::probes::{self, PRIMARY_PROXY, REPLICA_PROXY};
use super::Routing;

/// The data hosts that hold the VIP, by their facts.
fn vip_holders(r: &Routing, cluster: &Cluster, facts: &BTreeMap<String, HostFacts>) -> Vec<String> {
    let Some(vip) = &r.section.vip else {
        return Vec::new();
    };
    let address = vip.address().to_string();
    cluster
        .hosts
        .iter()
        .filter(|h| h.role.holds_data())
        .filter(|h| {
            facts
                .get(&h.name)
                .is_some_and(|f| !probes::vip_interfaces(f, &address).is_empty())
        })
        .map(|h| h.name.clone())
        .collect()
}

/// Whether a host's server takes writes, by its facts (None: not running or not read).
fn takes_writes(facts: &BTreeMap<String, HostFacts>, host: &str) -> Option<bool> {
    facts
        .get(host)
        .and_then(|f| f.postgres.as_ref())
        .filter(|pg| pg.running)
        .map(|pg| !pg.in_recovery)
}

pub fn polled(r: &Routing, view: &ClusterView<'_>) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let primary = view.topology.primary.as_str();
    if let Some(vip) = &r.section.vip {
        let holders = vip_holders(r, view.cluster, view.facts);
        let check = format!("VIP {}", vip.address());
        let ok = holders.len() == 1 && holders[0] == primary;
        let detail = match holders.as_slice() {
            [] => format!("no host holds it (expected the primary {primary})"),
            [one] if one == primary => {
                format!("on {one}, the primary ({} mode)", vip.mode.as_str())
            }
            [one] => format!("on {one}, which is not the primary ({primary})"),
            many => format!(
                "held by {} at once: only the primary {primary} may",
                many.join(", ")
            ),
        };
        out.push(CheckResult::new(
            holders.first().map_or(primary, String::as_str),
            &check,
            ok,
            detail,
        ));
    }
    if let Some(h) = &r.section.haproxy {
        for host in &h.hosts {
            if view.unreachable.contains_key(host) {
                continue;
            }
            let Some(backends) = view.facts.get(host).and_then(probes::haproxy_backends) else {
                out.push(CheckResult::new(
                    host,
                    "haproxy backends",
                    false,
                    "haproxy's stats socket did not answer (is haproxy running?)",
                ));
                continue;
            };
            let up = |proxy: &str| -> Vec<String> {
                backends
                    .iter()
                    .filter(|b| b.proxy == proxy && b.up())
                    .map(|b| b.server.clone())
                    .collect()
            };
            let writers = up(PRIMARY_PROXY);
            out.push(CheckResult::new(
                host,
                "haproxy write route",
                writers == [primary.to_owned()],
                if writers.is_empty() {
                    format!("no backend up (expected the primary {primary})")
                } else {
                    format!("backends up: {}", writers.join(", "))
                },
            ));
            let readers = up(REPLICA_PROXY);
            // The replicas the primary streams to within the lag limit: each must take reads
            // (haproxy marks one up after its first good check); never the primary.
            let expected: Vec<String> = view
                .facts
                .get(primary)
                .and_then(|f| f.postgres.as_ref())
                .map(|pg| {
                    pg.replication
                        .iter()
                        .filter(|r| {
                            r.state == "streaming"
                                && r.lag_bytes >= 0
                                && (r.lag_bytes as u64) <= h.max_lag
                        })
                        .map(|r| r.application_name.clone())
                        .filter(|n| view.cluster.host(n).is_some_and(|x| x.role.holds_data()))
                        .collect()
                })
                .unwrap_or_default();
            let standbys: Vec<&str> = view
                .cluster
                .hosts
                .iter()
                .filter(|x| x.role.holds_data() && x.name != primary)
                .map(|x| x.name.as_str())
                .collect();
            let wrong: Vec<&str> = readers
                .iter()
                .map(String::as_str)
                .filter(|b| !standbys.contains(b))
                .collect();
            let missing: Vec<&str> = expected
                .iter()
                .map(String::as_str)
                .filter(|e| !readers.iter().any(|r| r == e))
                .collect();
            out.push(CheckResult::new(
                host,
                "haproxy read route",
                wrong.is_empty() && missing.is_empty(),
                if !wrong.is_empty() {
                    format!(
                        "backends up: {} (not a replica: {})",
                        readers.join(", "),
                        wrong.join(", ")
                    )
                } else if !missing.is_empty() {
                    format!(
                        "backends up: {}; a streaming replica is down: {}",
                        if readers.is_empty() {
                            "none".to_owned()
                        } else {
                            readers.join(", ")
                        },
                        missing.join(", ")
                    )
                } else if readers.is_empty() {
                    "no backend up (no replica streams within the lag limit)".to_owned()
                } else {
                    format!("backends up: {}", readers.join(", "))
                },
            ));
        }
    }
    out
}

/// A route to prove: where a client dials, and whether the primary must answer.
struct Route {
    label: String,
    /// The haproxy host it goes through, if any.
    via: Option<String>,
    address: String,
    port: u16,
    primary: bool,
}

fn endpoints(r: &Routing, cluster: &Cluster) -> Vec<Route> {
    let mut out = Vec::new();
    if let Some(v) = &r.section.vip {
        out.push(Route {
            label: format!("route VIP {}:{}", v.address(), cluster.postgres.port),
            via: None,
            address: v.address().to_string(),
            port: cluster.postgres.port,
            primary: true,
        });
        if let Some(h) = &r.section.haproxy {
            // haproxy on every data host behind the VIP: the pair clients are given. (The
            // VIP follows the primary: where haproxy is elsewhere, nothing listens there.)
            if h.hosts.len() > 1 && h.on_every_data_host {
                out.push(Route {
                    label: format!("route VIP {}:{}", v.address(), h.primary_port),
                    via: None,
                    address: v.address().to_string(),
                    port: h.primary_port,
                    primary: true,
                });
            }
        }
    }
    if let Some(h) = &r.section.haproxy {
        for name in &h.hosts {
            let Some(host) = cluster.host(name) else {
                continue;
            };
            out.push(Route {
                label: format!("route haproxy {name}:{}", h.primary_port),
                via: Some(name.clone()),
                address: host.address.clone(),
                port: h.primary_port,
                primary: true,
            });
            out.push(Route {
                label: format!("route haproxy {name}:{}", h.replica_port),
                via: Some(name.clone()),
                address: host.address.clone(),
                port: h.replica_port,
                primary: false,
            });
        }
    }
    out
}

/// Which host presented the certificate `openssl x509 -subject -ext subjectAltName` printed.
pub fn identify(cluster: &Cluster, printed: &str) -> Option<String> {
    let cn = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("subject="))
        .and_then(|s| s.split("CN").nth(1))
        .map(|s| s.trim_start_matches([' ', '=']).trim().to_owned());
    if let Some(h) = cn.as_deref().and_then(|cn| cluster.host(cn)) {
        return Some(h.name.clone());
    }
    // A certificate a company CA issued may name its host differently: its own address.
    cluster
        .hosts
        .iter()
        .find(|h| {
            printed.contains(&format!("IP Address:{}", h.address))
                || printed.contains(&format!("DNS:{},", h.name))
        })
        .map(|h| h.name.clone())
}

/// Connect through every route from one host that is not the primary (so the VIP is reached
/// across the network, not on the host's own interface).
pub async fn routes(r: &Routing, view: &ClusterView<'_>) -> Vec<CheckResult> {
    let cluster = view.cluster;
    let primary = view.topology.primary.as_str();
    let origin = cluster
        .hosts
        .iter()
        .filter(|h| h.role.holds_data() && !view.unreachable.contains_key(&h.name))
        .map(|h| h.name.as_str())
        .min_by_key(|h| *h == primary);
    let Some(origin) = origin else {
        return Vec::new();
    };
    let Ok(t) = view.transport(origin) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // A haproxy host not reached has its own row; its routes cannot answer.
    let reached = |route: &Route| {
        route
            .via
            .as_ref()
            .is_none_or(|h| !view.unreachable.contains_key(h))
    };
    // No replica streams (a cluster of one, all lagging): the read port has nothing to offer,
    // and its polled check already says so.
    let replicas_stream = view
        .facts
        .get(primary)
        .and_then(|f| f.postgres.as_ref())
        .is_some_and(|pg| pg.replication.iter().any(|r| r.state == "streaming"));
    let wanted = |route: &Route| route.primary || replicas_stream;
    for route in endpoints(r, cluster)
        .into_iter()
        .filter(reached)
        .filter(wanted)
    {
        let script = match &cluster.tls {
            Some(tls) => format!(
                "timeout 5 openssl s_client -starttls postgres -connect {}:{} -CAfile {}/ca.crt -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -subject -ext subjectAltName",
                shell_words::quote(&route.address),
                route.port,
                shell_words::quote(&tls.dir)
            ),
            None => format!(
                "timeout 5 bash -c '</dev/tcp/{}/{}' && echo open",
                route.address, route.port
            ),
        };
        let answer = t.run(&RemoteCommand::script(script)).await;
        let printed = match &answer {
            Ok(o) if o.success() => o.stdout.clone(),
            _ => String::new(),
        };
        let check = format!("{} from {origin}", route.label);
        let (ok, detail) = if cluster.tls.is_none() {
            (
                printed.contains("open"),
                if printed.contains("open") {
                    "answers (TLS is off: the server that answers is not identified)".to_owned()
                } else {
                    "no answer".to_owned()
                },
            )
        } else {
            match identify(cluster, &printed) {
                None if printed.is_empty() => (
                    false,
                    "no server answered with a certificate of the cluster CA".to_owned(),
                ),
                None => (
                    false,
                    "a server the inventory does not know answered".to_owned(),
                ),
                Some(host) => {
                    let writes = takes_writes(view.facts, &host);
                    match (route.primary, writes) {
                        (true, Some(true)) => (
                            true,
                            format!("{host} answers: the primary (pg_is_in_recovery() = false)"),
                        ),
                        (false, Some(false)) => (
                            true,
                            format!("{host} answers: a replica (pg_is_in_recovery() = true)"),
                        ),
                        (true, _) => (false, format!("{host} answers, which is not the primary")),
                        (false, _) => (false, format!("{host} answers, which is not a replica")),
                    }
                }
            }
        };
        out.push(CheckResult::new(origin, &check, ok, detail));
    }
    out
}

/// Lines under the status table: the VIP's holder, haproxy's backends.
pub fn status_lines(
    r: &Routing,
    cluster: &Cluster,
    facts: &BTreeMap<String, HostFacts>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(v) = &r.section.vip {
        let holders = vip_holders(r, cluster, facts);
        out.push(format!(
            "VIP {} ({}): {}",
            v.net,
            v.mode.as_str(),
            match holders.as_slice() {
                [] => "on no host".to_owned(),
                [one] => format!("on {one}"),
                many => format!("on {} AT ONCE", many.join(", ")),
            }
        ));
    }
    if let Some(h) = &r.section.haproxy {
        for host in &h.hosts {
            let line = match facts.get(host).and_then(probes::haproxy_backends) {
                None => "not answering".to_owned(),
                Some(backends) => {
                    let show = |proxy: &str| {
                        backends
                            .iter()
                            .filter(|b| b.proxy == proxy)
                            .map(|b| format!("{} {}", b.server, if b.up() { "up" } else { "down" }))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    format!(
                        "write :{} [{}]  read :{} [{}]",
                        h.primary_port,
                        show(PRIMARY_PROXY),
                        h.replica_port,
                        show(REPLICA_PROXY)
                    )
                }
            };
            out.push(format!("haproxy on {host}: {line}"));
        }
    }
    out
}
