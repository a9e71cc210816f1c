//! Replication slots pgha made for a downstream that no longer streams from this node (after a
//! switchover, or a host removed from the inventory). An abandoned slot keeps WAL forever and
//! fills the disk; only inactive slots with pgha's prefix are dropped, never anyone else's.

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
        let stale: Vec<&String> = pg
            .slots
            .iter()
            .filter(|(name, slot)| {
                name.starts_with(PREFIX) && !slot.active && !self.keep.contains(name)
            })
            .map(|(name, _)| name)
            .collect();
        if stale.is_empty() {
            return Check::InSync("no abandoned pgha slot".to_owned());
        }
        let statements: String = stale
            .iter()
            .map(|s| {
                format!(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = {} AND NOT active;\n",
                    sql::literal(s)
                )
            })
            .collect();
        let names: Vec<&str> = stale.iter().map(|s| s.as_str()).collect();
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Update,
            names.join(", "),
            "abandoned replication slot: no downstream uses it, and it holds WAL back",
            vec![RemoteCommand::sql(self.port, "postgres", statements)],
        )])
    }
}
