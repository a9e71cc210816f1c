//! Patroni's verify checks: one leader, every member running, every etcd member healthy, the
//! REST health endpoints answering as the roles say (what a load balancer sees), the
//! synchronous standby in synchronous mode, the permanent slots on the leader.

use crate::flavours::patroni::probes::{DcsMember, PatroniFact};
use crate::flavours::patroni::rest::{self, Request};
use crate::flavours::patroni::{etcd_of, Patroni};
use crate::flavours::{CheckResult, ClusterView};
use crate::model::slot_safe_name;

/// Checks polled with the role and stream checks until they pass.
pub(super) fn polled(p: &Patroni, view: &ClusterView<'_>) -> Vec<CheckResult> {
    let mut out = Vec::new();
    // Patroni names the synchronous standby a loop after the replicas join: polled with the
    // stream checks, not read once.
    if p.synchronous_mode {
        let sync = view
            .facts
            .get(&view.topology.primary)
            .and_then(|f| f.postgres.as_ref())
            .map(|pg| {
                pg.replication
                    .iter()
                    .filter(|r| r.sync_state == "sync")
                    .count()
            })
            .unwrap_or(0);
        out.push(CheckResult::new(
            &view.topology.primary,
            "synchronous standby",
            sync >= 1,
            format!("{sync} synchronous"),
        ));
    }
    departed(view, &mut out);
    out
}

/// Patroni members the leader's DCS still lists though they left the inventory, and their
/// slots: apply waits for Patroni to forget them (a key expires a ttl after its Patroni
/// stopped); polled, so verify waits too.
fn departed(view: &ClusterView<'_>, out: &mut Vec<CheckResult>) {
    let primary = &view.topology.primary;
    let Some(facts) = view.facts.get(primary) else {
        return;
    };
    let Some(listed) = DcsMember::list_of(facts) else {
        return;
    };
    let slots = facts
        .postgres
        .as_ref()
        .map(|pg| pg.slots.clone())
        .unwrap_or_default();
    for m in listed
        .iter()
        .filter(|m| view.cluster.host(&m.name).is_none())
    {
        out.push(CheckResult::new(
            primary,
            &format!("Patroni member {}", m.name),
            false,
            format!(
                "{} is not in the inventory and still a Patroni member (state {}): its key expires a ttl after its Patroni stopped",
                m.name, m.state
            ),
        ));
        let slot = slot_safe_name(&m.name);
        if slots.contains_key(&slot) {
            out.push(CheckResult::new(
                primary,
                &format!("slot {slot}"),
                false,
                format!(
                    "{} is not in the inventory: Patroni drops its slot once it forgot the member",
                    m.name
                ),
            ));
        }
    }
}

/// Under Patroni: one leader, every member running, every etcd member healthy, the REST
/// health endpoints answering as the roles say, a synchronous standby when asked for.
pub(super) async fn checks(p: &Patroni, view: &ClusterView<'_>) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let (cluster, topology) = (view.cluster, view.topology);
    let leaders: Vec<&str> = cluster
        .hosts
        .iter()
        .filter(|h| {
            view.facts
                .get(&h.name)
                .and_then(PatroniFact::of)
                .is_some_and(|pf| pf.is_leader())
        })
        .map(|h| h.name.as_str())
        .collect();
    out.push(CheckResult::new(
        &topology.primary,
        "one Patroni leader",
        leaders.len() == 1,
        format!(
            "leaders: {}",
            if leaders.is_empty() {
                "none".to_owned()
            } else {
                leaders.join(", ")
            }
        ),
    ));
    for h in cluster.hosts.iter().filter(|h| h.role.has_postgres()) {
        let state = view
            .facts
            .get(&h.name)
            .and_then(PatroniFact::of)
            .map(|pf| pf.state)
            .unwrap_or_else(|| "not answering".into());
        out.push(CheckResult::new(
            &h.name,
            "Patroni member",
            state == "running",
            format!("state {state}"),
        ));
    }
    for m in &p.etcd.members {
        let healthy = etcd_of(view.facts, m).is_some_and(|e| e.healthy);
        out.push(CheckResult::new(
            m,
            "etcd member",
            healthy,
            if healthy { "healthy" } else { "not healthy" },
        ));
    }
    // What a load balancer would see: /leader answers 200 on the leader only, /replica on
    // replicas only.
    for h in cluster.hosts.iter().filter(|h| h.role.has_postgres()) {
        let Some(t) = view.transports.get(&h.name) else {
            continue;
        };
        let url = p.rest_api(h);
        let asks: Vec<Request> = ["/leader", "/replica", "/read-only"]
            .iter()
            .map(|path| Request {
                timeout: 2,
                ..Request::get(format!("{url}{path}"))
            })
            .collect();
        let codes: Vec<String> = match rest::send(t.as_ref(), &asks).await {
            Ok(replies) => replies.iter().map(|r| r.status.to_string()).collect(),
            Err(_) => Vec::new(),
        };
        // A load balancer's replica pool leaves out the leader and `noloadbalance` members;
        // /read-only takes every running member.
        let is_leader = h.name == topology.primary;
        let want = match (is_leader, p.tags_of(&h.name).noloadbalance) {
            (true, _) => ["200", "503", "200"],
            (false, true) => ["503", "503", "200"],
            (false, false) => ["503", "200", "200"],
        };
        let ok = codes.len() == want.len() && codes.iter().zip(want).all(|(c, w)| c == w);
        out.push(CheckResult::new(
            &h.name,
            "REST /leader /replica /read-only",
            ok,
            format!("{} (wanted {})", codes.join(" "), want.join(" ")),
        ));
    }
    // Permanent slots: on the leader whoever it is, so the consumer outside survives a
    // failover.
    let leader_slots = view
        .facts
        .get(&topology.primary)
        .and_then(|f| f.postgres.as_ref())
        .map(|pg| pg.slots.clone())
        .unwrap_or_default();
    for slot in &p.permanent_slots {
        let found = leader_slots.get(slot);
        out.push(CheckResult::new(
            &topology.primary,
            &format!("permanent slot {slot}"),
            found.is_some(),
            match found {
                Some(s) if s.active => "present, in use",
                Some(_) => "present, not in use (nothing streams from it now)",
                None => "missing on the leader",
            },
        ));
    }
    out
}
