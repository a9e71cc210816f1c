//! Verify: prove the cluster works, not just that services run. Roles as expected, every
//! standby streaming from its upstream, every slot in use, and a marker row written on the
//! primary read back on every standby. The number of checks run is part of the result: a
//! verify that ran nothing is a failure.

use std::time::Duration;

// tokio's clock, so tests can run these waits on a paused one.
use tokio::time::Instant;

use crate::flavours::{ClusterView, Flavour, Source};
use crate::model::Topology;
use crate::session::Session;
use crate::transport::{RemoteCommand, Transport};

pub use crate::flavours::CheckResult;

fn result(host: &str, check: &str, ok: bool, detail: impl Into<String>) -> CheckResult {
    CheckResult::new(host, check, ok, detail)
}

/// Run every check. `timeout` bounds how long the marker row may take to arrive.
pub async fn run(
    session: &mut Session,
    topology: &Topology,
    timeout: Duration,
) -> Vec<CheckResult> {
    session.refresh_all().await;
    // Standbys reconnect a few seconds after their upstream restarts: poll until every
    // role and stream check passes, or the timeout says they will not.
    let started = Instant::now();
    let mut out = Vec::new();
    let flavour = session.project.flavour.clone();
    loop {
        out.clear();
        let view = session.view(topology);
        roles_and_streams(flavour.as_ref(), &view, &mut out);
        out.extend(flavour.polled_checks(&view));
        for c in &session.project.components {
            out.extend(c.polled_checks(&view));
        }
        let waiting = out
            .iter()
            .any(|r| !r.ok && !about_unreachable(r, &session.unreachable));
        if !waiting || started.elapsed() > timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        session.refresh_all().await;
    }
    // A host not reached fails its row and every check that needs it; the others still run.
    out.extend(
        session
            .unreachable
            .iter()
            .map(|(host, why)| result(host, "reachable", false, format!("unreachable: {why}"))),
    );
    let view = session.view(topology);
    out.extend(flavour.checks(&view).await);
    for c in &session.project.components {
        out.extend(c.checks(&view).await);
    }
    marker(flavour.as_ref(), &view, timeout, &mut out).await;
    out
}

/// A failed check of or towards a host not reached: waiting will not make it pass.
fn about_unreachable(r: &CheckResult, unreachable: &crate::facts::collect::Unreachable) -> bool {
    unreachable
        .keys()
        .any(|u| r.host == *u || r.check.ends_with(&format!(" {u}")))
}

fn bytes(n: i64) -> String {
    crate::human::size(n.max(0).unsigned_abs())
}

fn roles_and_streams(flavour: &dyn Flavour, view: &ClusterView<'_>, out: &mut Vec<CheckResult>) {
    let (cluster, topology) = (view.cluster, view.topology);
    let max_lag = flavour.max_lag_bytes();
    for h in cluster.hosts.iter().filter(|h| h.role.has_postgres()) {
        if view.unreachable.contains_key(&h.name) {
            // Its own row says so; every check of it would fail for that one reason.
            continue;
        }
        let pg = view.facts.get(&h.name).and_then(|f| f.postgres.as_ref());
        let Some(pg) = pg.filter(|pg| pg.running) else {
            out.push(result(
                &h.name,
                "running",
                false,
                "PostgreSQL is not running",
            ));
            continue;
        };
        if !h.role.holds_data() {
            // A server of the flavour's own (a repmgr witness): it runs; its part is the
            // flavour's to check.
            continue;
        }
        departed_slots(cluster, flavour, &h.name, pg, out);
        let standby_leader = flavour.source().filter(|_| topology.primary == h.name);
        if let Some(source) = standby_leader {
            // A standby cluster's leader replays what its source cluster sends.
            let receiver = pg.wal_receiver.as_ref();
            let ok = pg.in_recovery
                && receiver
                    .is_some_and(|w| w.status == "streaming" && w.sender_host == source.host);
            out.push(result(
                &h.name,
                "standby leader",
                ok,
                match receiver {
                    Some(w) => format!(
                        "in recovery, WAL receiver {} from {}{}",
                        w.status,
                        w.sender_host,
                        if w.slot_name.is_empty() {
                            String::new()
                        } else {
                            format!(" (slot {})", w.slot_name)
                        }
                    ),
                    None => format!("not receiving WAL from {}:{}", source.host, source.port),
                },
            ));
        } else if topology.primary == h.name {
            out.push(result(
                &h.name,
                "role",
                !pg.in_recovery,
                if pg.in_recovery {
                    "in recovery, expected primary"
                } else {
                    "primary (not in recovery)"
                },
            ));
        } else {
            out.push(result(
                &h.name,
                "role",
                pg.in_recovery,
                if pg.in_recovery {
                    "standby (in recovery)"
                } else {
                    "not in recovery, expected standby"
                },
            ));
        }
        for d in topology.downstreams(cluster, &h.name) {
            if view.unreachable.contains_key(&d.name) {
                // Neither its stream nor its slot can be in use; one row says why.
                out.push(result(
                    &h.name,
                    &format!("streams to {}", d.name),
                    false,
                    format!("{} is unreachable", d.name),
                ));
                continue;
            }
            let stream = pg
                .replication
                .iter()
                .find(|r| r.application_name == d.name && r.state == "streaming");
            out.push(result(
                &h.name,
                &format!("streams to {}", d.name),
                stream.is_some_and(|r| r.lag_bytes <= max_lag),
                match stream {
                    Some(r) if r.lag_bytes <= max_lag => format!(
                        "pg_stat_replication: streaming, {} {} behind",
                        r.sync_state,
                        bytes(r.lag_bytes)
                    ),
                    Some(r) => format!(
                        "streaming but {} behind (limit {})",
                        bytes(r.lag_bytes),
                        bytes(max_lag)
                    ),
                    None => format!("{} is not streaming from here", d.name),
                },
            ));
            if cluster.replication.slots {
                let slot = flavour.slot_name(&d.name);
                let active = pg.slots.get(&slot).is_some_and(|s| s.active);
                out.push(result(
                    &h.name,
                    &format!("slot {slot}"),
                    active,
                    if active {
                        "active"
                    } else {
                        "missing or inactive"
                    },
                ));
            }
        }
    }
}

/// A pgha slot that is no member's: a standby that left the inventory (still streaming, or
/// gone and holding WAL back). apply ends its stream and drops the slot.
fn departed_slots(
    cluster: &crate::model::Cluster,
    flavour: &dyn Flavour,
    host: &str,
    pg: &crate::facts::PgFacts,
    out: &mut Vec<CheckResult>,
) {
    let members: Vec<String> = cluster
        .hosts
        .iter()
        .filter(|h| h.role.holds_data())
        .map(|h| flavour.slot_name(&h.name))
        .collect();
    for (name, slot) in &pg.slots {
        if !name.starts_with(crate::steps::pg_slots_prune::PREFIX) || members.contains(name) {
            continue;
        }
        let detail = if slot.active {
            format!(
                "in use by {}, which is not in the inventory: `pgha apply` ends its stream and drops the slot",
                slot.streamer.split_whitespace().next().unwrap_or("a standby")
            )
        } else {
            "no member's slot, holding WAL back: `pgha apply` drops it".to_owned()
        };
        out.push(result(host, &format!("slot {name}"), false, detail));
    }
}

async fn marker(
    flavour: &dyn Flavour,
    view: &ClusterView<'_>,
    timeout: Duration,
    out: &mut Vec<CheckResult>,
) {
    let topology = view.topology;
    let port = view.cluster.postgres.port;
    let Some(primary) = view.transports.get(&topology.primary) else {
        out.push(result(
            &topology.primary,
            "marker row",
            false,
            "no connection to the primary",
        ));
        return;
    };
    let token = match flavour.source() {
        Some(source) => {
            match newest_marker(primary.as_ref(), port, &topology.primary, &source, out).await {
                Some(token) => token,
                None => return,
            }
        }
        None => match write_marker(primary.as_ref(), port, &topology.primary, out).await {
            Some(token) => token,
            None => return,
        },
    };
    let read = RemoteCommand::sql(
        port,
        "postgres",
        format!("SELECT count(*) FROM pgha.verify_marker WHERE token = '{token}';\n"),
    );
    let standbys: Vec<&String> = topology.upstream.keys().collect();
    let checks = standbys.iter().map(|name| {
        let read = read.clone();
        async move {
            let Some(t) = view.transports.get(*name) else {
                let why = view
                    .unreachable
                    .get(*name)
                    .map_or("no connection", String::as_str);
                return result(
                    name,
                    "marker row read",
                    false,
                    format!("unreachable: {why}"),
                );
            };
            let started = Instant::now();
            loop {
                if let Ok(o) = t.run(&read).await {
                    if o.success() && o.stdout.trim() == "1" {
                        return result(
                            name,
                            "marker row read",
                            true,
                            format!("arrived in {} ms", started.elapsed().as_millis()),
                        );
                    }
                }
                if started.elapsed() > timeout {
                    return result(
                        name,
                        "marker row read",
                        false,
                        format!("not replicated within {} s", timeout.as_secs()),
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    out.extend(futures::future::join_all(checks).await);
}

/// Write a fresh marker row on the primary; its token, or None after recording the failure.
async fn write_marker(
    primary: &dyn Transport,
    port: u16,
    host: &str,
    out: &mut Vec<CheckResult>,
) -> Option<String> {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let write = RemoteCommand::sql(
        port,
        "postgres",
        format!(
            "CREATE SCHEMA IF NOT EXISTS pgha;\nCREATE TABLE IF NOT EXISTS pgha.verify_marker (token text PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT now());\nINSERT INTO pgha.verify_marker (token) VALUES ('{token}');\nDELETE FROM pgha.verify_marker WHERE written_at < now() - interval '1 day';\n"
        ),
    );
    match primary.run(&write).await {
        Ok(o) if o.success() => {
            out.push(result(
                host,
                "marker row written",
                true,
                format!("token {token}"),
            ));
            Some(token)
        }
        Ok(o) => {
            out.push(result(
                host,
                "marker row written",
                false,
                o.stderr.trim().to_owned(),
            ));
            None
        }
        Err(e) => {
            out.push(result(host, "marker row written", false, e.to_string()));
            None
        }
    }
}

/// A standby cluster is read-only: the newest marker row its source cluster's verify wrote,
/// as the standby leader has it. The replicas must then have it too.
async fn newest_marker(
    leader: &dyn Transport,
    port: u16,
    host: &str,
    source: &Source,
    out: &mut Vec<CheckResult>,
) -> Option<String> {
    let read = RemoteCommand::sql(
        port,
        "postgres",
        "SELECT token || ' ' || round(extract(epoch FROM now() - written_at)) FROM pgha.verify_marker ORDER BY written_at DESC LIMIT 1;\n".to_owned(),
    );
    let found = match leader.run(&read).await {
        Ok(o) if o.success() => o
            .stdout
            .trim()
            .split_once(' ')
            .map(|(t, age)| (t.to_owned(), age.to_owned())),
        _ => None,
    };
    match found {
        Some((token, age)) => {
            out.push(result(
                host,
                "marker row from the source",
                true,
                format!(
                    "token {token}, written {age} s ago on {}:{}",
                    source.host, source.port
                ),
            ));
            Some(token)
        }
        None => {
            out.push(result(
                host,
                "marker row from the source",
                false,
                format!("no marker row has arrived from {}:{}: run `pgha verify` on the source cluster, then here", source.host, source.port),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use super::{marker, roles_and_streams, CheckResult};
    use crate::facts::{HostFacts, PgFacts, ReplicationFact, SlotFact};
    use crate::flavours::ClusterView;
    use crate::inventory::{load_str, Inventory};
    use crate::model::Topology;
    use crate::transport::fake::FakeTransport;
    use crate::transport::{Connections, Output, Transport};

    fn inventory() -> Inventory {
        let text = "cluster: {name: t, flavour: streaming}\npostgres: {version: 15}\nreplication: {user: r, password: {env: X}}\nhosts:\n  - {name: pg1, address: 10.0.0.1, role: primary}\n  - {name: pg2, address: 10.0.0.2, role: standby}\n";
        load_str(Path::new("t.yml"), text).expect("loads")
    }

    fn healthy() -> BTreeMap<String, HostFacts> {
        let primary = PgFacts {
            running: true,
            replication: vec![ReplicationFact {
                application_name: "pg2".into(),
                state: "streaming".into(),
                sync_state: "async".into(),
                lag_bytes: 120,
                ..ReplicationFact::default()
            }],
            slots: [(
                "pgha_pg2".to_owned(),
                SlotFact {
                    active: true,
                    physical: true,
                    ..SlotFact::default()
                },
            )]
            .into(),
            ..PgFacts::default()
        };
        let standby = PgFacts {
            running: true,
            in_recovery: true,
            ..PgFacts::default()
        };
        [("pg1", primary), ("pg2", standby)]
            .into_iter()
            .map(|(h, pg)| {
                (
                    h.to_owned(),
                    HostFacts {
                        postgres: Some(pg),
                        ..HostFacts::default()
                    },
                )
            })
            .collect()
    }

    fn checks(inv: &Inventory, facts: &BTreeMap<String, HostFacts>) -> Vec<CheckResult> {
        let topology = Topology::declared(&inv.cluster);
        let transports = Connections::new();
        let queries = BTreeMap::new();
        let view = ClusterView {
            cluster: &inv.cluster,
            topology: &topology,
            facts,
            transports: &transports,
            queries: &queries,
            unreachable: &BTreeMap::new(),
        };
        let mut out = Vec::new();
        roles_and_streams(inv.flavour.as_ref(), &view, &mut out);
        out
    }

    #[test]
    fn a_healthy_pair_passes_every_role_stream_and_slot_check() {
        let inv = inventory();
        let out = checks(&inv, &healthy());
        let names: Vec<&str> = out.iter().map(|c| c.check.as_str()).collect();
        assert_eq!(names, ["role", "streams to pg2", "slot pgha_pg2", "role"]);
        assert!(out.iter().all(|c| c.ok), "{out:#?}");
        assert!(
            out[1].detail.contains("streaming, async 120 B behind"),
            "{}",
            out[1].detail
        );
    }

    #[test]
    fn a_standby_out_of_recovery_and_a_missing_stream_fail_by_name() {
        let inv = inventory();
        let mut facts = healthy();
        if let Some(pg) = facts.get_mut("pg1").and_then(|f| f.postgres.as_mut()) {
            pg.replication.clear();
            pg.slots.clear();
        }
        if let Some(pg) = facts.get_mut("pg2").and_then(|f| f.postgres.as_mut()) {
            pg.in_recovery = false;
        }
        let failed: Vec<(String, String, String)> = checks(&inv, &facts)
            .into_iter()
            .filter(|c| !c.ok)
            .map(|c| (c.host, c.check, c.detail))
            .collect();
        assert_eq!(failed.len(), 3, "{failed:#?}");
        assert_eq!(failed[0].2, "pg2 is not streaming from here");
        assert_eq!(failed[1].2, "missing or inactive");
        assert_eq!(
            (failed[2].0.as_str(), failed[2].2.as_str()),
            ("pg2", "not in recovery, expected standby")
        );
    }

    #[test]
    fn a_stopped_server_is_one_failed_check_not_a_crash() {
        let inv = inventory();
        let mut facts = healthy();
        facts.remove("pg2");
        let out = checks(&inv, &facts);
        let pg2: Vec<&CheckResult> = out.iter().filter(|c| c.host == "pg2").collect();
        assert_eq!(pg2.len(), 1);
        assert_eq!(pg2[0].detail, "PostgreSQL is not running");
    }

    fn marker_run(standby_says: &str) -> Vec<CheckResult> {
        let inv = inventory();
        let topology = Topology::declared(&inv.cluster);
        let mut transports = Connections::new();
        transports.insert(
            "pg1".into(),
            Arc::new(FakeTransport::new("pg1")) as Arc<dyn Transport>,
        );
        let reader = FakeTransport::new("pg2").reply(
            "SELECT count(*) FROM pgha.verify_marker",
            Output {
                status: 0,
                stdout: standby_says.into(),
                stderr: String::new(),
            },
        );
        transports.insert("pg2".into(), Arc::new(reader) as Arc<dyn Transport>);
        let facts = healthy();
        let queries = BTreeMap::new();
        let view = ClusterView {
            cluster: &inv.cluster,
            topology: &topology,
            facts: &facts,
            transports: &transports,
            queries: &queries,
            unreachable: &BTreeMap::new(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        let mut out = Vec::new();
        rt.block_on(marker(
            inv.flavour.as_ref(),
            &view,
            Duration::from_secs(5),
            &mut out,
        ));
        out
    }

    #[test]
    fn the_marker_row_written_on_the_primary_is_read_back_on_the_standby() {
        let out = marker_run("1\n");
        assert_eq!(out.len(), 2, "{out:#?}");
        assert!(out[0].ok && out[0].check == "marker row written");
        assert!(out[1].ok && out[1].host == "pg2" && out[1].detail.starts_with("arrived in"));
    }

    #[test]
    fn a_marker_that_never_arrives_fails_after_the_timeout() {
        let out = marker_run("0\n");
        assert!(!out[1].ok, "{out:#?}");
        assert_eq!(out[1].detail, "not replicated within 5 s");
    }
}
