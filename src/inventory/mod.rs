//! Inventory: the DBA's YAML, read into a node tree, decoded and checked into a `model::Cluster`.
//!
//! `yaml::node` (YAML with positions) -> `yaml::decode` (typed readers that collect every
//! error) -> `load` (the inventory schema) + `checks` (semantic rules) -> `model::Cluster`.

pub mod checks;
pub mod load;
pub mod objectives;

pub use load::{load, load_str, LoadError};

use std::sync::Arc;

use crate::components::Component;
use crate::flavours::Flavour;
use crate::model::Cluster;

/// A checked inventory: the generic cluster model, the flavour that runs it and the
/// components it has, each with its own settings.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub cluster: Cluster,
    pub flavour: Arc<dyn Flavour>,
    /// The components the inventory has sections for.
    pub components: Vec<Arc<dyn Component>>,
    /// The folder of the cluster CA the inventory uses by default (it has no `tls:`) when no
    /// CA is there yet: the first plan or apply makes it.
    pub missing_ca: Option<std::path::PathBuf>,
    /// What the declared objectives set, for the plan (empty without `objectives:`).
    pub objective_notes: Vec<String>,
}

impl Inventory {
    /// A failover's expected worst case against the declared rto (see
    /// `objectives::expected_failover`).
    pub fn expected_failover(&self) -> Option<objectives::Expected> {
        objectives::expected_failover(&self.cluster, self.flavour.as_ref(), &self.components)
    }
}
