//! etcd speaks http or https from the day its cluster forms. Each member's peer URL is part of
//! the cluster's membership: a formed member restarted on another scheme alone is cut off from
//! the others (they still dial it by its old URL). A running etcd on http moves to https member
//! by member in the steps after this one (`etcd_tls_move`, see `tls_move`); a running etcd on
//! https is not moved back to http in place: that is refused in plan, before anything is
//! touched.

use serde::{Deserialize, Serialize};

use crate::facts::gather::Query;
use crate::steps::{Check, Module, StepContext};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdScheme {
    /// etcd's configuration (`/etc/default/etcd`).
    pub config: String,
    /// The member's data directory: a formed member has `member/` in it.
    pub data_dir: String,
    /// `http` or `https`: what the inventory asks for.
    pub scheme: String,
}

impl EtcdScheme {
    fn formed(&self) -> String {
        crate::flavours::patroni::etcd_formed_marker(&self.data_dir)
    }
}

impl Module for EtcdScheme {
    fn kind(&self) -> &'static str {
        "etcd_scheme"
    }

    fn ask(&self, query: &mut Query) {
        query.files.push(self.config.clone());
        query.present.push(self.formed());
    }

    fn check(&self, cx: &StepContext) -> Check {
        let Some(file) = cx.facts.files.get(&self.config) else {
            return Check::InSync("etcd is not configured yet".to_owned());
        };
        let current = if file.content.contains("ETCD_LISTEN_PEER_URLS=\"https://") {
            "https"
        } else {
            "http"
        };
        if current == self.scheme {
            return Check::InSync(format!("etcd speaks {current}"));
        }
        if !cx.facts.present.contains(&self.formed()) {
            return Check::InSync(format!(
                "etcd speaks {current} and has not formed its cluster yet: it starts on {}",
                self.scheme
            ));
        }
        if current == "http" {
            return Check::InSync(
                "etcd speaks http: its members move to https one at a time below".to_owned(),
            );
        }
        Check::Refused(
            "this etcd member's cluster runs on https; moving a running etcd and Patroni back to http in place is not built (restarting the members on it would cut them off from each other and cost Patroni its DCS). Keep the inventory's `tls:` section for this cluster".to_owned(),
        )
    }
}
