//! The witness's server must be a cluster of its own: repmgr refuses a witness whose system
//! identifier is the primary's (a host made from the same image as the data nodes, or a
//! cloned VM). When the witness holds nothing but initdb's empty cluster, it is initialised
//! again (a new identifier); when it holds data, pgha refuses to touch it.

use serde::{Deserialize, Serialize};

use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepmgrWitnessIdentity {
    pub primary: String,
    pub data_dir: String,
    pub bin_dir: String,
    pub service: String,
}

impl Module for RepmgrWitnessIdentity {
    fn kind(&self) -> &'static str {
        "repmgr_witness_identity"
    }

    fn check(&self, cx: &StepContext) -> Check {
        let id = |f: Option<&crate::facts::HostFacts>| {
            f.and_then(|f| f.postgres.as_ref())
                .map(|pg| pg.system_identifier.clone())
                .filter(|id| !id.is_empty())
        };
        let (Some(here), Some(primary)) = (id(Some(cx.facts)), id(cx.cluster_facts.get(&self.primary)))
        else {
            return Check::InSync(
                "no server here yet, or the primary's was not read: nothing to compare".to_owned(),
            );
        };
        if here != primary {
            return Check::InSync(format!("a cluster of its own (system identifier {here})"));
        }
        let pristine = cx.facts.postgres.as_ref().is_some_and(|pg| pg.pristine);
        if !pristine {
            return Check::Refused(format!(
                "{} holds data with the primary's system identifier {here}: a copy of the cluster cannot be its witness, and pgha will not wipe it",
                cx.host
            ));
        }
        let data = shell_words::quote(&self.data_dir).into_owned();
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Create,
            format!("a new cluster in {}", self.data_dir),
            format!("initdb's empty cluster shares the primary's system identifier {here} (the same image): initialised again"),
            vec![
                RemoteCommand::new(["systemctl", "stop", &self.service]),
                RemoteCommand::script(format!(
                    "set -e; find {data} -mindepth 1 -delete"
                )),
                RemoteCommand::new([
                    format!("{}/initdb", self.bin_dir),
                    "-D".to_owned(),
                    self.data_dir.clone(),
                    "--data-checksums".to_owned(),
                    "--auth=peer".to_owned(),
                    "--encoding=UTF8".to_owned(),
                    "--locale=C.UTF-8".to_owned(),
                ])
                .as_user("postgres"),
            ],
        )])
    }
}
