//! `pgha verify`: prove the cluster works.

use std::time::Duration;

use clap::Args;

use crate::cli::{runtime, CliError, SourceArgs};
use crate::exit::ExitStatus;
use crate::views;

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Seconds the marker row may take to reach every standby.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// The checks as JSON, for scripts and monitoring (the exit status is the same).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &VerifyArgs) -> Result<ExitStatus, CliError> {
    runtime()?.block_on(async {
        let mut session = args.source.open(&args.source.reach(&[])).await?;
        let topology = session.topology().map_err(CliError::new);
        let results = match topology {
            Ok((t, _)) => {
                Ok(crate::verify::run(&mut session, &t, Duration::from_secs(args.timeout)).await)
            }
            Err(e) => Err(e),
        };
        session.close().await;
        let results = results?;
        if args.json {
            println!("{}", views::verify::json(&results));
        } else {
            print!("{}", views::verify::table(&results));
        }
        if results.is_empty() || results.iter().any(|r| !r.ok) {
            return Err(CliError("verify failed".into()));
        }
        Ok(ExitStatus::Success)
    })
}
