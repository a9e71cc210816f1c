//! `pgha sandbox` for real: Docker engine, image, three hosts, SSH with strict host key checking
//! as root and as a sudo user, idempotent `up`, `status`, `down` leaving nothing behind.
//!
//! These tests fail (they never skip) when Docker cannot be prepared: the other integration
//! tests depend on sandboxes, so a machine where they cannot run must be noticed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pgha::sandbox::{self, SandboxInfo, UpOptions, LABEL};

/// Tears the sandbox down when dropped, so a failed assertion leaves no containers behind.
struct Teardown {
    name: String,
    dir: PathBuf,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if let Err(e) = sandbox::down(&self.name, &self.dir) {
            eprintln!("teardown of sandbox {} failed: {e}", self.name);
        }
    }
}

/// Unique per test and process, so parallel runs and earlier leftovers never collide.
fn unique_name(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("it-{tag}-{}-{}", std::process::id(), nanos % 100_000)
}

fn ssh(info: &SandboxInfo, ip: &str, user: &str, known_hosts: &Path, command: &str) -> Output {
    Command::new("ssh")
        .arg("-i")
        .arg(&info.key)
        .args(["-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "GlobalKnownHostsFile=/dev/null"])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=10",
        ])
        .args(["-p", "22"])
        .arg(format!("{user}@{ip}"))
        .arg(command)
        .output()
        .expect("run ssh")
}

fn ssh_ok(info: &SandboxInfo, ip: &str, user: &str, command: &str) -> String {
    let out = ssh(info, ip, user, &info.known_hosts, command);
    assert!(
        out.status.success(),
        "ssh {user}@{ip} {command:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Ids of containers or networks carrying the sandbox label.
fn labelled(what: &[&str], name: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(what)
        .args(["-q", "--filter", &format!("label={LABEL}={name}")])
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {what:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn sandbox_up_ssh_as_root_and_deploy_then_down() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("state");
    let name = unique_name("ssh");
    let guard = Teardown {
        name: name.clone(),
        dir: dir.clone(),
    };

    let mut opts = UpOptions::new(&name, &dir);
    opts.ssh_user = Some("deploy".into());
    let t = Instant::now();
    let info = sandbox::up(&opts).unwrap_or_else(|e| panic!("sandbox up failed: {e}"));
    eprintln!(
        "sandbox up ({name}, 3 hosts): {:.1} s",
        t.elapsed().as_secs_f64()
    );

    assert_eq!(info.hosts.len(), 3);
    assert_eq!(info.ssh_user, "deploy");
    for f in [
        &info.key,
        &info.known_hosts,
        &info.inventory,
        &info.env_file,
    ] {
        assert!(f.is_absolute() && f.is_file(), "{} missing", f.display());
    }
    assert_eq!(mode(&info.key), 0o600);
    assert_eq!(mode(&info.env_file), 0o600);
    let inventory = std::fs::read_to_string(&info.inventory).expect("inventory");
    let known_hosts = std::fs::read_to_string(&info.known_hosts).expect("known_hosts");
    for (k, h) in info.hosts.iter().enumerate() {
        let ip = h.ip.to_string();
        assert_eq!(h.name, format!("pg{}", k + 1));
        assert_eq!(h.container, format!("{name}-pg{}", k + 1));
        assert!(
            inventory.contains(&format!("address: {ip}\n")),
            "{ip} not in inventory"
        );
        assert!(
            known_hosts.contains(&format!("{ip} ssh-ed25519 ")),
            "{ip} not in known_hosts"
        );

        assert_eq!(ssh_ok(&info, &ip, "root", "hostname"), h.name);
        assert_eq!(ssh_ok(&info, &ip, "deploy", "hostname"), h.name);
        assert_eq!(ssh_ok(&info, &ip, "deploy", "id -un"), "deploy");
        assert_eq!(
            ssh_ok(&info, &ip, "deploy", "sudo -n true && sudo -n id -u"),
            "0"
        );
    }
    // Host key checking is really on: without the recorded keys ssh refuses.
    let empty = tmp.path().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write");
    let refused = ssh(&info, &info.hosts[0].ip.to_string(), "root", &empty, "true");
    assert!(
        !refused.status.success(),
        "ssh must refuse an unknown host key"
    );
    // Each host has its own host key.
    let keys: std::collections::HashSet<&str> = known_hosts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(keys.len(), 3, "host keys must differ:\n{known_hosts}");

    // A second `up` keeps the running hosts (same addresses, same host keys).
    let t = Instant::now();
    let again = sandbox::up(&opts).unwrap_or_else(|e| panic!("second sandbox up failed: {e}"));
    eprintln!(
        "sandbox up again (all running): {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(again, info);
    assert_eq!(
        std::fs::read_to_string(&info.known_hosts).expect("known_hosts"),
        known_hosts
    );

    let st = sandbox::status(&name, &dir).unwrap_or_else(|e| panic!("status failed: {e}"));
    assert!(st.engine_running);
    assert_eq!(st.hosts.len(), 3);
    assert!(
        st.hosts.iter().all(|h| h.running && h.sshd),
        "{:?}",
        st.hosts
    );

    sandbox::down(&name, &dir).unwrap_or_else(|e| panic!("sandbox down failed: {e}"));
    assert!(
        labelled(&["ps", "-a"], &name).is_empty(),
        "containers left behind"
    );
    assert!(
        labelled(&["network", "ls"], &name).is_empty(),
        "network left behind"
    );
    for f in [
        &info.key,
        &info.known_hosts,
        &info.inventory,
        &info.env_file,
    ] {
        assert!(!f.exists(), "{} left behind", f.display());
    }
    assert!(!dir.exists(), "state folder left behind");
    drop(guard);
}

#[test]
fn two_sandboxes_side_by_side_and_recovery_from_a_killed_host() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let names = [unique_name("a"), unique_name("b")];
    let dirs = [tmp.path().join("a"), tmp.path().join("b")];
    let _guards: Vec<Teardown> = names
        .iter()
        .zip(&dirs)
        .map(|(n, d)| Teardown {
            name: n.clone(),
            dir: d.clone(),
        })
        .collect();

    let infos: Vec<SandboxInfo> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .zip(&dirs)
            .map(|(n, d)| {
                s.spawn(move || {
                    let mut o = UpOptions::new(n, d);
                    o.hosts = 1;
                    sandbox::up(&o)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .expect("thread")
                    .unwrap_or_else(|e| panic!("sandbox up failed: {e}"))
            })
            .collect()
    });
    assert_ne!(
        infos[0].subnet, infos[1].subnet,
        "sandboxes must get different subnets"
    );
    for i in &infos {
        assert_eq!(
            ssh_ok(i, &i.hosts[0].ip.to_string(), "root", "hostname"),
            "pg1"
        );
    }

    // A killed host is started again (not recreated: its data stays) by the next `up`.
    ssh_ok(
        &infos[0],
        &infos[0].hosts[0].ip.to_string(),
        "root",
        "touch /var/tmp/marker",
    );
    let killed = Command::new("docker")
        .args(["kill", &infos[0].hosts[0].container])
        .output()
        .expect("docker kill");
    assert!(killed.status.success());
    let mut o = UpOptions::new(&names[0], &dirs[0]);
    o.hosts = 1;
    let again = sandbox::up(&o).unwrap_or_else(|e| panic!("sandbox up after kill failed: {e}"));
    assert_eq!(again.hosts, infos[0].hosts);
    assert_eq!(
        ssh_ok(&again, &again.hosts[0].ip.to_string(), "root", "hostname"),
        "pg1"
    );
    ssh_ok(
        &again,
        &again.hosts[0].ip.to_string(),
        "root",
        "test -f /var/tmp/marker",
    );

    for (n, d) in names.iter().zip(&dirs) {
        sandbox::down(n, d).unwrap_or_else(|e| panic!("down failed: {e}"));
        assert!(labelled(&["ps", "-a"], n).is_empty());
        assert!(labelled(&["network", "ls"], n).is_empty());
    }
}

#[test]
fn sandbox_with_packages_image() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("state");
    let name = unique_name("pkg");
    let _guard = Teardown {
        name: name.clone(),
        dir: dir.clone(),
    };
    let mut opts = UpOptions::new(&name, &dir);
    opts.hosts = 2;
    opts.image_with_packages = true;
    let t = Instant::now();
    let info = sandbox::up(&opts).unwrap_or_else(|e| panic!("sandbox up failed: {e}"));
    eprintln!(
        "sandbox up with packages (2 hosts): {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(info.image, sandbox::PG_IMAGE);
    let ip = info.hosts[0].ip.to_string();
    let installed = ssh_ok(
        &info,
        &ip,
        "root",
        "dpkg-query -W -f '${Package}\\n' postgresql-15 postgresql-15-repmgr patroni etcd-server \
         etcd-client keepalived haproxy",
    );
    assert_eq!(installed.lines().count(), 7, "{installed}");
    // As a fresh install leaves it: the Debian cluster 15/main exists.
    let clusters = ssh_ok(&info, &ip, "root", "pg_lsclusters -h");
    assert!(clusters.starts_with("15 main 5432"), "{clusters}");
    // The image carries no identity of the container it was built in.
    let ids: std::collections::HashSet<String> = info
        .hosts
        .iter()
        .map(|h| ssh_ok(&info, &h.ip.to_string(), "root", "cat /etc/machine-id"))
        .collect();
    assert_eq!(ids.len(), 2, "machine-ids must differ: {ids:?}");
    let known_hosts = std::fs::read_to_string(&info.known_hosts).expect("known_hosts");
    let keys: std::collections::HashSet<&str> = known_hosts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(keys.len(), 2, "host keys must differ:\n{known_hosts}");
    sandbox::down(&name, &dir).unwrap_or_else(|e| panic!("down failed: {e}"));
}
