//! A transport for tests: records every command (masked) and answers from a script.
//!
//! Optionally it models a host just enough for the engine's scheduling to be tested without
//! containers: paths made by `touch PATH` exist afterwards and the facts script reports them,
//! every command can take a while, and a journal shared by several hosts records when each
//! command started and ended (in one sequence across hosts), so tests can assert order and
//! overlap.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::transport::{BoxFuture, Output, RemoteCommand, Transport, TransportError};

/// Answers each command with the first scripted reply whose needle occurs in the command's
/// display form, or with success and no output.
#[derive(Debug, Default)]
pub struct FakeTransport {
    host: String,
    replies: Vec<(String, Output)>,
    log: Mutex<Vec<String>>,
    journal: Option<Journal>,
    delay: Duration,
    /// Paths that exist on the modelled host; None when the host is not modelled.
    paths: Option<Mutex<BTreeSet<String>>>,
}

/// One command as the journal saw it: its start and end in one sequence over every host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub host: String,
    pub command: String,
    pub started: usize,
    pub ended: usize,
}

/// The journal several fake hosts share.
#[derive(Debug, Clone, Default)]
pub struct Journal {
    clock: Arc<AtomicUsize>,
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Journal {
    pub fn new() -> Self {
        Journal::default()
    }

    fn tick(&self) -> usize {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    /// Every finished command, in the order they ended.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }
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

    /// Model the host: `touch PATH` makes PATH exist, and the facts script reports what
    /// exists (and nothing else: no packages, no PostgreSQL).
    pub fn modelled(mut self, existing: &[&str]) -> Self {
        self.paths = Some(Mutex::new(
            existing.iter().map(|p| (*p).to_owned()).collect(),
        ));
        self
    }

    /// Record into a journal shared with other hosts.
    pub fn journal(mut self, journal: &Journal) -> Self {
        self.journal = Some(journal.clone());
        self
    }

    /// Every command takes this long.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Every command run so far, as logs would show them.
    pub fn commands(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Whether the modelled host has `path`.
    pub fn has(&self, path: &str) -> bool {
        self.paths
            .as_ref()
            .and_then(|p| p.lock().ok().map(|p| p.contains(path)))
            .unwrap_or(false)
    }

    /// What logs, the journal and a reply's needle see of a command: its line and its
    /// standard input (SQL), masked.
    fn seen(command: &RemoteCommand) -> String {
        let mut shown = command.display(true);
        if let Some(stdin) = &command.stdin {
            shown.push('\n');
            shown.push_str(&stdin.masked());
        }
        shown
    }

    fn answer(&self, command: &RemoteCommand) -> Result<Output, TransportError> {
        let shown = Self::seen(command);
        if let Ok(mut log) = self.log.lock() {
            log.push(shown.clone());
        }
        // A modelled host answers the facts script itself, whatever the scripted replies say
        // (the script names the paths they may look for).
        let facts_script = shown.contains("@@pgha packages");
        if let (Some(paths), true) = (&self.paths, facts_script) {
            let paths = paths.lock().map(|p| p.clone()).unwrap_or_default();
            let mut stdout = String::from("@@pgha packages\n");
            for p in paths.iter() {
                stdout.push_str(&format!("@@pgha present {p}\n"));
            }
            stdout.push_str("@@pgha end\n");
            return Ok(Output {
                status: 0,
                stdout,
                stderr: String::new(),
            });
        }
        if let Some((_, o)) = self
            .replies
            .iter()
            .find(|(needle, _)| shown.contains(needle.as_str()))
        {
            return Ok(o.clone());
        }
        let Some(paths) = &self.paths else {
            return Ok(Output::default());
        };
        let Ok(mut paths) = paths.lock() else {
            return Ok(Output::default());
        };
        let words: Vec<&str> = shown
            .split(|c: char| c.is_whitespace() || c == ';' || c == '\'')
            .collect();
        for pair in words.windows(2) {
            if pair[0] == "touch" {
                paths.insert(pair[1].to_owned());
            }
        }
        Ok(Output::default())
    }
}

impl Transport for FakeTransport {
    fn host(&self) -> &str {
        &self.host
    }

    fn login_is_root(&self) -> bool {
        true
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    fn run<'a>(
        &'a self,
        command: &'a RemoteCommand,
    ) -> BoxFuture<'a, Result<Output, TransportError>> {
        Box::pin(async move {
            let started = self.journal.as_ref().map(Journal::tick);
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            let answer = self.answer(command);
            if let (Some(journal), Some(started)) = (&self.journal, started) {
                let entry = Entry {
                    host: self.host.clone(),
                    command: Self::seen(command),
                    started,
                    ended: journal.tick(),
                };
                if let Ok(mut e) = journal.entries.lock() {
                    e.push(entry);
                }
            }
            answer
        })
    }
}
