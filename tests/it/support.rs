//! A small builder for running the `pgha` binary: arguments, environment, expected status and
//! output, checked with `#[track_caller]` so failures point at the test.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Test {
    args: Vec<String>,
    env: Vec<(String, String)>,
    status: i32,
    stdout: Vec<String>,
    stderr: Vec<String>,
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
        }
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
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let output = command.output().expect("pgha runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let shown = format!(
            "pgha {}\n--- stdout\n{stdout}--- stderr\n{stderr}",
            self.args.join(" ")
        );
        // Whatever a test runs: no password it passed in may come back out.
        for (key, value) in &self.env {
            if key.starts_with("PGHA_") && value.len() >= 8 {
                assert!(
                    !stdout.contains(value.as_str()) && !stderr.contains(value.as_str()),
                    "the value of {key} is shown:\n{shown}"
                );
            }
        }
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

/// The repository's root, where `inventory.example` lives.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
