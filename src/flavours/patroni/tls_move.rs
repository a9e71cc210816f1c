//! Moving a running Patroni cluster that an earlier pgha built without TLS (etcd on plain
//! http, the REST API on http) to the cluster's TLS in place, without an outage. The playbook
//! does it in planned steps, each deciding from the facts, so an interrupted run continues:
//!
//! 1. `patroni_tls_pause` (the primary's host): Patroni pauses (maintenance mode: no failover,
//!    no demotion when the DCS is out of reach, PostgreSQL left running when Patroni stops),
//!    and PostgreSQL takes its TLS parameters through the DCS before any rule asks for TLS.
//! 2. `etcd_tls_move` (each etcd member, one at a time): the member's peer URL in the
//!    membership becomes https, then it restarts on its https configuration. A moved member
//!    dials the others on http; they cannot dial it back (no client certificate), but raft
//!    needs one direction of dialing per pair, so the cluster keeps its quorum throughout.
//! 3. `patroni_tls_restart` (each PostgreSQL member, one at a time): Patroni restarts on its
//!    new configuration (etcd over https, the REST API on https); paused, it leaves
//!    PostgreSQL running and takes its leader key back.
//! 4. `patroni_tls_resume` (the primary's host): Patroni resumes.
//!
//! The facts say which members still answer on http: the probes ask http when https does not
//! answer (`probes`).

use std::collections::BTreeMap;

use crate::facts::HostFacts;
use crate::flavours::patroni::probes::{EtcdFact, PatroniFact, Scheme};

/// Left on the host that paused Patroni for the move, until it resumes it: a pause pgha did
/// not make (its DBA's) is left as it is.
pub const PAUSED_MARKER: &str = "/var/lib/pgha/patroni-paused-for-tls";

/// The members (etcd and Patroni) still answering on http only, as `etcd pg1`, `Patroni pg2`.
/// `etcd_data_dir`: where a member of this cluster keeps its data (an etcd that answers on
/// http without it there is not the cluster's: Debian's own, started by its package).
pub fn still_on_http(facts: &BTreeMap<String, HostFacts>, etcd_data_dir: &str) -> Vec<String> {
    let mut out: Vec<String> = etcd_on_http(facts, etcd_data_dir)
        .into_iter()
        .map(|host| format!("etcd {host}"))
        .collect();
    out.extend(
        facts
            .iter()
            .filter(|(_, f)| PatroniFact::of(f).is_some_and(|p| p.answers_on_other_than("https")))
            .map(|(host, _)| format!("Patroni {host}")),
    );
    out
}

/// The formed etcd members of the cluster still on http, in the order of `facts` (host names).
pub fn etcd_on_http(facts: &BTreeMap<String, HostFacts>, etcd_data_dir: &str) -> Vec<String> {
    let formed = format!("{etcd_data_dir}/member");
    facts
        .iter()
        .filter(|(_, f)| {
            f.present.contains(&formed)
                && EtcdFact::of(f).is_some_and(|e| e.other_scheme == Some(Scheme::Http))
        })
        .map(|(h, _)| h.clone())
        .collect()
}

/// The cluster's formed etcd members that answer (on either scheme): the count of a move.
pub fn etcd_members(facts: &BTreeMap<String, HostFacts>, etcd_data_dir: &str) -> Vec<String> {
    let formed = format!("{etcd_data_dir}/member");
    facts
        .iter()
        .filter(|(_, f)| {
            f.present.contains(&formed)
                && EtcdFact::of(f).is_some_and(|e| e.healthy || e.other_scheme.is_some())
        })
        .map(|(h, _)| h.clone())
        .collect()
}

/// The Patroni members that answer (on either scheme).
pub fn patroni_members(facts: &BTreeMap<String, HostFacts>) -> Vec<String> {
    facts
        .iter()
        .filter(|(_, f)| PatroniFact::of(f).is_some())
        .map(|(h, _)| h.clone())
        .collect()
}

/// `(n of m)` for `host` among `hosts`.
pub fn ordinal(host: &str, hosts: &[String]) -> String {
    match hosts.iter().position(|h| h == host) {
        Some(i) => format!("({} of {})", i + 1, hosts.len()),
        None => String::new(),
    }
}

/// Whether Patroni is paused, as the member on this host says (or the DCS it reads).
pub fn paused(facts: &HostFacts) -> bool {
    PatroniFact::of(facts).is_some_and(|p| {
        p.paused
            || p.dcs
                .and_then(|d| d.get("pause").cloned())
                .is_some_and(|v| v == serde_json::Value::Bool(true))
    })
}
