//! `pgha failover [--to NODE]`: the primary is gone; promote the standby that has received the
//! most WAL, fence the old primary where its host answers, re-point the others, verify.

use clap::Args;

use crate::apply::handover as apply_handover;
use crate::cli::{handover, runtime, CliError, SourceArgs};
use crate::exit::ExitStatus;
use crate::session::Session;

#[derive(Args, Debug)]
pub struct FailoverArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The standby to promote; refused when another reachable standby has received more.
    #[arg(long, value_name = "NODE")]
    pub to: Option<String>,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub auto_approve: bool,
}

pub fn run(args: &FailoverArgs) -> Result<ExitStatus, CliError> {
    runtime()?.block_on(async {
        let mut session = args.source.open_to_change(&args.source.reach(&[])).await?;
        let result = go(&mut session, args).await;
        session.close().await;
        result
    })
}

async fn go(session: &mut Session, args: &FailoverArgs) -> Result<ExitStatus, CliError> {
    if let Some(to) = &args.to {
        if session.project.cluster.host(to).is_none() {
            return Err(CliError(format!(
                "--to {to}: no host of the inventory has that name"
            )));
        }
    }
    let (topology, _) = session.topology().map_err(CliError::new)?;
    let choice = session
        .project
        .flavour
        .failover_choice(&session.view(&topology), args.to.as_deref())
        .map_err(CliError::new)?;
    println!(
        "Failover: promote {} (received WAL up to {}) in place of {}, which {}.",
        choice.target,
        choice.received,
        choice.old,
        if choice.fence {
            "answers but runs no primary: it is stopped and kept from starting"
        } else {
            "was not reached: if it comes back as a primary, `pgha plan` shows its rejoin"
        }
    );
    for note in &choice.notes {
        println!("note: {note}");
    }
    if !args.auto_approve {
        crate::cli::apply::confirm(&format!(
            "Fail over from {} to {}?",
            choice.old, choice.target
        ))?;
    }
    let id = handover::lock(session, &args.source, "failover").await?;
    let report = apply_handover::failover(
        session,
        &choice,
        crate::views::progress::observer(session.transports.keys()).as_ref(),
    )
    .await;
    // The old primary is verified once it has rejoined; the rest now.
    let old = choice.old.clone();
    let old_slot = format!("slot {}", session.project.flavour.slot_name(&old));
    let result = handover::finish(
        session,
        &id,
        report,
        "failover",
        |r| {
            format!(
                "Failed over from {} to {}: promoted in {:.1} s.",
                r.old_primary,
                r.new_primary,
                r.write_gap.as_secs_f64()
            )
        },
        |r| r.host != old && !r.check.ends_with(&format!(" {old}")) && r.check != old_slot,
    )
    .await;
    println!(
        "{old} is left out until it rejoins: once it is back, `pgha plan` shows its rewind onto the new timeline and `pgha apply` does it."
    );
    result
}
