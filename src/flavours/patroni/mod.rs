//! The Patroni flavour: etcd as the DCS, Patroni starting, promoting and cloning PostgreSQL.
//! pgha installs, writes the configuration, starts the services in a safe order, keeps the
//! DCS configuration as the inventory says, and reads the leader from Patroni.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::facts::gather::Probe;
use crate::facts::HostFacts;
use crate::flavours::{
    BoxFuture, CheckResult, ClusterView, Derived, Entry, FailoverTiming, Flavour, FlavourSecret,
    Handover, HealthCheck, MemberStatus, ProcedureError, Refusal, RouteDelay, SectionInput, Source,
};
use crate::model::{slot_safe_name, Cluster, HbaRule, Host, MemberRole, Objectives, Role};

pub mod config;
pub mod dcs_change;
pub mod etcd_membership;
pub mod objectives;
pub mod probes;
pub mod rest;
mod rules;
mod section;
mod status;
mod switchover;
pub mod tls_move;
mod vars;
mod verify;

pub use config::Patroni;
use probes::{EtcdFact, PatroniFact};

/// The flavour's own step kinds: one line each.
pub mod steps {
    crate::kinds! {
        etcd_healthy: EtcdHealthy,
        etcd_member_join: EtcdMemberJoin,
        etcd_member_remove: EtcdMemberRemove,
        etcd_retired: EtcdRetired,
        etcd_scheme: EtcdScheme,
        etcd_tls_move: EtcdTlsMove,
        patroni_admits: PatroniAdmits,
        patroni_dcs: PatroniDcs,
        patroni_departed: PatroniDeparted,
        patroni_listen: PatroniListen,
        patroni_running: PatroniRunning,
        patroni_tls_pause: PatroniTlsPause,
        patroni_tls_restart: PatroniTlsRestart,
        patroni_tls_resume: PatroniTlsResume,
    }
}

/// What is there once an etcd member has formed or joined its cluster, in its data folder:
/// before that, the initial-cluster settings still decide what it does at its first start.
pub(crate) fn etcd_formed_marker(data_dir: &str) -> String {
    format!("{data_dir}/member")
}

/// etcdctl without a certificate: a cluster without TLS, or one not moved to it yet.
pub(crate) const PLAIN_ETCDCTL: &str = "ETCDCTL_API=3 etcdctl";

/// A dedicated etcd member: no PostgreSQL, a vote in the DCS.
pub const ETCD_ROLE: MemberRole = MemberRole {
    name: "etcd",
    runs_postgres: false,
    description: "an etcd host",
};

pub const ENTRY: Entry = Entry {
    name: "patroni",
    roles: &[ETCD_ROLE],
    host_keys: &["tags"],
    kinds: steps::KINDS,
    // Patroni writes it from its synchronous mode, and clears it when that is off.
    managed_parameters: &[("synchronous_standby_names", "patroni.synchronous_mode")],
    // Debian's configuration folder stays empty under Patroni (its tools would take a
    // folder there for a cluster of theirs).
    tls_dir: Some(config::PATRONI_TLS_DIR),
    load,
};

fn load(mut input: SectionInput<'_>) -> Option<Arc<dyn Flavour>> {
    let Some(node) = input.section else {
        input.d.error(
            input.root.pos,
            "patroni",
            "flavour `patroni` needs a `patroni:` section (at least `rewind.password` and `etcd.members`)",
        );
        return None;
    };
    let mut reader = section::Reader {
        d: input.d,
        base: input.base,
    };
    let mut tags = BTreeMap::new();
    let mut ok = true;
    for (host, _key, n, path) in std::mem::take(&mut input.host_entries) {
        match reader.tags(n, &path) {
            Some(t) => {
                tags.insert(host, t);
            }
            None => ok = false,
        }
    }
    let patroni = reader.patroni(
        node,
        input.hosts,
        input.postgres,
        tags,
        input.tls,
        input.objectives,
    )?;
    ok &= rules::check(&mut rules::Input {
        d: input.d,
        root: input.root,
        patroni: &patroni,
        hosts: input.hosts,
        postgres: input.postgres,
        replication: input.replication,
        users: input.users,
    });
    ok.then(|| Arc::new(patroni) as Arc<dyn Flavour>)
}

/// Debian's Patroni unit of the cluster: `patroni@15-main`.
fn patroni_unit(cluster: &Cluster) -> String {
    format!(
        "patroni@{}-{}",
        cluster.postgres.version, cluster.postgres.debian_cluster
    )
}

impl Patroni {
    /// How etcd and the REST API are spoken to.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub(crate) fn etcd_endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.etcd.client_port)
    }

    pub(crate) fn rest_api(&self, host: &Host) -> String {
        format!("{}://{}:{}", self.scheme(), host.address, self.restapi_port)
    }

    /// etcdctl as root on an etcd member: with etcd's own client certificate under TLS.
    /// (Without it: `PLAIN_ETCDCTL`.)
    pub(crate) fn etcdctl(&self) -> String {
        match &self.tls {
            Some(t) => format!(
                "ETCDCTL_API=3 etcdctl --cacert={} --cert={} --key={}",
                t.etcd_ca_file, t.etcd_cert_file, t.etcd_key_file
            ),
            None => PLAIN_ETCDCTL.to_owned(),
        }
    }
}

impl Flavour for Patroni {
    fn name(&self) -> &'static str {
        "patroni"
    }

    // Patroni stops PostgreSQL itself on a clean stop (and gives up the leader key).
    fn stop_units(&self, cluster: &Cluster) -> Vec<String> {
        vec![patroni_unit(cluster)]
    }

    fn manager_unit(&self, cluster: &Cluster) -> Option<String> {
        Some(patroni_unit(cluster))
    }

    // Patroni stops PostgreSQL with it; etcd goes after it, so Patroni leaves its member key
    // cleanly while the DCS still answers.
    fn departing_units(&self, cluster: &Cluster) -> Vec<String> {
        vec![patroni_unit(cluster), "etcd".to_owned()]
    }

    fn departing_data(&self, cluster: &Cluster) -> Vec<String> {
        vec![
            self.data_dir(cluster).to_owned(),
            format!("/var/lib/etcd/pgha-{}", cluster.name),
        ]
    }

    fn fails_over_on_its_own(&self) -> bool {
        true
    }

    fn manager_rejoins(&self) -> bool {
        true
    }

    fn may_lead(&self, host: &str) -> bool {
        !self.tags_of(host).nofailover
    }

    fn playbook(&self) -> &'static str {
        include_str!("../../../playbooks/patroni.yml")
    }

    fn templates(&self) -> &'static [(&'static str, &'static str)] {
        crate::embedded_templates![
            "etcd/etcd.default.j2",
            "etcd/etcdctl.sh.j2",
            "patroni/callback.py.j2",
            "patroni/pg_hba.yml.j2",
            "patroni/patroni.yml.j2",
            "patroni/patronictl.sh.j2",
            "patroni/softdog.conf.j2",
            "patroni/watchdog.rules.j2",
        ]
    }

    fn secrets(&self) -> Vec<FlavourSecret<'_>> {
        vec![
            FlavourSecret {
                label: "patroni.rewind.password".to_owned(),
                var: "rewind_password",
                reference: &self.rewind_password,
                rule: None,
            },
            FlavourSecret {
                label: "patroni.restapi_auth.password".to_owned(),
                var: "restapi_password",
                reference: &self.restapi_password,
                rule: None,
            },
        ]
    }

    /// The leader keeps a slot for each other member, and the permanent ones.
    fn slots_needed(&self, cluster: &Cluster) -> usize {
        if !self.use_slots {
            return 0;
        }
        let members = cluster.hosts.iter().filter(|h| h.role.holds_data()).count();
        members.saturating_sub(1) + self.permanent_slots.len()
    }

    /// Patroni names its slots after the members (`slot_name_from_member_name`).
    fn slot_name(&self, host: &str) -> String {
        slot_safe_name(host)
    }

    /// Patroni's pg_rewind of a former leader connects as the rewind user.
    fn hba(&self, address: &str) -> Vec<HbaRule> {
        vec![HbaRule {
            kind: "host".to_owned(),
            database: "postgres".to_owned(),
            user: self.rewind_user.clone(),
            address: Some(address.to_owned()),
            method: "scram-sha-256".to_owned(),
        }]
    }

    fn vars(&self, cluster: &Cluster) -> Value {
        vars::vars(self, cluster)
    }

    fn vars_of_host(&self, cluster: &Cluster, host: &Host) -> Map<String, Value> {
        vars::vars_of_host(self, cluster, host)
    }

    fn host_vars(&self, host: &Host) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "tags".to_owned(),
            serde_json::to_value(self.tags_of(&host.name)).unwrap_or(Value::Null),
        );
        m.insert(
            "etcd_member".to_owned(),
            Value::Bool(self.etcd.members.contains(&host.name)),
        );
        m
    }

    fn data_dir<'a>(&'a self, _cluster: &'a Cluster) -> &'a str {
        &self.data_dir
    }

    fn probes(&self, _cluster: &Cluster, host: &Host) -> Vec<Probe> {
        let mut out = Vec::new();
        // A cluster on its way to TLS answers on http until it is moved: each probe then asks
        // http when https does not answer, and says which one did.
        // Also asked where etcd may run without being a member: a member leaving
        // patroni.etcd.members counts for the quorum until it is removed.
        if host.role.has_postgres() || host.role == Role::Member(ETCD_ROLE) {
            let plain = format!("http://127.0.0.1:{}", self.etcd.client_port);
            let fallback = self
                .tls
                .is_some()
                .then_some((PLAIN_ETCDCTL, plain.as_str()));
            out.push(probes::etcd_probe(
                &self.etcdctl(),
                &self.etcd_endpoint(),
                fallback,
            ));
        }
        if host.role.has_postgres() {
            let plain = format!("http://{}:{}", host.address, self.restapi_port);
            let fallback = self.tls.is_some().then_some(plain.as_str());
            out.push(probes::patroni_probe(&self.rest_api(host), fallback));
        }
        out
    }

    fn stable_facts(&self, facts: &mut HostFacts) {
        probes::forget_etcd_leadership(facts);
    }

    /// An even number of etcd members is allowed (a step on the way from 3 to 1, or a host
    /// that left), but buys nothing: 2 need both for a quorum, 4 survive one loss like 3.
    fn warnings(&self) -> Vec<String> {
        let n = self.etcd.members.len();
        if n % 2 == 1 {
            return Vec::new();
        }
        let tolerated = match (n - 1) / 2 {
            0 => "no failure".to_owned(),
            1 => "the loss of one member".to_owned(),
            t => format!("the loss of {t} members"),
        };
        vec![format!(
            "{n} etcd members (patroni.etcd.members): a quorum needs {}, so they tolerate {tolerated}, as {} would; an odd number is better (3 survive the loss of one)",
            n / 2 + 1,
            n - 1
        )]
    }

    /// The leader key decides: in a standby cluster every server is in recovery and the
    /// leader is the standby leader.
    fn leader(&self, cluster: &Cluster, facts: &BTreeMap<String, HostFacts>) -> Option<String> {
        let leaders: Vec<&str> = cluster
            .hosts
            .iter()
            .filter(|h| {
                facts
                    .get(&h.name)
                    .and_then(PatroniFact::of)
                    .is_some_and(|p| p.is_leader())
            })
            .map(|h| h.name.as_str())
            .collect();
        (leaders.len() == 1).then(|| leaders[0].to_owned())
    }

    fn source(&self) -> Option<Source> {
        self.standby_cluster.as_ref().map(|s| Source {
            host: s.host.clone(),
            port: s.port,
            slot: s.primary_slot_name.clone(),
        })
    }

    /// The lag that would keep a replica from being promoted.
    fn max_lag_bytes(&self) -> i64 {
        i64::try_from(self.maximum_lag_on_failover).unwrap_or(i64::MAX)
    }

    fn polled_checks(&self, view: &ClusterView<'_>) -> Vec<CheckResult> {
        verify::polled(self, view)
    }

    fn checks<'a>(&'a self, view: &'a ClusterView<'a>) -> BoxFuture<'a, Vec<CheckResult>> {
        Box::pin(verify::checks(self, view))
    }

    fn member_status(
        &self,
        host: &Host,
        is_leader: bool,
        sync: bool,
        facts: Option<&HostFacts>,
    ) -> MemberStatus {
        status::member(self, host, is_leader, sync, facts)
    }

    fn status_footer(
        &self,
        _cluster: &Cluster,
        facts: &BTreeMap<String, HostFacts>,
        sync_standbys: &[String],
    ) -> Vec<String> {
        status::footer(self, facts, sync_standbys)
    }

    /// Patroni's REST API knows the leader key, not only the server's state: a member that
    /// lost its key answers 503 on `/primary` before its server has stepped down.
    fn health(&self) -> HealthCheck {
        HealthCheck::Http {
            port: self.restapi_port,
            primary: "/primary".to_owned(),
            replica: "/replica".to_owned(),
        }
    }

    fn ports(&self) -> Vec<(u16, String)> {
        vec![
            (self.restapi_port, "patroni.restapi_port".to_owned()),
            (self.etcd.client_port, "patroni.etcd.client_port".to_owned()),
            (self.etcd.peer_port, "patroni.etcd.peer_port".to_owned()),
        ]
    }

    /// patroni.yml's `postgresql.listen` (every address when there is a VIP).
    fn writes_listen_addresses(&self) -> bool {
        true
    }

    /// `pgha-callback.py` runs on every role change (`on_start`, `on_role_change`, ...).
    fn role_callbacks(&self) -> bool {
        true
    }

    fn failover_timing(&self) -> Option<FailoverTiming> {
        Some(objectives::timing(self))
    }

    fn meet_objectives(
        &self,
        cluster: &Cluster,
        declared: &Objectives,
        route: &RouteDelay,
    ) -> Result<Derived, Vec<Refusal>> {
        let (patroni, notes) = objectives::apply(self, cluster, declared, route)?;
        Ok(Derived {
            flavour: Some(Arc::new(patroni)),
            notes,
        })
    }

    fn switchover<'a>(
        &'a self,
        view: &'a ClusterView<'a>,
        target: &'a str,
    ) -> BoxFuture<'a, Result<Handover, ProcedureError>> {
        Box::pin(switchover::run(self, view, target))
    }

    /// Through Patroni (`POST /restart`, what `patronictl restart` does): a server restarted
    /// behind its back would be seen as failed, and started again by Patroni itself.
    fn restart_member<'a>(
        &'a self,
        view: &'a ClusterView<'a>,
        host: &'a str,
    ) -> BoxFuture<'a, Result<(), ProcedureError>> {
        Box::pin(switchover::restart(self, view, host))
    }
}

/// Whether the local etcd member is healthy, and whether it leads (status and verify).
fn etcd_of(facts: &BTreeMap<String, HostFacts>, member: &str) -> Option<EtcdFact> {
    facts.get(member).and_then(EtcdFact::of)
}
