//! SSH access to the hosts: one key pair per sandbox, the public key for root (and the
//! `--ssh-user`), and every host's real host key in a known_hosts file, so pgha connects with
//! strict host key checking like it would to real servers.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cmd::{self, docker};
use super::inventory::write_file;
use super::{note, SandboxError, SandboxHost};

/// A ready host and the host key it presents.
pub(crate) struct ReadyHost {
    pub(crate) host: SandboxHost,
    /// "ssh-ed25519 AAAA..."
    pub(crate) host_key: String,
}

/// The key pair in `dir` (reused when present, so re-running `up` keeps working sessions);
/// returns the private key path and the public key line.
pub(crate) fn ensure_keypair(dir: &Path, sandbox: &str) -> Result<(PathBuf, String), SandboxError> {
    let key = dir.join("id_ed25519");
    let public = dir.join("id_ed25519.pub");
    if key.is_file() {
        let line = match fs::read_to_string(&public) {
            Ok(l) if l.starts_with("ssh-ed25519 ") => l,
            // The public half is derived from the private key when it went missing.
            _ => {
                let l = cmd::run(Command::new("ssh-keygen").args(["-y", "-f"]).arg(&key))?;
                write_file(&public, &format!("{l}\n"), 0o644)?;
                l
            }
        };
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600))
            .map_err(SandboxError::io(&key))?;
        return Ok((key, line.trim().to_string()));
    }
    let _ = fs::remove_file(&public);
    note(format!("generating SSH key {}", key.display()));
    let mut c = Command::new("ssh-keygen");
    c.args([
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        &format!("pgha-sandbox-{sandbox}"),
        "-f",
    ])
    .arg(&key);
    cmd::run(&mut c).map_err(|e| match e {
        SandboxError::Spawn { .. } => SandboxError::Missing {
            program: "ssh-keygen".into(),
            hint: "install the OpenSSH client (`apt-get install -y openssh-client`)".into(),
        },
        other => other,
    })?;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).map_err(SandboxError::io(&key))?;
    let line = fs::read_to_string(&public).map_err(SandboxError::io(&public))?;
    Ok((key, line.trim().to_string()))
}

/// Root's authorized key, and for `user`: the account (home, bash), its authorized key and
/// passwordless sudo.
///
/// `NOPASSWD: ALL` is acceptable here only because this is a throwaway test host: the deploy
/// user pgha logs in as must run `sudo -n` non-interactively. The sudoers file is checked with
/// `visudo -cf` before it is installed, so a bad file never locks sudo.
const ACCESS_SCRIPT: &str = r#"set -eu
key=$(cat)
install -d -m 700 -o root -g root /root/.ssh
printf '%s\n' "$key" > /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
u="${1:-}"
[ -n "$u" ] || exit 0
id -u "$u" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$u"
# '*' instead of useradd's '!': no password, but not a "locked" account sshd would refuse.
usermod -p '*' "$u"
g=$(id -gn "$u")
home=$(getent passwd "$u" | cut -d: -f6)
install -d -m 700 -o "$u" -g "$g" "$home/.ssh"
printf '%s\n' "$key" > "$home/.ssh/authorized_keys"
chown "$u:$g" "$home/.ssh/authorized_keys"
chmod 600 "$home/.ssh/authorized_keys"
tmp=$(mktemp)
printf '# pgha sandbox (test hosts only): the deploy user needs non-interactive sudo -n.\n%s ALL=(ALL:ALL) NOPASSWD: ALL\n' "$u" > "$tmp"
visudo -cf "$tmp" >/dev/null
install -m 440 -o root -g root "$tmp" "/etc/sudoers.d/pgha-sandbox-$u"
rm -f "$tmp"
"#;

/// Install the public key (and the user) in a running container; `docker exec` bootstraps
/// what SSH cannot yet do.
pub(crate) fn install_access(
    container: &str,
    public_key: &str,
    user: Option<&str>,
) -> Result<(), SandboxError> {
    let mut c = docker();
    c.args(["exec", "-i", container, "sh", "-c", ACCESS_SCRIPT, "sh"]);
    if let Some(u) = user {
        c.arg(u);
    }
    cmd::run_input(&mut c, format!("{public_key}\n").as_bytes()).map(|_| ())
}

/// The host's ed25519 public key, as "ssh-ed25519 AAAA..." (without the comment).
pub(crate) fn host_key(container: &str) -> Result<String, SandboxError> {
    let mut c = docker();
    c.args([
        "exec",
        container,
        "cat",
        "/etc/ssh/ssh_host_ed25519_key.pub",
    ]);
    let line = cmd::run(&mut c)?;
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some(t @ "ssh-ed25519"), Some(k)) => Ok(format!("{t} {k}")),
        _ => Err(SandboxError::Failed(format!(
            "{container}: unexpected /etc/ssh/ssh_host_ed25519_key.pub: {line:?}"
        ))),
    }
}

/// One `IP ssh-ed25519 AAAA...` line per host (port 22, so no [host]:port form).
pub(crate) fn known_hosts_text(hosts: &[ReadyHost]) -> String {
    hosts
        .iter()
        .map(|h| format!("{} {}\n", h.host.ip, h.host_key))
        .collect()
}

pub(crate) fn write_known_hosts(path: &Path, hosts: &[ReadyHost]) -> Result<(), SandboxError> {
    write_file(path, &known_hosts_text(hosts), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn known_hosts_lines() {
        let h = ReadyHost {
            host: SandboxHost {
                name: "pg1".into(),
                container: "s-pg1".into(),
                ip: Ipv4Addr::new(10, 77, 1, 11),
                ssh_port: 22,
            },
            host_key: "ssh-ed25519 AAAAC3Nza".into(),
        };
        assert_eq!(known_hosts_text(&[h]), "10.77.1.11 ssh-ed25519 AAAAC3Nza\n");
    }

    #[test]
    fn keypair_is_created_then_reused() {
        let d = tempfile::tempdir().expect("tempdir");
        let (k, pubkey) = ensure_keypair(d.path(), "t").expect("keygen");
        assert!(pubkey.starts_with("ssh-ed25519 "));
        let mode = fs::metadata(&k).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::remove_file(d.path().join("id_ed25519.pub")).expect("rm");
        let (_, again) = ensure_keypair(d.path(), "t").expect("reuse");
        assert_eq!(
            again.split_whitespace().take(2).collect::<Vec<_>>(),
            pubkey.split_whitespace().take(2).collect::<Vec<_>>()
        );
    }
}
