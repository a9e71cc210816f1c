//! What a step's check finds and what a plan is made of: a closed set of actions and the
//! change on one host with its reason, diff and the commands that make it.

use serde::{Deserialize, Serialize};

use crate::transport::RemoteCommand;

/// The closed set of things a change can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Install,
    Create,
    Update,
    Start,
    Stop,
    Enable,
    Reload,
    Restart,
    Clone,
    Rewind,
    Run,
    /// Deletes data (a leaving host's, with the DBA's consent).
    Destroy,
}

impl Action {
    /// The word users read: `install`, `create`, `restart`...
    pub fn name(self) -> &'static str {
        match self {
            Action::Install => "install",
            Action::Create => "create",
            Action::Update => "update",
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Enable => "enable",
            Action::Reload => "reload",
            Action::Restart => "restart",
            Action::Clone => "clone",
            Action::Rewind => "rewind",
            Action::Run => "run",
            Action::Destroy => "destroy",
        }
    }

    /// The sign a human view puts in front of the change.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Install | Action::Create | Action::Clone => "+",
            Action::Update | Action::Rewind => "~",
            Action::Destroy => "-",
            Action::Start
            | Action::Stop
            | Action::Enable
            | Action::Reload
            | Action::Restart
            | Action::Run => ">",
        }
    }
}

/// One change on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub host: String,
    /// The playbook step's name.
    pub step: String,
    /// The step kind (`template`, `pg_role`, ...).
    pub kind: String,
    pub action: Action,
    /// What is changed: a path, a role, a service, a package list.
    pub target: String,
    /// Why this change is needed, in a user's words ("pg_hba.conf differs", "shared_buffers
    /// needs a restart (context postmaster)").
    pub reason: String,
    /// Unified diff for files, secrets masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// The commands apply runs for it, in order. Secrets appear as marks only.
    pub commands: Vec<RemoteCommand>,
    /// For a change a procedure makes (it waits and decides as the cluster moves): what the
    /// procedure is to do, as planned. No secret goes here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub procedure: Option<serde_json::Value>,
}

/// What a step's check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Nothing to do; the reason says why (shown with -v).
    InSync(String),
    Changes(Vec<Change>),
    /// The step must not go ahead (it would destroy data, or its input is wrong).
    Refused(String),
}
