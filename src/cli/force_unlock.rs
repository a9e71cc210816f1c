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
        let transports = collect::connect_all(&project.cluster, &crate::model::Secrets::default())
            .await
            .map_err(CliError::new)?;
        let released = lock::release_all(&transports, &args.id).await;
        for (_, t) in transports {
            t.close().await;
        }
        if released.is_empty() {
            return Err(CliError(format!("no host holds lock {}", args.id)));
        }
        println!("Released lock {} on {}.", args.id, released.join(", "));
        Ok(ExitStatus::Success)
    })
}
