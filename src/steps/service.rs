//! A systemd unit: running or stopped, enabled at boot or not.

use serde::{Deserialize, Serialize};

use crate::facts::gather::{Query, Sections};
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
