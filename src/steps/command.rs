//! A command with a guard: it runs only while the path named by `creates` does not exist.

use serde::{Deserialize, Serialize};

use crate::plan::{Action, Check};
use crate::steps::{Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// A POSIX shell script.
    pub run: String,
    /// The path the command makes; its presence means the command has run.
    pub creates: String,
    #[serde(default)]
    pub run_as: Option<String>,
}

impl Module for Command {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn check(&self, cx: &StepContext) -> Check {
        if cx.facts.present.contains(&self.creates) {
            return Check::InSync(format!("{} exists", self.creates));
        }
        let mut command = RemoteCommand::script(format!("set -e; {}", self.run));
        if let Some(user) = &self.run_as {
            command = command.as_user(user);
        }
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Run,
            &self.creates,
            format!("{} does not exist", self.creates),
            vec![command],
        )])
    }
}
