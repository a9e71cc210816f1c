//! Inventory: the DBA's YAML, read into a node tree, decoded and checked into a `model::Cluster`.
//!
//! `yaml::node` (YAML with positions) -> `yaml::decode` (typed readers that collect every
//! error) -> `load` (the inventory schema) + `checks` (semantic rules) -> `model::Cluster`.

pub mod checks;
pub mod load;
pub mod patroni;

pub use load::{load, load_str, LoadError};
