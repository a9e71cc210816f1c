//! The one integration-test binary: the CLI end to end, and the engine with fixture facts.

mod backups;
mod cluster;
mod drill;
mod engine;
mod etcd_membership;
mod extensions;
mod facts;
mod failover;
mod faults;
mod load;
mod objectives;
mod patroni;
mod pgbackrest;
mod removal;
mod render;
mod repmgr;
mod rotation;
mod routing;
mod routing_rules;
mod sandbox;
mod saved_plan;
mod scheduler;
mod streaming;
mod support;
mod tls;
mod validate;
