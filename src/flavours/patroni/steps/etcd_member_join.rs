//! A new etcd member joins a formed cluster: added as a learner through a started member
//! (`member add --learner`: a learner has no vote, so the quorum is what it was), started with
//! ETCD_INITIAL_CLUSTER_STATE=existing and the current members plus itself (what etcd checks
//! a joining member against), then promoted once in sync (`member promote`, which etcd
//! refuses until the learner caught up). The joining settings are a systemd drop-in under
//! /run, gone once the member is formed: /etc/default/etcd says `new`, for a cluster that
//! forms together. The playbook runs it one host at a time (etcd 3.4 takes one learner).
//! etcd refuses an addition ("unhealthy cluster") until its leader has been connected to
//! every voting member for a few seconds, as just after a promotion: it is retried.

use serde::{Deserialize, Serialize};

use crate::facts::gather::{Query, Sections};
use crate::flavours::patroni::etcd_membership::{Membership, Wanted};
use crate::flavours::patroni::probes::etcd_ready_condition;
use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdMemberJoin {
    /// The members the inventory wants, in its order (this host among them).
    pub members: Vec<Wanted>,
    /// The member's data directory: a formed member has `member/` in it.
    pub data_dir: String,
    /// Its peer URL.
    pub peer_url: String,
    /// Its local client URL.
    pub endpoint: String,
    /// etcdctl with its client certificate when etcd takes TLS.
    pub etcdctl: String,
    /// Touched once etcd runs on its current configuration (the restart handler then leaves
    /// it running).
    pub restarted_marker: String,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
}

fn default_timeout() -> u32 {
    120
}

const DROP_IN: &str = "/run/systemd/system/etcd.service.d/pgha-join.conf";
const JOIN_ENV: &str = "/run/pgha/etcd-join.env";

impl EtcdMemberJoin {
    fn formed(&self) -> String {
        crate::flavours::patroni::etcd_formed_marker(&self.data_dir)
    }

    fn script(&self, host: &str, endpoints: &[String]) -> String {
        let ctl = format!(
            "{} --endpoints={} --dial-timeout=2s --command-timeout=10s",
            self.etcdctl,
            shell_words::quote(&endpoints.join(","))
        );
        let peer = shell_words::quote(&self.peer_url);
        // The ID of the member with this peer URL, hexadecimal; empty when there is none.
        let id_of = format!(
            "python3 -c 'import json, sys; print(next((\"%x\" % m[\"ID\"] for m in json.load(sys.stdin).get(\"members\", []) if sys.argv[1] in m.get(\"peerURLs\", [])), \"\"))' {peer}"
        );
        // NAME=PEER for every member, this one (unnamed until it starts) by its host's name.
        let initial = format!(
            "python3 -c 'import json, sys; print(\",\".join(\"%s=%s\" % (m.get(\"name\") or sys.argv[2], u) for m in json.load(sys.stdin).get(\"members\", []) for u in m.get(\"peerURLs\", []) if m.get(\"name\") or sys.argv[1] in m.get(\"peerURLs\", [])))' {peer} {}",
            shell_words::quote(host)
        );
        let learner = "python3 -c 'import json, sys; print(next((str(m.get(\"isLearner\", False)).lower() for m in json.load(sys.stdin).get(\"members\", []) if sys.argv[1] in m.get(\"peerURLs\", [])), \"\"))'";
        let n = self.timeout_seconds * 2;
        format!(
            "set -e; ctl() {{ {ctl} \"$@\"; }}; \
             id=$(ctl member list -w json | {id_of}); \
             if [ -z \"$id\" ]; then for i in $(seq 1 {n}); do \
               if out=$(ctl member add {host} --peer-urls={peer} --learner 2>&1); then break; fi; \
               echo \"$out\" | grep -q -e 'unhealthy cluster' -e 'too many learner' || {{ echo \"$out\" >&2; exit 1; }}; sleep 0.5; done; \
               id=$(ctl member list -w json | {id_of}); \
               [ -n \"$id\" ] || {{ echo \"etcd did not add {host} within {t} s: $out\" >&2; exit 1; }}; \
               echo \"pgha: etcd member $id added as a learner\"; fi; \
             initial=$(ctl member list -w json | {initial}); \
             mkdir -p /run/pgha {dropin_dir}; \
             printf 'ETCD_INITIAL_CLUSTER=\"%s\"\\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\\n' \"$initial\" > {env}; \
             printf '[Service]\\nEnvironmentFile={env}\\n' > {dropin}; \
             systemctl daemon-reload; systemctl restart --no-block etcd; \
             promoted=; for i in $(seq 1 {n}); do \
               if [ \"$(ctl member list -w json | {learner} {peer})\" = false ]; then promoted=yes; break; fi; \
               ctl member promote \"$id\" >/dev/null 2>&1 || true; sleep 0.5; done; \
             [ -n \"$promoted\" ] || {{ echo 'etcd learner {host} was not promoted within {t} s (not in sync with the leader)' >&2; exit 1; }}; \
             for i in $(seq 1 {n}); do if {ready}; then break; fi; sleep 0.5; done; \
             {ready} || {{ echo 'etcd member {host} is not healthy {t} s after its promotion' >&2; exit 1; }}; \
             touch {marker}; rm -f {dropin} {env}; systemctl daemon-reload; \
             echo \"pgha: etcd member $id ({host}) joined as a voting member\"",
            host = shell_words::quote(host),
            dropin_dir = shell_words::quote(DROP_IN.rsplit_once('/').map(|(d, _)| d).unwrap_or("/run")),
            dropin = DROP_IN,
            env = JOIN_ENV,
            t = self.timeout_seconds,
            ready = etcd_ready_condition(&self.etcdctl, &self.endpoint),
            marker = shell_words::quote(&self.restarted_marker),
        )
    }
}

impl Module for EtcdMemberJoin {
    fn kind(&self) -> &'static str {
        "etcd_member_join"
    }

    fn ask(&self, query: &mut Query) {
        query.present.push(self.formed());
    }

    fn invalidates(&self) -> Sections {
        Sections::RUNNING
    }

    fn check(&self, cx: &StepContext) -> Check {
        if cx.facts.present.contains(&self.formed()) {
            return Check::InSync("a formed etcd member".to_owned());
        }
        // The others' word: this host's etcd has not joined anything.
        let others: Vec<Wanted> = self
            .members
            .iter()
            .filter(|w| w.name != cx.host)
            .cloned()
            .collect();
        let Some(membership) = Membership::read(&others, cx.cluster_facts) else {
            return Check::InSync(
                "no formed etcd cluster: the members form it together".to_owned(),
            );
        };
        if let Some(why) = membership.no_quorum() {
            return Check::Refused(why);
        }
        let endpoints = membership.endpoints();
        let known = membership.of_peer(&self.peer_url);
        let current: Vec<&str> = membership
            .members
            .iter()
            .filter(|m| m.votes_and_started())
            .map(|m| m.name.as_str())
            .collect();
        let how = if known.is_some() {
            "already added as a learner"
        } else {
            "added as a learner"
        };
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Create,
            format!("etcd member {}", cx.host),
            format!(
                "{} joins the etcd cluster of {}: {how} through {}, started with them (initial state `existing`), promoted to a voting member once in sync; the quorum holds throughout",
                cx.host,
                current.join(", "),
                membership.through
            ),
            vec![RemoteCommand::script(self.script(cx.host, &endpoints))],
        )])
    }
}
