//! The way a drill's client reaches the cluster's primary, as an application would: a libpq
//! multi-host list, a virtual address, or haproxy.

use crate::components::routing::Routing;
use crate::model::Cluster;
use crate::project::Project;

/// Which route the drill's writes take (`--via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// Every data host's address, the client keeps the one that takes writes.
    Multihost,
    /// The routing component's virtual address.
    Vip,
    /// The routing component's haproxy.
    Haproxy,
}

/// Where the client connects: the hosts tried in order, and whether it insists on one that
/// takes writes (`target_session_attrs=read-write`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Route {
    pub label: String,
    pub hosts: Vec<(String, u16)>,
    pub read_write: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("--via {via}: the inventory has no routing.{via}")]
    NotInInventory { via: &'static str },
    #[error("--via multihost: the inventory has no data host")]
    NoDataHost,
}

/// The route `via` names in this inventory.
pub fn route(project: &Project, via: Via) -> Result<Route, RouteError> {
    let cluster = &project.cluster;
    let routing = project
        .components
        .iter()
        .find_map(|c| c.as_any().downcast_ref::<Routing>());
    let section = routing.map(|r| &r.section);
    match via {
        Via::Multihost => multihost(cluster),
        Via::Vip => {
            let vip = section
                .and_then(|s| s.vip.as_ref())
                .ok_or(RouteError::NotInInventory { via: "vip" })?;
            Ok(Route {
                label: format!("vip ({} mode)", vip.mode.as_str()),
                hosts: vec![(vip.address().to_string(), cluster.postgres.port)],
                read_write: false,
            })
        }
        Via::Haproxy => {
            let s = section.ok_or(RouteError::NotInInventory { via: "haproxy" })?;
            let h = s
                .haproxy
                .as_ref()
                .ok_or(RouteError::NotInInventory { via: "haproxy" })?;
            // Where clients are told to reach it (`connect-info`).
            let hosts = s
                .haproxy_front(cluster)
                .into_iter()
                .map(|a| (a, h.primary_port))
                .collect();
            Ok(Route {
                label: "haproxy write port".to_owned(),
                hosts,
                read_write: false,
            })
        }
    }
}

/// Every data host's address and PostgreSQL's port, in the inventory's order.
pub fn multihost(cluster: &Cluster) -> Result<Route, RouteError> {
    let hosts: Vec<(String, u16)> = cluster
        .hosts
        .iter()
        .filter(|h| h.role.holds_data())
        .map(|h| (h.address.clone(), cluster.postgres.port))
        .collect();
    if hosts.is_empty() {
        return Err(RouteError::NoDataHost);
    }
    Ok(Route {
        label: "multihost".to_owned(),
        hosts,
        read_write: true,
    })
}

impl Route {
    /// `host:port,host:port`, for the report.
    pub fn addresses(&self) -> String {
        self.hosts
            .iter()
            .map(|(h, p)| format!("{h}:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multihost_lists_the_data_hosts_and_the_others_are_refused_until_routing_exists() {
        let inv = crate::inventory::load_str(
            std::path::Path::new("t.yml"),
            "cluster: {name: t, flavour: streaming}\npostgres: {version: 15, port: 5433, superuser_password: {env: X}}\nreplication: {user: replicator, password: {env: X}}\nhosts:\n  - {name: pg1, address: 10.0.0.1, role: primary}\n  - {name: pg2, address: 10.0.0.2, role: standby}\n",
        )
        .expect("loads");
        let r = multihost(&inv.cluster).expect("a route");
        assert_eq!(r.addresses(), "10.0.0.1:5433,10.0.0.2:5433");
        assert!(r.read_write);
        assert_eq!(
            RouteError::NotInInventory { via: "vip" }.to_string(),
            "--via vip: the inventory has no routing.vip"
        );
    }
}
