//! The drill's client: writes sequential ids into a table through a route from the operator's
//! machine, as an application would, and keeps every acknowledged commit with when it came
//! and which server gave it. tokio-postgres with rustls: the connection checks the server's
//! certificate against the cluster CA and its address (`sslmode=verify-full`).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::config::{SslMode, TargetSessionAttrs};
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::drill::route::Route;
use crate::model::{Cluster, Secret};

/// The drill's table, created before the load and dropped after the drill.
pub const TABLE: &str = "pgha_drill";
/// A write (or a connection) that takes longer is given up as an application's statement
/// timeout would: an isolated server answers nothing, not even a reset.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Per host of the route: a host that does not answer costs this much before the next.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Between writes: enough to see a gap to a few tens of milliseconds, little load besides.
const PACE: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the cluster CA certificate: {0}")]
    Ca(String),
    #[error("through {route}: {reason}")]
    Sql { route: String, reason: String },
}

/// Who writes, where.
pub struct Credentials<'a> {
    pub user: &'a str,
    pub password: &'a Secret,
    pub database: &'a str,
}

enum Tls {
    Verified(MakeRustlsConnect),
    Off,
}

/// Connections through one route.
pub struct Client {
    config: tokio_postgres::Config,
    tls: Tls,
    route: String,
}

/// One acknowledged write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub id: i64,
    pub at: Instant,
    /// The server that acknowledged: the address it saw the connection come in on and when
    /// its postmaster started (through a VIP every server is reached at the same address).
    pub server: String,
}

impl Client {
    pub fn new(route: &Route, cluster: &Cluster, who: &Credentials<'_>) -> Result<Self, LoadError> {
        let mut config = tokio_postgres::Config::new();
        for (host, port) in &route.hosts {
            config.host(host).port(*port);
        }
        config
            .user(who.user)
            .password(who.password.expose())
            .dbname(who.database)
            .application_name("pgha drill")
            .connect_timeout(CONNECT_TIMEOUT)
            .target_session_attrs(if route.read_write {
                TargetSessionAttrs::ReadWrite
            } else {
                TargetSessionAttrs::Any
            });
        let tls = match &cluster.tls {
            Some(t) => {
                config.ssl_mode(SslMode::Require);
                Tls::Verified(MakeRustlsConnect::new(client_config(&t.ca_cert)?))
            }
            None => {
                config.ssl_mode(SslMode::Disable);
                Tls::Off
            }
        };
        Ok(Client {
            config,
            tls,
            route: route.label.clone(),
        })
    }

    async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        // The connection's task ends with it; its error shows on the client's next call.
        match &self.tls {
            Tls::Verified(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                tokio::spawn(connection);
                Ok(client)
            }
            Tls::Off => {
                let (client, connection) = self.config.connect(NoTls).await?;
                tokio::spawn(connection);
                Ok(client)
            }
        }
    }

    fn failed(&self, reason: impl std::fmt::Display) -> LoadError {
        LoadError::Sql {
            route: self.route.clone(),
            reason: reason.to_string(),
        }
    }

    /// Statements on a new connection, within the write timeout each.
    pub async fn batch(&self, sql: &str) -> Result<(), LoadError> {
        let client = tokio::time::timeout(WRITE_TIMEOUT * 3, self.connect())
            .await
            .map_err(|_| self.failed("no server answered in time"))?
            .map_err(|e| self.failed(describe(&e)))?;
        tokio::time::timeout(WRITE_TIMEOUT * 3, client.batch_execute(sql))
            .await
            .map_err(|_| self.failed("the statement did not finish in time"))?
            .map_err(|e| self.failed(describe(&e)))
    }

    /// Every id the table holds, read through the route.
    pub async fn ids(&self) -> Result<BTreeSet<i64>, LoadError> {
        let client = tokio::time::timeout(WRITE_TIMEOUT * 3, self.connect())
            .await
            .map_err(|_| self.failed("no server answered in time"))?
            .map_err(|e| self.failed(describe(&e)))?;
        let rows = client
            .query(&format!("SELECT id FROM {TABLE}"), &[])
            .await
            .map_err(|e| self.failed(describe(&e)))?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0)).collect())
    }
}

/// tokio-postgres's error with its cause (the server's message, the TLS refusal).
fn describe(e: &tokio_postgres::Error) -> String {
    crate::diag::with_causes(e)
}

/// rustls with the cluster CA as the only root, ring as its crypto (already the one rcgen
/// uses): no certificate of the machine's store is trusted for the cluster.
fn client_config(ca_pem: &str) -> Result<rustls::ClientConfig, LoadError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| LoadError::Ca(e.to_string()))?;
        roots.add(cert).map_err(|e| LoadError::Ca(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(LoadError::Ca("no certificate in it".into()));
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| LoadError::Ca(e.to_string()))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

/// The write load, running until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    /// Write id 1, 2, 3... one INSERT at a time on a connection kept open and made again
    /// after any failure (every attempt takes a new id: one that failed may have committed).
    pub fn start(client: Arc<Client>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let (flag, sink) = (stop.clone(), acks.clone());
        let task = tokio::spawn(async move {
            let insert =
                format!("INSERT INTO {TABLE} (id) VALUES ($1) RETURNING host(inet_server_addr()) || ' ' || pg_postmaster_start_time()::text");
            let mut connection: Option<tokio_postgres::Client> = None;
            let mut id = 0i64;
            while !flag.load(Ordering::Relaxed) {
                let Some(c) = &connection else {
                    match tokio::time::timeout(WRITE_TIMEOUT, client.connect()).await {
                        Ok(Ok(c)) => connection = Some(c),
                        _ => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                    continue;
                };
                id += 1;
                match tokio::time::timeout(WRITE_TIMEOUT, c.query_one(&insert, &[&id])).await {
                    Ok(Ok(row)) => {
                        let server: Option<String> = row.get(0);
                        let ack = Ack {
                            id,
                            at: Instant::now(),
                            server: server.unwrap_or_default(),
                        };
                        sink.lock().unwrap_or_else(|e| e.into_inner()).push(ack);
                    }
                    _ => connection = None,
                }
                tokio::time::sleep(PACE).await;
            }
        });
        Load { stop, acks, task }
    }

    /// The acknowledged writes so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stop writing (a write under way finishes or times out); every acknowledged write.
    pub async fn stop(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let acks = self.acks.lock().unwrap_or_else(|e| e.into_inner());
        acks.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_the_only_root_and_a_text_without_one_is_refused() {
        let ca = crate::tls::new_ca("drill", 1).expect("a CA");
        assert!(client_config(ca.cert_pem.as_str()).is_ok());
        let err = client_config("not a certificate").expect_err("no CA");
        assert_eq!(
            err.to_string(),
            "the cluster CA certificate: no certificate in it"
        );
    }
}
