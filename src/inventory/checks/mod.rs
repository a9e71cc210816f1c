//! Semantic checks, one module per job. Each reports into `Diagnostics` with the position of
//! the offending item and answers whether the value passed.
//!
//! - `names`: cluster, host, role and database names;
//! - `params`: each server parameter;
//! - `hba`: each pg_hba rule, and rules an earlier one hides;
//! - `roles`: users and databases declared once, owners, reserved names;
//! - `topology`: hosts' names and addresses, the primary, upstreams;
//! - `cluster`: rules across sections, once the cluster is read;
//! - `custom_params`: extension parameters belong to something the inventory declares;
//! - `package_version`: the server packages' exact version, of the same major.

pub mod cluster;
pub mod custom_params;
pub mod hba;
pub mod names;
pub mod package_version;
pub mod params;
pub mod roles;
pub mod topology;

pub use crate::yaml::decode::address;
pub use hba::{HbaField, HbaPositions, HBA_METHODS, HBA_TYPES};
pub use names::{name, NameKind};
pub use package_version::package_version;
pub use topology::{topology, HostPositions};
