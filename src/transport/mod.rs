//! How commands reach a host: SSH for real hosts, a fake for tests.

pub mod command;
pub mod fake;
pub mod ssh;

pub use command::RemoteCommand;

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

/// One host's connection. Implementations keep one connection open for all commands.
#[allow(async_fn_in_trait)]
pub trait Transport {
    fn host(&self) -> &str;
    async fn run(&self, command: &RemoteCommand) -> Result<Output, TransportError>;
}
