//! `pgha validate`: everything that can be checked without a host.

use clap::Args;

use crate::cli::{CliError, SourceArgs};
use crate::exit::ExitStatus;
use crate::model::Topology;
use crate::project::Project;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Also resolve every secret reference (environment variables set, files readable).
    #[arg(long)]
    pub secrets: bool,
}

pub fn run(args: &ValidateArgs) -> Result<ExitStatus, CliError> {
    let project = Project::load(
        &args.source.inventory,
        args.source.playbooks.as_deref(),
        args.source.templates.as_deref(),
    )
    .map_err(CliError::new)?;
    project.note_missing_ca();
    // Expanding every host renders every template and types every step: what `plan` would do
    // before it connects anywhere.
    // One host at a time: nothing is kept but the first error.
    let declared = Topology::declared(&project.cluster);
    project.expand_each(&declared, |_, _| Ok::<_, CliError>(()))?;
    if args.secrets {
        project.resolve_secrets().map_err(CliError::new)?;
    }
    let c = &project.cluster;
    println!(
        "{}: valid: cluster `{}`, flavour {}, {} host{}{}",
        args.source.inventory.display(),
        c.name,
        c.flavour,
        c.hosts.len(),
        if c.hosts.len() == 1 { "" } else { "s" },
        if args.secrets {
            ", every secret resolved"
        } else {
            ""
        }
    );
    // What the declared objectives derived: the DBA checks it before any plan.
    for note in &project.objective_notes {
        println!("  {note}");
    }
    for warning in project.flavour.warnings() {
        println!("  warning: {warning}");
    }
    Ok(ExitStatus::Success)
}
