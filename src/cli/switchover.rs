//! `pgha switchover --to NODE`: hand the primary role to a standby without losing a commit.

use clap::Args;

use crate::apply::handover as apply_handover;
use crate::cli::{handover, runtime, CliError, SourceArgs};
use crate::exit::ExitStatus;
use crate::session::Session;

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
        let mut session = args.source.open_to_change(&args.source.reach(&[])).await?;
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
    let id = handover::lock(session, &args.source, "switchover").await?;
    let report = apply_handover::switchover(
        session,
        &args.to,
        crate::views::progress::observer(session.transports.keys()).as_ref(),
    )
    .await;
    handover::finish(
        session,
        &id,
        report,
        "switchover",
        |r| {
            format!(
                "Switched over from {} to {}: writes were refused for {:.1} s.",
                r.old_primary,
                r.new_primary,
                r.write_gap.as_secs_f64()
            )
        },
        |_| true,
    )
    .await
}
