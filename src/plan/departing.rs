//! Hosts leaving the cluster (`decommission:`): what is still running or stored on one, read
//! in one round trip, and the changes that end it. The staying hosts forget a departed host
//! on their own (its slot, stream, records and etcd member: the flavour's steps); this is the
//! other side, on the host itself, and only when the DBA names it.
//!
//! Order on the host: the components' units (the VIP first), then the flavour's (Patroni
//! before etcd), each stopped, disabled and masked where systemd allows (a masked unit
//! cannot come back at boot, e.g. through Debian's `postgresql.service`); then, with
//! `wipe_data: true`, its data directories deleted: the one change pgha shows as destroying.
//! A leaving host that does not answer is a normal case: a note, nothing to do there.

use serde::{Deserialize, Serialize};

use crate::model::{Cluster, Departing};
use crate::plan::check::{Status, StepOutcome};
use crate::plan::{Action, Change};
use crate::transport::RemoteCommand;

/// The step names a leaving host's changes carry in the plan.
pub const STOP_STEP: &str = "leaves the cluster: services stopped";
pub const WIPE_STEP: &str = "leaves the cluster: data deleted";
/// The kind shown with them.
pub const KIND: &str = "decommission";

/// What to look for on a leaving host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub host: String,
    pub units: Vec<String>,
    pub data: Vec<String>,
    pub wipe_data: bool,
    pub port: u16,
}

impl Spec {
    pub fn of(
        cluster: &Cluster,
        departing: &Departing,
        flavour: &dyn crate::flavours::Flavour,
        components: &[std::sync::Arc<dyn crate::components::Component>],
    ) -> Spec {
        let mut units: Vec<String> = components.iter().flat_map(|c| c.units()).collect();
        units.extend(flavour.departing_units(cluster));
        Spec {
            host: departing.name.clone(),
            units,
            data: flavour.departing_data(cluster),
            wipe_data: departing.wipe_data,
            port: cluster.postgres.port,
        }
    }

    /// One script: each unit's state, each data folder's size, and whether PostgreSQL there
    /// runs as a primary. Lines `unit NAME LOAD ACTIVE FILESTATE`, `data PATH BYTES|absent`,
    /// `recovery t|f|down`.
    pub fn survey(&self) -> RemoteCommand {
        let mut s = String::from("export LC_ALL=C\n");
        for u in &self.units {
            s.push_str(&format!(
                "printf 'unit %s %s %s %s\\n' {q} \"$(systemctl show -p LoadState --value {q} 2>/dev/null)\" \"$(systemctl show -p ActiveState --value {q} 2>/dev/null)\" \"$(systemctl show -p UnitFileState --value {q} 2>/dev/null)\"\n",
                q = shell_words::quote(u)
            ));
        }
        for d in &self.data {
            s.push_str(&format!(
                "if [ -d {q} ] && [ -n \"$(ls -A {q} 2>/dev/null)\" ]; then printf 'data %s %s\\n' {q} \"$(du -sb {q} | cut -f1)\"; else printf 'data %s absent\\n' {q}; fi\n",
                q = shell_words::quote(d)
            ));
        }
        s.push_str(&format!(
            "r=$(runuser -u postgres -- psql -XAtq -p {} -d postgres -c 'SELECT pg_is_in_recovery()' 2>/dev/null) || r=down\nprintf 'recovery %s\\n' \"${{r:-down}}\"\n",
            self.port
        ));
        RemoteCommand::script(s)
    }

    /// The plan's outcomes for this host from the survey's output.
    pub fn judge(&self, survey: &str) -> Vec<StepOutcome> {
        let mut units = Vec::new();
        let mut data = Vec::new();
        let mut recovery = "down";
        for line in survey.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["unit", name, load, active, file] => units.push((*name, *load, *active, *file)),
                // A unit systemd does not know prints empty states.
                ["unit", name, ..] => units.push((*name, "not-found", "inactive", "")),
                ["data", path, size] => data.push((*path, size.parse::<u64>().ok())),
                ["recovery", r] => recovery = r,
                _ => {}
            }
        }
        if recovery == "f" {
            return vec![StepOutcome {
                step: STOP_STEP.to_owned(),
                kind: KIND.to_owned(),
                status: Status::Refused {
                    reason: format!(
                        "PostgreSQL on {} runs as a primary (not in recovery): pgha will not stop a primary. Switch over to a host that stays first (`pgha switchover`), or, if it is a primary of another cluster, take it out of `decommission:`",
                        self.host
                    ),
                },
            }];
        }
        let stops: Vec<Change> = units
            .iter()
            .filter(|(_, load, _, _)| *load != "not-found")
            .filter_map(|(name, load, active, file)| {
                let running = !matches!(*active, "inactive" | "failed" | "");
                // A unit that may start at boot: loaded and neither disabled nor masked (a
                // unit file of pgha's own in /etc cannot be masked; one without an [Install]
                // section, `static`, starts only when something asks for it).
                let may_start = *load == "loaded"
                    && !matches!(*file, "disabled" | "masked" | "masked-runtime" | "static");
                let why = match (running, may_start) {
                    (true, _) => format!("{active} on {}: stopped, disabled and masked, so it does not start again at boot", self.host),
                    (false, true) => format!("{file} on {}: it would start at boot; disabled and masked", self.host),
                    (false, false) => return None,
                };
                Some((name, why))
            })
            .map(|(name, why)| Change {
                host: self.host.clone(),
                step: STOP_STEP.to_owned(),
                kind: KIND.to_owned(),
                action: Action::Stop,
                target: (*name).to_owned(),
                reason: why,
                diff: None,
                commands: vec![RemoteCommand::script(format!(
                    // A unit file of pgha's own in /etc cannot be masked: disabled is enough
                    // there (nothing else starts it).
                    "systemctl stop {q} && systemctl disable {q} 2>/dev/null; systemctl mask {q} 2>/dev/null || systemctl disable {q}",
                    q = shell_words::quote(name)
                ))],
                procedure: None,
            })
            .collect();
        let mut out = vec![outcome(
            STOP_STEP,
            stops,
            format!("nothing of the cluster's runs on {}", self.host),
        )];
        let present: Vec<(&str, Option<u64>)> = data
            .iter()
            .filter(|(_, size)| size.is_some())
            .copied()
            .collect();
        if self.wipe_data {
            let wipes = present
                .iter()
                .map(|(path, size)| Change {
                    host: self.host.clone(),
                    step: WIPE_STEP.to_owned(),
                    kind: KIND.to_owned(),
                    action: Action::Destroy,
                    target: (*path).to_owned(),
                    reason: format!(
                        "wipe_data: true: DESTROYS {} of data on {}",
                        crate::human::size(size.unwrap_or(0)),
                        self.host
                    ),
                    diff: None,
                    commands: vec![wipe_command(path)],
                    procedure: None,
                })
                .collect();
            out.push(outcome(
                WIPE_STEP,
                wipes,
                format!("no data left on {}", self.host),
            ));
        } else if !present.is_empty() {
            let list: Vec<String> = present
                .iter()
                .map(|(p, s)| format!("{p} ({})", crate::human::size(s.unwrap_or(0))))
                .collect();
            out.push(StepOutcome {
                step: WIPE_STEP.to_owned(),
                kind: KIND.to_owned(),
                status: Status::InSync {
                    reason: format!(
                        "kept: {} (set `wipe_data: true` under `decommission:` to delete)",
                        list.join(", ")
                    ),
                },
            });
        }
        out
    }
}

fn outcome(step: &str, changes: Vec<Change>, in_sync: String) -> StepOutcome {
    StepOutcome {
        step: step.to_owned(),
        kind: KIND.to_owned(),
        status: if changes.is_empty() {
            Status::InSync { reason: in_sync }
        } else {
            Status::Changes { changes }
        },
    }
}

/// Delete a data folder's contents, never while a server runs on it (the stop came first;
/// this is the guard against anything that started it again), and never across a mount.
fn wipe_command(path: &str) -> RemoteCommand {
    RemoteCommand::script(format!(
        "set -e\nd={q}\nif [ -f \"$d/postmaster.pid\" ] && kill -0 \"$(head -1 \"$d/postmaster.pid\")\" 2>/dev/null; then echo \"a server still runs on $d\" >&2; exit 1; fi\nfind \"$d\" -xdev -mindepth 1 -delete",
        q = shell_words::quote(path)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(wipe: bool) -> Spec {
        Spec {
            host: "pg3".into(),
            units: vec!["keepalived".into(), "postgresql@15-main".into()],
            data: vec!["/var/lib/postgresql/15/main".into()],
            wipe_data: wipe,
            port: 5432,
        }
    }

    fn changes(o: &StepOutcome) -> Vec<(Action, String)> {
        match &o.status {
            Status::Changes { changes } => changes
                .iter()
                .map(|c| (c.action, c.target.clone()))
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn running_units_stop_and_data_is_deleted_only_with_consent() {
        let survey = "unit keepalived not-found inactive\nunit postgresql@15-main loaded active enabled\ndata /var/lib/postgresql/15/main 41943040\nrecovery t\n";
        let kept = spec(false).judge(survey);
        assert_eq!(
            changes(&kept[0]),
            [(Action::Stop, "postgresql@15-main".to_owned())]
        );
        assert!(
            matches!(&kept[1].status, Status::InSync { reason } if reason.contains("40.0 MB") && reason.contains("wipe_data")),
            "{kept:?}"
        );
        let wiped = spec(true).judge(survey);
        assert_eq!(
            changes(&wiped[1]),
            [(Action::Destroy, "/var/lib/postgresql/15/main".to_owned())]
        );
    }

    #[test]
    fn a_masked_stopped_host_without_data_has_nothing_left() {
        let survey = "unit keepalived not-found inactive\nunit postgresql@15-main masked inactive masked\nunit pgha-repmgrd.service loaded inactive disabled\ndata /var/lib/postgresql/15/main absent\nrecovery down\n";
        let out = spec(true).judge(survey);
        assert!(out
            .iter()
            .all(|o| matches!(o.status, Status::InSync { .. })));
    }

    #[test]
    fn a_primary_is_never_stopped() {
        let survey = "unit postgresql@15-main loaded active enabled\nrecovery f\n";
        let out = spec(true).judge(survey);
        assert!(
            matches!(&out[0].status, Status::Refused { reason } if reason.contains("switchover"))
        );
        assert_eq!(out.len(), 1);
    }
}
