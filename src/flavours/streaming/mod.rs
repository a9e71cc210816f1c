//! Built-in streaming replication: PostgreSQL's own, with pgha doing the bootstrap, the
//! cascading, the slots and the switchover.

mod failover;
mod switchover;

use std::sync::Arc;

use crate::flavours::objectives::{rpo_bytes_unbounded, rpo_zero_unsupported, rto_needs_automatic};
use crate::flavours::{
    BoxFuture, ClusterView, Derived, Entry, Failover, Flavour, Handover, ProcedureError, Refusal,
    RouteDelay, SectionInput,
};
use crate::model::{slot_safe_name, Cluster, Objectives, Rpo};

pub const ENTRY: Entry = Entry {
    name: "streaming",
    roles: &[],
    host_keys: &[],
    kinds: &[],
    managed_parameters: &[],
    tls_dir: None,
    load,
};

/// No section of its own: everything it needs is in the common ones.
fn load(_: SectionInput<'_>) -> Option<Arc<dyn Flavour>> {
    Some(Arc::new(Streaming))
}

#[derive(Debug, Clone, Copy)]
pub struct Streaming;

impl Flavour for Streaming {
    fn name(&self) -> &'static str {
        "streaming"
    }

    fn playbook(&self) -> &'static str {
        include_str!("../../../playbooks/streaming.yml")
    }

    /// pgha's slots carry a prefix, so pruning never touches a slot it did not make.
    fn slot_name(&self, host: &str) -> String {
        format!("pgha_{}", slot_safe_name(host))
    }

    fn switchover<'a>(
        &'a self,
        view: &'a ClusterView<'a>,
        target: &'a str,
    ) -> BoxFuture<'a, Result<Handover, ProcedureError>> {
        Box::pin(switchover::switchover(view, target))
    }

    /// It does not fail over by itself, and has no synchronous replication of its own.
    fn meet_objectives(
        &self,
        _cluster: &Cluster,
        declared: &Objectives,
        _route: &RouteDelay,
    ) -> Result<Derived, Vec<Refusal>> {
        let mut refusals = Vec::new();
        if declared.rto.is_some() {
            refusals.push(rto_needs_automatic(
                "the streaming flavour does not fail over by itself",
            ));
        }
        match declared.rpo {
            Some(Rpo::Zero) => refusals.push(rpo_zero_unsupported("streaming")),
            Some(rpo @ Rpo::Bytes(_)) => refusals.push(rpo_bytes_unbounded("streaming", rpo)),
            None => {}
        }
        if refusals.is_empty() {
            Ok(Derived::default())
        } else {
            Err(refusals)
        }
    }

    fn failover_choice(
        &self,
        view: &ClusterView<'_>,
        to: Option<&str>,
    ) -> Result<Failover, ProcedureError> {
        crate::flavours::failover::choose(view, to)
    }

    fn failover<'a>(
        &'a self,
        view: &'a ClusterView<'a>,
        choice: &'a Failover,
    ) -> BoxFuture<'a, Result<Handover, ProcedureError>> {
        Box::pin(failover::failover(view, choice))
    }
}
