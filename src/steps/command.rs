//! A command with a guard: it runs only while the path named by `creates` does not exist. A
//! handler's command has no guard: being notified is its reason to run.

use serde::{Deserialize, Serialize};

use crate::facts::gather::Query;
use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// A POSIX shell script.
    pub run: String,
    /// The path the command makes; its presence means the command has run. Only a handler may
    /// leave it out (the playbook loader checks).
    #[serde(default)]
    pub creates: Option<String>,
    #[serde(default)]
    pub run_as: Option<String>,
    /// For a handler whose command decides itself whether there is anything to do: what it
    /// does when notified, for the plan (a plan must not promise a restart the command may
    /// find unneeded).
    #[serde(default)]
    pub when_notified: Option<String>,
}

impl Module for Command {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn check(&self, cx: &StepContext) -> Check {
        let (target, reason) = match &self.creates {
            Some(path) if cx.facts.present.contains(path) => {
                return Check::InSync(format!("{path} exists"))
            }
            Some(path) => (path.clone(), format!("{path} does not exist")),
            None => (
                cx.step.to_owned(),
                match &self.when_notified {
                    Some(what) => format!("notified by a change above: {what}"),
                    None => "notified by a change above".to_owned(),
                },
            ),
        };
        let mut command = RemoteCommand::script(format!("set -e; {}", self.run));
        if let Some(user) = &self.run_as {
            command = command.as_user(user);
        }
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Run,
            target,
            reason,
            vec![command],
        )])
    }

    fn ask(&self, query: &mut Query) {
        query.present.extend(self.creates.iter().cloned());
    }
}
