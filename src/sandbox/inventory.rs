//! Files in the state folder: the inventory (same keys as `inventory.example`), `env.sh` with
//! generated passwords, and `state.json` (the [`SandboxInfo`]).

use std::fs;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{note, Routing, SandboxError, SandboxInfo};

/// The PGHA_* variables the inventory refers to, in `env.sh` order.
pub(crate) const PASSWORD_VARS: [&str; 7] = [
    "PGHA_REPLICATION_PASSWORD",
    "PGHA_SUPERUSER_PASSWORD",
    "PGHA_APP_PASSWORD",
    "PGHA_REWIND_PASSWORD",
    "PGHA_REPMGR_PASSWORD",
    "PGHA_RESTAPI_PASSWORD",
    VRRP_PASSWORD_VAR,
];

/// keepalived's VRRP password: PASS authentication keeps only its first 8 characters.
const VRRP_PASSWORD_VAR: &str = "PGHA_VRRP_PASSWORD";

/// Create the state folder (0700: it holds a private key) and return its absolute path.
pub(crate) fn prepare_dir(dir: &Path) -> Result<PathBuf, SandboxError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(SandboxError::io(dir))?;
    fs::canonicalize(dir).map_err(SandboxError::io(dir))
}

/// Write through a temporary file and rename, so a killed run never leaves half a file.
pub(crate) fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), SandboxError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(SandboxError::io(parent))?;
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(SandboxError::io(path))
}

/// Inventory, env.sh (kept if present: passwords must survive a repeated `up`), state.json.
pub(crate) fn write_all(info: &SandboxInfo) -> Result<(), SandboxError> {
    write_file(&info.inventory, &render_inventory(info)?, 0o644)?;
    ensure_env(&info.env_file, &info.name)?;
    let state = state_path(&info.dir);
    let json = serde_json::to_string_pretty(info).map_err(|source| SandboxError::State {
        path: state.clone(),
        source,
    })?;
    write_file(&state, &format!("{json}\n"), 0o644)
}

fn state_path(dir: &Path) -> PathBuf {
    super::path_of_state(dir)
}

pub(crate) fn read_state(dir: &Path) -> Result<Option<SandboxInfo>, SandboxError> {
    let path = state_path(dir);
    match fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| SandboxError::State { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SandboxError::Io { path, source: e }),
    }
}

/// Remove what `up` wrote into `dir` (and the inventory elsewhere, if state.json says so);
/// `dir` itself only if that leaves it empty.
pub(crate) fn remove_files(dir: &Path) -> Result<(), SandboxError> {
    // A broken state.json must not stop the clean-up.
    let recorded = read_state(dir).ok().flatten().map(|s| s.inventory);
    let mut files: Vec<PathBuf> = [
        "id_ed25519",
        "id_ed25519.pub",
        "known_hosts",
        "inventory.yml",
        "env.sh",
        "state.json",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect();
    files.extend(recorded);
    for f in files {
        match fs::remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SandboxError::Io { path: f, source: e }),
        }
    }
    if fs::remove_dir(dir).is_ok() {
        note(format!("removed {}", dir.display()));
    }
    Ok(())
}

/// Cluster names are [a-z0-9_-]; sandbox names may also hold upper case and dots.
pub(crate) fn cluster_name(sandbox: &str) -> String {
    sandbox
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '-',
        })
        .collect()
}

/// A YAML double-quoted scalar (valid for any path).
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The inventory, with exactly the keys of `inventory.example` (and `routing:` when asked).
pub(crate) fn render_inventory(info: &SandboxInfo) -> Result<String, SandboxError> {
    let mut hosts = String::new();
    // Proxy hosts come after the others, pgBackRest's repository host last.
    let backup_host = usize::from(info.backups == Some(super::BackupMethod::Pgbackrest));
    let backup_from = info.hosts.len().saturating_sub(backup_host);
    let proxies_from = backup_from.saturating_sub(info.proxies);
    let last = proxies_from.saturating_sub(1);
    for (i, h) in info.hosts.iter().enumerate() {
        let role = match i {
            i if i >= backup_from => "backup",
            i if i >= proxies_from => "proxy",
            0 => "primary",
            i if i == last && info.witness => "witness",
            _ => "standby",
        };
        hosts.push_str(&format!(
            "  - name: {}\n    address: {}\n    role: {role}\n",
            h.name, h.ip
        ));
    }
    Ok(format!(
        r#"# pgha inventory of the local sandbox {sandbox:?}, written by `pgha sandbox up`.
# Rewritten on every `up` (addresses and host keys follow the containers): copy it to edit it.
# Passwords are environment references: run `source {env}` first.

cluster:
  name: {cluster}
  flavour: {flavour}

postgres:
  version: 15
  port: 5432
  debian_cluster: main
  data_dir: /var/lib/postgresql/15/main
  conf_dir: /etc/postgresql/15/main
  listen_addresses: "*"
  superuser_password: {{env: PGHA_SUPERUSER_PASSWORD}}
  # Modest: several sandboxes share one machine.
  parameters:
    shared_buffers: 128MB
    max_connections: 100
    wal_log_hints: "on"
  hba:
    - type: hostssl
      database: appdb
      user: app
      address: {subnet}
      method: scram-sha-256
  allow_network_trust: false

replication:
  user: replicator
  password: {{env: PGHA_REPLICATION_PASSWORD}}
  slots: true
  max_slot_wal_keep_size: 1GB
  max_wal_senders: 10
  max_replication_slots: 10
  archive:
    mode: "off"
    command: ""

users:
  - name: app
    password: {{env: PGHA_APP_PASSWORD}}
    login: true
    superuser: false
    createdb: false
    createrole: false
    connection_limit: -1

databases:
  - name: appdb
    owner: app
    extensions: []

packages: []

{routing}{backups}ssh:
  user: {user}
  port: 22
  identity_file: {key}
  host_key_policy: strict
  known_hosts: {known_hosts}
  connect_timeout: 10

{patroni}hosts:
{hosts}"#,
        patroni = flavour_section(info),
        routing = routing_section(info)?,
        backups = backups_section(info),
        sandbox = info.name,
        env = info.env_file.display(),
        cluster = cluster_name(&info.name),
        flavour = info.flavour.as_str(),
        subnet = info.subnet,
        user = quoted(&info.ssh_user),
        key = quoted(&info.key.to_string_lossy()),
        known_hosts = quoted(&info.known_hosts.to_string_lossy()),
    ))
}

/// `backups:` (nothing without `--backups`): nightly backups of the primary, three good ones
/// kept, a restore test after each night's.
fn backups_section(info: &SandboxInfo) -> String {
    match info.backups {
        None => String::new(),
        Some(super::BackupMethod::Basebackup) => "backups:\n  method: basebackup\n  from: primary\n  schedule: \"*-*-* 01:00:00\"\n  retention: {count: 3}\n  restore_test: {schedule: \"*-*-* 03:00:00\"}\n\n".to_owned(),
        // The repository on the last host, which runs the backups and restore tests.
        Some(super::BackupMethod::Pgbackrest) => format!(
            "backups:\n  method: pgbackrest\n  repository: {{host: {}}}\n  from: primary\n  schedule: \"*-*-* 01:00:00\"\n  retention: {{count: 3}}\n  compress: true\n  restore_test: {{schedule: \"*-*-* 03:00:00\"}}\n\n",
            info.hosts.last().map_or("", |h| h.name.as_str())
        ),
        // A folder every data host mounts: the primary takes the backups.
        Some(super::BackupMethod::PgbackrestShared) => format!(
            "backups:\n  method: pgbackrest\n  repository: {{path: {}}}\n  from: primary\n  schedule: \"*-*-* 01:00:00\"\n  retention: {{count: 3}}\n  compress: true\n  restore_test: {{schedule: \"*-*-* 03:00:00\"}}\n\n",
            super::SHARED_REPOSITORY
        ),
    }
}

/// `routing:` (nothing without `--routing`): the VIP at .200 of the sandbox's /24 moved by
/// Patroni's callback or by keepalived, keepalived's VRRP settings, HAProxy's ports.
fn routing_section(info: &SandboxInfo) -> Result<String, SandboxError> {
    if info.routing.is_empty() {
        return Ok(String::new());
    }
    let [a, b, c, _] = subnet_base(&info.subnet)?.octets();
    let has = |r: Routing| info.routing.contains(&r);
    let mut s = String::from("routing:\n");
    // `up` refuses callback with keepalived: at most one of them moves the VIP.
    let mover = [Routing::Callback, Routing::Keepalived]
        .into_iter()
        .find(|r| has(*r));
    if let Some(mode) = mover {
        s.push_str(&format!(
            "  vip:\n    \
             # A free address of the sandbox's /24: Docker hands out addresses from the bottom of the\n    \
             # range (the network is created with --ip-range BASE/25), so .200 is never a host's.\n    \
             address: {a}.{b}.{c}.200/24\n    \
             interface: eth0\n    \
             mode: {}\n",
            mode.as_str()
        ));
    }
    if has(Routing::Keepalived) {
        s.push_str(&format!(
            "  keepalived:\n    \
             # Explicit (pgha never derives one): the sandbox takes its subnet's third byte (0 counts\n    \
             # as 1, ids are 1 to 255); each sandbox has its own bridge, so ids never meet anyway.\n    \
             virtual_router_id: {}\n    \
             password: {{env: {VRRP_PASSWORD_VAR}}}\n    \
             unicast: true\n",
            c.max(1)
        ));
    }
    if has(Routing::Haproxy) {
        s.push_str("  haproxy:\n");
        if info.proxies > 0 {
            let proxies: Vec<&str> = info.hosts[info.hosts.len().saturating_sub(info.proxies)..]
                .iter()
                .map(|h| h.name.as_str())
                .collect();
            s.push_str(&format!("    hosts: [{}]\n", proxies.join(", ")));
        }
        s.push_str("    primary_port: 5000\n    replica_port: 5001\n    max_lag: 1MB\n");
    }
    s.push('\n');
    Ok(s)
}

/// The network address of the sandbox's "a.b.c.0/24" (as `up` records it).
fn subnet_base(subnet: &str) -> Result<Ipv4Addr, SandboxError> {
    subnet
        .strip_suffix("/24")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| SandboxError::Invalid {
            what: "sandbox subnet",
            message: format!("{subnet:?}: expected an IPv4 /24 such as 10.77.5.0/24"),
        })
}

/// The flavour's section: Patroni's with etcd co-located on the first hosts, repmgr's with
/// its password; defaults otherwise.
fn flavour_section(info: &SandboxInfo) -> String {
    match info.flavour.as_str() {
        "patroni" => {}
        "repmgr" => return "repmgr:\n  password: {env: PGHA_REPMGR_PASSWORD}\n\n".to_owned(),
        _ => return String::new(),
    }
    let members: Vec<&str> = info
        .hosts
        .iter()
        .take(info.etcd_members.max(1))
        .map(|h| h.name.as_str())
        .collect();
    format!(
        "patroni:\n  rewind:\n    user: rewind\n    password: {{env: PGHA_REWIND_PASSWORD}}\n  restapi_auth:\n    user: patroni\n    password: {{env: PGHA_RESTAPI_PASSWORD}}\n  etcd:\n    members: [{}]\n\n",
        members.join(", ")
    )
}

/// Write env.sh, or keep it (its passwords must survive a repeated `up`) and append only
/// the variables it lacks: one written before a variable existed must still resolve every
/// reference of the new inventory.
fn ensure_env(path: &Path, sandbox: &str) -> Result<(), SandboxError> {
    let mut text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return write_file(path, &render_env(sandbox)?, 0o600);
        }
        Err(e) => {
            return Err(SandboxError::Io {
                path: path.to_path_buf(),
                source: e,
            })
        }
    };
    let missing: Vec<&str> = PASSWORD_VARS
        .into_iter()
        .filter(|var| !defines(&text, var))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    for var in missing {
        text.push_str(&export_line(var)?);
    }
    write_file(path, &text, 0o600)
}

/// Whether env.sh sets `var` (with or without `export`, as someone may have edited it).
fn defines(env: &str, var: &str) -> bool {
    env.lines().any(|l| {
        let l = l.trim_start();
        let l = l.strip_prefix("export ").unwrap_or(l).trim_start();
        l.strip_prefix(var)
            .is_some_and(|rest| rest.starts_with('='))
    })
}

/// `env.sh`: one random password per variable.
fn render_env(sandbox: &str) -> Result<String, SandboxError> {
    let mut s = format!(
        "# pgha sandbox {sandbox:?}: passwords for the inventory's {{env: ...}} references.\n\
         # Generated once by `pgha sandbox up`; private to this sandbox. Use: source this file.\n"
    );
    for var in PASSWORD_VARS {
        s.push_str(&export_line(var)?);
    }
    Ok(s)
}

fn export_line(var: &str) -> Result<String, SandboxError> {
    let password = if var == VRRP_PASSWORD_VAR {
        vrrp_password()?
    } else {
        random_password(24)?
    };
    Ok(format!("export {var}='{password}'\n"))
}

/// 8 characters (all VRRP PASS authentication uses) with an upper- and a lower-case letter
/// and a digit: so short a secret must not be a word, a number or a piece of lower-case hex
/// that outputs show anyway (tests check that no output holds a password).
fn vrrp_password() -> Result<String, SandboxError> {
    loop {
        let p = random_password(8)?;
        let classes: [fn(&char) -> bool; 3] = [
            char::is_ascii_uppercase,
            char::is_ascii_lowercase,
            char::is_ascii_digit,
        ];
        if classes.iter().all(|class| p.chars().any(|c| class(&c))) {
            return Ok(p);
        }
    }
}

/// Alphanumeric (safe in shell quotes, YAML and connection strings), from /dev/urandom.
fn random_password(len: usize) -> Result<String, SandboxError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut f = fs::File::open("/dev/urandom").map_err(SandboxError::io("/dev/urandom"))?;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        f.read_exact(&mut buf)
            .map_err(SandboxError::io("/dev/urandom"))?;
        // 248 = 4 * 62: rejecting the rest keeps every character equally likely.
        out.extend(
            buf.iter()
                .filter(|b| **b < 248)
                .map(|b| char::from(ALPHABET[usize::from(*b) % 62]))
                .take(len - out.len()),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{Flavour, Routing, SandboxHost};
    use std::net::Ipv4Addr;

    fn info(dir: &Path) -> SandboxInfo {
        SandboxInfo {
            etcd_members: 3,
            name: "My.Box".into(),
            network: "My.Box-net".into(),
            subnet: "10.77.4.0/24".into(),
            hosts: (1..=3)
                .map(|k| SandboxHost {
                    name: format!("pg{k}"),
                    container: format!("My.Box-pg{k}"),
                    ip: Ipv4Addr::new(10, 77, 4, 10 + k),
                    ssh_port: 22,
                })
                .collect(),
            flavour: Flavour::Repmgr,
            image: "pgha-base:bookworm".into(),
            dir: dir.to_path_buf(),
            inventory: dir.join("inventory.yml"),
            key: dir.join("id_ed25519"),
            known_hosts: dir.join("known_hosts"),
            env_file: dir.join("env.sh"),
            ssh_user: "deploy".into(),
            witness: false,
            routing: Vec::new(),
            proxies: 0,
            backups: None,
        }
    }

    #[test]
    fn inventory_has_the_example_keys() {
        let d = tempfile::tempdir().expect("tempdir");
        let text = render_inventory(&info(d.path())).expect("render");
        assert!(!text.contains("routing"), "no routing without --routing");
        let ours: serde_json::Value = serde_saphyr::from_str(&text).expect("valid YAML");
        let example_text = fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/inventory.repmgr.example"
        ))
        .expect("example");
        let example: serde_json::Value =
            serde_saphyr::from_str(&example_text).expect("example YAML");
        assert_same_keys(&example, &ours, "");
        assert_eq!(ours["cluster"]["name"], "my-box");
        assert_eq!(ours["cluster"]["flavour"], "repmgr");
        assert_eq!(ours["hosts"][0]["role"], "primary");
        assert_eq!(ours["hosts"][2]["address"], "10.77.4.13");
        assert_eq!(ours["ssh"]["user"], "deploy");
        assert_eq!(ours["postgres"]["hba"][0]["address"], "10.77.4.0/24");
        assert_eq!(
            ours["replication"]["password"]["env"],
            "PGHA_REPLICATION_PASSWORD"
        );
    }

    /// Every key we write exists in the example at the same place (hosts: per-host keys).
    fn assert_same_keys(example: &serde_json::Value, ours: &serde_json::Value, at: &str) {
        use serde_json::Value::{Array, Object};
        match (example, ours) {
            (Object(e), Object(o)) => {
                for (k, v) in o {
                    let Some(ev) = e.get(k) else {
                        panic!("key {at}.{k} is not in inventory.example")
                    };
                    assert_same_keys(ev, v, &format!("{at}.{k}"));
                }
            }
            (Array(e), Array(o)) => {
                for (i, v) in o.iter().enumerate() {
                    // Compare each of our items with the example item that has the most keys.
                    let Some(ev) = e
                        .iter()
                        .max_by_key(|x| x.as_object().map_or(0, |m| m.len()))
                    else {
                        continue;
                    };
                    assert_same_keys(ev, v, &format!("{at}[{i}]"));
                }
            }
            _ => {}
        }
    }

    #[test]
    fn files_roundtrip_and_are_removed() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = prepare_dir(&d.path().join("state")).expect("dir");
        let i = info(&dir);
        write_all(&i).expect("write");
        let env = fs::read_to_string(&i.env_file).expect("env");
        assert_eq!(env.matches("export PGHA_").count(), PASSWORD_VARS.len());
        assert_eq!(
            fs::metadata(&i.env_file).expect("m").permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&dir).expect("m").permissions().mode() & 0o777,
            0o700
        );
        write_all(&i).expect("again");
        assert_eq!(
            fs::read_to_string(&i.env_file).expect("env"),
            env,
            "passwords are kept"
        );
        assert_eq!(read_state(&dir).expect("read"), Some(i.clone()));
        remove_files(&dir).expect("remove");
        assert!(!dir.exists());
    }

    /// The inventory with `routing` set, and its `routing:` section (between `packages:` and
    /// `ssh:`, the rest of the inventory unchanged).
    fn routing_of(flavour: Flavour, routing: &[Routing]) -> String {
        let d = tempfile::tempdir().expect("tempdir");
        let mut i = info(d.path());
        let plain = render_inventory(&i).expect("render");
        i.flavour = flavour;
        i.routing = routing.to_vec();
        let text = render_inventory(&i).expect("render");
        let _: serde_json::Value = serde_saphyr::from_str(&text).expect("valid YAML");
        let (head, rest) = text.split_once("packages: []\n\n").expect("packages");
        let (section, tail) = rest.split_once("ssh:").expect("ssh");
        i.routing.clear();
        let same_flavour = render_inventory(&i).expect("render");
        assert_eq!(format!("{head}packages: []\n\nssh:{tail}"), same_flavour);
        if flavour == Flavour::Repmgr {
            assert_eq!(same_flavour, plain);
        }
        section.to_owned()
    }

    const VIP: &str = "  vip:
    # A free address of the sandbox's /24: Docker hands out addresses from the bottom of the
    # range (the network is created with --ip-range BASE/25), so .200 is never a host's.
    address: 10.77.4.200/24
    interface: eth0
";

    const KEEPALIVED: &str = "  keepalived:
    # Explicit (pgha never derives one): the sandbox takes its subnet's third byte (0 counts
    # as 1, ids are 1 to 255); each sandbox has its own bridge, so ids never meet anyway.
    virtual_router_id: 4
    password: {env: PGHA_VRRP_PASSWORD}
    unicast: true
";

    const HAPROXY: &str = "  haproxy:
    primary_port: 5000
    replica_port: 5001
    max_lag: 1MB
";

    #[test]
    fn routing_sections() {
        use Routing::{Callback, Haproxy, Keepalived};
        assert_eq!(
            routing_of(Flavour::Patroni, &[Callback]),
            format!("routing:\n{VIP}    mode: callback\n\n")
        );
        assert_eq!(
            routing_of(Flavour::Patroni, &[Callback, Haproxy]),
            format!("routing:\n{VIP}    mode: callback\n{HAPROXY}\n")
        );
        assert_eq!(
            routing_of(Flavour::Repmgr, &[Keepalived]),
            format!("routing:\n{VIP}    mode: keepalived\n{KEEPALIVED}\n")
        );
        assert_eq!(
            routing_of(Flavour::Streaming, &[Keepalived, Haproxy]),
            format!("routing:\n{VIP}    mode: keepalived\n{KEEPALIVED}{HAPROXY}\n")
        );
        assert_eq!(
            routing_of(Flavour::Repmgr, &[Haproxy]),
            format!("routing:\n{HAPROXY}\n"),
            "haproxy alone has no VIP"
        );
    }

    #[test]
    fn proxy_hosts_come_last_and_run_haproxy() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut i = info(d.path());
        i.flavour = Flavour::Streaming;
        i.routing = vec![Routing::Haproxy];
        i.proxies = 1;
        let text = render_inventory(&i).expect("render");
        assert!(
            text.contains("  haproxy:\n    hosts: [pg3]\n    primary_port: 5000\n"),
            "{text}"
        );
        assert!(
            text.contains("  - name: pg2\n    address: 10.77.4.12\n    role: standby\n  - name: pg3\n    address: 10.77.4.13\n    role: proxy\n"),
            "{text}"
        );
        let inv = crate::inventory::load_str(&i.inventory, &text).expect("loads");
        assert_eq!(inv.cluster.hosts[2].role.name(), "proxy");
    }

    #[test]
    fn router_id_comes_from_the_subnet() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut i = info(d.path());
        i.routing = vec![Routing::Keepalived];
        for (subnet, id) in [
            ("10.77.0.0/24", 1),
            ("10.77.1.0/24", 1),
            ("10.77.255.0/24", 255),
        ] {
            i.subnet = subnet.into();
            let text = render_inventory(&i).expect("render");
            assert!(
                text.contains(&format!("\n    virtual_router_id: {id}\n")),
                "{subnet}: {text}"
            );
        }
        i.subnet = "10.77.4.0".into();
        assert!(render_inventory(&i).is_err());
    }

    #[test]
    fn state_keeps_routing_and_old_state_loads() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = prepare_dir(&d.path().join("state")).expect("dir");
        let mut i = info(&dir);
        i.routing = vec![Routing::Keepalived, Routing::Haproxy];
        write_all(&i).expect("write");
        let json = fs::read_to_string(state_path(&dir)).expect("state");
        assert!(json.contains("\"keepalived\""), "{json}");
        assert_eq!(read_state(&dir).expect("read"), Some(i.clone()));

        // A state.json of an earlier pgha: no routing (nor etcd_members, witness).
        let mut old: serde_json::Value = serde_json::from_str(&json).expect("json");
        let fields = old.as_object_mut().expect("object");
        for k in ["routing", "etcd_members", "witness"] {
            fields.remove(k);
        }
        fs::write(state_path(&dir), old.to_string()).expect("write old");
        let loaded = read_state(&dir).expect("old state loads").expect("some");
        assert!(loaded.routing.is_empty());
        assert_eq!(loaded.hosts, i.hosts);
    }

    #[test]
    fn env_gets_missing_variables_appended() {
        let d = tempfile::tempdir().expect("tempdir");
        let env = d.path().join("env.sh");
        // An env.sh written before PGHA_VRRP_PASSWORD existed (without a final newline).
        let old: String = PASSWORD_VARS
            .iter()
            .filter(|v| **v != VRRP_PASSWORD_VAR)
            .map(|v| format!("export {v}='kept-{v}'\n"))
            .collect();
        let old = format!("# my comment\n{}", old.trim_end());
        fs::write(&env, &old).expect("write");
        ensure_env(&env, "s").expect("ensure");
        let text = fs::read_to_string(&env).expect("env");
        let (kept, added) = text.split_at(old.len());
        assert_eq!(kept, old, "the other values are kept");
        let password = added
            .strip_prefix("\nexport PGHA_VRRP_PASSWORD='")
            .and_then(|p| p.strip_suffix("'\n"))
            .unwrap_or_else(|| panic!("{added:?}"));
        assert_eq!(password.len(), 8);
        assert_eq!(
            fs::metadata(&env).expect("m").permissions().mode() & 0o777,
            0o600
        );
        ensure_env(&env, "s").expect("again");
        assert_eq!(
            fs::read_to_string(&env).expect("env"),
            text,
            "nothing twice"
        );

        assert!(defines("VAR=1\n", "VAR"));
        assert!(defines("  export VAR='x'\n", "VAR"));
        assert!(!defines("export VARIABLE=1\n# VAR=1\n", "VAR"));
    }

    #[test]
    fn passwords_and_names() {
        let p = random_password(24).expect("random");
        assert_eq!(p.len(), 24);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(p, random_password(24).expect("random"));
        for _ in 0..20 {
            let v = vrrp_password().expect("random");
            assert_eq!(v.len(), 8);
            assert!(v.chars().any(|c| c.is_ascii_uppercase()), "{v}");
            assert!(v.chars().any(|c| c.is_ascii_lowercase()), "{v}");
            assert!(v.chars().any(|c| c.is_ascii_digit()), "{v}");
            assert!(v.chars().all(|c| c.is_ascii_alphanumeric()), "{v}");
        }
        assert_eq!(cluster_name("It_1.X"), "it_1-x");
        assert_eq!(quoted("a\"b\\c"), r#""a\"b\\c""#);
    }
}
