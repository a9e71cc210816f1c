//! An extension created in a database.

use serde::{Deserialize, Serialize};

use crate::facts::gather::Sections;
use crate::steps::{pg_role::default_port, sql, Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgExtension {
    pub name: String,
    pub database: String,
    #[serde(default = "default_port")]
    pub port: u16,
}

impl Module for PgExtension {
    fn kind(&self) -> &'static str {
        "pg_extension"
    }

    /// Roles, databases, extensions, slots and settings live in PostgreSQL's state.
    fn invalidates(&self) -> Sections {
        Sections::POSTGRES
    }

    fn check(&self, cx: &StepContext) -> Check {
        let present = cx
            .facts
            .postgres
            .as_ref()
            .and_then(|pg| pg.databases.get(&self.database))
            .is_some_and(|db| db.extensions.contains(&self.name));
        if present {
            return Check::InSync(format!("created in {}", self.database));
        }
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Create,
            format!("{} in {}", self.name, self.database),
            "extension not created",
            vec![RemoteCommand::sql(
                self.port,
                &self.database,
                format!(
                    "CREATE EXTENSION IF NOT EXISTS {};\n",
                    sql::ident(&self.name)
                ),
            )],
        )])
    }
}
