//! `pgha drill failover`: crash the primary under a write load from this machine, measure
//! what the application saw, bring the cluster back with apply, verify. Exit 0 when the
//! drill passed, 3 when it ran and failed, 1 when it could not run (nothing was touched).

use std::io::IsTerminal;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::cli::{interrupt, runtime, CliError, SourceArgs};
use crate::drill::crash::Crash;
use crate::drill::route::{self, Via};
use crate::exit::ExitStatus;
use crate::project::Project;
use crate::views;

#[derive(Args, Debug)]
pub struct DrillArgs {
    #[command(subcommand)]
    pub command: DrillCommand,
}

#[derive(Subcommand, Debug)]
pub enum DrillCommand {
    /// Crash the primary under a write load; measure the gap, the time to route, the writes
    /// lost; bring the old primary back with apply; verify.
    Failover(FailoverDrillArgs),
}

#[derive(Args, Debug)]
pub struct FailoverDrillArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The way the writes reach the primary.
    #[arg(long, value_enum, default_value = "multihost")]
    pub via: Via,
    /// Seconds from the crash to the end of the drill (the wait for a new primary, the
    /// isolation).
    #[arg(long, value_name = "S", default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub duration: u64,
    /// How the primary goes down.
    #[arg(long, value_enum, default_value = "kill")]
    pub crash: Crash,
    /// The role that writes (one of the inventory's users, or postgres); by default the
    /// first user with a password.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// The database of the drill's table; by default the first the role owns, else postgres.
    #[arg(long, value_name = "DB")]
    pub database: Option<String>,
    /// Do not ask (otherwise the cluster's name must be typed on a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// The report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &DrillArgs) -> Result<ExitStatus, CliError> {
    match &args.command {
        DrillCommand::Failover(a) => failover(a),
    }
}

fn failover(args: &FailoverDrillArgs) -> Result<ExitStatus, CliError> {
    // The route and the consent come before any host is contacted.
    let project = Project::load(
        &args.source.inventory,
        args.source.playbooks.as_deref(),
        args.source.templates.as_deref(),
    )?;
    let route = route::route(&project, args.via).map_err(CliError::new)?;
    if !args.yes {
        confirm(&project.cluster.name)?;
    }
    drop(project);
    let options = crate::drill::Options {
        route,
        crash: args.crash,
        duration: Duration::from_secs(args.duration),
        user: args.user.clone(),
        database: args.database.clone(),
        lock_id: crate::plan::build::new_id(),
    };
    runtime()?.block_on(async {
        let guard = interrupt::install().map_err(CliError::new)?;
        let mut session = args.source.open_to_change(&args.source.reach(&[])).await?;
        // From here a first signal cuts the drill short (the crashed host is still brought
        // back); a second aborts at once and leaves the lock.
        guard.holding_lock(format!(
            "pgha force-unlock {} -i {}",
            options.lock_id,
            args.source.inventory.display()
        ));
        let started = std::time::Instant::now();
        let note = |text: &str| {
            eprintln!("[{:6.1}s] drill: {text}", started.elapsed().as_secs_f64());
        };
        let observer = views::progress::observer(session.transports.keys());
        // Measured against what the inventory declares (`objectives:`).
        let objectives =
            crate::drill::report::Objectives::declared(session.project.cluster.objectives.as_ref());
        let report = crate::drill::failover(
            &mut session,
            &options,
            objectives.as_ref(),
            observer.as_ref(),
            &note,
            &guard.stop,
        )
        .await;
        guard.released();
        let expected = session.project.expected_failover();
        session.close().await;
        let mut report = report.map_err(CliError::new)?;
        if let Some(e) = expected {
            report.expected_worst_case_s = Some(e.worst_case.as_secs_f64());
            report.expected_from = Some(if e.route_how.is_empty() {
                e.settings
            } else {
                format!("{}; {}", e.settings, e.route_how)
            });
        }
        if args.json {
            println!("{}", views::drill::json(&report));
        } else {
            print!("{}", views::drill::table(&report));
        }
        Ok(if guard.stop.requested() {
            ExitStatus::Interrupted
        } else if report.passed {
            ExitStatus::Success
        } else {
            ExitStatus::DrillFailed
        })
    })
}

/// The cluster's name typed on a terminal; without one, refuse (a script must say --yes).
fn confirm(cluster: &str) -> Result<(), CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError(format!(
            "a failover drill crashes the primary of cluster {cluster}: run it on a terminal and type the cluster's name, or pass --yes. Nothing was touched"
        )));
    }
    eprint!(
        "This crashes the primary of cluster {cluster} under a write load, then runs apply. Type the cluster's name to go on: "
    );
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(CliError::new)?;
    if answer.trim() != cluster {
        return Err(CliError("cancelled: nothing was touched".into()));
    }
    Ok(())
}
