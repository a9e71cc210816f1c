//! YAML read with positions: `node` (a tree whose nodes remember their line and column) and
//! `decode` (typed readers that collect every error instead of stopping at the first). Used by
//! the inventory and the playbooks alike.

pub mod decode;
pub mod node;
