//! What `pgha backup` does on the hosts, over their connections: the job now on every data
//! host at once (as the timers would start it: the role guard picks the host), a restore test
//! where a backup is, a copy left running for the DBA, and the end of such copies.

use std::collections::BTreeMap;

use futures::future::join_all;

use crate::transport::{Connections, RemoteCommand};

use super::probes::TestReport;
use super::BIN;

/// One host's answer to a command.
#[derive(Debug, Clone)]
pub struct Answer {
    pub host: String,
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

fn job(args: &[&str]) -> RemoteCommand {
    let mut argv = vec![BIN];
    argv.extend_from_slice(args);
    RemoteCommand::new(argv).as_user("postgres")
}

async fn on(transports: &Connections, host: &str, args: &[&str]) -> Answer {
    let command = job(args);
    match transports.get(host) {
        None => Answer {
            host: host.to_owned(),
            ok: false,
            stdout: String::new(),
            stderr: "not connected".to_owned(),
        },
        Some(t) => match t.run(&command).await {
            Ok(out) => Answer {
                host: host.to_owned(),
                ok: out.success(),
                stdout: out.stdout,
                stderr: out.stderr,
            },
            Err(e) => Answer {
                host: host.to_owned(),
                ok: false,
                stdout: String::new(),
                stderr: e.to_string(),
            },
        },
    }
}

/// The backup job on every one of `hosts` at the same moment, as the timer fires it.
pub async fn run_now(transports: &Connections, hosts: &[String]) -> Vec<Answer> {
    join_all(hosts.iter().map(|h| on(transports, h, &["run", "--now"]))).await
}

/// A restore test on `host` (of `label`, or of the newest verified backup there); `keep`
/// leaves the copy running.
pub async fn test(
    transports: &Connections,
    host: &str,
    label: Option<&str>,
    keep: bool,
) -> Result<TestReport, String> {
    let mut args = vec!["test"];
    if let Some(l) = label {
        args.extend(["--label", l]);
    }
    if keep {
        args.push("--keep");
    }
    let answer = on(transports, host, &args).await;
    let line = answer.stdout.lines().rev().find(|l| l.starts_with('{'));
    match line.map(serde_json::from_str::<TestReport>) {
        Some(Ok(report)) => Ok(report),
        _ => Err(format!(
            "{host}: the restore test did not report: {}",
            answer.stderr.trim()
        )),
    }
}

/// Stops and deletes the copies `--keep` left on these hosts: the folders removed, by host.
pub async fn stop_scratch(
    transports: &Connections,
    hosts: &[String],
) -> BTreeMap<String, Result<Vec<String>, String>> {
    let answers = join_all(hosts.iter().map(|h| on(transports, h, &["stop-scratch"]))).await;
    answers
        .into_iter()
        .map(|a| {
            let removed = serde_json::from_str::<serde_json::Value>(a.stdout.trim())
                .ok()
                .and_then(|v| {
                    v["removed"].as_array().map(|r| {
                        r.iter()
                            .filter_map(|s| s.as_str().map(str::to_owned))
                            .collect()
                    })
                });
            let result = match (a.ok, removed) {
                (true, Some(r)) => Ok(r),
                _ => Err(a.stderr.trim().to_owned()),
            };
            (a.host, result)
        })
        .collect()
}
