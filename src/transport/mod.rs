//! How commands reach a host: SSH for real hosts, a fake for tests.

pub mod command;
pub mod fake;
pub mod ssh;

pub use command::RemoteCommand;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a finished command returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{host}: unreachable: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("{host}: {reason}")]
    Failed { host: String, reason: String },
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One host's connection. Implementations keep one connection open for all commands. Object
/// safe, so the engine runs the same against SSH and against the fake in tests.
pub trait Transport: Send + Sync {
    fn host(&self) -> &str;
    /// Whether commands run as root without `sudo`.
    fn login_is_root(&self) -> bool;
    fn run<'a>(
        &'a self,
        command: &'a RemoteCommand,
    ) -> BoxFuture<'a, Result<Output, TransportError>>;
    /// End the connection; commands after it fail.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// The session's connections, by host name.
pub type Connections = BTreeMap<String, Arc<dyn Transport>>;
