//! `pgha tls init`: a CA for the cluster, made here, its certificate and key written beside
//! the inventory (the key 0600, never printed). The inventory's `tls:` section then names
//! them; every host's certificate is issued by pgha from it.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::cli::CliError;
use crate::exit::ExitStatus;

#[derive(Args, Debug)]
pub struct TlsArgs {
    #[command(subcommand)]
    pub command: TlsCommand,
}

#[derive(Subcommand, Debug)]
pub enum TlsCommand {
    /// Make a CA for the cluster: `ca.crt` and `ca.key` (0600) in DIR. Refuses to replace one.
    Init {
        /// The folder (made when missing); usually beside the inventory.
        #[arg(long, value_name = "DIR", default_value = "tls")]
        dir: PathBuf,
        /// The cluster's name, in the CA's name.
        #[arg(long, default_value = "pgha")]
        name: String,
        /// How long the CA is valid.
        #[arg(long, default_value_t = crate::tls::CA_DAYS)]
        days: i64,
    },
}

pub fn run(args: &TlsArgs) -> Result<ExitStatus, CliError> {
    match &args.command {
        TlsCommand::Init { dir, name, days } => init(dir, name, *days),
    }
}

fn init(dir: &Path, name: &str, days: i64) -> Result<ExitStatus, CliError> {
    let (cert, key) = crate::tls::init_dir(dir, name, days).map_err(CliError::new)?;
    println!(
        "Made a CA for {name}, valid {days} days: {} and {} (keep the key as safe as any password).\nIn the inventory:\n\ntls:\n  ca_cert: {}\n  ca_key: {{file: {}}}\n",
        cert.display(),
        key.display(),
        cert.display(),
        key.display()
    );
    Ok(ExitStatus::Success)
}
