//! One Patroni member of a running cluster restarted on its TLS configuration (see
//! `tls_move`): its REST API still answers on http, so it runs as an earlier pgha configured
//! it. Patroni is paused: stopping it leaves PostgreSQL running. The step waits until the
//! member answers on https, running. The playbook runs it one member at a time.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::facts::gather::Sections;
use crate::flavours::patroni::probes::PatroniFact;
use crate::flavours::patroni::rest::{self, Expect, Request};
use crate::flavours::patroni::tls_move;
use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatroniTlsRestart {
    /// The member's REST API on https.
    pub url: String,
    /// Patroni's systemd unit.
    pub service: String,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
}

fn default_timeout() -> u32 {
    90
}

impl Module for PatroniTlsRestart {
    fn kind(&self) -> &'static str {
        "patroni_tls_restart"
    }

    fn invalidates(&self) -> Sections {
        Sections::RUNNING
    }

    fn check(&self, cx: &StepContext) -> Check {
        let Some(member) = PatroniFact::of(cx.facts) else {
            return Check::InSync("Patroni does not run here: it starts on https".to_owned());
        };
        if !member.answers_on_other_than("https") {
            return Check::InSync("Patroni answers on https".to_owned());
        }
        let running = rest::condition(
            &[Request {
                timeout: 2,
                ..Request::get(format!("{}/patroni", self.url))
            }],
            &[vec![Expect::is("state", json!("running"))]],
        );
        let script = format!(
            "systemctl restart {service}; for i in $(seq 1 {n}); do if {running}; then exit 0; fi; sleep 0.5; done; echo 'Patroni does not answer on https {t} s after its restart' >&2; exit 1",
            service = shell_words::quote(&self.service),
            n = self.timeout_seconds * 2,
            t = self.timeout_seconds,
        );
        let moving = tls_move::patroni_members(cx.cluster_facts);
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Restart,
            self.service.clone(),
            format!(
                "restart Patroni on {} with TLS {}: etcd over https, its REST API on https (paused: PostgreSQL keeps running)",
                cx.host,
                tls_move::ordinal(cx.host, &moving)
            ),
            vec![RemoteCommand::script(script)],
        )])
    }
}
