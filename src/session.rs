//! A working session with a cluster: the project, its secrets, one SSH connection per host and
//! the hosts' current facts. Shared by plan, apply, verify, status and switchover.

use std::collections::BTreeMap;
use std::path::Path;

use crate::facts::collect::{self, FactsError};
use crate::facts::gather::Query;
use crate::facts::HostFacts;
use crate::flavours::ClusterView;
use crate::model::{Role, Secrets, Topology};
use crate::plan::build::{self, Plan};
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
    pub async fn open(
        inventory: &Path,
        playbooks: Option<&Path>,
        templates: Option<&Path>,
        limit: &[String],
    ) -> Result<Self, SessionError> {
        let project = Project::load(inventory, playbooks, templates)?;
        check_limit(&project, limit)?;
        let secrets = project.resolve_secrets()?;
        Self::connect(project, secrets, limit).await
    }

    /// Connect to every host of a loaded project whose secrets are resolved (and `limit`
    /// checked), and read the hosts' facts.
    pub async fn connect(
        project: Project,
        secrets: Secrets,
        limit: &[String],
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
        let transports = collect::connect_all(&project.cluster, &secrets).await?;
        let facts = collect::gather_all(&transports, &queries).await?;
        Ok(Session {
            project,
            secrets,
            transports,
            queries,
            facts,
            limit: (!limit.is_empty()).then(|| limit.to_vec()),
        })
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
        Ok(build::build(
            &self.project,
            topology,
            notes,
            &self.facts,
            &self.secrets,
            self.limit.as_deref(),
        )?)
    }

    /// Read one host's facts again (after a change there).
    pub async fn refresh(&mut self, host: &str) -> Result<(), SessionError> {
        if let (Some(t), Some(q)) = (self.transports.get(host), self.queries.get(host)) {
            let f = collect::gather_one(t.as_ref(), q).await?;
            self.facts.insert(host.to_owned(), f);
        }
        Ok(())
    }

    /// Read every host's facts again, in parallel.
    pub async fn refresh_all(&mut self) -> Result<(), SessionError> {
        self.facts = collect::gather_all(&self.transports, &self.queries).await?;
        Ok(())
    }

    /// What a flavour's checks and procedures see of the cluster now.
    pub fn view<'a>(&'a self, topology: &'a Topology) -> ClusterView<'a> {
        ClusterView {
            cluster: &self.project.cluster,
            topology,
            facts: &self.facts,
            transports: &self.transports,
            queries: &self.queries,
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
        for (_, t) in self.transports {
            t.close().await;
        }
    }
}
