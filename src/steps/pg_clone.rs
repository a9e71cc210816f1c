//! A standby's data directory cloned from its upstream with `pg_basebackup`.
//!
//! Runs only when the host is not already a replica of this cluster. It never replaces a data
//! directory holding another cluster's data unless the host has `allow_wipe`; a directory only
//! initdb has touched (Debian makes one when the package is installed) is replaced freely.

use serde::{Deserialize, Serialize};

use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

/// Present while a clone runs; left behind when one was interrupted.
pub const CLONE_MARKER: &str = "/var/lib/pgha/clone-in-progress";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgClone {
    /// Host name of the upstream (for its facts) and the address to connect to.
    pub upstream: String,
    pub upstream_address: String,
    pub port: u16,
    /// The primary's host name: a standby must hold the primary's system identifier.
    pub primary: String,
    pub user: String,
    #[serde(default)]
    pub slot: Option<String>,
    pub data_dir: String,
    /// The systemd unit of the instance (`postgresql@15-main`).
    pub service: String,
    #[serde(default)]
    pub allow_wipe: bool,
}

impl PgClone {
    fn commands(&self) -> Vec<RemoteCommand> {
        let data = shell_words::quote(&self.data_dir).into_owned();
        let mut basebackup = vec![
            "pg_basebackup".to_owned(),
            "-h".to_owned(),
            self.upstream_address.clone(),
            "-p".to_owned(),
            self.port.to_string(),
            "-U".to_owned(),
            self.user.clone(),
            "-D".to_owned(),
            self.data_dir.clone(),
            "-X".to_owned(),
            "stream".to_owned(),
            "--checkpoint=fast".to_owned(),
            // Never prompt: the password comes from ~postgres/.pgpass.
            "-w".to_owned(),
        ];
        if let Some(slot) = &self.slot {
            basebackup.extend(["-S".to_owned(), slot.clone()]);
        }
        vec![
            RemoteCommand::new(["systemctl", "stop", &self.service]),
            // The marker says "this directory is pgha's unfinished clone": a run that was
            // killed mid-copy is replaced by the next one, never mistaken for data. A copy
            // still running from that killed run is stopped first (killing pgha does not stop
            // it on the host).
            RemoteCommand::script(format!(
                "set -e; mkdir -p /var/lib/pgha; touch {CLONE_MARKER}; \
                 pkill -x pg_basebackup && sleep 1 || true; \
                 install -d -m 0700 -o postgres -g postgres {data}; find {data} -mindepth 1 -delete"
            )),
            RemoteCommand::new(basebackup).as_user("postgres"),
            RemoteCommand::new([
                "touch".to_owned(),
                format!("{}/standby.signal", self.data_dir),
            ])
            .as_user("postgres"),
            RemoteCommand::new(["rm", "-f", CLONE_MARKER]),
        ]
    }
}

impl Module for PgClone {
    fn kind(&self) -> &'static str {
        "pg_clone"
    }

    fn check(&self, cx: &StepContext) -> Check {
        let primary_id = cx
            .cluster_facts
            .get(&self.primary)
            .and_then(|f| f.postgres.as_ref())
            .map(|pg| pg.system_identifier.clone())
            .filter(|id| !id.is_empty());
        let interrupted = cx.facts.present.iter().any(|p| p == CLONE_MARKER);
        let here = cx.facts.postgres.as_ref().filter(|_| !interrupted);
        // initdb's empty cluster holds nothing to lose, whatever its identifier (hosts built
        // from one image even share it).
        if let Some(pg) = here.filter(|pg| pg.initialized && !pg.pristine) {
            if primary_id.is_none() {
                // The primary was not read (down, or outside what was contacted): its data
                // cannot be compared, so nothing is replaced on a guess.
                return if pg.is_replica() {
                    Check::InSync(format!(
                        "a replica (system identifier {}); {} was not read to compare",
                        pg.system_identifier, self.primary
                    ))
                } else {
                    Check::Refused(format!(
                        "{} holds data and {} was not read: pgha cannot tell whether it is this cluster's, and replaces nothing on a guess",
                        cx.host, self.primary
                    ))
                };
            }
            let same_cluster = primary_id.as_deref() == Some(pg.system_identifier.as_str());
            if same_cluster && pg.is_replica() {
                return Check::InSync(format!(
                    "already a replica of this cluster (system identifier {})",
                    pg.system_identifier
                ));
            }
            if same_cluster && !pg.is_replica() && pg.running {
                return Check::Refused(format!(
                    "{} holds this cluster but is not in recovery: a second primary. Re-clone it only after deciding which primary is real",
                    cx.host
                ));
            }
            if !same_cluster && !pg.pristine && !self.allow_wipe {
                return Check::Refused(format!(
                    "{} holds a different cluster with data (system identifier {}) in {}; pgha will not wipe it. Set `allow_wipe: true` on this host to replace it",
                    cx.host, pg.system_identifier, self.data_dir
                ));
            }
        }
        let reason = match here {
            _ if interrupted => "an interrupted clone is replaced".to_owned(),
            Some(pg) if pg.initialized && pg.pristine => {
                "only initdb's empty cluster is here".to_owned()
            }
            Some(pg) if pg.initialized => {
                "holds a different cluster and allow_wipe is set".to_owned()
            }
            _ => "no data directory yet".to_owned(),
        };
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Clone,
            format!("{} from {}", self.data_dir, self.upstream),
            reason,
            self.commands(),
        )])
    }
}
