//! Before a running cluster moves to TLS (see `tls_move`), Patroni pauses: in maintenance
//! mode it neither fails over nor demotes its leader when the DCS is out of reach, and a
//! stopped Patroni leaves PostgreSQL running. The same PATCH gives PostgreSQL its TLS
//! parameters (ssl on with the cluster's certificates), so that the `hostssl` rules the
//! restarted members write find TLS there. A marker on this host says the pause is pgha's:
//! `patroni_tls_resume` ends it, and only it (a pause of the DBA's stays).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::facts::gather::{Query, Sections};
use crate::flavours::patroni::probes::PatroniFact;
use crate::flavours::patroni::rest::{self, Expect, Request};
use crate::flavours::patroni::tls_move::{self, PAUSED_MARKER};
use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatroniTlsPause {
    /// This member's REST API on https (asked on http while it still answers there).
    pub url: String,
    /// PostgreSQL's TLS parameters, set in the DCS with the pause.
    pub parameters: Value,
    /// etcd's data directory on its members: an etcd on http counts only when its member
    /// is formed there.
    pub etcd_data_dir: String,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
}

fn default_timeout() -> u32 {
    60
}

/// The member's REST API on the scheme it answered on.
pub(crate) fn as_answering(url: &str, member: &PatroniFact) -> String {
    match url.strip_prefix("https://") {
        Some(rest) if member.scheme == "http" => format!("http://{rest}"),
        _ => url.to_owned(),
    }
}

impl Module for PatroniTlsPause {
    fn kind(&self) -> &'static str {
        "patroni_tls_pause"
    }

    fn ask(&self, query: &mut Query) {
        query.present.push(PAUSED_MARKER.to_owned());
    }

    fn invalidates(&self) -> Sections {
        Sections {
            present: true,
            ..Sections::RUNNING
        }
    }

    fn check(&self, cx: &StepContext) -> Check {
        let moving = tls_move::still_on_http(cx.cluster_facts, &self.etcd_data_dir);
        if moving.is_empty() {
            return Check::InSync("no member of this cluster answers on http only".to_owned());
        }
        if tls_move::paused(cx.facts) {
            return Check::InSync("Patroni is paused".to_owned());
        }
        let Some(member) = PatroniFact::of(cx.facts) else {
            return Check::Refused(format!(
                "{} still speak http and Patroni does not answer on this host: the move to TLS pauses Patroni here first",
                moving.join(", ")
            ));
        };
        let url = as_answering(&self.url, &member);
        let patch = json!({"pause": true, "postgresql": {"parameters": self.parameters}});
        let script = format!(
            "mkdir -p \"$(dirname {marker})\"; touch {marker}; {patch} || {{ echo 'PATCH /config {{\"pause\": true}} failed' >&2; exit 1; }}; for i in $(seq 1 {n}); do if {paused}; then exit 0; fi; sleep 0.5; done; echo 'Patroni is not paused {t} s after it was asked' >&2; exit 1",
            marker = shell_words::quote(PAUSED_MARKER),
            patch = rest::condition(
                &[Request::patch(format!("{url}/config"), patch.clone())],
                &[Vec::new()]
            ),
            paused = rest::condition(
                &[Request::get(format!("{url}/patroni"))],
                &[vec![Expect::is("pause", json!(true))]]
            ),
            n = self.timeout_seconds * 2,
            t = self.timeout_seconds,
        );
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Update,
            "Patroni maintenance mode",
            format!(
                "pause Patroni for the move to TLS ({} still on http): no failover or demotion while etcd and the members change scheme, PostgreSQL keeps running; PostgreSQL takes its TLS parameters ({})",
                moving.join(", "),
                self.parameters
                    .as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            ),
            vec![RemoteCommand::script(script)],
        )])
    }
}
