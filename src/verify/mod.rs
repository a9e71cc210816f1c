//! Verify: prove the cluster works, not just that services run. Roles as expected, every
//! standby streaming from its upstream, every slot in use, and a marker row written on the
//! primary read back on every standby. The number of checks run is part of the result: a
//! verify that ran nothing is a failure.

use std::time::{Duration, Instant};

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
    if let Err(e) = session.refresh_all().await {
        return vec![result(&topology.primary, "facts", false, e.to_string())];
    }
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
        if out.iter().all(|r| r.ok) || started.elapsed() > timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Err(e) = session.refresh_all().await {
            return vec![result(&topology.primary, "facts", false, e.to_string())];
        }
    }
    let view = session.view(topology);
    out.extend(flavour.checks(&view).await);
    marker(flavour.as_ref(), &view, timeout, &mut out).await;
    out
}

fn bytes(n: i64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / f64::from(1 << 10)),
        n => format!("{n} B"),
    }
}

fn roles_and_streams(flavour: &dyn Flavour, view: &ClusterView<'_>, out: &mut Vec<CheckResult>) {
    let (cluster, topology) = (view.cluster, view.topology);
    let max_lag = flavour.max_lag_bytes();
    for h in cluster.hosts.iter().filter(|h| h.role.has_postgres()) {
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
        Some(source) => match newest_marker(primary, port, &topology.primary, &source, out).await {
            Some(token) => token,
            None => return,
        },
        None => match write_marker(primary, port, &topology.primary, out).await {
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
                return result(name, "marker row read", false, "no connection");
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
    primary: &impl Transport,
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
    leader: &impl Transport,
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
