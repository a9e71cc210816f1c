//! Wait until a service answers: here the local PostgreSQL; a flavour's own waits (its DCS
//! member, its manager's API) use `poll` the same way. The polling happens on the host: one
//! round trip, not one per attempt.

use serde::{Deserialize, Serialize};

use crate::facts::gather::Sections;
use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitFor {
    /// PostgreSQL accepts connections on this port.
    pub postgres_port: u16,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
}

pub fn default_timeout() -> u32 {
    60
}

/// The change that waits on the host until every shell condition holds, polling twice a
/// second for `timeout_seconds`.
pub fn poll(
    cx: &StepContext,
    kind: &str,
    conditions: &[String],
    what: &str,
    timeout_seconds: u32,
) -> Check {
    let script = format!(
        "for i in $(seq 1 {n}); do if {cond}; then exit 0; fi; sleep 0.5; done; echo '{what}: not up within {timeout_seconds} s' >&2; exit 1",
        n = timeout_seconds * 2,
        cond = conditions.join(" && "),
        what = what.replace('\'', ""),
    );
    Check::Changes(vec![cx.change(
        kind,
        Action::Run,
        what,
        "not answering yet",
        vec![RemoteCommand::script(script)],
    )])
}

/// The condition that holds once PostgreSQL accepts connections on `port`.
pub fn postgres_ready(port: u16) -> String {
    format!("pg_isready -q -p {port}")
}

impl Module for WaitFor {
    fn kind(&self) -> &'static str {
        "wait_for"
    }

    /// Roles, databases, extensions, slots and settings live in PostgreSQL's state.
    fn invalidates(&self) -> Sections {
        Sections::POSTGRES
    }

    fn check(&self, cx: &StepContext) -> Check {
        let what = format!("port {}", self.postgres_port);
        if cx.facts.postgres.as_ref().is_some_and(|pg| pg.running) {
            return Check::InSync(format!("{what} up"));
        }
        poll(
            cx,
            self.kind(),
            &[postgres_ready(self.postgres_port)],
            &what,
            self.timeout_seconds,
        )
    }
}
