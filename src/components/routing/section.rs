//! The `routing:` section: how clients reach the primary (a virtual IP moved by the flavour's
//! role callback or by keepalived, haproxy with health checks), read and checked offline.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::components::SectionInput;
use crate::diag::Diagnostics;
use crate::model::{same_machine, Host, Role};
use crate::secret::SecretRef;
use crate::yaml::decode::{self, MapReader};
use crate::yaml::node::Node;

/// The default ports of haproxy's write and read routes (Patroni's documentation and the
/// field guide use these).
const PRIMARY_PORT: u16 = 5000;
const REPLICA_PORT: u16 = 5001;
/// The port of pgha's own health endpoint where the flavour has none (Patroni's REST port).
const HEALTH_PORT: u16 = 8008;
/// A replica whose replay is further behind than this takes no reads (Patroni's default
/// `maximum_lag_on_failover`).
const MAX_LAG: u64 = 1 << 20;

/// Who moves the VIP to the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VipMode {
    /// The flavour's role-change callback adds and removes the address (Patroni).
    Callback,
    /// keepalived on every data host, its VRRP instance tracking a check of the local role.
    Keepalived,
}

impl VipMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VipMode::Callback => "callback",
            VipMode::Keepalived => "keepalived",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Vip {
    /// The address with the prefix of the hosts' subnet.
    pub net: Ipv4Net,
    pub interface: String,
    pub mode: VipMode,
}

impl Vip {
    pub fn address(&self) -> Ipv4Addr {
        self.net.addr()
    }
}

#[derive(Debug, Clone)]
pub struct Keepalived {
    pub virtual_router_id: u8,
    pub password: SecretRef,
    /// Unicast VRRP to the other data hosts (clouds drop multicast); false: multicast.
    pub unicast: bool,
}

#[derive(Debug, Clone)]
pub struct Haproxy {
    /// The hosts haproxy runs on: data hosts, proxy hosts (`role: proxy`) or both.
    pub hosts: Vec<String>,
    /// Whether it runs on every data host: only then does the VIP, which follows the
    /// primary, lead to a haproxy.
    pub on_every_data_host: bool,
    /// `hosts` was left out and the proxy hosts were taken.
    pub proxies_by_default: bool,
    pub primary_port: u16,
    pub replica_port: u16,
    /// Replay lag in bytes beyond which a replica takes no reads.
    pub max_lag: u64,
    /// Where each port is written (or the section, for a default): for clash errors.
    pub ports_at: [crate::yaml::node::Pos; 2],
}

#[derive(Debug, Clone)]
pub struct Section {
    pub vip: Option<Vip>,
    pub keepalived: Option<Keepalived>,
    pub haproxy: Option<Haproxy>,
    /// The port of pgha's health endpoint, where the flavour has no REST API of its own.
    pub health_port: u16,
}

impl Section {
    /// Where clients reach haproxy: the VIP when every data host runs haproxy (one address;
    /// the VIP follows the primary, so with haproxy on proxy hosts nothing listens on its
    /// port there), else every haproxy host's address, tried in turn. Empty without haproxy.
    pub fn haproxy_front(&self, cluster: &crate::model::Cluster) -> Vec<String> {
        let Some(h) = &self.haproxy else {
            return Vec::new();
        };
        match &self.vip {
            Some(v) if h.on_every_data_host => vec![v.address().to_string()],
            _ => h
                .hosts
                .iter()
                .filter_map(|n| cluster.host(n))
                .map(|x| x.address.clone())
                .collect(),
        }
    }
}

/// What the section is checked against besides itself.
pub struct Context<'a> {
    pub hosts: &'a [Host],
    /// Whether the flavour runs pgha's script when a member's role changes.
    pub role_callbacks: bool,
    /// Ports already taken on the data hosts, with what takes them.
    pub ports: Vec<(u16, String)>,
    /// Whether the flavour has a health endpoint of its own (no need for pgha's).
    pub flavour_health: bool,
    /// The addresses PostgreSQL listens on, when the inventory decides them (None: the
    /// flavour does, covering a VIP).
    pub listen_addresses: Option<&'a str>,
}

pub fn read(input: &mut SectionInput<'_>, cx: &Context<'_>) -> Option<Section> {
    let d = &mut *input.d;
    let mut m = MapReader::new(d, input.section, "routing")?;
    let keepalived_node = m.take("keepalived");
    let vip = m.take("vip").and_then(|n| vip(d, n, cx, keepalived_node));
    // The VRRP instance moves the VIP: a `keepalived:` section without a VIP in keepalived
    // mode is a mistake (unless the VIP itself was refused: one mistake, one error).
    let vip_node = input.section.get("vip").map(|(_, n)| n);
    let keepalived = keepalived_node.and_then(|n| {
        let section = keepalived(d, n, input.base);
        match &vip {
            Some(v) if v.mode == VipMode::Keepalived => section,
            None if vip_node.is_some() => section,
            _ => {
                d.error(
                    n.pos,
                    "routing.keepalived",
                    "`routing.keepalived` configures the VRRP instance that moves the VIP: it needs `routing.vip` with `mode: keepalived`",
                );
                None
            }
        }
    });
    let health_port = match m.take("health_port") {
        Some(n) if cx.flavour_health => {
            d.error(
                n.pos,
                "routing.health_port",
                "the flavour answers health checks itself (its REST API's port); `routing.health_port` is for pgha's own endpoint",
            );
            HEALTH_PORT
        }
        Some(n) => decode::port(d, n, "routing.health_port").unwrap_or(HEALTH_PORT),
        None => HEALTH_PORT,
    };
    let haproxy = m.take("haproxy").and_then(|n| haproxy(d, n, cx));
    let vip_missing_keepalived = vip.as_ref().is_some_and(|v| v.mode == VipMode::Keepalived)
        && keepalived.is_none()
        && keepalived_node.is_none();
    if vip_missing_keepalived {
        d.error(
            m.pos(),
            "routing.keepalived",
            "`routing.vip.mode: keepalived` needs a `routing.keepalived` section: `virtual_router_id` (unique on the network segment) and `password` (a secret reference)",
        );
    }
    let pos = m.pos();
    if !m.finish_non_empty(d, "`routing` is empty: give it `vip`, `haproxy` or both") {
        return None;
    }
    let section = Section {
        vip,
        keepalived,
        haproxy,
        health_port,
    };
    ports(d, pos, &section, cx);
    Some(section)
}

fn vip(
    d: &mut Diagnostics,
    node: &Node,
    cx: &Context<'_>,
    keepalived: Option<&Node>,
) -> Option<Vip> {
    let mut m = MapReader::new(d, node, "routing.vip")?;
    let net = m
        .require(d, "address")
        .and_then(|n| vip_address(d, n, cx.hosts));
    let interface = match m.take("interface") {
        Some(n) => decode::string(d, n, "routing.vip.interface").filter(|name| {
            // Linux interface names: at most 15 bytes, no slash or space.
            let ok = !name.is_empty()
                && name.len() <= 15
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-@:".contains(c));
            if !ok {
                d.error(
                    n.pos,
                    "routing.vip.interface",
                    format!("`{name}` is not a network interface name (up to 15 letters, digits, `_.-@:`)"),
                );
            }
            ok
        }),
        None => Some("eth0".to_owned()),
    };
    let mode = match m.take("mode") {
        Some(n) => {
            let word = decode::choice(
                d,
                n,
                "routing.vip.mode",
                &["callback", "keepalived", "vip-manager"],
            );
            match word {
                Some("callback") if !cx.role_callbacks => {
                    d.error_with_help(
                        n.pos,
                        "routing.vip.mode",
                        "`callback` moves the VIP from the flavour's role-change callback, and this flavour has none",
                        "use `mode: keepalived` (keepalived on every data host tracks which one is the primary)",
                    );
                    None
                }
                Some("callback") => Some(VipMode::Callback),
                Some("keepalived") => Some(VipMode::Keepalived),
                Some(_) => {
                    d.error_with_help(
                        n.pos,
                        "routing.vip.mode",
                        "vip-manager cannot work with Debian's packages: Debian's vip-manager 1.0.2 speaks only etcd's v2 API, while Debian's etcd 3.4 has v2 off and Patroni writes v3 keys",
                        "use `mode: callback` or `mode: keepalived`; vip-manager 3 (etcd v3) needs a package source that provides it",
                    );
                    None
                }
                None => None,
            }
        }
        // The flavour's own callback when it has one and keepalived is not configured.
        None if cx.role_callbacks && keepalived.is_none() => Some(VipMode::Callback),
        None => Some(VipMode::Keepalived),
    };
    if let (Some(net), Some(listen)) = (&net, cx.listen_addresses) {
        let all = listen
            .split(',')
            .any(|a| matches!(a.trim(), "*" | "0.0.0.0"));
        if !all {
            d.error_with_help(
                node.pos,
                "routing.vip",
                format!("PostgreSQL listens on `{listen}` only, so nothing answers on the VIP {} once it moves to a host", net.addr()),
                "set `postgres.listen_addresses: \"*\"` (pg_hba still decides who may connect)",
            );
        }
    }
    m.finish(d);
    Some(Vip {
        net: net?,
        interface: interface?,
        mode: mode?,
    })
}

/// `A.B.C.D/NN`: an IPv4 address in the subnet of every data host, none of theirs, neither
/// the subnet's network nor its broadcast address.
fn vip_address(d: &mut Diagnostics, node: &Node, hosts: &[Host]) -> Option<Ipv4Net> {
    let path = "routing.vip.address";
    let text = decode::string(d, node, path)?;
    let Ok(net) = text.parse::<Ipv4Net>() else {
        let help = if text.parse::<Ipv4Addr>().is_ok() {
            "write it with the prefix of the hosts' subnet, e.g. `10.0.0.100/24`: the address is added to the interface with it"
        } else {
            "an IPv4 address with the prefix of the hosts' subnet, e.g. `10.0.0.100/24`"
        };
        d.error_with_help(node.pos, path, format!("`{text}` is not a VIP"), help);
        return None;
    };
    let mut ok = true;
    if net.prefix_len() < 32 && (net.addr() == net.network() || net.addr() == net.broadcast()) {
        d.error(
            node.pos,
            path,
            format!(
                "{} is the network or broadcast address of {}",
                net.addr(),
                net.trunc()
            ),
        );
        ok = false;
    }
    let mut outside: Vec<(&str, Ipv4Addr)> = Vec::new();
    for h in hosts.iter().filter(|h| h.role.holds_data()) {
        if same_machine(&h.address) == net.addr().to_string() {
            d.error(
                node.pos,
                path,
                format!(
                    "{} is the address of host {}: a VIP must be an address no host has",
                    net.addr(),
                    h.name
                ),
            );
            ok = false;
            continue;
        }
        // A DNS name: its subnet is known only on the host (arping and keepalived say there).
        if let Ok(ip) = h.address.parse::<Ipv4Addr>() {
            if !net.contains(&ip) {
                outside.push((&h.name, ip));
            }
        }
    }
    if !outside.is_empty() {
        let (names, ips): (Vec<&str>, Vec<String>) =
            outside.iter().map(|(n, ip)| (*n, ip.to_string())).unzip();
        d.error_with_help(
            node.pos,
            path,
            format!(
                "{} is outside {}, the subnet of host{} {} ({})",
                net.addr(),
                net.trunc(),
                if names.len() == 1 { "" } else { "s" },
                names.join(", "),
                ips.join(", ")
            ),
            "the VIP moves between the data hosts on one network segment: give an address of their subnet (and the subnet's prefix)",
        );
        ok = false;
    }
    ok.then_some(net)
}

fn keepalived(d: &mut Diagnostics, node: &Node, base: &std::path::Path) -> Option<Keepalived> {
    let mut m = MapReader::new(d, node, "routing.keepalived")?;
    let vrid = m.require(d, "virtual_router_id").and_then(|n| {
        decode::integer(d, n, "routing.keepalived.virtual_router_id", 1, 255)
            .and_then(|v| u8::try_from(v).ok())
    });
    let password = m
        .require(d, "password")
        .and_then(|n| decode::secret_ref(d, n, "routing.keepalived.password", base));
    let unicast = match m.take("unicast") {
        Some(n) => decode::boolean(d, n, "routing.keepalived.unicast"),
        None => Some(true),
    };
    m.finish(d);
    Some(Keepalived {
        virtual_router_id: vrid?,
        password: password?,
        unicast: unicast?,
    })
}

fn haproxy(d: &mut Diagnostics, node: &Node, cx: &Context<'_>) -> Option<Haproxy> {
    let mut m = MapReader::new(d, node, "routing.haproxy")?;
    let data_hosts: Vec<&str> = cx
        .hosts
        .iter()
        .filter(|h| h.role.holds_data())
        .map(|h| h.name.as_str())
        .collect();
    let proxy_hosts: Vec<&str> = cx
        .hosts
        .iter()
        .filter(|h| h.role == Role::Member(super::PROXY_ROLE))
        .map(|h| h.name.as_str())
        .collect();
    let may_run: Vec<&str> = data_hosts.iter().chain(&proxy_hosts).copied().collect();
    let hosts_node = m.take("hosts");
    let hosts = match hosts_node {
        Some(n) => {
            let items = decode::string_items(d, n, "routing.haproxy.hosts");
            let mut ok = !items.is_empty();
            if items.is_empty() {
                d.error(n.pos, "routing.haproxy.hosts", "`routing.haproxy.hosts` is empty: leave it out to run haproxy on the proxy hosts (`role: proxy`), or on every data host when there are none");
            }
            for (i, name, item) in &items {
                if !may_run.contains(&name.as_str()) {
                    let path = format!("routing.haproxy.hosts[{i}]");
                    let message = match cx.hosts.iter().find(|h| &h.name == name) {
                        Some(h) => format!(
                            "{name} is {}: haproxy runs on the data hosts and on proxy hosts (`role: proxy`)",
                            h.role.description()
                        ),
                        None => format!("there is no host {name}"),
                    };
                    d.unknown(
                        item.pos,
                        &path,
                        message,
                        name,
                        may_run.iter().copied(),
                        None,
                    );
                    ok = false;
                }
            }
            // A proxy host is there to run haproxy: one left out would run nothing.
            let named: Vec<&str> = items.iter().map(|(_, s, _)| s.as_str()).collect();
            for p in proxy_hosts.iter().filter(|p| !named.contains(p)) {
                d.error_with_help(
                    n.pos,
                    "routing.haproxy.hosts",
                    format!("{p} has `role: proxy` and is not in `routing.haproxy.hosts`: a proxy host runs haproxy and nothing else"),
                    format!("add {p} to `routing.haproxy.hosts`, or remove the host"),
                );
                ok = false;
            }
            ok.then(|| items.into_iter().map(|(_, s, _)| s).collect())
        }
        // Proxy hosts are where haproxy goes; without them, every data host.
        None if !proxy_hosts.is_empty() => {
            Some(proxy_hosts.iter().map(|s| (*s).to_owned()).collect())
        }
        None => Some(data_hosts.iter().map(|s| (*s).to_owned()).collect()),
    };
    let on_every_data_host = hosts
        .as_ref()
        .is_some_and(|h: &Vec<String>| data_hosts.iter().all(|d| h.iter().any(|x| x == d)));
    let proxies_by_default = hosts_node.is_none() && !proxy_hosts.is_empty();
    let port = |d: &mut Diagnostics, m: &mut MapReader, key: &'static str, default: u16| match m
        .take(key)
    {
        Some(n) => (decode::port(d, n, &format!("routing.haproxy.{key}")), n.pos),
        None => (Some(default), m.pos()),
    };
    let (primary_port, primary_at) = port(d, &mut m, "primary_port", PRIMARY_PORT);
    let (replica_port, replica_at) = port(d, &mut m, "replica_port", REPLICA_PORT);
    let max_lag = match m.take("max_lag") {
        Some(n) => bytes(d, n, "routing.haproxy.max_lag"),
        None => Some(MAX_LAG),
    };
    m.finish(d);
    Some(Haproxy {
        hosts: hosts?,
        on_every_data_host,
        proxies_by_default,
        primary_port: primary_port?,
        replica_port: replica_port?,
        max_lag: max_lag?,
        ports_at: [primary_at, replica_at],
    })
}

/// A size in bytes: a number, or one with a unit (`kB`, `MB`, `GB`, as PostgreSQL writes them).
fn bytes(d: &mut Diagnostics, node: &Node, path: &str) -> Option<u64> {
    let text = node.scalar_text().unwrap_or_default();
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let factor = match unit.trim() {
        "" | "B" => Some(1u64),
        "kB" => Some(1 << 10),
        "MB" => Some(1 << 20),
        "GB" => Some(1 << 30),
        _ => None,
    };
    match (digits.parse::<u64>(), factor) {
        (Ok(n), Some(f)) => n.checked_mul(f).or_else(|| {
            d.error(node.pos, path, format!("`{t}` is too large"));
            None
        }),
        _ => {
            d.error(
                node.pos,
                path,
                format!("`{t}` is not a size: a number of bytes, or with a unit (kB, MB, GB), e.g. `1MB`"),
            );
            None
        }
    }
}

/// The routes' ports may not take one another's, nor PostgreSQL's, SSH's or the flavour's.
fn ports(d: &mut Diagnostics, pos: crate::yaml::node::Pos, s: &Section, cx: &Context<'_>) {
    // Ports outside the section first: a clash is reported at the routing key that takes one.
    let mut taken: Vec<(u16, String, crate::yaml::node::Pos)> = cx
        .ports
        .iter()
        .map(|(p, what)| (*p, what.clone(), pos))
        .collect();
    if !cx.flavour_health {
        taken.push((s.health_port, "routing.health_port".to_owned(), pos));
    }
    if let Some(h) = &s.haproxy {
        taken.push((
            h.primary_port,
            "routing.haproxy.primary_port".to_owned(),
            h.ports_at[0],
        ));
        taken.push((
            h.replica_port,
            "routing.haproxy.replica_port".to_owned(),
            h.ports_at[1],
        ));
    }
    for (i, (port, what, at)) in taken.iter().enumerate() {
        if let Some((_, first, _)) = taken[..i].iter().find(|(p, _, _)| p == port) {
            d.error(
                *at,
                what,
                format!("port {port} is both {first} and {what}: each needs a port of its own on the data hosts"),
            );
        }
    }
}
