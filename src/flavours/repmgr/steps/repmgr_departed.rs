//! Standbys in repmgr's metadata that left the inventory: on the primary, each one's stream is
//! ended (a reload of pg_hba.conf, which no longer lets it in, does not end a connection that
//! exists), its slot dropped, and its record removed with `repmgr standby unregister
//! --node-id`, so that `repmgr cluster show` and repmgrd's elections no longer count it. Its
//! data directory is left as it is: pgha does not touch a host outside the inventory.
//!
//! Its repmgrd may still run: refused by pg_hba.conf everywhere, it would take the primary
//! for dead and promote its own server. So repmgrd is paused cluster-wide first (`repmgr
//! service pause` reaches every registered node, the departing one too), and unpaused after
//! the unregistration, which reaches only the registered ones: the departed node's repmgrd
//! stays paused. A cluster the DBA had paused stays paused.

use serde::{Deserialize, Serialize};

use crate::facts::gather::Sections;
use crate::flavours::repmgr::command;
use crate::flavours::repmgr::probes::RepmgrFact;
use crate::steps::{sql, Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepmgrDeparted {
    /// Every host of the inventory (a node with another name has left).
    pub members: Vec<String>,
    pub config_file: String,
    pub bin_dir: String,
    pub port: u16,
}

impl Module for RepmgrDeparted {
    fn kind(&self) -> &'static str {
        "repmgr_departed"
    }

    fn invalidates(&self) -> Sections {
        Sections::ALL
    }

    fn check(&self, cx: &StepContext) -> Check {
        let Some(metadata) = RepmgrFact::of(cx.facts) else {
            return Check::InSync("no repmgr metadata here yet".to_owned());
        };
        let departed: Vec<_> = metadata
            .nodes
            .iter()
            .filter(|n| n.kind == "standby" && !self.members.contains(&n.node_name))
            .collect();
        if departed.is_empty() {
            return Check::InSync("every standby in repmgr's metadata is in the inventory".to_owned());
        }
        let was_paused = metadata.paused == Some(true);
        let service = |verb: &str| {
            RemoteCommand::script(format!(
                "cd / && runuser -u postgres -- {}/repmgr -f {} service {verb} >/dev/null 2>&1 || true",
                self.bin_dir,
                shell_words::quote(&self.config_file)
            ))
        };
        let changes = departed
            .into_iter()
            .map(|n| {
                let slot = sql::literal(&format!("repmgr_slot_{}", n.node_id));
                let name = sql::literal(&n.node_name);
                // Its walsender (by slot, or by name without slots) ended; the slot dropped
                // once the walsender is gone.
                let end_stream = format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = {name} \
                     OR pid = (SELECT active_pid FROM pg_replication_slots WHERE slot_name = {slot});\n\
                     DO $$ BEGIN FOR i IN 1..100 LOOP EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = {slot} AND active); PERFORM pg_sleep(0.1); END LOOP; END $$;\n\
                     SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = {slot} AND NOT active;\n"
                );
                cx.change(
                    self.kind(),
                    Action::Stop,
                    format!("{} (node {})", n.node_name, n.node_id),
                    format!(
                        "{} is in repmgr's metadata and not in the inventory: its stream is ended, its slot dropped, its record unregistered (its data directory is left as it is)",
                        n.node_name
                    ),
                    [
                        (!was_paused).then(|| service("pause")),
                        Some(RemoteCommand::sql(self.port, "postgres", end_stream)),
                        Some(command::repmgr(
                            &self.bin_dir,
                            &self.config_file,
                            &["standby", "unregister", &format!("--node-id={}", n.node_id)],
                        )),
                        (!was_paused).then(|| service("unpause")),
                    ]
                    .into_iter()
                    .flatten()
                    .collect(),
                )
            })
            .collect();
        Check::Changes(changes)
    }
}
