//! `postgres.hba` rules: each field as pgha writes it into pg_hba.conf, each rule as
//! PostgreSQL 15 reads it (`model::pg_hba`), pgha's own stricter address rules, and rules an
//! earlier one hides.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::diag::Diagnostics;
use crate::model::pg_hba::{self, Field};
use crate::model::HbaRule;
use crate::yaml::decode;
use crate::yaml::node::{Node, Pos};

pub const HBA_TYPES: [&str; 6] = pg_hba::TYPES;
pub const HBA_METHODS: [&str; 14] = pg_hba::METHODS;

/// Which list field of a rule a text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HbaField {
    Database,
    User,
    Address,
}

impl HbaField {
    /// The keywords of the field (lower case, compared case-sensitively by the server).
    fn keywords(self) -> &'static [&'static str] {
        match self {
            HbaField::Database => &["all", "sameuser", "samerole", "samegroup", "replication"],
            HbaField::User => &["all"],
            HbaField::Address => &["all", "samehost", "samenet"],
        }
    }

    fn what(self) -> &'static str {
        match self {
            HbaField::Database => "database",
            HbaField::User => "role",
            HbaField::Address => "host",
        }
    }
}

/// Where a rule's keys stand, for errors about one of them.
#[derive(Debug, Clone, Copy)]
pub struct HbaPositions {
    pub kind: Pos,
    pub database: Pos,
    pub user: Pos,
    /// The address, or the item when it has none.
    pub address: Pos,
    pub method: Pos,
}

/// A pg_hba field as written: one token pgha can write as it is.
pub fn field(d: &mut Diagnostics, node: &Node, path: &str, which: HbaField) -> Option<String> {
    let text = decode::string(d, node, path)?;
    match field_problem(&text, path, which) {
        Some(why) => {
            d.error(node.pos, path, why);
            None
        }
        None => Some(text),
    }
}

fn field_problem(text: &str, path: &str, which: HbaField) -> Option<String> {
    if text.is_empty() {
        return Some(format!(
            "`{path}` is empty: pg_hba.conf needs a value here (`all` matches every one)"
        ));
    }
    // Whitespace would split the field in two and a line break would start a rule of its own
    // (a `trust` line the checks never saw).
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!("`{path}` holds whitespace or a line break: a pg_hba.conf field is one word (list several with commas)"));
    }
    if text.contains('#') {
        return Some(format!("`{path}` holds `#`: pg_hba.conf reads the rest of the line as a comment, and the rule would lose its other fields"));
    }
    if text.contains('"') {
        return Some(format!(
            "`{path}` holds a double quote: pgha writes pg_hba.conf fields as they are, unquoted"
        ));
    }
    if which != HbaField::Address && text.split(',').any(str::is_empty) {
        return Some(format!("`{path}` has an empty item in its comma list: a comma at the end makes PostgreSQL read the next field into this list"));
    }
    text.split(',').find_map(|item| item_problem(item, which))
}

fn item_problem(item: &str, which: HbaField) -> Option<String> {
    if which != HbaField::Address && item.starts_with('@') {
        return Some(format!(
            "`{item}` includes a file of names, which pgha does not write: list the names here"
        ));
    }
    if let Some(keyword) = which
        .keywords()
        .iter()
        .find(|k| k.eq_ignore_ascii_case(item) && **k != item)
    {
        return Some(format!("`{item}` is not the keyword `{keyword}`: pg_hba.conf keywords are lower case, so this matches only a {} named `{item}`", which.what()));
    }
    match which {
        HbaField::Database if item.starts_with('+') => Some(format!(
            "`{item}`: `+` marks a group only in the user field; here it names a database `{item}`"
        )),
        HbaField::User if ["sameuser", "samerole", "samegroup"].contains(&item) => {
            Some(format!("`{item}` is a keyword of the database field: in the user field it names a role called `{item}`"))
        }
        _ => None,
    }
}

/// What the inventory allows of its own pg_hba rules beyond the safe ones.
#[derive(Debug, Clone, Copy)]
pub struct HbaPolicy {
    /// `trust` from the network (`postgres.allow_network_trust`).
    pub network_trust: bool,
    /// `host` (TLS or not) from the network: the cluster has no TLS, or
    /// `postgres.allow_host_without_tls`.
    pub host_without_tls: bool,
}

/// Whether a rule's address means this host itself (loopback or `samehost`): a connection
/// that never crosses the network.
pub fn is_local_address(address: &str) -> bool {
    if address == "samehost" || address == "localhost" {
        return true;
    }
    let ip = address.split('/').next().unwrap_or(address);
    ip.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// One rule: pgha's address rules, then what PostgreSQL would refuse, then network trust and
/// connections without TLS.
pub fn hba_rule(
    d: &mut Diagnostics,
    rule: &HbaRule,
    at: &HbaPositions,
    path: &str,
    policy: HbaPolicy,
) -> bool {
    let key = |field: &str| format!("{path}.{field}");
    match (rule.kind.as_str(), &rule.address) {
        ("local", Some(_)) => {
            d.error(
                at.address,
                &key("address"),
                "a `local` rule takes no address (it matches Unix-socket connections)",
            );
            return false;
        }
        ("local", None) => {}
        (kind, None) => {
            d.error(
                at.address,
                &key("address"),
                format!("a `{kind}` rule needs an address (a CIDR such as 10.0.0.0/24)"),
            );
            return false;
        }
        (_, Some(address)) => {
            if !address_ok(d, address, at.address, &key("address")) {
                return false;
            }
        }
    }
    if let Err(problem) = pg_hba::check_rule(rule) {
        let (pos, field) = match problem.field {
            Field::Type => (at.kind, "type"),
            Field::Database => (at.database, "database"),
            Field::User => (at.user, "user"),
            Field::Address => (at.address, "address"),
            Field::Method | Field::Options => (at.method, "method"),
        };
        if ["ldap", "radius"].contains(&rule.method.as_str()) {
            d.error_with_help(pos, &key(field), problem.message, "pgha's hba rules carry no options yet: use another method here, or write pg_hba.conf from a template of your own (--templates)");
        } else {
            d.error(pos, &key(field), problem.message);
        }
        return false;
    }
    if rule.method == "trust" && rule.kind != "local" && !policy.network_trust {
        d.error_with_help(
            at.method,
            &key("method"),
            format!("`trust` from the network ({}) lets anyone who reaches the port in as any user, without a password", rule.address.as_deref().unwrap_or_default()),
            "use scram-sha-256; if you really mean it, set `postgres.allow_network_trust: true`",
        );
        return false;
    }
    let address = rule.address.as_deref().unwrap_or_default();
    if rule.kind == "host"
        && rule.method != "reject"
        && !policy.host_without_tls
        && !is_local_address(address)
    {
        d.error_with_help(
            at.kind,
            &key("type"),
            format!("a `host` rule lets {address} connect without TLS: passwords and data would cross the network in clear"),
            "use `hostssl` (the cluster has TLS); if a client cannot speak TLS, set `postgres.allow_host_without_tls: true`",
        );
        return false;
    }
    true
}

/// pgha's address rules, stricter than the server's: a CIDR or a keyword, never a host name,
/// never a bare address, and no host bits the mask throws away.
fn address_ok(d: &mut Diagnostics, address: &str, pos: Pos, key: &str) -> bool {
    if HbaField::Address.keywords().contains(&address) {
        return true;
    }
    if let Ok(ip) = address.parse::<IpAddr>() {
        // PostgreSQL would read the method as the netmask and refuse the whole file.
        let one = if ip.is_ipv4() { 32 } else { 128 };
        d.error_with_help(
            pos,
            key,
            format!("`{address}` has no mask: pg_hba.conf needs a CIDR"),
            format!("write {address}/{one} for this one host"),
        );
        return false;
    }
    if let Some(problem) = item_problem(address, HbaField::Address) {
        d.error(pos, key, problem);
        return false;
    }
    let parsed = address
        .split_once('/')
        .and_then(|(ip, mask)| Some((ip.parse::<IpAddr>().ok()?, mask)));
    let Some((ip, mask)) = parsed else {
        d.error(
            pos,
            key,
            format!(
                "`{address}` is not a CIDR address (like 10.0.0.0/24) nor all/samehost/samenet"
            ),
        );
        return false;
    };
    let net = pg_hba::mask_bits(mask, ip).and_then(|bits| IpNet::new(ip, bits).ok());
    let Some(net) = net else {
        let (family, most) = if ip.is_ipv4() {
            ("IPv4", 32)
        } else {
            ("IPv6", 128)
        };
        d.error(
            pos,
            key,
            format!("`{address}` is not a CIDR address: an {family} mask is /0 to /{most}"),
        );
        return false;
    };
    if net.network() != ip {
        // The server masks them away: `10.0.0.12/24` lets in all of 10.0.0.0/24, which is
        // rarely what the one address written there meant.
        d.error_with_help(
            pos,
            key,
            format!(
                "`{address}` has host bits set: PostgreSQL ignores them and lets in all of {}",
                net.trunc()
            ),
            format!(
                "write {} for the network, or {}/{} for this one host",
                net.trunc(),
                ip,
                net.max_prefix_len()
            ),
        );
        return false;
    }
    true
}

/// Whether `first`, coming earlier, matches every connection `later` would: the server takes
/// the first rule that matches, so `later` never applies.
fn covers(first: &HbaRule, later: &HbaRule) -> bool {
    let items = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
    let (db1, db2) = (items(&first.database), items(&later.database));
    let (user1, user2) = (items(&first.user), items(&later.user));
    let kind = first.kind == later.kind || (first.kind == "host" && later.kind != "local");
    // `all` matches every database but not replication connections.
    let database = if db1.iter().any(|d| d == "all") {
        !db2.iter().any(|d| d == "replication")
    } else {
        db2.iter().all(|d| db1.contains(d))
    };
    let user = user1.iter().any(|u| u == "all") || user2.iter().all(|u| user1.contains(u));
    let net = |a: &str| a.parse::<IpNet>().ok().map(|n| n.trunc());
    let address = match (first.address.as_deref(), later.address.as_deref()) {
        (None, None) | (Some("all"), Some(_)) => true,
        (Some(a), Some(b)) if a == b => true,
        (Some(a), Some(b)) => match (net(a), net(b)) {
            (Some(a), Some(b)) => a.contains(&b),
            _ => false,
        },
        _ => false,
    };
    kind && database && user && address
}

/// Rules an earlier rule hides: (rule, its item's position, its path) in file order.
pub fn shadowed(d: &mut Diagnostics, rules: &[(HbaRule, Pos, String)]) -> bool {
    let mut ok = true;
    for (j, (later, pos, path)) in rules.iter().enumerate() {
        if let Some((_, _, first)) = rules[..j].iter().find(|(r, _, _)| covers(r, later)) {
            d.error(
                *pos,
                path,
                format!("`{path}` never applies: `{first}` comes first and matches every connection it would (PostgreSQL takes the first rule that matches)"),
            );
            ok = false;
        }
    }
    ok
}
