//! Scheduled base backups that are proven restorable (`backups:` in the inventory), for every
//! flavour.
//!
//! One program on every data host (`pgha-backup`, Python's standard library only) is the
//! whole job: systemd's timers start it on every data host at once; its role guard (a canary
//! row the primary writes, naming the host that takes this backup) makes exactly one of them
//! take it, wherever the primary is now, so a failover needs no rescheduling. The backup is
//! plain `pg_basebackup -X stream` into `LABEL.partial`, checked by `pg_verifybackup`, then
//! renamed; its record sits beside it. The restore test (its own timer, or `pgha backup
//! test`) restores the newest verified backup to a scratch folder, starts it on a socket of its
//! own with a minimal configuration, looks for the backup's canary row and runs pg_amcheck.
//!
//! What pgha reads back (the probe: the backups, the last run, when the timers fired) is
//! judged for the whole cluster in `judge.rs`: plan's drift, verify's check, status's lines
//! and `pgha backup list` all say the same.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::components::{Component, Entry, SectionInput};
use crate::facts::gather::Probe;
use crate::flavours::{BoxFuture, CheckResult, ClusterView};
use crate::model::{Cluster, HbaRule, Host};

pub mod commands;
pub mod judge;
pub mod probes;
pub mod section;

pub mod steps {
    crate::kinds! {
        backup_directory: BackupDirectory,
        backups_current: BackupsCurrent,
    }
}

pub use section::{Section, Source};

pub const ENTRY: Entry = Entry {
    name: "backups",
    kinds: steps::KINDS,
    roles: &[],
    roles_need: "",
    load,
};

/// The program on every data host.
pub const BIN: &str = "/usr/local/lib/pgha/pgha-backup";
/// Its settings (JSON, per host).
pub const CONFIG: &str = "/etc/pgha/backup.json";
/// The canary rows, in the `postgres` database (there on every cluster).
pub const CANARY_TABLE: &str = "pgha.backup_canary";
/// A restore test checks everything in a backup up to this size, a sample above.
const AMCHECK_ALL_BELOW: u64 = 1 << 30;
const AMCHECK_SAMPLE: u32 = 20;

fn load(mut input: SectionInput<'_>) -> Option<Arc<dyn Component>> {
    let data_dir = input.data_dir.to_owned();
    let conf_dir = input.conf_dir.to_owned();
    let cx = section::Context {
        pg_dirs: [&data_dir, &conf_dir],
    };
    let section = section::read(&mut input, &cx)?;
    Some(Arc::new(Backups { section }))
}

#[derive(Debug)]
pub struct Backups {
    pub section: Section,
}

impl Backups {
    /// What the plan says it renders.
    pub fn describe(&self) -> Vec<String> {
        let s = &self.section;
        let from = match &s.from {
            Source::Primary => "whichever host is primary".to_owned(),
            Source::Replica => "a streaming replica (the primary when none streams)".to_owned(),
            Source::Host(h) => format!("{h} while it streams"),
        };
        let mut keep = Vec::new();
        if let Some(k) = s.keep {
            keep.push(format!("the newest {k} good"));
        }
        if let Some(a) = s.max_age {
            keep.push(format!("good ones younger than {} h", a.as_secs() / 3600));
        }
        vec![
            format!(
                "backups: pg_basebackup from {from} at `{}` into {} on that host, verified with pg_verifybackup{}; kept: {} (never the last good one)",
                s.schedule,
                s.directory,
                if s.compress { ", then gzipped" } else { "" },
                keep.join(" and "),
            ),
            format!(
                "backups: restore test at `{}` on every host that holds one: the newest verified backup started in a scratch folder, its canary row checked, pg_amcheck ({})",
                s.test_schedule,
                s.amcheck.as_str()
            ),
        ]
    }

    fn settings(&self, cluster: &Cluster) -> Value {
        let s = &self.section;
        let pg = &cluster.postgres;
        json!({
            "managed_by": "pgha: local edits are overwritten by `pgha apply`",
            "dir": s.directory,
            "bin_dir": pg.bin_dir(),
            "port": pg.port,
            "socket_dir": "/var/run/postgresql",
            "from": s.from.as_str(),
            // The replicas a `replica` backup prefers, in the inventory's order.
            "standbys": cluster.hosts.iter().filter(|h| h.role.holds_data()).map(|h| h.name.clone()).collect::<Vec<_>>(),
            "keep": s.keep,
            "max_age_s": s.max_age.map(|a| a.as_secs()),
            "compress": s.compress,
            "max_rate": s.max_rate,
            "amcheck": s.amcheck.as_str(),
            "amcheck_all_below_bytes": AMCHECK_ALL_BELOW,
            "amcheck_sample": AMCHECK_SAMPLE,
            "canary_table": CANARY_TABLE,
            // A standby's job waits this long for the primary's canary row of the same
            // firing, and takes one written at most this long before it started.
            "canary_wait_s": 120,
            "canary_window_s": 120,
            "start_timeout_s": 600,
        })
    }
}

impl Component for Backups {
    fn name(&self) -> &'static str {
        "backups"
    }

    fn fragments(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "running",
            include_str!("../../../playbooks/components/backups.yml"),
        )]
    }

    fn templates(&self) -> &'static [(&'static str, &'static str)] {
        &[
            (
                "backups/pgha-backup.py.j2",
                include_str!("../../../templates/backups/pgha-backup.py.j2"),
            ),
            (
                "backups/backup.json.j2",
                include_str!("../../../templates/backups/backup.json.j2"),
            ),
            (
                "backups/pgha-backup.service.j2",
                include_str!("../../../templates/backups/pgha-backup.service.j2"),
            ),
            (
                "backups/pgha-backup.timer.j2",
                include_str!("../../../templates/backups/pgha-backup.timer.j2"),
            ),
            (
                "backups/pgha-restore-test.service.j2",
                include_str!("../../../templates/backups/pgha-restore-test.service.j2"),
            ),
            (
                "backups/pgha-restore-test.timer.j2",
                include_str!("../../../templates/backups/pgha-restore-test.timer.j2"),
            ),
            (
                "backups/pgha-backup-failed@.service.j2",
                include_str!("../../../templates/backups/pgha-backup-failed@.service.j2"),
            ),
        ]
    }

    fn vars(&self, cluster: &Cluster) -> Value {
        let s = &self.section;
        json!({
            "bin": BIN,
            "config": CONFIG,
            "dir": s.directory,
            "from": s.from.as_str(),
            "schedule": s.schedule,
            "restore_test": {"schedule": s.test_schedule},
            "canary_table": CANARY_TABLE,
            "data_hosts": cluster.hosts.iter().filter(|h| h.role.holds_data()).map(|h| h.name.clone()).collect::<Vec<_>>(),
            "settings": self.settings(cluster),
        })
    }

    /// The settings file names the host it is on (the role guard compares it with the
    /// canary's).
    fn vars_of_host(&self, cluster: &Cluster, host: &Host) -> serde_json::Map<String, Value> {
        let mut settings = self.settings(cluster);
        settings["host"] = json!(host.name);
        serde_json::Map::from_iter([("settings".to_owned(), settings)])
    }

    fn probes(&self, _cluster: &Cluster, host: &Host) -> Vec<Probe> {
        if host.role.holds_data() {
            vec![probes::probe(&self.section.directory, BIN)]
        } else {
            Vec::new()
        }
    }

    /// pg_basebackup connects over the local socket as postgres for replication: `local all`
    /// does not match a replication connection.
    fn hba(&self) -> Vec<HbaRule> {
        vec![HbaRule {
            kind: "local".to_owned(),
            database: "replication".to_owned(),
            user: "postgres".to_owned(),
            address: None,
            method: "peer".to_owned(),
        }]
    }

    fn plan_notes(&self, _hardware: Option<crate::model::Hardware>) -> Vec<String> {
        self.describe()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn checks<'a>(&'a self, view: &'a ClusterView<'a>) -> BoxFuture<'a, Vec<CheckResult>> {
        Box::pin(async move {
            let j = judge::judge(view.cluster, view.facts);
            let host = j
                .newest_good
                .as_ref()
                .map_or_else(|| "cluster".to_owned(), |b| b.host.clone());
            let out = vec![if j.drift.is_empty() {
                CheckResult::new(&host, "backups", true, summary(&j))
            } else {
                CheckResult::new(&host, "backups", false, j.drift.join("; "))
            }];
            out
        })
    }

    fn status_lines(
        &self,
        cluster: &Cluster,
        facts: &std::collections::BTreeMap<String, crate::facts::HostFacts>,
    ) -> Vec<String> {
        let j = judge::judge(cluster, facts);
        let mut out = vec![format!("backups: {}", summary(&j))];
        out.extend(j.drift.iter().map(|d| format!("backups: drift: {d}")));
        out.extend(j.scratch.iter().map(|s| {
            format!("backups: a restored copy is running on {s} (`pgha backup restore --stop`)")
        }));
        out
    }
}

/// The newest good backup in a line.
pub fn summary(j: &judge::Judgment) -> String {
    let mut s = match &j.newest_good {
        Some(b) => format!(
            "newest good {} on {} ({}, taken in {:.1} s), restore test {}",
            b.label,
            b.host,
            judge::size(b.size_bytes),
            b.duration_s,
            match &b.restore_test {
                Some(t) if t.result == "passed" => format!("passed at {}", t.at),
                Some(t) => t.result.clone(),
                None => "not run yet".to_owned(),
            }
        ),
        None => "no good backup".to_owned(),
    };
    if !j.running.is_empty() {
        s.push_str(&format!("; a run is going on on {}", j.running.join(", ")));
    }
    s
}

/// Why a backup is not good, in a line.
pub fn broken_reason(b: &probes::Record) -> String {
    match &b.restore_test {
        Some(t) if t.failed() => format!("its restore test failed at {}: {}", t.at, t.reason),
        _ if !b.error.is_empty() => format!("the run failed: {}", b.error),
        _ => format!("state {}", b.state),
    }
}
