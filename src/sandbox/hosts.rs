//! The host containers: systemd as PID 1, fixed addresses, started in parallel, ready when
//! sshd answers.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::cmd::{self, docker};
use super::keys;
use super::keys::ReadyHost;
use super::network::Net;
use super::{note, HostStatus, SandboxError, SandboxHost, LABEL};

const SSHD_WAIT: Duration = Duration::from_secs(60);

/// What [`ensure_hosts`] needs to know.
pub(crate) struct HostsSpec<'a> {
    pub(crate) sandbox: &'a str,
    pub(crate) network: &'a Net,
    pub(crate) count: usize,
    pub(crate) image: &'a str,
    pub(crate) public_key: &'a str,
    pub(crate) ssh_user: Option<&'a str>,
    /// `HOST_FOLDER:CONTAINER_FOLDER` bind mounts on every host (a shared folder).
    pub(crate) mounts: &'a [String],
}

/// Flags every host container needs for systemd as PID 1 (`--privileged` fails here).
/// SIGRTMIN+3 makes `docker stop` a clean systemd shutdown (`docker import` cannot set it).
pub(crate) const SYSTEMD_RUN_FLAGS: &[&str] = &[
    "--stop-signal",
    "SIGRTMIN+3",
    "--cap-add",
    "SYS_ADMIN",
    "--cap-add",
    "NET_ADMIN",
    "--security-opt",
    "seccomp=unconfined",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:ro",
];

/// A container labelled for the sandbox, as Docker reports it.
#[derive(Debug, Clone)]
struct Existing {
    container: String,
    host: String,
    running: bool,
    image: String,
    /// Address on the sandbox network (none if not attached).
    ip: Option<Ipv4Addr>,
}

pub(crate) fn container_name(sandbox: &str, k: usize) -> String {
    format!("{sandbox}-pg{k}")
}

/// Bring hosts pg1..pgN to "running with sshd and our key", reusing what already fits.
pub(crate) fn ensure_hosts(spec: &HostsSpec<'_>) -> Result<Vec<ReadyHost>, SandboxError> {
    let existing = list(spec.sandbox, &spec.network.name)?;
    // Containers of this sandbox that are not one of pg1..pgN (an earlier, larger `up`).
    let wanted: Vec<String> = (1..=spec.count)
        .map(|k| container_name(spec.sandbox, k))
        .collect();
    for e in existing.iter().filter(|e| !wanted.contains(&e.container)) {
        note(format!(
            "removing {} (not part of a {}-host sandbox)",
            e.container, spec.count
        ));
        cmd::run(docker().args(["rm", "-f", &e.container]))?;
    }
    let results: Vec<Result<ReadyHost, SandboxError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=spec.count)
            .map(|k| {
                let found = existing
                    .iter()
                    .find(|e| e.container == wanted[k - 1])
                    .cloned();
                s.spawn(move || ensure_host(spec, k, found))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(SandboxError::Failed("a host setup thread panicked".into()))
                })
            })
            .collect()
    });
    results.into_iter().collect()
}

fn ensure_host(
    spec: &HostsSpec<'_>,
    k: usize,
    found: Option<Existing>,
) -> Result<ReadyHost, SandboxError> {
    let container = container_name(spec.sandbox, k);
    let host = format!("pg{k}");
    let ip = spec.network.host_ip(k);
    match found {
        Some(e) if e.ip == Some(ip) && e.image == spec.image && e.host == host => {
            if !e.running {
                note(format!("starting stopped {container}"));
                if cmd::run(docker().args(["start", &container])).is_err() {
                    note(format!("{container} does not start; recreating it"));
                    recreate(spec, &container, &host, ip)?;
                }
            }
        }
        Some(e) => {
            note(format!(
                "recreating {container} (address {:?}, image {})",
                e.ip.map(|i| i.to_string()),
                e.image
            ));
            recreate(spec, &container, &host, ip)?;
        }
        None => create(spec, &container, &host, ip)?,
    }
    wait_sshd(&container, ip)?;
    // A server a DBA points pgha at booted long ago: nothing may start behind pgha's back
    // halfway through an apply (the packaged PostgreSQL starting late, say).
    wait_booted(&container, Duration::from_secs(90))?;
    keys::install_access(&container, spec.public_key, spec.ssh_user)?;
    let host_key = keys::host_key(&container)?;
    Ok(ReadyHost {
        host: SandboxHost {
            name: host,
            container,
            ip,
            ssh_port: 22,
        },
        host_key,
    })
}

fn recreate(
    spec: &HostsSpec<'_>,
    container: &str,
    host: &str,
    ip: Ipv4Addr,
) -> Result<(), SandboxError> {
    cmd::run(docker().args(["rm", "-f", container]))?;
    create(spec, container, host, ip)
}

fn create(
    spec: &HostsSpec<'_>,
    container: &str,
    host: &str,
    ip: Ipv4Addr,
) -> Result<(), SandboxError> {
    let mut run = docker();
    run.args(["run", "-d", "--name", container, "--hostname", host])
        .args(["--label", &format!("{LABEL}={}", spec.sandbox)])
        .args(["--label", &format!("pgha.host={host}")])
        .args(["--network", &spec.network.name, "--ip", &ip.to_string()])
        // Hosts find each other by short name too (pg1, pg2...), like on a real LAN.
        .args(["--network-alias", host])
        .args(spec.mounts.iter().flat_map(|m| ["-v", m.as_str()]))
        .args(SYSTEMD_RUN_FLAGS)
        .args([spec.image, "/lib/systemd/systemd"]);
    cmd::run(&mut run).map(|_| ())
}

/// Whether sshd answers with its banner (a port that merely accepts is not enough).
pub(crate) fn sshd_answers(ip: Ipv4Addr, timeout: Duration) -> bool {
    let addr = SocketAddr::from((ip, 22));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).is_ok() && &buf == b"SSH-"
}

/// Wait for sshd; fail early, with the container's log, if the container stops.
fn wait_sshd(container: &str, ip: Ipv4Addr) -> Result<(), SandboxError> {
    let deadline = Instant::now() + SSHD_WAIT;
    let mut rounds = 0u32;
    while Instant::now() < deadline {
        if sshd_answers(ip, Duration::from_secs(1)) {
            return Ok(());
        }
        rounds += 1;
        if rounds % 8 == 0 && !is_running(container) {
            return Err(SandboxError::Failed(format!(
                "container {container} stopped while booting; its log:\n{}",
                logs(container)
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(SandboxError::Timeout {
        what: format!("sshd on {container} ({ip}:22)"),
        seconds: SSHD_WAIT.as_secs(),
        hint: format!(
            "; check `docker exec {container} systemctl status ssh`; container log:\n{}",
            logs(container)
        ),
    })
}

fn is_running(container: &str) -> bool {
    let mut c = docker();
    c.args(["inspect", "--format", "{{.State.Running}}", container]);
    cmd::run(&mut c).is_ok_and(|s| s == "true")
}

fn logs(container: &str) -> String {
    let mut c = docker();
    c.args(["logs", "--tail", "30", container]);
    match cmd::output(&mut c, None) {
        Ok(o) => cmd::tail(
            &format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            2000,
        ),
        Err(e) => e.to_string(),
    }
}

/// Wait until systemd has finished booting (running or degraded) in a container.
pub(crate) fn wait_booted(container: &str, timeout: Duration) -> Result<(), SandboxError> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut c = docker();
        c.args(["exec", container, "systemctl", "is-system-running"]);
        if let Ok(o) = cmd::output(&mut c, None) {
            last = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if last == "running" || last == "degraded" {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(SandboxError::Timeout {
        what: format!("systemd to boot in {container}"),
        seconds: timeout.as_secs(),
        hint: format!(
            " (last state {last:?}); container log:\n{}",
            logs(container)
        ),
    })
}

/// The sandbox's containers (by label) with their state and address on `network`.
fn list(sandbox: &str, network: &str) -> Result<Vec<Existing>, SandboxError> {
    let mut ps = docker();
    ps.args(["ps", "-aq", "--filter", &format!("label={LABEL}={sandbox}")]);
    let ids = cmd::run(&mut ps)?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let format = format!(
        "{{{{.Name}}}}|{{{{index .Config.Labels \"pgha.host\"}}}}|{{{{.State.Running}}}}|{{{{.Config.Image}}}}|\
         {{{{with index .NetworkSettings.Networks \"{network}\"}}}}{{{{.IPAddress}}}},\
         {{{{with .IPAMConfig}}}}{{{{.IPv4Address}}}}{{{{end}}}}{{{{end}}}}"
    );
    let mut inspect = docker();
    inspect.args(["inspect", "--format", &format]).args(&ids);
    let out = cmd::run(&mut inspect)?;
    Ok(out.lines().filter_map(parse_inspect_line).collect())
}

fn parse_inspect_line(line: &str) -> Option<Existing> {
    let f: Vec<&str> = line.trim().split('|').collect();
    if f.len() != 5 {
        return None;
    }
    Some(Existing {
        container: f[0].trim_start_matches('/').to_string(),
        host: f[1].to_string(),
        running: f[2] == "true",
        image: f[3].to_string(),
        // A stopped container has no IPAddress; its static address is still in IPAMConfig.
        ip: f[4].split(',').find_map(|a| a.parse().ok()),
    })
}

/// Rows for `status`, sorted by host name.
pub(crate) fn status(
    sandbox: &str,
    network: &str,
    timeout: Duration,
) -> Result<Vec<HostStatus>, SandboxError> {
    let mut rows: Vec<HostStatus> = list(sandbox, network)?
        .into_iter()
        .map(|e| HostStatus {
            sshd: e.running && e.ip.is_some_and(|ip| sshd_answers(ip, timeout)),
            host: e.host,
            container: e.container,
            ip: e.ip,
            running: e.running,
        })
        .collect();
    rows.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(rows)
}

/// Remove every container labelled for the sandbox.
pub(crate) fn remove_all(sandbox: &str) -> Result<(), SandboxError> {
    let mut ps = docker();
    ps.args(["ps", "-aq", "--filter", &format!("label={LABEL}={sandbox}")]);
    let ids = cmd::run(&mut ps)?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        note(format!(
            "removing {} container(s) of sandbox {sandbox}",
            ids.len()
        ));
        cmd::run(docker().args(["rm", "-f", "-v"]).args(&ids))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_inspect() {
        let e = parse_inspect_line("/s-pg1|pg1|true|pgha-base:bookworm|10.77.3.11,10.77.3.11")
            .expect("line");
        assert_eq!(e.container, "s-pg1");
        assert_eq!(e.ip, Some(Ipv4Addr::new(10, 77, 3, 11)));
        assert!(e.running);
        let e = parse_inspect_line("/s-pg2|pg2|false|img|,10.77.3.12").expect("line");
        assert_eq!(e.ip, Some(Ipv4Addr::new(10, 77, 3, 12)));
        let e = parse_inspect_line("/s-pg2|pg2|false|img|").expect("line");
        assert_eq!(e.ip, None);
        assert!(parse_inspect_line("garbage").is_none());
        assert_eq!(container_name("s", 3), "s-pg3");
    }
}
