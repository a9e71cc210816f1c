//! Local test hosts: `pgha sandbox up|down|status`.
//!
//! A sandbox is a handful of Debian bookworm containers that behave like real hosts (systemd as
//! PID 1, sshd, sudo, apt from the machine's own mirror), on their own Docker network, plus the
//! files pgha needs to reach them: an SSH key, a `known_hosts` with each host's real key (so
//! strict host key checking stays on), an inventory and an `env.sh` with generated passwords.
//!
//! Why containers built with debootstrap and not pulled images: the machines this runs on have
//! no registry access, only a Debian mirror. See DESIGN.md section 7 for the verified recipe.
//!
//! One module per job: [`engine`] (Docker and debootstrap present and running), [`image`]
//! (cached base images), [`network`] (one /24 per sandbox), [`hosts`] (containers), [`keys`]
//! (SSH access), [`inventory`] (files written into the state folder).

mod cmd;
mod engine;
mod hosts;
mod image;
mod inventory;
mod keys;
mod lock;
mod network;

use std::fmt::Display;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use image::{BASE_IMAGE, PG_IMAGE};

/// Label put on every container and network of a sandbox: `down` finds them by it even when
/// the state folder is gone.
pub const LABEL: &str = "pgha.sandbox";

/// `pgha sandbox ...`
#[derive(clap::Args, Debug, Clone)]
pub struct SandboxArgs {
    #[command(subcommand)]
    pub command: SandboxCommand,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum SandboxCommand {
    /// Create (or repair) the sandbox hosts and write key, known_hosts, inventory and env.sh.
    Up(UpArgs),
    /// Remove the sandbox's containers and network and the files `up` wrote.
    Down(CommonArgs),
    /// Show the sandbox's hosts: container, address, running, sshd reachable.
    Status(CommonArgs),
}

/// Options shared by every sandbox subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Sandbox name: prefix of the containers (NAME-pg1...) and of the network (NAME-net).
    #[arg(long, default_value = "pgha")]
    pub name: String,
    /// State folder: SSH key, known_hosts, inventory, env.sh, state.json.
    #[arg(long, default_value = "sandbox")]
    pub dir: PathBuf,
}

#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Number of hosts (pg1 is the primary in the inventory, the others standbys).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=9))]
    pub hosts: u8,
    /// HA flavour written into the inventory.
    #[arg(long, value_enum, default_value_t = Flavour::Streaming)]
    pub flavour: Flavour,
    /// Log in as this user (created with passwordless sudo) instead of root.
    #[arg(long, value_name = "USER")]
    pub ssh_user: Option<String>,
    /// Where to write the inventory [default: DIR/inventory.yml].
    #[arg(long, value_name = "PATH")]
    pub inventory: Option<PathBuf>,
    /// Use an image with the PostgreSQL/Patroni/repmgr/etcd/keepalived/haproxy packages
    /// already installed (faster for tests that are not about installing).
    #[arg(long)]
    pub image_with_packages: bool,
    /// IPv4 /24 for the sandbox network [default: a free 10.77.N.0/24].
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// Patroni flavour: etcd members, co-located on the first hosts (1 or 3). Three is the
    /// default so that losing any one host loses neither the DCS quorum nor the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub etcd: u8,
    /// repmgr flavour: one more host, `role: witness` (repmgr's tie-breaker).
    #[arg(long)]
    pub witness: bool,
    /// Client routing written into the inventory's `routing:`, a comma list: callback
    /// (Patroni moves a VIP; patroni flavour only), keepalived (VRRP moves a VIP), haproxy
    /// (ports 5000/5001 on every host). callback and keepalived exclude each other.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    pub routing: Vec<Routing>,
    /// With `--routing haproxy`: this many more hosts after the others, `role: proxy`, that
    /// run haproxy and nothing else (listed in `routing.haproxy.hosts`).
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=8))]
    pub proxies: u8,
    /// Scheduled base backups in the inventory (`backups:`), proven by restore tests.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "basebackup", value_name = "METHOD")]
    pub backups: Option<BackupMethod>,
}

/// How the generated inventory's backups are taken.
#[derive(clap::ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackupMethod {
    /// pg_basebackup, verified with pg_verifybackup.
    Basebackup,
    /// pgBackRest with its repository on one more host (`role: backup`, the last one).
    Pgbackrest,
    /// pgBackRest with its repository in a folder every data host mounts
    /// ([`SHARED_REPOSITORY`], a folder of the sandbox's own on this machine, as an NFS
    /// share would be).
    #[value(name = "pgbackrest-shared")]
    #[serde(rename = "pgbackrest-shared")]
    PgbackrestShared,
}

/// Where `--backups pgbackrest-shared` mounts the shared repository on every host.
pub const SHARED_REPOSITORY: &str = "/mnt/pgbackrest";

/// HA flavour of the generated inventory (mirrors `cluster.flavour`).
#[derive(clap::ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    #[default]
    Streaming,
    Patroni,
    Repmgr,
}

impl Flavour {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::Streaming => "streaming",
            Flavour::Patroni => "patroni",
            Flavour::Repmgr => "repmgr",
        }
    }
}

/// Client routing of the generated inventory (its `routing:` section); the order of the
/// variants is the order [`SandboxInfo::routing`] keeps them in.
#[derive(
    clap::ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// A VIP moved by Patroni's role-change callback (patroni flavour only).
    Callback,
    /// A VIP moved by keepalived (VRRP).
    Keepalived,
    /// HAProxy on every host: a port to the primary, one to the replicas.
    Haproxy,
}

impl Routing {
    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Callback => "callback",
            Routing::Keepalived => "keepalived",
            Routing::Haproxy => "haproxy",
        }
    }
}

/// What [`up`] should build; the library form of [`UpArgs`].
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub name: String,
    pub dir: PathBuf,
    /// 1..=9
    pub hosts: usize,
    pub flavour: Flavour,
    /// `None`: log in as root.
    pub ssh_user: Option<String>,
    /// `None`: DIR/inventory.yml.
    pub inventory: Option<PathBuf>,
    pub image_with_packages: bool,
    /// `None`: pick a free 10.77.N.0/24.
    pub subnet: Option<String>,
    /// Patroni flavour: etcd members on the first hosts (1 or 3, at most the host count).
    pub etcd_members: usize,
    /// repmgr flavour: the last host is the witness.
    pub witness: bool,
    /// Client routing in the inventory (duplicates are fine); empty: no `routing:` section.
    pub routing: Vec<Routing>,
    /// Proxy hosts (`role: proxy`) after the others; needs haproxy in `routing`.
    pub proxies: usize,
    /// A `backups:` section in the inventory.
    pub backups: Option<BackupMethod>,
}

impl UpOptions {
    /// Defaults as on the command line: 3 hosts, streaming, root, fresh base image.
    pub fn new(name: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        UpOptions {
            name: name.into(),
            dir: dir.into(),
            hosts: 3,
            flavour: Flavour::Streaming,
            ssh_user: None,
            inventory: None,
            image_with_packages: false,
            subnet: None,
            etcd_members: 3,
            witness: false,
            routing: Vec::new(),
            proxies: 0,
            backups: None,
        }
    }
}

impl From<&UpArgs> for UpOptions {
    fn from(a: &UpArgs) -> Self {
        UpOptions {
            name: a.common.name.clone(),
            dir: a.common.dir.clone(),
            hosts: usize::from(a.hosts),
            flavour: a.flavour,
            ssh_user: a.ssh_user.clone(),
            inventory: a.inventory.clone(),
            image_with_packages: a.image_with_packages,
            subnet: a.subnet.clone(),
            etcd_members: usize::from(a.etcd),
            witness: a.witness,
            routing: a.routing.clone(),
            proxies: usize::from(a.proxies),
            backups: a.backups,
        }
    }
}

/// Everything a caller needs to reach the sandbox; also stored as DIR/state.json.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SandboxInfo {
    pub name: String,
    /// Docker network name (NAME-net).
    pub network: String,
    /// e.g. "10.77.12.0/24"
    pub subnet: String,
    pub hosts: Vec<SandboxHost>,
    pub flavour: Flavour,
    /// Image the hosts run (base or with packages).
    pub image: String,
    /// State folder (absolute).
    pub dir: PathBuf,
    pub inventory: PathBuf,
    /// Private key (absolute); the public key is next to it with `.pub`.
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    /// `source` it to get the PGHA_* passwords the inventory refers to.
    pub env_file: PathBuf,
    /// root, or the `--ssh-user`.
    pub ssh_user: String,
    /// Patroni flavour: how many of the first hosts run an etcd member.
    #[serde(default)]
    pub etcd_members: usize,
    /// repmgr flavour: the last host is the witness.
    #[serde(default)]
    pub witness: bool,
    /// Client routing written into the inventory: each kind once, in [`Routing`]'s order.
    /// Defaults to none so that state.json files written before it still load.
    #[serde(default)]
    pub routing: Vec<Routing>,
    /// The last this many hosts are proxy hosts (`role: proxy`, haproxy only).
    #[serde(default)]
    pub proxies: usize,
    /// Backups in the inventory.
    #[serde(default)]
    pub backups: Option<BackupMethod>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SandboxHost {
    /// pg1..pgN (also the container's hostname and network alias).
    pub name: String,
    /// NAME-pgK
    pub container: String,
    pub ip: Ipv4Addr,
    pub ssh_port: u16,
}

/// What [`status`] found.
#[derive(Debug, Clone)]
pub struct SandboxStatus {
    pub name: String,
    /// `false`: the Docker engine does not answer, nothing else was looked at.
    pub engine_running: bool,
    pub network: Option<String>,
    pub hosts: Vec<HostStatus>,
    /// DIR/state.json, when present.
    pub state: Option<SandboxInfo>,
}

#[derive(Debug, Clone)]
pub struct HostStatus {
    pub host: String,
    pub container: String,
    pub ip: Option<Ipv4Addr>,
    pub running: bool,
    pub sshd: bool,
}

/// Every failure says what went wrong and, when something is missing, how to get it.
#[derive(thiserror::Error, Debug)]
pub enum SandboxError {
    #[error("invalid {what}: {message}")]
    Invalid { what: &'static str, message: String },
    #[error("`{program}` is not installed: {hint}")]
    Missing { program: String, hint: String },
    #[error("the Docker engine is not running: {hint}")]
    EngineDown { hint: String },
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("timed out after {seconds} s waiting for {what}{hint}")]
    Timeout {
        what: String,
        seconds: u64,
        hint: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no Debian bookworm mirror found in {searched}: add a `deb URL bookworm main` apt source \
         or set PGHA_SANDBOX_MIRROR=URL"
    )]
    NoMirror { searched: String },
    #[error("no free /24 in 10.77.0.0/16 (all overlap Docker networks or routes): pass --subnet")]
    NoFreeSubnet,
    #[error("{}: {source}", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Something already there is in the way (a foreign network, another subnet).
    #[error("{0}")]
    Conflict(String),
    /// A host or step did not behave (container died while booting, odd host key...).
    #[error("{0}")]
    Failed(String),
}

impl SandboxError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SandboxError {
        let path = path.into();
        move |source| SandboxError::Io { path, source }
    }
}

/// One human progress line on stderr (stdout is for the final summary).
pub(crate) fn note(msg: impl Display) {
    eprintln!("sandbox: {msg}");
}

/// Entry point of `pgha sandbox ...`.
pub fn run(args: &SandboxArgs) -> Result<(), SandboxError> {
    match &args.command {
        SandboxCommand::Up(a) => {
            let info = up(&UpOptions::from(a))?;
            print!("{}", summary(&info));
            Ok(())
        }
        SandboxCommand::Down(c) => {
            down(&c.name, &c.dir)?;
            println!("sandbox {} removed", c.name);
            Ok(())
        }
        SandboxCommand::Status(c) => {
            let st = status(&c.name, &c.dir)?;
            print!("{}", status_table(&st));
            Ok(())
        }
    }
}

/// Human summary printed after `up`.
fn summary(info: &SandboxInfo) -> String {
    let mut s = format!(
        "sandbox {} is up: network {} ({}), image {}\n",
        info.name, info.network, info.subnet, info.image
    );
    s.push_str(&format!(
        "{:<6} {:<24} {:<15} SSH\n",
        "HOST", "CONTAINER", "ADDRESS"
    ));
    for h in &info.hosts {
        s.push_str(&format!(
            "{:<6} {:<24} {:<15} {}@{}:{}\n",
            h.name, h.container, h.ip, info.ssh_user, h.ip, h.ssh_port
        ));
    }
    s.push_str(&format!("inventory:   {}\n", info.inventory.display()));
    if !info.routing.is_empty() {
        s.push_str(&format!("routing:     {}\n", routing_list(&info.routing)));
    }
    s.push_str(&format!("key:         {}\n", info.key.display()));
    s.push_str(&format!("known_hosts: {}\n", info.known_hosts.display()));
    s.push_str(&format!(
        "passwords:   source {}   (exports {})\n",
        info.env_file.display(),
        inventory::PASSWORD_VARS.join(", ")
    ));
    if let Some(h) = info.hosts.first() {
        s.push_str(&format!(
            "try:         ssh -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes {}@{} hostname\n",
            info.key.display(),
            info.known_hosts.display(),
            info.ssh_user,
            h.ip
        ));
    }
    s
}

fn status_table(st: &SandboxStatus) -> String {
    if !st.engine_running {
        return format!(
            "sandbox {}: the Docker engine is not running (`pgha sandbox up` starts it)\n",
            st.name
        );
    }
    if st.hosts.is_empty() && st.network.is_none() {
        return format!(
            "sandbox {}: not created (no containers, no network)\n",
            st.name
        );
    }
    let mut s = format!(
        "sandbox {}: network {}\n",
        st.name,
        st.network.as_deref().unwrap_or("(missing)")
    );
    s.push_str(&format!(
        "{:<6} {:<24} {:<15} {:<8} {}\n",
        "HOST", "CONTAINER", "ADDRESS", "RUNNING", "SSHD"
    ));
    for h in &st.hosts {
        s.push_str(&format!(
            "{:<6} {:<24} {:<15} {:<8} {}\n",
            h.host,
            h.container,
            h.ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
            if h.running { "yes" } else { "no" },
            if h.sshd { "yes" } else { "no" }
        ));
    }
    if let Some(info) = &st.state {
        s.push_str(&format!("inventory: {}\n", info.inventory.display()));
        if !info.routing.is_empty() {
            s.push_str(&format!("routing:   {}\n", routing_list(&info.routing)));
        }
    }
    s
}

/// Sandbox names become container and network names: Docker's rules, kept short.
fn validate_name(name: &str) -> Result<(), SandboxError> {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok_first || !ok_rest || name.len() > 40 {
        return Err(SandboxError::Invalid {
            what: "sandbox name",
            message: format!(
                "{name:?}: use 1 to 40 characters [A-Za-z0-9_.-], starting with a letter or digit"
            ),
        });
    }
    Ok(())
}

fn validate_user(user: &str) -> Result<(), SandboxError> {
    let ok_first = user
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let ok_rest = user
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if !ok_first || !ok_rest || user.len() > 32 {
        return Err(SandboxError::Invalid {
            what: "--ssh-user",
            message: format!(
                "{user:?}: use a Debian user name [a-z_][a-z0-9_-]*, at most 32 characters"
            ),
        });
    }
    Ok(())
}

fn routing_list(routing: &[Routing]) -> String {
    routing
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// `--routing` as the inventory gets it: each kind once, in a fixed order (a repeated `up`
/// writes the same text). Combinations no cluster could run are refused here, before
/// anything is created.
fn check_routing(flavour: Flavour, requested: &[Routing]) -> Result<Vec<Routing>, SandboxError> {
    let mut routing = requested.to_vec();
    routing.sort();
    routing.dedup();
    let has = |r: Routing| routing.contains(&r);
    let invalid = |message: String| SandboxError::Invalid {
        what: "--routing",
        message,
    };
    if has(Routing::Callback) && flavour != Flavour::Patroni {
        return Err(invalid(format!(
            "callback is Patroni's role-change callback moving the VIP: it needs --flavour \
             patroni (not {}); keepalived moves a VIP with any flavour",
            flavour.as_str()
        )));
    }
    if has(Routing::Callback) && has(Routing::Keepalived) {
        return Err(invalid(
            "callback and keepalived would both move the one VIP: choose one of them \
             (haproxy goes with either)"
                .to_string(),
        ));
    }
    Ok(routing)
}

fn path_of_state(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// Create (or repair) the sandbox described by `opts` and write its files.
///
/// Idempotent: running containers with the right address and image are kept, stopped ones
/// are started, missing or wrong ones are recreated, extra ones removed.
pub fn up(opts: &UpOptions) -> Result<SandboxInfo, SandboxError> {
    let started = Instant::now();
    validate_name(&opts.name)?;
    if !(1..=9).contains(&opts.hosts) {
        return Err(SandboxError::Invalid {
            what: "--hosts",
            message: format!("{}: a sandbox has 1 to 9 hosts", opts.hosts),
        });
    }
    let ssh_user = match opts.ssh_user.as_deref() {
        None | Some("root") => None,
        Some(u) => {
            validate_user(u)?;
            Some(u.to_string())
        }
    };
    let requested_subnet = opts
        .subnet
        .as_deref()
        .map(network::parse_subnet)
        .transpose()?;
    let routing = check_routing(opts.flavour, &opts.routing)?;
    if opts.proxies > 0 && !routing.contains(&Routing::Haproxy) {
        return Err(SandboxError::Invalid {
            what: "--proxies",
            message: "proxy hosts run haproxy: add `--routing haproxy`".to_owned(),
        });
    }
    // pgBackRest's repository gets a host of its own, after the others.
    let backup_hosts = usize::from(opts.backups == Some(BackupMethod::Pgbackrest));
    if opts.hosts + opts.proxies + backup_hosts > 9 {
        return Err(SandboxError::Invalid {
            what: "--proxies",
            message: format!(
                "{} hosts and {} proxies: a sandbox has at most 9 hosts in all",
                opts.hosts, opts.proxies
            ),
        });
    }

    let dir = inventory::prepare_dir(&opts.dir)?;
    let inventory_path = match &opts.inventory {
        Some(p) => std::path::absolute(p).map_err(SandboxError::io(p))?,
        None => dir.join("inventory.yml"),
    };

    engine::ensure_engine()?;
    let image = image::ensure_image(opts.image_with_packages)?;
    let net = network::ensure_network(&opts.name, requested_subnet)?;
    note(format!("network {} ({}/24)", net.name, net.base));
    let (key, public_key) = keys::ensure_keypair(&dir, &opts.name)?;
    // The shared repository's folder lives in the sandbox's folder: gone with it.
    let mut mounts = Vec::new();
    if opts.backups == Some(BackupMethod::PgbackrestShared) {
        let shared = dir.join("shared-repository");
        std::fs::create_dir_all(&shared).map_err(SandboxError::io(&shared))?;
        mounts.push(format!("{}:{SHARED_REPOSITORY}", shared.display()));
    }

    let t = Instant::now();
    let hosts = hosts::ensure_hosts(&hosts::HostsSpec {
        sandbox: &opts.name,
        network: &net,
        count: opts.hosts + opts.proxies + backup_hosts,
        image,
        public_key: &public_key,
        ssh_user: ssh_user.as_deref(),
        mounts: &mounts,
    })?;
    note(format!(
        "{} host(s) ready with sshd in {:.1} s",
        hosts.len(),
        t.elapsed().as_secs_f64()
    ));

    let known_hosts = dir.join("known_hosts");
    keys::write_known_hosts(&known_hosts, &hosts)?;
    let info = SandboxInfo {
        name: opts.name.clone(),
        network: net.name.clone(),
        subnet: format!("{}/24", net.base),
        hosts: hosts.into_iter().map(|h| h.host).collect(),
        flavour: opts.flavour,
        image: image.to_string(),
        dir: dir.clone(),
        inventory: inventory_path,
        key,
        known_hosts,
        env_file: dir.join("env.sh"),
        ssh_user: ssh_user.unwrap_or_else(|| "root".to_string()),
        // An even count has no better quorum than one less; never more than the hosts.
        etcd_members: if opts.hosts >= 3 && opts.etcd_members >= 3 {
            3
        } else {
            1
        },
        witness: opts.witness && opts.flavour == Flavour::Repmgr,
        routing,
        proxies: opts.proxies,
        backups: opts.backups,
    };
    inventory::write_all(&info)?;
    note(format!(
        "sandbox {} up in {:.1} s; run `source {}` for the passwords",
        info.name,
        started.elapsed().as_secs_f64(),
        info.env_file.display()
    ));
    Ok(info)
}

/// Remove the sandbox's containers and network (found by label, so this works without state
/// files too) and the files `up` wrote into `dir`; `dir` itself goes if it is left empty.
pub fn down(name: &str, dir: &Path) -> Result<(), SandboxError> {
    validate_name(name)?;
    if engine::installed() {
        engine::ensure_engine()?;
        hosts::remove_all(name)?;
        network::remove_all(name)?;
    } else {
        note("Docker is not installed: no containers to remove");
    }
    inventory::remove_files(dir)
}

/// Look at the sandbox without changing anything (the engine is not started).
pub fn status(name: &str, dir: &Path) -> Result<SandboxStatus, SandboxError> {
    validate_name(name)?;
    let state = inventory::read_state(dir)?;
    if !engine::answers() {
        return Ok(SandboxStatus {
            name: name.to_string(),
            engine_running: false,
            network: None,
            hosts: Vec::new(),
            state,
        });
    }
    let network = network::existing(name)?.map(|n| n.name);
    let hosts = hosts::status(name, &network::network_name(name), Duration::from_secs(2))?;
    Ok(SandboxStatus {
        name: name.to_string(),
        engine_running: true,
        network,
        hosts,
        state,
    })
}

/// Read DIR/state.json written by [`up`] (`None` when absent).
pub fn load(dir: &Path) -> Result<Option<SandboxInfo>, SandboxError> {
    inventory::read_state(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        sandbox: SandboxArgs,
    }

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn up_defaults_and_options() {
        let cli = Cli::parse_from(["pgha", "up"]);
        let SandboxCommand::Up(a) = &cli.sandbox.command else {
            panic!("not up")
        };
        let o = UpOptions::from(a);
        assert_eq!(o.name, "pgha");
        assert_eq!(o.dir, PathBuf::from("sandbox"));
        assert_eq!(o.hosts, 3);
        assert_eq!(o.flavour, Flavour::Streaming);
        assert!(!o.image_with_packages && o.ssh_user.is_none() && o.subnet.is_none());

        let cli = Cli::parse_from([
            "pgha",
            "up",
            "--name",
            "t1",
            "--dir",
            "/tmp/x",
            "--hosts",
            "5",
            "--flavour",
            "patroni",
            "--ssh-user",
            "deploy",
            "--image-with-packages",
            "--subnet",
            "10.9.8.0/24",
        ]);
        let SandboxCommand::Up(a) = &cli.sandbox.command else {
            panic!("not up")
        };
        let o = UpOptions::from(a);
        assert_eq!((o.hosts, o.flavour), (5, Flavour::Patroni));
        assert_eq!(o.ssh_user.as_deref(), Some("deploy"));
        assert!(Cli::try_parse_from(["pgha", "up", "--hosts", "10"]).is_err());
        assert!(Cli::try_parse_from(["pgha", "up", "--hosts", "0"]).is_err());
        let cli = Cli::parse_from(["pgha", "down", "--name", "x"]);
        assert!(
            matches!(cli.sandbox.command, SandboxCommand::Down(CommonArgs { ref name, .. }) if name == "x")
        );
    }

    #[test]
    fn routing_option() {
        use Routing::{Callback, Haproxy, Keepalived};
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(["pgha", "up"].iter().chain(args))?;
            let SandboxCommand::Up(a) = &cli.sandbox.command else {
                panic!("not up")
            };
            Ok::<_, clap::Error>(UpOptions::from(a).routing)
        };
        assert_eq!(parse(&[]).expect("parse"), vec![]);
        assert_eq!(
            parse(&["--routing", "keepalived,haproxy"]).expect("parse"),
            vec![Keepalived, Haproxy]
        );
        assert_eq!(
            parse(&["--routing", "haproxy", "--routing=callback"]).expect("parse"),
            vec![Haproxy, Callback]
        );
        assert!(parse(&["--routing", "vip"]).is_err());
        assert!(parse(&["--routing", "keepalived,"]).is_err());
    }

    #[test]
    fn routing_is_checked() {
        use Routing::{Callback, Haproxy, Keepalived};
        let ok = |f, r: &[Routing]| check_routing(f, r).expect("accepted");
        assert_eq!(ok(Flavour::Streaming, &[]), vec![]);
        assert_eq!(
            ok(Flavour::Patroni, &[Haproxy, Callback, Haproxy, Callback]),
            vec![Callback, Haproxy],
            "deduplicated, in a fixed order"
        );
        assert_eq!(
            ok(Flavour::Repmgr, &[Haproxy, Keepalived, Keepalived]),
            vec![Keepalived, Haproxy]
        );
        assert_eq!(ok(Flavour::Streaming, &[Haproxy]), vec![Haproxy]);
        for flavour in [Flavour::Streaming, Flavour::Repmgr] {
            let e = check_routing(flavour, &[Callback]).expect_err("callback is Patroni's");
            assert!(e.to_string().contains("--flavour patroni"), "{e}");
        }
        let e = check_routing(Flavour::Patroni, &[Keepalived, Haproxy, Callback])
            .expect_err("one VIP, one mover");
        assert!(e.to_string().contains("callback and keepalived"), "{e}");
    }

    #[test]
    fn refused_routing_creates_nothing() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join("state");
        let mut opts = UpOptions::new("refused", &dir);
        opts.flavour = Flavour::Repmgr;
        opts.routing = vec![Routing::Callback];
        assert!(matches!(
            up(&opts),
            Err(SandboxError::Invalid {
                what: "--routing",
                ..
            })
        ));
        assert!(!dir.exists(), "refused before the state folder is made");
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("pgha").is_ok());
        assert!(validate_name("it-1.a_b").is_ok());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_user("deploy").is_ok());
        assert!(validate_user("Deploy").is_err());
        assert!(validate_user("de;ploy").is_err());
    }
}
