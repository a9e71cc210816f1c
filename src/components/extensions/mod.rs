//! Extensions (`extensions:` in the inventory): per extension, the databases it is created in
//! (on the primary, `CREATE EXTENSION IF NOT EXISTS`, checked against the facts first), the
//! packages that carry it (installed with the server's packages, after the package sources),
//! the library it preloads and its own parameters; and presets (TimescaleDB) that add their
//! package source, pinned packages and tuning computed from the hosts' hardware.
//!
//! Nothing here writes PostgreSQL's configuration: what an extension needs is added to the
//! cluster's settings (`Component::postgres_additions`, merged by `components::shaped`), so
//! each flavour writes it its own way (Patroni through the DCS) and restarts for it its own
//! way (standbys first). `shared_preload_libraries` is merged in `model::preload`'s order:
//! the user's own, then the extensions' in the order declared here, then the flavour's.

pub mod section;
pub mod timescaledb;
pub mod verify;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::components::package_sources::AptSource;
use crate::components::{Component, Entry, PostgresAdditions, SectionInput};
use crate::model::{preload, Cluster, Hardware};

pub use section::Extension;

pub const ENTRY: Entry = Entry {
    name: "extensions",
    kinds: &[],
    roles: &[],
    roles_need: "",
    load,
};

fn load(input: SectionInput<'_>) -> Option<Arc<dyn Component>> {
    let cx = section::Context {
        base: input.base,
        pg_version: input.pg_version,
        databases: input.databases,
        parameters: input.parameters,
    };
    let list = section::read(input.d, input.section, &cx)?;
    let libraries: Vec<String> = list.iter().filter_map(|e| e.preload.clone()).collect();
    // The value the servers will run with, the flavour's library included: for the plan.
    let mut parameters = BTreeMap::new();
    let user = input.parameters.get("shared_preload_libraries");
    parameters.insert(
        "shared_preload_libraries".to_owned(),
        preload::append(user.map(String::as_str), &libraries),
    );
    input.flavour.parameters(&mut parameters);
    let connections = input
        .parameters
        .get("max_connections")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    Some(Arc::new(Extensions {
        list,
        preload_value: parameters
            .remove("shared_preload_libraries")
            .unwrap_or_default(),
        user_parameters: input.parameters.keys().cloned().collect(),
        connections,
    }))
}

#[derive(Debug, Clone)]
pub struct Extensions {
    pub list: Vec<Extension>,
    /// `shared_preload_libraries` as the servers will have it (user's, extensions', flavour's).
    pub preload_value: String,
    /// The names of `postgres.parameters`: those win over a preset's tuning.
    user_parameters: Vec<String>,
    /// The connections the server allows (work_mem is shared among them).
    connections: u64,
}

impl Extensions {
    /// Every package, each once, in the order declared.
    pub fn packages(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in self.list.iter().flat_map(|e| &e.packages) {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }

    /// A preset's tuning for this hardware, the values the user set left out.
    fn tuning(&self, e: &Extension, hardware: Hardware) -> Vec<(String, String)> {
        timescaledb::tune(hardware, self.connections)
            .into_iter()
            .filter(|(k, _)| !self.user_parameters.contains(k))
            .filter(|(k, _)| !e.parameters.iter().any(|(p, _)| p == k))
            .collect()
    }
}

impl Component for Extensions {
    fn name(&self) -> &'static str {
        "extensions"
    }

    fn fragments(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "packages",
            include_str!("../../../playbooks/components/extensions.yml"),
        )]
    }

    fn vars(&self, _cluster: &Cluster) -> Value {
        json!({
            "packages": self.packages(),
            "preload": self.list.iter().filter_map(|e| e.preload.clone()).collect::<Vec<_>>(),
            "created": self.list.iter().map(|e| json!({"name": e.name, "databases": e.databases})).collect::<Vec<_>>(),
        })
    }

    fn polled_checks(
        &self,
        view: &crate::flavours::ClusterView<'_>,
    ) -> Vec<crate::flavours::CheckResult> {
        verify::polled(self, view.cluster, view.topology, view.facts)
    }

    fn parameter_prefixes(&self) -> Vec<String> {
        self.list
            .iter()
            .flat_map(|e| e.prefixes(e.prefix.as_deref()))
            .collect()
    }

    fn apt_sources(&self) -> Vec<AptSource> {
        self.list.iter().filter_map(|e| e.source.clone()).collect()
    }

    fn postgres_additions(&self, hardware: Option<Hardware>) -> PostgresAdditions {
        let mut parameters = Vec::new();
        for e in &self.list {
            if let (true, Some(hw)) = (e.tune, hardware) {
                parameters.extend(self.tuning(e, hw));
            }
            parameters.extend(e.parameters.iter().cloned());
        }
        PostgresAdditions {
            preload: self.list.iter().filter_map(|e| e.preload.clone()).collect(),
            parameters,
            extensions: self
                .list
                .iter()
                .flat_map(|e| e.databases.iter().map(|db| (db.clone(), e.name.clone())))
                .collect(),
        }
    }

    fn plan_notes(&self, hardware: Option<Hardware>) -> Vec<String> {
        let mut notes = Vec::new();
        if self.list.iter().any(|e| e.preload.is_some()) {
            notes.push(format!(
                "extensions: shared_preload_libraries = '{}' (the user's own, then the extensions' in the order declared, then the flavour's); a change to it needs a restart, made standbys first and the primary last",
                self.preload_value
            ));
        }
        for e in self.list.iter().filter(|e| e.tune) {
            match hardware {
                Some(hw) => {
                    let values: Vec<String> = self
                        .tuning(e, hw)
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    notes.push(format!(
                        "extensions: {} tuning for {} of memory and {} CPUs (the smallest data host; postgres.parameters win): {}",
                        e.name,
                        timescaledb::pg_bytes(hw.memory),
                        hw.cpus,
                        values.join(", ")
                    ));
                }
                None => notes.push(format!(
                    "extensions: {} tuning is computed from the hosts' memory and CPUs once they are read",
                    e.name
                )),
            }
        }
        for s in self.apt_sources() {
            let pins: Vec<String> = s.pin.iter().map(|(p, v)| format!("{p} {v}")).collect();
            if !pins.is_empty() {
                notes.push(format!(
                    "extensions: packages pinned from source {}: {}",
                    s.name,
                    pins.join(", ")
                ));
            }
        }
        notes
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
