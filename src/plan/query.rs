//! What to ask the hosts: the facts sections every step of every host reads, gathered in one
//! round trip per host.

use std::collections::BTreeMap;

use crate::facts::gather::Query;
use std::sync::Arc;

use crate::components::Component;
use crate::flavours::Flavour;
use crate::model::Cluster;
use crate::playbook::Step;
use crate::steps::pg_clone;

/// What to ask every host: the union of what any expansion of the playbook may touch, so the
/// facts serve the plan whatever the real topology turns out to be.
pub fn query_for(
    cluster: &Cluster,
    flavour: &dyn Flavour,
    components: &[Arc<dyn Component>],
    expansions: &[&BTreeMap<String, Vec<Step>>],
) -> BTreeMap<String, Query> {
    let mut out = BTreeMap::new();
    for host in &cluster.hosts {
        // The flavour's data directory and probes; the steps add what they read.
        let mut q = Query {
            port: cluster.postgres.port,
            version: cluster.postgres.version,
            data_dir: flavour.data_dir(cluster).to_owned(),
            probes: flavour.probes(cluster, host),
            // A host without PostgreSQL (an etcd or a proxy host) is not asked its state.
            skip_postgres: !host.role.has_postgres(),
            ..Query::default()
        };
        for c in components {
            q.probes.extend(c.probes(cluster, host));
        }
        for steps in expansions.iter().filter_map(|e| e.get(&host.name)) {
            for step in steps {
                step.module.ask(&mut q);
            }
        }
        // Any data-holding host may have to be cloned once the real topology is known.
        if host.role.has_postgres() {
            q.present.push(pg_clone::CLONE_MARKER.to_owned());
        }
        // Files of other roles too: a standby-only file left on a promoted node is news.
        q.files.sort();
        q.files.dedup();
        q.services.sort();
        q.services.dedup();
        q.present.sort();
        q.present.dedup();
        out.insert(host.name.clone(), q);
    }
    out
}
