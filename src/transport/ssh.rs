//! SSH transport: one multiplexed OpenSSH master connection per host (the openssh crate with
//! native-mux), host keys checked as the inventory says, `sudo -n` when not root.

use std::time::{Duration, Instant};

use openssh::{KnownHosts, Session, SessionBuilder, Stdio};
use tokio::io::AsyncWriteExt;

use crate::model::{HostKeyPolicy, Secrets};
use crate::transport::{BoxFuture, Output, RemoteCommand, Transport, TransportError};

pub struct SshTransport {
    host: String,
    /// None once closed.
    session: tokio::sync::RwLock<Option<Session>>,
    login_is_root: bool,
    secrets: Secrets,
    /// Every command's masked form and duration, for `-vv` and round-trip counts.
    log: std::sync::Mutex<Vec<(String, Duration)>>,
}

impl SshTransport {
    /// Open the master connection.
    pub async fn connect(
        host: &crate::model::Host,
        secrets: Secrets,
    ) -> Result<Self, TransportError> {
        let ssh = &host.ssh;
        let mut builder = SessionBuilder::default();
        builder
            .user(ssh.user.clone())
            .port(ssh.port)
            .connect_timeout(Duration::from_secs(u64::from(ssh.connect_timeout)))
            .server_alive_interval(Duration::from_secs(15))
            .known_hosts_check(match ssh.host_key_policy {
                HostKeyPolicy::Strict => KnownHosts::Strict,
                HostKeyPolicy::AcceptNew => KnownHosts::Add,
            })
            // The crate's default puts control sockets in the working directory.
            .control_directory(std::env::temp_dir());
        if let Some(key) = &ssh.identity_file {
            builder.keyfile(key);
        }
        if let Some(known) = &ssh.known_hosts {
            builder.user_known_hosts_file(known);
        }
        let session =
            builder
                .connect_mux(&host.address)
                .await
                .map_err(|e| TransportError::Unreachable {
                    host: host.name.clone(),
                    reason: format!(
                        "ssh {}@{}:{}: {}",
                        ssh.user,
                        host.address,
                        ssh.port,
                        describe(&e)
                    ),
                })?;
        Ok(SshTransport {
            host: host.name.clone(),
            session: tokio::sync::RwLock::new(Some(session)),
            login_is_root: !ssh.needs_sudo(),
            secrets,
            log: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// How many commands ran over this connection.
    pub fn round_trips(&self) -> usize {
        self.log.lock().map(|l| l.len()).unwrap_or(0)
    }
}

fn describe(e: &openssh::Error) -> String {
    crate::diag::with_causes(e)
}

impl Transport for SshTransport {
    fn host(&self) -> &str {
        &self.host
    }

    fn login_is_root(&self) -> bool {
        self.login_is_root
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            if let Some(session) = self.session.write().await.take() {
                let _ = session.close().await;
            }
        })
    }

    fn run<'a>(
        &'a self,
        command: &'a RemoteCommand,
    ) -> BoxFuture<'a, Result<Output, TransportError>> {
        Box::pin(self.run_command(command))
    }
}

impl SshTransport {
    async fn run_command(&self, command: &RemoteCommand) -> Result<Output, TransportError> {
        // From `/`: a command run as postgres must not start in a home it cannot enter.
        let line = format!(
            "cd / && {}",
            command.shell_line(self.login_is_root, &self.secrets)?
        );
        let shown = command.display(self.login_is_root);
        tracing::debug!(host = %self.host, command = %shown, "run");
        let started = Instant::now();
        let fail = |e: openssh::Error| TransportError::Failed {
            host: self.host.clone(),
            reason: format!("{shown}: {}", describe(&e)),
        };
        let session = self.session.read().await;
        let Some(session) = session.as_ref() else {
            return Err(TransportError::Failed {
                host: self.host.clone(),
                reason: format!("{shown}: the connection is closed"),
            });
        };
        let mut remote = session.raw_command(line);
        remote.stdout(Stdio::piped()).stderr(Stdio::piped());
        remote.stdin(if command.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = remote.spawn().await.map_err(fail)?;
        if let Some(stdin) = &command.stdin {
            let bytes = stdin.reveal(&self.secrets)?;
            if let Some(mut pipe) = child.stdin().take() {
                // A command may exit without reading all its input (a refused lock, say): its
                // exit status, not the broken pipe, says how it went.
                if let Err(e) = pipe.write_all(bytes.as_bytes()).await {
                    if e.kind() != std::io::ErrorKind::BrokenPipe {
                        return Err(TransportError::Failed {
                            host: self.host.clone(),
                            reason: format!("{shown}: writing stdin: {e}"),
                        });
                    }
                }
                pipe.shutdown().await.ok();
            }
        }
        let out = child.wait_with_output().await.map_err(fail)?;
        if let Ok(mut log) = self.log.lock() {
            log.push((shown.clone(), started.elapsed()));
        }
        let output = Output {
            status: out.status.code().unwrap_or(255),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: self.secrets.mask(&String::from_utf8_lossy(&out.stderr)),
        };
        tracing::debug!(host = %self.host, status = output.status, elapsed_ms = started.elapsed().as_millis() as u64, "done");
        Ok(output)
    }
}
