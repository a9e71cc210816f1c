//! Ready connection strings for the cluster's clients (`pgha connect-info`): libpq and JDBC
//! multi-host URLs that find the primary themselves, and the routes of `routing:` (the VIP,
//! haproxy's write and read ports). Every one checks the server's certificate against the
//! cluster CA (`sslmode=verify-full`) when the cluster has TLS. Built from the inventory
//! alone: no host is contacted, no password is in them.

use serde::Serialize;

use crate::model::Cluster;

use super::Routing;

/// One way in, for one kind of client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connection {
    /// What it is for: `writes (libpq, any host that is primary)`.
    pub purpose: String,
    /// `libpq` or `jdbc`.
    pub client: &'static str,
    pub url: String,
}

/// Who connects to what.
pub struct Target<'a> {
    pub user: &'a str,
    pub database: &'a str,
    /// Where the client keeps the cluster CA's certificate.
    pub ca_file: &'a str,
}

fn hosts_list(endpoints: &[(String, u16)]) -> String {
    endpoints
        .iter()
        .map(|(h, p)| format!("{}:{p}", bracket(h)))
        .collect::<Vec<_>>()
        .join(",")
}

/// IPv6 literals go in brackets in a URL.
fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Percent-encoding for the few characters a user, database or path may hold that a URL
/// cannot carry as they are.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn connections(
    cluster: &Cluster,
    routing: Option<&Routing>,
    t: &Target<'_>,
) -> Vec<Connection> {
    let tls = cluster.tls.is_some();
    let libpq_tls = if tls {
        format!("&sslmode=verify-full&sslrootcert={}", encode(t.ca_file))
    } else {
        String::new()
    };
    let jdbc_tls = if tls {
        format!(
            "&ssl=true&sslmode=verify-full&sslrootcert={}",
            encode(t.ca_file)
        )
    } else {
        String::new()
    };
    let libpq = |endpoints: &[(String, u16)], query: &str| {
        format!(
            "postgresql://{}@{}/{}?{query}{libpq_tls}",
            encode(t.user),
            hosts_list(endpoints),
            encode(t.database)
        )
    };
    let jdbc = |endpoints: &[(String, u16)], query: &str| {
        format!(
            "jdbc:postgresql://{}/{}?user={}&{query}{jdbc_tls}",
            hosts_list(endpoints),
            encode(t.database),
            encode(t.user)
        )
    };
    let data: Vec<(String, u16)> = cluster
        .hosts
        .iter()
        .filter(|h| h.role.holds_data())
        .map(|h| (h.address.clone(), cluster.postgres.port))
        .collect();
    let mut out = vec![
        Connection {
            purpose: "writes: every data host, libpq finds the primary".to_owned(),
            client: "libpq",
            url: libpq(&data, "target_session_attrs=read-write&connect_timeout=3"),
        },
        Connection {
            purpose: "reads: a standby when one answers, else the primary".to_owned(),
            client: "libpq",
            url: libpq(
                &data,
                "target_session_attrs=prefer-standby&connect_timeout=3",
            ),
        },
        Connection {
            purpose: "writes: every data host, the driver finds the primary".to_owned(),
            client: "jdbc",
            url: jdbc(&data, "targetServerType=primary&connectTimeout=3"),
        },
        Connection {
            purpose: "reads: spread over the standbys, else the primary".to_owned(),
            client: "jdbc",
            url: jdbc(
                &data,
                "targetServerType=preferSecondary&loadBalanceHosts=true&connectTimeout=3",
            ),
        },
    ];
    let Some(r) = routing else {
        return out;
    };
    if let Some(v) = &r.section.vip {
        let vip = vec![(v.address().to_string(), cluster.postgres.port)];
        out.push(Connection {
            purpose: format!("writes: the VIP ({} mode)", v.mode.as_str()),
            client: "libpq",
            url: libpq(&vip, "connect_timeout=3"),
        });
        out.push(Connection {
            purpose: format!("writes: the VIP ({} mode)", v.mode.as_str()),
            client: "jdbc",
            url: jdbc(&vip, "connectTimeout=3"),
        });
    }
    if let Some(h) = &r.section.haproxy {
        let front = r.section.haproxy_front(cluster);
        let at =
            |port: u16| -> Vec<(String, u16)> { front.iter().map(|a| (a.clone(), port)).collect() };
        out.push(Connection {
            purpose: "writes: haproxy's write port (the primary)".to_owned(),
            client: "libpq",
            url: libpq(&at(h.primary_port), "connect_timeout=3"),
        });
        out.push(Connection {
            purpose: format!(
                "reads: haproxy's read port (replicas at most {} bytes behind)",
                h.max_lag
            ),
            client: "libpq",
            url: libpq(&at(h.replica_port), "connect_timeout=3"),
        });
        out.push(Connection {
            purpose: "writes: haproxy's write port (the primary)".to_owned(),
            client: "jdbc",
            url: jdbc(&at(h.primary_port), "connectTimeout=3"),
        });
        out.push(Connection {
            purpose: "reads: haproxy's read port".to_owned(),
            client: "jdbc",
            url: jdbc(
                &at(h.replica_port),
                "loadBalanceHosts=true&connectTimeout=3",
            ),
        });
    }
    out
}
