//! Extra Debian packages on every PostgreSQL host (`packages:` in the inventory): an
//! extension's package such as `postgresql-15-cron`, tools the DBA wants everywhere. Installed
//! with the server's packages, before any configuration that may need them (a preloaded
//! library must be there before the restart that loads it).

use std::sync::Arc;

use serde_json::Value;

use crate::components::{Component, Entry, SectionInput};
use crate::model::Cluster;
use crate::yaml::decode;

pub const ENTRY: Entry = Entry {
    name: "packages",
    kinds: &[],
    roles: &[],
    roles_need: "",
    load,
};

fn load(input: SectionInput<'_>) -> Option<Arc<dyn Component>> {
    let names = decode::string_list(input.d, input.section, "packages");
    Some(Arc::new(Packages { names }))
}

#[derive(Debug, Clone)]
pub struct Packages {
    pub names: Vec<String>,
}

impl Component for Packages {
    fn name(&self) -> &'static str {
        "packages"
    }

    fn fragments(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "packages",
            include_str!("../../../playbooks/components/packages.yml"),
        )]
    }

    /// The list itself, as playbooks and templates always saw it.
    fn vars(&self, _cluster: &Cluster) -> Value {
        Value::from(self.names.clone())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
