//! Read an inventory file into a checked `model::Cluster`, or every error it has.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::Diagnostics;
use crate::flavours::{self, Entry, SectionInput};
use crate::inventory::checks::hba::HbaPolicy;
use crate::inventory::checks::params::FlavourManaged;
use crate::inventory::checks::roles::Declared;
use crate::inventory::checks::{self, roles, HbaField, HbaPositions};
use crate::inventory::Inventory;
use crate::model::pg_params;
use crate::model::{
    same_machine, Cluster, Database, Departing, HbaRule, Host, HostKeyPolicy, Postgres,
    ProvidedCertificate, Replication, Role, SecretRef, Ssh, Tls, User,
};
use crate::yaml::decode::{self, MapReader};
use crate::yaml::node::{self, Node, Value};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read inventory {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{}", .0.render())]
    Invalid(Diagnostics),
}

/// Load and check an inventory file.
pub fn load(path: &Path) -> Result<Inventory, LoadError> {
    let source = std::fs::read_to_string(path).map_err(|e| LoadError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    load_str(path, &source)
}

/// Load from text; `path` names the file in messages and anchors relative paths.
pub fn load_str(path: &Path, source: &str) -> Result<Inventory, LoadError> {
    let mut d = Diagnostics::new(path, source);
    let root = match node::parse(source) {
        Ok(root) => root,
        Err(e) => {
            d.error(e.pos, "", format!("invalid YAML: {}", e.message));
            return Err(LoadError::Invalid(d));
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let inventory = Reader {
        d: &mut d,
        base,
        tls_certificates: None,
        role_at: BTreeMap::new(),
    }
    .inventory(&root, path);
    match inventory {
        Some(i) if d.is_empty() => Ok(i),
        _ => Err(LoadError::Invalid(d)),
    }
}

/// Where the cluster CA lives when the inventory has no `tls:` section, beside it.
pub const DEFAULT_CA_DIR: &str = "tls";

/// A host certificate's lifetime, and how long before its end it is renewed.
const DEFAULT_VALIDITY_DAYS: i64 = 365;
const DEFAULT_RENEW_BEFORE_DAYS: i64 = 30;

/// `tls: off` (or `false`): the DBA turned TLS off.
fn tls_is_off(node: &Node) -> bool {
    matches!(&node.value, Value::Bool(false)) || matches!(&node.value, Value::Str(s) if s == "off")
}

/// Give every node of a tree the same position.
fn relocate(node: &mut Node, pos: crate::diag::Pos) {
    node.pos = pos;
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| relocate(n, pos)),
        Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            k.pos = pos;
            relocate(v, pos);
        }),
        _ => {}
    }
}

pub(super) struct Reader<'d> {
    pub(super) d: &'d mut Diagnostics,
    /// Folder of the inventory: relative paths are taken from here.
    base: PathBuf,
    /// `tls.certificates` (and where it is written), read once the hosts are known.
    tls_certificates: Option<(PathBuf, crate::diag::Pos)>,
    /// Where each host's role is written, and its path, for errors found later.
    role_at: BTreeMap<String, (crate::diag::Pos, String)>,
}

impl Reader<'_> {
    fn inventory(&mut self, root: &Node, source: &Path) -> Option<Inventory> {
        let mut top = MapReader::new(self.d, root, "")?;
        let (name, flavour) = self.cluster_section(&mut top);
        // TLS is on unless the inventory says `tls: off`.
        let tls_node = top.take("tls");
        let tls_on = !tls_node.is_some_and(tls_is_off);
        let managed = match flavour {
            Some(e) => (e.name, e.managed_parameters),
            None => ("", &[][..]),
        };
        let postgres = self.postgres(&mut top, managed, tls_on);
        let replication = self.replication(&mut top);
        let replication_user = replication.as_ref().map(|r| r.user.as_str());
        // Owners are checked against every user named, also one refused for another reason.
        let mut roles: Vec<String> = vec!["postgres".to_owned()];
        let users = self.users(&mut top, replication_user, &mut roles);
        let databases = self.databases(&mut top, &roles, replication_user);
        // Without `tls:`, the CA in `tls/` beside the inventory; one not made yet is made by
        // the first plan or apply (`missing_ca`).
        let default_ca = self.base.join(DEFAULT_CA_DIR);
        let mut missing_ca = None;
        let tls = match tls_node {
            Some(n) if tls_is_off(n) => None,
            Some(n) => Some(self.tls(n)),
            None if default_ca.join("ca.crt").exists() => Some(self.default_tls(root)),
            None => {
                let stand_in = self.stand_in_tls(&default_ca);
                missing_ca = Some(default_ca);
                Some(stand_in)
            }
        };
        // Where the hosts keep the certificates: the flavour's place, or the server's
        // configuration folder.
        let host_dir = match (flavour.and_then(|e| e.tls_dir), &postgres) {
            (Some(dir), _) => dir.to_owned(),
            (None, Some(pg)) => pg.tls_dir(),
            (None, None) => String::new(),
        };
        let mut tls = tls.map(|t| t.map(|t| Tls { dir: host_dir, ..t }));
        let ssh = match top.take("ssh") {
            Some(n) => self.ssh(n, "ssh", &default_ssh()),
            None => Some(default_ssh()),
        };
        let mut host_entries = Vec::new();
        let hosts = match (top.require(self.d, "hosts"), &ssh) {
            (Some(n), Some(ssh)) => self.hosts(n, ssh, flavour, &mut host_entries),
            _ => None,
        };
        let decommission = match (top.take("decommission"), &ssh, &hosts) {
            (Some(n), Some(ssh), Some(hosts)) => self.decommission(n, ssh, hosts),
            (Some(_), _, _) => None,
            (None, _, _) => Some(Vec::new()),
        };
        // Read before the flavour's section, which refuses settings they derive.
        let declared = top
            .take("objectives")
            .and_then(|n| super::objectives::read(self.d, n));
        let objectives = declared.map(|(o, _)| o);
        // Each flavour's section is a top-level key named after it.
        let mut section = None;
        for e in flavours::FLAVOURS {
            let Some(n) = top.take(e.name) else { continue };
            match flavour {
                Some(f) if f.name == e.name => section = Some(n),
                Some(f) => self.d.error(
                    n.pos,
                    e.name,
                    format!(
                        "a `{0}:` section needs `cluster.flavour: {0}` (it is {1})",
                        e.name, f.name
                    ),
                ),
                None => {}
            }
        }
        let flavour = match (flavour, &hosts) {
            (Some(entry), Some(hosts)) => (entry.load)(SectionInput {
                d: self.d,
                section,
                root,
                hosts,
                host_entries,
                postgres: postgres.as_ref(),
                replication: replication.as_ref(),
                users: users.as_deref(),
                base: &self.base,
                tls: matches!(tls, Some(Some(_))),
                objectives: objectives.as_ref(),
            }),
            _ => None,
        };
        // Each component's section is a top-level key named after it; present means active.
        // Components see the flavour (its health checks, callbacks and ports).
        let mut components = Vec::new();
        let database_names: Option<Vec<String>> = databases
            .as_ref()
            .map(|dbs| dbs.iter().map(|db| db.name.clone()).collect());
        // Components whose sections have errors of their own.
        let mut broken = Vec::new();
        for c in crate::components::COMPONENTS {
            let Some(section) = top.take(c.name) else {
                continue;
            };
            let before = self.d.items.len();
            if let (Some(hosts), Some(flavour), Some(pg)) = (&hosts, &flavour, &postgres) {
                components.extend((c.load)(crate::components::SectionInput {
                    d: self.d,
                    section,
                    hosts,
                    base: &self.base,
                    flavour,
                    postgres_port: pg.port,
                    listen_addresses: &pg.listen_addresses,
                    pg_version: pg.version,
                    databases: database_names.as_deref(),
                    parameters: &pg.parameters,
                    data_dir: &pg.data_dir,
                    conf_dir: &pg.conf_dir,
                    cluster_name: name.as_deref().unwrap_or_default(),
                    archive_mode: replication
                        .as_ref()
                        .map_or("off", |r| r.archive_mode.as_str()),
                }));
            }
            if self.d.items.len() > before {
                broken.push(c.name);
            }
        }
        top.finish(self.d);
        if let (Some(hosts), Some(_), Some(_)) = (&hosts, &flavour, &postgres) {
            self.component_roles(hosts, &components, &broken);
        }

        let flavour = flavour?;
        // Addresses clients dial that a component adds (a VIP) go into every certificate.
        if let Some(Some(t)) = &mut tls {
            for c in &components {
                for name in c.certificate_names(hosts.as_deref().unwrap_or_default()) {
                    if !t.extra_names.contains(&name) {
                        t.extra_names.push(name);
                    }
                }
            }
        }
        if let (Some(Some(t)), Some(hosts)) = (&mut tls, &hosts) {
            self.provided_certificates(t, hosts);
        }
        let mut cluster = Cluster {
            name: name?,
            flavour: flavour.name().to_owned(),
            postgres: postgres?,
            replication: replication?,
            users: users?,
            databases: databases?,
            hosts: hosts?,
            tls: match tls {
                Some(t) => Some(t?),
                None => None,
            },
            objectives,
            source: source.to_path_buf(),
            decommission: decommission?,
        };
        // A component that archives the WAL (pgBackRest) writes the archive settings; its
        // section refused `replication.archive` beside it.
        for c in &components {
            if let Some(command) = c.archive_command() {
                cluster.replication.archive_mode = "on".to_owned();
                cluster.replication.archive_command = command;
            }
        }
        // The objectives decide the flavour's timing once the route is known (the components
        // saw the flavour before: its health checks, callbacks and ports do not depend on it).
        let (flavour, objective_notes) = match declared {
            Some((_, at)) => {
                super::objectives::derive(self.d, at, &cluster, &flavour, &components)?
            }
            None => (flavour, Vec::new()),
        };
        checks::cluster::check(self.d, root, &cluster, flavour.as_ref());
        checks::custom_params::check(self.d, root, &cluster, &components);
        Some(Inventory {
            cluster,
            flavour,
            components,
            missing_ca,
            objective_notes,
        })
    }

    fn cluster_section(&mut self, top: &mut MapReader) -> (Option<String>, Option<&'static Entry>) {
        let Some(node) = top.require(self.d, "cluster") else {
            return (None, None);
        };
        let Some(mut m) = MapReader::new(self.d, node, "cluster") else {
            return (None, None);
        };
        let name = m.require(self.d, "name").and_then(|n| {
            let name = decode::string(self.d, n, "cluster.name")?;
            checks::name(self.d, n, "cluster.name", &name, checks::NameKind::Cluster)
                .then_some(name)
        });
        let flavour = m.require(self.d, "flavour").and_then(|n| {
            let names: Vec<&str> = flavours::FLAVOURS.iter().map(|e| e.name).collect();
            let name = decode::string(self.d, n, "cluster.flavour")?;
            if let Some(e) = flavours::entry(&name) {
                return Some(e);
            }
            decode::choice(self.d, n, "cluster.flavour", &names);
            None
        });
        m.finish(self.d);
        (name, flavour)
    }

    fn postgres(
        &mut self,
        top: &mut MapReader,
        managed: FlavourManaged,
        tls_on: bool,
    ) -> Option<Postgres> {
        let node = top.require(self.d, "postgres")?;
        let mut m = MapReader::new(self.d, node, "postgres")?;
        let version = match m.take("version") {
            Some(n) => {
                let v = decode::integer(self.d, n, "postgres.version", 9, 99)?;
                if v != 15 {
                    self.d.error(
                        n.pos,
                        "postgres.version",
                        if v > 15 {
                            format!("PostgreSQL {v} is not supported: pgha supports version 15. Moving a cluster to a new major version is a procedure, not a setting: see docs/major-upgrade.md")
                        } else {
                            format!("PostgreSQL {v} is not supported: pgha supports version 15")
                        },
                    );
                    return None;
                }
                15
            }
            None => 15,
        };
        let port = m
            .take("port")
            .map(|n| decode::port(self.d, n, "postgres.port"))
            .unwrap_or(Some(5432));
        let debian_cluster = match m.take("debian_cluster") {
            Some(n) => decode::string(self.d, n, "postgres.debian_cluster").filter(|s| {
                checks::name(
                    self.d,
                    n,
                    "postgres.debian_cluster",
                    s,
                    checks::NameKind::Cluster,
                )
            }),
            None => Some("main".to_owned()),
        };
        let dc = debian_cluster.clone().unwrap_or_else(|| "main".into());
        let data_dir = self.abs_dir(
            &mut m,
            "data_dir",
            format!("/var/lib/postgresql/{version}/{dc}"),
        );
        let conf_dir = self.abs_dir(
            &mut m,
            "conf_dir",
            format!("/etc/postgresql/{version}/{dc}"),
        );
        let listen_addresses = match m.take("listen_addresses") {
            Some(n) => decode::string(self.d, n, "postgres.listen_addresses"),
            None => Some("*".to_owned()),
        };
        let superuser_password = match m.take("superuser_password") {
            Some(n) => Some(self.secret(n, "postgres.superuser_password")?),
            None => None,
        };
        let parameters = match m.take("parameters") {
            Some(n) => self.parameters(n, managed),
            None => Some(BTreeMap::new()),
        };
        let allow_network_trust = match m.take("allow_network_trust") {
            Some(n) => decode::boolean(self.d, n, "postgres.allow_network_trust"),
            None => Some(false),
        };
        let allow_host_without_tls = match m.take("allow_host_without_tls") {
            Some(n) => decode::boolean(self.d, n, "postgres.allow_host_without_tls"),
            None => Some(false),
        };
        let policy = HbaPolicy {
            network_trust: allow_network_trust.unwrap_or(false),
            host_without_tls: !tls_on || allow_host_without_tls.unwrap_or(false),
        };
        let hba = match m.take("hba") {
            Some(n) => self.hba(n, policy),
            None => Some(Vec::new()),
        };
        let package_version =
            match m.take("package_version") {
                Some(n) => Some(decode::text(self.d, n, "postgres.package_version").filter(
                    |v| match checks::package_version(v, version) {
                        Ok(()) => true,
                        Err(why) => {
                            self.d.error(n.pos, "postgres.package_version", why);
                            false
                        }
                    },
                )?),
                None => None,
            };
        m.finish(self.d);
        Some(Postgres {
            version: 15,
            port: port?,
            debian_cluster: debian_cluster?,
            data_dir: data_dir?,
            conf_dir: conf_dir?,
            listen_addresses: listen_addresses?,
            superuser_password,
            parameters: parameters?,
            hba: hba?,
            package_version,
            allow_network_trust: allow_network_trust?,
        })
    }

    fn abs_dir(&mut self, m: &mut MapReader, key: &'static str, default: String) -> Option<String> {
        let path = m.child(key);
        match m.take(key) {
            Some(n) => {
                let s = decode::string(self.d, n, &path)?;
                if !s.starts_with('/') || s.contains("..") {
                    self.d.error(
                        n.pos,
                        &path,
                        format!("`{path}` must be an absolute path without `..`, found `{s}`"),
                    );
                    return None;
                }
                Some(s.trim_end_matches('/').to_owned())
            }
            None => Some(default),
        }
    }

    fn parameters(
        &mut self,
        node: &Node,
        managed: FlavourManaged,
    ) -> Option<BTreeMap<String, String>> {
        let m = MapReader::new(self.d, node, "postgres.parameters")?;
        let mut out = BTreeMap::new();
        let mut seen = BTreeMap::new();
        let mut ok = true;
        for (key, value) in m.entries() {
            let path = format!("postgres.parameters.{}", key.name);
            if !checks::params::once(self.d, &mut seen, key, &path) {
                ok = false;
                continue;
            }
            let Some(text) = value.scalar_text() else {
                self.d.error(
                    value.pos,
                    &path,
                    format!(
                        "`{path}` must be a plain value, found {}",
                        value.value.kind()
                    ),
                );
                ok = false;
                continue;
            };
            // YAML true/false mean on/off to PostgreSQL.
            let text = match value.value {
                Value::Bool(true) => "on".to_owned(),
                Value::Bool(false) => "off".to_owned(),
                _ => text,
            };
            ok &= checks::params::parameter(self.d, key, value, &path, &text, managed);
            out.insert(key.name.to_ascii_lowercase(), text);
        }
        // Everything was read by hand above; no unknown-key pass for a free-form mapping.
        ok.then_some(out)
    }

    fn hba(&mut self, node: &Node, policy: HbaPolicy) -> Option<Vec<HbaRule>> {
        let items = decode::list(self.d, node, "postgres.hba")?;
        let mut rules = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let path = format!("postgres.hba[{i}]");
            match self.hba_rule(item, &path, policy) {
                Some(r) => rules.push((r, item.pos, path)),
                None => ok = false,
            }
        }
        ok &= checks::hba::shadowed(self.d, &rules);
        ok.then(|| rules.into_iter().map(|(r, _, _)| r).collect())
    }

    fn hba_rule(&mut self, node: &Node, path: &str, policy: HbaPolicy) -> Option<HbaRule> {
        let mut m = MapReader::new(self.d, node, path)?;
        let at = |n: Option<&Node>| n.map(|n| n.pos).unwrap_or(node.pos);
        let kind_node = m.require(self.d, "type");
        let kind = kind_node.and_then(|n| {
            decode::choice(self.d, n, &format!("{path}.type"), &checks::HBA_TYPES)
                .map(str::to_owned)
        });
        let database_node = m.require(self.d, "database");
        let database = self.hba_field(database_node, &m, "database", HbaField::Database);
        let user_node = m.require(self.d, "user");
        let user = self.hba_field(user_node, &m, "user", HbaField::User);
        let address_node = m.take("address");
        let address = self.hba_field(address_node, &m, "address", HbaField::Address);
        let method_node = m.require(self.d, "method");
        let method = method_node.and_then(|n| {
            decode::choice(self.d, n, &format!("{path}.method"), &checks::HBA_METHODS)
                .map(str::to_owned)
        });
        m.finish(self.d);
        let rule = HbaRule {
            kind: kind?,
            database: database?,
            user: user?,
            // An address that was refused is not an address left out.
            address: match address_node {
                Some(_) => Some(address?),
                None => None,
            },
            method: method?,
        };
        let positions = HbaPositions {
            kind: at(kind_node),
            database: at(database_node),
            user: at(user_node),
            address: at(address_node),
            method: at(method_node),
        };
        checks::hba::hba_rule(self.d, &rule, &positions, path, policy).then_some(rule)
    }

    fn hba_field(
        &mut self,
        node: Option<&Node>,
        m: &MapReader,
        key: &str,
        which: HbaField,
    ) -> Option<String> {
        node.and_then(|n| checks::hba::field(self.d, n, &m.child(key), which))
    }

    fn replication(&mut self, top: &mut MapReader) -> Option<Replication> {
        let node = top.require(self.d, "replication")?;
        let mut m = MapReader::new(self.d, node, "replication")?;
        let user = m.require(self.d, "user").and_then(|n| {
            let u = decode::string(self.d, n, "replication.user")?;
            if u == "postgres" {
                self.d.error_with_help(
                    n.pos,
                    "replication.user",
                    "the replication user is `postgres`, the superuser: pgha manages the replication role with NOSUPERUSER and would take its power away",
                    "name a role of its own, such as `replicator`",
                );
                return None;
            }
            checks::names::role(self.d, n, "replication.user", &u).then_some(u)
        });
        let password = m
            .require(self.d, "password")
            .and_then(|n| self.secret(n, "replication.password"));
        let slots = match m.take("slots") {
            Some(n) => decode::boolean(self.d, n, "replication.slots"),
            None => Some(true),
        };
        let max_slot_wal_keep_size = self.param_text(&mut m, "max_slot_wal_keep_size", "10GB");
        let max_wal_senders = self.count(&mut m, "max_wal_senders", 10);
        let max_replication_slots = self.count(&mut m, "max_replication_slots", 10);
        let (archive_mode, archive_command) = match m.take("archive") {
            Some(n) => self.archive(n),
            None => (Some("off".to_owned()), Some(String::new())),
        };
        m.finish(self.d);
        Some(Replication {
            user: user?,
            password: password?,
            slots: slots?,
            max_slot_wal_keep_size: max_slot_wal_keep_size?,
            max_wal_senders: max_wal_senders?,
            max_replication_slots: max_replication_slots?,
            archive_mode: archive_mode?,
            archive_command: archive_command?,
        })
    }

    /// A replication setting that is a server parameter of the same name: checked like one.
    fn param_text(
        &mut self,
        m: &mut MapReader,
        key: &'static str,
        default: &str,
    ) -> Option<String> {
        let path = m.child(key);
        let Some(n) = m.take(key) else {
            return Some(default.to_owned());
        };
        let text = decode::text(self.d, n, &path)?;
        let param = pg_params::lookup(key)?;
        match pg_params::check_value(param, &text) {
            Ok(()) => Some(text),
            Err(why) => {
                self.d.error(n.pos, &path, why);
                None
            }
        }
    }

    fn count(&mut self, m: &mut MapReader, key: &'static str, default: i64) -> Option<u32> {
        let path = m.child(key);
        match m.take(key) {
            Some(n) => {
                decode::integer(self.d, n, &path, 1, 262_143).and_then(|v| u32::try_from(v).ok())
            }
            None => u32::try_from(default).ok(),
        }
    }

    /// No `tls:`: the CA `pgha tls init` (or the first plan) made in `tls/` beside the
    /// inventory, with the default lifetimes; its errors point at the document.
    fn default_tls(&mut self, root: &Node) -> Option<Tls> {
        // Relative to the inventory, as if written in it; as JSON strings, which YAML reads
        // whatever they hold.
        let quoted = |name: &str| {
            serde_json::to_string(&Path::new(DEFAULT_CA_DIR).join(name).to_string_lossy())
                .unwrap_or_default()
        };
        let text = format!(
            "ca_cert: {}\nca_key: {{file: {}}}\n",
            quoted("ca.crt"),
            quoted("ca.key")
        );
        let mut node = node::parse(&text).ok()?;
        // Messages about it name the top of the inventory: the section is implied.
        relocate(&mut node, root.pos);
        self.tls(&node)
    }

    /// The CA a cluster without `tls:` will have once the first plan makes it in `dir`: until
    /// then a stand-in, so that what is checked or rendered is the cluster with TLS.
    fn stand_in_tls(&mut self, dir: &Path) -> Option<Tls> {
        Some(Tls {
            dir: String::new(),
            ca_cert: crate::tls::STAND_IN_CA.to_owned(),
            ca_cert_file: dir.join("ca.crt"),
            ca_key: Some(SecretRef::File(dir.join("ca.key"))),
            validity_days: DEFAULT_VALIDITY_DAYS,
            renew_before_days: DEFAULT_RENEW_BEFORE_DAYS,
            extra_names: Vec::new(),
            provided: BTreeMap::new(),
        })
    }

    /// `tls:`: the cluster CA's certificate (a file, read now and checked) and key (a secret
    /// reference), and the host certificates' lifetime.
    fn tls(&mut self, node: &Node) -> Option<Tls> {
        let mut m = MapReader::new(self.d, node, "tls")?;
        let ca_cert = m.require(self.d, "ca_cert").and_then(|n| {
            let rel = decode::string(self.d, n, "tls.ca_cert")?;
            let path = self.base.join(&rel);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    self.d.error_with_help(
                        n.pos,
                        "tls.ca_cert",
                        format!("cannot read the CA certificate {}: {e}", path.display()),
                        "`pgha tls init` makes a CA for the cluster beside the inventory",
                    );
                    return None;
                }
            };
            match crate::tls::inspect_ca(&text) {
                Ok(info) if info.days_left() < 1 => {
                    self.d.error(
                        n.pos,
                        "tls.ca_cert",
                        format!("the CA certificate {} has expired", path.display()),
                    );
                    None
                }
                Ok(_) => Some((text, path)),
                Err(e) => {
                    self.d
                        .error(n.pos, "tls.ca_cert", format!("{}: {e}", path.display()));
                    None
                }
            }
        });
        let ca_key_node = m.take("ca_key");
        let ca_key = ca_key_node.map(|n| self.secret(n, "tls.ca_key"));
        // Certificates issued elsewhere, one pair per host: `<host>.crt` and `<host>.key`.
        if let Some(n) = m.take("certificates") {
            if let Some(rel) = decode::string(self.d, n, "tls.certificates") {
                self.tls_certificates = Some((self.base.join(rel), n.pos));
            }
        } else if ca_key_node.is_none() {
            self.d.error(
                node.pos,
                "tls.ca_key",
                "`tls:` needs the CA's key (`ca_key`, for pgha to issue each host's certificate) or `certificates` (a folder with each host's certificate and key, issued elsewhere)",
            );
        }
        let validity_days = match m.take("validity_days") {
            Some(n) => decode::integer(self.d, n, "tls.validity_days", 1, 3650),
            None => Some(DEFAULT_VALIDITY_DAYS),
        };
        let renew_before_days = match m.take("renew_before_days") {
            Some(n) => decode::integer(self.d, n, "tls.renew_before_days", 0, 3650),
            None => Some(DEFAULT_RENEW_BEFORE_DAYS),
        };
        // Names every certificate carries besides the host's own: a VIP, a DNS name for the
        // cluster. An IP address or a DNS name (letters, digits, `-`, `.`; `*.` in front).
        let mut extra_names = Vec::new();
        if let Some(n) = m.take("names") {
            for (i, name, item) in decode::string_items(self.d, n, "tls.names") {
                let dns = name
                    .strip_prefix("*.")
                    .unwrap_or(&name)
                    .split('.')
                    .all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    });
                if name.parse::<std::net::IpAddr>().is_err() && !dns {
                    self.d.error(
                        item.pos,
                        &format!("tls.names[{i}]"),
                        format!("`{name}` is neither an IP address nor a DNS name"),
                    );
                } else {
                    extra_names.push(name);
                }
            }
        }
        m.finish(self.d);
        let (validity_days, renew_before_days) = (validity_days?, renew_before_days?);
        if renew_before_days >= validity_days {
            self.d.error(
                node.pos,
                "tls.renew_before_days",
                format!("renewing {renew_before_days} days before expiry a certificate valid {validity_days} days would renew it on every apply"),
            );
            return None;
        }
        let (ca_cert, ca_cert_file) = ca_cert?;
        Some(Tls {
            dir: String::new(),
            ca_cert,
            ca_cert_file,
            ca_key: match ca_key {
                Some(k) => Some(k?),
                None => None,
            },
            validity_days,
            renew_before_days,
            extra_names,
            provided: BTreeMap::new(),
        })
    }

    /// `tls.certificates`: each host's certificate and key from the folder, checked against
    /// the CA (signed by it, the host's name and address among its names, not expired); a
    /// host without one needs the CA's key, so pgha can issue it.
    fn provided_certificates(&mut self, tls: &mut Tls, hosts: &[Host]) {
        let Some((dir, pos)) = self.tls_certificates.take() else {
            return;
        };
        for h in hosts {
            let (cert_path, key_path) = (
                dir.join(format!("{}.crt", h.name)),
                dir.join(format!("{}.key", h.name)),
            );
            let Ok(cert) = std::fs::read_to_string(&cert_path) else {
                if tls.ca_key.is_none() {
                    self.d.error(
                        pos,
                        "tls.certificates",
                        format!(
                            "no certificate for {} ({}), and no `tls.ca_key` to issue one",
                            h.name,
                            cert_path.display()
                        ),
                    );
                }
                continue;
            };
            let problem = match crate::tls::inspect(&cert, &tls.ca_cert) {
                Err(e) => Some(e.to_string()),
                Ok(info) if !info.signed_by_ca => Some(format!(
                    "it is not signed by the CA {}",
                    tls.ca_cert_file.display()
                )),
                Ok(info) if info.days_left() < 1 => Some("it has expired".to_owned()),
                Ok(info) => {
                    let covers = |name: &str| match name.parse::<std::net::IpAddr>() {
                        Ok(ip) => info.ips.contains(&ip),
                        Err(_) => info.dns.iter().any(|d| d == name),
                    };
                    let missing: Vec<&str> = [h.name.as_str(), h.address.as_str()]
                        .into_iter()
                        .filter(|n| !covers(n))
                        .collect();
                    (!missing.is_empty()).then(|| {
                        format!(
                            "its names lack {} (peers reach the host by them)",
                            missing.join(" and ")
                        )
                    })
                }
            };
            if let Some(problem) = problem {
                self.d.error(
                    pos,
                    "tls.certificates",
                    format!("{}: {problem}", cert_path.display()),
                );
                continue;
            }
            if !key_path.exists() {
                self.d.error(
                    pos,
                    "tls.certificates",
                    format!(
                        "{} has no key beside it ({})",
                        cert_path.display(),
                        key_path.display()
                    ),
                );
                continue;
            }
            tls.provided.insert(
                h.name.clone(),
                ProvidedCertificate {
                    cert,
                    key: SecretRef::File(key_path),
                },
            );
        }
    }

    fn archive(&mut self, node: &Node) -> (Option<String>, Option<String>) {
        let Some(mut m) = MapReader::new(self.d, node, "replication.archive") else {
            return (None, None);
        };
        let mode = match m.take("mode") {
            Some(n) => decode::choice(
                self.d,
                n,
                "replication.archive.mode",
                &["off", "on", "always"],
            )
            .map(str::to_owned),
            None => Some("off".to_owned()),
        };
        let command = match m.take("command") {
            Some(n) => decode::string(self.d, n, "replication.archive.command"),
            None => Some(String::new()),
        };
        if let (Some(mode), Some(command)) = (&mode, &command) {
            if mode != "off" && command.trim().is_empty() {
                self.d.error(m.pos(), "replication.archive.command", format!(
                    "archive mode `{mode}` needs `replication.archive.command`: without one WAL piles up in pg_wal"
                ));
            }
        }
        m.finish(self.d);
        (mode, command)
    }

    fn users(
        &mut self,
        top: &mut MapReader,
        replication_user: Option<&str>,
        names: &mut Vec<String>,
    ) -> Option<Vec<User>> {
        let Some(node) = top.take("users") else {
            return Some(Vec::new());
        };
        let items = decode::list(self.d, node, "users")?;
        let mut declared = Declared::new("user");
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let path = format!("users[{i}]");
            match self.user(item, &path, &mut declared, replication_user) {
                Some(u) => out.push(u),
                None => ok = false,
            }
        }
        names.extend(declared.names());
        ok.then_some(out)
    }

    fn user(
        &mut self,
        node: &Node,
        path: &str,
        declared: &mut Declared,
        replication_user: Option<&str>,
    ) -> Option<User> {
        let mut m = MapReader::new(self.d, node, path)?;
        let name = m.require(self.d, "name").and_then(|n| {
            let key = m.child("name");
            let s = decode::string(self.d, n, &key)?;
            if replication_user == Some(s.as_str()) {
                self.d.error(n.pos, &key, format!(
                    "user `{s}` is also the replication user: pgha manages that role from `replication:`"
                ));
                return None;
            }
            (checks::names::role(self.d, n, &key, &s) && declared.once(self.d, n, &key, &s))
                .then_some(s)
        });
        let password = m
            .take("password")
            .map(|n| self.secret(n, &m.child("password")));
        let mut flag = |m: &mut MapReader, key: &'static str, default: bool| match m.take(key) {
            Some(n) => decode::boolean(self.d, n, &m.child(key)),
            None => Some(default),
        };
        let login = flag(&mut m, "login", true);
        let superuser = flag(&mut m, "superuser", false);
        let createdb = flag(&mut m, "createdb", false);
        let createrole = flag(&mut m, "createrole", false);
        let connection_limit = match m.take("connection_limit") {
            Some(n) => decode::integer(self.d, n, &m.child("connection_limit"), -1, 100_000)
                .and_then(|v| i32::try_from(v).ok()),
            None => Some(-1),
        };
        m.finish(self.d);
        Some(User {
            name: name?,
            password: match password {
                Some(p) => Some(p?),
                None => None,
            },
            login: login?,
            superuser: superuser?,
            createdb: createdb?,
            createrole: createrole?,
            connection_limit: connection_limit?,
        })
    }

    fn databases(
        &mut self,
        top: &mut MapReader,
        roles: &[String],
        replication_user: Option<&str>,
    ) -> Option<Vec<Database>> {
        let Some(node) = top.take("databases") else {
            return Some(Vec::new());
        };
        let items = decode::list(self.d, node, "databases")?;
        let mut declared = Declared::new("database");
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let path = format!("databases[{i}]");
            match self.database(item, &path, &mut declared, roles, replication_user) {
                Some(db) => out.push(db),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn database(
        &mut self,
        item: &Node,
        path: &str,
        declared: &mut Declared,
        roles: &[String],
        replication_user: Option<&str>,
    ) -> Option<Database> {
        let mut m = MapReader::new(self.d, item, path)?;
        let name_node = m.require(self.d, "name");
        let name = name_node.and_then(|n| {
            let key = m.child("name");
            let s = decode::string(self.d, n, &key)?;
            (checks::name(self.d, n, &key, &s, checks::NameKind::Role)
                && declared.once(self.d, n, &key, &s))
            .then_some(s)
        });
        let owner = match m.take("owner") {
            Some(n) => decode::string(self.d, n, &m.child("owner"))
                .filter(|o| roles::owner(self.d, n, &m.child("owner"), o, roles, replication_user)),
            None => Some("postgres".to_owned()),
        };
        let extensions = match m.take("extensions") {
            Some(n) => self.extensions(n, &m.child("extensions")),
            None => Some(Vec::new()),
        };
        let key = m.child("name");
        m.finish(self.d);
        let (name, owner) = (name?, owner?);
        match name_node {
            Some(n) if !roles::database(self.d, n, &key, &name, &owner) => return None,
            _ => {}
        }
        Some(Database {
            name,
            owner,
            extensions: extensions?,
        })
    }

    /// A database's extensions: each named once, as CREATE EXTENSION takes it.
    fn extensions(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        let mut declared = Declared::new("extension");
        let mut ok = true;
        let mut out = Vec::new();
        for (i, name, n) in decode::string_items(self.d, node, path) {
            let at = format!("{path}[{i}]");
            ok &= roles::extension(self.d, n, &at, &name) && declared.once(self.d, n, &at, &name);
            out.push(name);
        }
        ok.then_some(out)
    }

    fn ssh(&mut self, node: &Node, path: &str, defaults: &Ssh) -> Option<Ssh> {
        let mut m = MapReader::new(self.d, node, path)?;
        let user = match m.take("user") {
            Some(n) => decode::string(self.d, n, &m.child("user")).filter(|u| {
                let ok = !u.trim().is_empty() && !u.contains(char::is_whitespace);
                if !ok {
                    self.d.error(
                        n.pos,
                        &m.child("user"),
                        format!(
                            "`{}` must name a login (one word, not empty)",
                            m.child("user")
                        ),
                    );
                }
                ok
            }),
            None => Some(defaults.user.clone()),
        };
        let port = match m.take("port") {
            Some(n) => decode::port(self.d, n, &m.child("port")),
            None => Some(defaults.port),
        };
        let identity_file = match m.take("identity_file") {
            Some(n) => {
                decode::string(self.d, n, &m.child("identity_file")).map(|s| Some(self.path(&s)))
            }
            None => Some(defaults.identity_file.clone()),
        };
        let host_key_policy = match m.take("host_key_policy") {
            Some(n) => decode::choice(
                self.d,
                n,
                &m.child("host_key_policy"),
                &["strict", "accept-new"],
            )
            .map(|c| {
                if c == "strict" {
                    HostKeyPolicy::Strict
                } else {
                    HostKeyPolicy::AcceptNew
                }
            }),
            None => Some(defaults.host_key_policy),
        };
        let known_hosts = match m.take("known_hosts") {
            Some(n) => {
                decode::string(self.d, n, &m.child("known_hosts")).map(|s| Some(self.path(&s)))
            }
            None => Some(defaults.known_hosts.clone()),
        };
        let connect_timeout = match m.take("connect_timeout") {
            Some(n) => decode::integer(self.d, n, &m.child("connect_timeout"), 1, 600)
                .and_then(|v| u32::try_from(v).ok()),
            None => Some(defaults.connect_timeout),
        };
        m.finish(self.d);
        Some(Ssh {
            user: user?,
            port: port?,
            identity_file: identity_file?,
            host_key_policy: host_key_policy?,
            known_hosts: known_hosts?,
            connect_timeout: connect_timeout?,
        })
    }

    fn path(&self, s: &str) -> PathBuf {
        decode::file_path(&self.base, s)
    }

    pub(super) fn secret(&mut self, node: &Node, path: &str) -> Option<SecretRef> {
        decode::secret_ref(self.d, node, path, &self.base)
    }

    fn hosts<'n>(
        &mut self,
        node: &'n Node,
        ssh: &Ssh,
        flavour: Option<&'static Entry>,
        flavour_entries: &mut Vec<(String, String, &'n Node, String)>,
    ) -> Option<Vec<Host>> {
        let items = decode::list(self.d, node, "hosts")?;
        if items.is_empty() {
            self.d.error(
                node.pos,
                "hosts",
                "`hosts` is empty: a cluster needs at least a primary",
            );
            return None;
        }
        let mut hosts = Vec::new();
        let mut positions = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.host(item, &format!("hosts[{i}]"), ssh, flavour, flavour_entries) {
                Some(h) => {
                    hosts.push(h.0);
                    positions.push(h.1);
                }
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        let ok = checks::topology(self.d, node, &mut hosts, &positions);
        self.role_at = hosts
            .iter()
            .zip(&positions)
            .map(|(h, p)| (h.name.clone(), (p.role, format!("{}.role", p.path))))
            .collect();
        ok.then_some(hosts)
    }

    /// `decommission:`: hosts that left `hosts:` (name, address, optional ssh and
    /// `wipe_data`). A name or machine still in `hosts:` is refused: a host cannot both stay
    /// and leave.
    fn decommission(&mut self, node: &Node, ssh: &Ssh, hosts: &[Host]) -> Option<Vec<Departing>> {
        let items = decode::list(self.d, node, "decommission")?;
        let mut out: Vec<Departing> = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let path = format!("decommission[{i}]");
            let Some(mut m) = MapReader::new(self.d, item, &path) else {
                ok = false;
                continue;
            };
            let name = m.require(self.d, "name").and_then(|n| {
                let s = decode::string(self.d, n, &m.child("name"))?;
                checks::name(self.d, n, &m.child("name"), &s, checks::NameKind::Host)
                    .then_some((s, n.pos))
            });
            let address = m.require(self.d, "address").and_then(|n| {
                let s = decode::string(self.d, n, &m.child("address"))?;
                checks::address(self.d, n, &m.child("address"), &s).then_some((s, n.pos))
            });
            let host_ssh = match m.take("ssh") {
                Some(n) => self.ssh(n, &m.child("ssh"), ssh),
                None => Some(ssh.clone()),
            };
            let wipe_data = match m.take("wipe_data") {
                Some(n) => decode::boolean(self.d, n, &m.child("wipe_data")),
                None => Some(false),
            };
            m.finish(self.d);
            let (
                Some((name, name_at)),
                Some((address, address_at)),
                Some(host_ssh),
                Some(wipe_data),
            ) = (name, address, host_ssh, wipe_data)
            else {
                ok = false;
                continue;
            };
            if hosts.iter().any(|h| h.name == name) || out.iter().any(|d| d.name == name) {
                self.d.error_with_help(
                    name_at,
                    &format!("{path}.name"),
                    format!("`{name}` is listed under `hosts:` or twice under `decommission:`"),
                    "a host that stays is in `hosts:`; one that leaves is only under `decommission:`",
                );
                ok = false;
                continue;
            }
            let machine = same_machine(&address);
            if let Some(h) = hosts.iter().find(|h| same_machine(&h.address) == machine) {
                self.d.error_with_help(
                    address_at,
                    &format!("{path}.address"),
                    format!(
                        "{address} is the address of host `{}`, which stays in the cluster",
                        h.name
                    ),
                    "stopping and wiping that machine would take a member of the cluster with it",
                );
                ok = false;
                continue;
            }
            out.push(Departing {
                name,
                address,
                ssh: host_ssh,
                wipe_data,
            });
        }
        ok.then_some(out)
    }

    /// A host with a component's role needs that component, with settings that take it.
    /// A component whose section has errors of its own says nothing more here.
    fn component_roles(
        &mut self,
        hosts: &[Host],
        components: &[Arc<dyn crate::components::Component>],
        broken: &[&str],
    ) {
        for h in hosts {
            let Role::Member(m) = h.role else { continue };
            let Some(entry) = crate::components::COMPONENTS
                .iter()
                .find(|e| e.roles.iter().any(|r| r.name == m.name))
            else {
                continue;
            };
            let loaded = components.iter().find(|c| c.name() == entry.name);
            let taken = loaded.is_some_and(|c| c.roles().iter().any(|r| r.name == m.name));
            if taken || broken.contains(&entry.name) {
                continue;
            }
            let Some((pos, path)) = self.role_at.get(&h.name).cloned() else {
                continue;
            };
            self.d.error_with_help(
                pos,
                &path,
                format!(
                    "host `{}` has `role: {}`, a role of the {} component that the inventory's settings do not take",
                    h.name, m.name, entry.name
                ),
                entry.roles_need,
            );
        }
    }

    fn host<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        ssh: &Ssh,
        flavour: Option<&'static Entry>,
        flavour_entries: &mut Vec<(String, String, &'n Node, String)>,
    ) -> Option<(Host, checks::HostPositions)> {
        let mut m = MapReader::new(self.d, node, path)?;
        let name_node = m.require(self.d, "name");
        let name = name_node.and_then(|n| {
            let s = decode::string(self.d, n, &m.child("name"))?;
            checks::name(self.d, n, &m.child("name"), &s, checks::NameKind::Host).then_some(s)
        });
        let address_node = m.require(self.d, "address");
        let address = address_node.and_then(|n| {
            let s = decode::string(self.d, n, &m.child("address"))?;
            checks::address(self.d, n, &m.child("address"), &s).then_some(s)
        });
        let role_node = m.require(self.d, "role");
        // Primary and standby, and the roles the flavour adds (all of them while the flavour
        // is unknown, so a misspelt flavour does not make every role an error too).
        let extra: Vec<_> = match flavour {
            Some(e) => e.roles.to_vec(),
            None => flavours::FLAVOURS
                .iter()
                .flat_map(|e| e.roles.iter().copied())
                .collect(),
        };
        // And the components' roles: whether the component's settings take them is checked
        // once they are read (`component_roles`).
        let extra: Vec<_> = extra
            .into_iter()
            .chain(
                crate::components::COMPONENTS
                    .iter()
                    .flat_map(|c| c.roles.iter().copied()),
            )
            .collect();
        let names: Vec<&str> = ["primary", "standby"]
            .into_iter()
            .chain(extra.iter().map(|r| r.name))
            .collect();
        let role = role_node.and_then(|n| {
            if let (Some(e), Value::Str(r)) = (flavour, &n.value) {
                let other = flavours::FLAVOURS
                    .iter()
                    .find(|o| o.name != e.name && o.roles.iter().any(|x| x.name == r));
                if let Some(other) = other {
                    self.d.error_with_help(
                        n.pos,
                        &m.child("role"),
                        format!(
                            "role `{r}` belongs to flavour {}, and this cluster's flavour is {}",
                            other.name, e.name
                        ),
                        format!(
                            "a {} cluster's hosts are one of: {}",
                            e.name,
                            names.join(", ")
                        ),
                    );
                    return None;
                }
            }
            decode::choice(self.d, n, &m.child("role"), &names).and_then(|r| match r {
                "primary" => Some(Role::Primary),
                "standby" => Some(Role::Standby),
                other => extra
                    .iter()
                    .copied()
                    .find(|x| x.name == other)
                    .map(Role::Member),
            })
        });
        let upstream_node = m.take("upstream");
        let upstream = match upstream_node {
            Some(n) => decode::string(self.d, n, &m.child("upstream")).map(Some),
            None => Some(None),
        };
        let host_ssh = match m.take("ssh") {
            Some(n) => self.ssh(n, &m.child("ssh"), ssh),
            None => Some(ssh.clone()),
        };
        let allow_wipe = match m.take("allow_wipe") {
            Some(n) => decode::boolean(self.d, n, &m.child("allow_wipe")),
            None => Some(false),
        };
        // The flavour's host keys are read by the flavour.
        let claimed: Vec<&str> = match flavour {
            Some(e) => e.host_keys.to_vec(),
            None => flavours::FLAVOURS
                .iter()
                .flat_map(|e| e.host_keys.iter().copied())
                .collect(),
        };
        for key in claimed {
            if let (Some(n), Some(host)) = (m.take(key), name.as_ref()) {
                flavour_entries.push((host.clone(), key.to_owned(), n, m.child(key)));
            }
        }
        m.finish(self.d);
        let positions = checks::HostPositions {
            item: node.pos,
            name: name_node.map(|n| n.pos).unwrap_or(node.pos),
            address: address_node.map(|n| n.pos).unwrap_or(node.pos),
            role: role_node.map(|n| n.pos).unwrap_or(node.pos),
            upstream: upstream_node.map(|n| n.pos),
            path: path.to_owned(),
        };
        Some((
            Host {
                name: name?,
                address: address?,
                role: role?,
                upstream: upstream?,
                ssh: host_ssh?,
                allow_wipe: allow_wipe?,
            },
            positions,
        ))
    }
}

fn default_ssh() -> Ssh {
    Ssh {
        user: "root".to_owned(),
        port: 22,
        identity_file: None,
        host_key_policy: HostKeyPolicy::Strict,
        known_hosts: None,
        connect_timeout: 10,
    }
}
