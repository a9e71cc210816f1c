//! The repmgr flavour: PostgreSQL's streaming replication with repmgr's metadata and repmgrd
//! watching it, a witness as the tie-breaker. pgha installs, writes `repmgr.conf`, the
//! repmgrd unit and a narrow sudoers file, clones and registers every node in order, and
//! reads who leads from the servers (never switching a failover back).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::facts::gather::Probe;
use crate::facts::HostFacts;
use crate::flavours::{
    BoxFuture, CheckResult, ClusterView, Derived, Entry, Failover, FailoverTiming, Flavour,
    FlavourSecret, Handover, MemberStatus, ProcedureError, Refusal, RouteDelay, SectionInput,
};
use crate::model::{Cluster, HbaRule, Host, MemberRole, Objectives, Rpo};

pub mod command;
pub mod config;
mod failover;
pub mod objectives;
pub mod probes;
mod section;
mod switchover;
mod verify;

pub use config::Repmgr;
use probes::RepmgrFact;

/// The flavour's own step kinds: one line each.
pub mod steps {
    crate::kinds! {
        repmgr_clone: RepmgrClone,
        repmgr_departed: RepmgrDeparted,
        repmgr_register: RepmgrRegister,
        repmgr_witness_identity: RepmgrWitnessIdentity,
    }
}

/// The witness: a PostgreSQL server of its own holding only repmgr's metadata, whose repmgrd
/// tells the standbys whether it still sees the primary.
pub const WITNESS_ROLE: MemberRole = MemberRole {
    name: "witness",
    runs_postgres: true,
    description: "a repmgr witness",
};

/// Where repmgr's configuration lives on every node (outside the data directory).
pub const CONFIG_FILE: &str = "/etc/repmgr.conf";
/// postgres's key for the switchover's SSH between nodes, and the peers' pinned host keys.
pub const SSH_KEY: &str = "/var/lib/postgresql/.ssh/pgha_ed25519";
pub const KNOWN_HOSTS: &str = "/var/lib/postgresql/.ssh/pgha_known_hosts";
/// Not `repmgrd.service`: systemd makes a unit of that name from Debian's init script.
pub const UNIT: &str = "pgha-repmgrd.service";

pub const ENTRY: Entry = Entry {
    name: "repmgr",
    roles: &[WITNESS_ROLE],
    host_keys: &["repmgr"],
    kinds: steps::KINDS,
    managed_parameters: &[],
    tls_dir: None,
    load,
};

fn load(input: SectionInput<'_>) -> Option<Arc<dyn Flavour>> {
    let mut reader = section::Reader {
        d: input.d,
        base: input.base,
    };
    let repmgr = reader.repmgr(
        input.section,
        input.root,
        input.hosts,
        &input.host_entries,
        input.replication,
        input.objectives,
    )?;
    Some(Arc::new(repmgr) as Arc<dyn Flavour>)
}

impl Flavour for Repmgr {
    fn name(&self) -> &'static str {
        "repmgr"
    }

    // repmgrd, then the server it watches: the host's whole stack, as a shutdown stops it.
    fn stop_units(&self, cluster: &Cluster) -> Vec<String> {
        vec![UNIT.to_owned(), crate::flavours::postgres_unit(cluster)]
    }

    fn manager_unit(&self, _cluster: &Cluster) -> Option<String> {
        Some(UNIT.to_owned())
    }

    fn fails_over_on_its_own(&self) -> bool {
        self.failover == "automatic"
    }

    fn playbook(&self) -> &'static str {
        include_str!("../../../playbooks/repmgr.yml")
    }

    fn templates(&self) -> &'static [(&'static str, &'static str)] {
        crate::embedded_templates![
            "repmgr/pgpass.j2",
            "repmgr/repmgr.conf.j2",
            "repmgr/repmgrd.service.j2",
            "repmgr/start.conf.j2",
            "repmgr/sudoers.j2",
        ]
    }

    fn secrets(&self) -> Vec<FlavourSecret<'_>> {
        vec![FlavourSecret {
            label: "repmgr.password".to_owned(),
            var: "repmgr_password",
            reference: &self.password,
            rule: None,
        }]
    }

    /// repmgr names a standby's slot after its node id.
    fn slot_name(&self, host: &str) -> String {
        format!("repmgr_slot_{}", self.node_id(host))
    }

    /// One per other data node, and a free one: a switchover needs it on the candidate.
    fn slots_needed(&self, cluster: &Cluster) -> usize {
        cluster.hosts.iter().filter(|h| h.role.holds_data()).count()
    }

    /// repmgr's own connections (metadata, checks, rejoin) to its database, from the
    /// cluster's addresses only.
    fn hba(&self, address: &str) -> Vec<HbaRule> {
        vec![HbaRule {
            kind: "host".to_owned(),
            database: self.database.clone(),
            user: self.user.clone(),
            address: Some(address.to_owned()),
            method: "scram-sha-256".to_owned(),
        }]
    }

    /// repmgr's library is loaded on every node (repmgrd needs it), with the user's; WAL is
    /// kept for rewinds unless the user says how much.
    fn parameters(&self, parameters: &mut BTreeMap<String, String>) {
        // The flavour's library comes last (`model::preload` keeps the order).
        let merged = crate::model::preload::append(
            parameters
                .get("shared_preload_libraries")
                .map(String::as_str),
            &["repmgr".to_owned()],
        );
        parameters.insert("shared_preload_libraries".to_owned(), merged);
        // A former primary is rewound from the last checkpoint before the fork: its own WAL
        // back to there must still be on disk, also after it went on alone for a while.
        parameters
            .entry("wal_keep_size".to_owned())
            .or_insert_with(|| "512MB".to_owned());
    }

    fn vars(&self, cluster: &Cluster) -> Value {
        let pg = &cluster.postgres;
        json!({
            "user": self.user,
            "database": self.database,
            "failover": self.failover,
            "monitor_interval_secs": self.monitor_interval_secs,
            "reconnect_attempts": self.reconnect_attempts,
            "reconnect_interval": self.reconnect_interval,
            "connect_timeout": self.connect_timeout,
            "primary_visibility_consensus": self.primary_visibility_consensus,
            "child_nodes_disconnect_command": self.child_nodes_disconnect_command,
            "config_file": CONFIG_FILE,
            "unit": UNIT,
            "ssh_key": SSH_KEY,
            "known_hosts": KNOWN_HOSTS,
            "pg_ctlcluster": format!("/usr/bin/pg_ctlcluster {} {}", pg.version, pg.debian_cluster),
        })
    }

    fn host_vars(&self, host: &Host) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(n) = self.nodes.get(&host.name) {
            m.insert("node_id".to_owned(), json!(n.id));
            m.insert("priority".to_owned(), json!(n.priority));
            m.insert("location".to_owned(), json!(n.location));
        }
        m
    }

    fn probes(&self, cluster: &Cluster, host: &Host) -> Vec<Probe> {
        if !host.role.has_postgres() {
            return Vec::new();
        }
        vec![probes::repmgr_probe(
            cluster.postgres.port,
            &self.database,
            cluster.postgres.version,
        )]
    }

    /// repmgrd's heartbeat moves on its own.
    fn stable_facts(&self, _facts: &mut HostFacts) {}

    /// Registration and repmgrd settle a moment after apply: polled until they pass.
    fn polled_checks(&self, view: &ClusterView<'_>) -> Vec<CheckResult> {
        verify::checks(self, view)
    }

    fn member_status(
        &self,
        host: &Host,
        _is_leader: bool,
        _sync: bool,
        facts: Option<&HostFacts>,
    ) -> MemberStatus {
        let witness = !host.role.holds_data();
        let repmgr = facts.and_then(RepmgrFact::of);
        let daemon = match repmgr.as_ref().and_then(|r| r.repmgrd) {
            Some(true) if repmgr.as_ref().and_then(|r| r.paused) == Some(true) => "paused",
            Some(true) => "running",
            Some(false) => "not running",
            None => "?",
        };
        let node = self.nodes.get(&host.name);
        MemberStatus {
            role: witness.then(|| "witness".to_owned()),
            state: None,
            columns: vec![
                ("ID", node.map_or(String::new(), |n| n.id.to_string())),
                ("REPMGRD", daemon.to_owned()),
                (
                    "PRIORITY",
                    node.map_or(String::new(), |n| n.priority.to_string()),
                ),
                (
                    "LOCATION",
                    node.map_or(String::new(), |n| n.location.clone()),
                ),
            ],
            tags: String::new(),
        }
    }

    fn status_footer(
        &self,
        _cluster: &Cluster,
        _facts: &BTreeMap<String, HostFacts>,
        _sync_standbys: &[String],
    ) -> Vec<String> {
        vec![format!(
            "repmgr: failover {}, primary visibility consensus {}, detection about {} s",
            self.failover,
            if self.primary_visibility_consensus {
                "on"
            } else {
                "off"
            },
            self.detection_seconds()
        )]
    }

    fn switchover<'a>(
        &'a self,
        view: &'a ClusterView<'a>,
        target: &'a str,
    ) -> BoxFuture<'a, Result<Handover, ProcedureError>> {
        Box::pin(switchover::switchover(view, target))
    }

    fn failover_choice(
        &self,
        view: &ClusterView<'_>,
        to: Option<&str>,
    ) -> Result<Failover, ProcedureError> {
        failover::choose(self, view, to)
    }

    fn failover<'a>(
        &'a self,
        view: &'a ClusterView<'a>,
        choice: &'a Failover,
    ) -> BoxFuture<'a, Result<Handover, ProcedureError>> {
        Box::pin(failover::failover(view, choice))
    }

    fn failover_timing(&self) -> Option<FailoverTiming> {
        objectives::timing(self)
    }

    /// rto: repmgrd's monitoring timing; rpo: refused (no synchronous replication of its
    /// own, and nothing bounds a promoted standby's lag).
    fn meet_objectives(
        &self,
        _cluster: &Cluster,
        declared: &Objectives,
        route: &RouteDelay,
    ) -> Result<Derived, Vec<Refusal>> {
        let mut out = self.clone();
        let mut refusals = Vec::new();
        // `failover: manual` with an rto was reported with the section.
        if let (Some(rto), "automatic") = (declared.rto, self.failover.as_str()) {
            let connect_timeout = u64::try_from(self.connect_timeout).unwrap_or(2);
            match objectives::derive(rto, route, connect_timeout) {
                Ok(t) => {
                    out.monitor_interval_secs = t.monitor_interval_secs;
                    out.reconnect_attempts = t.reconnect_attempts;
                    out.reconnect_interval = t.reconnect_interval;
                }
                Err(r) => refusals.push(r),
            }
        }
        match declared.rpo {
            Some(Rpo::Zero) => {
                refusals.push(crate::flavours::objectives::rpo_zero_unsupported("repmgr"))
            }
            Some(rpo @ Rpo::Bytes(_)) => refusals.push(
                crate::flavours::objectives::rpo_bytes_unbounded("repmgr", rpo),
            ),
            None => {}
        }
        if refusals.is_empty() {
            Ok(Derived {
                flavour: Some(Arc::new(out)),
                notes: Vec::new(),
            })
        } else {
            Err(refusals)
        }
    }
}

impl Repmgr {
    /// The worst-case time from a dead primary to the election (repmgrd's monitoring loop:
    /// one interval, a failed check, then the reconnect attempts and the pauses between).
    pub fn detection_seconds(&self) -> i64 {
        self.monitor_interval_secs
            + self.connect_timeout
            + self.reconnect_attempts * self.connect_timeout
            + (self.reconnect_attempts - 1).max(0) * self.reconnect_interval
    }
}
