//! The checked cluster model: what the inventory means once every check has passed.
//!
//! Immutable after `inventory::load`. Everything downstream (render, playbook expansion, plan)
//! reads this, never the YAML.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

pub mod objectives;
pub mod pg_hba;
pub mod pg_names;
pub mod pg_params;
pub mod preload;
pub mod sync_standbys;

pub use crate::secret::{Sealed, Secret, SecretRef, Secrets};
pub use objectives::{Objectives, Rpo};

#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub name: String,
    /// The HA flavour's name; what it means lives in `flavours/<name>/`.
    pub flavour: String,
    pub postgres: Postgres,
    pub replication: Replication,
    pub users: Vec<User>,
    pub databases: Vec<Database>,
    pub hosts: Vec<Host>,
    /// TLS on PostgreSQL's connections, when the inventory has a `tls:` section.
    pub tls: Option<Tls>,
    /// The declared RTO/RPO (`objectives:`), when the inventory has them: the flavour and the
    /// route derived their timing from them.
    pub objectives: Option<Objectives>,
    /// The inventory file this model came from (relative paths were resolved against it).
    pub source: PathBuf,
    /// Hosts leaving the cluster (`decommission:`): reached, when they answer, only to stop
    /// what pgha ran there and, with consent, delete their data.
    pub decommission: Vec<Departing>,
}

/// A host that left `hosts:` and that the DBA names under `decommission:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Departing {
    pub name: String,
    pub address: String,
    pub ssh: Ssh,
    /// `wipe_data: true`: its data directories are deleted once its services are stopped.
    pub wipe_data: bool,
}

impl Departing {
    /// As a host to connect to (the transport takes hosts): it holds no role any more.
    pub fn as_host(&self) -> Host {
        Host {
            name: self.name.clone(),
            address: self.address.clone(),
            role: Role::Standby,
            upstream: None,
            ssh: self.ssh.clone(),
            allow_wipe: false,
        }
    }
}

/// The cluster's CA, which signs every host's certificate, and how long those live.
#[derive(Debug, Clone, Serialize)]
pub struct Tls {
    /// Where each host keeps the CA's certificate and its own (`ca.crt`, `server.crt`,
    /// `server.key`).
    pub dir: String,
    /// The CA certificate (PEM, public), read when the inventory loads.
    pub ca_cert: String,
    pub ca_cert_file: PathBuf,
    /// The CA's private key: a secret like any other, needed only to issue (none: every
    /// host's certificate is provided).
    pub ca_key: Option<SecretRef>,
    pub validity_days: i64,
    /// A host certificate with fewer days left is renewed.
    pub renew_before_days: i64,
    /// Names and addresses every host's certificate carries besides its own (a VIP, a DNS
    /// name clients use for the cluster).
    pub extra_names: Vec<String>,
    /// Certificates the DBA's own CA issued, by host (`tls.certificates`): installed as they
    /// are instead of issued by pgha.
    pub provided: BTreeMap<String, ProvidedCertificate>,
}

/// A host's certificate issued elsewhere, and its key (a secret).
#[derive(Debug, Clone, Serialize)]
pub struct ProvidedCertificate {
    /// PEM, public; checked against the CA and the host's names when the inventory loads.
    pub cert: String,
    pub key: SecretRef,
}

impl ProvidedCertificate {
    /// The label its key is resolved under.
    pub fn key_label(host: &str) -> String {
        format!("tls.certificates.{host}.key")
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
    /// The exact Debian version of the server's packages (`15.20-0+deb12u1`): a fresh host
    /// gets it, a running cluster is moved to it by a rolling minor upgrade. None: whatever
    /// apt installs, never upgraded by pgha.
    pub package_version: Option<String>,
}

impl Postgres {
    /// Debian's folder of the server's programs (pg_ctl, pg_rewind, repmgr).
    pub fn bin_dir(&self) -> String {
        format!("/usr/lib/postgresql/{}/bin", self.version)
    }

    /// Where the server's certificate, key and the cluster CA live on every host.
    /// The server's Debian packages a minor upgrade moves together (libpq5 only where it is
    /// installed: the client library the server's programs link).
    pub fn server_packages(&self) -> [String; 2] {
        [
            format!("postgresql-{}", self.version),
            format!("postgresql-client-{}", self.version),
        ]
    }

    pub fn tls_dir(&self) -> String {
        format!("{}/tls", self.conf_dir)
    }
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

/// A host's part in the cluster. Primary and standby hold the data; a flavour may add roles of
/// its own (a dedicated DCS member, a witness), declared in its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Standby,
    Member(MemberRole),
}

/// A role a flavour adds: a host that takes part in the cluster without a copy of its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberRole {
    /// As the inventory writes it (`role: etcd`).
    pub name: &'static str,
    /// Whether the host runs a PostgreSQL server of its own (a repmgr witness does).
    pub runs_postgres: bool,
    /// How messages speak of such a host: "an etcd host".
    pub description: &'static str,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
            Role::Member(m) => m.name,
        }
    }

    /// How messages speak of such a host: "a data host", "an etcd host".
    pub fn description(self) -> &'static str {
        match self {
            Role::Primary | Role::Standby => "a data host",
            Role::Member(m) => m.description,
        }
    }

    /// Whether the host runs PostgreSQL.
    pub fn has_postgres(self) -> bool {
        match self {
            Role::Primary | Role::Standby => true,
            Role::Member(m) => m.runs_postgres,
        }
    }

    /// Holds a copy of the cluster's data: can lead, or stream from another member.
    pub fn holds_data(self) -> bool {
        matches!(self, Role::Primary | Role::Standby)
    }
}

impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
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

/// An address as the machine it reaches: an IP address in its canonical form (`fd00:0:0::1`
/// is `fd00::1`, `::ffff:10.0.0.1` is `10.0.0.1`), a DNS name in lower case without the
/// final dot. Two hosts with the same one are one machine.
pub fn same_machine(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(ip) => ip.to_canonical().to_string(),
        Err(_) => address.trim_end_matches('.').to_ascii_lowercase(),
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

    /// Every secret the generic model references, with a label for messages (a flavour adds
    /// its own).
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
        if let Some(t) = &self.tls {
            if let Some(k) = &t.ca_key {
                out.push(("tls.ca_key".to_owned(), k));
            }
            for (host, p) in &t.provided {
                out.push((ProvidedCertificate::key_label(host), &p.key));
            }
        }
        out
    }
}

/// Who is primary and who streams from whom. At bootstrap this is the inventory's word; once
/// the cluster runs, pgha reads it from the hosts (a switchover changes it) and plans with
/// that, never "correcting" the cluster back to the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Topology {
    pub primary: String,
    /// Standby -> its upstream.
    pub upstream: BTreeMap<String, String>,
    /// The smallest memory and CPU count among the data hosts read (None offline, or when no
    /// data host was read): what hardware-derived settings are computed from. One value for
    /// the whole cluster: Patroni keeps one set of parameters in the DCS, and a hot standby
    /// needs the worker and lock limits of its primary or more.
    #[serde(default)]
    pub hardware: Option<Hardware>,
}

/// What a host has to run PostgreSQL on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Hardware {
    /// Memory in bytes (the machine's, or its cgroup's limit when lower).
    pub memory: u64,
    pub cpus: u32,
}

impl Hardware {
    /// The smaller of each (the machine to size for when hosts differ).
    pub fn min(self, other: Hardware) -> Hardware {
        Hardware {
            memory: self.memory.min(other.memory),
            cpus: self.cpus.min(other.cpus),
        }
    }
}

impl Topology {
    pub fn declared(cluster: &Cluster) -> Self {
        Topology {
            primary: cluster.primary().name.clone(),
            upstream: cluster
                .hosts
                .iter()
                .filter_map(|h| h.upstream.clone().map(|u| (h.name.clone(), u)))
                .collect(),
            hardware: None,
        }
    }

    pub fn role(&self, host: &Host) -> Role {
        if host.name == self.primary {
            Role::Primary
        } else if let Role::Member(_) = host.role {
            host.role
        } else {
            Role::Standby
        }
    }

    pub fn downstreams<'c>(&self, cluster: &'c Cluster, name: &str) -> Vec<&'c Host> {
        cluster
            .hosts
            .iter()
            .filter(|h| self.upstream.get(&h.name).map(String::as_str) == Some(name))
            .collect()
    }

    /// Hops from the primary (the primary is 0).
    pub fn depth(&self, name: &str) -> usize {
        let mut at = name;
        let mut hops = 0;
        while let Some(up) = self.upstream.get(at) {
            hops += 1;
            at = up;
            if hops > self.upstream.len() {
                break;
            }
        }
        hops
    }
}

/// The server parameters pgha writes: its own replication settings, then the user's (which win).
pub fn server_parameters(cluster: &Cluster) -> BTreeMap<String, String> {
    let r = &cluster.replication;
    let mut p = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        p.insert(k.to_owned(), v);
    };
    set(
        "listen_addresses",
        cluster.postgres.listen_addresses.clone(),
    );
    set("port", cluster.postgres.port.to_string());
    set("wal_level", "replica".into());
    set("max_wal_senders", r.max_wal_senders.to_string());
    set("max_replication_slots", r.max_replication_slots.to_string());
    set("max_slot_wal_keep_size", r.max_slot_wal_keep_size.clone());
    set("hot_standby", "on".into());
    // pg_rewind needs hint bits in WAL when the cluster has no data checksums.
    set("wal_log_hints", "on".into());
    set("archive_mode", r.archive_mode.clone());
    set("archive_command", r.archive_command.clone());
    set("password_encryption", "scram-sha-256".into());
    if let Some(t) = &cluster.tls {
        // The cluster's own certificate instead of Debian's snakeoil one; the CA lets the
        // server check client certificates where a rule asks for them.
        let dir = &t.dir;
        set("ssl", "on".into());
        set("ssl_cert_file", format!("{dir}/server.crt"));
        set("ssl_key_file", format!("{dir}/server.key"));
        set("ssl_ca_file", format!("{dir}/ca.crt"));
        set("ssl_min_protocol_version", "TLSv1.2".into());
    }
    set("cluster_name", cluster.name.clone());
    for (k, v) in &cluster.postgres.parameters {
        p.insert(k.clone(), v.clone());
    }
    p
}

/// A host's name as a replication slot name may spell it: lower case, other characters as `_`
/// (Patroni's own rule for its member slots).
pub fn slot_safe_name(host: &str) -> String {
    host.to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
