//! etcd members the inventory no longer wants (their host left the inventory, or left
//! `patroni.etcd.members`): removed with `etcdctl member remove`, one at a time, through the
//! first healthy staying member. The departed host is never contacted: its member is found in
//! the staying members' `member list`. Refused while etcd lacks its quorum (no removal could
//! be committed, and the DBA must restore members first).

use serde::{Deserialize, Serialize};

use crate::facts::gather::Sections;
use crate::flavours::patroni::etcd_membership::{quorum, Membership, Wanted};
use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdMemberRemove {
    /// The members the inventory wants, in its order.
    pub members: Vec<Wanted>,
    /// Every host of the inventory: a departed member whose host stays only left
    /// `patroni.etcd.members`.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The local member's client URL.
    pub endpoint: String,
    /// etcdctl with its client certificate when etcd takes TLS.
    pub etcdctl: String,
}

impl Module for EtcdMemberRemove {
    fn kind(&self) -> &'static str {
        "etcd_member_remove"
    }

    fn invalidates(&self) -> Sections {
        Sections::RUNNING
    }

    fn check(&self, cx: &StepContext) -> Check {
        let Some(membership) = Membership::read(&self.members, cx.cluster_facts) else {
            return Check::InSync("no healthy etcd member to read the membership from".to_owned());
        };
        let departed = membership.departed(&self.members);
        if departed.is_empty() {
            return Check::InSync("every etcd member is in the inventory".to_owned());
        }
        if membership.through != cx.host {
            return Check::InSync(format!(
                "etcd members are removed through {}",
                membership.through
            ));
        }
        if let Some(why) = membership.no_quorum() {
            return Check::Refused(why);
        }
        // Members that do not answer go first: their removal only lowers the quorum. Each
        // removal must leave enough healthy voting members for the next quorum. By name
        // otherwise, so that a plan reads the same each time.
        let mut departed = departed;
        departed.sort_by_key(|m| (membership.is_healthy(m), m.name.clone()));
        let (mut voting, mut healthy) = (membership.voting(), membership.healthy_voting());
        for m in &departed {
            if m.is_learner {
                continue;
            }
            voting -= 1;
            if membership.is_healthy(m) {
                healthy -= 1;
            }
            if voting > 0 && healthy < quorum(voting) {
                let down: Vec<&str> = membership
                    .members
                    .iter()
                    .filter(|o| !o.is_learner && !membership.is_healthy(o) && !departed.iter().any(|d| d.id == o.id))
                    .map(|o| if o.name.is_empty() { "a member never started" } else { o.name.as_str() })
                    .collect();
                let down = if down.is_empty() {
                    "the members that do not answer".to_owned()
                } else {
                    down.join(", ")
                };
                return Check::Refused(format!(
                    "removing etcd member {} would leave {healthy} healthy of {voting} voting members, below the quorum of {}: etcd would stop answering. Bring {down} back first, or remove {down} instead",
                    m.name,
                    quorum(voting),
                ));
            }
        }
        let mut voting = membership.voting();
        let changes = departed
            .into_iter()
            .map(|m| {
                let name = if m.name.is_empty() {
                    format!("(never started, {})", m.peer_urls.join(" "))
                } else {
                    m.name.clone()
                };
                let why = if m.name.is_empty() || self.hosts.contains(&m.name) {
                    "is not in patroni.etcd.members"
                } else {
                    "left the inventory"
                };
                if !m.is_learner {
                    voting -= 1;
                }
                let script = format!(
                    "out=$({} --endpoints={} --dial-timeout=2s --command-timeout=10s member remove {} 2>&1) || echo \"$out\" | grep -q 'member not found' || {{ echo \"$out\" >&2; exit 1; }}",
                    self.etcdctl,
                    shell_words::quote(&self.endpoint),
                    m.hex_id()
                );
                cx.change(
                    self.kind(),
                    Action::Stop,
                    format!("etcd member {name} ({})", m.hex_id()),
                    format!(
                        "{name} {why}: its etcd member is removed through {} ({voting} voting member{} stay, quorum {}){}",
                        cx.host,
                        if voting == 1 { " is to" } else { "s" },
                        quorum(voting),
                        if why == "left the inventory" {
                            "; its host is not contacted"
                        } else {
                            ""
                        }
                    ),
                    vec![RemoteCommand::script(script)],
                )
            })
            .collect();
        Check::Changes(changes)
    }
}
