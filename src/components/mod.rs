//! Components: what any flavour can have besides its own machinery (extra packages now;
//! client routing, backups). A component is one folder here: its
//! inventory section (the top-level key named after it), its settings, template variables
//! under its name, playbook fragments for the hooks the flavours' playbooks offer, its own
//! templates and step kinds, probes, verify checks and status lines. `COMPONENTS` registers
//! each in a line; a component is active when the inventory has its section.
//!
//! Hooks: a flavour's playbook says where components' steps go with `- include:
//! components/HOOK` (`packages`: with the server's packages; `running`: once PostgreSQL runs
//! and the roles exist). Each active component's fragment for that hook stands there, in the
//! order of `COMPONENTS`.
//!
//! Roles: a component may add host roles of its own (`Entry::roles`, like a flavour's), taken
//! only when its loaded settings accept them (`Component::roles`). A host with such a role
//! runs the component's own playbook (`Component::host_playbook`), never the flavour's.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::diag::Diagnostics;
use crate::facts::gather::Probe;
use crate::facts::HostFacts;
use crate::flavours::{BoxFuture, CheckResult, ClusterView, Flavour, FlavourSecret};
use crate::model::{Cluster, Hardware, HbaRule, Host, MemberRole, Role};
use crate::steps::registry::Kind;
use crate::yaml::node::Node;

pub mod backups;
pub mod extensions;
pub mod package_sources;
pub mod packages;
pub mod route;
pub mod routing;
pub mod timing;

/// Every component: one line each.
/// Within a hook their fragments stand in this order: the package sources' and the
/// extensions' packages before the extra packages (a DBA's list may name a package an
/// extension's source provides).
pub static COMPONENTS: &[Entry] = &[
    package_sources::ENTRY,
    extensions::ENTRY,
    packages::ENTRY,
    routing::ENTRY,
    backups::ENTRY,
];

/// What the inventory loader needs of a component.
pub struct Entry {
    /// Its section's key in the inventory.
    pub name: &'static str,
    /// Step kinds of its own.
    pub kinds: &'static [Kind],
    /// Host roles it adds (`role: proxy`), besides primary, standby and the flavour's.
    pub roles: &'static [MemberRole],
    /// What a host with one of those roles needs of the inventory, for the error when it is
    /// missing.
    pub roles_need: &'static str,
    pub load: fn(SectionInput<'_>) -> Option<Arc<dyn Component>>,
}

/// What a component's section reader gets.
pub struct SectionInput<'a> {
    pub d: &'a mut Diagnostics,
    pub section: &'a Node,
    pub hosts: &'a [Host],
    /// The inventory's folder (relative paths are read from there).
    pub base: &'a Path,
    /// The cluster's flavour (what it offers a component: health checks, callbacks, ports).
    pub flavour: &'a Arc<dyn Flavour>,
    pub postgres_port: u16,
    /// `postgres.listen_addresses` as the inventory gives it.
    pub listen_addresses: &'a str,
    /// PostgreSQL's data and configuration folders.
    pub data_dir: &'a str,
    pub conf_dir: &'a str,
    /// `cluster.name` (empty when it has errors of its own).
    pub cluster_name: &'a str,
    /// `replication.archive.mode` as the inventory gives it.
    pub archive_mode: &'a str,
    /// PostgreSQL's major version (package names carry it).
    pub pg_version: u32,
    /// The databases `databases:` declares (None when that section has errors).
    pub databases: Option<&'a [String]>,
    /// `postgres.parameters` as the user wrote them (names lower-cased).
    pub parameters: &'a BTreeMap<String, String>,
}

/// What a component adds to PostgreSQL's own settings, merged into the cluster's before the
/// playbook is expanded (`shaped`), so that every flavour writes them its own way (Patroni
/// through the DCS).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PostgresAdditions {
    /// Libraries for `shared_preload_libraries`, in order (after the user's own).
    pub preload: Vec<String>,
    /// Server parameters, in order; the user's own `postgres.parameters` win over these.
    pub parameters: Vec<(String, String)>,
    /// `(database, extension)` to create.
    pub extensions: Vec<(String, String)>,
}

/// Everything the engine asks of a component.
pub trait Component: fmt::Debug + Send + Sync {
    fn name(&self) -> &'static str;
    /// Its playbook fragment for each hook it fills: `(hook, YAML with steps and handlers)`.
    fn fragments(&self) -> &'static [(&'static str, &'static str)];
    /// Templates of its own, `(name, text)`.
    fn templates(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    /// The secrets its settings reference.
    fn secrets(&self) -> Vec<FlavourSecret<'_>> {
        Vec::new()
    }
    /// What templates and playbooks see under its name: the same on every host, built once
    /// for all of them.
    fn vars(&self, cluster: &Cluster) -> Value;
    /// Entries under its name that differ from host to host, over `vars` (keep them few: they
    /// are built for every host).
    fn vars_of_host(&self, _cluster: &Cluster, _host: &Host) -> serde_json::Map<String, Value> {
        serde_json::Map::new()
    }
    /// Its questions to one host, asked in the facts round trip.
    fn probes(&self, _cluster: &Cluster, _host: &Host) -> Vec<Probe> {
        Vec::new()
    }
    /// pg_hba rules of its own, after pgha's local rules (connections of its own programs).
    fn hba(&self) -> Vec<HbaRule> {
        Vec::new()
    }
    /// Names and addresses every host's certificate must carry for the component's sake
    /// (an address clients dial that is not the host's own).
    fn certificate_names(&self, _hosts: &[Host]) -> Vec<String> {
        Vec::new()
    }
    /// Checks on facts alone, polled with the role and stream checks until they pass.
    fn polled_checks(&self, _view: &ClusterView<'_>) -> Vec<CheckResult> {
        Vec::new()
    }
    /// What the plan should say about what the component renders (`hardware`: the data
    /// hosts' smallest, when read).
    fn plan_notes(&self, _hardware: Option<Hardware>) -> Vec<String> {
        Vec::new()
    }
    /// Prefixes of the dotted parameters that belong to what it declares (`cron` for
    /// pg_cron): `postgres.parameters` may set those.
    fn parameter_prefixes(&self) -> Vec<String> {
        Vec::new()
    }
    /// apt sources it declares: written before any component's packages.
    fn apt_sources(&self) -> Vec<package_sources::AptSource> {
        Vec::new()
    }
    /// What it adds to PostgreSQL's settings; `hardware` (the data hosts' smallest) is None
    /// offline, and what is derived from it is then left out.
    fn postgres_additions(&self, _hardware: Option<Hardware>) -> PostgresAdditions {
        PostgresAdditions::default()
    }
    /// The roles of `Entry::roles` its settings accept: a host with another of them is an
    /// error at its role.
    fn roles(&self) -> &'static [MemberRole] {
        &[]
    }
    /// The playbook a host with one of its roles runs instead of the flavour's: `(name, YAML)`,
    /// the name under which `--playbooks DIR` may override it.
    fn host_playbook(&self, _role: Role) -> Option<(&'static str, &'static str)> {
        None
    }
    /// The state `status` shows for a host with one of its roles (None: not one of them).
    fn host_state(&self, _host: &Host, _facts: Option<&HostFacts>) -> Option<String> {
        None
    }
    /// The archive command the component needs PostgreSQL to run (`archive_mode = on`): the
    /// loader puts it in the cluster's replication settings, so it reaches the server the way
    /// every parameter does (a file and a restart, or the DCS under Patroni).
    fn archive_command(&self) -> Option<String> {
        None
    }
    /// Itself, for the commands that read one component's settings.
    fn as_any(&self) -> &dyn std::any::Any;
    /// Its verify checks, run once the polled ones pass.
    fn checks<'a>(&'a self, _view: &'a ClusterView<'a>) -> BoxFuture<'a, Vec<CheckResult>> {
        Box::pin(async { Vec::new() })
    }
    /// The systemd units it runs on a data host, stopped for good (in this order, before the
    /// flavour's) when the host leaves the cluster under `decommission:`.
    fn units(&self) -> Vec<String> {
        Vec::new()
    }
    /// Lines under the status table.
    fn status_lines(
        &self,
        _cluster: &Cluster,
        _facts: &BTreeMap<String, HostFacts>,
    ) -> Vec<String> {
        Vec::new()
    }
}

/// The name under which a component's fragment for `hook` is included.
pub fn fragment_name(component: &str, hook: &str) -> String {
    format!("component/{component}/{hook}.yml")
}

/// The shared fragment that writes every component's apt sources.
pub const PACKAGE_SOURCES_FRAGMENT: &str = "common/package-sources.yml";

/// The playbook text a `components/HOOK` include stands for: an include of each active
/// component's fragment for that hook. The `packages` hook starts with the apt sources, when
/// any component declares one: a package is installed after the source that provides it.
pub fn hook_text(components: &[Arc<dyn Component>], hook: &str) -> String {
    let sources = hook == "packages" && components.iter().any(|c| !c.apt_sources().is_empty());
    let includes: Vec<String> = sources
        .then(|| format!("  - include: {PACKAGE_SOURCES_FRAGMENT}\n"))
        .into_iter()
        .chain(
            components
                .iter()
                .filter(|c| c.fragments().iter().any(|(h, _)| *h == hook))
                .map(|c| format!("  - include: {}\n", fragment_name(c.name(), hook))),
        )
        .collect();
    if includes.is_empty() {
        "steps: []\n".to_owned()
    } else {
        format!("steps:\n{}", includes.concat())
    }
}

/// A component's fragment by its include name, if it is one.
pub fn fragment(components: &[Arc<dyn Component>], name: &str) -> Option<&'static str> {
    components.iter().find_map(|c| {
        c.fragments()
            .iter()
            .find(|(hook, _)| fragment_name(c.name(), hook) == name)
            .map(|(_, text)| *text)
    })
}

/// Every component's apt sources, in the order of `COMPONENTS`.
pub fn apt_sources(components: &[Arc<dyn Component>]) -> Vec<package_sources::AptSource> {
    components.iter().flat_map(|c| c.apt_sources()).collect()
}

/// The cluster with what the components add to PostgreSQL's settings (None: they add
/// nothing). `shared_preload_libraries` merges in `model::preload`'s order: the user's own,
/// then the components' (each extension in the order declared), then, when the playbook
/// variables are built, the flavour's. A parameter the user set keeps the user's value.
pub fn shaped(
    cluster: &Cluster,
    components: &[Arc<dyn Component>],
    hardware: Option<Hardware>,
) -> Option<Cluster> {
    let additions: Vec<PostgresAdditions> = components
        .iter()
        .map(|c| c.postgres_additions(hardware))
        .filter(|a| *a != PostgresAdditions::default())
        .collect();
    if additions.is_empty() {
        return None;
    }
    let mut shaped = cluster.clone();
    let user = &cluster.postgres.parameters;
    let params = &mut shaped.postgres.parameters;
    let preload: Vec<String> = additions.iter().flat_map(|a| a.preload.clone()).collect();
    if !preload.is_empty() {
        let merged = crate::model::preload::append(
            user.get("shared_preload_libraries").map(String::as_str),
            &preload,
        );
        params.insert("shared_preload_libraries".to_owned(), merged);
    }
    for (name, value) in additions.iter().flat_map(|a| &a.parameters) {
        if !user.contains_key(name) {
            params.insert(name.clone(), value.clone());
        }
    }
    for (database, extension) in additions.iter().flat_map(|a| &a.extensions) {
        if let Some(db) = shaped.databases.iter_mut().find(|d| d.name == *database) {
            if !db.extensions.contains(extension) {
                db.extensions.push(extension.clone());
            }
        }
    }
    Some(shaped)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_hook_no_component_fills_is_empty() {
        assert_eq!(super::hook_text(&[], "running"), "steps: []\n");
    }
}
