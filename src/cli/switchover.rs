//! `pgha switchover --to NODE`: hand the primary role to a standby without losing a commit.

use std::time::Duration;

use clap::Args;

use crate::apply::{handover, lock};
use crate::cli::{runtime, CliError, SourceArgs};
use crate::exit::ExitStatus;
use crate::session::Session;
use crate::views;

#[derive(Args, Debug)]
pub struct SwitchoverArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The standby that becomes the primary.
    #[arg(long, value_name = "NODE")]
    pub to: String,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub auto_approve: bool,
}

pub fn run(args: &SwitchoverArgs) -> Result<ExitStatus, CliError> {
    runtime()?.block_on(async {
        let mut session = args.source.open(&args.source.reach(&[])).await?;
        let result = go(&mut session, args).await;
        session.close().await;
        result
    })
}

async fn go(session: &mut Session, args: &SwitchoverArgs) -> Result<ExitStatus, CliError> {
    let (topology, _) = session.topology().map_err(CliError::new)?;
    if !args.auto_approve {
        crate::cli::apply::confirm(&format!(
            "Switch over from {} to {}?",
            topology.primary, args.to
        ))?;
    }
    let id = crate::plan::build::new_id();
    let info = lock::LockInfo::new(&id, "switchover");
    lock::take_all(
        &session.transports,
        &info,
        &args.source.inventory.display().to_string(),
    )
    .await
    .map_err(CliError::new)?;
    let report = handover::switchover(
        session,
        &args.to,
        crate::views::progress::observer(session.transports.keys()).as_ref(),
    )
    .await;
    lock::release_all(&session.transports, &id).await;
    let report = report.map_err(CliError::new)?;
    println!(
        "Switched over from {} to {}: writes were refused for {:.1} s.",
        report.old_primary,
        report.new_primary,
        report.write_gap.as_secs_f64()
    );
    if !report.failed_hosts.is_empty() {
        return Err(CliError(format!(
            "converging after the switchover failed: {}",
            report.failed_hosts.join("; ")
        )));
    }
    let (topology, _) = session.topology().map_err(CliError::new)?;
    let results = crate::verify::run(session, &topology, Duration::from_secs(30)).await;
    print!("{}", views::verify::table(&results));
    if results.is_empty() || results.iter().any(|r| !r.ok) {
        return Err(CliError("verify failed after the switchover".into()));
    }
    Ok(ExitStatus::Success)
}
