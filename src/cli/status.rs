//! `pgha status`: who is primary, who streams from whom, how far behind.

use clap::Args;

use crate::cli::{runtime, CliError, SourceArgs};
use crate::exit::ExitStatus;
use crate::views;

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub source: SourceArgs,
}

pub fn run(args: &StatusArgs) -> Result<ExitStatus, CliError> {
    runtime()?.block_on(async {
        let session = args.source.open(&[]).await?;
        let topology = session.topology().map_err(CliError::new);
        let text = topology.map(|(t, notes)| {
            let mut text = views::status::table(
                &session.project.cluster,
                session.project.flavour.as_ref(),
                &session.project.components,
                &t,
                &session.facts,
            );
            for n in notes {
                text.push_str(&format!("note: {n}\n"));
            }
            text
        });
        session.close().await;
        print!("{}", text?);
        Ok(ExitStatus::Success)
    })
}
