//! Extra apt repositories (`package_sources:` in the inventory): each a deb822 `.sources`
//! file whose `Signed-By` names a key file of its own under /etc/apt/keyrings, and optional
//! version pins. Written before any component's packages (the `packages` hook starts with
//! `common/package-sources.yml` whenever a component declares a source), and `apt-get
//! update` runs only when one of those files changed.

pub mod section;
pub mod source;

use std::sync::Arc;

use serde_json::Value;

use crate::components::{Component, Entry, SectionInput};
use crate::model::Cluster;

pub use source::AptSource;

pub const ENTRY: Entry = Entry {
    name: "package_sources",
    kinds: &[],
    roles: &[],
    roles_need: "",
    load,
};

fn load(input: SectionInput<'_>) -> Option<Arc<dyn Component>> {
    let sources = section::read(input.d, input.section, input.base)?;
    Some(Arc::new(PackageSources { sources }))
}

#[derive(Debug, Clone)]
pub struct PackageSources {
    pub sources: Vec<AptSource>,
}

impl Component for PackageSources {
    fn name(&self) -> &'static str {
        "package_sources"
    }

    /// Its steps are the shared `common/package-sources.yml`, over every component's sources.
    fn fragments(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    fn vars(&self, _cluster: &Cluster) -> Value {
        Value::Array(self.sources.iter().map(AptSource::vars).collect())
    }

    fn apt_sources(&self) -> Vec<AptSource> {
        self.sources.clone()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
