//! Patroni members that left the inventory, as the leader's DCS still lists them: a member
//! key lives until its ttl runs out after its Patroni stopped, and the leader drops the
//! member's slot once the key is gone. pgha does not reach the departed host; it waits on the
//! leader until both are gone, and says what to do when they stay (a Patroni that still runs
//! renews its key). The leader itself may not leave: switch over first.

use serde::{Deserialize, Serialize};

use crate::facts::gather::Sections;
use crate::flavours::patroni::probes::DcsMember;
use crate::flavours::patroni::rest::{self, Request};
use crate::model::slot_safe_name;
use crate::steps::{sql, Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatroniDeparted {
    /// The local member's REST API.
    pub url: String,
    /// Every Patroni member of the inventory.
    pub members: Vec<String>,
    pub postgres_port: u16,
    /// How long a member key and its slot may take to go (ttl and a few loops).
    pub timeout_seconds: u32,
    /// Hosts under `decommission:`: apply stops their Patroni first, before this step.
    #[serde(default)]
    pub decommissioned: Vec<String>,
}

impl Module for PatroniDeparted {
    fn kind(&self) -> &'static str {
        "patroni_departed"
    }

    fn invalidates(&self) -> Sections {
        Sections::POSTGRES
    }

    fn check(&self, cx: &StepContext) -> Check {
        let listed = DcsMember::list_of(cx.facts).unwrap_or_default();
        let mut departed: Vec<String> = listed
            .iter()
            .filter(|m| !self.members.contains(&m.name))
            .map(|m| m.name.clone())
            .collect();
        if let Some(leader) = listed.iter().find(|m| m.is_leader() && departed.contains(&m.name)) {
            return Check::Refused(format!(
                "{} leads the Patroni cluster and is not in the inventory: switch over to a member that stays first (`pgha switchover --to HOST`), then remove it",
                leader.name
            ));
        }
        departed.sort();
        departed.dedup();
        if departed.is_empty() {
            return Check::InSync("every Patroni member in the DCS is in the inventory".to_owned());
        }
        // A departed member that still streams from here runs its Patroni, which renews its
        // member key: apply would wait for the key in vain. Unless apply stops it first
        // (`decommission:`), say so now rather than after the wait.
        let streaming: Vec<&str> = cx
            .facts
            .postgres
            .as_ref()
            .map(|pg| {
                pg.replication
                    .iter()
                    .filter(|r| r.state == "streaming")
                    .map(|r| r.application_name.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let running: Vec<&String> = departed
            .iter()
            .filter(|d| streaming.contains(&d.as_str()) && !self.decommissioned.contains(d))
            .collect();
        if let Some(name) = running.first() {
            return Check::Refused(format!(
                "{name} left the inventory but still streams from here as a Patroni member: its Patroni runs and keeps its member key. Stop Patroni on {name} (`systemctl stop patroni@...`), or name it under `decommission:` so that apply stops it first"
            ));
        }
        let gone_condition = |name: &str| {
            let cluster = rest::shell(&[Request {
                timeout: 2,
                ..Request::get(format!("{}/cluster", self.url))
            }]);
            format!(
                "{cluster} | python3 -c 'import json, sys; r = json.load(sys.stdin)[0]; sys.exit(0 if r[\"status\"] == 200 and all(m.get(\"name\") != sys.argv[1] for m in r[\"body\"].get(\"members\", [])) else 1)' {name} && [ \"$(cd / && runuser -u postgres -- psql -X -At -p {port} -d postgres -c \"SELECT count(*) FROM pg_replication_slots WHERE slot_name = {slot}\")\" = 0 ]",
                name = shell_words::quote(name),
                port = self.postgres_port,
                slot = sql::literal(&slot_safe_name(name)).replace('"', "\\\""),
            )
        };
        let changes = departed
            .iter()
            .map(|name| {
                let n = self.timeout_seconds * 2;
                let script = format!(
                    "for i in $(seq 1 {n}); do if {cond}; then echo 'pgha: Patroni member {name} forgotten, its slot dropped'; exit 0; fi; sleep 0.5; done; echo '{name} is still a Patroni member (or its slot is kept) {t} s on: its Patroni still runs and renews its member key. pgha does not reach a host outside the inventory: stop Patroni there, then apply again' >&2; exit 1",
                    cond = gone_condition(name),
                    name = name.replace('\'', ""),
                    t = self.timeout_seconds,
                );
                cx.change(
                    self.kind(),
                    Action::Stop,
                    format!("Patroni member {name}"),
                    format!(
                        "{name} left the inventory: Patroni forgets it once its member key expires (its Patroni stopped) and drops its slot {}; pgha waits for both (its host is not contacted)",
                        slot_safe_name(name)
                    ),
                    vec![RemoteCommand::script(script)],
                )
            })
            .collect();
        Check::Changes(changes)
    }
}
