//! Handing the primary role over: a planned switchover, or a failover when the primary is
//! gone. The flavour does the handover its own way (`flavours::*::switchover`, `failover`);
//! when it asks for it, the playbook then converges with the new topology (standbys
//! re-pointed, slots moved; after a switchover the old primary started as a standby, after a
//! failover the old primary left out: it rejoins through `plan`, which says what a rewind
//! discards).

use std::time::Duration;

use crate::apply::{self, Observer};
use crate::flavours::{Failover, Handover, ProcedureError};
use crate::session::{Session, SessionError};

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Procedure(#[from] ProcedureError),
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

/// Hand the primary role to `target` while the primary runs, then converge.
pub async fn switchover(
    session: &mut Session,
    target: &str,
    observer: &dyn Observer,
) -> Result<Report, HandoverError> {
    let (topology, _) = session.topology()?;
    let old = topology.primary.clone();
    if session.project.cluster.host(target).is_none() {
        return Err(HandoverError::Refused(format!(
            "{target} is not a host of this inventory"
        )));
    }
    let flavour = session.project.flavour.clone();
    let handover = {
        let view = session.view(&topology);
        flavour.switchover(&view, target).await?
    };
    session.refresh_every().await?;
    let failed_hosts = converge(session, &handover, None, observer).await?;
    Ok(Report {
        old_primary: old,
        new_primary: target.to_owned(),
        write_gap: handover.write_gap,
        failed_hosts,
    })
}

/// Promote `choice.target` in place of a primary that is gone, then converge the others.
pub async fn failover(
    session: &mut Session,
    choice: &Failover,
    observer: &dyn Observer,
) -> Result<Report, HandoverError> {
    let (topology, _) = session.topology()?;
    let flavour = session.project.flavour.clone();
    let handover = {
        let view = session.view(&topology);
        flavour.failover(&view, choice).await?
    };
    // The old primary may be down: read whoever answers.
    session.refresh_all().await;
    let failed_hosts = converge(session, &handover, Some(&choice.old), observer).await?;
    Ok(Report {
        old_primary: choice.old.clone(),
        new_primary: choice.target.clone(),
        write_gap: handover.write_gap,
        failed_hosts,
    })
}

/// Run the playbook with the topology the hosts now have, when the handover asks for it,
/// leaving out `left_out`. The hosts that failed, with why.
async fn converge(
    session: &mut Session,
    handover: &Handover,
    left_out: Option<&str>,
    observer: &dyn Observer,
) -> Result<Vec<String>, HandoverError> {
    if !handover.converge {
        return Ok(Vec::new());
    }
    let (topology, _) = session.topology()?;
    let everyone: Vec<String> = session
        .project
        .cluster
        .hosts
        .iter()
        .map(|h| h.name.clone())
        .filter(|h| Some(h.as_str()) != left_out && !session.unreachable.contains_key(h))
        .collect();
    let before = session.limit.replace(everyone);
    let recaps = apply::run(session, &topology, observer, &apply::Stop::default()).await;
    session.limit = before;
    Ok(recaps?
        .iter()
        .filter(|(_, r)| r.failed.is_some())
        .map(|(h, r)| format!("{h}: {}", r.failed.clone().unwrap_or_default()))
        .collect())
}
