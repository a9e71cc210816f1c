//! Connecting to hosts and reading their facts, hosts in parallel. A host that cannot be
//! reached or read is a state the callers show (`unreachable` with the reason), not a crash.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;

use crate::facts::gather::{self, Query};
use crate::facts::HostFacts;
use crate::model::{Host, Secrets};
use crate::transport::ssh::SshTransport;
use crate::transport::{Connections, Transport, TransportError};

/// Parallel connections when `--forks` is not given: enough that a cluster of tens of hosts
/// never waits in line, few enough not to exhaust the control machine's descriptors.
pub const DEFAULT_FORKS: u16 = 50;

/// Hosts that could not be reached or read, with the reason.
pub type Unreachable = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error("{}", .0.iter().map(|(h, r)| format!("{h}: {r}")).collect::<Vec<_>>().join("\n"))]
    Unreachable(Unreachable),
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

/// Why a host is unreachable, without its name (the callers show it beside the name).
fn reason(e: &FactsError) -> String {
    match e {
        FactsError::Transport(TransportError::Unreachable { reason, .. }) => reason.clone(),
        FactsError::Transport(TransportError::Failed { reason, .. }) => reason.clone(),
        other => {
            let text = other.to_string();
            text.split_once(": ")
                .map_or(text.clone(), |(_, r)| r.to_owned())
        }
    }
}

/// Open one connection per host, at most `forks` attempts at a time; each attempt has the
/// host's own connect timeout, so with enough forks the whole takes one timeout.
pub async fn connect(
    hosts: &[&Host],
    secrets: &Secrets,
    forks: usize,
) -> (Connections, Unreachable) {
    let results: Vec<(String, Result<SshTransport, TransportError>)> =
        futures::stream::iter(hosts.iter().map(|h| async move {
            (
                h.name.clone(),
                SshTransport::connect(h, secrets.clone()).await,
            )
        }))
        .buffer_unordered(forks.max(1))
        .collect()
        .await;
    let mut out = Connections::new();
    let mut unreachable = Unreachable::new();
    for (host, r) in results {
        match r {
            Ok(t) => {
                out.insert(host, Arc::new(t) as Arc<dyn Transport>);
            }
            Err(e) => {
                unreachable.insert(host, reason(&FactsError::Transport(e)));
            }
        }
    }
    (out, unreachable)
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

/// Read every host's facts, in parallel: the facts of those that answered, and why the others
/// did not.
pub async fn gather_all(
    transports: &Connections,
    queries: &BTreeMap<String, Query>,
) -> (BTreeMap<String, HostFacts>, Unreachable) {
    let tasks = transports.iter().map(|(name, t)| async move {
        let q = queries.get(name).cloned().unwrap_or_default();
        (name.clone(), gather_one(t.as_ref(), &q).await)
    });
    let mut facts = BTreeMap::new();
    let mut failed = Unreachable::new();
    for (host, r) in futures::future::join_all(tasks).await {
        match r {
            Ok(f) => {
                facts.insert(host, f);
            }
            Err(e) => {
                failed.insert(host, reason(&e));
            }
        }
    }
    (facts, failed)
}

/// Every host's facts, or an error naming every host that did not answer (for procedures
/// that must see the whole cluster).
pub async fn gather_every(
    transports: &Connections,
    queries: &BTreeMap<String, Query>,
) -> Result<BTreeMap<String, HostFacts>, FactsError> {
    let (facts, failed) = gather_all(transports, queries).await;
    if failed.is_empty() {
        Ok(facts)
    } else {
        Err(FactsError::Unreachable(failed))
    }
}
