//! What the backups component reads on each data host in the facts round trip: the backup
//! folder's owner and mode, and what `pgha-backup facts` says (the backups held there with
//! their records and restore tests, the last run, when the timers last fired).

use serde::Deserialize;

use crate::facts::gather::Probe;
use crate::facts::HostFacts;

pub const NAME: &str = "backups";

pub fn probe(directory: &str, bin: &str) -> Probe {
    let dir = shell_words::quote(directory);
    let bin = shell_words::quote(bin);
    Probe {
        name: NAME,
        script: format!(
            "if [ -d {dir} ]; then echo \"dir $(stat -c '%U %G %a' {dir})\"; else echo 'dir -'; fi; \
             if [ -x {bin} ]; then printf 'facts %s\\n' \"$(timeout 20 {bin} facts 2>/dev/null)\"; fi"
        ),
    }
}

/// The backup folder as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub owner: String,
    pub group: String,
    /// Octal without a leading zero, as `stat %a` writes it: `700`.
    pub mode: String,
}

/// `pgha-backup facts`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Report {
    pub backups: Vec<Record>,
    pub last_run: Option<LastRun>,
    pub last_test: Option<TestReport>,
    /// When the backup timer last fired here (UTC, `2026-12-02T01:00:00Z`).
    pub backup_fired: Option<String>,
    pub test_fired: Option<String>,
    /// A run is going on here.
    pub running: bool,
    /// Copies a `restore --to-scratch` left running.
    pub scratch: Vec<String>,
    pub now: String,
    /// pgBackRest's stanza as `pgbackrest info` sees it (pgBackRest only).
    pub stanza: Option<Stanza>,
}

/// `pgbackrest info`'s word on the stanza.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Stanza {
    /// Made by `stanza-create` (with or without backups).
    pub exists: bool,
    /// pgBackRest's status code (0 ok, 1 missing stanza path, 2 no valid backups, ...).
    pub code: i64,
    pub message: String,
    /// Backups in the repository.
    pub backups: u32,
}

/// A backup's record (`pgha-backup.json` beside its data).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Record {
    pub label: String,
    pub host: String,
    /// `verified`, `failed`, `partial` (going on, or killed).
    pub state: String,
    pub role: String,
    pub started: String,
    pub finished: String,
    pub duration_s: f64,
    pub backup_s: f64,
    pub verify_s: f64,
    pub size_bytes: u64,
    pub stored_bytes: u64,
    pub compressed: bool,
    pub start_lsn: String,
    pub end_lsn: String,
    pub timeline: Option<u32>,
    pub error: String,
    pub canary: Option<Canary>,
    pub restore_test: Option<TestReport>,
    /// `basebackup` or `pgbackrest`.
    pub method: String,
    /// pgBackRest's own label of the backup (`20261202-010000F`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub set: String,
}

impl Record {
    /// Verified when taken, and not found broken by a restore test since.
    pub fn good(&self) -> bool {
        self.state == "verified" && !self.restore_test.as_ref().is_some_and(TestReport::failed)
    }

    pub fn proven(&self) -> bool {
        self.restore_test
            .as_ref()
            .is_some_and(|t| t.result == "passed")
    }
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Canary {
    pub id: i64,
    pub written_at: String,
    pub taken_by: String,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct LastRun {
    /// `running`, `done`, `skipped`, `failed`, `interrupted`.
    pub state: String,
    pub started: String,
    pub finished: String,
    pub role: String,
    pub reason: String,
    pub label: String,
    pub note: String,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct TestReport {
    pub label: String,
    pub host: String,
    pub at: String,
    /// `passed`, `failed`, `running` (a copy left started), `none` (nothing to test),
    /// `interrupted`.
    pub result: String,
    pub reason: String,
    pub times: std::collections::BTreeMap<String, f64>,
    pub amcheck: Option<serde_json::Value>,
    pub canary: Option<Canary>,
    pub port: Option<u16>,
    pub socket_dir: Option<String>,
    pub connect: Option<String>,
}

impl TestReport {
    pub fn failed(&self) -> bool {
        self.result == "failed"
    }
}

/// What the probe found on a host: None where it did not run (not a data host, no answer).
pub fn read(facts: &HostFacts) -> Option<(Option<Folder>, Option<Report>)> {
    let lines = facts.probe(NAME)?;
    let mut folder = None;
    let mut report = None;
    for line in lines {
        if let Some(rest) = line.strip_prefix("dir ") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if let [owner, group, mode] = f[..] {
                folder = Some(Folder {
                    owner: owner.to_owned(),
                    group: group.to_owned(),
                    mode: mode.to_owned(),
                });
            }
        } else if let Some(rest) = line.strip_prefix("facts ") {
            report = serde_json::from_str(rest).ok();
        }
    }
    Some((folder, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn reads_the_folder_and_the_report() {
        let facts = HostFacts {
            probes: BTreeMap::from([(
            NAME.to_owned(),
            vec![
                "dir postgres postgres 700".to_owned(),
                r#"facts {"backups": [{"label": "20261202T010000Z", "state": "verified", "restore_test": {"result": "failed", "reason": "pg_verifybackup: checksum mismatch for file \"base/5/1259\""}}], "running": false, "now": "2026-12-02T01:10:00Z"}"#.to_owned(),
            ],
        )]),
            ..HostFacts::default()
        };
        let (folder, report) = read(&facts).expect("probed");
        assert_eq!(folder.expect("folder").mode, "700");
        let report = report.expect("report");
        assert_eq!(report.backups.len(), 1);
        assert!(
            !report.backups[0].good(),
            "a failed restore test makes it bad"
        );
    }

    #[test]
    fn a_missing_folder_is_none() {
        let facts = HostFacts {
            probes: BTreeMap::from([(NAME.to_owned(), vec!["dir -".to_owned()])]),
            ..HostFacts::default()
        };
        let (folder, report) = read(&facts).expect("probed");
        assert!(folder.is_none());
        assert!(report.is_none());
    }
}
