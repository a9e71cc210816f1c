//! The checked cluster model: what the inventory means once every check has passed.
//!
//! Immutable after `inventory::load`. Everything downstream (render, playbook expansion, plan)
//! reads this, never the YAML.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

pub mod secret;

pub use secret::SecretRef;

#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub name: String,
    pub flavour: Flavour,
    pub postgres: Postgres,
    pub replication: Replication,
    pub users: Vec<User>,
    pub databases: Vec<Database>,
    pub packages: Vec<String>,
    pub hosts: Vec<Host>,
    /// The inventory file this model came from (relative paths were resolved against it).
    pub source: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    Streaming,
    Patroni,
    Repmgr,
}

impl Flavour {
    pub const NAMES: [&'static str; 3] = ["streaming", "patroni", "repmgr"];

    pub fn name(self) -> &'static str {
        match self {
            Flavour::Streaming => "streaming",
            Flavour::Patroni => "patroni",
            Flavour::Repmgr => "repmgr",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Postgres {
    pub version: u32,
    pub port: u16,
    pub debian_cluster: String,
    pub data_dir: String,
    pub conf_dir: String,
    pub listen_addresses: String,
    pub superuser_password: Option<SecretRef>,
    /// User-set parameters, names lower-cased, values as PostgreSQL text.
    pub parameters: BTreeMap<String, String>,
    pub hba: Vec<HbaRule>,
    pub allow_network_trust: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct HbaRule {
    #[serde(rename = "type")]
    pub kind: String,
    pub database: String,
    pub user: String,
    pub address: Option<String>,
    pub method: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Replication {
    pub user: String,
    pub password: SecretRef,
    pub slots: bool,
    pub max_slot_wal_keep_size: String,
    pub max_wal_senders: u32,
    pub max_replication_slots: u32,
    pub archive_mode: String,
    pub archive_command: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub name: String,
    pub password: Option<SecretRef>,
    pub login: bool,
    pub superuser: bool,
    pub createdb: bool,
    pub createrole: bool,
    pub connection_limit: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Database {
    pub name: String,
    pub owner: String,
    pub extensions: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// The key must already be known (the safe default).
    Strict,
    /// First contact records the key; a changed key is still refused.
    AcceptNew,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ssh {
    pub user: String,
    pub port: u16,
    pub identity_file: Option<PathBuf>,
    pub host_key_policy: HostKeyPolicy,
    pub known_hosts: Option<PathBuf>,
    pub connect_timeout: u32,
}

impl Ssh {
    /// Commands need `sudo -n` unless we log in as root.
    pub fn needs_sudo(&self) -> bool {
        self.user != "root"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Standby,
    /// repmgr witness: its own instance, never on the primary's host.
    Witness,
}

impl Role {
    pub const NAMES: [&'static str; 3] = ["primary", "standby", "witness"];
}

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: String,
    /// An IP address or a DNS name.
    pub address: String,
    pub role: Role,
    /// The node this one streams from; `None` for the primary, the primary's name for a
    /// standby without an explicit `upstream`.
    pub upstream: Option<String>,
    pub ssh: Ssh,
    pub allow_wipe: bool,
}

impl Host {
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }
}

impl Cluster {
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn primary(&self) -> &Host {
        // The validator guarantees exactly one primary.
        self.hosts
            .iter()
            .find(|h| h.role == Role::Primary)
            .unwrap_or(&self.hosts[0])
    }

    /// Hosts that stream directly from `name`.
    pub fn downstreams(&self, name: &str) -> Vec<&Host> {
        self.hosts
            .iter()
            .filter(|h| h.upstream.as_deref() == Some(name))
            .collect()
    }

    /// The replication slot a standby uses on its upstream.
    pub fn slot_name(host: &str) -> String {
        format!("pgha_{}", host.replace('-', "_").to_ascii_lowercase())
    }

    /// Every secret the model references, with a label for messages.
    pub fn secrets(&self) -> Vec<(String, &SecretRef)> {
        let mut out = vec![(
            "replication.password".to_owned(),
            &self.replication.password,
        )];
        if let Some(s) = &self.postgres.superuser_password {
            out.push(("postgres.superuser_password".to_owned(), s));
        }
        for u in &self.users {
            if let Some(s) = &u.password {
                out.push((format!("users[{}].password", u.name), s));
            }
        }
        out
    }
}
