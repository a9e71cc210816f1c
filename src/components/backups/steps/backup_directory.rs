//! The backup folder: owned by postgres, mode 0700 (a base backup holds every table and the
//! server's keys' neighbours: nobody else reads it). Its state comes from the backups probe.

use serde::{Deserialize, Serialize};

use crate::facts::gather::Sections;
use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

use super::super::probes;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupDirectory {
    pub path: String,
}

impl Module for BackupDirectory {
    fn kind(&self) -> &'static str {
        "backup_directory"
    }

    fn invalidates(&self) -> Sections {
        Sections {
            probes: true,
            ..Sections::NONE
        }
    }

    fn check(&self, cx: &StepContext) -> Check {
        let folder = probes::read(cx.facts).and_then(|(f, _)| f);
        let reason = match &folder {
            None => "missing".to_owned(),
            Some(f) if f.owner != "postgres" || f.group != "postgres" || f.mode != "700" => {
                format!("{}:{} mode {}, not postgres:postgres mode 700", f.owner, f.group, f.mode)
            }
            Some(_) => return Check::InSync(format!("{} postgres:postgres 0700", self.path)),
        };
        Check::Changes(vec![cx.change(
            self.kind(),
            if folder.is_none() { Action::Create } else { Action::Update },
            self.path.clone(),
            reason,
            vec![RemoteCommand::new([
                "install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0700", &self.path,
            ])],
        )])
    }
}
