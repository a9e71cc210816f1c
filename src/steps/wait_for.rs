//! Wait until a service answers: the local PostgreSQL, an etcd member, a Patroni member whose
//! PostgreSQL is up. The polling happens on the host: one round trip, not one per attempt.

use serde::{Deserialize, Serialize};

use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitFor {
    /// PostgreSQL accepts connections on this port.
    #[serde(default)]
    pub postgres_port: Option<u16>,
    /// This etcd endpoint reports healthy.
    #[serde(default)]
    pub etcd_endpoint: Option<String>,
    /// This Patroni REST API answers and reports PostgreSQL running.
    #[serde(default)]
    pub patroni_url: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
}

fn default_timeout() -> u32 {
    60
}

impl WaitFor {
    /// The shell condition that is true once the service is up.
    fn condition(&self) -> Vec<String> {
        let mut c = Vec::new();
        if let Some(url) = &self.etcd_endpoint {
            c.push(format!(
                "ETCDCTL_API=3 etcdctl --dial-timeout=1s --command-timeout=2s --endpoints={} endpoint health >/dev/null 2>&1",
                shell_words::quote(url)
            ));
            // See ETCD_VERSION_AGREED: Patroni must not start before the version is agreed.
            c.push(format!(
                "python3 -c {} {} 2>/dev/null",
                shell_words::quote(crate::facts::gather::ETCD_VERSION_AGREED),
                shell_words::quote(url)
            ));
        }
        if let Some(url) = &self.patroni_url {
            c.push(format!(
                "python3 -c 'import json,sys,urllib.request; sys.exit(0 if json.load(urllib.request.urlopen(sys.argv[1] + \"/patroni\", timeout=2)).get(\"state\") == \"running\" else 1)' {} 2>/dev/null",
                shell_words::quote(url)
            ));
        }
        if let Some(port) = self.postgres_port {
            c.push(format!("pg_isready -q -p {port}"));
        }
        c
    }

    fn describe(&self) -> String {
        let mut what = Vec::new();
        if let Some(u) = &self.etcd_endpoint {
            what.push(format!("etcd {u}"));
        }
        if let Some(u) = &self.patroni_url {
            what.push(format!("Patroni {u}"));
        }
        if let Some(p) = self.postgres_port {
            what.push(format!("port {p}"));
        }
        what.join(", ")
    }
}

impl Module for WaitFor {
    fn kind(&self) -> &'static str {
        "wait_for"
    }

    fn check(&self, cx: &StepContext) -> Check {
        let f = cx.facts;
        let pg_up =
            self.postgres_port.is_none() || f.postgres.as_ref().is_some_and(|pg| pg.running);
        let etcd_up = self.etcd_endpoint.is_none() || f.etcd_healthy == Some(true);
        let patroni_up =
            self.patroni_url.is_none() || f.patroni.as_ref().is_some_and(|p| p.state == "running");
        if pg_up && etcd_up && patroni_up {
            return Check::InSync(format!("{} up", self.describe()));
        }
        let script = format!(
            "for i in $(seq 1 {n}); do if {cond}; then exit 0; fi; sleep 0.5; done; echo '{what}: not up within {t} s' >&2; exit 1",
            n = self.timeout_seconds * 2,
            cond = self.condition().join(" && "),
            what = self.describe(),
            t = self.timeout_seconds
        );
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Run,
            self.describe(),
            "not answering yet",
            vec![RemoteCommand::script(script)],
        )])
    }
}
