//! A database and its owner.

use serde::{Deserialize, Serialize};

use crate::facts::gather::Sections;
use crate::steps::{pg_role::default_port, sql, Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgDatabase {
    pub name: String,
    pub owner: String,
    #[serde(default = "default_port")]
    pub port: u16,
}

impl Module for PgDatabase {
    fn kind(&self) -> &'static str {
        "pg_database"
    }

    /// Roles, databases, extensions, slots and settings live in PostgreSQL's state.
    fn invalidates(&self) -> Sections {
        Sections::POSTGRES
    }

    fn check(&self, cx: &StepContext) -> Check {
        let current = cx
            .facts
            .postgres
            .as_ref()
            .and_then(|pg| pg.databases.get(&self.name));
        match current {
            None => {
                // CREATE DATABASE cannot run in a transaction or a DO block; \gexec keeps it
                // idempotent all the same.
                let statement = format!(
                    "SELECT format('CREATE DATABASE %I OWNER %I', {n}, {o}) WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = {n})\\gexec\n",
                    n = sql::literal(&self.name),
                    o = sql::literal(&self.owner),
                );
                Check::Changes(vec![cx.change(
                    self.kind(),
                    Action::Create,
                    &self.name,
                    format!("database does not exist (owner {})", self.owner),
                    vec![RemoteCommand::sql(self.port, "postgres", statement)],
                )])
            }
            Some(db) if db.owner != self.owner => Check::Changes(vec![cx.change(
                self.kind(),
                Action::Update,
                &self.name,
                format!("owner is {}, wanted {}", db.owner, self.owner),
                vec![RemoteCommand::sql(
                    self.port,
                    "postgres",
                    format!(
                        "ALTER DATABASE {} OWNER TO {};\n",
                        sql::ident(&self.name),
                        sql::ident(&self.owner)
                    ),
                )],
            )]),
            Some(_) => Check::InSync(format!("exists, owned by {}", self.owner)),
        }
    }
}
