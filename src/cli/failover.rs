//! `pgha failover [--to NODE]`: the primary is gone; promote the standby that has received the
//! most WAL, fence the old primary where its host answers, re-point the others, verify.

use std::time::Duration;

use clap::Args;

use crate::apply::{handover, lock};
use crate::cli::{runtime, CliError, SourceArgs};
use crate::exit::ExitStatus;
use crate::session::Session;
use crate::views;

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
        let mut session = args.source.open(&args.source.reach(&[])).await?;
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
    let id = crate::plan::build::new_id();
    let info = lock::LockInfo::new(&id, "failover");
    lock::take_all(
        &session.transports,
        &info,
        &args.source.inventory.display().to_string(),
    )
    .await
    .map_err(CliError::new)?;
    let report = handover::failover(
        session,
        &choice,
        crate::views::progress::observer(session.transports.keys()).as_ref(),
    )
    .await;
    lock::release_all(&session.transports, &id).await;
    let report = report.map_err(CliError::new)?;
    println!(
        "Failed over from {} to {}: promoted in {:.1} s.",
        report.old_primary,
        report.new_primary,
        report.write_gap.as_secs_f64()
    );
    if !report.failed_hosts.is_empty() {
        return Err(CliError(format!(
            "converging after the failover failed: {}",
            report.failed_hosts.join("; ")
        )));
    }
    // The old primary is verified when it has rejoined; the rest now.
    let (topology, _) = session.topology().map_err(CliError::new)?;
    let old_slot = format!("slot {}", session.project.flavour.slot_name(&choice.old));
    let results: Vec<_> = crate::verify::run(session, &topology, Duration::from_secs(30))
        .await
        .into_iter()
        .filter(|r| {
            r.host != choice.old
                && !r.check.ends_with(&format!(" {}", choice.old))
                && r.check != old_slot
        })
        .collect();
    print!("{}", views::verify::table(&results));
    println!(
        "{} is left out until it rejoins: once it is back, `pgha plan` shows its rewind onto the new timeline and `pgha apply` does it.",
        choice.old
    );
    if results.is_empty() || results.iter().any(|r| !r.ok) {
        return Err(CliError("verify failed after the failover".into()));
    }
    Ok(ExitStatus::Success)
}
