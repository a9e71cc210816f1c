//! HA flavours as plug-ins. A flavour is one folder here: its inventory section and settings,
//! its playbook and step kinds, its template variables, its fact probes and their parsers,
//! how it names the real leader, its verify checks, its status words and its procedures.
//! The generic phases reach it only through the `Flavour` trait; `FLAVOURS` registers each
//! one in a line.
//!
//! Layering: this module sits above model, facts, steps and transport (what a flavour is made
//! of) and below inventory, playbook, plan, apply, verify and the views (which ask it).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::diag::Diagnostics;
use crate::facts::collect::{self, FactsError, Unreachable};
use crate::facts::gather::{Probe, Query};
use crate::facts::{HostFacts, PgFacts};
use crate::model::{
    Cluster, HbaRule, Host, MemberRole, Objectives, Postgres, Replication, SecretRef, Topology,
    User,
};
use crate::steps::registry::Kind;
use crate::transport::{Connections, RemoteCommand, Transport};
use crate::yaml::node::Node;

pub mod failover;
pub mod objectives;
pub mod patroni;
pub mod repmgr;
pub mod streaming;

/// Every flavour: one line each.
pub static FLAVOURS: &[Entry] = &[streaming::ENTRY, patroni::ENTRY, repmgr::ENTRY];

/// The flavour an inventory names, or None.
pub fn entry(name: &str) -> Option<&'static Entry> {
    FLAVOURS.iter().find(|e| e.name == name)
}

/// What the inventory loader needs of a flavour before there is one: its name, the roles and
/// host keys it adds, and how to read its section.
pub struct Entry {
    pub name: &'static str,
    /// Roles a host may have besides primary and standby.
    pub roles: &'static [MemberRole],
    /// Keys of a host entry that are the flavour's (`tags:` under Patroni).
    pub host_keys: &'static [&'static str],
    /// Step kinds of its own, besides the core ones.
    pub kinds: &'static [Kind],
    /// Server parameters the flavour sets itself, with the key of its section that decides
    /// them: `postgres.parameters` may not set them too.
    pub managed_parameters: &'static [(&'static str, &'static str)],
    /// Where a host's certificates live when the server's own configuration folder is not
    /// where the flavour runs it from (None: `<conf_dir>/tls`).
    pub tls_dir: Option<&'static str>,
    /// Read the flavour's section (its name as the top-level key) and host keys; errors go to
    /// the diagnostics with their positions.
    pub load: fn(SectionInput<'_>) -> Option<Arc<dyn Flavour>>,
}

/// What a flavour's section reader gets.
pub struct SectionInput<'a> {
    pub d: &'a mut Diagnostics,
    /// The top-level section named like the flavour, when the inventory has one.
    pub section: Option<&'a Node>,
    /// The document, for errors about a missing section.
    pub root: &'a Node,
    pub hosts: &'a [Host],
    /// The flavour's host keys as written: (host, key, node, path for messages).
    pub host_entries: Vec<(String, String, &'a Node, String)>,
    pub postgres: Option<&'a Postgres>,
    pub replication: Option<&'a Replication>,
    pub users: Option<&'a [User]>,
    /// The inventory's folder (relative secret files are read from there).
    pub base: &'a Path,
    /// Whether the cluster has TLS (`tls:`): the flavour's own services then speak it too.
    pub tls: bool,
    /// The declared objectives: a setting of the section that they derive is a conflict
    /// (reported at the setting, naming both keys).
    pub objectives: Option<&'a Objectives>,
}

/// A secret a flavour's settings reference.
pub struct FlavourSecret<'a> {
    /// As the inventory names it, for messages: `patroni.rewind.password`.
    pub label: String,
    /// Its name under `secrets` in templates: `rewind_password`.
    pub var: &'static str,
    pub reference: &'a SecretRef,
    /// What the value must be besides a password (None: any), checked when it is resolved.
    pub rule: Option<SecretRule>,
}

/// A rule a secret's value must follow, with the reason when it does not.
pub type SecretRule = fn(&str) -> Result<(), String>;

/// One verify check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckResult {
    pub host: String,
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

impl CheckResult {
    pub fn new(host: &str, check: &str, ok: bool, detail: impl Into<String>) -> Self {
        CheckResult {
            host: host.to_owned(),
            check: check.to_owned(),
            ok,
            detail: detail.into(),
        }
    }
}

/// What a flavour's checks and procedures may look at and use.
pub struct ClusterView<'a> {
    pub cluster: &'a Cluster,
    pub topology: &'a Topology,
    pub facts: &'a BTreeMap<String, HostFacts>,
    pub transports: &'a Connections,
    /// What to ask each host when facts are read again.
    pub queries: &'a BTreeMap<String, Query>,
    /// Hosts not reached or not read, with the reason: they have no facts here.
    pub unreachable: &'a Unreachable,
}

impl ClusterView<'_> {
    /// The facts of every host that answers now (a procedure waiting for the cluster to
    /// move: a host that stops answering meanwhile is one whose awaited state never comes).
    pub async fn gather(&self) -> BTreeMap<String, HostFacts> {
        collect::gather_all(self.transports, self.queries).await.0
    }

    /// The host runs as a standby whose WAL receiver streams.
    pub fn is_streaming(&self, host: &str) -> bool {
        self.facts
            .get(host)
            .and_then(|f| f.postgres.as_ref())
            .is_some_and(PgFacts::streams)
    }

    /// The connection to a host, or a refusal naming it.
    pub fn transport(&self, host: &str) -> Result<&dyn Transport, ProcedureError> {
        self.transports
            .get(host)
            .map(|t| t.as_ref())
            .ok_or_else(|| ProcedureError::Refused(format!("no connection to {host}")))
    }
}

/// Why a procedure stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcedureError {
    #[error("{0}")]
    Refused(String),
    #[error("{host}: {what}: {reason}")]
    Step {
        host: String,
        what: String,
        reason: String,
    },
    #[error(transparent)]
    Facts(#[from] FactsError),
}

/// A cluster this one replicates from (a standby cluster's source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub host: String,
    pub port: u16,
    pub slot: Option<String>,
}

/// How one member shows in `pgha status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberStatus {
    /// Overrides the role word (`leader`, `standby leader`).
    pub role: Option<String>,
    /// Overrides the state column (a member that is `starting`).
    pub state: Option<String>,
    /// Columns of the flavour's own, in order (repmgr's `ID`, `REPMGRD`, `PRIORITY`...).
    pub columns: Vec<(&'static str, String)>,
    pub tags: String,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a router (haproxy, keepalived) tells whether a member takes writes or reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// An HTTP endpoint answering 200 on the member that takes writes, and one answering 200
    /// on a member fit for reads (Patroni's `/primary` and `/replica`).
    Http {
        port: u16,
        primary: String,
        replica: String,
    },
    /// A query on PostgreSQL itself, true on the member that takes writes.
    Sql { primary: String },
}

/// A handover the flavour performed; the caller converges and verifies after it when asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    pub write_gap: Duration,
    /// The playbook must run with the new topology (standbys re-pointed, slots moved).
    pub converge: bool,
}

/// A failover decided on: which standby is promoted in place of a primary that is gone, and
/// what the choice rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// The primary that is gone.
    pub old: String,
    pub target: String,
    /// The WAL position the target has received: what survives.
    pub received: String,
    /// Whether the old primary's host answers (it is then fenced: stopped and kept from
    /// starting as a primary).
    pub fence: bool,
    /// What the DBA should know before confirming (standbys not reached, ...).
    pub notes: Vec<String>,
}

/// How long the client route takes, once the new primary takes writes, to send writes to it
/// (the components' check timing), and how the plan describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteDelay {
    pub worst: Duration,
    /// "haproxy checks every 1 s, out after 2"; empty without a route.
    pub how: String,
}

/// A failover's worst case with the flavour's settings, the route aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverTiming {
    /// From the primary's loss until a standby starts to promote.
    pub detection: Duration,
    /// From there until it takes writes.
    pub promotion: Duration,
    /// The settings that decide it, as the plan names them ("Patroni ttl 20, loop_wait 3,
    /// retry_timeout 8").
    pub settings: String,
}

/// What a flavour made of the declared objectives.
#[derive(Debug, Default)]
pub struct Derived {
    /// The flavour with the settings the objectives decide (None: none changed).
    pub flavour: Option<Arc<dyn Flavour>>,
    /// What the objectives chose besides the failover timing, for the plan.
    pub notes: Vec<String>,
}

/// An objective a flavour cannot meet: why, and the best it can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `rto` or `rpo`.
    pub objective: &'static str,
    pub reason: String,
    pub best: String,
}

/// Everything the engine asks of an HA flavour.
pub trait Flavour: fmt::Debug + Send + Sync {
    fn name(&self) -> &'static str;
    /// The playbook, embedded (a `--playbooks` folder may override it by name).
    fn playbook(&self) -> &'static str;
    /// Templates of its own, `(name, text)`, besides the common ones.
    fn templates(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    /// The secrets its settings reference.
    fn secrets(&self) -> Vec<FlavourSecret<'_>> {
        Vec::new()
    }
    /// The physical slot a standby uses on its upstream.
    fn slot_name(&self, host: &str) -> String;
    /// How many replication slots a primary of this cluster keeps: one per other data host
    /// when standbys use slots (after a switchover any of them may be the primary).
    fn slots_needed(&self, cluster: &Cluster) -> usize {
        if cluster.replication.slots {
            cluster
                .hosts
                .iter()
                .filter(|h| h.role.holds_data())
                .count()
                .saturating_sub(1)
        } else {
            0
        }
    }
    /// Adjust the server parameters pgha writes (a library the flavour needs loaded, merged
    /// with the user's).
    fn parameters(&self, _parameters: &mut BTreeMap<String, String>) {}
    /// pg_hba rules for connections from one cluster host's address, after pgha's own.
    fn hba(&self, _address: &str) -> Vec<HbaRule> {
        Vec::new()
    }
    /// What its templates and playbook see under its name: the same on every host, built once
    /// for all of them.
    fn vars(&self, _cluster: &Cluster) -> Value {
        Value::Null
    }
    /// Entries under its name that differ from host to host, over `vars` (keep them few: they
    /// are built for every host).
    fn vars_of_host(&self, _cluster: &Cluster, _host: &Host) -> Map<String, Value> {
        Map::new()
    }
    /// Variables of one host, seen as `host.*` and in `hosts`.
    fn host_vars(&self, _host: &Host) -> Map<String, Value> {
        Map::new()
    }
    /// Where PostgreSQL keeps its data under this flavour.
    fn data_dir<'a>(&'a self, cluster: &'a Cluster) -> &'a str {
        &cluster.postgres.data_dir
    }
    /// Its questions to one host, asked in the facts round trip.
    fn probes(&self, _cluster: &Cluster, _host: &Host) -> Vec<Probe> {
        Vec::new()
    }
    /// Forget what moves on its own (a lease, an election) before facts are compared for a
    /// stale plan.
    fn stable_facts(&self, _facts: &mut HostFacts) {}
    /// What the DBA should weigh in its settings, though they are allowed (validate and plan
    /// show it).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
    /// The member that leads when the flavour keeps its own word on it (a leader key); None
    /// leaves it to the running servers.
    fn leader(&self, _cluster: &Cluster, _facts: &BTreeMap<String, HostFacts>) -> Option<String> {
        None
    }
    /// The cluster this one replicates from, when it is a standby cluster.
    fn source(&self) -> Option<Source> {
        None
    }
    /// The replay lag a stream may have and still count as healthy.
    fn max_lag_bytes(&self) -> i64 {
        16 << 20
    }
    /// Checks on facts alone, polled with the role and stream checks until they pass.
    fn polled_checks(&self, _view: &ClusterView<'_>) -> Vec<CheckResult> {
        Vec::new()
    }
    /// Its own checks, run once the roles and streams are right.
    fn checks<'a>(&'a self, _view: &'a ClusterView<'a>) -> BoxFuture<'a, Vec<CheckResult>> {
        Box::pin(async { Vec::new() })
    }
    /// How a member shows in status.
    fn member_status(
        &self,
        _host: &Host,
        _is_leader: bool,
        _sync: bool,
        _facts: Option<&HostFacts>,
    ) -> MemberStatus {
        MemberStatus::default()
    }
    /// Lines under the status table.
    fn status_footer(
        &self,
        _cluster: &Cluster,
        _facts: &BTreeMap<String, HostFacts>,
        _sync_standbys: &[String],
    ) -> Vec<String> {
        Vec::new()
    }
    /// What a router should ask a member to route writes and reads to it.
    fn health(&self) -> HealthCheck {
        HealthCheck::Sql {
            primary: "SELECT NOT pg_is_in_recovery()".to_owned(),
        }
    }
    /// Ports its own services take on the data hosts, with the key that sets each (a
    /// component's ports may not clash with them).
    fn ports(&self) -> Vec<(u16, String)> {
        Vec::new()
    }
    /// Whether it writes PostgreSQL's listen addresses itself (covering a VIP), rather than
    /// taking `postgres.listen_addresses`.
    fn writes_listen_addresses(&self) -> bool {
        false
    }
    /// Whether it runs a script of pgha's when a member's role changes (a VIP can then move
    /// with the role: `routing.vip.mode: callback`).
    fn role_callbacks(&self) -> bool {
        false
    }
    /// The systemd units a clean stop of a data host takes, in order (a drill's `stop`):
    /// PostgreSQL's own unit by default.
    fn stop_units(&self, cluster: &Cluster) -> Vec<String> {
        vec![postgres_unit(cluster)]
    }
    /// The units of the flavour's that a host leaving the cluster (`decommission:`) stops
    /// for good, in order: the ones a clean stop takes, and any the flavour runs beside them.
    fn departing_units(&self, cluster: &Cluster) -> Vec<String> {
        self.stop_units(cluster)
    }
    /// The folders holding a member's data that `decommission: wipe_data` deletes.
    fn departing_data(&self, cluster: &Cluster) -> Vec<String> {
        vec![self.data_dir(cluster).to_owned()]
    }
    /// The unit of the process that manages PostgreSQL and decides on failovers (Patroni,
    /// repmgrd), killed with the postmaster when a drill crashes a host.
    fn manager_unit(&self, _cluster: &Cluster) -> Option<String> {
        None
    }
    /// Whether a standby is promoted without pgha when the primary dies (else `pgha failover`
    /// does it).
    fn fails_over_on_its_own(&self) -> bool {
        false
    }
    /// Whether a former primary whose server was stopped or crashed comes back as a standby
    /// once its manager is started again (Patroni rewinds and follows). Otherwise it stays
    /// down until pgha's plan rejoins it: a rewind needs the server stopped.
    fn manager_rejoins(&self) -> bool {
        false
    }
    /// Whether pgha may hand the primary role to `host` (a switchover it picks the target
    /// of itself, as the rolling upgrade's). Patroni: not a member tagged `nofailover`.
    fn may_lead(&self, _host: &str) -> bool {
        true
    }
    /// A failover's worst case with its settings, when it fails over on its own (None: a
    /// person runs `pgha failover`, and nothing bounds when).
    fn failover_timing(&self) -> Option<FailoverTiming> {
        None
    }
    /// Its settings derived from the declared objectives (`route`: what the client route
    /// adds after the promotion), or why it cannot meet them. Called once the cluster and its
    /// components are read; the settings' own conflicts with the objectives were reported
    /// while its section was read.
    fn meet_objectives(
        &self,
        _cluster: &Cluster,
        objectives: &Objectives,
        _route: &RouteDelay,
    ) -> Result<Derived, Vec<Refusal>> {
        objectives::refuse_all(self.name(), objectives)
    }
    /// Hand the primary role to `target`, which the caller checked is a member.
    fn switchover<'a>(
        &'a self,
        view: &'a ClusterView<'a>,
        target: &'a str,
    ) -> BoxFuture<'a, Result<Handover, ProcedureError>>;
    /// Restart one standby's PostgreSQL (a rolling minor upgrade's: the server then runs the
    /// binary installed since), the way its manager expects; the caller waits until it streams
    /// again. Debian's unit by default.
    fn restart_member<'a>(
        &'a self,
        view: &'a ClusterView<'a>,
        host: &'a str,
    ) -> BoxFuture<'a, Result<(), ProcedureError>> {
        Box::pin(async move {
            let unit = postgres_unit(view.cluster);
            run_ok(
                view.transport(host)?,
                &RemoteCommand::new(["systemctl", "restart", unit.as_str()]),
                "restart PostgreSQL",
            )
            .await
            .map(|_| ())
        })
    }
    /// Which standby to promote now that the primary is gone (`to`: the DBA's choice, to be
    /// checked). Flavours that fail over on their own refuse.
    fn failover_choice(
        &self,
        _view: &ClusterView<'_>,
        _to: Option<&str>,
    ) -> Result<Failover, ProcedureError> {
        Err(ProcedureError::Refused(format!(
            "the {} flavour fails over on its own; `pgha status` shows who leads, `pgha switchover` moves the role",
            self.name()
        )))
    }
    /// Fence the old primary where it answers, promote the chosen standby.
    fn failover<'a>(
        &'a self,
        _view: &'a ClusterView<'a>,
        _choice: &'a Failover,
    ) -> BoxFuture<'a, Result<Handover, ProcedureError>> {
        Box::pin(async move {
            Err(ProcedureError::Refused(format!(
                "the {} flavour fails over on its own",
                self.name()
            )))
        })
    }
}

/// Debian's unit of the cluster's PostgreSQL server: `postgresql@15-main`.
pub fn postgres_unit(cluster: &Cluster) -> String {
    format!(
        "postgresql@{}-{}",
        cluster.postgres.version, cluster.postgres.debian_cluster
    )
}

/// Run a command that must succeed; its trimmed standard output.
pub async fn run_ok(
    t: &dyn Transport,
    command: &RemoteCommand,
    what: &str,
) -> Result<String, ProcedureError> {
    let out = t.run(command).await.map_err(|e| ProcedureError::Step {
        host: t.host().to_owned(),
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    if !out.success() {
        return Err(ProcedureError::Step {
            host: t.host().to_owned(),
            what: what.to_owned(),
            reason: out.stderr.trim().to_owned(),
        });
    }
    Ok(out.stdout.trim().to_owned())
}
