//! A PostgreSQL role with its attributes and password (by secret label).

use serde::{Deserialize, Serialize};

use crate::facts::RoleFact;
use crate::secret::mark;
use crate::secret::scram;
use crate::facts::gather::Sections;
use crate::steps::{sql, Module, StepContext};
use crate::steps::{Action, Check};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgRole {
    pub name: String,
    #[serde(default = "yes")]
    pub login: bool,
    #[serde(default)]
    pub superuser: bool,
    #[serde(default)]
    pub createdb: bool,
    #[serde(default)]
    pub createrole: bool,
    #[serde(default)]
    pub replication: bool,
    #[serde(default = "no_limit")]
    pub connection_limit: i32,
    /// Label of the secret holding the password (`replication.password`); none: no password.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Grant what pg_rewind runs on its source (never revoked: false means "not asked").
    #[serde(default)]
    pub rewind: bool,
}

/// The functions pg_rewind calls on its source server.
const REWIND_FUNCTIONS: [&str; 4] = [
    "pg_catalog.pg_ls_dir(text, boolean, boolean)",
    "pg_catalog.pg_stat_file(text, boolean)",
    "pg_catalog.pg_read_binary_file(text)",
    "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
];

fn yes() -> bool {
    true
}
fn no_limit() -> i32 {
    -1
}
pub(crate) fn default_port() -> u16 {
    5432
}

impl PgRole {
    fn attributes(&self) -> String {
        let flag = |on: bool, name: &str| {
            if on {
                name.to_owned()
            } else {
                format!("NO{name}")
            }
        };
        [
            flag(self.login, "LOGIN"),
            flag(self.superuser, "SUPERUSER"),
            flag(self.createdb, "CREATEDB"),
            flag(self.createrole, "CREATEROLE"),
            flag(self.replication, "REPLICATION"),
            format!("CONNECTION LIMIT {}", self.connection_limit),
        ]
        .join(" ")
    }

    fn rewind_grants(&self) -> String {
        if !self.rewind {
            return String::new();
        }
        REWIND_FUNCTIONS
            .iter()
            .map(|f| format!("GRANT EXECUTE ON FUNCTION {f} TO {};\n", sql::ident(&self.name)))
            .collect()
    }

    fn password_clause(&self) -> String {
        match &self.password {
            Some(label) => format!(" PASSWORD {}", mark(label, Some("scram_sql"))),
            None => String::new(),
        }
    }

    fn differences(&self, current: &RoleFact) -> Vec<&'static str> {
        let mut out = Vec::new();
        let pairs = [
            (self.login, current.login, "login"),
            (self.superuser, current.superuser, "superuser"),
            (self.createdb, current.createdb, "createdb"),
            (self.createrole, current.createrole, "createrole"),
            (self.replication, current.replication, "replication"),
        ];
        for (want, is, name) in pairs {
            if want != is {
                out.push(name);
            }
        }
        if self.connection_limit != current.connection_limit {
            out.push("connection limit");
        }
        out
    }
}

impl Module for PgRole {
    fn kind(&self) -> &'static str {
        "pg_role"
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
            .and_then(|pg| pg.roles.get(&self.name));
        let Some(current) = current else {
            // Created idempotently: a re-run after an interrupted apply finds it and alters it.
            let statement = format!(
                "SELECT format('CREATE ROLE %I', {lit}) WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {lit})\\gexec\nALTER ROLE {id} {attrs}{pw};\n{grants}",
                lit = sql::literal(&self.name),
                id = sql::ident(&self.name),
                attrs = self.attributes(),
                pw = self.password_clause(),
                grants = self.rewind_grants(),
            );
            return Check::Changes(vec![cx.change(
                self.kind(),
                Action::Create,
                &self.name,
                "role does not exist",
                vec![RemoteCommand::sql(self.port, "postgres", statement)],
            )]);
        };
        let mut reasons: Vec<String> = self
            .differences(current)
            .iter()
            .map(|d| d.to_string())
            .collect();
        let mut password_differs = false;
        let mut rotation = None;
        if let Some(label) = &self.password {
            let password_ok = match (cx.secrets.get(label), &current.password_verifier) {
                (Ok(secret), Some(stored)) => scram::matches(stored, secret.expose()),
                _ => false,
            };
            if !password_ok {
                password_differs = true;
                if current.password_verifier.is_some() {
                    // Named by the secret's label, never its value.
                    rotation = Some(format!(
                        "password rotation ({label}): open sessions stay, new connections need the new password"
                    ));
                } else {
                    reasons.push("password".to_owned());
                }
            }
        }
        let grants_missing = self.rewind && !current.rewind;
        if grants_missing {
            reasons.push("pg_rewind's functions not granted".to_owned());
        }
        if reasons.is_empty() && rotation.is_none() {
            return Check::InSync("attributes and password match".to_owned());
        }
        let statement = format!(
            "ALTER ROLE {} {}{};\n{}",
            sql::ident(&self.name),
            self.attributes(),
            if password_differs {
                self.password_clause()
            } else {
                String::new()
            },
            if grants_missing {
                self.rewind_grants()
            } else {
                String::new()
            }
        );
        let reason = match (reasons.is_empty(), rotation) {
            (true, Some(rotation)) => rotation,
            (false, Some(rotation)) => format!("differs: {}; {rotation}", reasons.join(", ")),
            (_, None) => format!("differs: {}", reasons.join(", ")),
        };
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Update,
            &self.name,
            reason,
            vec![RemoteCommand::sql(self.port, "postgres", statement)],
        )])
    }
}
