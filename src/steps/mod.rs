//! Step kinds ("modules" in Ansible's words). Each kind is one file: typed arguments and a
//! `check` that compares them with the host's facts and returns the changes (with the
//! commands that make them) or the reason nothing is needed.
//!
//! A new kind is one file plus one line in `kinds!` below; a flavour registers its own kinds
//! the same way in its folder. Dispatch is the `Module` trait.

use std::collections::BTreeMap;

use crate::facts::gather::{Query, Sections};
use crate::facts::HostFacts;
use crate::model::Secrets;
use crate::transport::{BoxFuture, RemoteCommand, Transport};

pub mod change;
pub mod registry;
pub mod sql;

pub use change::{Action, Change, Check};

// The step kinds: one line each (the module, named as playbooks name the kind, and its type).
crate::kinds! {
    command: Command,
    file: File,
    package: Package,
    pg_clone: PgClone,
    pg_database: PgDatabase,
    pg_extension: PgExtension,
    pg_reload_or_restart: PgReloadOrRestart,
    pg_role: PgRole,
    pg_slot: PgSlot,
    pg_slots_prune: PgSlotsPrune,
    service: Service,
    tls_certificate: TlsCertificate,
    ssh_trust: SshTrust,
    wait_for: WaitFor,
}

/// What a step's check may look at.
pub struct StepContext<'a> {
    pub host: &'a str,
    pub step: &'a str,
    pub facts: &'a HostFacts,
    /// Every host's facts, for steps that compare across hosts (a clone checks that the
    /// standby holds the same cluster as its upstream).
    pub cluster_facts: &'a BTreeMap<String, HostFacts>,
    pub secrets: &'a Secrets,
}

impl StepContext<'_> {
    /// A change of this step on this host.
    pub fn change(
        &self,
        kind: &str,
        action: Action,
        target: impl Into<String>,
        reason: impl Into<String>,
        commands: Vec<RemoteCommand>,
    ) -> Change {
        Change {
            host: self.host.to_owned(),
            step: self.step.to_owned(),
            kind: kind.to_owned(),
            action,
            target: target.into(),
            reason: reason.into(),
            diff: None,
            procedure: None,
            commands,
        }
    }
}

/// What every step kind does.
pub trait Module: std::fmt::Debug + Send + Sync + std::any::Any {
    /// The kind's name as written in playbooks.
    fn kind(&self) -> &'static str;
    /// Compare with the facts. Pure: no I/O.
    fn check(&self, cx: &StepContext) -> Check;
    /// What this step needs gathered beyond the standing sections (packages, PostgreSQL's
    /// state): a file's content, a unit's state, whether a guard path exists.
    fn ask(&self, _query: &mut Query) {}
    /// What a change of this step may make stale in the host's facts: apply reads only that
    /// again before the next step. Everything unless the kind knows better.
    fn invalidates(&self) -> Sections {
        Sections::ALL
    }
    /// Make one planned change. Most kinds run the change's commands in order (`None`); a
    /// kind whose change is a procedure (it waits and decides as the cluster moves) runs it
    /// here and returns what it did, a line per event.
    fn execute<'a>(
        &'a self,
        _change: &'a Change,
        _host: &'a dyn Transport,
        _secrets: &'a Secrets,
    ) -> Option<BoxFuture<'a, Result<Vec<String>, String>>> {
        None
    }
    /// Steps with the same key do the same thing once: where one of them has changes, the
    /// later ones on the host are covered by it (one reload applies every setting).
    fn coalesce_key(&self) -> Option<&'static str> {
        None
    }
}

impl dyn Module {
    /// The typed step, when it is of kind `T`.
    pub fn downcast<T: Module>(&self) -> Option<&T> {
        (self as &dyn std::any::Any).downcast_ref::<T>()
    }
}
