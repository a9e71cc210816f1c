//! `pgha render`: every managed file of every host into a folder, `OUT/<host>/<path>`.

use std::collections::{BTreeMap, BTreeSet};
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
    /// Facts saved by `pgha facts` (JSON): what depends on the hosts (settings computed from
    /// their memory and CPUs) is rendered as for those hosts. Without it, that is left out.
    #[arg(long, value_name = "FILE")]
    pub facts: Option<PathBuf>,
}

pub fn run(args: &RenderArgs) -> Result<ExitStatus, CliError> {
    let project = Project::load(
        &args.source.inventory,
        args.source.playbooks.as_deref(),
        args.source.templates.as_deref(),
    )
    .map_err(CliError::new)?;
    project.note_missing_ca();
    let secrets = if args.show_secrets {
        Some(project.resolve_secrets().map_err(CliError::new)?)
    } else {
        None
    };
    // One host at a time, its files written into a staging folder inside OUT: memory holds one
    // host's steps, not every host's. Only when every host is done do the files move to their
    // places; on an error nothing is written.
    let mut declared = Topology::declared(&project.cluster);
    if let Some(path) = &args.facts {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError(format!("cannot read {}: {e}", path.display())))?;
        let facts: BTreeMap<String, crate::facts::HostFacts> = serde_json::from_str(&text)
            .map_err(|e| {
                CliError(format!(
                    "{} is not facts as `pgha facts` prints them: {e}",
                    path.display()
                ))
            })?;
        declared.hardware = crate::plan::topology::hardware(&project.cluster, &facts);
    }
    let mut staging = Staging::new(&args.out)?;
    let mut written = BTreeMap::new();
    let mut count = 0;
    project.expand_each(&declared, |host, steps| {
        stage_host(
            &staging,
            &host.name,
            &steps,
            secrets.as_ref(),
            &mut written,
            &mut count,
        )
    })?;
    staging.commit(&written)?;
    println!(
        "Rendered {count} files for {} hosts into {}",
        project.cluster.hosts.len(),
        args.out.display()
    );
    Ok(ExitStatus::Success)
}

/// A folder inside OUT where files wait until every host's are written. Removed when dropped
/// (with OUT when this made it and it stayed empty), also after an error.
struct Staging {
    out: PathBuf,
    dir: PathBuf,
    /// Folders this made for OUT (OUT and its missing parents), the deepest first.
    made: Vec<PathBuf>,
}

impl Staging {
    fn new(out: &Path) -> Result<Self, CliError> {
        let made = out
            .ancestors()
            .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
            .map(Path::to_path_buf)
            .collect();
        let dir = out.join(format!(".pgha-render-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError(format!("cannot create {}: {e}", dir.display())))?;
        Ok(Staging {
            out: out.to_path_buf(),
            dir,
            made,
        })
    }

    /// Where file number `n` waits: flat, no folder to make for it.
    fn staged(&self, n: usize) -> PathBuf {
        self.dir.join(n.to_string())
    }

    /// Move the staged files (by their paths relative to OUT) to their places.
    fn commit(&mut self, files: &BTreeMap<PathBuf, usize>) -> Result<(), CliError> {
        let mut made = BTreeSet::new();
        for (rel, n) in files {
            let target = self.out.join(rel);
            if let Some(parent) = target.parent() {
                if !made.contains(parent) {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        CliError(format!("cannot create {}: {e}", parent.display()))
                    })?;
                    made.insert(parent.to_path_buf());
                }
            }
            std::fs::rename(self.staged(*n), &target)
                .map_err(|e| CliError(format!("cannot write {}: {e}", target.display())))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        // Only empty ones go: after an error, or when no host had a file.
        for dir in &self.made {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The files among one host's steps, staged; `written` maps each one's path relative to OUT
/// (`<host>/<path>`) to its staged file, and `count` counts every file written.
fn stage_host(
    staging: &Staging,
    host: &str,
    steps: &[Step],
    secrets: Option<&Secrets>,
    written: &mut BTreeMap<PathBuf, usize>,
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
        let rel = Path::new(host).join(file.dest.trim_start_matches('/'));
        let next = written.len();
        let n = *written.entry(rel.clone()).or_insert(next);
        std::fs::write(staging.staged(n), text.as_bytes()).map_err(|e| {
            CliError(format!(
                "cannot write {}: {e}",
                staging.out.join(&rel).display()
            ))
        })?;
        *count += 1;
    }
    Ok(())
}
