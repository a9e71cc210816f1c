//! The cluster has a good backup that is fresh and, where a restore test was due, proven: the
//! drift `plan --detailed-exitcode` reports when a scheduled run was missed or failed, or a
//! restore test found the newest backup broken. The change is what the timers would do: the
//! backup job on every data host at once (the role guard picks the one that takes it), then a
//! restore test of a new backup where it landed.
//!
//! The step stands on every data host; the standbys' wait for the primary's (`after:`), whose
//! job writes the canary row the standbys' jobs wait for. The judgment is the cluster's, from
//! every host's facts: the same on every host.

use serde::{Deserialize, Serialize};

use crate::facts::gather::Sections;
use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

use super::super::judge;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupsCurrent {
    /// The backup program on the host.
    pub bin: String,
    /// The data hosts whose backups count.
    pub hosts: Vec<String>,
}

impl Module for BackupsCurrent {
    fn kind(&self) -> &'static str {
        "backups_current"
    }

    fn invalidates(&self) -> Sections {
        Sections {
            probes: true,
            ..Sections::NONE
        }
    }

    fn check(&self, cx: &StepContext) -> Check {
        let hosts: Vec<&str> = self.hosts.iter().map(String::as_str).collect();
        let j = judge::judge_hosts(&hosts, cx.cluster_facts);
        if let Some(h) = j.running.first() {
            return Check::InSync(format!("a backup is being taken on {h}"));
        }
        if j.drift.is_empty() {
            return Check::InSync(match &j.newest_good {
                Some(b) => format!("newest good backup {} on {}", b.label, b.host),
                None => "no backup needed".to_owned(),
            });
        }
        let as_postgres = |args: &[&str]| {
            let mut a = vec![self.bin.as_str()];
            a.extend_from_slice(args);
            RemoteCommand::new(a).as_user("postgres")
        };
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Create,
            "a verified backup, restore-tested",
            j.drift.join("; "),
            vec![
                as_postgres(&["run", "--now"]),
                as_postgres(&["test", "--if-untested"]),
            ],
        )])
    }
}
