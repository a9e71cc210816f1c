//! The command line: typed arguments per command, each command in its own module. Commands
//! return a status or an error; printing of errors and the exit code happen here only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::exit::ExitStatus;

mod apply;
mod backup;
mod connect_info;
mod drill;
mod facts;
mod failover;
mod force_unlock;
mod handover;
mod interrupt;
mod plan;
mod render;
mod status;
mod switchover;
mod tls;
mod upgrade;
mod validate;
mod verify;

#[derive(Parser, Debug)]
#[command(
    name = "pgha",
    version,
    about = "Declarative PostgreSQL high-availability clusters over SSH: validate, render, plan, apply, verify"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More output (-v: reasons for steps in sync, -vv: every command run).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// No colours (also when NO_COLOR is set).
    #[arg(long, global = true, env = "NO_COLOR", value_parser = clap::builder::FalseyValueParser::new())]
    no_color: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check an inventory (schema, topology, parameters, playbook, templates). No network.
    Validate(validate::ValidateArgs),
    /// Write every managed file for every host into a folder. No network; secrets masked.
    Render(render::RenderArgs),
    /// Read the hosts and show what apply would do (diffs, restarts and why). Writes nothing.
    Plan(plan::PlanArgs),
    /// Plan, confirm, execute (hosts in parallel, under the cluster lock), verify.
    Apply(apply::ApplyArgs),
    /// Prove the cluster works: roles, streaming, slots, a marker row on every standby.
    Verify(verify::VerifyArgs),
    /// The cluster table: member, host, role, state, timeline, lag, upstream.
    Status(status::StatusArgs),
    /// Every host's facts as pgha reads them (JSON, or --raw as gathered). Secrets withheld.
    Facts(facts::FactsArgs),
    /// Hand the primary role to a standby without losing a commit, then verify.
    Switchover(switchover::SwitchoverArgs),
    /// `--minor`: the newest minor version the hosts' apt sources offer, and the rolling
    /// upgrade to it (`--write` pins it in the inventory; apply does it).
    Upgrade(upgrade::UpgradeArgs),
    /// The primary is gone: promote the standby with the most WAL, fence the old one, verify.
    Failover(failover::FailoverArgs),
    /// Ready connection strings: multi-host libpq and JDBC URLs, the VIP, haproxy's ports.
    /// No network.
    ConnectInfo(connect_info::ConnectInfoArgs),
    /// Rehearse a bad day: `drill failover` crashes the primary under a write load and
    /// measures what the application saw, then brings the cluster back and verifies.
    Drill(drill::DrillArgs),
    /// Base backups: `now`, `list`, `test` (a restore test now), `restore --to-scratch`.
    Backup(backup::BackupArgs),
    /// Remove the cluster lock left by an apply that died.
    ForceUnlock(force_unlock::ForceUnlockArgs),
    /// The cluster's CA: `pgha tls init` makes one beside the inventory.
    Tls(tls::TlsArgs),
    /// Local test hosts (containers with systemd and sshd) and a ready inventory.
    Sandbox(crate::sandbox::SandboxArgs),
}

/// Where the inventory, and optional playbook/template overrides, come from.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// Inventory file.
    #[arg(short, long, value_name = "FILE", env = "PGHA_INVENTORY")]
    pub inventory: PathBuf,
    /// Folder of template overrides: a file there replaces the built-in one of the same name.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Folder of playbook overrides (`<flavour>.yml`).
    #[arg(long, value_name = "DIR")]
    pub playbooks: Option<PathBuf>,
    /// At most this many hosts are connected to at a time.
    #[arg(long, value_name = "N", default_value_t = crate::facts::collect::DEFAULT_FORKS, value_parser = clap::value_parser!(u16).range(1..))]
    pub forks: u16,
}

impl SourceArgs {
    /// Which hosts to reach (`limit`, empty for all) and how many at a time.
    pub fn reach(&self, limit: &[String]) -> crate::session::Reach {
        crate::session::Reach {
            limit: limit.to_vec(),
            forks: usize::from(self.forks),
        }
    }

    /// Load, resolve the secrets, connect to the hosts and read their facts.
    pub async fn open(
        &self,
        reach: &crate::session::Reach,
    ) -> Result<crate::session::Session, CliError> {
        self.open_session(reach, false).await
    }

    /// The same for a command that may change the cluster (plan, apply): the cluster CA the
    /// inventory uses by default is made first when it is missing.
    pub async fn open_to_change(
        &self,
        reach: &crate::session::Reach,
    ) -> Result<crate::session::Session, CliError> {
        self.open_session(reach, true).await
    }

    async fn open_session(
        &self,
        reach: &crate::session::Reach,
        make_ca: bool,
    ) -> Result<crate::session::Session, CliError> {
        crate::session::Session::open(
            &self.inventory,
            self.playbooks.as_deref(),
            self.templates.as_deref(),
            reach,
            make_ca,
        )
        .await
        .map_err(CliError::new)
    }
}

/// An error a command reports: printed to stderr, exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

impl CliError {
    pub fn new(e: impl std::fmt::Display) -> Self {
        CliError(e.to_string())
    }
}

impl From<crate::project::ProjectError> for CliError {
    fn from(e: crate::project::ProjectError) -> Self {
        CliError::new(e)
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(CliError::new)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match cli.verbose {
        0 | 1 => "warn",
        _ => "pgha=debug",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PGHA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        // Colours only for a terminal that wants them: -vv output goes to log files.
        .with_ansi(
            !cli.no_color
                && std::env::var_os("NO_COLOR").is_none()
                && console::Term::stderr().features().colors_supported(),
        )
        .without_time()
        .try_init();
    if cli.no_color {
        console::set_colors_enabled(false);
        console::set_colors_enabled_stderr(false);
    }
    let result = match &cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Render(args) => render::run(args),
        Command::ConnectInfo(args) => connect_info::run(args),
        Command::Plan(args) => plan::run(args, cli.verbose),
        Command::Apply(args) => apply::run(args, cli.verbose),
        Command::Verify(args) => verify::run(args),
        Command::ForceUnlock(args) => force_unlock::run(args),
        Command::Tls(args) => tls::run(args),
        Command::Status(args) => status::run(args),
        Command::Facts(args) => facts::run(args),
        Command::Switchover(args) => switchover::run(args),
        Command::Failover(args) => failover::run(args),
        Command::Upgrade(args) => upgrade::run(args, cli.verbose),
        Command::Drill(args) => drill::run(args),
        Command::Backup(args) => backup::run(args),
        Command::Sandbox(args) => crate::sandbox::run(args)
            .map(|()| ExitStatus::Success)
            .map_err(CliError::new),
    };
    match result {
        Ok(status) => status.into(),
        Err(e) => {
            let text = e.to_string();
            if text.starts_with("error") {
                eprint!("{text}");
                if !text.ends_with('\n') {
                    eprintln!();
                }
            } else {
                eprintln!("error: {text}");
            }
            ExitStatus::Failure.into()
        }
    }
}
