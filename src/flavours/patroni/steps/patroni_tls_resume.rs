//! After the move to TLS (see `tls_move`), Patroni resumes: when this host paused it for the
//! move (its marker), or when the move is still to come in this run (plan).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::facts::gather::{Query, Sections};
use crate::flavours::patroni::probes::PatroniFact;
use crate::flavours::patroni::rest::{self, Expect, Request};
use crate::flavours::patroni::steps::patroni_tls_pause::as_answering;
use crate::flavours::patroni::tls_move::{self, PAUSED_MARKER};
use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatroniTlsResume {
    /// This member's REST API on https.
    pub url: String,
    /// etcd's data directory on its members: an etcd on http counts only when its member
    /// is formed there.
    pub etcd_data_dir: String,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
}

fn default_timeout() -> u32 {
    60
}

impl Module for PatroniTlsResume {
    fn kind(&self) -> &'static str {
        "patroni_tls_resume"
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
        let marked = cx.facts.present.iter().any(|p| p == PAUSED_MARKER);
        let moving = tls_move::still_on_http(cx.cluster_facts, &self.etcd_data_dir);
        // Still to come in this run: paused by the step before (unless its DBA paused it).
        let to_come = !moving.is_empty() && !tls_move::paused(cx.facts);
        if !marked && !to_come {
            return Check::InSync("Patroni was not paused for the move to TLS".to_owned());
        }
        // By now the member answers on https; on http only when the move stopped half way.
        let url = match PatroniFact::of(cx.facts) {
            Some(member) if marked => as_answering(&self.url, &member),
            _ => self.url.clone(),
        };
        let script = format!(
            "{patch} || {{ echo 'PATCH /config {{\"pause\": null}} failed' >&2; exit 1; }}; for i in $(seq 1 {n}); do if {resumed}; then rm -f {marker}; exit 0; fi; sleep 0.5; done; echo 'Patroni has not resumed {t} s after it was asked' >&2; exit 1",
            patch = rest::condition(
                &[Request::patch(format!("{url}/config"), json!({"pause": null}))],
                &[Vec::new()]
            ),
            resumed = rest::condition(
                &[Request::get(format!("{url}/patroni"))],
                &[vec![Expect::is("pause", Value::Null)]]
            ),
            marker = shell_words::quote(PAUSED_MARKER),
            n = self.timeout_seconds * 2,
            t = self.timeout_seconds,
        );
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Update,
            "Patroni maintenance mode",
            "resume Patroni after the move to TLS: failover is armed again",
            vec![RemoteCommand::script(script)],
        )])
    }
}
