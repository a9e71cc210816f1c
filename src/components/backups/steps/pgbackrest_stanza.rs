//! pgBackRest's stanza: made once (`stanza-create`), then proven with `check`, which forces a
//! WAL switch and waits for the segment in the repository (archive_command works end to end).
//! Whether the stanza exists is what `pgha-backup facts` reads from `pgbackrest info`; both
//! commands are idempotent, so an apply that read stale facts does no harm.

use serde::{Deserialize, Serialize};

use crate::facts::gather::Sections;
use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

use super::super::probes;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgbackrestStanza {
    /// The stanza's name (the cluster's).
    pub stanza: String,
    /// pgBackRest's configuration file.
    pub config: String,
}

impl Module for PgbackrestStanza {
    fn kind(&self) -> &'static str {
        "pgbackrest_stanza"
    }

    fn invalidates(&self) -> Sections {
        Sections {
            probes: true,
            ..Sections::NONE
        }
    }

    fn check(&self, cx: &StepContext) -> Check {
        let stanza = probes::read(cx.facts)
            .and_then(|(_, report)| report)
            .and_then(|r| r.stanza);
        let reason = match &stanza {
            Some(s) if s.exists => {
                return Check::InSync(format!(
                    "stanza {} exists ({})",
                    self.stanza,
                    if s.message.is_empty() { "ok" } else { &s.message }
                ))
            }
            Some(s) if !s.message.is_empty() => format!("no stanza yet: {}", s.message),
            _ => "no stanza yet".to_owned(),
        };
        let pgbackrest = |command: &str| {
            RemoteCommand::new([
                "pgbackrest",
                &format!("--config={}", self.config),
                &format!("--stanza={}", self.stanza),
                command,
            ])
            .as_user("postgres")
        };
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Create,
            format!("pgBackRest stanza {}", self.stanza),
            reason,
            vec![pgbackrest("stanza-create"), pgbackrest("check")],
        )])
    }
}
