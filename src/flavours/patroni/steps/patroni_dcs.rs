//! Patroni's dynamic configuration (the DCS `/config`): timing, synchronous mode and the
//! PostgreSQL parameters, compared with what Patroni holds and changed with a PATCH (what
//! `patronictl edit-config` does). When a change, or drift, needs a restart, the members are
//! restarted through their REST APIs one at a time, replicas first, the leader last: the
//! change is made by the `DcsChange` procedure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::flavours::patroni::dcs_change::DcsChange;
use crate::flavours::patroni::probes::PatroniFact;
use crate::model::pg_params::{self, Context};
use crate::steps::{file::unified_diff, Action, Change, Check, Module, StepContext};
use crate::transport::{BoxFuture, Transport};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatroniDcs {
    /// This member's REST API (the leader's: the DCS is the cluster's).
    pub url: String,
    /// Every PostgreSQL member: name -> REST API, for the rolling restart.
    pub members: BTreeMap<String, String>,
    /// The wanted values; keys absent here are left as Patroni has them.
    pub settings: Value,
    /// In a rolling restart, hand the leader role to a restarted replica (the synchronous
    /// standby first) instead of restarting the leader in place.
    #[serde(default)]
    pub switchover_first: bool,
}

/// Values as Patroni's /config returns them: numbers may come back as strings and the other
/// way round; parameters compare by their meaning (`128MB` = `16384` pages).
fn same(key: &str, want: &Value, have: &Value) -> bool {
    if want == have {
        return true;
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match pg_params::lookup(key) {
        Some(p) => pg_params::same_value(p, &text(want), &text(have)),
        None => text(want) == text(have),
    }
}

/// `host:port` of a `standby_cluster` value.
fn endpoint(source: &serde_json::Map<String, Value>) -> String {
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "?".to_owned(),
    };
    format!("{}:{}", text(source.get("host")), text(source.get("port")))
}

/// Maps of the DCS whose every entry is pgha's: entries missing from the inventory go.
const OWNED_MAPS: [&str; 1] = ["slots"];

/// The wanted keys whose live value differs, as a JSON object shaped like the settings.
fn differences(want: &Value, have: &Value, restart_for: &mut Vec<String>) -> Value {
    let mut out = serde_json::Map::new();
    let (Value::Object(w), h) = (want, have) else {
        return Value::Null;
    };
    for (k, wv) in w {
        let hv = h.get(k).unwrap_or(&Value::Null);
        if OWNED_MAPS.contains(&k.as_str()) {
            // A PATCH merges maps: an entry pgha no longer wants is removed with a null.
            if wv != hv {
                let mut patch = wv.as_object().cloned().unwrap_or_default();
                for old in hv.as_object().into_iter().flat_map(|o| o.keys()) {
                    patch.entry(old.clone()).or_insert(Value::Null);
                }
                out.insert(
                    k.clone(),
                    if wv.is_null() {
                        Value::Null
                    } else {
                        Value::Object(patch)
                    },
                );
            }
        } else if let Value::Object(_) = wv {
            let d = differences(wv, hv, restart_for);
            if d.as_object().is_some_and(|o| !o.is_empty()) {
                out.insert(k.clone(), d);
            }
        } else if !same(k, wv, hv) {
            if pg_params::lookup(k).is_some_and(|p| p.context == Context::Postmaster) {
                restart_for.push(format!("{k} (context postmaster)"));
            }
            out.insert(k.clone(), wv.clone());
        }
    }
    Value::Object(out)
}

/// The live values of the keys in `shape`, for the before side of the diff.
fn subset(shape: &Value, have: &Value) -> Value {
    match shape {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), subset(v, have.get(k).unwrap_or(&Value::Null))))
                .collect(),
        ),
        _ => have.clone(),
    }
}

impl Module for PatroniDcs {
    fn kind(&self) -> &'static str {
        "patroni_dcs"
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
        let Some(live) = PatroniFact::of(cx.facts).and_then(|p| p.dcs) else {
            return Check::InSync(
                "Patroni is not running here yet: its bootstrap writes this configuration"
                    .to_owned(),
            );
        };
        let mut restart_for = Vec::new();
        let patch = differences(&self.settings, &live, &mut restart_for);
        let pending: Vec<String> = cx
            .cluster_facts
            .iter()
            .filter(|(name, f)| {
                self.members.contains_key(*name)
                    && PatroniFact::of(f).is_some_and(|p| p.pending_restart)
            })
            .map(|(name, _)| format!("{name} is pending a restart"))
            .collect();
        let changed = patch.as_object().is_some_and(|o| !o.is_empty());
        if !changed && pending.is_empty() {
            return Check::InSync("the DCS configuration matches".to_owned());
        }
        restart_for.extend(pending);
        let restart = !restart_for.is_empty();

        let procedure = DcsChange {
            url: self.url.clone(),
            patch: if changed {
                patch.clone()
            } else {
                Value::Object(Default::default())
            },
            restart: !restart_for.is_empty(),
            members: self.members.clone(),
            switchover_first: self.switchover_first,
            awaited: Vec::new(),
        };
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
        let mut reason = match (&patch["standby_cluster"], &live["standby_cluster"]) {
            (Value::Null, Value::Object(source)) if patch.get("standby_cluster").is_some() => format!(
                "PROMOTES this standby cluster to a primary cluster: `standby_cluster` is gone from the inventory, so it stops replicating from {} and its leader accepts writes",
                endpoint(source)
            ),
            (Value::Object(source), Value::Null) => format!(
                "DEMOTES this cluster to a standby cluster of {}: its leader stops accepting writes and follows that cluster; what was written only here is not kept",
                endpoint(source)
            ),
            _ if changed => "the DCS configuration differs".to_owned(),
            _ => "no DCS change".to_owned(),
        };
        if restart {
            reason.push_str(&format!(
                "; then a rolling restart, replicas first, the leader last{}: {}",
                if self.switchover_first {
                    " after a switchover to a restarted replica"
                } else {
                    ""
                },
                restart_for.join("; ")
            ));
        }
        let mut change = cx.change(
            self.kind(),
            if changed {
                Action::Update
            } else {
                Action::Restart
            },
            "Patroni /config",
            reason,
            Vec::new(),
        );
        change.procedure = serde_json::to_value(&procedure).ok();
        if changed {
            change.diff = Some(unified_diff(
                &pretty(&subset(&patch, &live)),
                &pretty(&patch),
                "DCS /config",
            ));
        }
        Check::Changes(vec![change])
    }
}
