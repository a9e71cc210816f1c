//! A working session with a cluster: the project, its secrets, one SSH connection per host and
//! the hosts' current facts. Shared by plan, apply, verify, status and switchover.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::facts::collect::{self, FactsError, Unreachable};
use crate::facts::gather::Query;
use crate::facts::HostFacts;
use crate::flavours::ClusterView;
use crate::model::{Role, Secrets, Topology};
use crate::plan::build::{self, Plan};
use crate::plan::check::StepOutcome;
use crate::plan::departing;
use crate::plan::topology::{self, TopologyError};
use crate::project::{Project, ProjectError};
use crate::transport::Connections;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Facts(#[from] FactsError),
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("--limit {0}: no host of the inventory has that name")]
    Limit(String),
}

pub struct Session {
    pub project: Project,
    pub secrets: Secrets,
    pub transports: Connections,
    pub queries: BTreeMap<String, Query>,
    pub facts: BTreeMap<String, HostFacts>,
    pub limit: Option<Vec<String>>,
    /// Hosts contacted but not reached or not read, with the reason.
    pub unreachable: Unreachable,
    /// Hosts outside `--limit` that were read (never changed), with why.
    pub read_outside_limit: BTreeMap<String, String>,
    /// At most this many connections are opened at a time.
    pub forks: usize,
    /// Hosts leaving the cluster (`decommission:`), once surveyed: what to do there, or why
    /// they were not reached.
    pub leaving: BTreeMap<String, Result<Vec<StepOutcome>, String>>,
    /// Connections to the leaving hosts that answered.
    pub leaving_transports: Connections,
}

/// Which hosts to reach and how many at a time.
#[derive(Debug, Clone)]
pub struct Reach {
    /// Only these hosts (and those their steps need the facts of); empty: every host.
    pub limit: Vec<String>,
    pub forks: usize,
}

impl Default for Reach {
    fn default() -> Self {
        Reach {
            limit: Vec::new(),
            forks: usize::from(collect::DEFAULT_FORKS),
        }
    }
}

/// Every name of `--limit` is a host of the inventory.
pub fn check_limit(project: &Project, limit: &[String]) -> Result<(), SessionError> {
    match limit
        .iter()
        .find(|name| project.cluster.host(name).is_none())
    {
        Some(name) => Err(SessionError::Limit(name.clone())),
        None => Ok(()),
    }
}

impl Session {
    /// Load, resolve every secret (before any connection), connect to every host, read facts.
    /// `make_ca`: a command that may change the cluster makes its default CA when missing.
    pub async fn open(
        inventory: &Path,
        playbooks: Option<&Path>,
        templates: Option<&Path>,
        reach: &Reach,
        make_ca: bool,
    ) -> Result<Self, SessionError> {
        let project = Project::load(inventory, playbooks, templates)?;
        let project = if make_ca {
            project.with_ca(inventory, playbooks, templates)?
        } else {
            project
        };
        check_limit(&project, &reach.limit)?;
        let secrets = project.resolve_secrets()?;
        Self::connect(project, secrets, reach).await
    }

    /// Connect to the hosts of a loaded project whose secrets are resolved (and limit
    /// checked), and read their facts. Hosts that do not answer are noted, not fatal.
    pub async fn connect(
        project: Project,
        secrets: Secrets,
        reach: &Reach,
    ) -> Result<Self, SessionError> {
        // The query covers every role a host could have: expand once as declared and once
        // with each host as primary would be costly; the declared expansion plus the
        // standby-only files of the primary suffice because every host gets asked about
        // every path any host manages.
        let declared = project.expand_declared()?;
        let mut queries = crate::plan::query::query_for(
            &project.cluster,
            project.flavour.as_ref(),
            &project.components,
            &[&declared],
        );
        let all_files: Vec<String> = queries.values().flat_map(|q| q.files.clone()).collect();
        for q in queries.values_mut() {
            q.files.extend(all_files.iter().cloned());
            q.files.sort();
            q.files.dedup();
        }
        let limit = &reach.limit;
        let first: Vec<String> = if limit.is_empty() {
            project
                .cluster
                .hosts
                .iter()
                .map(|h| h.name.clone())
                .collect()
        } else {
            limit.clone()
        };
        let mut session = Session {
            project,
            secrets,
            transports: Default::default(),
            queries,
            facts: BTreeMap::new(),
            limit: (!limit.is_empty()).then(|| limit.clone()),
            unreachable: Unreachable::new(),
            read_outside_limit: BTreeMap::new(),
            forks: reach.forks,
            leaving: BTreeMap::new(),
            leaving_transports: Connections::new(),
        };
        session.reach(&first).await;
        // A limited host's steps compare with its upstream's and the primary's facts; who
        // those are shows only once the limited hosts are read (a failover may have moved
        // the primary), so read outward until nothing new is needed.
        while session.limit.is_some() {
            let needed: BTreeMap<String, String> = session
                .needed_outside_limit()
                .into_iter()
                .filter(|(h, _)| {
                    !session.transports.contains_key(h) && !session.unreachable.contains_key(h)
                })
                .collect();
            if needed.is_empty() {
                break;
            }
            let hosts: Vec<String> = needed.keys().cloned().collect();
            session.read_outside_limit.extend(needed);
            session.reach(&hosts).await;
        }
        Ok(session)
    }

    /// Connect to these hosts and read their facts; the ones that fail are noted.
    async fn reach(&mut self, names: &[String]) {
        let hosts: Vec<&crate::model::Host> = names
            .iter()
            .filter_map(|n| self.project.cluster.host(n))
            .collect();
        let (transports, unreachable) = collect::connect(&hosts, &self.secrets, self.forks).await;
        let (facts, unread) = collect::gather_all(&transports, &self.queries).await;
        self.facts.extend(facts);
        self.unreachable.extend(unreachable);
        self.unreachable.extend(unread);
        self.transports.extend(transports);
    }

    /// Hosts outside the limit whose facts the limited hosts' steps need, with why: the
    /// primary, each limited standby's upstream and the host it really streams from.
    fn needed_outside_limit(&self) -> BTreeMap<String, String> {
        let Some(limit) = &self.limit else {
            return BTreeMap::new();
        };
        let Ok((topology, _)) = self.topology() else {
            return BTreeMap::new();
        };
        let limited: BTreeSet<&String> = limit.iter().collect();
        let mut needed = BTreeMap::new();
        let mut need = |host: &str, why: String| {
            if !limited.contains(&host.to_owned()) && self.project.cluster.host(host).is_some() {
                needed.entry(host.to_owned()).or_insert(why);
            }
        };
        for name in limit {
            let Some(host) = self.project.cluster.host(name) else {
                continue;
            };
            if !host.role.holds_data() || *name == topology.primary {
                continue;
            }
            need(
                &topology.primary,
                format!("the primary: {name}'s steps compare its data with the primary's"),
            );
            if let Some(up) = topology.upstream.get(name) {
                need(up, format!("{name}'s upstream"));
            }
            let sender = self
                .facts
                .get(name)
                .and_then(|f| f.postgres.as_ref())
                .and_then(|pg| pg.wal_receiver.as_ref())
                .and_then(|w| {
                    self.project
                        .cluster
                        .hosts
                        .iter()
                        .find(|h| h.address == w.sender_host)
                });
            if let Some(sender) = sender {
                need(&sender.name, format!("{name} streams from it"));
            }
        }
        needed
    }

    /// Reach the hosts under `decommission:` (not with `--limit`: a limited run changes only
    /// the hosts it names) and read what still runs or is stored there, in one round trip
    /// each. A leaving host that does not answer is recorded, not an error.
    pub async fn survey_leaving(&mut self) {
        if self.limit.is_some() || self.project.cluster.decommission.is_empty() {
            return;
        }
        let cluster = &self.project.cluster;
        let hosts: Vec<crate::model::Host> =
            cluster.decommission.iter().map(|d| d.as_host()).collect();
        let refs: Vec<&crate::model::Host> = hosts.iter().collect();
        let (transports, unreachable) = collect::connect(&refs, &self.secrets, self.forks).await;
        let specs: Vec<departing::Spec> = cluster
            .decommission
            .iter()
            .map(|d| {
                departing::Spec::of(
                    cluster,
                    d,
                    self.project.flavour.as_ref(),
                    &self.project.components,
                )
            })
            .collect();
        let surveys = futures::future::join_all(specs.iter().map(|spec| {
            let transport = transports.get(&spec.host).cloned();
            async move {
                let Some(t) = transport else {
                    return (spec.host.clone(), None);
                };
                let out = match t.run(&spec.survey()).await {
                    Ok(out) if out.success() => Ok(spec.judge(&out.stdout)),
                    Ok(out) => Err(format!("its survey failed: {}", out.stderr.trim())),
                    Err(e) => Err(e.to_string()),
                };
                (spec.host.clone(), Some(out))
            }
        }))
        .await;
        for (host, result) in surveys {
            let result = match result {
                Some(r) => r,
                None => Err(unreachable
                    .get(&host)
                    .cloned()
                    .unwrap_or_else(|| "not reached".to_owned())),
            };
            self.leaving.insert(host, result);
        }
        self.leaving_transports = transports;
    }

    pub fn topology(&self) -> Result<(Topology, Vec<String>), SessionError> {
        Ok(topology::observe(
            &self.project.cluster,
            self.project.flavour.as_ref(),
            &self.facts,
        )?)
    }

    pub fn plan(&self) -> Result<Plan, SessionError> {
        let (topology, notes) = self.topology()?;
        let mut plan = build::build(
            &self.project,
            topology,
            notes,
            &build::Reading {
                facts: &self.facts,
                limit: self.limit.as_deref(),
                unreachable: &self.unreachable,
                read_outside_limit: &self.read_outside_limit,
            },
            &self.secrets,
        )?;
        for (host, result) in &self.leaving {
            match result {
                Ok(outcomes) => {
                    // What stays on a leaving host is worth a line without -v.
                    for o in outcomes {
                        if let crate::plan::check::Status::InSync { reason } = &o.status {
                            if o.step == departing::WIPE_STEP && reason.starts_with("kept") {
                                plan.notes.push(format!("{host} (decommission): {reason}"));
                            }
                        }
                    }
                    plan.hosts.insert(host.clone(), outcomes.clone());
                    plan.leaving.insert(host.clone(), None);
                }
                Err(why) => {
                    plan.notes.push(format!(
                        "{host} (decommission) did not answer ({why}): nothing on it is stopped or deleted; the cluster forgets it all the same"
                    ));
                    plan.leaving.insert(host.clone(), Some(why.clone()));
                }
            }
        }
        Ok(plan)
    }

    /// Read one host's facts again (after a change there).
    pub async fn refresh(&mut self, host: &str) -> Result<(), SessionError> {
        if let (Some(t), Some(q)) = (self.transports.get(host), self.queries.get(host)) {
            let f = collect::gather_one(t.as_ref(), q).await?;
            self.facts.insert(host.to_owned(), f);
        }
        Ok(())
    }

    /// Read every connected host's facts again, in parallel. A host that stops answering
    /// loses its facts and is noted as unreachable.
    pub async fn refresh_all(&mut self) {
        let (facts, failed) = collect::gather_all(&self.transports, &self.queries).await;
        for host in facts.keys() {
            self.unreachable.remove(host);
        }
        self.facts = facts;
        self.unreachable.extend(failed);
    }

    /// Every connected host's facts again, or an error naming the hosts that did not answer
    /// (for what must see all of them: a procedure's next move).
    pub async fn refresh_every(&mut self) -> Result<(), SessionError> {
        self.refresh_all().await;
        let failed: Unreachable = self
            .unreachable
            .iter()
            .filter(|(h, _)| self.transports.contains_key(*h))
            .map(|(h, r)| (h.clone(), r.clone()))
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(FactsError::Unreachable(failed).into())
        }
    }

    /// What a flavour's checks and procedures see of the cluster now.
    pub fn view<'a>(&'a self, topology: &'a Topology) -> ClusterView<'a> {
        ClusterView {
            cluster: &self.project.cluster,
            topology,
            facts: &self.facts,
            transports: &self.transports,
            queries: &self.queries,
            unreachable: &self.unreachable,
        }
    }

    pub fn role_of(&self, topology: &Topology, host: &str) -> Role {
        self.project
            .cluster
            .host(host)
            .map(|h| topology.role(h))
            .unwrap_or(Role::Standby)
    }

    pub async fn close(self) {
        for (_, t) in self.transports.into_iter().chain(self.leaving_transports) {
            t.close().await;
        }
    }
}
