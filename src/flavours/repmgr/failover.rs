//! `pgha failover` under repmgr, for when repmgrd will not promote: `failover: manual`, or
//! repmgrd paused or not running. While repmgrd watches with automatic failover, pgha
//! refuses: two promoters racing is how a cluster gets two primaries. The standby is chosen
//! as for every flavour (the most WAL received), the old primary fenced where its host
//! answers, and repmgr promotes it its own way (`standby promote --siblings-follow`: the
//! metadata updated, the other standbys and the witness following it over SSH).

use tokio::time::Instant;

use crate::flavours::failover::fence;
use crate::flavours::repmgr::probes::RepmgrFact;
use crate::flavours::repmgr::{command, Repmgr, CONFIG_FILE};
use crate::flavours::{run_ok, ClusterView, Failover, Handover, ProcedureError};

pub fn choose(
    r: &Repmgr,
    view: &ClusterView<'_>,
    to: Option<&str>,
) -> Result<Failover, ProcedureError> {
    if r.failover == "automatic" {
        let watching: Vec<&str> = view
            .cluster
            .hosts
            .iter()
            .filter(|h| h.role.has_postgres() && h.name != view.topology.primary)
            .filter(|h| {
                view.facts
                    .get(&h.name)
                    .and_then(RepmgrFact::of)
                    .is_some_and(|f| f.repmgrd == Some(true) && f.paused != Some(true))
            })
            .map(|h| h.name.as_str())
            .collect();
        if !watching.is_empty() {
            return Err(ProcedureError::Refused(format!(
                "repmgrd watches the primary on {} and promotes on its own (failover: automatic, a dead primary is declared after about {} s): \
                 wait for it and run `pgha status`. To promote by hand, pause it first (`repmgr service pause`, as postgres on any node) \
                 or set `repmgr.failover: manual`",
                watching.join(", "),
                r.detection_seconds()
            )));
        }
    }
    crate::flavours::failover::choose(view, to)
}

pub async fn failover(
    view: &ClusterView<'_>,
    choice: &Failover,
) -> Result<Handover, ProcedureError> {
    let started = Instant::now();
    fence(view, choice).await?;
    let bin_dir = view.cluster.postgres.bin_dir();
    run_ok(
        view.transport(&choice.target)?,
        &command::repmgr(
            &bin_dir,
            CONFIG_FILE,
            &[
                "standby",
                "promote",
                "--siblings-follow",
                "--log-level=INFO",
            ],
        ),
        "repmgr standby promote",
    )
    .await?;
    Ok(Handover {
        write_gap: started.elapsed(),
        converge: true,
    })
}
