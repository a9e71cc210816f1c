//! Inventory: the DBA's YAML, read into a node tree, decoded and checked into a `model::Cluster`.
//!
//! `node` (YAML with positions) -> `decode` (typed readers that collect every error)
//! -> `load` (the inventory schema) + `checks` (semantic rules) -> `model::Cluster`.

pub mod checks;
pub mod decode;
pub mod load;
pub mod node;
pub mod patroni;
pub mod pg_params;

pub use load::{load, load_str, LoadError};
