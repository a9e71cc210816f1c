//! Secrets by reference: the inventory names where a password lives, never the password.

pub mod scram;

use std::borrow::Cow;
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
    #[error("{label}: the secret from {source_ref} is shorter than 8 characters")]
    TooShort { label: String, source_ref: String },
    #[error("{label}: the secret from {source_ref} does not fit: {reason}")]
    Unfit {
        label: String,
        source_ref: String,
        reason: String,
    },
    #[error("secret `{label}` was not resolved before use")]
    Unresolved { label: String },
}

impl SecretRef {
    /// Resolve the reference. The first line only: a trailing newline from `echo` or an editor
    /// is not part of a password. A PEM block (a private key) is taken whole.
    pub fn resolve(&self, label: &str) -> Result<Secret, SecretError> {
        let raw = match self {
            SecretRef::Env(var) => std::env::var(var).map_err(|_| SecretError::EnvMissing {
                label: label.to_owned(),
                var: var.clone(),
            })?,
            SecretRef::File(path) => read_file(label, path)?,
            SecretRef::Command(command) => run_command(label, command)?,
        };
        let value = if raw.trim_start().starts_with("-----BEGIN ") {
            format!("{}\n", raw.trim())
        } else {
            raw.lines().next().unwrap_or("").to_owned()
        };
        if value.is_empty() {
            return Err(SecretError::Empty {
                label: label.to_owned(),
                source_ref: self.to_string(),
            });
        }
        if value.chars().count() < 8 {
            return Err(SecretError::TooShort {
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

/// Marks around a secret's label inside rendered text: `⟦secret:LABEL⟧` or
/// `⟦secret:LABEL|TRANSFORM⟧`. Rendered files and commands carry these marks instead of the
/// values, so plans, diffs and logs can never hold a password; only the bytes sent to a host
/// have them replaced.
const OPEN: &str = "\u{27e6}secret:";
const CLOSE: char = '\u{27e7}';
pub const MASK: &str = "(sensitive)";

/// Where `open`, the opening of a mark (`⟦secret:`), first stands in `text`. Searched by its
/// first character, which configuration text hardly holds otherwise: much quicker over a long
/// text than a search for the whole opening.
pub fn find_mark(text: &str, open: &str) -> Option<usize> {
    let first = open.chars().next()?;
    let mut from = 0;
    while let Some(at) = text[from..].find(first) {
        let at = from + at;
        if text[at..].starts_with(open) {
            return Some(at);
        }
        from = at + first.len_utf8();
    }
    None
}

/// The mark that stands for a secret in rendered text.
pub fn mark(label: &str, transform: Option<&str>) -> String {
    match transform {
        Some(t) => format!("{OPEN}{label}|{t}{CLOSE}"),
        None => format!("{OPEN}{label}{CLOSE}"),
    }
}

/// Text that may hold secret marks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Sealed(pub String);

impl Sealed {
    /// The text as shown to people: every secret is `(sensitive)`. Borrowed when it has none.
    pub fn masked(&self) -> Cow<'_, str> {
        self.replace_marks(|_, _| Ok::<_, SecretError>(Cow::Borrowed(MASK)))
            .unwrap_or(Cow::Borrowed(MASK))
    }

    pub fn has_secrets(&self) -> bool {
        find_mark(&self.0, OPEN).is_some()
    }

    /// The text with the real values, for the host only. Borrowed when it has no secret.
    pub fn reveal(&self, secrets: &Secrets) -> Result<Cow<'_, str>, SecretError> {
        self.replace_marks(|label, transform| {
            let value = secrets.get(label)?;
            Ok(Cow::Owned(apply_transform(value.expose(), transform)))
        })
    }

    /// The labels of the secrets this text holds whose value (as written here) `host_text`
    /// lacks: the passwords a file on a host still has an older value of. Never the values.
    pub fn labels_missing_from(&self, secrets: &Secrets, host_text: &str) -> Vec<String> {
        let mut labels = Vec::new();
        let _ = self.replace_marks(|label, transform| {
            // A fresh SCRAM verifier differs every time: it says nothing of a rotation.
            if transform != Some("scram_sql") && !labels.iter().any(|l| l == label) {
                if let Ok(value) = secrets.get(label) {
                    if !host_text.contains(&apply_transform(value.expose(), transform)) {
                        labels.push(label.to_owned());
                    }
                }
            }
            Ok::<_, SecretError>(Cow::Borrowed(""))
        });
        labels
    }

    fn replace_marks<E>(
        &self,
        mut f: impl FnMut(&str, Option<&str>) -> Result<Cow<'static, str>, E>,
    ) -> Result<Cow<'_, str>, E> {
        let mut rest = self.0.as_str();
        let Some(mut start) = find_mark(rest, OPEN) else {
            return Ok(Cow::Borrowed(rest));
        };
        let mut out = String::with_capacity(self.0.len());
        loop {
            out.push_str(&rest[..start]);
            let after = &rest[start + OPEN.len()..];
            let Some(end) = after.find(CLOSE) else {
                out.push_str(&rest[start..]);
                return Ok(Cow::Owned(out));
            };
            let inner = &after[..end];
            let (label, transform) = match inner.split_once('|') {
                Some((l, t)) => (l, Some(t)),
                None => (inner, None),
            };
            out.push_str(&f(label, transform)?);
            rest = &after[end + CLOSE.len_utf8()..];
            match find_mark(rest, OPEN) {
                Some(next) => start = next,
                None => break,
            }
        }
        out.push_str(rest);
        Ok(Cow::Owned(out))
    }
}

/// Escaping a secret needs where it goes: `.pgpass` fields escape `:` and `\`; SQL literals
/// double `'`.
fn apply_transform(value: &str, transform: Option<&str>) -> String {
    match transform {
        Some("pgpass") => value.replace('\\', "\\\\").replace(':', "\\:"),
        // A JSON string is a valid YAML scalar: any password, quoted and escaped.
        Some("json") => serde_json::to_string(value).unwrap_or_default(),
        Some("sql") => format!("'{}'", value.replace('\'', "''")),
        // A fresh SCRAM verifier as an SQL literal: the password itself never leaves pgha.
        Some("scram_sql") => format!("'{}'", scram::new_verifier(value)),
        _ => value.to_owned(),
    }
}

/// Resolved secrets by label (`replication.password`, `users[app].password`, ...).
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: std::collections::BTreeMap<String, Secret>,
}

impl Secrets {
    pub fn insert(&mut self, label: &str, secret: Secret) {
        self.values.insert(label.to_owned(), secret);
    }

    /// The labels of every resolved secret, in order.
    pub fn labels(&self) -> Vec<String> {
        self.values.keys().cloned().collect()
    }

    pub fn get(&self, label: &str) -> Result<&Secret, SecretError> {
        self.values
            .get(label)
            .ok_or_else(|| SecretError::Unresolved {
                label: label.to_owned(),
            })
    }

    /// Replace every known secret value in text that came from a host (a file's current
    /// content, a command's output), so it can be shown.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in self.values.values() {
            let v = secret.expose();
            // One- and two-character values would mask unrelated text; such passwords are
            // refused when resolved.
            if v.len() >= 3 {
                out = out.replace(v, MASK);
                let escaped = apply_transform(v, Some("pgpass"));
                if escaped != v {
                    out = out.replace(&escaped, MASK);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_is_named_by_the_labels_whose_value_the_host_lacks() {
        let mut secrets = Secrets::default();
        secrets.insert("replication.password", Secret::new("new:secret-1"));
        secrets.insert("repmgr.password", Secret::new("kept-secret-2"));
        let text = Sealed(format!(
            "a:{r}\nb:{r}\nc:{m}\nd:{v}\n",
            r = mark("replication.password", Some("pgpass")),
            m = mark("repmgr.password", Some("pgpass")),
            v = mark("repmgr.password", Some("scram_sql")),
        ));
        let host = "a:old-secret-1\nb:old-secret-1\nc:kept-secret-2\nd:'SCRAM-SHA-256$...'\n";
        // Once, though the file holds it twice; the escaped value is the one looked for; a
        // verifier, new every time, names nothing.
        assert_eq!(
            text.labels_missing_from(&secrets, host),
            vec!["replication.password".to_owned()]
        );
        let current = "a:new\\:secret-1\nb:new\\:secret-1\nc:kept-secret-2\n";
        assert!(text.labels_missing_from(&secrets, current).is_empty());
    }
}
