//! `pgha plan`: read the hosts, show what apply would do. Never writes to a host.

use std::path::PathBuf;

use clap::Args;

use crate::cli::{runtime, CliError, SourceArgs};
use crate::exit::ExitStatus;
use crate::views;

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Exit 2 when there are changes (0 none, 1 error): for drift detection in CI.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Print the plan as JSON (the same data the human view shows).
    #[arg(long)]
    pub json: bool,
    /// Save the plan to apply later with `pgha apply PLANFILE`.
    #[arg(long, value_name = "PLANFILE")]
    pub out: Option<PathBuf>,
    /// Only these hosts (comma separated or repeated).
    #[arg(short, long, value_delimiter = ',')]
    pub limit: Vec<String>,
}

pub fn run(args: &PlanArgs, verbose: u8) -> Result<ExitStatus, CliError> {
    runtime()?.block_on(async {
        let mut session = args
            .source
            .open_to_change(&args.source.reach(&args.limit))
            .await?;
        session.survey_leaving().await;
        let plan = session.plan().map_err(CliError::new);
        session.close().await;
        let plan = plan?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&plan).map_err(CliError::new)?
            );
        } else {
            print!("{}", views::plan::human(&plan, verbose));
        }
        if let Some(path) = &args.out {
            let json = serde_json::to_string_pretty(&plan).map_err(CliError::new)?;
            std::fs::write(path, json)
                .map_err(|e| CliError(format!("cannot write {}: {e}", path.display())))?;
            eprintln!(
                "Saved the plan to {}. Apply exactly this with: pgha apply -i {} {}",
                path.display(),
                args.source.inventory.display(),
                path.display()
            );
        }
        if !plan.refusals().is_empty() || !plan.unreachable.is_empty() {
            return Ok(ExitStatus::Failure);
        }
        Ok(if args.detailed_exitcode && plan.change_count() > 0 {
            ExitStatus::ChangesPending
        } else {
            ExitStatus::Success
        })
    })
}
