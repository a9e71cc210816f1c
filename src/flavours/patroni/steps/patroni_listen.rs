//! PostgreSQL's listen addresses under Patroni come from each member's own file
//! (`postgresql.listen` in patroni.yml), not from the DCS, and take a restart: a VIP added to
//! a running cluster moves every member to `0.0.0.0`. Patroni takes the file on its reload
//! and then only reports the pending restart. This step runs after that reload and restarts
//! the members whose server still listens elsewhere, one at a time, replicas first, the
//! leader last, in the same apply (the `DcsChange` procedure's rolling restart).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::facts::HostFacts;
use crate::flavours::patroni::dcs_change::DcsChange;
use crate::flavours::patroni::probes::PatroniFact;
use crate::steps::{Action, Change, Check, Module, StepContext};
use crate::transport::{BoxFuture, Transport};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatroniListen {
    /// This member's REST API (the leader's).
    pub url: String,
    /// Every PostgreSQL member: name -> REST API, for the rolling restart.
    pub members: BTreeMap<String, String>,
    /// Every PostgreSQL member: name -> the `listen_addresses` its patroni.yml gives.
    pub listen: BTreeMap<String, String>,
    /// Hand the leader role to a restarted replica instead of restarting the leader in place.
    #[serde(default)]
    pub switchover_first: bool,
}

/// The members whose running server listens elsewhere than their file says: name -> reason.
/// The same addresses in another order or spacing are the same.
fn listening_elsewhere(
    listen: &BTreeMap<String, String>,
    cluster_facts: &BTreeMap<String, HostFacts>,
) -> BTreeMap<String, String> {
    let addresses = |v: &str| {
        let mut a: Vec<String> = v.split(',').map(|s| s.trim().to_owned()).collect();
        a.sort();
        a
    };
    listen
        .iter()
        .filter_map(|(name, want)| {
            let have = cluster_facts
                .get(name)?
                .postgres
                .as_ref()
                .filter(|pg| pg.running)?
                .settings
                .get("listen_addresses")?;
            (addresses(&have.value) != addresses(want)).then(|| {
                let reason = format!(
                    "{name} listens on {}, its postgresql.listen on {want}",
                    have.value
                );
                (name.clone(), reason)
            })
        })
        .collect()
}

impl Module for PatroniListen {
    fn kind(&self) -> &'static str {
        "patroni_listen"
    }

    fn execute<'a>(
        &'a self,
        change: &'a Change,
        host: &'a dyn Transport,
        _secrets: &'a crate::model::Secrets,
    ) -> Option<BoxFuture<'a, Result<Vec<String>, String>>> {
        Some(Box::pin(DcsChange::run_planned(change, host)))
    }

    fn check(&self, cx: &StepContext) -> Check {
        if PatroniFact::of(cx.facts).is_none() {
            return Check::InSync(
                "Patroni is not running here yet: PostgreSQL starts on its configuration"
                    .to_owned(),
            );
        }
        let elsewhere = listening_elsewhere(&self.listen, cx.cluster_facts);
        if elsewhere.is_empty() {
            return Check::InSync(
                "every member listens where its configuration says".to_owned(),
            );
        }
        let procedure = DcsChange {
            url: self.url.clone(),
            patch: Value::Object(Default::default()),
            restart: true,
            members: self.members.clone(),
            switchover_first: self.switchover_first,
            awaited: elsewhere.keys().cloned().collect(),
        };
        let reason = format!(
            "a rolling restart once Patroni has read its new configuration, replicas first, the leader last{}: {}",
            if self.switchover_first {
                " after a switchover to a restarted replica"
            } else {
                ""
            },
            elsewhere.into_values().collect::<Vec<_>>().join("; ")
        );
        let mut change = cx.change(
            self.kind(),
            Action::Restart,
            "PostgreSQL listen addresses",
            reason,
            Vec::new(),
        );
        change.procedure = serde_json::to_value(&procedure).ok();
        Check::Changes(vec![change])
    }
}
