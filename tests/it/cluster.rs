//! A sandbox for end-to-end tests: real containers with systemd, sshd and Debian's packages,
//! torn down when the value is dropped (also when an assertion fails).
//!
//! No secret of a sandbox may come out on the operator's side: every `pgha` run through it
//! ([`Sandbox::pgha`], [`Sandbox::pgha_on`], [`Sandbox::command`]) has its stdout and stderr
//! checked, and when the sandbox is dropped every file under its folder is, but for the
//! files that are secrets by design (see [`Ledger`]).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pgha::sandbox::{self, SandboxInfo, UpOptions};

use crate::support::{assert_shows_no_secret, masked, secrets_in, Secret, Test};

pub struct Sandbox {
    pub info: SandboxInfo,
    /// The passwords of env.sh, given to every run; a test may change them (a rotation): the
    /// values they had stay secrets all the same.
    pub env: Vec<(String, String)>,
    ledger: Arc<Ledger>,
    /// Keeps the state folder alive as long as the sandbox.
    _dir: tempfile::TempDir,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_server_logs();
            // The logs push the assertion out of a shortened CI excerpt: said again last.
            if let Some(failure) = FAILURE.with(|f| f.borrow_mut().take()) {
                eprintln!(
                    "--- sandbox {}: the failure (repeated after the logs)\n{failure}",
                    self.info.name
                );
            }
        }
        // Before the teardown, which removes the sandbox's own files (env.sh, the SSH key).
        self.ledger.note_env(&self.env);
        let leaks = self.ledger.files_holding_secrets();
        if let Err(e) = sandbox::down(&self.info.name, &self.info.dir) {
            eprintln!("teardown of sandbox {} failed: {e}", self.info.name);
        }
        if leaks.is_empty() {
            return;
        }
        let message = format!(
            "files on the operator's side of sandbox {} hold secrets:\n{}",
            self.info.name,
            leaks.join("\n")
        );
        if std::thread::panicking() {
            // A second panic would abort the whole test binary.
            eprintln!("{message}");
        } else {
            panic!("{message}");
        }
    }
}

thread_local! {
    /// This test thread's panic message, kept for [`Sandbox`]'s drop.
    static FAILURE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Keep each test thread's panic message and print it as before (the default hook already
/// prints it: repeating it shows nothing new).
fn keep_failures() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied());
            if let Some(message) = message {
                let at = info
                    .location()
                    .map(|l| format!(" at {l}"))
                    .unwrap_or_default();
                FAILURE.with(|f| *f.borrow_mut() = Some(format!("panicked{at}: {message}")));
            }
            previous(info);
        }));
    });
}

/// Every secret a sandbox has held: the values of env.sh (also the ones a test replaced) and
/// the body lines of its private keys: the SSH key and any `*.key` under its folder (a
/// cluster CA's `ca.key`, made by `pgha tls init` or by the first `plan` or `apply` of an
/// inventory without `tls:`; hosts' keys issued by the DBA's own CA). Those files, and env.sh, are the only ones there that may hold them.
///
/// pgha keeps no state of its own elsewhere on the operator's side: it writes only where it
/// is told (`plan --out`, `render --out`, `tls init --dir`) and the CA beside the inventory;
/// its lock lives on the hosts.
struct Ledger {
    /// The sandbox's temporary folder: everything a test and pgha write for it.
    root: PathBuf,
    env_file: PathBuf,
    ssh_key: PathBuf,
    known: Mutex<Vec<Secret>>,
}

/// How a private key's file is named (a cluster CA's `ca.key`, a host's `pg1.key` issued by
/// the DBA's own CA): a secret by design wherever it is under the folder.
const KEY_EXTENSION: &str = "key";

impl Ledger {
    fn new(root: &Path, env_file: &Path, ssh_key: &Path, env: &[(String, String)]) -> Ledger {
        let ledger = Ledger {
            root: root.to_owned(),
            env_file: env_file.to_owned(),
            ssh_key: ssh_key.to_owned(),
            known: Mutex::new(Vec::new()),
        };
        ledger.note_env(env);
        ledger.note_keys();
        ledger
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Vec<Secret>> {
        // A panic while it was held left it whole: every change is one push or one rename.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take in the current values of `env`; a value a name no longer has stays, labelled as
    /// an earlier one.
    fn note_env(&self, env: &[(String, String)]) {
        let mut known = self.known();
        for (name, value) in env {
            let earlier = format!("{name} (an earlier value)");
            for s in known.iter_mut() {
                if s.label == *name && s.value != *value {
                    s.label.clone_from(&earlier);
                }
            }
            match known.iter_mut().find(|s| s.value == *value) {
                Some(s) if s.label == earlier => s.label.clone_from(name),
                Some(_) => {}
                None => known.push(Secret::new(name.as_str(), value.as_str())),
            }
        }
    }

    /// Take in the body lines of the private keys that are secrets by design (a key replaced
    /// or removed since stays).
    fn note_keys(&self) {
        let mut found = Vec::new();
        for path in files_under(&self.root) {
            if !self.is_key_file(&path) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let name = self.relative(&path);
            let what = if path == self.ssh_key {
                format!("the SSH key {name}")
            } else {
                format!("the private key {name}")
            };
            for (n, line) in pem_body_lines(&text) {
                found.push(Secret::new(format!("{what}, line {n}"), line));
            }
        }
        let mut known = self.known();
        for s in found {
            if !known.iter().any(|k| k.value == s.value) {
                known.push(s);
            }
        }
    }

    /// Every secret known so far, the key files read again.
    fn secrets(&self) -> Vec<Secret> {
        self.note_keys();
        self.known().clone()
    }

    fn is_key_file(&self, path: &Path) -> bool {
        *path == self.ssh_key || path.extension() == Some(OsStr::new(KEY_EXTENSION))
    }

    /// Files that are secrets by design: env.sh and the private keys.
    fn is_secret_by_design(&self, path: &Path) -> bool {
        *path == self.env_file || self.is_key_file(path)
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// One line per file under the folder, other than the secrets by design, that holds a
    /// secret (naming the secrets by label) or a private key of any kind.
    fn files_holding_secrets(&self) -> Vec<String> {
        let secrets = self.secrets();
        let mut leaks = Vec::new();
        for path in files_under(&self.root) {
            if self.is_secret_by_design(&path) {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            let mut found = secrets_in(&secrets, &text);
            if text.contains("PRIVATE KEY-----") {
                found.push("a private key");
            }
            if !found.is_empty() {
                leaks.push(format!("  {}: {}", self.relative(&path), found.join(", ")));
            }
        }
        leaks
    }
}

/// The regular files under `dir`, at any depth (symbolic links are not followed).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    files
}

/// The base64 lines inside a text's PEM blocks, numbered from 1 in the file: not the BEGIN
/// and END lines nor header fields, and not a last line too short to be looked for.
fn pem_body_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with("-----BEGIN ") {
            inside = true;
        } else if line.starts_with("-----END ") {
            inside = false;
        } else if inside && !line.contains(':') && line.len() >= Secret::MIN_LEN {
            lines.push((i + 1, line.to_owned()));
        }
    }
    lines
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

    /// A sandbox of `flavour` on the packages image with client routing (`--routing`): three
    /// data hosts (Patroni: three etcd members among them; repmgr: a witness after them).
    pub fn routed(
        tag: &str,
        flavour: pgha::sandbox::Flavour,
        routing: &[pgha::sandbox::Routing],
    ) -> Sandbox {
        use pgha::sandbox::Flavour;
        let hosts = if flavour == Flavour::Repmgr { 4 } else { 3 };
        Sandbox::up_with(tag, Options::packaged(hosts), |o| {
            o.flavour = flavour;
            o.etcd_members = 3;
            o.witness = flavour == Flavour::Repmgr;
            o.routing = routing.to_vec();
        })
    }

    /// A sandbox of `flavour` on the packages image with backups on (`--backups`): three data
    /// hosts (Patroni: three etcd members among them; repmgr: a witness after them).
    pub fn with_backups(tag: &str, flavour: pgha::sandbox::Flavour) -> Sandbox {
        use pgha::sandbox::Flavour;
        let hosts = if flavour == Flavour::Repmgr { 4 } else { 3 };
        Sandbox::up_with(tag, Options::packaged(hosts), |o| {
            o.flavour = flavour;
            o.etcd_members = 3;
            o.witness = flavour == Flavour::Repmgr;
            o.backups = Some(pgha::sandbox::BackupMethod::Basebackup);
        })
    }

    /// Three streaming data hosts on the packages image and pgBackRest's repository on a
    /// fourth (`--backups pgbackrest`: `role: backup`, pg4).
    pub fn with_pgbackrest(tag: &str, flavour: pgha::sandbox::Flavour) -> Sandbox {
        Sandbox::up_with(tag, Options::packaged(3), |o| {
            o.flavour = flavour;
            o.etcd_members = 3;
            o.backups = Some(pgha::sandbox::BackupMethod::Pgbackrest);
        })
    }

    /// Three streaming data hosts on the packages image with pgBackRest's repository in a
    /// folder all of them mount (`--backups pgbackrest-shared`).
    pub fn with_shared_pgbackrest(tag: &str) -> Sandbox {
        Sandbox::up_with(tag, Options::packaged(3), |o| {
            o.backups = Some(pgha::sandbox::BackupMethod::PgbackrestShared);
        })
    }

    /// `data` data hosts on the packages image and `proxies` proxy hosts after them
    /// (`role: proxy`), haproxy on the proxy hosts only.
    pub fn proxied(
        tag: &str,
        flavour: pgha::sandbox::Flavour,
        data: usize,
        proxies: usize,
    ) -> Sandbox {
        Sandbox::up_with(tag, Options::packaged(data), |o| {
            o.flavour = flavour;
            o.routing = vec![pgha::sandbox::Routing::Haproxy];
            o.proxies = proxies;
        })
    }

    fn up_with(tag: &str, options: Options, adjust: impl FnOnce(&mut UpOptions)) -> Sandbox {
        keep_failures();
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
        let ledger = Arc::new(Ledger::new(dir.path(), &info.env_file, &info.key, &env));
        Sandbox {
            info,
            env,
            ledger,
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
        self.ledger.note_env(&self.env);
        let ledger = self.ledger.clone();
        let mut test = Test::new()
            .args(args)
            .args(["-i"])
            .arg_path(inventory)
            .secrets(move || ledger.secrets());
        for (k, v) in &self.env {
            test = test.env(k, v);
        }
        test
    }

    /// `pgha COMMAND -i INVENTORY` as a process the test controls itself (to kill it, or to
    /// tolerate its failure; COMMAND may be a subcommand's words, `drill failover`), with the
    /// sandbox's passwords in the environment. What
    /// [`Pgha::output`] returns is checked for the sandbox's secrets; a spawned run's output
    /// goes where the test sends it: into the sandbox's folder, it is checked at the drop.
    pub fn command(&self, command: &str) -> Pgha {
        self.ledger.note_env(&self.env);
        let mut c = Command::new(env!("CARGO_BIN_EXE_pgha"));
        c.args(command.split_whitespace())
            .arg("-i")
            .arg(self.inventory());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        Pgha {
            command: c,
            ledger: self.ledger.clone(),
        }
    }

    /// A new file's path in the sandbox's folder, for a spawned run's output: the sandbox's
    /// drop checks it for secrets.
    pub fn output_file(&self, name: &str) -> PathBuf {
        let dir = self.ledger.root.join("output");
        std::fs::create_dir_all(&dir).expect("output folder");
        (1..)
            .map(|n| dir.join(format!("{name}.{n}.log")))
            .find(|p| !p.exists())
            .expect("a free name")
    }

    /// Every secret the sandbox has held: env.sh's values (also replaced ones) and its
    /// private keys' lines.
    pub fn secrets(&self) -> Vec<Secret> {
        self.ledger.note_env(&self.env);
        self.ledger.secrets()
    }

    pub fn ip(&self, host: &str) -> String {
        self.info
            .hosts
            .iter()
            .find(|h| h.name == host)
            .map(|h| h.ip.to_string())
            .unwrap_or_else(|| panic!("no host {host}"))
    }

    /// The end of every host's PostgreSQL log, for a test that failed: what the server said
    /// is gone with the containers.
    fn print_server_logs(&self) {
        for h in &self.info.hosts {
            let out = Command::new("docker")
                .args([
                    "exec",
                    &h.container,
                    "sh",
                    "-c",
                    "tail -n 30 /var/log/postgresql/*.log 2>/dev/null; journalctl -q -n 15 --no-pager -u 'patroni*' -u 'pgha-*' 2>/dev/null",
                ])
                .output();
            if let Ok(out) = out {
                let text = masked(&self.secrets(), &String::from_utf8_lossy(&out.stdout));
                eprintln!("--- {} (server log, last lines)\n{text}", h.name);
            }
        }
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
            ". /etc/profile.d/pgha-etcdctl.sh && export ETCDCTL_ENDPOINTS=$(echo \"$ETCDCTL_ENDPOINTS\" | sed 's|//[^:]*:|//127.0.0.1:|; s|,.*||') && lease=$(etcdctl get --prefix /service/ -w json | python3 -c 'import base64, json, sys; print(next(format(kv[\"lease\"], \"x\") for kv in json.load(sys.stdin)[\"kvs\"] if base64.b64decode(kv[\"key\"]).decode().endswith(\"/leader\")))') && etcdctl lease timetolive \"$lease\" | sed -n 's/.*remaining(\\(-*[0-9]*\\)s).*/\\1/p'",
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
            ". /etc/profile.d/pgha-etcdctl.sh && etcdctl endpoint status --cluster -w simple",
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

/// No secret of the sandbox (see [`Ledger`]) anywhere in the texts.
#[track_caller]
pub fn assert_no_secret(sandbox: &Sandbox, texts: &[&str]) {
    let secrets = sandbox.secrets();
    for t in texts {
        let found = secrets_in(&secrets, t);
        assert!(
            found.is_empty(),
            "a secret is shown: {} (masked below)\n{}",
            found.join(", "),
            masked(&secrets, t)
        );
    }
}

/// `pgha` as a process the test controls (see [`Sandbox::command`]): the few methods of
/// [`Command`] the tests use.
pub struct Pgha {
    command: Command,
    ledger: Arc<Ledger>,
}

impl Pgha {
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Pgha {
        self.command.arg(arg);
        self
    }

    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Pgha {
        self.command.stdout(cfg);
        self
    }

    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Pgha {
        self.command.stderr(cfg);
        self
    }

    pub fn spawn(&mut self) -> std::io::Result<Child> {
        self.command.spawn()
    }

    /// Run to the end; fails the test when stdout or stderr shows a secret of the sandbox.
    #[track_caller]
    pub fn output(&mut self) -> std::io::Result<Output> {
        let output = self.command.output()?;
        let secrets = self.ledger.secrets();
        let command_line = format!(
            "pgha {}",
            self.command
                .get_args()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let shown = masked(
            &secrets,
            &format!("{command_line}\n--- stdout\n{stdout}--- stderr\n{stderr}"),
        );
        assert_shows_no_secret(&secrets, &command_line, "stdout", &stdout, &shown);
        assert_shows_no_secret(&secrets, &command_line, "stderr", &stderr, &shown);
        Ok(output)
    }
}

/// The ledger on its own (no containers): what counts as a secret, and where one may be.
#[test]
fn the_ledger_finds_secrets_in_files_but_those_that_are_secrets_by_design() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let state = root.join("sandbox");
    std::fs::create_dir_all(state.join("tls")).expect("folders");
    let env = vec![
        (
            "PGHA_APP_PASSWORD".to_owned(),
            "first-App-1a2b3c4d".to_owned(),
        ),
        (
            "PGHA_REPLICATION_PASSWORD".to_owned(),
            "first-Repl-5e6f7a8b".to_owned(),
        ),
    ];
    std::fs::write(
        state.join("env.sh"),
        "export PGHA_APP_PASSWORD='first-App-1a2b3c4d'\n",
    )
    .expect("env.sh");
    let ca = pgha::tls::new_ca("ledger", 1).expect("a CA");
    std::fs::write(state.join("tls/ca.key"), &ca.key_pem).expect("ca.key");
    let ledger = Ledger::new(root, &state.join("env.sh"), &state.join("id_ed25519"), &env);
    assert!(ledger.files_holding_secrets().is_empty());

    // A rotation: the replaced value stays a secret, named as an earlier one.
    let mut env = env;
    env[0].1 = "second-App-9c8d7e6f".to_owned();
    ledger.note_env(&env);
    let secrets = ledger.secrets();
    assert_eq!(
        secrets_in(&secrets, "old first-App-1a2b3c4d, new second-App-9c8d7e6f"),
        ["PGHA_APP_PASSWORD (an earlier value)", "PGHA_APP_PASSWORD"]
    );
    // The key's body lines are secrets, its BEGIN and END lines are not.
    let body = ca.key_pem.lines().nth(1).expect("a body line");
    assert_eq!(
        secrets_in(&secrets, body),
        ["the private key sandbox/tls/ca.key, line 2"]
    );
    assert!(secrets_in(&secrets, ca.key_pem.lines().next().expect("BEGIN")).is_empty());
    assert_eq!(
        masked(&secrets, "password=second-App-9c8d7e6f"),
        "password=<PGHA_APP_PASSWORD>"
    );

    // Any other file that holds one is named, with the secrets' labels only.
    std::fs::write(state.join("saved.plan"), "{\"pw\": \"first-App-1a2b3c4d\"}").expect("plan");
    std::fs::write(root.join("rendered.conf"), format!("x\n{body}\n")).expect("rendered");
    std::fs::write(state.join("host.pem"), "-----BEGIN PRIVATE KEY-----\n").expect("pem");
    assert_eq!(
        ledger.files_holding_secrets(),
        [
            "  rendered.conf: the private key sandbox/tls/ca.key, line 2",
            "  sandbox/host.pem: a private key",
            "  sandbox/saved.plan: PGHA_APP_PASSWORD (an earlier value)",
        ]
    );
}
