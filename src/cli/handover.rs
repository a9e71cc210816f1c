//! What `switchover` and `failover` share: the lock around the handover, and the proof after
//! it.

use std::time::Duration;

use crate::apply::handover::{HandoverError, Report};
use crate::apply::lock;
use crate::cli::{CliError, SourceArgs};
use crate::exit::ExitStatus;
use crate::session::Session;
use crate::verify::CheckResult;
use crate::views;

/// Take the cluster lock on every host reached for `operation`; its id.
pub async fn lock(
    session: &Session,
    source: &SourceArgs,
    operation: &str,
) -> Result<String, CliError> {
    let id = crate::plan::build::new_id();
    let info = lock::LockInfo::new(&id, operation);
    lock::take_all(
        &session.transports,
        &info,
        &source.inventory.display().to_string(),
    )
    .await
    .map_err(CliError::new)?;
    Ok(id)
}

/// Release the lock, then: the handover's failure, or converging's, or the verify table of
/// the rows `keep` accepts (a failed row fails the command).
pub async fn finish(
    session: &mut Session,
    id: &str,
    report: Result<Report, HandoverError>,
    operation: &str,
    done: impl Fn(&Report) -> String,
    keep: impl Fn(&CheckResult) -> bool,
) -> Result<ExitStatus, CliError> {
    lock::release_all(&session.transports, id).await;
    let report = report.map_err(CliError::new)?;
    println!("{}", done(&report));
    if !report.failed_hosts.is_empty() {
        return Err(CliError(format!(
            "converging after the {operation} failed: {}",
            report.failed_hosts.join("; ")
        )));
    }
    let (topology, _) = session.topology().map_err(CliError::new)?;
    let results: Vec<CheckResult> = crate::verify::run(session, &topology, Duration::from_secs(30))
        .await
        .into_iter()
        .filter(|r| keep(r))
        .collect();
    print!("{}", views::verify::table(&results));
    if results.is_empty() || results.iter().any(|r| !r.ok) {
        return Err(CliError(format!("verify failed after the {operation}")));
    }
    Ok(ExitStatus::Success)
}
