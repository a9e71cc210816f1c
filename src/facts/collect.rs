//! Connecting to every host and reading its facts, all hosts in parallel.

use std::collections::BTreeMap;

use crate::facts::gather::{self, Query};
use crate::facts::HostFacts;
use crate::model::{Cluster, Secrets};
use crate::playbook::Step;
use crate::steps::StepKind;
use crate::transport::ssh::SshTransport;
use crate::transport::{Transport, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Unreachable(Vec<TransportError>),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("{host}: the facts script failed (exit {status}): {stderr}")]
    Script {
        host: String,
        status: i32,
        stderr: String,
    },
    #[error(transparent)]
    Parse(#[from] gather::ParseError),
}

/// What to ask every host: the union of what any expansion of the playbook may touch, so the
/// facts serve the plan whatever the real topology turns out to be.
pub fn query_for(
    cluster: &Cluster,
    expansions: &[&BTreeMap<String, Vec<Step>>],
) -> BTreeMap<String, Query> {
    let mut out = BTreeMap::new();
    for host in &cluster.hosts {
        let patroni = cluster.patroni.as_ref();
        let mut q = Query {
            port: cluster.postgres.port,
            version: cluster.postgres.version,
            data_dir: patroni
                .map(|p| p.data_dir.clone())
                .unwrap_or_else(|| cluster.postgres.data_dir.clone()),
            etcd_endpoint: patroni
                .filter(|p| p.etcd.members.contains(&host.name))
                .map(|p| format!("http://127.0.0.1:{}", p.etcd.client_port)),
            patroni_url: patroni
                .filter(|_| host.role.has_postgres())
                .map(|p| format!("http://{}:{}", host.address, p.restapi_port)),
            ..Query::default()
        };
        for steps in expansions.iter().filter_map(|e| e.get(&host.name)) {
            for step in steps {
                match &step.kind {
                    StepKind::File(f) => q.files.push(f.dest.clone()),
                    StepKind::Service(s) => q.services.push(s.name.clone()),
                    StepKind::Command(c) => q.present.push(c.creates.clone()),
                    _ => {}
                }
            }
        }
        q.present
            .push(crate::steps::pg_clone::CLONE_MARKER.to_owned());
        // Files of other roles too: a standby-only file left on a promoted node is news.
        q.files.sort();
        q.files.dedup();
        q.services.sort();
        q.services.dedup();
        q.present.sort();
        q.present.dedup();
        out.insert(host.name.clone(), q);
    }
    out
}

/// Open one connection per host, in parallel. Every unreachable host is named.
pub async fn connect_all(
    cluster: &Cluster,
    secrets: &Secrets,
) -> Result<BTreeMap<String, SshTransport>, FactsError> {
    let tasks = cluster
        .hosts
        .iter()
        .map(|h| SshTransport::connect(h, secrets.clone()));
    let results = futures::future::join_all(tasks).await;
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(t) => {
                out.insert(t.host().to_owned(), t);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        for (_, t) in out {
            t.close().await;
        }
        Err(FactsError::Unreachable(errors))
    }
}

/// Read one host's facts in one round trip.
pub async fn gather_one(transport: &SshTransport, query: &Query) -> Result<HostFacts, FactsError> {
    let out = transport.run(&query.command()).await?;
    if !out.success() {
        return Err(FactsError::Script {
            host: transport.host().to_owned(),
            status: out.status,
            stderr: out.stderr.trim().to_owned(),
        });
    }
    Ok(gather::parse(transport.host(), &out.stdout)?)
}

/// Read every host's facts, in parallel.
pub async fn gather_all(
    transports: &BTreeMap<String, SshTransport>,
    queries: &BTreeMap<String, Query>,
) -> Result<BTreeMap<String, HostFacts>, FactsError> {
    let tasks = transports.iter().map(|(name, t)| async move {
        let q = queries.get(name).cloned().unwrap_or_default();
        gather_one(t, &q).await.map(|f| (name.clone(), f))
    });
    futures::future::join_all(tasks).await.into_iter().collect()
}
