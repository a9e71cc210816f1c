//! `pgha upgrade --minor`: the newest minor version every PostgreSQL host's apt sources offer
//! (`apt-cache policy`'s Candidate, after reading the lists again), and the rolling upgrade a
//! pin to it would plan. `--write` puts the pin into the inventory
//! (`postgres.package_version`); `pgha apply` then does it. The inventory stays the one word on
//! the version: a host added later installs the same one.

use std::cmp::Ordering;

use clap::Args;

use crate::cli::{runtime, CliError, SourceArgs};
use crate::exit::ExitStatus;
use crate::flavours::run_ok;
use crate::plan::upgrade::{candidate, compare};
use crate::transport::RemoteCommand;
use crate::views;

#[derive(Args, Debug)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Within the major version: the newest version the hosts' apt sources offer.
    #[arg(long, required = true)]
    pub minor: bool,
    /// Write the version into the inventory as `postgres.package_version`.
    #[arg(long)]
    pub write: bool,
}

pub fn run(args: &UpgradeArgs, verbose: u8) -> Result<ExitStatus, CliError> {
    runtime()?.block_on(async {
        let mut session = args.source.open_to_change(&args.source.reach(&[])).await?;
        let result = upgrade(&mut session, args, verbose).await;
        session.close().await;
        result
    })
}

async fn upgrade(
    session: &mut crate::session::Session,
    args: &UpgradeArgs,
    verbose: u8,
) -> Result<ExitStatus, CliError> {
    if !session.unreachable.is_empty() {
        let names: Vec<&str> = session.unreachable.keys().map(String::as_str).collect();
        return Err(CliError(format!(
            "not reached: {}: the version must be one every host can install",
            names.join(", ")
        )));
    }
    let [server, _] = session.project.cluster.postgres.server_packages();
    let policy = RemoteCommand::script(format!(
        "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq -o DPkg::Lock::Timeout=600 >/dev/null 2>&1 || true; LC_ALL=C apt-cache policy {server}"
    ));
    let hosts: Vec<String> = session
        .project
        .cluster
        .hosts
        .iter()
        .filter(|h| h.role.has_postgres())
        .map(|h| h.name.clone())
        .collect();
    let asks = hosts.iter().filter_map(|h| {
        let t = session.transports.get(h)?;
        let policy = &policy;
        Some(async move {
            (
                h.clone(),
                run_ok(t.as_ref(), policy, "apt-cache policy").await,
            )
        })
    });
    let mut offered: Vec<(String, String)> = Vec::new();
    for (host, out) in futures::future::join_all(asks).await {
        let out = out.map_err(CliError::new)?;
        let Some(v) = candidate(&out) else {
            return Err(CliError(format!(
                "{host}: its apt sources offer no {server}"
            )));
        };
        println!("{host}: {server} candidate {v}");
        offered.push((host, v));
    }
    // The newest that every host can install: the oldest of the candidates.
    let Some((_, version)) = offered
        .iter()
        .min_by(|a, b| compare(&a.1, &b.1).then(Ordering::Equal))
        .cloned()
    else {
        return Err(CliError("no PostgreSQL host in the inventory".into()));
    };
    let major = session.project.cluster.postgres.version;
    crate::inventory::checks::package_version(&version, major).map_err(CliError)?;
    println!("The newest minor version every host offers: {version}");
    session.project.cluster.postgres.package_version = Some(version.clone());
    let plan = session.plan().map_err(CliError::new)?;
    print!("{}", views::plan::human(&plan, verbose));
    let inventory = &args.source.inventory;
    if args.write {
        let text = std::fs::read_to_string(inventory)
            .map_err(|e| CliError(format!("cannot read {}: {e}", inventory.display())))?;
        let pinned = pin(&text, &version).ok_or_else(|| {
            CliError(format!(
                "{}: no `postgres:` section at the start of a line to write the pin into",
                inventory.display()
            ))
        })?;
        std::fs::write(inventory, pinned)
            .map_err(|e| CliError(format!("cannot write {}: {e}", inventory.display())))?;
        println!(
            "Wrote postgres.package_version: \"{version}\" into {}. Apply it with: pgha apply -i {}",
            inventory.display(),
            inventory.display()
        );
    } else {
        println!(
            "To upgrade, pin it in the inventory (or run this again with --write):\n  postgres:\n    package_version: \"{version}\"\nthen: pgha apply -i {}",
            inventory.display()
        );
    }
    Ok(ExitStatus::Success)
}

/// The inventory's text with `package_version` set in its top-level `postgres:` block
/// (replaced when there, else the block's first key), everything else as it was.
fn pin(text: &str, version: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| l.trim_end() == "postgres:")?;
    let block: Vec<usize> = (start + 1..lines.len())
        .take_while(|&i| lines[i].is_empty() || lines[i].starts_with([' ', '#']))
        .collect();
    let indent: String = block
        .iter()
        .map(|&i| lines[i])
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| l[..l.len() - l.trim_start().len()].to_owned())
        .unwrap_or_else(|| "  ".to_owned());
    let line = format!("{indent}package_version: \"{version}\"");
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    match block.iter().find(|&&i| {
        lines[i]
            .strip_prefix(indent.as_str())
            .is_some_and(|r| r.starts_with("package_version:"))
    }) {
        Some(&i) => out[i] = line,
        None => out.insert(start + 1, line),
    }
    let mut joined = out.join("\n");
    if text.ends_with('\n') {
        joined.push('\n');
    }
    Some(joined)
}

#[cfg(test)]
mod tests {
    use super::pin;

    #[test]
    fn the_pin_goes_into_the_postgres_block_only() {
        let text = "cluster:\n  name: c\npostgres:\n  version: 15\n  port: 5432\nhosts: []\n";
        assert_eq!(
            pin(text, "15.20-0+deb12u1").expect("pinned"),
            "cluster:\n  name: c\npostgres:\n  package_version: \"15.20-0+deb12u1\"\n  version: 15\n  port: 5432\nhosts: []\n"
        );
        let pinned = "postgres:\n  version: 15\n  package_version: \"15.18-0+deb12u1\"\n";
        assert_eq!(
            pin(pinned, "15.20-0+deb12u1").expect("pinned"),
            "postgres:\n  version: 15\n  package_version: \"15.20-0+deb12u1\"\n"
        );
        assert_eq!(pin("cluster: {}\n", "15.20"), None);
    }
}
