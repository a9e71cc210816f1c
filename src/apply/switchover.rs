//! A planned switchover for the streaming flavour, done so that no committed transaction is
//! lost and the old primary can follow without a rewind:
//!
//! 1. CHECKPOINT on the old primary (a short shutdown), then stop it cleanly: its WAL senders
//!    ship everything, up to the shutdown checkpoint, before it exits.
//! 2. Wait until the target has replayed past that shutdown checkpoint.
//! 3. Mark the old primary as a standby (`standby.signal`) before anything can start it.
//! 4. Promote the target.
//! 5. Converge with the new topology (the playbook re-points every standby, makes the slots on
//!    the new primary, drops abandoned ones, starts the old primary as a standby), then verify.
//!
//! If the target does not catch up in time, the old primary is started again unchanged.

use std::time::{Duration, Instant};

use crate::apply::{self, Observer};
use crate::facts::HostFacts;
use crate::session::{Session, SessionError};
use crate::transport::ssh::SshTransport;
use crate::transport::{RemoteCommand, Transport};

#[derive(Debug, thiserror::Error)]
pub enum SwitchoverError {
    #[error("{0}")]
    Refused(String),
    #[error("{host}: {what}: {reason}")]
    Step {
        host: String,
        what: String,
        reason: String,
    },
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
}

pub struct Report {
    pub old_primary: String,
    pub new_primary: String,
    /// From the old primary's stop to the target accepting writes.
    pub write_gap: Duration,
    pub failed_hosts: Vec<String>,
}

async fn run_ok(
    t: &SshTransport,
    command: &RemoteCommand,
    what: &str,
) -> Result<String, SwitchoverError> {
    let out = t.run(command).await.map_err(|e| SwitchoverError::Step {
        host: t.host().to_owned(),
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    if !out.success() {
        return Err(SwitchoverError::Step {
            host: t.host().to_owned(),
            what: what.to_owned(),
            reason: out.stderr.trim().to_owned(),
        });
    }
    Ok(out.stdout.trim().to_owned())
}

fn streaming(facts: Option<&HostFacts>) -> bool {
    facts.and_then(|f| f.postgres.as_ref()).is_some_and(|pg| {
        pg.running
            && pg.in_recovery
            && pg
                .wal_receiver
                .as_ref()
                .is_some_and(|w| w.status == "streaming")
    })
}

pub async fn run(
    session: &mut Session,
    target: &str,
    observer: &dyn Observer,
) -> Result<Report, SwitchoverError> {
    if session.project.cluster.patroni.is_some() {
        return patroni(session, target).await;
    }
    let (topology, _) = session.topology()?;
    let old = topology.primary.clone();
    if session.project.cluster.host(target).is_none() {
        return Err(SwitchoverError::Refused(format!(
            "{target} is not a host of this inventory"
        )));
    }
    if target == old {
        return Err(SwitchoverError::Refused(format!(
            "{target} is already the primary"
        )));
    }
    if topology.upstream.get(target) != Some(&old) {
        return Err(SwitchoverError::Refused(format!(
            "{target} streams from {}, not from the primary {old}: switch over to a direct standby",
            topology
                .upstream
                .get(target)
                .map(String::as_str)
                .unwrap_or("nothing")
        )));
    }
    if !streaming(session.facts.get(target)) {
        return Err(SwitchoverError::Refused(format!(
            "{target} is not streaming from {old}: it could not catch up; run `pgha verify` first"
        )));
    }
    let pg = &session.project.cluster.postgres;
    let service = format!("postgresql@{}-{}", pg.version, pg.debian_cluster);
    let data = pg.data_dir.clone();
    let port = pg.port;
    let controldata = format!("/usr/lib/postgresql/{}/bin/pg_controldata", pg.version);
    let old_t = &session.transports[&old];
    let new_t = &session.transports[target];

    run_ok(
        old_t,
        &RemoteCommand::sql(port, "postgres", "CHECKPOINT;\n"),
        "checkpoint",
    )
    .await?;
    let stopped_at = Instant::now();
    run_ok(
        old_t,
        &RemoteCommand::new(["systemctl", "stop", &service]),
        "stop the old primary",
    )
    .await?;
    let checkpoint = run_ok(
        old_t,
        &RemoteCommand::script(format!(
            "{controldata} {} | sed -n 's/^Latest checkpoint location: *//p'",
            shell_words::quote(&data)
        ))
        .as_user("postgres"),
        "read the shutdown checkpoint",
    )
    .await?;
    let caught_up = RemoteCommand::sql(
        port,
        "postgres",
        format!(
            "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '{}') > 0;\n",
            checkpoint.replace('\'', "")
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if run_ok(new_t, &caught_up, "compare WAL positions")
            .await
            .ok()
            .as_deref()
            == Some("t")
        {
            break;
        }
        if Instant::now() > deadline {
            let _ = run_ok(
                old_t,
                &RemoteCommand::new(["systemctl", "start", &service]),
                "restart the old primary",
            )
            .await;
            return Err(SwitchoverError::Refused(format!(
                "{target} did not replay {old}'s shutdown checkpoint {checkpoint} within 30 s; {old} was started again as the primary, nothing changed"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run_ok(
        old_t,
        &RemoteCommand::new(["touch".to_owned(), format!("{data}/standby.signal")])
            .as_user("postgres"),
        "mark the old primary as a standby",
    )
    .await?;
    let promoted = run_ok(
        new_t,
        &RemoteCommand::sql(port, "postgres", "SELECT pg_promote(true, 60);\n"),
        "promote",
    )
    .await?;
    if promoted != "t" {
        return Err(SwitchoverError::Step {
            host: target.to_owned(),
            what: "promote".into(),
            reason: format!("pg_promote returned {promoted}"),
        });
    }
    let write_gap = stopped_at.elapsed();
    session.refresh_all().await?;
    let (new_topology, _) = session.topology()?;
    let recaps = apply::run(session, &new_topology, observer).await?;
    let failed_hosts = recaps
        .iter()
        .filter(|(_, r)| r.failed.is_some())
        .map(|(h, r)| format!("{h}: {}", r.failed.clone().unwrap_or_default()))
        .collect();
    Ok(Report {
        old_primary: old,
        new_primary: target.to_owned(),
        write_gap,
        failed_hosts,
    })
}

/// Under Patroni the switchover is Patroni's: POST /switchover to the leader's REST API (what
/// `patronictl switchover` does), then wait until the target leads and the old leader runs as
/// a replica.
async fn patroni(session: &mut Session, target: &str) -> Result<Report, SwitchoverError> {
    let (topology, _) = session.topology()?;
    let old = topology.primary.clone();
    let cluster = &session.project.cluster;
    let Some(p) = cluster.patroni.as_ref() else {
        return Err(SwitchoverError::Refused("not a Patroni cluster".into()));
    };
    let Some(target_host) = cluster.host(target).filter(|h| h.role.has_postgres()) else {
        return Err(SwitchoverError::Refused(format!(
            "{target} is not a PostgreSQL host of this inventory"
        )));
    };
    if target == old {
        return Err(SwitchoverError::Refused(format!(
            "{target} is already the leader"
        )));
    }
    if target_host.tags.nofailover {
        return Err(SwitchoverError::Refused(format!(
            "{target} has the tag nofailover: Patroni will not promote it"
        )));
    }
    let Some(leader) = cluster.host(&old) else {
        return Err(SwitchoverError::Refused(format!(
            "the leader {old} is not in the inventory"
        )));
    };
    let url = format!("http://{}:{}/switchover", leader.address, p.restapi_port);
    let body = serde_json::json!({"leader": old, "candidate": target}).to_string();
    let post = RemoteCommand::new([
        "python3".to_owned(),
        "-c".to_owned(),
        "import sys, urllib.request, urllib.error\nreq = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method='POST', headers={'Content-Type': 'application/json'})\ntry:\n    r = urllib.request.urlopen(req, timeout=60)\n    print(r.status, r.read().decode())\nexcept urllib.error.HTTPError as e:\n    print(e.code, e.read().decode())\n    sys.exit(1)\n".to_owned(),
        url,
        body,
    ]);
    let started = Instant::now();
    let old_t = &session.transports[&old];
    run_ok(old_t, &post, "Patroni switchover").await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut write_gap = None;
    loop {
        session.refresh_all().await?;
        let leads = session
            .facts
            .get(target)
            .and_then(|f| f.patroni.as_ref())
            .is_some_and(|pf| pf.is_leader());
        if leads && write_gap.is_none() {
            write_gap = Some(started.elapsed());
        }
        let old_follows = session
            .facts
            .get(&old)
            .and_then(|f| f.patroni.as_ref())
            .is_some_and(|pf| pf.state == "running" && !pf.is_leader());
        if leads && old_follows {
            break;
        }
        if Instant::now() > deadline {
            return Err(SwitchoverError::Refused(format!(
                "{target} did not take over from {old} within 60 s; see `pgha status`"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(Report {
        old_primary: old,
        new_primary: target.to_owned(),
        write_gap: write_gap.unwrap_or_default(),
        failed_hosts: Vec::new(),
    })
}
