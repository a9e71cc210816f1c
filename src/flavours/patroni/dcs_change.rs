//! The procedure behind a change of Patroni's dynamic configuration: PATCH /config (what
//! `patronictl edit-config` does), wait for a standby cluster's promotion when it is one, and
//! when a change needs it, restart the members one at a time through their REST APIs,
//! replicas first, the leader last (or hand the leader role to a restarted replica first), each
//! running again before the next. Driven from the leader's host with the REST client.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
// tokio's clock, so tests can run these waits on a paused one.
use tokio::time::Instant;

use crate::flavours::patroni::rest::{self, Request};
use crate::flavours::ProcedureError;
use crate::transport::Transport;

/// What the procedure does, as the plan decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DcsChange {
    /// The leader's REST API.
    pub url: String,
    /// The keys to PATCH (empty: no DCS change, only restarts).
    pub patch: Value,
    pub restart: bool,
    /// Every PostgreSQL member: name -> REST API.
    pub members: BTreeMap<String, String>,
    /// Hand the leader role to a restarted replica before restarting the old leader.
    pub switchover_first: bool,
    /// The members expected to ask for a restart (empty: every member), waited for before
    /// the first restart.
    #[serde(default)]
    pub awaited: Vec<String>,
}

/// A member that takes writes (Patroni 3.0 says `master`, later versions `primary`).
fn is_primary(member: &Value) -> bool {
    matches!(member["role"].as_str(), Some("master" | "primary"))
}

/// A member that holds the leader key: a primary, or a standby cluster's standby leader.
fn leads(member: &Value) -> bool {
    is_primary(member) || member["role"].as_str() == Some("standby_leader")
}

fn failed(host: &dyn Transport, what: &str, reason: String) -> ProcedureError {
    ProcedureError::Step {
        host: host.host().to_owned(),
        what: what.to_owned(),
        reason,
    }
}

/// What a member says of itself (`GET /patroni`); `{}` when it does not answer.
async fn member(host: &dyn Transport, url: &str) -> Result<Value, ProcedureError> {
    let reply = rest::one(host, Request::get(format!("{url}/patroni"))).await?;
    Ok(if reply.ok() { reply.body } else { json!({}) })
}

/// Wait until the member at `url` takes writes; whether it did within `seconds`.
async fn becomes_primary(
    host: &dyn Transport,
    url: &str,
    seconds: u64,
) -> Result<bool, ProcedureError> {
    wait_until(seconds, || async {
        Ok(is_primary(&member(host, url).await?))
    })
    .await
}

/// Poll `done` once a second until it holds or `seconds` pass; whether it held.
async fn wait_until<F, Fut>(seconds: u64, mut done: F) -> Result<bool, ProcedureError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, ProcedureError>>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if done().await? {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl DcsChange {
    /// The procedure a planned change carries (the plan decided it), run from `host`.
    pub async fn run_planned(
        change: &crate::steps::Change,
        host: &dyn Transport,
    ) -> Result<Vec<String>, String> {
        let procedure: DcsChange = change
            .procedure
            .clone()
            .and_then(|p| serde_json::from_value(p).ok())
            .ok_or_else(|| "the planned procedure is missing".to_owned())?;
        procedure.run(host).await.map_err(|e| e.to_string())
    }

    /// Run it from `host` (the leader's); what it did, a line per event.
    pub async fn run(&self, host: &dyn Transport) -> Result<Vec<String>, ProcedureError> {
        let mut said = Vec::new();
        let patching = self.patch.as_object().is_some_and(|o| !o.is_empty());
        if patching {
            let reply = rest::one(
                host,
                Request::patch(format!("{}/config", self.url), self.patch.clone()),
            )
            .await?;
            if reply.status != 200 {
                return Err(failed(
                    host,
                    "PATCH /config",
                    format!("answered {}: {}", reply.status, reply.body),
                ));
            }
        }
        if self.patch.get("standby_cluster") == Some(&Value::Null) {
            // The standby cluster becomes a primary cluster: wait for the promotion.
            if !becomes_primary(host, &self.url, 90).await? {
                return Err(failed(
                    host,
                    "promotion",
                    "the standby leader was not promoted within 90 s".to_owned(),
                ));
            }
            said.push("promoted: this cluster is a primary cluster now".to_owned());
        }
        if !self.restart {
            return Ok(said);
        }
        // Patroni notices a restart-level change on its next loop: wait until every member
        // says so (a member that never does is still restarted if it asks by then).
        wait_until(60, || async {
            for (name, url) in &self.members {
                if !self.awaited.is_empty() && !self.awaited.contains(name) {
                    continue;
                }
                if member(host, url).await?["pending_restart"] != json!(true) {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await?;
        // Replicas first, the leader last.
        let mut order = Vec::new();
        for (name, url) in &self.members {
            let leader = leads(&member(host, url).await?);
            order.push((leader, name.clone(), url.clone()));
        }
        order.sort();
        for (_, name, url) in order {
            let m = member(host, &url).await?;
            if m["pending_restart"] != json!(true) {
                continue;
            }
            if leads(&m) && self.switchover_first {
                if let Some(to) = self.switchover(host, &name, &url).await? {
                    said.push(format!(
                        "switched over from {name} to {to} before its restart"
                    ));
                    // Demoted, the old leader restarts as a replica: often that was the
                    // restart it needed.
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    wait_until(120, || async {
                        Ok(member(host, &url).await?["state"] == json!("running"))
                    })
                    .await?;
                    if member(host, &url).await?["pending_restart"] != json!(true) {
                        said.push(format!("restarted {name}"));
                        continue;
                    }
                }
            }
            let reply = rest::one(
                host,
                Request::post(format!("{url}/restart"), json!({"restart_pending": true})),
            )
            .await?;
            if !matches!(reply.status, 200 | 202) {
                return Err(failed(
                    host,
                    "restart",
                    format!(
                        "restart of {name} answered {}: {}",
                        reply.status, reply.body
                    ),
                ));
            }
            let back = wait_until(120, || async {
                let m = member(host, &url).await?;
                Ok(m["state"] == json!("running") && m["pending_restart"] != json!(true))
            })
            .await?;
            if !back {
                return Err(failed(
                    host,
                    "restart",
                    format!("{name} did not come back from its restart within 120 s"),
                ));
            }
            said.push(format!("restarted {name}"));
        }
        Ok(said)
    }

    /// Hand the leader role over: to the synchronous standby first (in synchronous mode the
    /// only allowed candidate), else the least lagging running replica that may fail over.
    /// The new leader's name, or None when no member can take over.
    async fn switchover(
        &self,
        host: &dyn Transport,
        name: &str,
        url: &str,
    ) -> Result<Option<String>, ProcedureError> {
        let cluster = rest::one(host, Request::get(format!("{url}/cluster"))).await?;
        let mut candidates: Vec<(bool, u64, String)> = cluster.body["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["name"].as_str() != Some(name))
            .filter(|m| matches!(m["state"].as_str(), Some("running" | "streaming")))
            .filter(|m| m["tags"]["nofailover"] != json!(true))
            .filter_map(|m| {
                // No lag reported is none; one Patroni cannot tell ("unknown") is the most.
                let lag = m.get("lag").map_or(0, |l| l.as_u64().unwrap_or(u64::MAX));
                let sync = m["role"].as_str() == Some("sync_standby");
                m["name"].as_str().map(|n| (!sync, lag, n.to_owned()))
            })
            .collect();
        candidates.sort();
        let Some((_, _, to)) = candidates.into_iter().next() else {
            return Ok(None);
        };
        let reply = rest::one(
            host,
            Request::post(
                format!("{url}/switchover"),
                json!({"leader": name, "candidate": to}),
            ),
        )
        .await?;
        if !matches!(reply.status, 200 | 202) {
            return Err(failed(
                host,
                "switchover",
                format!(
                    "switchover from {name} to {to} answered {}: {}",
                    reply.status, reply.body
                ),
            ));
        }
        let to_url = self.members.get(&to).cloned().unwrap_or_default();
        if !becomes_primary(host, &to_url, 120).await? {
            return Err(failed(
                host,
                "switchover",
                format!("{to} did not take over from {name} within 120 s"),
            ));
        }
        Ok(Some(to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::fake::FakeTransport;
    use crate::transport::Output;

    fn replies(list: &[(&str, &str)]) -> FakeTransport {
        list.iter()
            .fold(FakeTransport::new("pg1"), |f, (needle, body)| {
                f.reply(
                    needle,
                    Output {
                        status: 0,
                        stdout: format!("[{body}]"),
                        stderr: String::new(),
                    },
                )
            })
    }

    fn change(patch: Value, restart: bool) -> DcsChange {
        DcsChange {
            url: "http://10.0.0.1:8008".into(),
            patch,
            restart,
            members: [
                ("pg1".to_owned(), "http://10.0.0.1:8008".to_owned()),
                ("pg2".to_owned(), "http://10.0.0.2:8008".to_owned()),
            ]
            .into(),
            switchover_first: false,
            awaited: Vec::new(),
        }
    }

    fn paused() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime")
    }

    #[test]
    fn promoting_a_standby_cluster_patches_then_waits_for_the_leader() {
        let host = replies(&[
            (r#""method":"PATCH""#, r#"{"status": 200, "body": {}}"#),
            (
                "/patroni",
                r#"{"status": 200, "body": {"role": "master", "state": "running"}}"#,
            ),
        ]);
        let said = paused()
            .block_on(change(json!({"standby_cluster": null}), false).run(&host))
            .expect("promoted");
        assert_eq!(said, ["promoted: this cluster is a primary cluster now"]);
        let commands = host.commands();
        assert!(commands[0].contains(r#""method":"PATCH","url":"http://10.0.0.1:8008/config""#));
        assert!(commands[0].contains(r#""body":{"standby_cluster":null}"#));
    }

    #[test]
    fn a_refused_patch_stops_before_any_restart() {
        let host = replies(&[(
            r#""method":"PATCH""#,
            r#"{"status": 409, "body": "conflict"}"#,
        )]);
        let err = paused()
            .block_on(change(json!({"ttl": 20}), true).run(&host))
            .expect_err("refused");
        assert!(err.to_string().contains("answered 409"), "{err}");
        assert!(!host.commands().iter().any(|c| c.contains("/restart")));
    }

    #[test]
    fn a_member_that_does_not_come_back_from_its_restart_is_named() {
        let host = replies(&[
            (r#""method":"POST""#, r#"{"status": 200, "body": {}}"#),
            (
                "/patroni",
                r#"{"status": 200, "body": {"role": "replica", "state": "starting", "pending_restart": true}}"#,
            ),
        ]);
        let err = paused()
            .block_on(change(json!({}), true).run(&host))
            .expect_err("never back");
        assert!(
            err.to_string()
                .contains("pg1 did not come back from its restart within 120 s"),
            "{err}"
        );
    }
}
