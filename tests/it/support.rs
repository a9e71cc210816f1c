//! A small builder for running the `pgha` binary: arguments, environment, expected status and
//! output, checked with `#[track_caller]` so failures point at the test. No run may show a
//! secret: neither a `PGHA_*` value it was given nor one of the secrets it is told of.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a run learns, once it has ended, the secrets it must not show (a run may make one:
/// the first `plan` makes the cluster's CA).
pub type SecretSource = Box<dyn FnOnce() -> Vec<Secret> + Send>;

pub struct Test {
    args: Vec<String>,
    env: Vec<(String, String)>,
    status: i32,
    stdout: Vec<String>,
    stderr: Vec<String>,
    secrets: Option<SecretSource>,
    /// Where it runs (relative paths in its arguments start there).
    dir: Option<PathBuf>,
}

/// A text no output may hold, and the label that names it in a failure (never the text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secret {
    pub label: String,
    pub value: String,
}

impl Secret {
    /// Shorter texts than this are not looked for: they turn up in output by chance.
    pub const MIN_LEN: usize = 8;

    pub fn new(label: impl Into<String>, value: impl Into<String>) -> Secret {
        Secret {
            label: label.into(),
            value: value.into(),
        }
    }
}

/// The labels of the secrets `text` holds, each once.
pub fn secrets_in<'a>(secrets: &'a [Secret], text: &str) -> Vec<&'a str> {
    let mut labels: Vec<&str> = Vec::new();
    for s in secrets {
        if s.value.len() >= Secret::MIN_LEN
            && text.contains(s.value.as_str())
            && !labels.contains(&s.label.as_str())
        {
            labels.push(&s.label);
        }
    }
    labels
}

/// `text` with every secret replaced by its label, fit for a failure message.
pub fn masked(secrets: &[Secret], text: &str) -> String {
    let mut sorted: Vec<&Secret> = secrets
        .iter()
        .filter(|s| s.value.len() >= Secret::MIN_LEN)
        .collect();
    // The longest first: a secret that holds another is masked whole.
    sorted.sort_by_key(|s| std::cmp::Reverse(s.value.len()));
    let mut out = text.to_owned();
    for s in sorted {
        out = out.replace(s.value.as_str(), &format!("<{}>", s.label));
    }
    out
}

pub struct Ran {
    pub stdout: String,
    pub stderr: String,
}

impl Test {
    pub fn new() -> Self {
        Test {
            args: Vec::new(),
            env: Vec::new(),
            status: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            secrets: None,
            dir: None,
        }
    }

    /// The secrets the run must not show on stdout or stderr, read once it has ended.
    pub fn secrets(mut self, source: impl FnOnce() -> Vec<Secret> + Send + 'static) -> Self {
        self.secrets = Some(Box::new(source));
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn arg_path(mut self, path: &Path) -> Self {
        self.args.push(path.display().to_string());
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_owned());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn status(mut self, status: i32) -> Self {
        self.status = status;
        self
    }

    pub fn stdout_has(mut self, text: &str) -> Self {
        self.stdout.push(text.to_owned());
        self
    }

    pub fn stderr_has(mut self, text: &str) -> Self {
        self.stderr.push(text.to_owned());
        self
    }

    #[track_caller]
    pub fn run(self) -> Ran {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pgha"));
        command.args(&self.args).env("NO_COLOR", "1");
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let output = command.output().expect("pgha runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        // Whatever a test runs: no password it passed in may come back out, nor any secret it
        // was told of.
        let mut secrets: Vec<Secret> = self
            .env
            .iter()
            .filter(|(key, _)| key.starts_with("PGHA_"))
            .map(|(key, value)| Secret::new(key.as_str(), value.as_str()))
            .collect();
        if let Some(source) = self.secrets {
            secrets.extend(source());
        }
        let command_line = format!("pgha {}", self.args.join(" "));
        let shown = masked(
            &secrets,
            &format!("{command_line}\n--- stdout\n{stdout}--- stderr\n{stderr}"),
        );
        assert_shows_no_secret(&secrets, &command_line, "stdout", &stdout, &shown);
        assert_shows_no_secret(&secrets, &command_line, "stderr", &stderr, &shown);
        assert_eq!(
            output.status.code(),
            Some(self.status),
            "exit status\n{shown}"
        );
        for text in &self.stdout {
            assert!(
                stdout.contains(text.as_str()),
                "stdout lacks {text:?}\n{shown}"
            );
        }
        for text in &self.stderr {
            assert!(
                stderr.contains(text.as_str()),
                "stderr lacks {text:?}\n{shown}"
            );
        }
        Ran { stdout, stderr }
    }
}

/// Fails naming the secrets `text` (the `stream` of `command_line`) holds; `shown` is the
/// run's output with the secrets masked.
#[track_caller]
pub fn assert_shows_no_secret(
    secrets: &[Secret],
    command_line: &str,
    stream: &str,
    text: &str,
    shown: &str,
) {
    let found = secrets_in(secrets, text);
    assert!(
        found.is_empty(),
        "`{}` shows a secret on {stream}: {} (masked below)\n{shown}",
        masked(secrets, command_line),
        found.join(", ")
    );
}

/// The repository's root, where `inventory.example` lives.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A run that shows a secret fails naming it by its label; the message never holds it.
#[test]
fn a_secret_on_stdout_fails_the_run_by_its_label() {
    let failed = std::panic::catch_unwind(|| {
        Test::new()
            .args(["validate", "-i"])
            .arg_path(&root().join("inventory.example"))
            .secrets(|| vec![Secret::new("the cluster's name", "cluster `demo`")])
            .run();
    })
    .expect_err("the run fails");
    let message = failed
        .downcast_ref::<String>()
        .expect("a formatted message");
    assert!(
        message.contains("shows a secret on stdout: the cluster's name")
            && message.contains("valid: <the cluster's name>")
            && !message.contains("cluster `demo`"),
        "{message}"
    );
}
