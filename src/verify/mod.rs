//! Verify: prove the cluster works, not just that services run. Roles as expected, every
//! standby streaming from its upstream, every slot in use, and a marker row written on the
//! primary read back on every standby. The number of checks run is part of the result: a
//! verify that ran nothing is a failure.

use std::time::{Duration, Instant};

use crate::model::{Cluster, Topology};
use crate::session::Session;
use crate::transport::{RemoteCommand, Transport};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub host: String,
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

fn result(host: &str, check: &str, ok: bool, detail: impl Into<String>) -> CheckResult {
    CheckResult {
        host: host.to_owned(),
        check: check.to_owned(),
        ok,
        detail: detail.into(),
    }
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
    loop {
        out.clear();
        roles_and_streams(&session.project.cluster, topology, session, &mut out);
        if out.iter().all(|r| r.ok) || started.elapsed() > timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Err(e) = session.refresh_all().await {
            return vec![result(&topology.primary, "facts", false, e.to_string())];
        }
    }
    if session.project.cluster.patroni.is_some() {
        patroni_checks(session, topology, &mut out).await;
    }
    marker(session, topology, timeout, &mut out).await;
    out
}

/// Under Patroni: one leader, every member running, every etcd member healthy, the REST
/// health endpoints answering as the roles say, a synchronous standby when asked for.
async fn patroni_checks(session: &Session, topology: &Topology, out: &mut Vec<CheckResult>) {
    let cluster = &session.project.cluster;
    let Some(p) = &cluster.patroni else { return };
    let leaders: Vec<&str> = cluster
        .hosts
        .iter()
        .filter(|h| {
            session
                .facts
                .get(&h.name)
                .and_then(|f| f.patroni.as_ref())
                .is_some_and(|pf| pf.is_leader())
        })
        .map(|h| h.name.as_str())
        .collect();
    out.push(result(
        &topology.primary,
        "one Patroni leader",
        leaders.len() == 1,
        format!(
            "leaders: {}",
            if leaders.is_empty() {
                "none".to_owned()
            } else {
                leaders.join(", ")
            }
        ),
    ));
    for h in cluster.hosts.iter().filter(|h| h.role.has_postgres()) {
        let state = session
            .facts
            .get(&h.name)
            .and_then(|f| f.patroni.as_ref())
            .map(|pf| pf.state.clone())
            .unwrap_or_else(|| "not answering".into());
        out.push(result(
            &h.name,
            "Patroni member",
            state == "running",
            format!("state {state}"),
        ));
    }
    for m in &p.etcd.members {
        let healthy = session.facts.get(m).and_then(|f| f.etcd_healthy) == Some(true);
        out.push(result(
            m,
            "etcd member",
            healthy,
            if healthy { "healthy" } else { "not healthy" },
        ));
    }
    // What a load balancer would see: /leader answers 200 on the leader only, /replica on
    // replicas only.
    let probe = "import sys, urllib.request, urllib.error\nfor p in sys.argv[2:]:\n    try:\n        print(urllib.request.urlopen(sys.argv[1] + p, timeout=2).status)\n    except urllib.error.HTTPError as e:\n        print(e.code)\n    except Exception:\n        print(0)\n";
    for h in cluster.hosts.iter().filter(|h| h.role.has_postgres()) {
        let Some(t) = session.transports.get(&h.name) else {
            continue;
        };
        let url = format!("http://{}:{}", h.address, p.restapi_port);
        let cmd = RemoteCommand::new([
            "python3".to_owned(),
            "-c".to_owned(),
            probe.to_owned(),
            url,
            "/leader".into(),
            "/replica".into(),
            "/read-only".into(),
        ]);
        let codes: Vec<String> = match t.run(&cmd).await {
            Ok(o) => o.stdout.lines().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        };
        // A load balancer's replica pool leaves out the leader and `noloadbalance` members;
        // /read-only takes every running member.
        let is_leader = h.name == topology.primary;
        let want = match (is_leader, h.tags.noloadbalance) {
            (true, _) => ["200", "503", "200"],
            (false, true) => ["503", "503", "200"],
            (false, false) => ["503", "200", "200"],
        };
        let ok = codes.len() == want.len() && codes.iter().zip(want).all(|(c, w)| c == w);
        out.push(result(
            &h.name,
            "REST /leader /replica /read-only",
            ok,
            format!("{} (wanted {})", codes.join(" "), want.join(" ")),
        ));
    }
    // Permanent slots: on the leader whoever it is, so the consumer outside survives a
    // failover.
    let leader_slots = session
        .facts
        .get(&topology.primary)
        .and_then(|f| f.postgres.as_ref())
        .map(|pg| pg.slots.clone())
        .unwrap_or_default();
    for slot in &p.permanent_slots {
        let found = leader_slots.get(slot);
        out.push(result(
            &topology.primary,
            &format!("permanent slot {slot}"),
            found.is_some(),
            match found {
                Some(s) if s.active => "present, in use",
                Some(_) => "present, not in use (nothing streams from it now)",
                None => "missing on the leader",
            },
        ));
    }
}

/// The replay lag a stream may have and still count as healthy: under Patroni the lag that
/// would keep a replica from being promoted, otherwise 16 MiB (one WAL segment).
fn max_lag_bytes(cluster: &Cluster) -> i64 {
    cluster
        .patroni
        .as_ref()
        .map(|p| i64::try_from(p.maximum_lag_on_failover).unwrap_or(i64::MAX))
        .unwrap_or(16 << 20)
}

fn bytes(n: i64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / f64::from(1 << 10)),
        n => format!("{n} B"),
    }
}

fn roles_and_streams(
    cluster: &Cluster,
    topology: &Topology,
    session: &Session,
    out: &mut Vec<CheckResult>,
) {
    let max_lag = max_lag_bytes(cluster);
    for h in cluster.hosts.iter().filter(|h| h.role.has_postgres()) {
        let pg = session.facts.get(&h.name).and_then(|f| f.postgres.as_ref());
        let Some(pg) = pg.filter(|pg| pg.running) else {
            out.push(result(
                &h.name,
                "running",
                false,
                "PostgreSQL is not running",
            ));
            continue;
        };
        let standby_leader = cluster
            .patroni
            .as_ref()
            .and_then(|p| p.standby_cluster.as_ref())
            .filter(|_| topology.primary == h.name);
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
                let slot = cluster.slot_name(&d.name);
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
    // Patroni names the synchronous standby a loop after the replicas join: polled with the
    // stream checks, not read once.
    if cluster.patroni.as_ref().is_some_and(|p| p.synchronous_mode) {
        let sync = session
            .facts
            .get(&topology.primary)
            .and_then(|f| f.postgres.as_ref())
            .map(|pg| {
                pg.replication
                    .iter()
                    .filter(|r| r.sync_state == "sync")
                    .count()
            })
            .unwrap_or(0);
        out.push(result(
            &topology.primary,
            "synchronous standby",
            sync >= 1,
            format!("{sync} synchronous"),
        ));
    }
}

async fn marker(
    session: &Session,
    topology: &Topology,
    timeout: Duration,
    out: &mut Vec<CheckResult>,
) {
    let port = session.project.cluster.postgres.port;
    let Some(primary) = session.transports.get(&topology.primary) else {
        out.push(result(
            &topology.primary,
            "marker row",
            false,
            "no connection to the primary",
        ));
        return;
    };
    let source = session
        .project
        .cluster
        .patroni
        .as_ref()
        .and_then(|p| p.standby_cluster.as_ref());
    let token = match source {
        Some(source) => match newest_marker(primary, port, &topology.primary, source, out).await {
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
            let Some(t) = session.transports.get(*name) else {
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
    source: &crate::model::patroni::StandbyCluster,
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
