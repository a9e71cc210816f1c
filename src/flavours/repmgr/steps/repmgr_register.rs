//! A node in repmgr's metadata: `primary register`, `standby register` (waiting until its
//! record has reached the standby), or `witness register -h <primary>`. Done when the node's
//! own copy of `repmgr.nodes` holds an active record of it with its id; a record that is
//! there but inactive or of another kind is registered again with `-F`.

use serde::{Deserialize, Serialize};

use crate::facts::gather::Sections;
use crate::flavours::repmgr::command;
use crate::flavours::repmgr::probes::{NodeRecord, RepmgrFact};
use crate::steps::{Action, Check, Module, StepContext};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepmgrRegister {
    /// `primary`, `standby` or `witness`.
    pub role: String,
    pub node_id: i64,
    pub config_file: String,
    pub bin_dir: String,
    /// The primary (whose metadata is the one repmgr writes) and its address (a witness
    /// registers against it).
    pub primary: String,
    pub primary_node_id: i64,
    pub primary_address: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    /// The cluster has TLS: every node's record must name a conninfo that checks the server
    /// (repmgr connects to the nodes, and writes standbys' primary_conninfo, from them).
    #[serde(default)]
    pub tls: bool,
}

impl Module for RepmgrRegister {
    fn kind(&self) -> &'static str {
        "repmgr_register"
    }

    /// The metadata lives in PostgreSQL; the probe reads it.
    fn invalidates(&self) -> Sections {
        Sections::ALL
    }

    fn check(&self, cx: &StepContext) -> Check {
        let running = cx.facts.postgres.as_ref().is_some_and(|pg| pg.running);
        // The primary's metadata is the one repmgr writes; a node that is down (a former
        // primary about to rejoin) has no copy to read.
        let metadata = cx
            .cluster_facts
            .get(&self.primary)
            .and_then(RepmgrFact::of)
            .or_else(|| RepmgrFact::of(cx.facts));
        let record = metadata.as_ref().and_then(|l| l.node(cx.host));
        // The witness follows the primary: after a failover it registers again against the
        // new one (its repmgrd does not always get there on its own).
        let stale_upstream = |r: &NodeRecord| {
            self.role == "witness" && r.upstream_node_id != Some(self.primary_node_id)
        };
        // A cluster moved to TLS (or off it) keeps the records' old conninfo until they are
        // registered again.
        let conninfo_ok = |r: &NodeRecord| {
            r.conninfo.replace('\'', "").contains("sslmode=verify-full") == self.tls
        };
        // The kind it registers as: its record's when repmgr changed it (a switchover).
        let mut kind = self.role.clone();
        let force = match record {
            Some(r)
                if r.node_id == self.node_id
                    && r.active
                    && r.kind == self.role
                    && !stale_upstream(r)
                    && conninfo_ok(r) =>
            {
                return Check::InSync(format!(
                    "registered as {} node {}",
                    r.kind, r.node_id
                ));
            }
            // A failover or switchover changes the kinds; repmgr keeps them right itself.
            Some(r) if r.node_id == self.node_id && r.active && self.role != "witness" && r.kind != "witness" => {
                if conninfo_ok(r) {
                    return Check::InSync(format!(
                        "registered as {} node {} (repmgr's word on the role stands)",
                        r.kind, r.node_id
                    ));
                }
                kind = r.kind.clone();
                true
            }
            Some(_) => true,
            None => false,
        };
        if !running && self.role != "standby" {
            return Check::InSync(
                "PostgreSQL is not running yet: the node registers once it runs".to_owned(),
            );
        }
        let mut args: Vec<String> = vec![kind.clone(), "register".into()];
        match kind.as_str() {
            "standby" => args.push("--wait-sync=60".into()),
            "witness" => args.extend(command::source(
                &self.primary_address,
                self.port,
                &self.user,
                &self.database,
            )),
            _ => {}
        }
        if force {
            args.push("-F".into());
        }
        let reason = match (record, force) {
            (Some(r), true) if r.node_id == self.node_id && r.active && !conninfo_ok(r) => {
                if self.tls {
                    "its record's conninfo does not check the server against the cluster CA: registered again, so that repmgr connects to it with sslmode=verify-full".to_owned()
                } else {
                    "its record's conninfo asks for TLS the cluster no longer has: registered again".to_owned()
                }
            }
            (Some(r), true) if r.kind == self.role && r.active && stale_upstream(r) => format!(
                "the witness is registered with upstream {}, the primary {} is node {}: registered again",
                r.upstream_node_id
                    .map_or("none".to_owned(), |u| u.to_string()),
                self.primary,
                self.primary_node_id
            ),
            (Some(r), true) => format!(
                "its record (node {}, {}{}) is not the one wanted (node {}, {}): registered again",
                r.node_id,
                r.kind,
                if r.active { "" } else { ", inactive" },
                self.node_id,
                self.role
            ),
            _ => "not in repmgr's metadata".to_owned(),
        };
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Create,
            format!("{kind} node {}", self.node_id),
            reason,
            vec![command::repmgr(&self.bin_dir, &self.config_file, &args)],
        )])
    }
}
