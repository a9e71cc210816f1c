//! Cached host images, built without any container registry.
//!
//! `pgha-base:bookworm` comes from `debootstrap` against the machine's own Debian mirror (read
//! from its apt sources, never written into this repository), configured for running systemd
//! in a container and imported with `docker import`. `pgha-pg:bookworm` adds the packages the
//! HA flavours need, for tests that are not about installing them.
//!
//! Both carry a `pgha.recipe` label: when the recipe below changes, cached images from an
//! older recipe are rebuilt instead of silently reused.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cmd::{self, docker};
use super::hosts::SYSTEMD_RUN_FLAGS;
use super::lock::{lock_path, FileLock};
use super::{engine, hosts, note, SandboxError};

pub const BASE_IMAGE: &str = "pgha-base:bookworm";
pub const PG_IMAGE: &str = "pgha-pg:bookworm";
/// Bump when anything below changes what goes into the base image.
const BASE_RECIPE: &str = "1";
/// Bump when the packages image changes (2: no baked-in machine-id and SSH host keys; 3:
/// nftables, for `pgha drill failover --crash isolate`).
const PG_RECIPE: &str = "3";
const SUITE: &str = "bookworm";
/// Small, but enough to act like a server pgha provisions: systemd as init, sshd, sudo for a
/// deploy user, `ip`/`arping` for virtual IPs, python3 for Patroni, gnupg/ca-certificates for
/// extra apt repositories.
const BASE_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "openssh-server",
    "sudo",
    "iproute2",
    "python3",
    "ca-certificates",
    "gnupg",
    "procps",
    "iputils-arping",
    "less",
];
/// Everything the three flavours install (DESIGN.md section 7), without the extras.
pub(crate) const PG_PACKAGES: &[&str] = &[
    "postgresql-15",
    "postgresql-15-repmgr",
    "patroni",
    "etcd-server",
    "etcd-client",
    "keepalived",
    "haproxy",
    "nftables",
];
/// Units that cannot work in a container (no consoles, no udev, no kernel config mounts, no
/// interactive first boot) and would only leave systemd "degraded". The machine-id commit is
/// masked so `/etc/machine-id` stays empty and every container gets its own id.
const MASKED_UNITS: &[&str] = &[
    "getty.target",
    "console-getty.service",
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-firstboot.service",
    "systemd-machine-id-commit.service",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "systemd-modules-load.service",
    "systemd-remount-fs.service",
];
/// Only keys, no passwords; root with a key only (also Debian's default, stated for clarity).
const SSHD_CONFIG: &str = "\
# pgha sandbox: key-only logins.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
";
/// Host keys are generated at the first start of each container, not baked into the image:
/// otherwise every sandbox host would share one host key.
const SSH_HOST_KEYS_DROPIN: &str = "\
# pgha sandbox: each container makes its own host keys on first start.
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
";

/// Make sure the wanted image exists (building it once, under a machine-wide lock); returns
/// its reference.
pub(crate) fn ensure_image(with_packages: bool) -> Result<&'static str, SandboxError> {
    let wanted = if with_packages { PG_IMAGE } else { BASE_IMAGE };
    let recipe = |image: &str| {
        if image == PG_IMAGE {
            PG_RECIPE
        } else {
            BASE_RECIPE
        }
    };
    if is_current(wanted, recipe(wanted)) {
        return Ok(wanted);
    }
    let _lock = FileLock::acquire(
        &lock_path("pgha-image.lock"),
        "building the sandbox image",
        Duration::from_secs(1800),
    )?;
    // Leftovers of a killed build: nobody else builds while we hold the lock.
    clean_stale_builds();
    if !is_current(BASE_IMAGE, BASE_RECIPE) {
        replacing(BASE_IMAGE, build_base)?;
    }
    if with_packages && !is_current(PG_IMAGE, PG_RECIPE) {
        replacing(PG_IMAGE, build_pg)?;
    }
    Ok(wanted)
}

/// Build `image`, then remove the older image the tag pointed at (from an older recipe), so
/// rebuilds do not pile up; one still used by containers stays (Docker refuses, we ignore).
fn replacing(image: &str, build: fn() -> Result<(), SandboxError>) -> Result<(), SandboxError> {
    let id =
        |img: &str| cmd::run(docker().args(["image", "inspect", "--format", "{{.Id}}", img])).ok();
    let old = id(image);
    build()?;
    if let Some(old) = old.filter(|o| id(image).as_ref() != Some(o)) {
        // Only an image no tag names any more: `rmi <id>` would also untag other names.
        let mut tags = docker();
        tags.args(["image", "inspect", "--format", "{{len .RepoTags}}", &old]);
        if cmd::run(&mut tags).is_ok_and(|n| n == "0") {
            let _ = cmd::run(docker().args(["rmi", &old]));
        }
    }
    Ok(())
}

/// The image exists and was built by this recipe.
fn is_current(image: &str, recipe: &str) -> bool {
    let mut c = docker();
    c.args([
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"pgha.recipe\"}}",
        image,
    ]);
    cmd::run(&mut c).is_ok_and(|label| label == recipe)
}

/// Half-built root file systems and build containers of killed runs (their pid is gone).
fn clean_stale_builds() {
    let dead = |pid: &str| {
        pid.parse::<u32>()
            .is_ok_and(|p| !Path::new(&format!("/proc/{p}")).exists())
    };
    if let Ok(entries) = fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.strip_prefix("pgha-rootfs.").is_some_and(dead) {
                note(format!(
                    "removing half-built root file system {}",
                    e.path().display()
                ));
                remove_tree(&e.path());
            }
        }
    }
    let mut ps = docker();
    ps.args([
        "ps",
        "-a",
        "--filter",
        "label=pgha.imagebuild",
        "--format",
        "{{.Names}} {{.Label \"pgha.imagebuild\"}}",
    ]);
    if let Ok(list) = cmd::run(&mut ps) {
        for (name, pid) in list.lines().filter_map(|l| l.split_once(' ')) {
            if dead(pid) {
                note(format!(
                    "removing build container {name} left by a killed run"
                ));
                let _ = cmd::run(docker().args(["rm", "-f", name]));
            }
        }
    }
}

/// A temporary root file system, unmounted and removed when dropped (also on errors).
struct TempRoot(PathBuf);

impl Drop for TempRoot {
    fn drop(&mut self) {
        remove_tree(&self.0);
    }
}

/// Remove a directory tree after unmounting anything below it: debootstrap mounts /proc and
/// /sys inside the target, and a killed run can leave those mounted.
fn remove_tree(path: &Path) {
    for m in mounts_below(path) {
        let _ = cmd::run(Command::new("umount").arg("-l").arg(&m));
    }
    let _ = fs::remove_dir_all(path);
}

fn mounts_below(path: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mount(m)))
        .filter(|m| m.starts_with(path))
        .collect();
    // Deepest first.
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) if b[i] == b'\\' => {
                out.push(
                    d.iter()
                        .fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')),
                );
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn build_base() -> Result<(), SandboxError> {
    engine::ensure_debootstrap()?;
    let sources = read_host_sources();
    let mirror = pick_mirror(&sources)?;
    let root = TempRoot(std::env::temp_dir().join(format!("pgha-rootfs.{}", std::process::id())));
    remove_tree(&root.0);
    fs::create_dir_all(&root.0).map_err(SandboxError::io(&root.0))?;

    let t = Instant::now();
    note(format!(
        "building {BASE_IMAGE}: debootstrap {SUITE} from {mirror} (about a minute, once)"
    ));
    let mut c = Command::new("debootstrap");
    c.arg("--variant=minbase")
        .arg(format!("--include={}", BASE_PACKAGES.join(",")))
        .arg(SUITE)
        .arg(&root.0)
        .arg(&mirror);
    if let Err(e) = cmd::run(&mut c) {
        return Err(with_debootstrap_log(e, &root.0));
    }
    let debootstrap_secs = t.elapsed().as_secs_f64();
    configure_rootfs(&root.0, &sources)?;

    let t2 = Instant::now();
    import(&root.0)?;
    note(format!(
        "built {BASE_IMAGE} in {:.1} s (debootstrap {debootstrap_secs:.1} s, import {:.1} s)",
        t.elapsed().as_secs_f64(),
        t2.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// debootstrap's own log says why a package failed; its stdout usually does not.
fn with_debootstrap_log(e: SandboxError, root: &Path) -> SandboxError {
    match e {
        SandboxError::Command {
            command,
            status,
            stderr,
        } => {
            let log =
                fs::read_to_string(root.join("debootstrap/debootstrap.log")).unwrap_or_default();
            let stderr = if log.is_empty() {
                stderr
            } else {
                format!(
                    "{stderr}\n--- end of debootstrap.log ---\n{}",
                    cmd::tail(&log, 2000)
                )
            };
            SandboxError::Command {
                command,
                status,
                stderr,
            }
        }
        other => other,
    }
}

/// Write `data` at `root/rel`, replacing whatever is there. The old entry is removed first so
/// a symlink left by the package scripts can never make us write outside the root.
fn put(root: &Path, rel: &str, data: &str, mode: u32) -> Result<(), SandboxError> {
    let p = root.join(rel);
    if let Some(dir) = p.parent() {
        fs::create_dir_all(dir).map_err(SandboxError::io(dir))?;
    }
    remove_entry(&p)?;
    fs::write(&p, data).map_err(SandboxError::io(&p))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(SandboxError::io(&p))
}

fn remove_entry(p: &Path) -> Result<(), SandboxError> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(SandboxError::Io {
            path: p.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn symlink(root: &Path, rel: &str, target: &str) -> Result<(), SandboxError> {
    let p = root.join(rel);
    if let Some(dir) = p.parent() {
        fs::create_dir_all(dir).map_err(SandboxError::io(dir))?;
    }
    remove_entry(&p)?;
    std::os::unix::fs::symlink(target, &p).map_err(SandboxError::io(&p))
}

/// Make the debootstrapped tree a good container image (see the constants above for why).
fn configure_rootfs(root: &Path, sources: &[AptSource]) -> Result<(), SandboxError> {
    put(
        root,
        "etc/ssh/sshd_config.d/pgha-sandbox.conf",
        SSHD_CONFIG,
        0o644,
    )?;
    let ssh_dir = root.join("etc/ssh");
    for e in fs::read_dir(&ssh_dir)
        .map_err(SandboxError::io(&ssh_dir))?
        .flatten()
    {
        if e.file_name().to_string_lossy().starts_with("ssh_host_") {
            remove_entry(&e.path())?;
        }
    }
    put(
        root,
        "etc/systemd/system/ssh.service.d/pgha-host-keys.conf",
        SSH_HOST_KEYS_DROPIN,
        0o644,
    )?;
    symlink(
        root,
        "etc/systemd/system/multi-user.target.wants/ssh.service",
        "/lib/systemd/system/ssh.service",
    )?;
    for unit in MASKED_UNITS {
        symlink(root, &format!("etc/systemd/system/{unit}"), "/dev/null")?;
    }
    // Empty machine-id: systemd gives each container its own at boot.
    put(root, "etc/machine-id", "", 0o444)?;
    remove_entry(&root.join("var/lib/dbus/machine-id"))?;
    // debootstrap copies the build machine's identity; Docker provides these per container.
    put(root, "etc/hostname", "localhost\n", 0o644)?;
    put(root, "etc/resolv.conf", "", 0o644)?;
    put(root, "etc/default/locale", "LANG=C.UTF-8\n", 0o644)?;

    // Hosts install packages from the same mirror as this machine.
    remove_entry(&root.join("etc/apt/sources.list"))?;
    put(
        root,
        "etc/apt/sources.list.d/pgha-host.sources",
        &render_sources(sources),
        0o644,
    )?;
    for s in sources.iter().filter(|s| s.is_suite_family()) {
        if let Some(key) = s.signed_by.as_deref().filter(|k| k.starts_with('/')) {
            let inside = root.join(key.trim_start_matches('/'));
            if !inside.exists() && Path::new(key).is_file() {
                if let Some(d) = inside.parent() {
                    fs::create_dir_all(d).map_err(SandboxError::io(d))?;
                }
                fs::copy(key, &inside).map_err(SandboxError::io(key))?;
            }
        }
    }

    // Smaller image: downloaded .debs and package lists are not needed at run time.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        if let Ok(entries) = fs::read_dir(root.join(dir)) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_file()) && e.file_name() != "lock" {
                    remove_entry(&e.path())?;
                }
            }
        }
    }
    Ok(())
}

/// `tar -C ROOT -c . | docker import - BASE_IMAGE`, with the container settings systemd needs.
fn import(root: &Path) -> Result<(), SandboxError> {
    let mut tar = Command::new("tar");
    tar.args(["--numeric-owner", "-C"])
        .arg(root)
        .args(["-c", "."]);
    let tar_cmd = cmd::describe(&tar);
    let mut tar_child = tar
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| SandboxError::Spawn {
            command: tar_cmd.clone(),
            source,
        })?;
    let tar_err = tar_child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = e.read_to_string(&mut s);
            s
        })
    });
    let label = format!("LABEL pgha.recipe={BASE_RECIPE} pgha.image=base");
    let mut imp = docker();
    imp.args([
        "import",
        "--change",
        "ENV container=docker",
        "--change",
        r#"CMD ["/lib/systemd/systemd"]"#,
        "--change",
        &label,
        "-",
        BASE_IMAGE,
    ]);
    let imp_cmd = cmd::describe(&imp);
    let Some(tar_out) = tar_child.stdout.take() else {
        return Err(SandboxError::Failed("tar gave no output pipe".into()));
    };
    let imp_child = imp
        .stdin(Stdio::from(tar_out))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| SandboxError::Spawn {
            command: imp_cmd.clone(),
            source,
        });
    // The Command keeps its copy of tar's stdout: drop it, or tar never sees the reader go
    // away when import fails, and blocks forever.
    drop(imp);
    let out = match imp_child.and_then(|c| {
        c.wait_with_output().map_err(|source| SandboxError::Spawn {
            command: imp_cmd.clone(),
            source,
        })
    }) {
        Ok(out) => out,
        Err(e) => {
            let _ = tar_child.kill();
            let _ = tar_child.wait();
            return Err(e);
        }
    };
    let tar_status = tar_child.wait().map_err(|source| SandboxError::Spawn {
        command: tar_cmd.clone(),
        source,
    })?;
    let tar_stderr = tar_err.and_then(|h| h.join().ok()).unwrap_or_default();
    // The import's error says more than tar's broken pipe.
    cmd::check(imp_cmd, &out)?;
    if !tar_status.success() {
        return Err(SandboxError::Command {
            command: tar_cmd,
            status: cmd::status_text(tar_status),
            stderr: cmd::tail(&tar_stderr, 2000),
        });
    }
    Ok(())
}

/// Base + the flavours' packages, installed in a temporary container and committed.
///
/// Package defaults are kept exactly as a fresh install leaves them (the Debian cluster
/// 15/main exists, postgresql/etcd/haproxy enabled); the services are only stopped cleanly
/// before the commit, so hosts from this image look like a fresh install after a reboot.
///
/// Unlike separate real installs, all hosts from this image share what the packages
/// generated once: the 15/main cluster's database system identifier and the ssl-cert
/// snakeoil key. Tests that depend on those differing per host should use the base image.
fn build_pg() -> Result<(), SandboxError> {
    let t = Instant::now();
    let name = format!("pgha-imagebuild-{}", std::process::id());
    note(format!(
        "building {PG_IMAGE}: apt-get install {} (once)",
        PG_PACKAGES.join(" ")
    ));
    struct Remove<'a>(&'a str);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = cmd::run(docker().args(["rm", "-f", self.0]));
        }
    }
    let mut run = docker();
    let label = format!("pgha.imagebuild={}", std::process::id());
    run.args(["run", "-d", "--name", &name, "--label", &label])
        .args(SYSTEMD_RUN_FLAGS)
        .args([BASE_IMAGE, "/lib/systemd/systemd"]);
    cmd::run(&mut run)?;
    let _guard = Remove(&name);
    hosts::wait_booted(&name, Duration::from_secs(90))?;
    let apt = |args: &[&str]| {
        let mut c = docker();
        c.args([
            "exec",
            "-e",
            "DEBIAN_FRONTEND=noninteractive",
            &name,
            "apt-get",
        ])
        .args(["-o", "DPkg::Lock::Timeout=300"])
        .args(args);
        cmd::run(&mut c)
    };
    apt(&["update"])?;
    let mut install = vec!["install", "-y"];
    install.extend_from_slice(PG_PACKAGES);
    apt(&install)?;
    apt(&["clean"])?;
    // Stop what the packages started, so the committed data directories are clean.
    // The build container's machine-id and SSH host keys must not end up in every host:
    // empty machine-id and no keys make each container generate its own at first start.
    let stop = "for u in patroni.service 'postgresql@*.service' postgresql.service etcd.service \
                haproxy.service keepalived.service; do systemctl stop \"$u\" 2>/dev/null || true; done; \
                rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_*; : > /etc/machine-id";
    cmd::run(docker().args(["exec", &name, "sh", "-c", stop]))?;
    cmd::run(docker().args(["stop", "-t", "60", &name]))?;
    let label = format!("LABEL pgha.recipe={PG_RECIPE} pgha.image=pg");
    cmd::run(docker().args(["commit", "--change", &label, &name, PG_IMAGE]))?;
    note(format!(
        "built {PG_IMAGE} in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// One apt source (a deb822 stanza or a one-line entry), as far as we need it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct AptSource {
    types: Vec<String>,
    uris: Vec<String>,
    suites: Vec<String>,
    components: Vec<String>,
    signed_by: Option<String>,
}

impl AptSource {
    fn is_deb(&self) -> bool {
        self.types.iter().any(|t| t == "deb")
    }

    /// bookworm, bookworm-updates, bookworm-security, bookworm/updates...
    fn is_suite_family(&self) -> bool {
        self.is_deb() && self.suites.iter().any(|s| in_family(s))
    }
}

fn in_family(suite: &str) -> bool {
    suite == SUITE
        || suite
            .strip_prefix(SUITE)
            .is_some_and(|r| r.starts_with('-') || r.starts_with('/'))
}

/// All apt sources of this machine (active files only: `*.sources`, `*.list`, sources.list).
fn read_host_sources() -> Vec<AptSource> {
    let mut out = Vec::new();
    if let Ok(t) = fs::read_to_string("/etc/apt/sources.list") {
        out.extend(parse_one_line(&t));
    }
    let mut files: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        let Ok(t) = fs::read_to_string(&f) else {
            continue;
        };
        match f.extension().and_then(|e| e.to_str()) {
            Some("sources") => out.extend(parse_deb822(&t)),
            Some("list") => out.extend(parse_one_line(&t)),
            _ => {}
        }
    }
    out
}

/// deb822 stanzas (`Types:`, `URIs:`, `Suites:`, `Components:`, `Signed-By:`, `Enabled:`).
pub(crate) fn parse_deb822(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n").flat_map(|s| s.split("\r\n\r\n")) {
        let mut src = AptSource::default();
        let mut enabled = true;
        let mut last_key = String::new();
        for line in stanza.lines() {
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with(' ') || line.starts_with('\t') {
                // Continuation (an inline key block): keep it with its field.
                if last_key == "signed-by" {
                    if let Some(v) = src.signed_by.as_mut() {
                        v.push('\n');
                        v.push_str(line);
                    }
                }
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let key = k.trim().to_ascii_lowercase();
            let words = || v.split_whitespace().map(str::to_string).collect::<Vec<_>>();
            match key.as_str() {
                "types" => src.types = words(),
                "uris" => src.uris = words(),
                "suites" => src.suites = words(),
                "components" => src.components = words(),
                "signed-by" => src.signed_by = Some(v.trim().to_string()),
                "enabled" => enabled = !v.trim().eq_ignore_ascii_case("no"),
                _ => {}
            }
            last_key = key;
        }
        if enabled && !src.types.is_empty() && !src.uris.is_empty() {
            out.push(src);
        }
    }
    out
}

/// `deb [opt=val ...] URI suite component...` lines.
pub(crate) fn parse_one_line(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line
            .strip_prefix("deb")
            .filter(|r| r.starts_with([' ', '\t']))
        else {
            continue;
        };
        let mut rest = rest.trim_start();
        let mut signed_by = None;
        if let Some(opts) = rest.strip_prefix('[') {
            let Some((opts, after)) = opts.split_once(']') else {
                continue;
            };
            for o in opts.split_whitespace() {
                if let Some(v) = o.strip_prefix("signed-by=") {
                    signed_by = Some(v.to_string());
                }
            }
            rest = after.trim_start();
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(AptSource {
            types: vec!["deb".into()],
            uris: vec![uri.into()],
            suites: vec![suite.into()],
            components: words.map(str::to_string).collect(),
            signed_by,
        });
    }
    out
}

/// The mirror for debootstrap: `PGHA_SANDBOX_MIRROR`, else the first http(s)/file source of
/// the plain suite.
fn pick_mirror(sources: &[AptSource]) -> Result<String, SandboxError> {
    if let Ok(m) = std::env::var("PGHA_SANDBOX_MIRROR") {
        if !m.trim().is_empty() {
            return Ok(m.trim().to_string());
        }
    }
    sources
        .iter()
        .filter(|s| s.is_deb() && s.suites.iter().any(|x| x == SUITE))
        .flat_map(|s| s.uris.iter())
        .find(|u| u.starts_with("http://") || u.starts_with("https://") || u.starts_with("file:/"))
        .cloned()
        .ok_or_else(|| SandboxError::NoMirror {
            searched: "/etc/apt/sources.list and /etc/apt/sources.list.d/*.{sources,list}".into(),
        })
}

/// The machine's bookworm-family sources as one deb822 file for the image.
pub(crate) fn render_sources(sources: &[AptSource]) -> String {
    let mut s =
        String::from("# pgha sandbox: the apt sources of the machine that built this image.\n");
    for src in sources.iter().filter(|s| s.is_suite_family()) {
        let suites: Vec<&str> = src
            .suites
            .iter()
            .filter(|x| in_family(x))
            .map(String::as_str)
            .collect();
        s.push_str(&format!(
            "\nTypes: deb\nURIs: {}\nSuites: {}\nComponents: {}\n",
            src.uris.join(" "),
            suites.join(" "),
            src.components.join(" ")
        ));
        if let Some(k) = &src.signed_by {
            s.push_str(&format!("Signed-By: {k}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "\
Types: deb
# http://snapshot.example/archive
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: https://other.example/node
Suites: nodistro
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Enabled: no
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
";

    #[test]
    fn reads_deb822() {
        let s = parse_deb822(DEB822);
        assert_eq!(s.len(), 4, "{s:?}");
        assert_eq!(
            pick_mirror(&s).expect("mirror"),
            "http://mirror.example/debian"
        );
        let r = render_sources(&s);
        assert!(
            r.contains("URIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n")
        );
        assert!(r.contains("Suites: bookworm-security\n"));
        assert!(r.contains("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"));
        assert!(
            !r.contains("other.example") && !r.contains("src.example") && !r.contains("disabled")
        );
    }

    #[test]
    fn reads_one_line() {
        let s = parse_one_line(
            "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib\n\
             deb-src http://m.example/debian bookworm main\n\
             deb http://m.example/sec bookworm-security main # trailing\n\
             deb https://x.example/apt cloud-sdk-bookworm main\n",
        );
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].signed_by.as_deref(), Some("/k.gpg"));
        assert_eq!(s[0].components, ["main", "contrib"]);
        assert_eq!(pick_mirror(&s).expect("mirror"), "http://m.example/debian");
        assert!(!s[2].is_suite_family());
        assert!(matches!(
            pick_mirror(&s[1..]),
            Err(SandboxError::NoMirror { .. })
        ));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
        assert_eq!(unescape_mount(r"/end\"), r"/end\");
    }

    #[test]
    fn configures_a_fake_root() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path();
        fs::create_dir_all(root.join("etc/ssh")).expect("mkdir");
        fs::write(root.join("etc/ssh/ssh_host_ed25519_key"), "secret").expect("write");
        fs::write(root.join("etc/hostname"), "buildhost").expect("w");
        // A symlink pointing outside the root must be replaced, not written through.
        let outside = d.path().join("outside");
        fs::create_dir_all(root.join("etc/default")).expect("mkdir");
        std::os::unix::fs::symlink(&outside, root.join("etc/default/locale")).expect("symlink");
        configure_rootfs(root, &parse_deb822(DEB822)).expect("configure");
        assert!(!root.join("etc/ssh/ssh_host_ed25519_key").exists());
        assert!(!outside.exists());
        assert_eq!(
            fs::read_to_string(root.join("etc/hostname")).expect("r"),
            "localhost\n"
        );
        assert_eq!(
            fs::read_link(root.join("etc/systemd/system/getty.target")).expect("mask"),
            PathBuf::from("/dev/null")
        );
        let src =
            fs::read_to_string(root.join("etc/apt/sources.list.d/pgha-host.sources")).expect("r");
        assert!(src.contains("mirror.example"));
    }
}
