//! Extension parameters in `postgres.parameters`: a dotted name (`cron.database_name`) is a
//! placeholder PostgreSQL accepts whatever its prefix, so a typo or a parameter of an
//! extension the cluster does not have would pass silently. Its prefix must belong to
//! something the inventory declares: an extension of `extensions:` (its name, library or
//! prefix), an extension of a database's list, or a library it preloads.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::components::Component;
use crate::diag::Diagnostics;
use crate::model::{pg_params, preload, Cluster};
use crate::yaml::node::{Node, Value};

/// Modules whose parameters exist without being declared: PL/pgSQL is in every database.
const ALWAYS: &[&str] = &["plpgsql"];

/// The parameters whose value names libraries loaded into the server or its sessions.
const LIBRARY_LISTS: &[&str] = &[
    "shared_preload_libraries",
    "session_preload_libraries",
    "local_preload_libraries",
];

pub fn check(
    d: &mut Diagnostics,
    root: &Node,
    cluster: &Cluster,
    components: &[Arc<dyn Component>],
) {
    let Some(Value::Map(entries)) = root.at("postgres.parameters").map(|n| &n.value) else {
        return;
    };
    let mut known: BTreeSet<String> = ALWAYS.iter().map(|s| (*s).to_owned()).collect();
    known.extend(components.iter().flat_map(|c| c.parameter_prefixes()));
    known.extend(
        cluster
            .databases
            .iter()
            .flat_map(|db| db.extensions.iter().cloned()),
    );
    for list in LIBRARY_LISTS {
        if let Some(v) = cluster.postgres.parameters.get(*list) {
            known.extend(preload::parse(v));
        }
    }
    for (key, _) in entries {
        let name = key.name.to_ascii_lowercase();
        if !pg_params::is_custom(&name) || !pg_params::valid_custom_name(&name) {
            continue;
        }
        let prefix = name.split('.').next().unwrap_or_default();
        if !known.contains(prefix) {
            d.error_with_help(
                key.pos,
                &format!("postgres.parameters.{}", key.name),
                format!(
                    "`{}` is a parameter of `{prefix}`, which the inventory does not declare",
                    key.name
                ),
                "declare the extension under `extensions:` (its parameters go there), in a database's `extensions`, or preload its library in shared_preload_libraries",
            );
        }
    }
}
