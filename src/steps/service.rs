//! A systemd unit: running or stopped, enabled at boot or not.

use serde::{Deserialize, Serialize};

use crate::facts::gather::{Query, Sections};
use crate::steps::pg_clone::FENCE_MARKER;
use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Started,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    pub state: State,
    #[serde(default)]
    pub enabled: Option<bool>,
}

impl Module for Service {
    fn kind(&self) -> &'static str {
        "service"
    }

    fn ask(&self, query: &mut Query) {
        query.services.push(self.name.clone());
        query.present.push(FENCE_MARKER.to_owned());
    }

    /// Starting or stopping a unit changes the unit, and the server or DCS member it runs.
    fn invalidates(&self) -> Sections {
        Sections::RUNNING
    }

    fn check(&self, cx: &StepContext) -> Check {
        let current = cx
            .facts
            .services
            .get(&self.name)
            .cloned()
            .unwrap_or_default();
        let mut changes = Vec::new();
        let wanted = self.state == State::Started || self.enabled == Some(true);
        // A fenced former primary stays masked until its rejoin (pg_clone, earlier in the
        // playbook) lifts the fence: unmasking it here could start a second primary. Its
        // start is planned as before, and fails while the fence holds.
        let fenced = cx.facts.present.iter().any(|p| p == FENCE_MARKER);
        if current.masked && wanted && !fenced {
            changes.push(cx.change(
                self.kind(),
                Action::Update,
                &self.name,
                "masked (decommissioned, or by hand): unmasked, as the inventory wants it",
                vec![RemoteCommand::new(["systemctl", "unmask", &self.name])],
            ));
        }
        match (self.state, current.active) {
            (State::Started, false) => changes.push(cx.change(
                self.kind(),
                Action::Start,
                &self.name,
                "not running",
                vec![RemoteCommand::new(["systemctl", "start", &self.name])],
            )),
            (State::Stopped, true) => changes.push(cx.change(
                self.kind(),
                Action::Stop,
                &self.name,
                "running",
                vec![RemoteCommand::new(["systemctl", "stop", &self.name])],
            )),
            _ => {}
        }
        match (self.enabled, current.enabled) {
            (Some(true), false) => changes.push(cx.change(
                self.kind(),
                Action::Enable,
                &self.name,
                "not enabled at boot",
                vec![RemoteCommand::new(["systemctl", "enable", &self.name])],
            )),
            (Some(false), true) => changes.push(cx.change(
                self.kind(),
                Action::Update,
                &self.name,
                "enabled at boot",
                vec![RemoteCommand::new(["systemctl", "disable", &self.name])],
            )),
            _ => {}
        }
        if changes.is_empty() {
            Check::InSync(format!("{} is {:?}", self.name, self.state).to_lowercase())
        } else {
            Check::Changes(changes)
        }
    }
}
