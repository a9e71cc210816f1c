//! `pgha facts`: what pgha reads on every host, as JSON or as the facts script printed it.
//! Secrets never show: files that hold one and password verifiers are withheld.

use std::collections::{BTreeMap, BTreeSet};

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
        let hosts: Vec<&String> = session
            .transports
            .keys()
            .filter(|h| args.limit.is_empty() || args.limit.contains(h))
            .collect();
        // The script again, for its very output (the session keeps only what it parsed).
        let runs = hosts.iter().map(|host| async {
            let query = session.queries.get(*host).cloned().unwrap_or_default();
            let raw = collect::gather_raw(session.transports[*host].as_ref(), &query).await;
            raw.map(|r| session.secrets.mask(&gather::scrub(&r, &secret_files)))
        });
        let outputs = futures::future::join_all(runs).await;
        let mut texts = BTreeMap::new();
        let mut errors: Vec<String> = session
            .unreachable
            .iter()
            .filter(|(h, _)| args.limit.is_empty() || args.limit.contains(h))
            .map(|(h, why)| format!("{h}: unreachable: {why}"))
            .collect();
        for (host, out) in hosts.iter().zip(outputs) {
            match out {
                Ok(text) => {
                    texts.insert((*host).clone(), text);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        session.close().await;
        if args.raw {
            for (host, text) in &texts {
                println!("=== {host}");
                print!("{text}");
            }
        } else {
            let mut facts = BTreeMap::new();
            for (host, text) in &texts {
                facts.insert(
                    host.as_str(),
                    gather::parse(host, text).map_err(CliError::new)?,
                );
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&facts).map_err(CliError::new)?
            );
        }
        // What was read is printed; the hosts that were not are named after it.
        if !errors.is_empty() {
            return Err(CliError(errors.join("\n")));
        }
        Ok(ExitStatus::Success)
    })
}
