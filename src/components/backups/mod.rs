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
use crate::model::{Cluster, HbaRule, Host, MemberRole, Role};

pub mod commands;
pub mod judge;
pub mod probes;
pub mod section;

pub mod steps {
    crate::kinds! {
        backup_directory: BackupDirectory,
        backups_current: BackupsCurrent,
        pgbackrest_stanza: PgbackrestStanza,
    }
}

pub use section::{Method, Pgbackrest, RepoRetention, Repository, Section, Source};

pub const ENTRY: Entry = Entry {
    name: "backups",
    kinds: steps::KINDS,
    roles: &[BACKUP_ROLE],
    roles_need: "a backup host holds pgBackRest's repository: give the inventory `backups: {method: pgbackrest, repository: {host: NAME}}` naming it",
    load,
};

/// A host that holds pgBackRest's repository and runs the backups and restore tests, with no
/// data of the cluster.
pub const BACKUP_ROLE: MemberRole = MemberRole {
    name: "backup",
    runs_postgres: false,
    description: "a backup host",
};

/// pgBackRest's configuration (the packaged default place).
pub const PGBACKREST_CONF: &str = "/etc/pgbackrest/pgbackrest.conf";
/// The configuration a restore test runs pgBackRest with: the repository alone, so the
/// restore goes into the scratch folder on this host whatever the main one says.
pub const RESTORE_TEST_CONF: &str = "/etc/pgbackrest/pgha-restore-test.conf";
/// pgBackRest's `cmd-ssh`: ssh with pgha's key and pinned host keys for postgres.
pub const SSH_WRAPPER: &str = "/usr/local/lib/pgha/pgha-backup-ssh";
/// postgres's key for the backups' SSH, and the host keys pinned for it.
pub const SSH_KEY: &str = "/var/lib/postgresql/.ssh/pgha_backup_ed25519";
pub const KNOWN_HOSTS: &str = "/var/lib/postgresql/.ssh/pgha_backup_known_hosts";

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
    let cluster_name = input.cluster_name.to_owned();
    let archive_mode = input.archive_mode.to_owned();
    let cx = section::Context {
        pg_dirs: [&data_dir, &conf_dir],
        cluster_name: &cluster_name,
        archive_mode: &archive_mode,
    };
    let section = section::read(&mut input, &cx)?;
    Some(Arc::new(Backups {
        section,
        flavour: input.flavour.clone(),
    }))
}

#[derive(Debug)]
pub struct Backups {
    pub section: Section,
    /// Where the flavour keeps the data directory (pgBackRest's `pg1-path`: Patroni's own).
    flavour: Arc<dyn crate::flavours::Flavour>,
}

impl Backups {
    pub fn pgbackrest(&self) -> Option<&Pgbackrest> {
        match &self.section.method {
            Method::Pgbackrest(p) => Some(p),
            Method::Basebackup => None,
        }
    }

    /// The repository's host, when it is on one.
    pub fn repository_host(&self) -> Option<&str> {
        match self.pgbackrest().map(|p| &p.repository) {
            Some(Repository::Host { host, .. }) => Some(host),
            _ => None,
        }
    }

    /// The hosts that run the job (the program, its timers): every data host, or the
    /// repository's host alone (pgBackRest backs up from there).
    pub fn job_hosts(&self, cluster: &Cluster) -> Vec<String> {
        match self.repository_host() {
            Some(h) => vec![h.to_owned()],
            None => cluster
                .hosts
                .iter()
                .filter(|h| h.role.holds_data())
                .map(|h| h.name.clone())
                .collect(),
        }
    }

    /// What the plan says it renders.
    pub fn describe(&self) -> Vec<String> {
        if let Some(p) = self.pgbackrest() {
            return self.describe_pgbackrest(p);
        }
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

    fn describe_pgbackrest(&self, p: &Pgbackrest) -> Vec<String> {
        let s = &self.section;
        let (where_, runs) = match &p.repository {
            Repository::Host { host, path } => (
                format!("{path} on {host}"),
                format!(
                    "{host} runs them over SSH as postgres (pgha's key, host keys pinned), from {}",
                    if s.from == Source::Replica {
                        "a standby (backup-standby)"
                    } else {
                        "the primary"
                    }
                ),
            ),
            Repository::Path(path) => (
                format!("{path} (mounted on every data host)"),
                "the primary runs them".to_owned(),
            ),
        };
        let keep = match p.retention {
            RepoRetention::Count(n) => format!("repo1-retention-full={n}"),
            RepoRetention::Days(d) => {
                format!("repo1-retention-full-type=time, repo1-retention-full={d} (days)")
            }
        };
        vec![
            format!(
                "backups: pgBackRest, stanza {}, repository {where_}; WAL archived by archive_command (archive_mode = on, a restart); full backups at `{}`: {runs}, then `pgbackrest verify`; kept: {keep}",
                p.stanza, s.schedule
            ),
            format!(
                "backups: restore test at `{}` on {}: `pgbackrest restore --type=immediate` of the newest verified backup into a scratch folder, its canary row checked, pg_amcheck ({})",
                s.test_schedule,
                self.repository_host().unwrap_or("the host that took it"),
                s.amcheck.as_str()
            ),
        ]
    }

    /// What pgBackRest's configuration and the program need, the same on every host.
    fn pgbackrest_vars(&self, p: &Pgbackrest, cluster: &Cluster) -> Value {
        let s = &self.section;
        let pg = &cluster.postgres;
        let address = |name: &str| cluster.host(name).map(|h| h.address.clone());
        let data: Vec<&Host> = cluster
            .hosts
            .iter()
            .filter(|h| h.role.holds_data())
            .collect();
        let (repo_host, repo_path) = match &p.repository {
            Repository::Host { host, path } => (Some(host.clone()), path.clone()),
            Repository::Path(path) => (None, path.clone()),
        };
        let (retention_type, retention) = match p.retention {
            RepoRetention::Count(n) => ("count", n),
            RepoRetention::Days(d) => ("time", d),
        };
        // The trust group: the data hosts and the repository's host.
        let mut peers: Vec<Value> = data
            .iter()
            .map(|h| json!({"name": h.name, "address": h.address}))
            .collect();
        if let Some(r) = &repo_host {
            if !data.iter().any(|h| &h.name == r) {
                peers.push(json!({"name": r, "address": address(r)}));
            }
        }
        json!({
            "stanza": p.stanza,
            "config": PGBACKREST_CONF,
            "restore_config": RESTORE_TEST_CONF,
            "repository_host": repo_host,
            "repository_address": repo_host.as_deref().and_then(address),
            "repository_path": repo_path,
            "retention_type": retention_type,
            "retention": retention,
            "compress_type": if s.compress { "zst" } else { "none" },
            "backup_standby": s.from == Source::Replica,
            "pg_path": self.flavour.data_dir(cluster),
            "pg_port": pg.port,
            "socket_dir": "/var/run/postgresql",
            "pg_hosts": data.iter().map(|h| json!({"name": h.name, "address": h.address})).collect::<Vec<_>>(),
            "ssh": SSH_WRAPPER,
            "ssh_key": SSH_KEY,
            "known_hosts": KNOWN_HOSTS,
            "ssh_peers": peers,
        })
    }

    fn settings(&self, cluster: &Cluster) -> Value {
        let mut v = self.basebackup_settings(cluster);
        if let Some(p) = self.pgbackrest() {
            v["method"] = json!("pgbackrest");
            v["pgbackrest"] = self.pgbackrest_vars(p, cluster);
        }
        v
    }

    fn basebackup_settings(&self, cluster: &Cluster) -> Value {
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

    // The timers, then a run that may be under way (it stops its scratch server itself).
    fn units(&self) -> Vec<String> {
        [
            "pgha-backup.timer",
            "pgha-restore-test.timer",
            "pgha-backup.service",
            "pgha-restore-test.service",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn fragments(&self) -> &'static [(&'static str, &'static str)] {
        &[
            (
                "packages",
                include_str!("../../../playbooks/components/backups-packages.yml"),
            ),
            (
                "running",
                include_str!("../../../playbooks/components/backups.yml"),
            ),
        ]
    }

    fn roles(&self) -> &'static [MemberRole] {
        match self.repository_host() {
            Some(_) => &[BACKUP_ROLE],
            None => &[],
        }
    }

    /// A backup host installs pgBackRest and runs the same fragments as a data host, whose
    /// steps ask `backups.job` and `backups.repository_here`.
    fn host_playbook(&self, role: Role) -> Option<(&'static str, &'static str)> {
        (role == Role::Member(BACKUP_ROLE)).then_some((
            "components/backups-repository.yml",
            include_str!("../../../playbooks/components/backups-repository.yml"),
        ))
    }

    fn host_state(&self, host: &Host, facts: Option<&crate::facts::HostFacts>) -> Option<String> {
        if host.role != Role::Member(BACKUP_ROLE) {
            return None;
        }
        let report = facts.and_then(probes::read).and_then(|(_, r)| r);
        Some(match report.and_then(|r| r.stanza) {
            Some(st) if st.exists => format!("pgBackRest repository ({} backups)", st.backups),
            Some(_) => "pgBackRest repository, no stanza yet".to_owned(),
            None => "pgBackRest repository not read".to_owned(),
        })
    }

    fn archive_command(&self) -> Option<String> {
        self.pgbackrest().map(|p| {
            format!(
                "pgbackrest --config={PGBACKREST_CONF} --stanza={} archive-push %p",
                p.stanza
            )
        })
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
            (
                "backups/pgbackrest.conf.j2",
                include_str!("../../../templates/backups/pgbackrest.conf.j2"),
            ),
            (
                "backups/pgbackrest-restore-test.conf.j2",
                include_str!("../../../templates/backups/pgbackrest-restore-test.conf.j2"),
            ),
            (
                "backups/pgha-backup-ssh.j2",
                include_str!("../../../templates/backups/pgha-backup-ssh.j2"),
            ),
        ]
    }

    fn vars(&self, cluster: &Cluster) -> Value {
        let s = &self.section;
        json!({
            "method": s.method.as_str(),
            "pgbackrest": self.pgbackrest().map(|p| self.pgbackrest_vars(p, cluster)),
            "job_hosts": self.job_hosts(cluster),
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
        let job = self.job_hosts(cluster).contains(&host.name);
        serde_json::Map::from_iter([
            ("settings".to_owned(), settings),
            // This host runs the program and its timers.
            ("job".to_owned(), json!(job)),
            // This host holds pgBackRest's repository.
            (
                "repository_here".to_owned(),
                json!(self.repository_host() == Some(host.name.as_str())),
            ),
            // This host has pgBackRest (a data host, or the repository's host).
            (
                "pgbackrest_here".to_owned(),
                json!(
                    self.pgbackrest().is_some()
                        && (host.role.holds_data()
                            || self.repository_host() == Some(host.name.as_str()))
                ),
            ),
        ])
    }

    fn probes(&self, cluster: &Cluster, host: &Host) -> Vec<Probe> {
        if self.job_hosts(cluster).contains(&host.name) {
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
            let j = self.judge(view.cluster, view.facts);
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
        let j = self.judge(cluster, facts);
        let mut out = vec![format!("backups: {}", summary(&j))];
        out.extend(j.drift.iter().map(|d| format!("backups: drift: {d}")));
        out.extend(j.scratch.iter().map(|s| {
            format!("backups: a restored copy is running on {s} (`pgha backup restore --stop`)")
        }));
        out
    }
}

impl Backups {
    /// The cluster's backups judged from the hosts that run the job.
    pub fn judge(
        &self,
        cluster: &Cluster,
        facts: &std::collections::BTreeMap<String, crate::facts::HostFacts>,
    ) -> judge::Judgment {
        let hosts = self.job_hosts(cluster);
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        judge::judge_hosts(&hosts, facts)
    }
}

/// The newest good backup in a line.
pub fn summary(j: &judge::Judgment) -> String {
    let mut s = match &j.newest_good {
        Some(b) => format!(
            "newest good {} on {} ({}, taken in {:.1} s), restore test {}",
            b.label,
            b.host,
            crate::human::size(b.size_bytes),
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
