//! `pgha drill failover`: crash the primary under a client's write load and measure what an
//! application sees (the write gap, the time until writes reach the new primary, acknowledged
//! writes lost), then bring the cluster back whole with pgha's own apply and prove it with
//! verify. The drill refuses, touching nothing, unless the cluster verifies and every host
//! answers; the cluster lock is held from before the crash to the end.
//!
//! Phases, one module each: `route` (where the client connects), `load` (the client),
//! `crash` (taking the host down and back), `report` (the figures and the verdict).

pub mod crash;
pub mod load;
pub mod report;
pub mod route;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::apply::handover as apply_handover;
use crate::apply::{self, lock, Observer};
use crate::drill::crash::Crash;
use crate::drill::load::{Client, Credentials, Load, TABLE};
use crate::drill::report::{Objectives, Report, Writes};
use crate::drill::route::Route;
use crate::model::Topology;
use crate::session::Session;

/// What the DBA asked for.
pub struct Options {
    pub route: Route,
    pub crash: Crash,
    /// How long the drill lasts from the crash: the wait for a new primary, the isolation.
    pub duration: Duration,
    /// The role that writes (None: the first of `users` with a password, else the
    /// superuser) and its database (None: the first it owns, else `postgres`).
    pub user: Option<String>,
    pub database: Option<String>,
    /// The id of the cluster lock the drill holds (the caller's, for its unlock hint).
    pub lock_id: String,
}

/// The drill did not start: nothing was crashed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Writes before the crash, for the figures to have a before.
const WARM_UP: Duration = Duration::from_secs(3);
/// How long writes may take to reach the new primary after the drill's duration.
const ROUTE_GRACE: Duration = Duration::from_secs(30);
/// Writes go on this long after the first one the new primary took.
const AFTER_ROUTE: Duration = Duration::from_secs(3);
/// How long a former primary may take to come back as a standby on its own (Patroni's
/// rewind and start).
const REJOIN_WAIT: Duration = Duration::from_secs(120);
const VERIFY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(500);

/// Run the drill. `note` receives what happens as it happens; `observer` the events of the
/// applies the drill runs (pgha's failover, the restore).
pub async fn failover(
    session: &mut Session,
    options: &Options,
    objectives: Option<&Objectives>,
    observer: &dyn Observer,
    note: &(dyn Fn(&str) + Sync),
    stop: &apply::Stop,
) -> Result<Report, Refused> {
    if !session.unreachable.is_empty() {
        let names: Vec<String> = session
            .unreachable
            .iter()
            .map(|(h, why)| format!("{h} ({why})"))
            .collect();
        return Err(Refused(format!(
            "not reached: {}: a drill needs every host. Nothing was touched",
            names.join(", ")
        )));
    }
    let (topology, _) = session.topology().map_err(|e| Refused(e.to_string()))?;
    let failures = verify_failures(session, &topology).await;
    if !failures.is_empty() {
        return Err(Refused(format!(
            "verify fails before the drill ({}): run `pgha verify`, fix the cluster, then drill. Nothing was touched",
            failures.join("; ")
        )));
    }
    let old = topology.primary.clone();
    let flavour = session.project.flavour.clone();
    if options.crash == Crash::Isolate && !flavour.fails_over_on_its_own() {
        return Err(Refused(format!(
            "--crash isolate: the {} flavour does not fail over on its own, and pgha's failover refuses while the primary answers pgha (an isolated host still does, over SSH). Use --crash kill or stop",
            flavour.name()
        )));
    }
    let old_transport = session
        .transports
        .get(&old)
        .cloned()
        .ok_or_else(|| Refused(format!("no connection to {old}")))?;
    crash::preflight(old_transport.as_ref(), options.crash)
        .await
        .map_err(|e| Refused(e.to_string()))?;
    let client = Arc::new(writer(session, options, &options.route)?);
    let id = &options.lock_id;
    lock::take_all(
        &session.transports,
        &lock::LockInfo::new(id, "drill failover"),
        &session.project.cluster.source.display().to_string(),
    )
    .await
    .map_err(|e| Refused(e.to_string()))?;
    let result = locked(
        session, options, objectives, observer, note, &old, client, stop,
    )
    .await;
    lock::release_all(&session.transports, id).await;
    result
}

/// The drill under the cluster lock. A stop request (a first SIGINT or SIGTERM) before the
/// crash ends it with nothing crashed; after the crash it cuts the waits short, and the old
/// primary is still brought back and apply still runs: a drill never leaves a host down.
#[allow(clippy::too_many_arguments)]
async fn locked(
    session: &mut Session,
    options: &Options,
    objectives: Option<&Objectives>,
    observer: &dyn Observer,
    note: &(dyn Fn(&str) + Sync),
    old: &str,
    client: Arc<Client>,
    stop: &apply::Stop,
) -> Result<Report, Refused> {
    let flavour = session.project.flavour.clone();
    let cluster = session.project.cluster.clone();
    client
        .batch(&format!(
            "DROP TABLE IF EXISTS {TABLE}; CREATE TABLE {TABLE} (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
        ))
        .await
        .map_err(|e| Refused(format!("the drill's table: {e}. Nothing was crashed")))?;
    let synchronous = session
        .facts
        .get(old)
        .and_then(|f| f.postgres.as_ref())
        .is_some_and(|pg| {
            pg.replication
                .iter()
                .any(|r| r.sync_state == "sync" || r.sync_state == "quorum")
        });
    let load = Load::start(client.clone());
    let warm = Instant::now();
    while load.acks().is_empty() || warm.elapsed() < WARM_UP {
        if warm.elapsed() > WARM_UP * 5 {
            load.stop().await;
            let _ = client.batch(&format!("DROP TABLE IF EXISTS {TABLE}")).await;
            return Err(Refused(format!(
                "no write was acknowledged through {} before the crash: nothing was crashed",
                options.route.label
            )));
        }
        tokio::time::sleep(POLL).await;
    }
    let mut notes = Vec::new();
    if stop.requested() {
        load.stop().await;
        let _ = client.batch(&format!("DROP TABLE IF EXISTS {TABLE}")).await;
        return Err(Refused(
            "stopped by a signal before the crash: nothing was crashed".to_owned(),
        ));
    }
    let old_transport = session
        .transports
        .get(old)
        .cloned()
        .ok_or_else(|| Refused(format!("no connection to {old}")))?;
    let operator = operator_address(&cluster, old).await;
    note(&format!(
        "{} writes acknowledged through {}; crashing {old} ({})",
        load.acks().len(),
        options.route.label,
        options.crash.name()
    ));
    let crashed_at = Instant::now();
    let crashed = crate::flavours::run_ok(
        old_transport.as_ref(),
        &crash::command(
            flavour.as_ref(),
            &cluster,
            options.crash,
            options.duration,
            &operator,
        ),
        "crash the primary",
    )
    .await;
    if let Err(e) = crashed {
        load.stop().await;
        let _ = client.batch(&format!("DROP TABLE IF EXISTS {TABLE}")).await;
        return Err(Refused(format!("{e}: the drill stopped")));
    }
    let deadline = crashed_at + options.duration;
    let (new_primary, failover_by) =
        await_new_primary(session, old, deadline, observer, note, &mut notes, stop).await;
    // The old primary as the client knew it: whoever acknowledged before the crash.
    let old_servers: Vec<String> = load
        .acks()
        .iter()
        .filter(|a| a.at < crashed_at)
        .map(|a| a.server.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // Writes go on for the drill's duration, and until one reached the new primary.
    loop {
        let now = Instant::now();
        let routed = load
            .acks()
            .iter()
            .find(|a| a.at >= crashed_at && !old_servers.contains(&a.server))
            .map(|a| a.at);
        let done = stop.requested()
            || match routed {
                Some(at) => now >= deadline && now >= at + AFTER_ROUTE,
                None => now >= deadline + ROUTE_GRACE || (new_primary.is_none() && now >= deadline),
            };
        if done {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let acks = load.stop().await;
    let held = match client.ids().await {
        Ok(ids) => Some(ids),
        Err(e) => {
            notes.push(format!("the writes could not be read back: {e}"));
            None
        }
    };
    let writes = Writes::measure(&acks, crashed_at, &old_servers, held.as_ref());
    let interrupted = stop.requested();
    if interrupted {
        note(&format!(
            "stopped by a signal: the drill is cut short; {old} is brought back and apply runs (a second signal aborts at once)"
        ));
    }
    note(&format!(
        "{} writes acknowledged; bringing {old} back",
        writes.acknowledged
    ));

    match crash::restore(
        old_transport.as_ref(),
        flavour.as_ref(),
        &cluster,
        options.crash,
    )
    .await
    {
        Ok(done) => notes.push(format!("{old}: {done}")),
        Err(e) => notes.push(format!("bringing {old} back: {e}")),
    }
    if flavour.manager_rejoins() {
        await_replica(session, old).await;
    }
    let apply_after = apply_now(session, observer, note).await;
    let (topology, verify_failures) = match session.topology() {
        Ok((t, _)) => {
            let failures = verify_failures(session, &t).await;
            (Some(t), failures)
        }
        Err(e) => (None, vec![e.to_string()]),
    };
    let rejoined = topology.as_ref().is_some_and(|t| t.primary != old)
        && session
            .facts
            .get(old)
            .and_then(|f| f.postgres.as_ref())
            .is_some_and(|pg| pg.running && pg.in_recovery);
    if let Err(e) = client.batch(&format!("DROP TABLE IF EXISTS {TABLE}")).await {
        notes.push(format!("the drill's table {TABLE} is left: {e}"));
    }
    Ok(Report {
        cluster: cluster.name.clone(),
        flavour: flavour.name().to_owned(),
        route: options.route.label.clone(),
        route_hosts: options.route.addresses(),
        crash: options.crash.name().to_owned(),
        duration_s: options.duration.as_secs(),
        old_primary: old.to_owned(),
        new_primary,
        failover_by,
        synchronous,
        writes,
        rejoined_as_replica: rejoined,
        apply_after,
        verify_after: if verify_failures.is_empty() {
            "ok".to_owned()
        } else {
            "failed".to_owned()
        },
        verify_failures,
        notes,
        rto_s: None,
        rpo_zero: None,
        expected_worst_case_s: None,
        expected_from: None,
        broken: Vec::new(),
        passed: false,
    }
    .judge(objectives)
    .interrupted(interrupted))
}

/// The client that writes: the role the DBA named or the first one with a password, and its
/// password by reference (never shown).
fn writer(session: &Session, options: &Options, route: &Route) -> Result<Client, Refused> {
    let cluster = &session.project.cluster;
    let with_password = |name: &str| {
        cluster
            .users
            .iter()
            .find(|u| u.name == name && u.login && u.password.is_some())
    };
    let (user, label) = match options.user.as_deref() {
        Some("postgres") if cluster.postgres.superuser_password.is_some() => (
            "postgres".to_owned(),
            "postgres.superuser_password".to_owned(),
        ),
        Some(name) => match with_password(name) {
            Some(u) => (u.name.clone(), format!("users[{}].password", u.name)),
            None => {
                return Err(Refused(format!(
                    "--user {name}: not a login role of the inventory's users with a password (or postgres with postgres.superuser_password)"
                )))
            }
        },
        None => match cluster
            .users
            .iter()
            .find(|u| u.login && u.password.is_some())
        {
            Some(u) => (u.name.clone(), format!("users[{}].password", u.name)),
            None if cluster.postgres.superuser_password.is_some() => (
                "postgres".to_owned(),
                "postgres.superuser_password".to_owned(),
            ),
            None => {
                return Err(Refused(
                    "no role to write with: the inventory has no login user with a password, nor postgres.superuser_password".into(),
                ))
            }
        },
    };
    let database = options.database.clone().unwrap_or_else(|| {
        cluster
            .databases
            .iter()
            .find(|d| d.owner == user)
            .map_or_else(|| "postgres".to_owned(), |d| d.name.clone())
    });
    let password = session
        .secrets
        .get(&label)
        .map_err(|e| Refused(e.to_string()))?;
    Client::new(
        route,
        cluster,
        &Credentials {
            user: &user,
            password,
            database: &database,
        },
    )
    .map_err(|e| Refused(e.to_string()))
}

/// Every check of pgha's verify that failed, as `host check: detail`.
async fn verify_failures(session: &mut Session, topology: &Topology) -> Vec<String> {
    let results = crate::verify::run(session, topology, VERIFY_TIMEOUT).await;
    if results.is_empty() {
        return vec!["no check ran".to_owned()];
    }
    results
        .iter()
        .filter(|r| !r.ok)
        .map(|r| format!("{} {}: {}", r.host, r.check, r.detail))
        .collect()
}

/// Poll until a data host other than `old` runs as the primary. A flavour that does not fail
/// over on its own gets pgha's failover once the old primary is seen down, as `pgha
/// failover -y` runs it. The new primary (None by the deadline) and who promoted it.
async fn await_new_primary(
    session: &mut Session,
    old: &str,
    deadline: Instant,
    observer: &dyn Observer,
    note: &(dyn Fn(&str) + Sync),
    notes: &mut Vec<String>,
    stop: &apply::Stop,
) -> (Option<String>, String) {
    let flavour = session.project.flavour.clone();
    let mut by = if flavour.fails_over_on_its_own() {
        "the flavour".to_owned()
    } else {
        "pgha failover".to_owned()
    };
    let mut ran = false;
    let mut last_refusal = None;
    loop {
        session.refresh_all().await;
        if let Ok((mut topology, _)) = session.topology() {
            let p = &topology.primary;
            let leads = session
                .facts
                .get(p)
                .and_then(|f| f.postgres.as_ref())
                .is_some_and(|pg| pg.running && !pg.in_recovery);
            if p != old && leads {
                note(&format!("{p} is the primary"));
                return (Some(p.clone()), by);
            }
            let old_down = !session
                .facts
                .get(old)
                .and_then(|f| f.postgres.as_ref())
                .is_some_and(|pg| pg.running);
            if !flavour.fails_over_on_its_own() && !ran && old_down {
                // With no server running as primary, the observed topology falls back to the
                // inventory's primary, which need not be the one that crashed: the drill knows.
                topology.primary = old.to_owned();
                let choice = flavour.failover_choice(&session.view(&topology), None);
                match choice {
                    Ok(choice) => {
                        ran = true;
                        let text = format!(
                            "{old} is down and the {} flavour does not fail over on its own: pgha failover promotes {}",
                            flavour.name(),
                            choice.target
                        );
                        note(&text);
                        notes.push(text);
                        match apply_handover::failover(session, &choice, observer).await {
                            Ok(r) if r.failed_hosts.is_empty() => {}
                            Ok(r) => notes.push(format!(
                                "converging after the failover failed: {}",
                                r.failed_hosts.join("; ")
                            )),
                            Err(e) => {
                                notes.push(format!("pgha failover: {e}"));
                                by = "nobody (pgha failover failed)".to_owned();
                            }
                        }
                        continue;
                    }
                    Err(e) => last_refusal = Some(e.to_string()),
                }
            }
        }
        if Instant::now() >= deadline || stop.requested() {
            if let Some(why) = last_refusal {
                notes.push(format!("pgha failover refused: {why}"));
            }
            return (None, by);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Wait (bounded) for a former primary to stream again as a standby. Running in recovery is
/// not enough: an isolated Patroni member demotes itself to a read-only standby before the
/// isolation lifts, then stops again for pg_rewind once it sees the new leader. Streaming on
/// two polls in a row is the rejoin settled.
async fn await_replica(session: &mut Session, host: &str) {
    let started = Instant::now();
    let mut streaming_polls = 0;
    while started.elapsed() < REJOIN_WAIT {
        session.refresh_all().await;
        let streaming = session
            .facts
            .get(host)
            .and_then(|f| f.postgres.as_ref())
            .is_some_and(crate::facts::PgFacts::streams);
        streaming_polls = if streaming { streaming_polls + 1 } else { 0 };
        if streaming_polls >= 2 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Plan and apply every change, as `pgha apply -y` does (the caller holds the lock): this is
/// what rejoins a former primary. `ok`, or why not.
async fn apply_now(
    session: &mut Session,
    observer: &dyn Observer,
    note: &(dyn Fn(&str) + Sync),
) -> String {
    session.refresh_all().await;
    if !session.unreachable.is_empty() {
        return format!(
            "not reached: {}",
            session
                .unreachable
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let plan = match session.plan() {
        Ok(p) => p,
        Err(e) => return format!("plan: {e}"),
    };
    let refusals = plan.refusals();
    if !refusals.is_empty() {
        return format!(
            "refused steps: {}",
            refusals
                .iter()
                .map(|(h, step, why)| format!("{h} {step}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    note(&format!("apply: {} changes", plan.change_count()));
    if plan.change_count() == 0 {
        return "ok".to_owned();
    }
    match apply::run(session, &plan.topology, observer, &apply::Stop::default()).await {
        Ok(recaps) => {
            let failed: Vec<String> = recaps
                .iter()
                .filter_map(|(h, r)| r.failed.as_ref().map(|why| format!("{h}: {why}")))
                .collect();
            if failed.is_empty() {
                "ok".to_owned()
            } else {
                format!("failed: {}", failed.join("; "))
            }
        }
        Err(e) => format!("failed: {e}"),
    }
}

/// The addresses a host's server may report as its own (`inet_server_addr()`): its address,
/// resolved when it is a name.
async fn addresses_of(cluster: &crate::model::Cluster, host: &str) -> Vec<String> {
    let Some(h) = cluster.host(host) else {
        return Vec::new();
    };
    if let Some(ip) = h.ip() {
        return vec![ip.to_string()];
    }
    match tokio::net::lookup_host((h.address.as_str(), cluster.postgres.port)).await {
        Ok(found) => found.map(|a| a.ip().to_string()).collect(),
        Err(_) => vec![h.address.clone()],
    }
}

/// This machine's address towards the host, as the host sees pgha's SSH come in (no packet
/// is sent: a UDP socket only picks its route). The isolation keeps SSH from it open when
/// sshd does not say (a command run under sudo loses `SSH_CONNECTION`).
async fn operator_address(cluster: &crate::model::Cluster, host: &str) -> String {
    let Some(h) = cluster.host(host) else {
        return String::new();
    };
    let target = match addresses_of(cluster, host).await.first() {
        Some(a) => a.clone(),
        None => return String::new(),
    };
    let bind = if target.contains(':') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let Ok(socket) = tokio::net::UdpSocket::bind(bind).await else {
        return String::new();
    };
    let port = h.ssh.port;
    match socket.connect((target.as_str(), port)).await {
        Ok(()) => socket
            .local_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}
