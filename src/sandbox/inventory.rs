//! Files in the state folder: the inventory (same keys as `inventory.example`), `env.sh` with
//! generated passwords, and `state.json` (the [`SandboxInfo`]).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{note, SandboxError, SandboxInfo};

/// The PGHA_* variables the inventory refers to, in `env.sh` order.
pub(crate) const PASSWORD_VARS: [&str; 6] = [
    "PGHA_REPLICATION_PASSWORD",
    "PGHA_SUPERUSER_PASSWORD",
    "PGHA_APP_PASSWORD",
    "PGHA_REWIND_PASSWORD",
    "PGHA_REPMGR_PASSWORD",
    "PGHA_RESTAPI_PASSWORD",
];

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
    write_file(&info.inventory, &render_inventory(info), 0o644)?;
    if !info.env_file.is_file() {
        write_file(&info.env_file, &render_env(&info.name)?, 0o600)?;
    }
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

/// The inventory, with exactly the keys of `inventory.example`.
pub(crate) fn render_inventory(info: &SandboxInfo) -> String {
    let mut hosts = String::new();
    let last = info.hosts.len().saturating_sub(1);
    for (i, h) in info.hosts.iter().enumerate() {
        let role = match i {
            0 => "primary",
            i if i == last && info.witness => "witness",
            _ => "standby",
        };
        hosts.push_str(&format!(
            "  - name: {}\n    address: {}\n    role: {role}\n",
            h.name, h.ip
        ));
    }
    format!(
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

ssh:
  user: {user}
  port: 22
  identity_file: {key}
  host_key_policy: strict
  known_hosts: {known_hosts}
  connect_timeout: 10

{patroni}hosts:
{hosts}"#,
        patroni = flavour_section(info),
        sandbox = info.name,
        env = info.env_file.display(),
        cluster = cluster_name(&info.name),
        flavour = info.flavour.as_str(),
        subnet = info.subnet,
        user = quoted(&info.ssh_user),
        key = quoted(&info.key.to_string_lossy()),
        known_hosts = quoted(&info.known_hosts.to_string_lossy()),
    )
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

/// `env.sh`: one random password per variable.
fn render_env(sandbox: &str) -> Result<String, SandboxError> {
    let mut s = format!(
        "# pgha sandbox {sandbox:?}: passwords for the inventory's {{env: ...}} references.\n\
         # Generated once by `pgha sandbox up`; private to this sandbox. Use: source this file.\n"
    );
    for var in PASSWORD_VARS {
        s.push_str(&format!("export {var}='{}'\n", random_password(24)?));
    }
    Ok(s)
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
    use crate::sandbox::{Flavour, SandboxHost};
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
        }
    }

    #[test]
    fn inventory_has_the_example_keys() {
        let d = tempfile::tempdir().expect("tempdir");
        let text = render_inventory(&info(d.path()));
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

    #[test]
    fn passwords_and_names() {
        let p = random_password(24).expect("random");
        assert_eq!(p.len(), 24);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(p, random_password(24).expect("random"));
        assert_eq!(cluster_name("It_1.X"), "it_1-x");
        assert_eq!(quoted("a\"b\\c"), r#""a\"b\\c""#);
    }
}
