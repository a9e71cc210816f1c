//! The `repmgr:` section and the hosts' `repmgr:` keys, checked against repmgr's own limits
//! and against the ways repmgr clusters are known to fail.

use std::collections::BTreeMap;
use std::path::Path;

use crate::diag::Diagnostics;
use crate::flavours::repmgr::config::{Node as RepmgrNode, Repmgr};
use crate::model::{Host, Objectives, Replication, Role};
use crate::yaml::decode::{self, MapReader};
use crate::yaml::node::Node;

/// Defaults chosen for a failover within about half a minute of a dead primary (repmgr's own
/// 2 / 6 / 10 takes up to ~66 s): detection ≈ monitor interval + connect timeout +
/// attempts × connect timeout + (attempts - 1) × interval = 2 + 2 + 4·2 + 3·5 ≈ 27 s. Four
/// attempts five seconds apart still ride out a restart of the primary (~5 s) or a short
/// network blip without a promotion.
const MONITOR_INTERVAL: i64 = 2;
const RECONNECT_ATTEMPTS: i64 = 4;
const RECONNECT_INTERVAL: i64 = 5;
const CONNECT_TIMEOUT: i64 = 2;

pub(super) struct Reader<'d> {
    pub(super) d: &'d mut Diagnostics,
    pub(super) base: &'d Path,
}

/// A node id derived from the host name: stable whatever the order of the hosts, and the
/// same on every run (FNV-1a, folded into 1..=999999).
pub(super) fn derived_id(name: &str) -> i64 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i64::from(h % 999_999) + 1
}

impl Reader<'_> {
    pub(super) fn repmgr(
        &mut self,
        node: Option<&Node>,
        root: &Node,
        hosts: &[Host],
        host_entries: &[(String, String, &Node, String)],
        replication: Option<&Replication>,
        objectives: Option<&Objectives>,
    ) -> Option<Repmgr> {
        let Some(node) = node else {
            self.d.error(
                root.pos,
                "repmgr",
                "flavour `repmgr` needs a `repmgr:` section (at least `password`)",
            );
            return None;
        };
        let mut m = MapReader::new(self.d, node, "repmgr")?;
        let int = |r: &mut Self, m: &mut MapReader, key: &'static str, default, min, max| match m
            .take(key)
        {
            Some(n) => decode::integer(r.d, n, &m.child(key), min, max),
            None => Some(default),
        };
        let user = match m.take("user") {
            Some(n) => decode::string(self.d, n, "repmgr.user"),
            None => Some("repmgr".to_owned()),
        };
        let password = m
            .require(self.d, "password")
            .and_then(|n| decode::secret_ref(self.d, n, "repmgr.password", self.base));
        let database = match m.take("database") {
            Some(n) => decode::string(self.d, n, "repmgr.database"),
            None => Some("repmgr".to_owned()),
        };
        let failover_node = m.take("failover");
        let failover = match failover_node {
            Some(n) => decode::choice(self.d, n, "repmgr.failover", &["automatic", "manual"])
                .map(str::to_owned),
            None => Some("automatic".to_owned()),
        };
        // repmgr's own minimums (configfile.c); the maximums keep a typo from disabling
        // failover for hours.
        let monitor = int(
            self,
            &mut m,
            "monitor_interval_secs",
            MONITOR_INTERVAL,
            1,
            60,
        );
        let attempts = int(
            self,
            &mut m,
            "reconnect_attempts",
            RECONNECT_ATTEMPTS,
            0,
            60,
        );
        let interval = int(
            self,
            &mut m,
            "reconnect_interval",
            RECONNECT_INTERVAL,
            0,
            600,
        );
        let connect_timeout = int(self, &mut m, "connect_timeout", CONNECT_TIMEOUT, 2, 60);
        let consensus_node = m.take("primary_visibility_consensus");
        let consensus = match consensus_node {
            Some(n) => decode::boolean(self.d, n, "repmgr.primary_visibility_consensus"),
            None => Some(true),
        };
        let fence = match m.take("child_nodes_disconnect_command") {
            Some(n) => decode::string(self.d, n, "repmgr.child_nodes_disconnect_command").map(Some),
            None => Some(None),
        };
        m.finish(self.d);
        if objectives.is_some_and(|o| o.rto.is_some()) {
            self.rto_conflicts(node, failover.as_deref());
        }

        let nodes = self.nodes(hosts, host_entries)?;
        let automatic = failover.as_deref() == Some("automatic");
        let witnesses: Vec<&Host> = hosts
            .iter()
            .filter(|h| matches!(h.role, Role::Member(r) if r.name == "witness"))
            .collect();
        let data_hosts = hosts.iter().filter(|h| h.role.holds_data()).count();
        if witnesses.len() > 1 {
            self.d.error(
                root.at("hosts").map_or(root.pos, |n| n.pos),
                "hosts",
                format!(
                    "{} witnesses ({}): repmgr registers one witness per cluster",
                    witnesses.len(),
                    witnesses
                        .iter()
                        .map(|h| h.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        for w in &witnesses {
            if let Some(data) = hosts
                .iter()
                .find(|h| h.role.holds_data() && h.ip().is_some() && h.ip() == w.ip())
            {
                self.d.error(
                    root.pos_near(&format!("hosts.{}", w.name)),
                    "role",
                    format!(
                        "the witness {} is on the host of {} ({}): losing that host would take the tie-breaker with it",
                        w.name, data.name, w.address
                    ),
                );
            }
        }
        if automatic && data_hosts == 2 && witnesses.is_empty() {
            self.d.error_with_help(
                failover_node.map_or(node.pos, |n| n.pos),
                "repmgr.failover",
                "automatic failover with two data nodes and no witness: the standby has no sibling to ask and promotes on any network split (\"no other sibling nodes - we win by default\")",
                "add a host with `role: witness`, or set `repmgr.failover: manual`",
            );
        }
        if automatic && consensus == Some(false) {
            self.d.error_with_help(
                consensus_node.map_or(node.pos, |n| n.pos),
                "repmgr.primary_visibility_consensus",
                "without primary visibility consensus a standby that loses only its own link to the primary promotes while the witness still sees the primary (repmgr issue #821): two primaries",
                "leave it on (the default) with automatic failover",
            );
        }
        if let Some(r) = replication {
            let command = r.archive_command.trim();
            let idle = [
                "",
                "true",
                "/bin/true",
                "/usr/bin/true",
                ":",
                "cd .",
                "exit 0",
            ];
            if r.archive_mode != "off" && idle.contains(&command) {
                self.d.error_with_help(
                    root.pos_near("replication.archive"),
                    "replication.archive",
                    format!("archive mode `{}` with an archive command that archives nothing (`{command}`): the primary's shutdown checkpoint then starts a new WAL segment the standbys may not have, and repmgr's switchover aborts (\"is behind shutdown primary\")", r.archive_mode),
                    "set `replication.archive.mode: off`, or an archive command that really keeps the WAL",
                );
            }
        }
        Some(Repmgr {
            user: user?,
            password: password?,
            database: database?,
            failover: failover?,
            monitor_interval_secs: monitor?,
            reconnect_attempts: attempts?,
            reconnect_interval: interval?,
            connect_timeout: connect_timeout?,
            primary_visibility_consensus: consensus?,
            child_nodes_disconnect_command: fence?,
            nodes,
        })
    }

    /// Settings the declared rto derives, set here too (the DBA chooses), and a failover no
    /// setting bounds.
    fn rto_conflicts(&mut self, node: &Node, failover: Option<&str>) {
        for key in [
            "monitor_interval_secs",
            "reconnect_attempts",
            "reconnect_interval",
        ] {
            if let Some((_, n)) = node.get(key) {
                self.d.error_with_help(
                    n.pos,
                    &format!("repmgr.{key}"),
                    format!("`repmgr.{key}` and `objectives.rto` both decide how soon repmgrd fails over"),
                    format!("set one: drop `repmgr.{key}` (the rto derives it) or `objectives.rto`"),
                );
            }
        }
        if failover == Some("manual") {
            let at = node.get("failover").map_or(node.pos, |(_, n)| n.pos);
            self.d.error_with_help(
                at,
                "repmgr.failover",
                "`repmgr.failover: manual` and `objectives.rto`: repmgrd then never promotes, a person runs `pgha failover`, and no setting bounds when",
                "set one: `failover: automatic` (the rto derives repmgrd's timing) or drop `objectives.rto`",
            );
        }
    }

    /// Each host's node id (given, or derived from its name), priority and location.
    fn nodes(
        &mut self,
        hosts: &[Host],
        host_entries: &[(String, String, &Node, String)],
    ) -> Option<BTreeMap<String, RepmgrNode>> {
        let mut nodes = BTreeMap::new();
        let mut ok = true;
        for h in hosts.iter().filter(|h| h.role.has_postgres()) {
            let witness = !h.role.holds_data();
            let mut node = RepmgrNode {
                id: derived_id(&h.name),
                priority: if witness { 0 } else { 100 },
                location: "default".to_owned(),
            };
            let mut at = None;
            if let Some((_, _, n, path)) = host_entries.iter().find(|(host, ..)| *host == h.name) {
                at = Some(n.pos);
                let Some(mut m) = MapReader::new(self.d, n, path) else {
                    ok = false;
                    continue;
                };
                if let Some(v) = m.take("node_id") {
                    match decode::integer(self.d, v, &m.child("node_id"), 1, i64::from(i32::MAX)) {
                        Some(id) => node.id = id,
                        None => ok = false,
                    }
                }
                if let Some(v) = m.take("priority") {
                    match decode::integer(self.d, v, &m.child("priority"), 0, 1_000_000) {
                        Some(p) if witness && p != 0 => {
                            self.d.error(
                                v.pos,
                                &m.child("priority"),
                                "a witness is never promoted: its priority is 0",
                            );
                            ok = false;
                        }
                        Some(p) => node.priority = p,
                        None => ok = false,
                    }
                }
                if let Some(v) = m.take("location") {
                    match decode::string(self.d, v, &m.child("location")) {
                        Some(l) => node.location = l,
                        None => ok = false,
                    }
                }
                m.finish(self.d);
            }
            if let Some((other, _)) = nodes
                .iter()
                .find(|(_, n): &(&String, &RepmgrNode)| n.id == node.id)
            {
                self.d.error_with_help(
                    at.unwrap_or_default(),
                    &format!("hosts.{}", h.name),
                    format!("node id {} of {} is also {}'s", node.id, h.name, other),
                    "give one of them its own `repmgr: {node_id: N}`",
                );
                ok = false;
            }
            nodes.insert(h.name.clone(), node);
        }
        ok.then_some(nodes)
    }
}
