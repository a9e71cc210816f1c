//! Wait until the local PostgreSQL accepts connections (after a start or a clone).

use serde::{Deserialize, Serialize};

use crate::plan::{Action, Check};
use crate::steps::{Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitFor {
    pub postgres_port: u16,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
}

fn default_timeout() -> u32 {
    60
}

impl Module for WaitFor {
    fn kind(&self) -> &'static str {
        "wait_for"
    }

    fn check(&self, cx: &StepContext) -> Check {
        if cx.facts.postgres.as_ref().is_some_and(|pg| pg.running) {
            return Check::InSync("accepting connections".to_owned());
        }
        // Polls on the host itself: one round trip instead of one per attempt.
        let script = format!(
            "for i in $(seq 1 {n}); do pg_isready -q -p {port} && exit 0; sleep 0.5; done; echo 'PostgreSQL did not accept connections within {t} s' >&2; exit 1",
            n = self.timeout_seconds * 2,
            port = self.postgres_port,
            t = self.timeout_seconds
        );
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Run,
            format!("port {}", self.postgres_port),
            "server not accepting connections yet",
            vec![RemoteCommand::script(script)],
        )])
    }
}
