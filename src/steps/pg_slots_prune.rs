//! Replication slots pgha made for a downstream that no longer streams from this node (after a
//! switchover, or a host removed from the inventory). An abandoned slot keeps WAL forever and
//! fills the disk; only slots with pgha's prefix are dropped, never anyone else's.
//!
//! A standby that left the inventory may still stream here: a reload of pg_hba.conf does not
//! end a connection that exists. Its slot (pgha's prefix, none of the members' names) is
//! active: its walsender is ended, then the slot dropped; it cannot come back, as pg_hba.conf
//! (written before this step) no longer lets it in. A member's slot that is still active is
//! left alone (a standby moving to another upstream).

use serde::{Deserialize, Serialize};

use crate::facts::gather::Sections;
use crate::steps::{pg_role::default_port, sql, Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

pub const PREFIX: &str = "pgha_";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgSlotsPrune {
    /// Slots that stay: those of this node's current downstreams.
    pub keep: Vec<String>,
    /// The slot names of every member of the inventory: an active pgha slot outside them is
    /// a departed standby's.
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default = "default_port")]
    pub port: u16,
}

impl Module for PgSlotsPrune {
    fn kind(&self) -> &'static str {
        "pg_slots_prune"
    }

    /// Roles, databases, extensions, slots and settings live in PostgreSQL's state.
    fn invalidates(&self) -> Sections {
        Sections::POSTGRES
    }

    fn check(&self, cx: &StepContext) -> Check {
        let Some(pg) = cx.facts.postgres.as_ref().filter(|pg| pg.running) else {
            return Check::InSync("server not running".to_owned());
        };
        let ours = |name: &String| name.starts_with(PREFIX) && !self.keep.contains(name);
        let stale: Vec<&String> = pg
            .slots
            .iter()
            .filter(|(name, slot)| ours(name) && !slot.active)
            .map(|(name, _)| name)
            .collect();
        let departed: Vec<(&String, &str)> = pg
            .slots
            .iter()
            .filter(|(name, slot)| {
                ours(name) && slot.active && !self.members.is_empty() && !self.members.contains(name)
            })
            .map(|(name, slot)| (name, slot.streamer.as_str()))
            .collect();
        if stale.is_empty() && departed.is_empty() {
            return Check::InSync("no abandoned pgha slot".to_owned());
        }
        let mut changes = Vec::new();
        if !stale.is_empty() {
            let statements: String = stale.iter().map(|s| drop_inactive(s)).collect();
            let names: Vec<&str> = stale.iter().map(|s| s.as_str()).collect();
            changes.push(cx.change(
                self.kind(),
                Action::Update,
                names.join(", "),
                "abandoned replication slot: no downstream uses it, and it holds WAL back",
                vec![RemoteCommand::sql(self.port, "postgres", statements)],
            ));
        }
        for (slot, streamer) in departed {
            let who = match streamer.split_once(' ') {
                Some((name, addr)) if !addr.is_empty() => format!("{name} (from {addr})"),
                Some((name, _)) => name.to_owned(),
                None if !streamer.is_empty() => streamer.to_owned(),
                None => "a standby".to_owned(),
            };
            let literal = sql::literal(slot);
            // Ended, then dropped once its walsender is gone (that takes a moment).
            let statements = format!(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = {literal} AND active;\n\
                 DO $$ BEGIN FOR i IN 1..100 LOOP EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = {literal} AND active); PERFORM pg_sleep(0.1); END LOOP; END $$;\n\
                 {}",
                drop_inactive(slot)
            );
            changes.push(cx.change(
                self.kind(),
                Action::Stop,
                format!("replication of {who}"),
                format!(
                    "{who} is not in the inventory and still streams here with slot {slot}: its walsender is ended and the slot dropped (its data directory is left as it is)"
                ),
                vec![RemoteCommand::sql(self.port, "postgres", statements)],
            ));
        }
        Check::Changes(changes)
    }
}

fn drop_inactive(slot: &str) -> String {
    format!(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = {} AND NOT active;\n",
        sql::literal(slot)
    )
}
