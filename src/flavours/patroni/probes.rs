//! What pgha asks a Patroni host in the facts round trip, and the parsers of the answers: the
//! local etcd member's health and whether it leads, and the local Patroni member with the DCS
//! configuration it holds.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::facts::gather::Probe;
use crate::facts::HostFacts;
use crate::flavours::patroni::rest::{self, Expect, Request};

pub const ETCD: &str = "etcd";
pub const PATRONI: &str = "patroni";

/// The shell condition that holds once the etcd member at `url` is healthy and its cluster
/// version agreed. A new etcd cluster reports version 3.0.0 until its members agree on one;
/// Patroni reads it once when it starts and runs without watches on 3.0 (replicas then notice
/// a dead leader a whole loop_wait late), so a member counts as healthy only once it is agreed.
/// `etcdctl`: the command with its client certificate, when etcd takes TLS.
pub fn etcd_ready_condition(etcdctl: &str, url: &str) -> String {
    format!(
        "{etcdctl} --dial-timeout=1s --command-timeout=2s --endpoints={} endpoint health >/dev/null 2>&1 && {}",
        shell_words::quote(url),
        rest::condition(
            &[quick(Request::get(format!("{url}/version")))],
            &[vec![Expect::is_not("etcdcluster", json!("3.0.0"))]],
        )
    )
}

/// Probes must not hold the facts round trip up.
fn quick(r: Request) -> Request {
    Request { timeout: 2, ..r }
}

/// Health first, then (only when healthy) whether the member leads and the membership it
/// knows: `healthy`, `leader` or `follower`, `members <etcdctl member list JSON>`; or
/// `unhealthy`. `fallback`: the other scheme's etcdctl and URL, asked when
/// the wanted one does not answer (a member an earlier pgha started on http, before its move
/// to https): then `healthy on <scheme>` alone.
pub fn etcd_probe(etcdctl: &str, url: &str, fallback: Option<(&str, &str)>) -> Probe {
    let leads = rest::condition(
        &[quick(
            Request::post(format!("{url}/v3/maintenance/status"), json!({})).to_etcd(),
        )],
        &[vec![Expect::same_as("leader", "header.member_id")]],
    );
    let otherwise = match fallback {
        Some((other_etcdctl, other_url)) => format!(
            "elif {}; then echo 'healthy on {}'; ",
            etcd_ready_condition(other_etcdctl, other_url),
            scheme_of(other_url)
        ),
        None => String::new(),
    };
    Probe {
        name: ETCD,
        script: format!(
            "if {}; then echo healthy; if {leads}; then echo leader; else echo follower; fi; printf 'members '; {etcdctl} --dial-timeout=1s --command-timeout=2s --endpoints={} member list -w json 2>/dev/null | tr -d '\\n'; echo; {otherwise}else echo unhealthy; fi",
            etcd_ready_condition(etcdctl, url),
            shell_words::quote(url),
        ),
    }
}

/// `http` or `https`, as a URL starts.
fn scheme_of(url: &str) -> &str {
    url.split("://").next().unwrap_or("")
}

/// The member (`GET /patroni`), the DCS configuration (`GET /config`) and the members the DCS
/// holds (`GET /cluster`: a member that left the inventory stays there until its key
/// expires): one line of replies, then the scheme that answered. `fallback`: the same REST API on the other scheme, asked when
/// the wanted one does not answer (a member an earlier pgha configured without TLS).
pub fn patroni_probe(url: &str, fallback: Option<&str>) -> Probe {
    let ask = |url: &str| {
        rest::shell(&[
            quick(Request::get(format!("{url}/patroni"))),
            quick(Request::get(format!("{url}/config"))),
            quick(Request::get(format!("{url}/cluster"))),
        ])
    };
    // A reply list starting with status 0: nothing answered there.
    let silent = r#"'[{"status": 0,'*"#;
    let script = match fallback {
        Some(other) => format!(
            "r=$({}); case \"$r\" in {silent}) o=$({}); case \"$o\" in {silent}) echo \"$r\";; *) echo \"$o\"; echo {};; esac;; *) echo \"$r\"; echo {};; esac",
            ask(url),
            ask(other),
            scheme_of(other),
            scheme_of(url)
        ),
        None => format!("{}; echo {}", ask(url), scheme_of(url)),
    };
    Probe {
        name: PATRONI,
        script,
    }
}

/// The local etcd member as the probe saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtcdFact {
    /// Healthy on the scheme the inventory asks for.
    pub healthy: bool,
    /// Known when it is healthy.
    pub leader: Option<bool>,
    /// Healthy only on the other scheme (`http` for a member not moved to https yet).
    pub other_scheme: Option<Scheme>,
}

/// How a member is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn parse(text: &str) -> Option<Scheme> {
        match text.trim() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl EtcdFact {
    /// None when the host was not asked (no etcd member there).
    pub fn of(facts: &HostFacts) -> Option<EtcdFact> {
        let lines = facts.probe(ETCD)?;
        let first = lines.first().map(|l| l.trim()).unwrap_or("");
        let healthy = first == "healthy";
        let other_scheme = first.strip_prefix("healthy on ").and_then(Scheme::parse);
        let leader = lines
            .get(1)
            .map(|l| l.trim())
            .filter(|l| !l.is_empty() && healthy)
            .map(|l| l == "leader");
        Some(EtcdFact {
            healthy,
            leader,
            other_scheme,
        })
    }
}

/// Whether etcd leads moves on its own (Patroni's callback moves it): no reason for a stale
/// plan. The membership stays (without its header, which names the answering leader's term).
pub fn forget_etcd_leadership(facts: &mut HostFacts) {
    let members = EtcdMember::list_of(facts);
    if let Some(lines) = facts.probes.get_mut(ETCD) {
        lines.truncate(1);
        if let Some(members) = members {
            lines.push(String::new());
            lines.push(format!(
                "members {}",
                serde_json::json!({ "members": members })
            ));
        }
    }
    // Member keys expire on their own (a departed member's, ttl after its Patroni stopped),
    // and the members' lag moves all the time: the DCS's member list is left out.
    if let Some(line) = facts.probes.get_mut(PATRONI).and_then(|l| l.first_mut()) {
        if let Ok(mut replies) = serde_json::from_str::<Vec<serde_json::Value>>(line) {
            replies.truncate(2);
            *line = serde_json::Value::Array(replies).to_string();
        }
    }
}

/// One member of the etcd cluster as `etcdctl member list` names it. A member added but not
/// started yet has no name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdMember {
    #[serde(rename = "ID")]
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    pub is_learner: bool,
}

impl EtcdMember {
    /// The membership the local member knows, when it is healthy.
    pub fn list_of(facts: &HostFacts) -> Option<Vec<EtcdMember>> {
        let lines = facts.probe(ETCD)?;
        let json = lines
            .iter()
            .find_map(|l| l.trim().strip_prefix("members "))?;
        #[derive(Deserialize)]
        struct List {
            #[serde(default)]
            members: Vec<EtcdMember>,
        }
        serde_json::from_str::<List>(json).ok().map(|l| l.members)
    }

    /// The hexadecimal ID etcdctl's member commands take.
    pub fn hex_id(&self) -> String {
        format!("{:x}", self.id)
    }

    /// A voting member that runs (a learner or a member added and never started is neither).
    pub fn votes_and_started(&self) -> bool {
        !self.is_learner && !self.name.is_empty()
    }
}

/// A member in Patroni's DCS: its name, role and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcsMember {
    pub name: String,
    pub role: String,
    pub state: String,
}

impl DcsMember {
    /// The members the local Patroni read from the DCS; None when it did not answer.
    pub fn list_of(facts: &HostFacts) -> Option<Vec<DcsMember>> {
        let replies = rest::parse(facts.probe(PATRONI)?.first()?)?;
        let reply = replies.get(2).filter(|r| r.ok())?;
        let members = reply.body.get("members")?.as_array()?;
        Some(
            members
                .iter()
                .map(|m| {
                    let text = |k: &str| m.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                    DcsMember {
                        name: text("name"),
                        role: text("role"),
                        state: text("state"),
                    }
                })
                .collect(),
        )
    }

    pub fn is_leader(&self) -> bool {
        matches!(
            self.role.as_str(),
            "leader" | "master" | "primary" | "standby_leader"
        )
    }
}

/// What a Patroni member says of itself (`GET /patroni`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PatroniFact {
    /// `running`, `starting`, `stopped`, ...
    pub state: String,
    /// `master`/`primary`, `replica`, `standby_leader`.
    pub role: String,
    pub timeline: u32,
    pub pending_restart: bool,
    /// In maintenance mode, as the member last read the DCS (it answers so even when the DCS
    /// is out of its reach).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// The live dynamic configuration (`GET /config`), as Patroni holds it in the DCS.
    pub dcs: Option<serde_json::Value>,
    /// `http` or `https`: how its REST API answered (the inventory's scheme unless the member
    /// still runs as an earlier pgha configured it). Empty when not known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scheme: String,
}

impl PatroniFact {
    /// Patroni's own answer, or None when it does not run (or was not asked).
    pub fn of(facts: &HostFacts) -> Option<PatroniFact> {
        let lines = facts.probe(PATRONI)?;
        let replies = rest::parse(lines.first()?)?;
        let body = |i: usize| {
            replies
                .get(i)
                .filter(|r| r.ok())
                .map(|r| r.body.clone())
                .unwrap_or(serde_json::Value::Null)
        };
        let mut fact = parse(&body(0), body(1))?;
        fact.scheme = lines
            .get(1)
            .and_then(|l| Scheme::parse(l))
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        Some(fact)
    }

    /// Whether its REST API answered on another scheme than `wanted`.
    pub fn answers_on_other_than(&self, wanted: &str) -> bool {
        !self.scheme.is_empty() && self.scheme != wanted
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role.as_str(), "master" | "primary" | "standby_leader")
    }
}

fn parse(m: &serde_json::Value, config: serde_json::Value) -> Option<PatroniFact> {
    let state = m.get("state")?.as_str()?.to_owned();
    Some(PatroniFact {
        state,
        role: m
            .get("role")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned(),
        timeline: m
            .get("timeline")
            .and_then(|v| v.as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0),
        pending_restart: m
            .get("pending_restart")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        paused: m.get("pause").and_then(|v| v.as_bool()).unwrap_or(false),
        dcs: Some(config).filter(|v| v.as_object().is_some_and(|o| !o.is_empty())),
        scheme: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(probe: &str, lines: &[&str]) -> HostFacts {
        let mut f = HostFacts::default();
        f.probes.insert(
            probe.to_owned(),
            lines.iter().map(|l| (*l).to_owned()).collect(),
        );
        f
    }

    #[test]
    fn a_leader_with_its_dcs_configuration() {
        let f = facts(
            PATRONI,
            &[
                r#"[{"status": 200, "body": {"state": "running", "role": "master", "timeline": 3, "pending_restart": true}}, {"status": 200, "body": {"ttl": 20, "loop_wait": 10}}]"#,
            ],
        );
        let p = PatroniFact::of(&f).expect("answered");
        assert!(p.is_leader() && p.pending_restart);
        assert_eq!(p.timeline, 3);
        assert_eq!(p.dcs.expect("dcs")["ttl"], 20);
    }

    #[test]
    fn the_dcs_members_and_a_digest_without_them() {
        let mut f = facts(
            PATRONI,
            &[
                r#"[{"status": 200, "body": {"state": "running", "role": "master"}}, {"status": 200, "body": {}}, {"status": 200, "body": {"members": [{"name": "pg1", "role": "leader", "state": "running", "lag": 0}, {"name": "pg3", "role": "replica", "state": "running", "lag": 5}]}}]"#,
                "https",
            ],
        );
        let members = DcsMember::list_of(&f).expect("listed");
        assert_eq!(members.len(), 2);
        assert!(members[0].is_leader() && !members[1].is_leader());
        forget_etcd_leadership(&mut f);
        assert_eq!(DcsMember::list_of(&f), None, "left out of the digest");
        assert!(PatroniFact::of(&f).is_some_and(|p| p.is_leader()));
    }

    #[test]
    fn a_member_that_is_down_answers_nothing() {
        let down = r#"[{"status": 0, "body": "refused"}, {"status": 0, "body": "refused"}]"#;
        assert_eq!(PatroniFact::of(&facts(PATRONI, &[down])), None);
        assert_eq!(PatroniFact::of(&HostFacts::default()), None, "not asked");
    }

    #[test]
    fn a_member_still_on_http_says_so() {
        let reply = r#"[{"status": 200, "body": {"state": "running", "role": "master", "pause": true}}, {"status": 503, "body": null}]"#;
        let p = PatroniFact::of(&facts(PATRONI, &[reply, "http"])).expect("answered");
        assert!(p.answers_on_other_than("https") && p.paused && p.dcs.is_none());
        let p = PatroniFact::of(&facts(PATRONI, &[reply, "https"])).expect("answered");
        assert!(!p.answers_on_other_than("https"));
        let e = EtcdFact::of(&facts(ETCD, &["healthy on http"])).expect("asked");
        assert_eq!((e.healthy, e.other_scheme), (false, Some(Scheme::Http)));
    }

    #[test]
    fn the_probes_fall_back_to_http_only_when_asked() {
        let with = patroni_probe("https://10.0.0.1:8008", Some("http://10.0.0.1:8008"));
        assert!(
            with.script.contains("http://10.0.0.1:8008/patroni")
                && with.script.contains("echo http")
        );
        let without = patroni_probe("https://10.0.0.1:8008", None);
        assert!(!without.script.contains("http://10.0.0.1:8008/patroni"));
        let etcd = etcd_probe(
            "etcdctl --cert=x",
            "https://127.0.0.1:2379",
            Some(("etcdctl", "http://127.0.0.1:2379")),
        );
        assert!(etcd.script.contains("echo 'healthy on http'"));
    }

    #[test]
    fn etcd_health_and_leadership() {
        let leader = EtcdFact::of(&facts(ETCD, &["healthy", "leader"])).expect("asked");
        assert_eq!((leader.healthy, leader.leader), (true, Some(true)));
        let down = EtcdFact::of(&facts(ETCD, &["unhealthy"])).expect("asked");
        assert_eq!((down.healthy, down.leader), (false, None));
        let mut moving = facts(ETCD, &["healthy", "follower"]);
        forget_etcd_leadership(&mut moving);
        assert_eq!(EtcdFact::of(&moving).and_then(|e| e.leader), None);
    }
}
