//! The `patroni:` section and host `tags:`, checked against Patroni's own rules.

use std::collections::BTreeMap;
use std::path::Path;

use crate::diag::Diagnostics;
use crate::flavours::patroni::config::{
    ApiTls, Etcd, Patroni, StandbyCluster, Tags, Watchdog, PATRONI_TLS_DIR,
};
use crate::model::pg_names::slot_name_problem;
use crate::model::{Host, Objectives, Postgres, Role, Rpo, SecretRef};
use crate::yaml::decode::{self, MapReader};
use crate::yaml::node::{Node, Value};

pub(super) struct Reader<'d> {
    pub(super) d: &'d mut Diagnostics,
    pub(super) base: &'d Path,
}

/// Defaults for the shortest write gap on a crashed leader that Patroni's rules allow (ttl 20
/// is the minimum; loop_wait + 2 * retry_timeout must not exceed it). The leader renews its
/// lease once per loop, so a crash leaves the key ttl - loop_wait .. ttl seconds to live:
/// the longest loop_wait gives the earliest expiry on average (10..20 s, measured). Patroni's
/// own loop_wait of 10 keeps its usual cadence; retry_timeout 5 still outlasts an etcd
/// leader election (about 1 s). The field guide's ttl 30 / loop_wait 10 measured 31 s.
const TTL: i64 = 20;
const LOOP_WAIT: i64 = 10;
const RETRY_TIMEOUT: i64 = 5;

impl Reader<'_> {
    fn secret(&mut self, node: &Node, path: &str) -> Option<SecretRef> {
        decode::secret_ref(self.d, node, path, self.base)
    }

    pub(super) fn patroni(
        &mut self,
        node: &Node,
        hosts: &[Host],
        postgres: Option<&Postgres>,
        tags: BTreeMap<String, Tags>,
        tls: bool,
        objectives: Option<&Objectives>,
    ) -> Option<Patroni> {
        if let Some(o) = objectives {
            self.objective_conflicts(node, o);
        }
        let mut m = MapReader::new(self.d, node, "patroni")?;
        let int = |r: &mut Self,
                   m: &mut MapReader,
                   key: &'static str,
                   default: i64,
                   min: i64,
                   max: i64|
         -> Option<i64> {
            match m.take(key) {
                Some(n) => decode::integer(r.d, n, &m.child(key), min, max),
                None => Some(default),
            }
        };
        let flag =
            |r: &mut Self, m: &mut MapReader, key: &'static str, default: bool| -> Option<bool> {
                match m.take(key) {
                    Some(n) => decode::boolean(r.d, n, &m.child(key)),
                    None => Some(default),
                }
            };
        let namespace = match m.take("namespace") {
            Some(n) => decode::string(self.d, n, "patroni.namespace").filter(|s| {
                let ok = s.starts_with('/') && !s.contains(char::is_whitespace);
                if !ok {
                    self.d.error(
                        n.pos,
                        "patroni.namespace",
                        format!("`{s}` must be a path such as /service"),
                    );
                }
                ok
            }),
            None => Some("/service".to_owned()),
        };
        let data_dir_node = m.take("data_dir");
        let data_dir = match data_dir_node {
            Some(n) => decode::string(self.d, n, "patroni.data_dir").filter(|s| {
                let ok = s.starts_with('/') && !s.contains("..");
                if !ok {
                    self.d.error(
                        n.pos,
                        "patroni.data_dir",
                        format!("`{s}` must be an absolute path without `..`"),
                    );
                }
                ok
            }),
            None => Some(format!(
                "/var/lib/postgresql/{}/patroni",
                postgres.map(|p| p.version).unwrap_or(15)
            )),
        };
        if let (Some(dir), Some(pg)) = (&data_dir, postgres) {
            if *dir == pg.data_dir {
                let at = data_dir_node.map(|n| n.pos).unwrap_or(node.pos);
                self.d.error(at, "patroni.data_dir", "Patroni's data directory must not be the Debian cluster's (postgres.data_dir): pgha never reuses it by accident");
            }
        }
        let restapi_port = match m.take("restapi_port") {
            Some(n) => decode::port(self.d, n, "patroni.restapi_port"),
            None => Some(8008),
        };
        let ttl_node = m.take("ttl");
        let ttl = match ttl_node {
            Some(n) => decode::integer(self.d, n, "patroni.ttl", 1, 3600),
            None => Some(TTL),
        };
        let loop_wait = int(self, &mut m, "loop_wait", LOOP_WAIT, 1, 3600);
        let retry_timeout = int(self, &mut m, "retry_timeout", RETRY_TIMEOUT, 1, 3600);
        if let (Some(ttl), Some(lw), Some(rt)) = (ttl, loop_wait, retry_timeout) {
            let at = ttl_node.map(|n| n.pos).unwrap_or(m.pos());
            if ttl < 20 {
                self.d.error(
                    at,
                    "patroni.ttl",
                    format!("ttl {ttl} is below 20, Patroni's minimum"),
                );
            } else if lw + 2 * rt > ttl {
                self.d.error_with_help(
                    at,
                    "patroni.ttl",
                    format!("loop_wait + 2 * retry_timeout = {} exceeds ttl {ttl}: a leader could lose its key while still working", lw + 2 * rt),
                    "raise ttl or lower loop_wait / retry_timeout",
                );
            }
        }
        let primary_start_timeout = int(self, &mut m, "primary_start_timeout", 30, 0, 3600);
        let maximum_lag_on_failover = int(
            self,
            &mut m,
            "maximum_lag_on_failover",
            1_048_576,
            0,
            i64::MAX,
        );
        let use_pg_rewind = flag(self, &mut m, "use_pg_rewind", true);
        let use_slots = flag(self, &mut m, "use_slots", true);
        let switchover_for_restart = flag(self, &mut m, "switchover_for_restart", false);
        let synchronous_mode = flag(self, &mut m, "synchronous_mode", false);
        let synchronous_mode_strict = flag(self, &mut m, "synchronous_mode_strict", false);
        let sync_node = m.take("synchronous_node_count");
        let synchronous_node_count = match sync_node {
            Some(n) => decode::integer(self.d, n, "patroni.synchronous_node_count", 1, 16),
            None => Some(1),
        };
        let pg_hosts = hosts.iter().filter(|h| h.role.has_postgres()).count() as i64;
        if let (Some(count), Some(n)) = (synchronous_node_count, sync_node) {
            if count >= pg_hosts {
                self.d.error(n.pos, "patroni.synchronous_node_count", format!("{count} synchronous standbys need at least {} PostgreSQL hosts; there are {pg_hosts}", count + 1));
            }
        }
        // A removal may leave the leader alone: synchronous mode would then have no standby
        // to acknowledge commits (strict: writes wait forever; else Patroni drops it).
        if synchronous_mode == Some(true) && pg_hosts < 2 {
            self.d.error_with_help(
                m.pos(),
                "patroni.synchronous_mode",
                format!("synchronous mode with {pg_hosts} PostgreSQL host: no standby is left to acknowledge commits"),
                "keep a standby in the inventory, or turn `synchronous_mode` off first (apply that, then remove the last standby)",
            );
        }
        let watchdog = match m.take("watchdog") {
            Some(n) => self.watchdog(n),
            None => Some(Watchdog {
                mode: "off".into(),
                device: "/dev/watchdog".into(),
                safety_margin: 5,
                load_softdog: false,
            }),
        };
        let (rewind_user, rewind_password) = match m.require(self.d, "rewind") {
            Some(n) => self.rewind(n),
            None => (None, None),
        };
        // Without it anyone who reaches the REST API's port could switch over or restart.
        let (restapi_user, restapi_password) = match m.require(self.d, "restapi_auth") {
            Some(n) => self.restapi_auth(n),
            None => (None, None),
        };
        let etcd = match m.require(self.d, "etcd") {
            Some(n) => self.etcd(n, hosts),
            None => None,
        };
        let standby_cluster = match m.take("standby_cluster") {
            Some(n) => self.standby_cluster(n).map(Some),
            None => Some(None),
        };
        let permanent_slots = match m.take("permanent_slots") {
            Some(n) => self.permanent_slots(n, hosts),
            None => Some(Vec::new()),
        };
        m.finish(self.d);
        if postgres.is_some_and(|p| p.superuser_password.is_none()) {
            self.d.error(node.pos, "postgres.superuser_password", "Patroni needs `postgres.superuser_password`: it connects as the superuser to manage the server");
        }
        let u32_of = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
        Some(Patroni {
            data_dir: data_dir?,
            namespace: namespace?,
            restapi_port: restapi_port?,
            ttl: u32_of(ttl)?,
            loop_wait: u32_of(loop_wait)?,
            retry_timeout: u32_of(retry_timeout)?,
            primary_start_timeout: u32_of(primary_start_timeout)?,
            maximum_lag_on_failover: maximum_lag_on_failover.and_then(|v| u64::try_from(v).ok())?,
            use_pg_rewind: use_pg_rewind?,
            use_slots: use_slots?,
            synchronous_mode: synchronous_mode?,
            synchronous_mode_strict: synchronous_mode_strict?,
            synchronous_node_count: u32_of(synchronous_node_count)?,
            watchdog: watchdog?,
            rewind_user: rewind_user?,
            rewind_password: rewind_password?,
            restapi_user: restapi_user?,
            restapi_password: restapi_password?,
            tls: if tls {
                Some(ApiTls::new(PATRONI_TLS_DIR))
            } else {
                None
            },
            etcd: etcd?,
            standby_cluster: standby_cluster?,
            permanent_slots: permanent_slots?,
            switchover_for_restart: switchover_for_restart?,
            tags,
        })
    }

    /// Settings the declared objectives derive, set here too: the objectives would silently
    /// win or lose, so the DBA chooses.
    fn objective_conflicts(&mut self, node: &Node, o: &Objectives) {
        let mut conflict = |key: &str, objective: &str, what: &str| {
            if let Some((_, n)) = node.get(key) {
                self.d.error_with_help(
                    n.pos,
                    &format!("patroni.{key}"),
                    format!("`patroni.{key}` and `objectives.{objective}` both decide {what}"),
                    format!("set one: drop `patroni.{key}` (the {objective} derives it) or `objectives.{objective}`"),
                );
            }
        };
        if o.rto.is_some() {
            for key in ["ttl", "loop_wait", "retry_timeout"] {
                conflict(key, "rto", "Patroni's failover timing");
            }
        }
        match o.rpo {
            Some(Rpo::Zero) => {
                if let Some((_, n)) = node.get("synchronous_mode") {
                    if matches!(n.value, Value::Bool(false)) {
                        self.d.error_with_help(
                            n.pos,
                            "patroni.synchronous_mode",
                            "`patroni.synchronous_mode: false` and `objectives.rpo: 0`: without synchronous mode a failover may promote a standby that lacks acknowledged commits",
                            "set one: drop `patroni.synchronous_mode` (rpo 0 turns it on) or declare another rpo",
                        );
                    }
                }
            }
            Some(Rpo::Bytes(_)) => conflict(
                "maximum_lag_on_failover",
                "rpo",
                "how far behind a promoted standby may be",
            ),
            None => {}
        }
    }

    /// Physical slots Patroni keeps on the leader whoever it is: for a standby cluster or
    /// another consumer outside this cluster. Member slots are Patroni's own and named after
    /// the members, so a permanent slot must not take a member's name.
    fn permanent_slots(&mut self, node: &Node, hosts: &[Host]) -> Option<Vec<String>> {
        let path = "patroni.permanent_slots";
        let mut ok = true;
        let mut names = Vec::new();
        for (i, name, n) in decode::string_items(self.d, node, path) {
            let at = format!("{path}[{i}]");
            let why = slot_name_problem(&name)
                .or_else(|| names.contains(&name).then(|| format!("slot `{name}` is listed twice")))
                .or_else(|| {
                    hosts
                        .iter()
                        .any(|h| crate::model::slot_safe_name(&h.name) == name)
                        .then(|| format!("`{name}` is the slot Patroni makes for member `{name}`: choose another name"))
                });
            if let Some(why) = why {
                self.d.error(n.pos, &at, why);
                ok = false;
            }
            names.push(name);
        }
        ok.then_some(names)
    }

    fn watchdog(&mut self, node: &Node) -> Option<Watchdog> {
        let mut m = MapReader::new(self.d, node, "patroni.watchdog")?;
        let mode = match m.take("mode") {
            Some(n) => decode::choice(
                self.d,
                n,
                "patroni.watchdog.mode",
                &["off", "automatic", "required"],
            )
            .map(str::to_owned),
            None => Some("off".to_owned()),
        };
        let device = match m.take("device") {
            Some(n) => decode::string(self.d, n, "patroni.watchdog.device"),
            None => Some("/dev/watchdog".to_owned()),
        };
        let safety_margin = match m.take("safety_margin") {
            Some(n) => decode::integer(self.d, n, "patroni.watchdog.safety_margin", -1, 3600)
                .and_then(|v| u32::try_from(v.max(0)).ok()),
            None => Some(5),
        };
        let load_softdog = match m.take("load_softdog") {
            Some(n) => decode::boolean(self.d, n, "patroni.watchdog.load_softdog"),
            None => Some(false),
        };
        m.finish(self.d);
        Some(Watchdog {
            mode: mode?,
            device: device?,
            safety_margin: safety_margin?,
            load_softdog: load_softdog?,
        })
    }

    fn rewind(&mut self, node: &Node) -> (Option<String>, Option<SecretRef>) {
        let Some(mut m) = MapReader::new(self.d, node, "patroni.rewind") else {
            return (None, None);
        };
        let user = match m.take("user") {
            Some(n) => decode::string(self.d, n, "patroni.rewind.user"),
            None => Some("rewind".to_owned()),
        };
        let password = m
            .require(self.d, "password")
            .and_then(|n| self.secret(n, "patroni.rewind.password"));
        m.finish(self.d);
        (user, password)
    }

    /// `restapi_auth:`: the user and password (a secret) Patroni's REST API asks of every
    /// unsafe request; pgha's own requests and patronictl use them.
    fn restapi_auth(&mut self, node: &Node) -> (Option<String>, Option<SecretRef>) {
        let Some(mut m) = MapReader::new(self.d, node, "patroni.restapi_auth") else {
            return (None, None);
        };
        let user = match m.take("user") {
            Some(n) => decode::string(self.d, n, "patroni.restapi_auth.user").filter(|u| {
                let ok = !u.is_empty() && !u.contains(':');
                if !ok {
                    self.d.error(
                        n.pos,
                        "patroni.restapi_auth.user",
                        "a user name for HTTP basic authentication: not empty, no `:`",
                    );
                }
                ok
            }),
            None => Some("patroni".to_owned()),
        };
        let password = m
            .require(self.d, "password")
            .and_then(|n| self.secret(n, "patroni.restapi_auth.password"));
        m.finish(self.d);
        (user, password)
    }

    fn etcd(&mut self, node: &Node, hosts: &[Host]) -> Option<Etcd> {
        let mut m = MapReader::new(self.d, node, "patroni.etcd")?;
        let members_node = m.require(self.d, "members");
        let members = members_node.map(|n| decode::string_items(self.d, n, "patroni.etcd.members"));
        let client_port = match m.take("client_port") {
            Some(n) => decode::port(self.d, n, "patroni.etcd.client_port"),
            None => Some(2379),
        };
        let peer_port = match m.take("peer_port") {
            Some(n) => decode::port(self.d, n, "patroni.etcd.peer_port"),
            None => Some(2380),
        };
        m.finish(self.d);
        let members = members?;
        let at = members_node.map(|n| n.pos).unwrap_or(m_pos(node));
        // An even count is allowed (a warning in validate and plan): a step while members
        // change one at a time, or a member that left.
        if members.is_empty() {
            self.d.error_with_help(
                at,
                "patroni.etcd.members",
                "no etcd member: Patroni needs its DCS",
                "use 1 (no fault tolerance) or 3 (survives the loss of one)",
            );
            return None;
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, name, n) in &members {
            let path = format!("patroni.etcd.members[{i}]");
            if !seen.insert(name) {
                self.d.error(
                    n.pos,
                    &path,
                    format!("etcd member `{name}` is listed twice: a host runs one member"),
                );
                return None;
            }
            // Members are the servers and the dedicated etcd hosts (not a proxy host).
            let may_run =
                |h: &Host| h.role.has_postgres() || h.role == Role::Member(super::ETCD_ROLE);
            match hosts.iter().find(|h| &h.name == name) {
                Some(h) if !may_run(h) => {
                    self.d.error(
                        n.pos,
                        &path,
                        format!(
                            "etcd member `{name}` is {}: etcd runs on the data hosts and `role: etcd` hosts",
                            h.role.description()
                        ),
                    );
                    return None;
                }
                Some(_) => {}
                None => {
                    let message = format!("etcd member `{name}` is not a host of this inventory");
                    let names = hosts.iter().map(|h| h.name.as_str());
                    self.d.unknown(n.pos, &path, message, name, names, None);
                    return None;
                }
            }
        }
        let members: Vec<String> = members.into_iter().map(|(_, name, _)| name).collect();
        Some(Etcd {
            members,
            client_port: client_port?,
            peer_port: peer_port?,
        })
    }

    fn standby_cluster(&mut self, node: &Node) -> Option<StandbyCluster> {
        let mut m = MapReader::new(self.d, node, "patroni.standby_cluster")?;
        let host = m.require(self.d, "host").and_then(|n| {
            let s = decode::string(self.d, n, "patroni.standby_cluster.host")?;
            decode::address(self.d, n, "patroni.standby_cluster.host", &s).then_some(s)
        });
        let port = match m.take("port") {
            Some(n) => decode::port(self.d, n, "patroni.standby_cluster.port"),
            None => Some(5432),
        };
        let primary_slot_name = match m.take("primary_slot_name") {
            Some(n) => {
                let path = "patroni.standby_cluster.primary_slot_name";
                decode::string(self.d, n, path)
                    .filter(|slot| match slot_name_problem(slot) {
                        Some(why) => {
                            self.d.error(n.pos, path, why);
                            false
                        }
                        None => true,
                    })
                    .map(Some)
            }
            None => Some(None),
        };
        m.finish(self.d);
        Some(StandbyCluster {
            host: host?,
            port: port?,
            primary_slot_name: primary_slot_name?,
        })
    }

    pub(super) fn tags(&mut self, node: &Node, path: &str) -> Option<Tags> {
        let mut m = MapReader::new(self.d, node, path)?;
        let read = |r: &mut Self, m: &mut MapReader, key: &'static str| match m.take(key) {
            Some(n) => decode::boolean(r.d, n, &m.child(key)),
            None => Some(false),
        };
        let nofailover = read(self, &mut m, "nofailover");
        let noloadbalance = read(self, &mut m, "noloadbalance");
        let clonefrom = read(self, &mut m, "clonefrom");
        let nosync = read(self, &mut m, "nosync");
        m.finish(self.d);
        Some(Tags {
            nofailover: nofailover?,
            noloadbalance: noloadbalance?,
            clonefrom: clonefrom?,
            nosync: nosync?,
        })
    }
}

fn m_pos(node: &Node) -> crate::yaml::node::Pos {
    node.pos
}
