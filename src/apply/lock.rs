//! The cluster lock: a file created atomically (O_EXCL through the shell's noclobber) on every
//! host, holding who, when, from where and which plan. A second apply fails fast naming the
//! holder; `pgha force-unlock ID` removes a lock whose apply died.

use serde::{Deserialize, Serialize};

use crate::transport::{Connections, RemoteCommand, TransportError};

pub const LOCK_PATH: &str = "/var/lib/pgha/cluster.lock";

/// The id shown for a lock file that holds no whole record.
pub const CORRUPT: &str = "incomplete";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    pub id: String,
    pub who: String,
    pub operation: String,
    pub since: String,
}

impl LockInfo {
    pub fn new(id: &str, operation: &str) -> Self {
        // The OS's word, not the environment's: cron and CI often run without USER.
        let user = whoami::username()
            .ok()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".into());
        let host = whoami::hostname()
            .ok()
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let since = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        LockInfo {
            id: id.to_owned(),
            who: format!("{user}@{host} pid {}", std::process::id()),
            operation: operation.to_owned(),
            since,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the cluster is locked by {} {} ({}, since {}) on {host}. If that run is no longer running, remove the lock with:\n  pgha force-unlock {} -i {inventory}\nthen run the same command again: apply continues from where the hosts are", .holder.operation, .holder.id, .holder.who, .holder.since, .holder.id)]
    Held {
        host: String,
        holder: LockInfo,
        inventory: String,
    },
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("{host}: cannot take the lock: {reason}")]
    Failed { host: String, reason: String },
}

fn take_command(info: &LockInfo) -> RemoteCommand {
    let json = serde_json::to_string(info).unwrap_or_default();
    RemoteCommand::script(format!(
        "mkdir -p /var/lib/pgha && chmod 0700 /var/lib/pgha; info=$(cat); set -C; if ! printf '%s\\n' \"$info\" > {LOCK_PATH} 2>/dev/null; then echo HELD; cat {LOCK_PATH}; exit 3; fi"
    ))
    .with_stdin(json)
}

/// Take the lock on every host, or none: on any refusal, what was taken is given back.
pub async fn take_all(
    transports: &Connections,
    info: &LockInfo,
    inventory: &str,
) -> Result<(), LockError> {
    let command = take_command(info);
    let results = futures::future::join_all(transports.values().map(|t| {
        let command = command.clone();
        async move { (t.host().to_owned(), t.run(&command).await) }
    }))
    .await;
    let mut error = None;
    for (host, r) in results {
        let out = match r {
            Ok(out) => out,
            Err(e) => {
                error.get_or_insert(LockError::Transport(e));
                continue;
            }
        };
        if out.status == 3 {
            let holder: LockInfo = out
                .stdout
                .lines()
                .nth(1)
                .and_then(|l| serde_json::from_str(l).ok())
                // Killed while writing it: the file exists but holds no whole record.
                .unwrap_or(LockInfo {
                    id: CORRUPT.into(),
                    who: "an apply killed while it took the lock".into(),
                    operation: "apply".into(),
                    since: "?".into(),
                });
            error.get_or_insert(LockError::Held {
                host,
                holder,
                inventory: inventory.to_owned(),
            });
        } else if !out.success() {
            error.get_or_insert(LockError::Failed {
                host,
                reason: out.stderr.trim().to_owned(),
            });
        }
    }
    match error {
        None => Ok(()),
        Some(e) => {
            release_all(transports, &info.id).await;
            Err(e)
        }
    }
}

/// Remove the lock where it holds `id` (never someone else's).
pub async fn release_all(transports: &Connections, id: &str) -> Vec<String> {
    let id = id.replace(|c: char| !c.is_ascii_alphanumeric(), "");
    // A lock that holds no whole record can only be removed by its own name.
    let owned = if id == CORRUPT {
        format!("! grep -q '\"}}' {LOCK_PATH}")
    } else {
        format!("grep -q '\"id\":\"{id}\"' {LOCK_PATH}")
    };
    let command = RemoteCommand::script(format!(
        "if [ -f {LOCK_PATH} ] && {owned}; then rm -f {LOCK_PATH}; echo released; fi"
    ));
    let results = futures::future::join_all(transports.values().map(|t| {
        let command = command.clone();
        async move { (t.host().to_owned(), t.run(&command).await) }
    }))
    .await;
    results
        .into_iter()
        .filter(|(_, r)| r.as_ref().is_ok_and(|o| o.stdout.contains("released")))
        .map(|(h, _)| h)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_owner_comes_from_the_os_even_without_user_in_the_environment() {
        let info = super::LockInfo::new("abc", "apply");
        let owner = info.who.split('@').next().unwrap_or_default().to_owned();
        let os_user = std::process::Command::new("id")
            .arg("-un")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        assert_eq!(owner, os_user);
        assert!(!info.who.contains("unknown"), "{}", info.who);
    }
}
