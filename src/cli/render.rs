//! `pgha render`: every managed file of every host into a folder, `OUT/<host>/<path>`.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::{CliError, SourceArgs};
use crate::exit::ExitStatus;
use crate::model::{Secrets, Topology};
use crate::playbook::Step;
use crate::project::Project;
use crate::steps::file::File;

#[derive(Args, Debug)]
pub struct RenderArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write real secret values instead of `(sensitive)` (resolves every reference).
    #[arg(long)]
    pub show_secrets: bool,
}

pub fn run(args: &RenderArgs) -> Result<ExitStatus, CliError> {
    let project = Project::load(
        &args.source.inventory,
        args.source.playbooks.as_deref(),
        args.source.templates.as_deref(),
    )
    .map_err(CliError::new)?;
    let secrets = if args.show_secrets {
        Some(project.resolve_secrets().map_err(CliError::new)?)
    } else {
        None
    };
    // Every host is expanded once to find any error before a file is written, then again to
    // write its files: one host's steps in memory at a time, not every host's.
    let declared = Topology::declared(&project.cluster);
    project.expand_each(&declared, |_, _| Ok::<_, CliError>(()))?;
    let mut count = 0;
    project.expand_each(&declared, |host, steps| {
        write_host(args, &host.name, &steps, secrets.as_ref(), &mut count)
    })?;
    println!(
        "Rendered {count} files for {} hosts into {}",
        project.cluster.hosts.len(),
        args.out.display()
    );
    Ok(ExitStatus::Success)
}

/// The files among one host's steps, into `OUT/<host>/`.
fn write_host(
    args: &RenderArgs,
    host: &str,
    steps: &[Step],
    secrets: Option<&Secrets>,
    count: &mut usize,
) -> Result<(), CliError> {
    for step in steps {
        let Some(file) = step.module.downcast::<File>() else {
            continue;
        };
        let text = match secrets {
            Some(s) => file.content.reveal(s).map_err(CliError::new)?,
            None => file.content.masked(),
        };
        let target = args.out.join(host).join(file.dest.trim_start_matches('/'));
        write(&target, &text)?;
        *count += 1;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), CliError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| CliError(format!("cannot create {}: {e}", parent.display())))?;
    }
    std::fs::write(path, text)
        .map_err(|e| CliError(format!("cannot write {}: {e}", path.display())))
}
