//! One etcd member of a running cluster moved from http to https (see `tls_move`): its peer
//! URL in the membership becomes https (asked of its still-http local endpoint; the cluster
//! needs its quorum for that), then it restarts on the https configuration the step before
//! wrote, and the step waits until it is healthy over https with the client certificate. The
//! playbook runs it one member at a time.

use serde::{Deserialize, Serialize};

use crate::facts::gather::{Query, Sections};
use crate::flavours::patroni::probes::{etcd_ready_condition, EtcdFact, Scheme};
use crate::flavours::patroni::tls_move;
use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTlsMove {
    /// The member's data directory: a formed member has `member/` in it.
    pub data_dir: String,
    /// The member's peer URL once moved (`https://ADDRESS:2380`).
    pub peer_url: String,
    /// Its local client URL on http, before the move.
    pub plain_endpoint: String,
    /// Its local client URL on https, after.
    pub endpoint: String,
    /// etcdctl with the client certificate.
    pub etcdctl: String,
    /// Touched once etcd restarted on its current configuration (the restart handler then
    /// leaves it running).
    pub restarted_marker: String,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
}

fn default_timeout() -> u32 {
    60
}

impl EtcdTlsMove {
    fn formed(&self) -> String {
        crate::flavours::patroni::etcd_formed_marker(&self.data_dir)
    }

    fn script(&self) -> String {
        let plain = format!(
            "{} --endpoints={} --dial-timeout=2s --command-timeout=10s",
            crate::flavours::patroni::PLAIN_ETCDCTL,
            shell_words::quote(&self.plain_endpoint)
        );
        let own_id = "python3 -c 'import json, sys; print(\"%x\" % json.load(sys.stdin)[0][\"Status\"][\"header\"][\"member_id\"])'";
        format!(
            "set -e; id=$({plain} endpoint status -w json | {own_id}); \
             {plain} member update \"$id\" --peer-urls={peer} >/dev/null; \
             systemctl restart etcd; mkdir -p \"$(dirname {marker})\"; touch {marker}; \
             for i in $(seq 1 {n}); do if {ready}; then echo \"pgha: etcd member $id serves https\"; exit 0; fi; sleep 0.5; done; \
             echo 'etcd is not healthy over https {timeout} s after its move' >&2; exit 1",
            peer = shell_words::quote(&self.peer_url),
            marker = shell_words::quote(&self.restarted_marker),
            n = self.timeout_seconds * 2,
            ready = etcd_ready_condition(&self.etcdctl, &self.endpoint),
            timeout = self.timeout_seconds,
        )
    }
}

impl Module for EtcdTlsMove {
    fn kind(&self) -> &'static str {
        "etcd_tls_move"
    }

    fn ask(&self, query: &mut Query) {
        query.present.push(self.formed());
    }

    fn invalidates(&self) -> Sections {
        Sections::RUNNING
    }

    fn check(&self, cx: &StepContext) -> Check {
        if !cx.facts.present.contains(&self.formed()) {
            return Check::InSync("etcd has not formed its cluster here: it starts on https".to_owned());
        }
        let Some(fact) = EtcdFact::of(cx.facts) else {
            return Check::InSync("not an etcd member".to_owned());
        };
        if fact.healthy {
            return Check::InSync("etcd serves https".to_owned());
        }
        if fact.other_scheme != Some(Scheme::Http) {
            return Check::InSync(
                "etcd does not answer here: it starts on https (\"etcd running\")".to_owned(),
            );
        }
        let moving = tls_move::etcd_members(cx.cluster_facts, &self.data_dir);
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Restart,
            format!("etcd member {}", cx.host),
            format!(
                "move etcd member {} to https {}: its peer URL becomes {}, then it restarts on https (the others keep their quorum)",
                cx.host,
                tls_move::ordinal(cx.host, &moving),
                self.peer_url
            ),
            vec![RemoteCommand::script(self.script())],
        )])
    }
}
