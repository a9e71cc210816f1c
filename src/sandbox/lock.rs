//! Machine-wide locks, so parallel `sandbox up` runs (parallel tests) do not start two engines
//! or build the same image twice.
//!
//! Why flock(1) in a child and not `File::lock`: the latter needs Rust 1.89 (the crate's MSRV
//! is older) and libc's flock would need `unsafe`. The child holds the lock as long as its
//! stdin is open, so the lock is released even if this process is killed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{cmd, note, SandboxError};

pub(crate) struct FileLock {
    child: Child,
}

/// `/tmp/<file>`: fixed, not `$TMPDIR`, so every pgha on the machine sees the same lock.
pub(crate) fn lock_path(file: &str) -> PathBuf {
    Path::new("/tmp").join(file)
}

impl FileLock {
    /// Take the exclusive lock on `path`, waiting at most `timeout` for another holder.
    pub(crate) fn acquire(
        path: &Path,
        what: &str,
        timeout: Duration,
    ) -> Result<Self, SandboxError> {
        if let Some(lock) = Self::try_take(path, None)? {
            return Ok(lock);
        }
        note(format!(
            "waiting for another pgha to finish {what} (lock {})",
            path.display()
        ));
        Self::try_take(path, Some(timeout))?.ok_or_else(|| SandboxError::Timeout {
            what: format!("the lock {} ({what})", path.display()),
            seconds: timeout.as_secs(),
            hint: ": another `pgha sandbox up` still holds it".to_string(),
        })
    }

    /// `Ok(None)`: the lock is held by someone else (for `wait`, still after the wait).
    fn try_take(path: &Path, wait: Option<Duration>) -> Result<Option<Self>, SandboxError> {
        let mut c = Command::new("flock");
        c.arg("-x");
        match wait {
            None => c.arg("-n"),
            Some(d) => c.arg("-w").arg(d.as_secs().max(1).to_string()),
        };
        c.arg(path)
            .args(["sh", "-c", "echo locked; exec cat >/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let command = cmd::describe(&c);
        let mut child = c.spawn().map_err(|source| SandboxError::Spawn {
            command: command.clone(),
            source,
        })?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            // EOF (flock gave up) leaves `line` empty: handled below.
            let _ = BufReader::new(out).read_line(&mut line);
        }
        if line.trim() == "locked" {
            return Ok(Some(FileLock { child }));
        }
        let out = child
            .wait_with_output()
            .map_err(|source| SandboxError::Spawn {
                command: command.clone(),
                source,
            })?;
        if out.status.code() == Some(1) {
            return Ok(None);
        }
        cmd::check(command.clone(), &out)?;
        Err(SandboxError::Command {
            command,
            status: cmd::status_text(out.status),
            stderr: "flock ended without taking the lock".to_string(),
        })
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing stdin ends `cat`, which ends flock and releases the lock.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_waits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("l.lock");
        let first = FileLock::acquire(&p, "test", Duration::from_secs(5)).expect("first");
        assert!(FileLock::try_take(&p, None).expect("try").is_none());
        drop(first);
        assert!(FileLock::try_take(&p, None).expect("try").is_some());
    }
}
