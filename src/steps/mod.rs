//! Step kinds ("modules" in Ansible's words). Each kind is one file: typed arguments and a
//! `check` that compares them with the host's facts and returns the changes (with the
//! commands that make them) or the reason nothing is needed.
//!
//! A new kind is one file plus one variant in `StepKind`; dispatch is written once, in
//! `StepKind::module`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::facts::gather::Query;
use crate::facts::HostFacts;
use crate::model::Secrets;
use crate::transport::RemoteCommand;

pub mod change;
pub mod command;
pub mod fields;
pub mod file;
pub mod package;
pub mod patroni_dcs;
pub mod pg_clone;
pub mod pg_database;
pub mod pg_extension;
pub mod pg_reload;
pub mod pg_role;
pub mod pg_slot;
pub mod pg_slots_prune;
pub mod service;
pub mod sql;
pub mod wait_for;

pub use change::{Action, Change, Check};

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
            commands,
        }
    }
}

/// What every step kind does.
pub trait Module {
    /// The kind's name as written in playbooks.
    fn kind(&self) -> &'static str;
    /// Compare with the facts. Pure: no I/O.
    fn check(&self, cx: &StepContext) -> Check;
    /// What this step needs gathered beyond the standing sections (packages, PostgreSQL's
    /// state): a file's content, a unit's state, whether a guard path exists.
    fn ask(&self, _query: &mut Query) {}
}

/// Every step kind, with its typed arguments. In playbooks: `- name: ...\n  KIND: {ARGS}`.
/// `template` is not here: expanding a playbook renders it into a `file` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Package(package::Package),
    File(file::File),
    Service(service::Service),
    PgRole(pg_role::PgRole),
    PgDatabase(pg_database::PgDatabase),
    PgExtension(pg_extension::PgExtension),
    PgSlot(pg_slot::PgSlot),
    PgSlotsPrune(pg_slots_prune::PgSlotsPrune),
    PgClone(pg_clone::PgClone),
    PgReloadOrRestart(pg_reload::PgReloadOrRestart),
    Command(command::Command),
    WaitFor(wait_for::WaitFor),
    PatroniDcs(patroni_dcs::PatroniDcs),
}

impl StepKind {
    pub fn module(&self) -> &dyn Module {
        match self {
            StepKind::Package(m) => m,
            StepKind::File(m) => m,
            StepKind::Service(m) => m,
            StepKind::PgRole(m) => m,
            StepKind::PgDatabase(m) => m,
            StepKind::PgExtension(m) => m,
            StepKind::PgSlot(m) => m,
            StepKind::PgSlotsPrune(m) => m,
            StepKind::PgClone(m) => m,
            StepKind::PgReloadOrRestart(m) => m,
            StepKind::Command(m) => m,
            StepKind::WaitFor(m) => m,
            StepKind::PatroniDcs(m) => m,
        }
    }
}
