//! `pgha connect-info`: ready connection strings for the cluster's clients, from the
//! inventory alone (no host is contacted, no password is printed).

use clap::Args;

use crate::cli::{CliError, SourceArgs};
use crate::components::routing::{connect, Routing};
use crate::exit::ExitStatus;
use crate::project::Project;

#[derive(Args, Debug)]
pub struct ConnectInfoArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The role clients log in as [default: the owner of the first database the inventory
    /// declares].
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// The database [default: the first the inventory declares, else postgres].
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ConnectInfoArgs) -> Result<ExitStatus, CliError> {
    let project = Project::load(
        &args.source.inventory,
        args.source.playbooks.as_deref(),
        args.source.templates.as_deref(),
    )
    .map_err(CliError::new)?;
    let c = &project.cluster;
    let first_db = c.databases.first();
    let database = args
        .database
        .clone()
        .or_else(|| first_db.map(|d| d.name.clone()))
        .unwrap_or_else(|| "postgres".to_owned());
    let user = args
        .user
        .clone()
        .or_else(|| {
            c.databases
                .iter()
                .find(|d| d.name == database)
                .map(|d| d.owner.clone())
        })
        .unwrap_or_else(|| "postgres".to_owned());
    let ca_file = c
        .tls
        .as_ref()
        .map(|t| t.ca_cert_file.display().to_string())
        .unwrap_or_default();
    let routing = project
        .components
        .iter()
        .find_map(|x| x.as_any().downcast_ref::<Routing>());
    let target = connect::Target {
        user: &user,
        database: &database,
        ca_file: &ca_file,
    };
    let all = connect::connections(c, routing, &target);
    if args.json {
        let out = serde_json::json!({
            "cluster": c.name,
            "user": user,
            "database": database,
            "ca_file": c.tls.as_ref().map(|_| &ca_file),
            "connections": all,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(ExitStatus::Success);
    }
    println!("cluster {} (user {user}, database {database})", c.name);
    if c.tls.is_some() {
        println!(
            "every server presents a certificate of the cluster CA: give clients {ca_file} (sslrootcert)"
        );
    } else {
        println!("TLS is off (`tls: off`): these connections are neither encrypted nor verified");
    }
    println!("the password is the role's own (users[].password); it is not shown here");
    for conn in &all {
        println!("\n{} ({})\n  {}", conn.purpose, conn.client, conn.url);
    }
    Ok(ExitStatus::Success)
}
