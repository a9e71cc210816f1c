//! `pgha backup`: the backups component's commands. `now` starts the job on every data host at
//! once (the role guard picks the host, as when the timer fires); `list` shows every host's
//! backups; `test` restores one to a scratch folder and proves it; `restore --to-scratch`
//! leaves such a copy running for the DBA, `restore --stop` ends it.

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::cli::{runtime, CliError, SourceArgs};
use crate::components::backups::probes::{Record, TestReport};
use crate::components::backups::{commands, Backups};
use crate::exit::ExitStatus;
use crate::session::Session;

#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: BackupCommand,
}

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Take a backup now: the scheduled job on every data host at once, the role guard picks
    /// the one that takes it (the primary, or a replica per `backups.from`).
    Now(Common),
    /// Every data host's backups: label, time, size, WAL range, verified, the last restore
    /// test.
    List(Common),
    /// Restore a backup to a scratch folder on its host, start it, check its canary row and
    /// run pg_amcheck, then delete the copy. Exit 0 when it passed, 1 when not.
    Test(TestArgs),
    /// Leave a restored, started copy of a backup for inspection (`--to-scratch`), or stop
    /// and delete such copies (`--stop`). Nothing is restored into the cluster itself.
    Restore(RestoreArgs),
}

#[derive(Args, Debug)]
pub struct Common {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TestArgs {
    #[command(flatten)]
    pub common: Common,
    /// The host whose backup is tested [default: the one with the newest verified backup].
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// The backup's label [default: the newest verified one on the host].
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub test: TestArgs,
    /// Restore to a scratch folder on the backup's host and leave the copy running.
    #[arg(long, conflicts_with = "stop", required_unless_present = "stop")]
    pub to_scratch: bool,
    /// Stop and delete the copies `--to-scratch` left (on `--host`, or on every data host).
    #[arg(long)]
    pub stop: bool,
}

pub fn run(args: &BackupArgs) -> Result<ExitStatus, CliError> {
    let common = match &args.command {
        BackupCommand::Now(c) | BackupCommand::List(c) => c,
        BackupCommand::Test(t) => &t.common,
        BackupCommand::Restore(r) => &r.test.common,
    };
    runtime()?.block_on(async {
        let mut session = common.source.open(&common.source.reach(&[])).await?;
        let result = match &args.command {
            BackupCommand::Now(c) => now(&mut session, c.json).await,
            BackupCommand::List(c) => list(&session, c.json),
            BackupCommand::Test(t) => test(&session, t, false).await,
            BackupCommand::Restore(r) if r.stop => stop(&session, &r.test).await,
            BackupCommand::Restore(r) => test(&session, &r.test, true).await,
        };
        session.close().await;
        result
    })
}

fn settings(session: &Session) -> Result<&Backups, CliError> {
    session
        .project
        .components
        .iter()
        .find_map(|c| c.as_any().downcast_ref::<Backups>())
        .ok_or_else(|| {
            CliError::new("the inventory has no `backups:` section: no host has pgha's backup job")
        })
}

/// The hosts that run the backup job (every data host, or pgBackRest's repository host) and
/// answered.
fn reachable_job_hosts(session: &Session, backups: &Backups) -> Vec<String> {
    backups
        .job_hosts(&session.project.cluster)
        .into_iter()
        .filter(|h| session.facts.contains_key(h))
        .collect()
}

async fn now(session: &mut Session, json: bool) -> Result<ExitStatus, CliError> {
    let backups = settings(session)?;
    let hosts = reachable_job_hosts(session, backups);
    let before: Vec<String> = backups
        .judge(&session.project.cluster, &session.facts)
        .all
        .iter()
        .map(|b| format!("{}/{}", b.host, b.label))
        .collect();
    let answers = commands::run_now(&session.transports, &hosts).await;
    session.refresh_all().await;
    let j = settings(session)?.judge(&session.project.cluster, &session.facts);
    let new: Vec<&Record> = j
        .all
        .iter()
        .filter(|b| !before.contains(&format!("{}/{}", b.host, b.label)) && b.state != "partial")
        .collect();
    let failures: Vec<String> = answers
        .iter()
        .filter(|a| !a.ok)
        .map(|a| format!("{}: {}", a.host, last_line(&a.stderr)))
        .collect();
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            backups: &'a [&'a Record],
            failures: &'a [String],
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&Out {
                backups: &new,
                failures: &failures
            })
            .map_err(CliError::new)?
        );
    } else {
        for b in &new {
            if b.state == "verified" {
                let (take, verify) = if b.method == "pgbackrest" {
                    ("pgbackrest backup", "pgbackrest verify")
                } else {
                    ("pg_basebackup", "pg_verifybackup")
                };
                println!(
                    "{} took backup {}: {} in {:.1} s ({take} {:.1} s, {verify} {:.1} s), WAL {} .. {} on timeline {}, canary row {}",
                    b.host,
                    b.label,
                    crate::human::size(b.size_bytes),
                    b.duration_s,
                    b.backup_s,
                    b.verify_s,
                    b.start_lsn,
                    b.end_lsn,
                    b.timeline.unwrap_or_default(),
                    b.canary.as_ref().map_or(0, |c| c.id)
                );
            } else {
                println!("{}: backup {} {}: {}", b.host, b.label, b.state, b.error);
            }
        }
        for f in &failures {
            eprintln!("{f}");
        }
        if new.is_empty() && failures.is_empty() {
            eprintln!("no host took a backup: {}", skipped_reasons(session));
        }
    }
    Ok(
        if new.iter().any(|b| b.state == "verified") && failures.is_empty() {
            ExitStatus::Success
        } else {
            ExitStatus::Failure
        },
    )
}

/// What each host's last run said (why nobody took a backup).
fn skipped_reasons(session: &Session) -> String {
    let mut out = Vec::new();
    for (host, facts) in &session.facts {
        if let Some((_, Some(r))) = crate::components::backups::probes::read(facts) {
            if let Some(l) = r.last_run {
                out.push(format!("{host}: {} ({})", l.state, l.reason));
            }
        }
    }
    out.join("; ")
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("failed without a message")
        .trim()
        .to_owned()
}

fn list(session: &Session, json: bool) -> Result<ExitStatus, CliError> {
    let j = settings(session)?.judge(&session.project.cluster, &session.facts);
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            backups: &'a [Record],
            newest_good: Option<&'a str>,
            drift: &'a [String],
            unread: &'a [String],
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&Out {
                backups: &j.all,
                newest_good: j.newest_good.as_ref().map(|b| b.label.as_str()),
                drift: &j.drift,
                unread: &j.unread,
            })
            .map_err(CliError::new)?
        );
        return Ok(ExitStatus::Success);
    }
    let mut rows = vec![[
        "HOST",
        "LABEL",
        "STARTED",
        "SIZE",
        "STORED",
        "WAL",
        "TL",
        "STATE",
        "RESTORE TEST",
    ]
    .map(str::to_owned)
    .to_vec()];
    for b in &j.all {
        rows.push(vec![
            b.host.clone(),
            b.label.clone(),
            b.started.clone(),
            crate::human::size(b.size_bytes),
            crate::human::size(b.stored_bytes),
            format!("{}..{}", b.start_lsn, b.end_lsn),
            b.timeline.map(|t| t.to_string()).unwrap_or_default(),
            b.state.clone(),
            match &b.restore_test {
                Some(t) if t.failed() => format!("failed {}: {}", t.at, t.reason),
                Some(t) => format!("{} {}", t.result, t.at),
                None => "-".to_owned(),
            },
        ]);
    }
    print!("{}", table(&rows));
    if j.all.is_empty() {
        println!("(no backups)");
    }
    println!("{}", crate::components::backups::summary(&j));
    for d in &j.drift {
        println!("drift: {d}");
    }
    for h in &j.unread {
        println!("{h}: not read");
    }
    Ok(ExitStatus::Success)
}

fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

async fn test(session: &Session, args: &TestArgs, keep: bool) -> Result<ExitStatus, CliError> {
    let j = settings(session)?.judge(&session.project.cluster, &session.facts);
    let verified = |b: &&Record| b.state == "verified";
    let host = match &args.host {
        Some(h) => h.clone(),
        None => j
            .all
            .iter()
            .rev()
            .filter(verified)
            .find(|b| args.label.as_ref().is_none_or(|l| &b.label == l))
            .map(|b| b.host.clone())
            .ok_or_else(|| CliError::new("no verified backup on any host that answered"))?,
    };
    if !session.facts.contains_key(&host) {
        return Err(CliError::new(format!(
            "{host} is not a data host that answered"
        )));
    }
    let report = commands::test(&session.transports, &host, args.label.as_deref(), keep)
        .await
        .map_err(CliError::new)?;
    if args.common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(CliError::new)?
        );
    } else {
        print!("{}", show_report(&host, &report));
    }
    Ok(match report.result.as_str() {
        "passed" | "running" => ExitStatus::Success,
        _ => ExitStatus::Failure,
    })
}

fn show_report(host: &str, r: &TestReport) -> String {
    let mut out = format!("restore test of {} on {host}: {}", r.label, r.result);
    if !r.reason.is_empty() {
        out.push_str(&format!(": {}", r.reason));
    }
    out.push('\n');
    let times: Vec<String> = r
        .times
        .iter()
        .map(|(k, v)| format!("{} {v:.2} s", k.trim_end_matches("_s")))
        .collect();
    if !times.is_empty() {
        out.push_str(&format!("  times: {}\n", times.join(", ")));
    }
    if let Some(c) = &r.canary {
        out.push_str(&format!(
            "  canary row {} (written at {}) found in the restored copy\n",
            c.id, c.written_at
        ));
    }
    if let Some(a) = &r.amcheck {
        out.push_str(&format!("  pg_amcheck: {a}\n"));
    }
    if let Some(c) = &r.connect {
        out.push_str(&format!(
            "  the copy runs on {host} (no TCP, a socket in its folder): {c}\n  as postgres on {host}; end it with `pgha backup restore --stop --host {host}`\n"
        ));
    }
    out
}

async fn stop(session: &Session, args: &TestArgs) -> Result<ExitStatus, CliError> {
    let backups = settings(session)?;
    let hosts = match &args.host {
        Some(h) => vec![h.clone()],
        None => reachable_job_hosts(session, backups),
    };
    let mut status = ExitStatus::Success;
    for (host, result) in commands::stop_scratch(&session.transports, &hosts).await {
        match result {
            Ok(removed) if removed.is_empty() => println!("{host}: no restored copy"),
            Ok(removed) => println!("{host}: stopped and deleted {}", removed.join(", ")),
            Err(e) => {
                eprintln!("{host}: {e}");
                status = ExitStatus::Failure;
            }
        }
    }
    Ok(status)
}
