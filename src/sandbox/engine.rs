//! The Docker engine (and debootstrap) installed and answering before anything else.
//!
//! Why we start `dockerd` ourselves: on the machines this runs on nothing else does (PID 1 is
//! not systemd), and an engine from a killed earlier session leaves a stale pid file behind
//! that makes a new `dockerd` refuse to start.

use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cmd::{self, docker, find_program, is_root, process_is};
use super::lock::{lock_path, FileLock};
use super::{note, SandboxError};

const WAIT: Duration = Duration::from_secs(60);
const PID_FILE: &str = "/var/run/docker.pid";
/// dockerd reuses "its" containerd when this pid is alive, and a zombie counts as alive for
/// it: it then waits forever on a socket nobody serves.
const CONTAINERD_PID_FILE: &str = "/var/run/docker/containerd/containerd.pid";
const LOG: &str = "/var/log/pgha-dockerd.log";

/// Whether `docker info` reaches a running engine.
pub(crate) fn answers() -> bool {
    let mut c = docker();
    c.args(["info", "--format", "{{.ServerVersion}}"]);
    matches!(cmd::output(&mut c, None), Ok(o) if o.status.success() && !o.stdout.trim_ascii().is_empty())
}

/// Whether the engine and its client are installed (running or not).
pub(crate) fn installed() -> bool {
    find_program("dockerd").is_some() && find_program("docker").is_some()
}

/// Make `docker` work: install docker.io (root only), start the engine, wait for it.
pub(crate) fn ensure_engine() -> Result<(), SandboxError> {
    if answers() {
        return Ok(());
    }
    let root = is_root();
    if !installed() {
        if !root {
            return Err(SandboxError::Missing {
                program: "dockerd".into(),
                hint:
                    "install the Docker engine as root (`sudo apt-get install -y docker.io`), or \
                       run `pgha sandbox up` as root and it installs it"
                        .into(),
            });
        }
        note("installing docker.io with apt-get");
        apt_install(&["docker.io"])?;
        if answers() {
            return Ok(());
        }
    }
    if !root {
        return Err(SandboxError::EngineDown {
            hint: "start it as root (`sudo systemctl start docker`, or `sudo dockerd &`), or run \
                   `pgha sandbox up` as root and it starts it"
                .into(),
        });
    }
    let _lock = FileLock::acquire(&lock_path("pgha-engine.lock"), "starting Docker", WAIT * 2)?;
    if answers() {
        return Ok(());
    }
    let t = Instant::now();
    if Path::new("/run/systemd/system").is_dir() && find_program("systemctl").is_some() {
        note("starting the Docker engine (systemctl start docker)");
        cmd::run(Command::new("systemctl").args(["start", "docker"]))?;
    } else if let Some(pid) = running_dockerd() {
        note(format!(
            "dockerd (pid {pid}) is running but not answering yet; waiting"
        ));
    } else {
        start_dockerd()?;
    }
    wait_for_engine()?;
    note(format!(
        "Docker engine answering after {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// A live dockerd, if any. Removes pid files left by a dead dockerd or containerd (they would
/// stop or hang a new start).
fn running_dockerd() -> Option<u32> {
    if let Some(pid) = live_pid_or_clear(PID_FILE, "dockerd") {
        return Some(pid);
    }
    // A dockerd started with another pid file: starting a second one would fail.
    let procs = std::fs::read_dir("/proc").ok()?;
    let other = procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| process_is(*pid, "dockerd"));
    if other.is_none() {
        live_pid_or_clear(CONTAINERD_PID_FILE, "containerd");
    }
    other
}

/// The pid in `file` if it is a live `comm`; otherwise the file is removed.
fn live_pid_or_clear(file: &str, comm: &str) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    match text.trim().parse::<u32>() {
        Ok(pid) if process_is(pid, comm) => Some(pid),
        _ => {
            note(format!(
                "removing stale {file} (pid {} is not a running {comm})",
                text.trim()
            ));
            let _ = std::fs::remove_file(file);
            None
        }
    }
}

/// Start dockerd detached (own session, output to a log) so it outlives this process.
fn start_dockerd() -> Result<(), SandboxError> {
    let dockerd = find_program("dockerd").ok_or_else(|| SandboxError::Missing {
        program: "dockerd".into(),
        hint: "install docker.io (`apt-get install -y docker.io`)".into(),
    })?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(LOG)
        .map_err(SandboxError::io(LOG))?;
    let log2 = log.try_clone().map_err(SandboxError::io(LOG))?;
    note(format!("starting the Docker engine (dockerd, log {LOG})"));
    let mut c = Command::new("setsid");
    c.arg("--fork").arg(&dockerd);
    let command = cmd::describe(&c);
    let status = c
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .status()
        .map_err(|source| SandboxError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !status.success() {
        return Err(SandboxError::Command {
            command,
            status: cmd::status_text(status),
            stderr: format!("see {LOG}"),
        });
    }
    Ok(())
}

fn wait_for_engine() -> Result<(), SandboxError> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if answers() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = std::fs::read_to_string(LOG).unwrap_or_default();
    Err(SandboxError::Timeout {
        what: "the Docker engine (`docker info`)".into(),
        seconds: WAIT.as_secs(),
        hint: format!("; end of {LOG}:\n{}", cmd::tail(&log, 1500)),
    })
}

/// `debootstrap` present (installed when root), needed only to build the base image.
pub(crate) fn ensure_debootstrap() -> Result<(), SandboxError> {
    if find_program("debootstrap").is_some() {
        return Ok(());
    }
    if !is_root() {
        return Err(SandboxError::Missing {
            program: "debootstrap".into(),
            hint: "install it as root (`sudo apt-get install -y debootstrap`); it builds the \
                   sandbox base image from the machine's Debian mirror"
                .into(),
        });
    }
    note("installing debootstrap with apt-get");
    apt_install(&["debootstrap"])
}

fn apt_get() -> Command {
    let mut c = Command::new("apt-get");
    // Wait for a parallel apt instead of failing on the dpkg lock.
    c.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["-o", "DPkg::Lock::Timeout=300"]);
    c
}

/// `apt-get install -y`, with one `apt-get update` if the first try fails (no or old lists).
fn apt_install(packages: &[&str]) -> Result<(), SandboxError> {
    let install = || {
        let mut c = apt_get();
        c.args(["install", "-y"]).args(packages);
        cmd::run(&mut c)
    };
    if install().is_ok() {
        return Ok(());
    }
    note("apt-get install failed; running apt-get update and retrying");
    cmd::run(apt_get().arg("update"))?;
    install().map(|_| ())
}
