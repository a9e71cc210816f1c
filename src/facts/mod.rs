//! Facts: what a host holds right now, gathered in one round trip per host.
//!
//! The types here are what plan reads. Gathering (a shell script whose sections are parsed by
//! pure functions) lives beside them; tests feed fixture facts straight in.

pub mod collect;
pub mod gather;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything plan needs to know about one host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostFacts {
    /// Installed Debian packages: name -> version.
    pub packages: BTreeMap<String, String>,
    /// Managed files, by absolute path. A path absent here does not exist on the host.
    pub files: BTreeMap<String, FileFact>,
    /// systemd units by name.
    pub services: BTreeMap<String, ServiceFact>,
    /// Paths asked about by guards (`creates:`) that exist.
    pub present: Vec<String>,
    /// The local PostgreSQL instance, when its data directory exists.
    pub postgres: Option<PgFacts>,
    /// What a flavour's probes printed, by probe name, line by line; the flavour parses it.
    pub probes: BTreeMap<String, Vec<String>>,
    /// Memory and CPUs, read with the packages (what hardware-derived settings size for).
    pub hardware: Option<crate::model::Hardware>,
}

impl HostFacts {
    /// The lines a probe printed; None when it was not asked or printed nothing.
    pub fn probe(&self, name: &str) -> Option<&[String]> {
        self.probes.get(name).map(Vec::as_slice)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFact {
    pub content: String,
    pub owner: String,
    pub group: String,
    /// Octal, four digits: "0640".
    pub mode: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceFact {
    pub active: bool,
    pub enabled: bool,
    /// Masked: nothing can start it (a decommissioned host, a fenced former primary).
    pub masked: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgFacts {
    /// `PG_VERSION` exists in the data directory.
    pub initialized: bool,
    /// The server answers queries.
    pub running: bool,
    pub in_recovery: bool,
    /// `standby.signal` exists: a stopped server that will start as a standby.
    pub standby_signal: bool,
    /// Only what initdb made: no user database, role or table. Safe to replace by a clone.
    pub pristine: bool,
    pub system_identifier: String,
    /// The timeline the server is on: a replica's is the one it receives (or must reach),
    /// not the last restartpoint's, which lags behind after a promotion upstream.
    pub timeline: u32,
    /// Settings as the server sees them (`pg_settings`).
    pub settings: BTreeMap<String, Setting>,
    /// Errors in configuration files (`pg_file_settings.error`).
    pub file_errors: Vec<String>,
    pub roles: BTreeMap<String, RoleFact>,
    /// Database -> owner.
    pub databases: BTreeMap<String, DatabaseFact>,
    pub slots: BTreeMap<String, SlotFact>,
    /// `pg_stat_replication`: who streams from this node.
    pub replication: Vec<ReplicationFact>,
    /// `pg_stat_wal_receiver`: what this node streams from.
    pub wal_receiver: Option<WalReceiverFact>,
    /// Last WAL position written (primary) or replayed (standby); for a stopped server its
    /// last checkpoint's.
    pub lsn: String,
    /// A standby's last WAL position received (kept after its upstream is gone): who would
    /// lose least if promoted.
    pub received_lsn: String,
    /// A primary's timeline history (`pg_wal/<timeline>.history`): where each earlier
    /// timeline forked off. Empty on timeline 1.
    pub history: String,
    /// A stopped server's state as pg_controldata says it (`shut down`, `in production` for
    /// one that crashed while primary, ...).
    pub state: String,
}

/// A WAL position `X/Y` as a number of bytes.
pub fn lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// Where `timeline` ended in a timeline history: the position at which its successor forked.
pub fn fork_point(history: &str, timeline: u32) -> Option<u64> {
    history.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let parent: u32 = fields.next()?.parse().ok()?;
        (parent == timeline)
            .then(|| fields.next().and_then(lsn))
            .flatten()
    })
}

impl PgFacts {
    /// A standby now, or one once started.
    pub fn is_replica(&self) -> bool {
        self.in_recovery || (!self.running && self.standby_signal)
    }

    /// A running standby whose WAL receiver streams.
    pub fn streams(&self) -> bool {
        self.running
            && self.in_recovery
            && self
                .wal_receiver
                .as_ref()
                .is_some_and(|w| w.status == "streaming")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Setting {
    /// Value in the parameter's own unit, as `current_setting` shows it with its unit.
    pub value: String,
    /// `postmaster`, `sighup`, ...
    pub context: String,
    pub pending_restart: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleFact {
    pub login: bool,
    pub superuser: bool,
    pub createdb: bool,
    pub createrole: bool,
    pub replication: bool,
    pub connection_limit: i32,
    /// The stored SCRAM verifier, so a password can be compared without being sent anywhere.
    pub password_verifier: Option<String>,
    /// May run the functions pg_rewind calls on its source (superusers may).
    pub rewind: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseFact {
    pub owner: String,
    pub extensions: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlotFact {
    pub active: bool,
    pub physical: bool,
    /// Who streams with it while it is active: the walsender's `application_name` and client
    /// address (`pg3 10.0.0.13`).
    pub streamer: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationFact {
    pub application_name: String,
    pub client_addr: String,
    pub state: String,
    /// `async`, `sync`, `potential`, `quorum`.
    pub sync_state: String,
    /// WAL the downstream has not replayed yet.
    pub lag_bytes: i64,
    /// `replay_lag` in seconds (0 when idle: PostgreSQL reports no lag without traffic).
    pub lag_seconds: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalReceiverFact {
    pub status: String,
    pub sender_host: String,
    pub slot_name: String,
}
