//! The streaming flavour's failover, for when the primary is gone: the standby chosen
//! (`flavours::failover::choose`), the old primary fenced where its host still answers,
//! then promoted with pg_promote. The caller converges the others onto the new
//! primary; the old one rejoins later through `plan` (a rewind, never a silent wipe).

use std::time::Duration;

// tokio's clock, so tests can run these waits on a paused one.
use tokio::time::Instant;

use crate::flavours::failover::fence;
use crate::flavours::streaming::Streaming;
use crate::flavours::Flavour;
use crate::flavours::{run_ok, ClusterView, Failover, Handover, ProcedureError};
use crate::steps::sql;
use crate::transport::{RemoteCommand, Transport};

/// Slots on `target`, before it is promoted, for the hosts that will stream from it: the old
/// primary and the standbys that streamed from it. Made on the standby they reserve WAL from
/// its replay position on, so nothing a follower still needs is removed between the
/// promotion and the apply that re-points the followers (a checkpoint or a backup's WAL
/// switch there recycled the segment a follower asked for next). Existing ones are kept.
pub(super) async fn reserve_slots(
    view: &ClusterView<'_>,
    old: &str,
    target: &str,
) -> Result<(), ProcedureError> {
    let cluster = view.cluster;
    if !cluster.replication.slots {
        return Ok(());
    }
    let names: Vec<String> = cluster
        .hosts
        .iter()
        .filter(|h| h.role.has_postgres() && h.name != target)
        .filter(|h| {
            h.name == old || view.topology.upstream.get(&h.name).map(String::as_str) == Some(old)
        })
        .map(|h| sql::literal(&Streaming.slot_name(&h.name)))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let query = format!(
        "SELECT count(pg_create_physical_replication_slot(s, true)) FROM unnest(ARRAY[{}]::text[]) s WHERE s NOT IN (SELECT slot_name FROM pg_replication_slots);\n",
        names.join(", ")
    );
    run_ok(
        view.transport(target)?,
        &RemoteCommand::sql(cluster.postgres.port, "postgres", &query),
        "reserve the followers' slots",
    )
    .await
    .map(|_| ())
}

/// A checkpoint on a just promoted server: only a checkpoint writes the new timeline into
/// the control file, where pg_rewind of the old primary and a backup tool (pgBackRest
/// compares it with the WAL's) read it.
pub(super) async fn checkpoint_new_timeline(
    promoted: &dyn Transport,
    port: u16,
) -> Result<(), ProcedureError> {
    run_ok(
        promoted,
        &RemoteCommand::sql(port, "postgres", "CHECKPOINT;\n"),
        "checkpoint after the promotion",
    )
    .await
    .map(|_| ())
}

/// Fence the old primary where it answers, then promote.
pub async fn failover(
    view: &ClusterView<'_>,
    choice: &Failover,
) -> Result<Handover, ProcedureError> {
    let pg = &view.cluster.postgres;
    let started = Instant::now();
    fence(view, choice).await?;
    // The promotion matters more than the slots: without them the apply after makes them.
    let _ = reserve_slots(view, &choice.old, &choice.target).await;
    let target = view.transport(&choice.target)?;
    let promoted = run_ok(
        target,
        &RemoteCommand::sql(pg.port, "postgres", "SELECT pg_promote(true, 60);\n"),
        "promote",
    )
    .await?;
    if promoted != "t" {
        return Err(ProcedureError::Step {
            host: choice.target.clone(),
            what: "promote".into(),
            reason: format!("pg_promote returned {promoted}"),
        });
    }
    // Writable once it answers as a primary.
    let writable = RemoteCommand::sql(pg.port, "postgres", "SELECT NOT pg_is_in_recovery();\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    while run_ok(target, &writable, "check the promotion")
        .await
        .ok()
        .as_deref()
        != Some("t")
    {
        if Instant::now() > deadline {
            return Err(ProcedureError::Step {
                host: choice.target.clone(),
                what: "promote".into(),
                reason: "still in recovery 30 s after pg_promote".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The new timeline reaches the control file only at a checkpoint: pg_rewind of the old
    // primary, which reads it there, would otherwise see one timeline and rewind nothing.
    // Writes go on meanwhile; measured as part of the handover, not of the write gap.
    let gap = started.elapsed();
    checkpoint_new_timeline(target, pg.port).await?;
    Ok(Handover {
        write_gap: gap,
        converge: true,
    })
}
