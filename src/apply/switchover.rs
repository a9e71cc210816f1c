//! A planned switchover: the flavour hands the primary role over its own way (see
//! `flavours::*::switchover`); when it asks for it, the playbook then converges with the new
//! topology (standbys re-pointed, slots moved, the old primary started as a standby).

use std::time::Duration;

use crate::apply::{self, Observer};
use crate::flavours::ProcedureError;
use crate::session::{Session, SessionError};

#[derive(Debug, thiserror::Error)]
pub enum SwitchoverError {
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

pub async fn run(
    session: &mut Session,
    target: &str,
    observer: &dyn Observer,
) -> Result<Report, SwitchoverError> {
    let (topology, _) = session.topology()?;
    let old = topology.primary.clone();
    if session.project.cluster.host(target).is_none() {
        return Err(SwitchoverError::Refused(format!(
            "{target} is not a host of this inventory"
        )));
    }
    let flavour = session.project.flavour.clone();
    let handover = {
        let view = session.view(&topology);
        flavour.switchover(&view, target).await?
    };
    let mut failed_hosts = Vec::new();
    session.refresh_every().await?;
    if handover.converge {
        let (new_topology, _) = session.topology()?;
        let recaps = apply::run(session, &new_topology, observer, &apply::Stop::default()).await?;
        failed_hosts = recaps
            .iter()
            .filter(|(_, r)| r.failed.is_some())
            .map(|(h, r)| format!("{h}: {}", r.failed.clone().unwrap_or_default()))
            .collect();
    }
    Ok(Report {
        old_primary: old,
        new_primary: target.to_owned(),
        write_gap: handover.write_gap,
        failed_hosts,
    })
}
