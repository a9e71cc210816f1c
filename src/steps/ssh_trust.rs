//! SSH between the cluster's hosts for one OS user (repmgr's switchover runs its commands on
//! the other nodes as postgres): every peer's public key authorized here, each line limited
//! to the peer's address, and every peer's host key pinned in a known-hosts file of pgha's
//! own. Nothing is trusted on first use: the keys come from the hosts' own files, read by
//! pgha over its verified connections.
//!
//! The user's other `authorized_keys` lines stay as they are: pgha's carry a comment of their
//! own (`pgha-<tag>:<peer>`) and only those are rewritten. A peer whose facts were not read
//! (a limited run, a host down) keeps the line it has.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::facts::gather::{Query, Sections};
use crate::facts::HostFacts;
use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

/// The host key pinned for each peer (every Debian host has one since OpenSSH 6.5).
pub const HOST_KEY: &str = "/etc/ssh/ssh_host_ed25519_key.pub";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshTrust {
    /// The OS user who logs in to the peers, and is logged in to.
    pub user: String,
    pub home: String,
    /// The user's private key on every host (the step before makes it); `.pub` beside it.
    pub key: String,
    /// The known-hosts file the user's ssh is pointed at (`-o UserKnownHostsFile`).
    pub known_hosts: String,
    /// Names pgha's lines in `authorized_keys`.
    pub tag: String,
    /// Every host of the trust group, this one included.
    pub peers: Vec<Peer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub name: String,
    pub address: String,
}

impl SshTrust {
    fn authorized_keys(&self) -> String {
        format!("{}/.ssh/authorized_keys", self.home)
    }

    fn public_key(&self) -> String {
        format!("{}.pub", self.key)
    }

    fn mark(&self, peer: &str) -> String {
        format!("pgha-{}:{peer}", self.tag)
    }

    /// `authorized_keys` as it should be: the user's own lines, then one per peer.
    fn wanted_authorized(&self, cx: &StepContext, current: &str) -> (String, Vec<String>) {
        let prefix = format!("pgha-{}:", self.tag);
        let ours = |line: &str| line.rsplit(' ').next().is_some_and(|c| c.starts_with(&prefix));
        let mut kept: Vec<&str> = current.lines().filter(|l| !ours(l)).collect();
        while kept.last().is_some_and(|l| l.trim().is_empty()) {
            kept.pop();
        }
        let mut out: Vec<String> = kept.iter().map(|l| (*l).to_owned()).collect();
        let mut waiting = Vec::new();
        for peer in self.peers.iter().filter(|p| p.name != cx.host) {
            let mark = self.mark(&peer.name);
            let line = match cx.cluster_facts.get(&peer.name) {
                Some(facts) => match key_of(facts, &self.public_key()) {
                    Some(key) => Some(format!(
                        "from=\"{}\",no-agent-forwarding,no-port-forwarding,no-X11-forwarding {key} {mark}",
                        peer.address
                    )),
                    None => {
                        waiting.push(peer.name.clone());
                        None
                    }
                },
                // Not read: what it had stays.
                None => current
                    .lines()
                    .find(|l| l.rsplit(' ').next() == Some(mark.as_str()))
                    .map(str::to_owned),
            };
            out.extend(line);
        }
        let mut text = out.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        (text, waiting)
    }

    /// The pinned host keys: one line per peer, by address and by name.
    fn wanted_known_hosts(&self, cx: &StepContext, current: &str) -> (String, Vec<String>) {
        let mut out = Vec::new();
        let mut waiting = Vec::new();
        for peer in self.peers.iter().filter(|p| p.name != cx.host) {
            let names = format!("{},{}", peer.address, peer.name);
            match cx.cluster_facts.get(&peer.name) {
                Some(facts) => match key_of(facts, HOST_KEY) {
                    Some(key) => out.push(format!("{names} {key}")),
                    None => waiting.push(peer.name.clone()),
                },
                None => out.extend(
                    current
                        .lines()
                        .find(|l| l.split(' ').next() == Some(names.as_str()))
                        .map(str::to_owned),
                ),
            }
        }
        let mut text = out.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        (text, waiting)
    }

    /// Writes `path` with `content` atomically, the user's own, 0600, in a 0700 `.ssh`.
    fn write(&self, path: &str, content: String) -> RemoteCommand {
        let user = shell_words::quote(&self.user);
        let dest = shell_words::quote(path);
        let new = shell_words::quote(&format!("{path}.pgha-new")).into_owned();
        RemoteCommand::script(format!(
            "set -e; parent=\"$(dirname {dest})\"; install -d -m 0700 -o {user} -g {user} \"$parent\"; \
             install -m 0600 -o {user} -g {user} /dev/stdin {new}; mv -f {new} {dest}"
        ))
        .with_stdin(content)
    }
}

/// The key type and data of a public-key file (its comment left out).
fn key_of(facts: &HostFacts, path: &str) -> Option<String> {
    let content = &facts.files.get(path)?.content;
    let mut fields = content.split_whitespace();
    let (kind, data) = (fields.next()?, fields.next()?);
    Some(format!("{kind} {data}"))
}

fn current<'a>(facts: &'a HostFacts, path: &str) -> &'a str {
    facts.files.get(path).map_or("", |f| f.content.as_str())
}

impl Module for SshTrust {
    fn kind(&self) -> &'static str {
        "ssh_trust"
    }

    fn ask(&self, query: &mut Query) {
        query.files.extend([
            self.public_key(),
            HOST_KEY.to_owned(),
            self.authorized_keys(),
            self.known_hosts.clone(),
        ]);
    }

    fn invalidates(&self) -> Sections {
        Sections {
            files: true,
            ..Sections::NONE
        }
    }

    fn check(&self, cx: &StepContext) -> Check {
        let mut changes = Vec::new();
        let mut waiting: BTreeSet<String> = BTreeSet::new();
        let files = [
            (self.authorized_keys(), true),
            (self.known_hosts.clone(), false),
        ];
        for (path, authorized) in files {
            let now = current(cx.facts, &path);
            let (wanted, missing) = if authorized {
                self.wanted_authorized(cx, now)
            } else {
                self.wanted_known_hosts(cx, now)
            };
            waiting.extend(missing);
            let owned = cx
                .facts
                .files
                .get(&path)
                .is_some_and(|f| f.owner == self.user && f.mode == "0600");
            let exists = cx.facts.files.contains_key(&path);
            // Nothing to write and no file: none is made (bare hosts, before the keys).
            if wanted == now && (owned || !exists) {
                continue;
            }
            let what = if authorized {
                "the peers' keys authorized"
            } else {
                "the peers' host keys pinned"
            };
            let mut change = cx.change(
                self.kind(),
                if exists {
                    Action::Update
                } else {
                    Action::Create
                },
                path.clone(),
                what,
                vec![self.write(&path, wanted.clone())],
            );
            change.diff = Some(crate::steps::file::unified_diff(now, &wanted, &path));
            changes.push(change);
        }
        if changes.is_empty() && waiting.is_empty() {
            return Check::InSync(format!(
                "{} peer(s) trusted both ways",
                self.peers.len().saturating_sub(1)
            ));
        }
        if !waiting.is_empty() {
            // On bare hosts the keys are made by the step before: apply checks again then.
            let names: Vec<&str> = waiting.iter().map(String::as_str).collect();
            let reason = format!("{} made on {} by the step before", "keys", names.join(", "));
            if changes.is_empty() {
                changes.push(cx.change(
                    self.kind(),
                    Action::Update,
                    self.authorized_keys(),
                    reason,
                    Vec::new(),
                ));
            } else {
                for c in &mut changes {
                    c.reason = format!("{}; {reason}", c.reason);
                }
            }
        }
        Check::Changes(changes)
    }
}
