//! A transport for tests: records every command (masked) and answers from a script.

use std::sync::Mutex;

use crate::transport::{Output, RemoteCommand, Transport, TransportError};

/// Answers each command with the first scripted reply whose needle occurs in the command's
/// display form, or with success and no output.
#[derive(Debug, Default)]
pub struct FakeTransport {
    host: String,
    replies: Vec<(String, Output)>,
    log: Mutex<Vec<String>>,
}

impl FakeTransport {
    pub fn new(host: &str) -> Self {
        FakeTransport {
            host: host.to_owned(),
            ..FakeTransport::default()
        }
    }

    pub fn reply(mut self, needle: &str, output: Output) -> Self {
        self.replies.push((needle.to_owned(), output));
        self
    }

    /// Every command run so far, as logs would show them.
    pub fn commands(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Transport for FakeTransport {
    fn host(&self) -> &str {
        &self.host
    }

    async fn run(&self, command: &RemoteCommand) -> Result<Output, TransportError> {
        let shown = command.display(true);
        let reply = self
            .replies
            .iter()
            .find(|(needle, _)| shown.contains(needle.as_str()))
            .map(|(_, o)| o.clone())
            .unwrap_or_default();
        if let Ok(mut log) = self.log.lock() {
            log.push(shown);
        }
        Ok(reply)
    }
}
