//! Connecting to every host and reading its facts, all hosts in parallel.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::facts::gather::{self, Query};
use crate::facts::HostFacts;
use crate::model::{Cluster, Secrets};
use crate::transport::ssh::SshTransport;
use crate::transport::{Connections, Transport, TransportError};

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

/// Open one connection per host, in parallel. Every unreachable host is named.
pub async fn connect_all(cluster: &Cluster, secrets: &Secrets) -> Result<Connections, FactsError> {
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
                out.insert(t.host().to_owned(), Arc::new(t) as Arc<dyn Transport>);
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

/// Run the facts script on one host: its output as `gather::parse` reads it.
pub async fn gather_raw(transport: &dyn Transport, query: &Query) -> Result<String, FactsError> {
    let out = transport.run(&query.command()).await?;
    if !out.success() {
        return Err(FactsError::Script {
            host: transport.host().to_owned(),
            status: out.status,
            stderr: out.stderr.trim().to_owned(),
        });
    }
    Ok(out.stdout)
}

/// Read one host's facts in one round trip.
pub async fn gather_one(transport: &dyn Transport, query: &Query) -> Result<HostFacts, FactsError> {
    let raw = gather_raw(transport, query).await?;
    Ok(gather::parse(transport.host(), &raw)?)
}

/// Read every host's facts, in parallel.
pub async fn gather_all(
    transports: &Connections,
    queries: &BTreeMap<String, Query>,
) -> Result<BTreeMap<String, HostFacts>, FactsError> {
    let tasks = transports.iter().map(|(name, t)| async move {
        let q = queries.get(name).cloned().unwrap_or_default();
        gather_one(t.as_ref(), &q).await.map(|f| (name.clone(), f))
    });
    futures::future::join_all(tasks).await.into_iter().collect()
}
