//! `pgha status`: who is primary, who streams from whom, how far behind.

use clap::Args;

use crate::cli::{runtime, CliError, SourceArgs};
use crate::exit::ExitStatus;
use crate::views;

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The same as JSON, for scripts and monitoring.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &StatusArgs) -> Result<ExitStatus, CliError> {
    runtime()?.block_on(async {
        let session = args.source.open(&args.source.reach(&[])).await?;
        let topology = session.topology().map_err(CliError::new);
        let status = topology.map(|(t, notes)| {
            let mut status = views::status::status(
                &session.view(&t),
                session.project.flavour.as_ref(),
                &session.project.components,
            );
            status.notes = notes;
            status
        });
        session.close().await;
        let status = status?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&status).map_err(CliError::new)?
            );
        } else {
            print!("{}", views::status::table(&status));
        }
        // Every member is shown first; a host not reached makes the exit status say so.
        if status.members.iter().any(|m| m.unreachable.is_some()) {
            return Ok(ExitStatus::Failure);
        }
        Ok(ExitStatus::Success)
    })
}
