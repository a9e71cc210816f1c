//! A host that stays in the inventory but left `patroni.etcd.members`: once the staying
//! members removed it from the cluster ("etcd departed members removed"), its etcd is stopped
//! and disabled (a removed member only fails at every start), and its data directory moved
//! aside, kept, so that the host can join again later as a new member.

use serde::{Deserialize, Serialize};

use crate::facts::gather::{Query, Sections};
use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdRetired {
    /// The member's data directory: a formed member has `member/` in it.
    pub data_dir: String,
}

impl EtcdRetired {
    fn formed(&self) -> String {
        crate::flavours::patroni::etcd_formed_marker(&self.data_dir)
    }
}

impl Module for EtcdRetired {
    fn kind(&self) -> &'static str {
        "etcd_retired"
    }

    fn ask(&self, query: &mut Query) {
        query.present.push(self.formed());
    }

    fn invalidates(&self) -> Sections {
        Sections::RUNNING
    }

    fn check(&self, cx: &StepContext) -> Check {
        if !cx.facts.present.contains(&self.formed()) {
            return Check::InSync("no etcd member data here".to_owned());
        }
        let dir = shell_words::quote(&self.data_dir);
        let script = format!(
            "systemctl disable --now etcd >/dev/null 2>&1 || systemctl stop etcd; mv {dir} {dir}.removed-$(date -u +%Y%m%dT%H%M%SZ)"
        );
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Stop,
            format!("etcd on {}", cx.host),
            format!(
                "{} is not in patroni.etcd.members: once removed from the etcd cluster its etcd is stopped and disabled, its data directory kept as {}.removed-<time>",
                cx.host, self.data_dir
            ),
            vec![RemoteCommand::script(script)],
        )])
    }
}
