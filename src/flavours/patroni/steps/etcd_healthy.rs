//! Wait until the local etcd member is healthy and its cluster version agreed (Patroni must
//! not start before: see `probes::etcd_ready_condition`).

use serde::{Deserialize, Serialize};

use crate::flavours::patroni::probes::{etcd_ready_condition, EtcdFact};
use crate::steps::wait_for::{default_timeout, poll};
use crate::facts::gather::Sections;
use crate::steps::{Check, Module, StepContext};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdHealthy {
    /// The member's client URL.
    pub endpoint: String,
    /// etcdctl with its client certificate when etcd takes TLS.
    #[serde(default = "plain_etcdctl")]
    pub etcdctl: String,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
}

fn plain_etcdctl() -> String {
    "ETCDCTL_API=3 etcdctl".to_owned()
}

impl Module for EtcdHealthy {
    fn kind(&self) -> &'static str {
        "etcd_healthy"
    }

    /// Waiting changes nothing but what the wait was for.
    fn invalidates(&self) -> Sections {
        Sections::RUNNING
    }

    fn check(&self, cx: &StepContext) -> Check {
        let what = format!("etcd {}", self.endpoint);
        if EtcdFact::of(cx.facts).is_some_and(|e| e.healthy) {
            return Check::InSync(format!("{what} up"));
        }
        poll(
            cx,
            self.kind(),
            &[etcd_ready_condition(&self.etcdctl, &self.endpoint)],
            &what,
            self.timeout_seconds,
        )
    }
}
