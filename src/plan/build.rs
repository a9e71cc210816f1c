//! Building a plan: the hosts' facts, the real topology, every host's steps checked.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::facts::HostFacts;
use crate::flavours::Flavour;
use crate::model::{Role, Secrets, Topology};
use crate::plan::check::{check_host, Status, StepOutcome};
use crate::plan::inputs::Inputs;
use crate::plan::upgrade::{self, Upgrade};
use crate::plan::Change;
use crate::project::{Project, ProjectError};

/// A plan: printed, saved, applied. Holds no secret: commands carry marks only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub id: String,
    pub cluster: String,
    pub inventory: PathBuf,
    pub topology: Topology,
    /// Hosts with a role of the flavour's own (a dedicated etcd member), by name.
    #[serde(default)]
    pub member_roles: BTreeMap<String, String>,
    /// Where the hosts differ from the inventory's word (a switchover happened, ...).
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
    /// Hosts that could not be reached or read, with the reason: their steps are not in the
    /// plan, and a plan with any is not applied.
    #[serde(default)]
    pub unreachable: BTreeMap<String, String>,
    pub hosts: BTreeMap<String, Vec<StepOutcome>>,
    /// SHA-256 of each host's facts at planning time: a saved plan whose hosts moved on is stale.
    pub digests: BTreeMap<String, String>,
    /// What the plan was made from; a saved plan whose inputs changed is refused. Absent in
    /// plans of older versions, which are refused too.
    #[serde(default)]
    pub inputs: Option<Inputs>,
    /// Hosts leaving the cluster (`decommission:`): `None` when reached (their changes are
    /// under `hosts`), else why not (a leaving host that does not answer is no error).
    #[serde(default)]
    pub leaving: BTreeMap<String, Option<String>>,
    /// The rolling minor upgrade to `postgres.package_version`, when a host is not at it.
    #[serde(default)]
    pub upgrade: Option<Upgrade>,
}

impl Plan {
    pub fn changes(&self) -> impl Iterator<Item = &Change> {
        self.hosts.values().flatten().flat_map(|o| match &o.status {
            Status::Changes { changes } => changes.as_slice(),
            _ => &[],
        })
    }

    pub fn change_count(&self) -> usize {
        self.changes().count() + self.upgrade.as_ref().map_or(0, Upgrade::change_count)
    }

    pub fn refusals(&self) -> Vec<(String, String, String)> {
        self.hosts
            .iter()
            .flat_map(|(h, outcomes)| {
                outcomes.iter().filter_map(move |o| match &o.status {
                    Status::Refused { reason } => Some((h.clone(), o.step.clone(), reason.clone())),
                    _ => None,
                })
            })
            .chain(
                self.upgrade
                    .iter()
                    .filter_map(|u| u.refusal.clone())
                    .map(|r| ("cluster".to_owned(), "minor upgrade".to_owned(), r)),
            )
            .collect()
    }
}

pub fn digest(flavour: &dyn Flavour, facts: &HostFacts) -> String {
    // Replication progress moves all the time and is no reason to call a plan stale.
    let mut stable = facts.clone();
    if let Some(pg) = stable.postgres.as_mut() {
        for slot in pg.slots.values_mut() {
            slot.active = false;
        }
        pg.replication.clear();
        pg.wal_receiver = None;
        pg.lsn.clear();
        pg.received_lsn.clear();
    }
    // Nor is what the flavour says moves on its own.
    flavour.stable_facts(&mut stable);
    let json = serde_json::to_vec(&stable).unwrap_or_default();
    format!("{:x}", Sha256::digest(&json))
}

/// A fresh random id (plans, locks, salts): 12 hex digits.
pub fn new_id() -> String {
    let mut bytes = [0u8; 6];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a session read of the hosts, as a plan is built from it.
pub struct Reading<'a> {
    pub facts: &'a BTreeMap<String, HostFacts>,
    /// Only these hosts' steps are planned.
    pub limit: Option<&'a [String]>,
    /// Hosts not reached or not read, with the reason.
    pub unreachable: &'a BTreeMap<String, String>,
    /// Hosts outside the limit that were read for the limited ones, with why.
    pub read_outside_limit: &'a BTreeMap<String, String>,
}

pub fn build(
    project: &Project,
    topology: Topology,
    notes: Vec<String>,
    reading: &Reading<'_>,
    secrets: &Secrets,
) -> Result<Plan, ProjectError> {
    let (facts, limit) = (reading.facts, reading.limit);
    let steps = project.expand(&topology)?;
    let mut hosts = BTreeMap::new();
    for (host, steps) in &steps {
        if limit.is_some_and(|l| !l.contains(host)) {
            continue;
        }
        let Some(host_facts) = facts.get(host) else {
            continue;
        };
        hosts.insert(
            host.clone(),
            check_host(host, steps, host_facts, facts, secrets),
        );
    }
    let mut warnings = project.flavour.warnings();
    if project.cluster.tls.is_none() {
        warnings.push("TLS is off (`tls: off`): replication, clients, and under Patroni etcd and the REST API, travel unencrypted and unverified".to_owned());
    }
    if let Some(tls) = &project.cluster.tls {
        for (host, p) in &tls.provided {
            if let Ok(info) = crate::tls::inspect(&p.cert, &tls.ca_cert) {
                if info.days_left() < tls.renew_before_days {
                    warnings.push(format!(
                        "the certificate of {host} (tls.certificates) expires in {} days and pgha cannot renew it (it was issued elsewhere): put a new one in its place",
                        info.days_left()
                    ));
                }
            }
        }
    }
    for rule in &project.cluster.postgres.hba {
        let address = rule.address.as_deref().unwrap_or_default();
        if project.cluster.tls.is_some()
            && rule.kind == "host"
            && !crate::inventory::checks::hba::is_local_address(address)
        {
            warnings.push(format!(
                "pg_hba lets {address} connect without TLS for user {} to database {} (allow_host_without_tls is set)",
                rule.user, rule.database
            ));
        }
        if rule.method == "trust" && rule.kind != "local" {
            warnings.push(format!(
                "pg_hba allows `trust` from {} for user {} to database {}: no password is asked (allow_network_trust is set)",
                rule.address.as_deref().unwrap_or("?"),
                rule.user,
                rule.database
            ));
        }
    }
    let hardware = topology.hardware;
    // A limited plan leaves the rolling upgrade out: it moves the primary role.
    let upgrade = match limit {
        None => upgrade::plan(&project.cluster, project.flavour.as_ref(), &topology, facts),
        Some(_) => None,
    };
    Ok(Plan {
        upgrade,
        format_version: 1,
        id: new_id(),
        cluster: project.cluster.name.clone(),
        inventory: project.cluster.source.clone(),
        topology,
        member_roles: project
            .cluster
            .hosts
            .iter()
            .filter_map(|h| match h.role {
                Role::Member(m) => Some((h.name.clone(), m.name.to_owned())),
                _ => None,
            })
            .collect(),
        notes: notes
            .into_iter()
            .chain(project.objective_notes.iter().cloned())
            .chain(
                project
                    .components
                    .iter()
                    .flat_map(|c| c.plan_notes(hardware)),
            )
            .chain(
                reading
                    .read_outside_limit
                    .iter()
                    .map(|(h, why)| format!("{h} was read, not changed ({why})")),
            )
            .collect(),
        warnings,
        unreachable: reading.unreachable.clone(),
        digests: facts
            .iter()
            .map(|(h, f)| (h.clone(), digest(project.flavour.as_ref(), f)))
            .collect(),
        inputs: Some(Inputs::of(project, secrets, &new_id())),
        hosts,
        leaving: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::digest;
    use crate::facts::{FileFact, HostFacts, PgFacts, ReplicationFact};
    use crate::flavours::streaming::Streaming;

    #[test]
    fn the_digest_ignores_replication_progress_but_not_state() {
        let mut a = HostFacts {
            postgres: Some(PgFacts {
                running: true,
                lsn: "0/3000060".into(),
                ..PgFacts::default()
            }),
            ..HostFacts::default()
        };
        let mut b = a.clone();
        if let Some(pg) = b.postgres.as_mut() {
            pg.lsn = "0/4000000".into();
            pg.received_lsn = "0/4000000".into();
            pg.replication.push(ReplicationFact {
                application_name: "pg2".into(),
                lag_bytes: 42,
                ..ReplicationFact::default()
            });
        }
        assert_eq!(
            digest(&Streaming, &a),
            digest(&Streaming, &b),
            "WAL moving on does not make a plan stale"
        );
        a.files.insert(
            "/etc/x".into(),
            FileFact {
                content: "edited".into(),
                owner: "root".into(),
                group: "root".into(),
                mode: "0644".into(),
            },
        );
        assert_ne!(
            digest(&Streaming, &a),
            digest(&Streaming, &b),
            "a changed file does"
        );
    }
}
