//! Debian packages, installed together in one apt run.

use serde::{Deserialize, Serialize};

use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub names: Vec<String>,
}

impl Module for Package {
    fn kind(&self) -> &'static str {
        "package"
    }

    fn check(&self, cx: &StepContext) -> Check {
        let missing: Vec<&str> = self
            .names
            .iter()
            .filter(|n| !cx.facts.packages.contains_key(n.as_str()))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            return Check::InSync(format!("installed: {}", self.names.join(", ")));
        }
        // `apt-get update` first only when the lists are missing or a day old: a fresh host
        // has none, and an update on every run would cost seconds. An apt left running by an
        // interrupted apply (killing pgha does not kill it on the host) is waited for, and a
        // dpkg run it interrupted is finished first.
        let install = format!(
            "apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confold {}",
            shell_words::join(&missing)
        );
        let script = format!(
            "set -e; export DEBIAN_FRONTEND=noninteractive; \
             if [ -z \"$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n1)\" ]; then apt-get update -qq -o DPkg::Lock::Timeout=600; fi; \
             {install} || {{ dpkg --force-confold --configure -a && {install}; }}"
        );
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Install,
            missing.join(" "),
            "not installed",
            vec![RemoteCommand::script(script)],
        )])
    }
}
