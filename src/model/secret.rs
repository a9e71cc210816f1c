//! Secrets by reference: the inventory names where a password lives, never the password.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
    Command(String),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(v) => write!(f, "env {v}"),
            SecretRef::File(p) => write!(f, "file {}", p.display()),
            SecretRef::Command(c) => write!(f, "command `{c}`"),
        }
    }
}

/// A resolved secret. Its Debug and Display never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value itself: only for the bytes sent to a host, never for anything shown.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{label}: environment variable {var} is not set")]
    EnvMissing { label: String, var: String },
    #[error("{label}: cannot read secret file {path}: {reason}")]
    File {
        label: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{label}: secret command `{command}` failed: {reason}")]
    Command {
        label: String,
        command: String,
        reason: String,
    },
    #[error("{label}: the secret from {source_ref} is empty")]
    Empty { label: String, source_ref: String },
}

impl SecretRef {
    /// Resolve the reference. The first line only: a trailing newline from `echo` or an editor
    /// is not part of a password.
    pub fn resolve(&self, label: &str) -> Result<Secret, SecretError> {
        let raw = match self {
            SecretRef::Env(var) => std::env::var(var).map_err(|_| SecretError::EnvMissing {
                label: label.to_owned(),
                var: var.clone(),
            })?,
            SecretRef::File(path) => read_file(label, path)?,
            SecretRef::Command(command) => run_command(label, command)?,
        };
        let value = raw.lines().next().unwrap_or("").to_owned();
        if value.is_empty() {
            return Err(SecretError::Empty {
                label: label.to_owned(),
                source_ref: self.to_string(),
            });
        }
        Ok(Secret(value))
    }
}

fn read_file(label: &str, path: &Path) -> Result<String, SecretError> {
    std::fs::read_to_string(path).map_err(|e| SecretError::File {
        label: label.to_owned(),
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn run_command(label: &str, command: &str) -> Result<String, SecretError> {
    let fail = |reason: String| SecretError::Command {
        label: label.to_owned(),
        command: command.to_owned(),
        reason,
    };
    let out = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        // Its stderr may echo the secret; say only how it ended.
        return Err(fail(format!("exited with {}", out.status)));
    }
    String::from_utf8(out.stdout).map_err(|_| fail("output is not UTF-8".into()))
}
