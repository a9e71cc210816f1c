//! A sandbox for end-to-end tests: real containers with systemd, sshd and Debian's packages,
//! torn down when the value is dropped (also when an assertion fails).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pgha::sandbox::{self, SandboxInfo, UpOptions};

use crate::support::Test;

pub struct Sandbox {
    pub info: SandboxInfo,
    pub env: Vec<(String, String)>,
    /// Keeps the state folder alive as long as the sandbox.
    _dir: tempfile::TempDir,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Err(e) = sandbox::down(&self.info.name, &self.info.dir) {
            eprintln!("teardown of sandbox {} failed: {e}", self.info.name);
        }
    }
}

pub struct Options {
    pub hosts: usize,
    pub ssh_user: Option<&'static str>,
    /// Hosts with PostgreSQL and friends already installed (not for tests about installing).
    pub packages: bool,
}

impl Options {
    /// `hosts` hosts as a fresh machine has them: pgha installs every package.
    pub fn bare(hosts: usize) -> Options {
        Options {
            hosts,
            ssh_user: None,
            packages: false,
        }
    }

    /// `hosts` hosts with the packages installed (tests that are not about installing).
    pub fn packaged(hosts: usize) -> Options {
        Options {
            packages: true,
            ..Options::bare(hosts)
        }
    }
}

impl Sandbox {
    /// Fails (never skips) when the test ground cannot be made.
    pub fn up(tag: &str, options: Options) -> Sandbox {
        Sandbox::up_with(tag, options, |_| {})
    }

    /// A repmgr sandbox on the packages image: `data` data nodes and a witness after them.
    pub fn repmgr(tag: &str, data: usize) -> Sandbox {
        Sandbox::repmgr_with(tag, Options::packaged(data + 1))
    }

    /// A repmgr sandbox with these options; the last host is the witness.
    pub fn repmgr_with(tag: &str, options: Options) -> Sandbox {
        Sandbox::up_with(tag, options, |o| {
            o.flavour = pgha::sandbox::Flavour::Repmgr;
            o.witness = true;
        })
    }

    /// A Patroni sandbox on the packages image (3 etcd members co-located).
    pub fn patroni(tag: &str, hosts: usize) -> Sandbox {
        Sandbox::patroni_etcd(tag, hosts, 3)
    }

    /// A Patroni sandbox with `etcd` members on the first hosts.
    pub fn patroni_etcd(tag: &str, hosts: usize, etcd: usize) -> Sandbox {
        Sandbox::patroni_with(tag, Options::packaged(hosts), etcd)
    }

    /// A Patroni sandbox with these options and `etcd` members on the first hosts.
    pub fn patroni_with(tag: &str, options: Options, etcd: usize) -> Sandbox {
        Sandbox::up_with(tag, options, |o| {
            o.flavour = pgha::sandbox::Flavour::Patroni;
            o.etcd_members = etcd;
        })
    }

    fn up_with(tag: &str, options: Options, adjust: impl FnOnce(&mut UpOptions)) -> Sandbox {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("e2e-{tag}-{}", nanos % 100_000);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = UpOptions::new(name, dir.path().join("sandbox"));
        opts.hosts = options.hosts;
        opts.ssh_user = options.ssh_user.map(str::to_owned);
        opts.image_with_packages = options.packages;
        adjust(&mut opts);
        let info = sandbox::up(&opts).unwrap_or_else(|e| panic!("sandbox up failed: {e}"));
        let env = read_env(&info.env_file);
        Sandbox {
            info,
            env,
            _dir: dir,
        }
    }

    pub fn inventory(&self) -> &Path {
        &self.info.inventory
    }

    /// `pgha ARGS -i INVENTORY` with the sandbox's passwords in the environment.
    pub fn pgha<I, S>(&self, args: I) -> Test
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.pgha_on(self.inventory(), args)
    }

    /// `pgha ARGS -i INVENTORY` for another inventory over this sandbox's hosts (a second
    /// cluster), with the sandbox's passwords in the environment.
    pub fn pgha_on<I, S>(&self, inventory: &Path, args: I) -> Test
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut test = Test::new().args(args).args(["-i"]).arg_path(inventory);
        for (k, v) in &self.env {
            test = test.env(k, v);
        }
        test
    }

    /// `pgha COMMAND -i INVENTORY` as a process the test controls itself (to kill it, or to
    /// tolerate its failure), with the sandbox's passwords in the environment.
    pub fn command(&self, command: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pgha"));
        c.arg(command).arg("-i").arg(self.inventory());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn secrets(&self) -> Vec<String> {
        self.env.iter().map(|(_, v)| v.clone()).collect()
    }

    pub fn ip(&self, host: &str) -> String {
        self.info
            .hosts
            .iter()
            .find(|h| h.name == host)
            .map(|h| h.ip.to_string())
            .unwrap_or_else(|| panic!("no host {host}"))
    }

    /// The container of host `name`.
    #[track_caller]
    pub fn container(&self, host: &str) -> String {
        self.info
            .hosts
            .iter()
            .find(|h| h.name == host)
            .map(|h| h.container.clone())
            .unwrap_or_else(|| panic!("no host {host}"))
    }

    /// `docker VERB CONTAINER` for a host: `stop` (a clean shutdown), `kill` (the host dies
    /// at once), `start`.
    #[track_caller]
    pub fn docker(&self, verb: &str, host: &str) {
        let container = self.container(host);
        let ok = Command::new("docker")
            .args([verb, &container])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("docker")
            .success();
        assert!(ok, "docker {verb} {container}");
    }

    /// Cut the network between two hosts, both ways (a blackhole route on each side); the
    /// others still reach both.
    pub fn cut(&self, a: &str, b: &str) {
        self.sh(a, &format!("ip route add blackhole {}/32", self.ip(b)));
        self.sh(b, &format!("ip route add blackhole {}/32", self.ip(a)));
    }

    /// Undo [`Sandbox::cut`].
    pub fn heal(&self, a: &str, b: &str) {
        self.sh(a, &format!("ip route del blackhole {}/32", self.ip(b)));
        self.sh(b, &format!("ip route del blackhole {}/32", self.ip(a)));
    }

    /// Run a shell command on a host as root (through docker exec: independent of pgha's SSH).
    #[track_caller]
    pub fn sh(&self, host: &str, script: &str) -> String {
        let container = self.container(host);
        let out = Command::new("docker")
            .args(["exec", &container, "sh", "-c", script])
            .output()
            .expect("docker exec");
        assert!(
            out.status.success(),
            "{host}: {script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Poll `condition` until it holds; fail naming `what` after `timeout`. Tests wait on
    /// conditions, never on a fixed sleep.
    #[track_caller]
    pub fn wait_until(&self, what: &str, timeout: Duration, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + timeout;
        while !condition() {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {} s",
                timeout.as_secs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Seconds the Patroni leader key's etcd lease has left, asked through `host`'s member.
    #[track_caller]
    pub fn leader_lease_left(&self, host: &str) -> i64 {
        let out = self.sh(
            host,
            "lease=$(ETCDCTL_API=3 etcdctl get --prefix /service/ -w json | python3 -c 'import base64, json, sys; print(next(format(kv[\"lease\"], \"x\") for kv in json.load(sys.stdin)[\"kvs\"] if base64.b64decode(kv[\"key\"]).decode().endswith(\"/leader\")))') && ETCDCTL_API=3 etcdctl lease timetolive \"$lease\" | sed -n 's/.*remaining(\\(-*[0-9]*\\)s).*/\\1/p'",
        );
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("no leader lease: {out:?}"))
    }

    /// The host whose etcd member leads the etcd cluster (asked through `host`'s member).
    #[track_caller]
    pub fn etcd_leader(&self, host: &str) -> String {
        let out = self.sh(
            host,
            "ETCDCTL_API=3 etcdctl endpoint status --cluster -w simple",
        );
        let address = out
            .lines()
            .find(|l| l.split(", ").nth(4) == Some("true"))
            .and_then(|l| l.split("://").nth(1))
            .and_then(|l| l.split(':').next())
            .unwrap_or_else(|| panic!("no etcd leader in:\n{out}"))
            .to_owned();
        self.info
            .hosts
            .iter()
            .find(|h| h.ip.to_string() == address)
            .map(|h| h.name.clone())
            .unwrap_or_else(|| panic!("{address} is no host of the sandbox"))
    }

    /// A value of the sandbox's env.sh (its passwords).
    #[track_caller]
    pub fn env_value(&self, name: &str) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} in the sandbox's env.sh"))
    }

    /// A query on a host's local server, as postgres.
    #[track_caller]
    pub fn psql(&self, host: &str, sql: &str) -> String {
        let script = format!(
            "cd / && runuser -u postgres -- psql -X -At -d postgres -c \"{}\"",
            sql.replace('"', "\\\"")
        );
        self.sh(host, &script).trim().to_owned()
    }

    /// Replace text in the inventory (the change must apply exactly once).
    #[track_caller]
    pub fn edit_inventory(&self, from: &str, to: &str) {
        edit_file(self.inventory(), from, to);
    }

    /// Plan finds nothing to do: exit 0 with --detailed-exitcode, "No changes.".
    #[track_caller]
    pub fn assert_plan_clean(&self) {
        self.pgha(["plan", "--detailed-exitcode"])
            .stdout_has("No changes.")
            .run();
    }

    /// Converged: plan finds nothing to do (exit 0 with --detailed-exitcode) and a second
    /// apply changes nothing.
    #[track_caller]
    pub fn assert_converged(&self) {
        self.assert_plan_clean();
        self.pgha(["apply", "-y"])
            .stdout_has("Nothing to apply.")
            .run();
    }

    /// The text of host `name`'s entry in the inventory as the sandbox wrote it.
    pub fn host_entry(&self, name: &str) -> String {
        let role = if name == "pg1" { "primary" } else { "standby" };
        format!(
            "  - name: {name}\n    address: {}\n    role: {role}\n",
            self.ip(name)
        )
    }

    pub fn inventory_text(&self) -> String {
        std::fs::read_to_string(self.inventory()).expect("read inventory")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.info.dir.clone()
    }
}

/// Replace text in a file (the change must apply exactly once).
#[track_caller]
pub fn edit_file(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read file");
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} must occur once in {}:\n{text}",
        path.display()
    );
    std::fs::write(path, text.replacen(from, to, 1)).expect("write file");
}

fn read_env(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).expect("env.sh");
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

/// No secret value anywhere in the texts.
#[track_caller]
pub fn assert_no_secret(sandbox: &Sandbox, texts: &[&str]) {
    for secret in sandbox.secrets() {
        for t in texts {
            assert!(!t.contains(&secret), "a secret value is shown:\n{t}");
        }
    }
}
