//! Wait until the local Patroni member reports `running` and its PostgreSQL accepts
//! connections.

use serde::{Deserialize, Serialize};

use serde_json::json;

use crate::flavours::patroni::probes::PatroniFact;
use crate::flavours::patroni::rest::{self, Expect, Request};
use crate::steps::wait_for::{default_timeout, poll, postgres_ready};
use crate::facts::gather::Sections;
use crate::steps::{Check, Module, StepContext};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatroniRunning {
    /// The member's REST API.
    pub url: String,
    pub postgres_port: u16,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
}

impl Module for PatroniRunning {
    fn kind(&self) -> &'static str {
        "patroni_running"
    }

    /// Waiting changes nothing but what the wait was for.
    fn invalidates(&self) -> Sections {
        Sections::RUNNING
    }

    fn check(&self, cx: &StepContext) -> Check {
        let what = format!("Patroni {}, port {}", self.url, self.postgres_port);
        let pg_up = cx.facts.postgres.as_ref().is_some_and(|pg| pg.running);
        let patroni_up = PatroniFact::of(cx.facts).is_some_and(|p| p.state == "running");
        if pg_up && patroni_up {
            return Check::InSync(format!("{what} up"));
        }
        let running = rest::condition(
            &[Request {
                timeout: 2,
                ..Request::get(format!("{}/patroni", self.url))
            }],
            &[vec![Expect::is("state", json!("running"))]],
        );
        poll(
            cx,
            self.kind(),
            &[running, postgres_ready(self.postgres_port)],
            &what,
            self.timeout_seconds,
        )
    }
}
