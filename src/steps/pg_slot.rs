//! A physical replication slot for a downstream standby.

use serde::{Deserialize, Serialize};

use crate::facts::gather::Sections;
use crate::steps::{pg_role::default_port, sql, Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgSlot {
    pub name: String,
    #[serde(default = "default_port")]
    pub port: u16,
}

impl Module for PgSlot {
    fn kind(&self) -> &'static str {
        "pg_slot"
    }

    /// Roles, databases, extensions, slots and settings live in PostgreSQL's state.
    fn invalidates(&self) -> Sections {
        Sections::POSTGRES
    }

    fn check(&self, cx: &StepContext) -> Check {
        let exists = cx
            .facts
            .postgres
            .as_ref()
            .is_some_and(|pg| pg.slots.contains_key(&self.name));
        if exists {
            return Check::InSync("slot exists".to_owned());
        }
        // Reserve WAL at once (`immediately_reserve`): the clone that will use the slot must not
        // find its first WAL segment recycled by another clone's checkpoint meanwhile.
        let statement = format!(
            "SELECT pg_create_physical_replication_slot({n}, true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = {n});\n",
            n = sql::literal(&self.name)
        );
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Create,
            &self.name,
            "physical replication slot missing",
            vec![RemoteCommand::sql(self.port, "postgres", statement)],
        )])
    }
}
