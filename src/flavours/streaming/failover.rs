//! The streaming flavour's failover, for when the primary is gone: the standby chosen
//! (`flavours::failover::choose`), the old primary fenced where its host still answers,
//! then promoted with pg_promote. The caller converges the others onto the new
//! primary; the old one rejoins later through `plan` (a rewind, never a silent wipe).

use std::time::Duration;

// tokio's clock, so tests can run these waits on a paused one.
use tokio::time::Instant;

use crate::flavours::failover::fence;
use crate::flavours::{run_ok, ClusterView, Failover, Handover, ProcedureError};
use crate::transport::RemoteCommand;

/// Fence the old primary where it answers, then promote.
pub async fn failover(
    view: &ClusterView<'_>,
    choice: &Failover,
) -> Result<Handover, ProcedureError> {
    let pg = &view.cluster.postgres;
    let started = Instant::now();
    fence(view, choice).await?;
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
    run_ok(
        target,
        &RemoteCommand::sql(pg.port, "postgres", "CHECKPOINT;\n"),
        "checkpoint after the promotion",
    )
    .await?;
    Ok(Handover {
        write_gap: gap,
        converge: true,
    })
}
