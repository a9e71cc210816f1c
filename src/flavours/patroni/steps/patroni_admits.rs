//! A member that joins a running cluster clones from the leader, which must let it in first:
//! Patroni writes pg_hba.conf from its configuration on a reload, and the playbook's reload
//! handler runs at the end (after the leader's role passwords). So when a member of the
//! inventory is not in the leader's DCS yet, the leader's Patroni is reloaded here,
//! once its configuration is written, and the step waits until pg_hba.conf names every
//! joining member's address. A member listed in the DCS (whatever its state) has joined.

use serde::{Deserialize, Serialize};

use crate::facts::gather::Sections;
use crate::flavours::patroni::probes::DcsMember;
use crate::steps::{sql, Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatroniAdmits {
    /// Every Patroni member of the inventory: its name and address.
    pub members: Vec<Member>,
    pub service: String,
    pub postgres_port: u16,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub name: String,
    pub address: String,
}

fn default_timeout() -> u32 {
    60
}

impl Module for PatroniAdmits {
    fn kind(&self) -> &'static str {
        "patroni_admits"
    }

    fn invalidates(&self) -> Sections {
        Sections::RUNNING
    }

    fn check(&self, cx: &StepContext) -> Check {
        let Some(listed) = DcsMember::list_of(cx.facts) else {
            return Check::InSync("Patroni does not run here yet: it starts with its configuration".to_owned());
        };
        let joining: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| m.name != cx.host)
            // A member listed in any state has registered: the leader already let it in
            // (a replica restarting is listed too).
            .filter(|m| !listed.iter().any(|l| l.name == m.name))
            .collect();
        if joining.is_empty() {
            return Check::InSync("every member runs".to_owned());
        }
        let names: Vec<&str> = joining.iter().map(|m| m.name.as_str()).collect();
        let addresses: Vec<String> = joining.iter().map(|m| sql::literal(&m.address)).collect();
        let query = format!(
            "SELECT count(DISTINCT address) FROM pg_hba_file_rules WHERE address IN ({})",
            addresses.join(", ")
        );
        let script = format!(
            "systemctl reload {service}; for i in $(seq 1 {n}); do if [ \"$(cd / && runuser -u postgres -- psql -X -At -p {port} -d postgres -c {query})\" = {count} ]; then exit 0; fi; sleep 0.5; done; echo 'pg_hba.conf does not let {who} in {t} s after Patroni reloaded' >&2; exit 1",
            service = shell_words::quote(&self.service),
            n = self.timeout_seconds * 2,
            port = self.postgres_port,
            query = shell_words::quote(&query),
            count = joining.len(),
            who = names.join(", ").replace('\'', ""),
            t = self.timeout_seconds,
        );
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Reload,
            format!("Patroni on {}", cx.host),
            format!(
                "{} not in the DCS yet: the leader takes its new pg_hba rules now, before they clone from it",
                names.join(", ")
            ),
            vec![RemoteCommand::script(script)],
        )])
    }
}
