//! The VIP on the primary and on no other host, where the flavour's role callback moves it
//! (keepalived places it itself). The callback only runs when a role changes: this step puts
//! the address where it belongs on a cluster that had it elsewhere or not at all (routing
//! added to a running cluster, an address removed by hand).

use serde::{Deserialize, Serialize};

use crate::steps::{Action, Check, Module, StepContext};
use crate::facts::gather::Sections;
use crate::transport::RemoteCommand;

use super::super::probes;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vip {
    /// The address with its prefix: `10.0.0.100/24`.
    pub address: String,
    pub interface: String,
    /// Whether this host should hold it (the primary).
    pub present: bool,
}

impl Vip {
    fn bare(&self) -> &str {
        self.address.split('/').next().unwrap_or(&self.address)
    }
}

impl Module for Vip {
    fn kind(&self) -> &'static str {
        "vip"
    }

    fn invalidates(&self) -> Sections {
        Sections {
            probes: true,
            ..Sections::NONE
        }
    }

    fn check(&self, cx: &StepContext) -> Check {
        let held = probes::vip_interfaces(cx.facts, self.bare());
        let here = held.iter().any(|i| i == &self.interface);
        let target = format!("{} on {}", self.address, self.interface);
        match (self.present, here) {
            (true, true) => Check::InSync(format!("{} holds the VIP", cx.host)),
            (false, false) => Check::InSync(format!("{} does not hold the VIP", cx.host)),
            (true, false) => Check::Changes(vec![cx.change(
                self.kind(),
                Action::Create,
                target,
                "the primary does not hold the VIP",
                vec![
                    RemoteCommand::new(["ip", "addr", "add", &self.address, "dev", &self.interface]),
                    // Tell the segment at once instead of when the neighbours' caches expire.
                    RemoteCommand::script(format!(
                        "arping -U -c 3 -I {} {} >/dev/null || true",
                        shell_words::quote(&self.interface),
                        shell_words::quote(self.bare())
                    )),
                ],
            )]),
            (false, true) => Check::Changes(vec![cx.change(
                self.kind(),
                Action::Stop,
                target,
                "a host that is not the primary holds the VIP",
                vec![RemoteCommand::new(["ip", "addr", "del", &self.address, "dev", &self.interface])],
            )]),
        }
    }
}
