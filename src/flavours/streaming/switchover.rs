//! The streaming flavour's planned switchover: no committed transaction lost, the old primary
//! able to follow without a rewind.

use std::time::Duration;

// tokio's clock, so tests can run these waits on a paused one.
use tokio::time::Instant;

use crate::flavours::{run_ok, ClusterView, Handover, ProcedureError};
use crate::transport::RemoteCommand;

/// A planned switchover done so that no committed transaction is lost and the old primary can
/// follow without a rewind:
///
/// 1. CHECKPOINT on the old primary (a short shutdown), then stop it cleanly: its WAL senders
///    ship everything, up to the shutdown checkpoint, before it exits.
/// 2. Wait until the target has replayed past that shutdown checkpoint.
/// 3. Mark the old primary as a standby (`standby.signal`) before anything can start it.
/// 4. Promote the target.
/// 5. The caller converges with the new topology (the playbook re-points every standby, makes
///    the slots on the new primary, drops abandoned ones, starts the old primary as a
///    standby), then verifies.
///
/// If the target does not catch up in time, the old primary is started again unchanged.
pub async fn switchover(view: &ClusterView<'_>, target: &str) -> Result<Handover, ProcedureError> {
    let topology = view.topology;
    let old = topology.primary.clone();
    if target == old {
        return Err(ProcedureError::Refused(format!(
            "{target} is already the primary"
        )));
    }
    if topology.upstream.get(target) != Some(&old) {
        return Err(ProcedureError::Refused(format!(
            "{target} streams from {}, not from the primary {old}: switch over to a direct standby",
            topology
                .upstream
                .get(target)
                .map(String::as_str)
                .unwrap_or("nothing")
        )));
    }
    if !view.is_streaming(target) {
        return Err(ProcedureError::Refused(format!(
            "{target} is not streaming from {old}: it could not catch up; run `pgha verify` first"
        )));
    }
    let pg = &view.cluster.postgres;
    let service = format!("postgresql@{}-{}", pg.version, pg.debian_cluster);
    let data = pg.data_dir.clone();
    let port = pg.port;
    let controldata = format!("{}/pg_controldata", pg.bin_dir());
    let old_t = view.transport(&old)?;
    let new_t = view.transport(target)?;

    // While nothing has changed yet: a failure here leaves the cluster as it was.
    super::failover::reserve_slots(view, &old, target).await?;
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
            return Err(ProcedureError::Refused(format!(
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
        return Err(ProcedureError::Step {
            host: target.to_owned(),
            what: "promote".into(),
            reason: format!("pg_promote returned {promoted}"),
        });
    }
    // The new timeline reaches the control file only at a checkpoint: a backup taken at once
    // (pgBackRest compares it with the WAL's timeline) or a pg_rewind of the old primary
    // would otherwise see the old one. Writes go on meanwhile: not part of the write gap.
    let write_gap = stopped_at.elapsed();
    super::failover::checkpoint_new_timeline(new_t, port).await?;
    Ok(Handover {
        write_gap,
        converge: true,
    })
}
