//! `pgha facts`: what pgha reads on every host, as JSON or as the facts script printed it.
//! Secrets never show: files that hold one and password verifiers are withheld.

use std::collections::BTreeSet;

use clap::Args;

use crate::cli::{runtime, CliError, SourceArgs};
use crate::exit::ExitStatus;
use crate::facts::{collect, gather};
use crate::steps::file::File;

#[derive(Args, Debug)]
pub struct FactsArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Only these hosts (comma separated or repeated).
    #[arg(short, long, value_delimiter = ',')]
    pub limit: Vec<String>,
    /// The facts script's output as the parser reads it, each host's after a line `=== HOST`.
    #[arg(long)]
    pub raw: bool,
}

pub fn run(args: &FactsArgs) -> Result<ExitStatus, CliError> {
    runtime()?.block_on(async {
        let session = args.source.open(&args.source.reach(&args.limit)).await?;
        // The managed files whose content holds a secret, on any host.
        let secret_files: BTreeSet<String> = match session.project.expand_declared() {
            Ok(hosts) => hosts
                .values()
                .flatten()
                .filter_map(|s| s.module.downcast::<File>())
                .filter(|f| f.content.has_secrets())
                .map(|f| f.dest.clone())
                .collect(),
            Err(e) => {
                session.close().await;
                return Err(CliError::new(e));
            }
        };
        let wanted = |h: &String| args.limit.is_empty() || args.limit.contains(h);
        let mut errors: Vec<String> = session
            .unreachable
            .iter()
            .filter(|(h, _)| wanted(h))
            .map(|(h, why)| format!("{h}: unreachable: {why}"))
            .collect();
        if args.raw {
            // The script again, for its very output (the session keeps only what it parsed).
            let hosts: Vec<&String> = session.transports.keys().filter(|h| wanted(h)).collect();
            let runs = hosts.iter().map(|host| async {
                let query = session.queries.get(*host).cloned().unwrap_or_default();
                let raw = collect::gather_raw(session.transports[*host].as_ref(), &query).await;
                raw.map(|r| session.secrets.mask(&gather::scrub(&r, &secret_files)))
            });
            let outputs = futures::future::join_all(runs).await;
            for (host, out) in hosts.iter().zip(outputs) {
                match out {
                    Ok(text) => {
                        println!("=== {host}");
                        print!("{text}");
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
        } else {
            // What the session read when it opened: one round trip per host.
            let mut facts = session.facts.clone();
            facts.retain(|h, _| wanted(h));
            for f in facts.values_mut() {
                gather::scrub_facts(f, &secret_files);
            }
            let json = serde_json::to_string_pretty(&facts).map_err(CliError::new)?;
            println!("{}", session.secrets.mask(&json));
        }
        session.close().await;
        // What was read is printed; the hosts that were not are named after it.
        if !errors.is_empty() {
            return Err(CliError(errors.join("\n")));
        }
        Ok(ExitStatus::Success)
    })
}
