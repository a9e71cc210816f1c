//! Proofs from the facts that the extensions are in place: every running server has their
//! libraries loaded (`shared_preload_libraries` as it runs, not as written), and the primary
//! has each extension in each database named.

use std::collections::BTreeMap;

use crate::components::extensions::Extensions;
use crate::facts::HostFacts;
use crate::flavours::CheckResult;
use crate::model::{preload, Cluster, Topology};

pub fn polled(
    ext: &Extensions,
    cluster: &Cluster,
    topology: &Topology,
    facts: &BTreeMap<String, HostFacts>,
) -> Vec<CheckResult> {
    let libraries: Vec<&String> = ext.list.iter().filter_map(|e| e.preload.as_ref()).collect();
    let mut out = Vec::new();
    for host in cluster.hosts.iter().filter(|h| h.role.holds_data()) {
        let Some(pg) = facts
            .get(&host.name)
            .and_then(|f| f.postgres.as_ref())
            .filter(|pg| pg.running)
        else {
            continue;
        };
        if !libraries.is_empty() {
            let running = pg
                .settings
                .get("shared_preload_libraries")
                .map(|s| preload::parse(&s.value))
                .unwrap_or_default();
            let missing: Vec<&str> = libraries
                .iter()
                .filter(|l| !running.contains(l))
                .map(|l| l.as_str())
                .collect();
            out.push(CheckResult::new(
                &host.name,
                "extension libraries loaded",
                missing.is_empty(),
                if missing.is_empty() {
                    format!("shared_preload_libraries = '{}'", running.join(","))
                } else {
                    format!(
                        "not loaded: {} (the server runs '{}': a restart is pending?)",
                        missing.join(", "),
                        running.join(",")
                    )
                },
            ));
        }
        if host.name != topology.primary {
            continue;
        }
        for e in &ext.list {
            for db in &e.databases {
                let created = pg
                    .databases
                    .get(db)
                    .is_some_and(|d| d.extensions.contains(&e.name));
                out.push(CheckResult::new(
                    &host.name,
                    &format!("extension {} in {db}", e.name),
                    created,
                    if created { "created" } else { "not created" },
                ));
            }
        }
    }
    out
}
