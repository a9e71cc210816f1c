//! `pgha apply [PLANFILE]`: plan (or load a saved plan and refuse it when stale), confirm, lock,
//! execute, verify.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use crate::apply::{self, lock};
use crate::cli::{interrupt, runtime, CliError, SourceArgs};
use crate::exit::ExitStatus;
use crate::model::Secrets;
use crate::plan::build::{digest, Plan};
use crate::plan::inputs::Inputs;
use crate::project::Project;
use crate::session::{check_limit, Session};
use crate::views;

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// A plan saved with `plan --out`: applied without asking, refused when the hosts moved on.
    pub planfile: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub auto_approve: bool,
    /// Only these hosts.
    #[arg(short, long, value_delimiter = ',')]
    pub limit: Vec<String>,
    /// Skip the verification at the end.
    #[arg(long)]
    pub no_verify: bool,
}

pub fn run(args: &ApplyArgs, verbose: u8) -> Result<ExitStatus, CliError> {
    let started = Instant::now();
    runtime()?.block_on(async {
        let guard = interrupt::install().map_err(CliError::new)?;
        let saved: Option<Plan> =
            match &args.planfile {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| CliError(format!("cannot read {}: {e}", path.display())))?;
                    Some(serde_json::from_str(&text).map_err(|e| {
                        CliError(format!("{} is not a pgha plan: {e}", path.display()))
                    })?)
                }
                None => None,
            };
        let mut session = match &saved {
            // The project checked against the plan is the one the session uses: the secrets
            // are resolved once (a `command` secret may ask someone).
            Some(plan) => {
                let (project, secrets) = exactly_as_planned(plan, &args.source, &args.limit)?;
                Session::connect(project, secrets, &args.source.reach(&args.limit))
                    .await
                    .map_err(CliError::new)?
            }
            None => {
                args.source
                    .open_to_change(&args.source.reach(&args.limit))
                    .await?
            }
        };
        session.survey_leaving().await;
        let result = apply_with(&mut session, args, saved, verbose, started, &guard).await;
        session.close().await;
        result
    })
}

/// A saved plan is applied exactly or not at all: the inventory, playbook, templates and
/// secrets must be what it was made from. Checked before any host is contacted; the loaded
/// project and its secrets are what the session then uses.
fn exactly_as_planned(
    plan: &Plan,
    source: &SourceArgs,
    limit: &[String],
) -> Result<(Project, Secrets), CliError> {
    let Some(pinned) = &plan.inputs else {
        return Err(CliError(format!(
            "the saved plan {} does not record what it was made from (an older pgha made it): run `pgha plan --out` again",
            plan.id
        )));
    };
    let project = Project::load(
        &source.inventory,
        source.playbooks.as_deref(),
        source.templates.as_deref(),
    )
    .map_err(CliError::new)?;
    check_limit(&project, limit).map_err(CliError::new)?;
    let secrets = project.resolve_secrets().map_err(CliError::new)?;
    let changed = pinned.changes_since(&Inputs::of(&project, &secrets, &pinned.salt));
    if changed.is_empty() {
        return Ok((project, secrets));
    }
    Err(CliError(format!(
        "the saved plan {} was made from other input: {} changed since. Nothing was applied; run `pgha plan --out` again",
        plan.id,
        changed.join("; ")
    )))
}

async fn apply_with(
    session: &mut Session,
    args: &ApplyArgs,
    saved: Option<Plan>,
    verbose: u8,
    started: Instant,
    guard: &interrupt::Guard,
) -> Result<ExitStatus, CliError> {
    let plan = match saved {
        Some(plan) if !session.unreachable.is_empty() => {
            return Err(not_reached(&session.unreachable, &plan.id));
        }
        Some(plan) => {
            let stale: Vec<String> = plan
                .digests
                .iter()
                .filter(|(h, d)| {
                    let flavour = session.project.flavour.as_ref();
                    session.facts.get(*h).map(|f| digest(flavour, f)).as_ref() != Some(*d)
                })
                .map(|(h, _)| h.clone())
                .collect();
            let mut stale = stale;
            stale.extend(leaving_moved_on(session, &plan));
            if !stale.is_empty() || plan.cluster != session.project.cluster.name {
                return Err(CliError(format!(
                    "the saved plan {} is stale: {} changed since it was made. Run `pgha plan` again",
                    plan.id,
                    if stale.is_empty() { "the cluster".to_owned() } else { stale.join(", ") }
                )));
            }
            plan
        }
        None => session.plan().map_err(CliError::new)?,
    };
    print!("{}", views::plan::human(&plan, verbose));
    if !session.unreachable.is_empty() {
        return Err(not_reached(&session.unreachable, &plan.id));
    }
    if !plan.refusals().is_empty() {
        return Err(CliError(
            "refused steps in the plan: nothing was applied".into(),
        ));
    }
    if plan.change_count() == 0 {
        println!("Nothing to apply.");
        return verify_at_end(session, args).await;
    }
    if args.planfile.is_none() && !args.auto_approve {
        confirm(&format!("Apply these {} changes?", plan.change_count()))?;
    }
    let info = lock::LockInfo::new(&plan.id, "apply");
    let inventory = args.source.inventory.display().to_string();
    // The hint is ready before the lock exists: a signal may come while it is taken.
    guard.holding_lock(format!("pgha force-unlock {} -i {inventory}", plan.id));
    if let Err(e) = lock::take_all(&session.transports, &info, &inventory).await {
        guard.released();
        return Err(CliError::new(e));
    }
    let observer = crate::views::progress::observer(
        session
            .transports
            .keys()
            .chain(session.leaving_transports.keys()),
    );
    // Leaving hosts first: what the staying hosts forget must not come back from them.
    let leaving = apply::departing::run(session, observer.as_ref(), &guard.stop).await;
    // The rolling minor upgrade first, one host at a time; the steps then run with the
    // topology it leaves (it may have moved the primary role).
    let mut topology = plan.topology.clone();
    let mut upgrade_changes = 0;
    if plan.upgrade.is_some() {
        let upgraded = apply::upgrade::run(session, observer.as_ref(), &guard.stop).await;
        match upgraded {
            Ok(report) => {
                upgrade_changes = report.hosts.len() + usize::from(report.switchover.is_some());
                if let Some((from, to, gap)) = &report.switchover {
                    println!(
                        "Minor upgrade: switched over from {from} to {to} (writes paused {:.1} s).",
                        gap.as_secs_f64()
                    );
                }
                println!(
                    "Minor upgrade: {} host{} done{}.",
                    report.hosts.len(),
                    if report.hosts.len() == 1 { "" } else { "s" },
                    if report.stopped {
                        " before the stop"
                    } else {
                        ""
                    }
                );
                match session.topology() {
                    Ok((t, _)) => topology = t,
                    Err(e) => {
                        lock::release_all(&session.transports, &plan.id).await;
                        guard.released();
                        return Err(CliError::new(e));
                    }
                }
            }
            Err(e) => {
                lock::release_all(&session.transports, &plan.id).await;
                guard.released();
                return Err(CliError(format!(
                    "the rolling minor upgrade stopped: {e}. Fix the cause and run `pgha apply -i {}` again: it continues from where the hosts are",
                    args.source.inventory.display()
                )));
            }
        }
    }
    let recaps = apply::run(session, &topology, observer.as_ref(), &guard.stop)
        .await
        .map(|mut r| {
            r.extend(leaving);
            r
        });
    lock::release_all(&session.transports, &plan.id).await;
    guard.released();
    let recaps = recaps.map_err(CliError::new)?;
    println!("\nRecap:");
    let mut failed = false;
    let mut changed = upgrade_changes;
    let mut not_started = 0;
    for (host, r) in &recaps {
        changed += r.changed;
        not_started += r.not_started;
        let tail = match (&r.failed, r.not_started) {
            (Some(why), _) => {
                failed = true;
                format!("failed: {why}")
            }
            (None, 0) => "failed=0".to_owned(),
            (None, n) => format!("failed=0 not started={n}"),
        };
        println!("  {host}: ok={} changed={} {tail}", r.ok, r.changed);
    }
    if guard.stop.requested() {
        eprintln!(
            "Stopped by a signal after {changed} change{}; {not_started} step{} not started. The lock is released. Continue with:\n  pgha apply -i {}",
            if changed == 1 { "" } else { "s" },
            if not_started == 1 { " was" } else { "s were" },
            args.source.inventory.display()
        );
        return Ok(ExitStatus::Interrupted);
    }
    if failed {
        return Err(CliError(format!(
            "apply failed after {changed} changes; fix the cause and run `pgha apply -i {}` again: it continues from where the hosts are",
            args.source.inventory.display()
        )));
    }
    println!(
        "Applied {changed} change{} in {:.1} s.",
        if changed == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64()
    );
    verify_at_end(session, args).await
}

/// Leaving hosts whose state differs from the saved plan's: one that answers now and did not
/// then (or the other way round), or whose planned changes are not the ones it needs now.
fn leaving_moved_on(session: &Session, plan: &Plan) -> Vec<String> {
    session
        .leaving
        .iter()
        .filter(|(host, now)| match (now, plan.leaving.get(*host)) {
            (Ok(outcomes), Some(None)) => plan.hosts.get(*host) != Some(outcomes),
            (Err(_), Some(Some(_))) => false,
            _ => true,
        })
        .map(|(h, _)| h.clone())
        .collect()
}

/// Apply runs only on hosts it reached: a plan missing a host's steps is not the whole story.
fn not_reached(unreachable: &BTreeMap<String, String>, plan: &str) -> CliError {
    let names: Vec<String> = unreachable
        .iter()
        .map(|(h, why)| format!("{h} ({why})"))
        .collect();
    CliError(format!(
        "not reached: {}. Nothing of plan {plan} was applied. Bring {} back, or apply the others with -l",
        names.join(", "),
        if names.len() == 1 { "it" } else { "them" }
    ))
}

async fn verify_at_end(session: &mut Session, args: &ApplyArgs) -> Result<ExitStatus, CliError> {
    if args.no_verify || !args.limit.is_empty() {
        return Ok(ExitStatus::Success);
    }
    // Apply may have moved the leader (a switchover before a restart): verify what the
    // hosts say now, not what the plan saw.
    session.refresh_all().await;
    let (topology, _) = session.topology().map_err(CliError::new)?;
    let results = crate::verify::run(session, &topology, Duration::from_secs(30)).await;
    print!("{}", views::verify::table(&results));
    if results.is_empty() || results.iter().any(|r| !r.ok) {
        return Err(CliError("verify failed".into()));
    }
    Ok(ExitStatus::Success)
}

/// Ask on a terminal; without one, refuse (a script must say -y).
pub(crate) fn confirm(question: &str) -> Result<(), CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError(format!(
            "{question} needs confirmation: run it on a terminal, or pass -y / --auto-approve"
        )));
    }
    eprint!("{question} Only 'yes' is accepted: ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(CliError::new)?;
    if answer.trim() != "yes" {
        return Err(CliError("cancelled".into()));
    }
    Ok(())
}
