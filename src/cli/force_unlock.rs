//! `pgha force-unlock ID`: remove a lock left by an apply that died.

use clap::Args;

use crate::apply::lock;
use crate::cli::{runtime, CliError, SourceArgs};
use crate::exit::ExitStatus;
use crate::facts::collect;

#[derive(Args, Debug)]
pub struct ForceUnlockArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The lock's id, as the refused command printed it.
    pub id: String,
}

pub fn run(args: &ForceUnlockArgs) -> Result<ExitStatus, CliError> {
    runtime()?.block_on(async {
        let project = crate::project::Project::load(
            &args.source.inventory,
            args.source.playbooks.as_deref(),
            args.source.templates.as_deref(),
        )
        .map_err(CliError::new)?;
        let hosts: Vec<&crate::model::Host> = project.cluster.hosts.iter().collect();
        let (transports, unreachable) = collect::connect(
            &hosts,
            &crate::model::Secrets::default(),
            usize::from(args.source.forks),
        )
        .await;
        let released = lock::release_all(&transports, &args.id).await;
        for (_, t) in transports {
            t.close().await;
        }
        if !released.is_empty() {
            println!("Released lock {} on {}.", args.id, released.join(", "));
        }
        // A host down keeps its copy of the lock until it is back and this runs again.
        let not_reached: Vec<String> = unreachable
            .iter()
            .map(|(h, why)| format!("{h}: unreachable: {why}"))
            .collect();
        match (released.is_empty(), not_reached.is_empty()) {
            (_, false) => Err(CliError(format!(
                "{}\nthe lock stays on the hosts not reached: run this again once they are back",
                not_reached.join("\n")
            ))),
            (true, true) => Err(CliError(format!("no host holds lock {}", args.id))),
            (false, true) => Ok(ExitStatus::Success),
        }
    })
}
