//! Checking a host's steps against its facts: the planned changes, what is already in place
//! (with the reason) and what was refused. Handlers are checked only when a step that
//! notifies them has changes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::facts::HostFacts;
use crate::model::Secrets;
use crate::plan::{Change, Check};
use crate::playbook::Step;
use crate::steps::StepContext;

/// One step's outcome in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOutcome {
    pub step: String,
    pub kind: String,
    #[serde(flatten)]
    pub status: Status,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    InSync {
        reason: String,
    },
    Changes {
        changes: Vec<Change>,
    },
    Refused {
        reason: String,
    },
    /// A handler nobody notified.
    NotNotified,
}

/// Check every step of one host.
pub fn check_host(
    host: &str,
    steps: &[Step],
    facts: &HostFacts,
    cluster_facts: &BTreeMap<String, HostFacts>,
    secrets: &Secrets,
) -> Vec<StepOutcome> {
    let mut notified = BTreeSet::new();
    let mut out = Vec::new();
    // One reload or restart planned applies every setting; a later one would only repeat it.
    let mut coalesced: BTreeSet<&str> = BTreeSet::new();
    for step in steps {
        let module = &step.module;
        // A handler runs once per notification: where it runs, the notification is used up.
        if step.handler && !notified.remove(&step.name) {
            out.push(StepOutcome {
                step: step.name.clone(),
                kind: module.kind().to_owned(),
                status: Status::NotNotified,
            });
            continue;
        }
        let cx = StepContext {
            host,
            step: &step.name,
            facts,
            cluster_facts,
            secrets,
        };
        let key = module.coalesce_key();
        let status = match module.check(&cx) {
            Check::InSync(reason) => Status::InSync { reason },
            Check::Refused(reason) => Status::Refused { reason },
            Check::Changes(_) if key.is_some_and(|k| coalesced.contains(k)) => Status::InSync {
                reason: format!(
                    "the {} planned above covers this one",
                    key.unwrap_or_default()
                ),
            },
            Check::Changes(changes) => {
                coalesced.extend(key);
                notified.extend(step.notify.iter().cloned());
                Status::Changes { changes }
            }
        };
        out.push(StepOutcome {
            step: step.name.clone(),
            kind: module.kind().to_owned(),
            status,
        });
    }
    out
}
