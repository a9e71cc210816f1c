//! The rolling minor upgrade (`plan::upgrade` decides the order): one host at a time, the
//! standbys first. On each: install the server's packages at the pinned version with
//! Debian's maintainer scripts kept from stopping or starting PostgreSQL (postgresql-15's
//! prerm stops every cluster of the version, its postinst starts them: on the primary that is
//! an unplanned outage, under Patroni a server started behind Patroni's back), then restart
//! the server the flavour's way and wait until it runs the new version and streams again.
//! Before the primary's turn the role moves to an upgraded standby with the flavour's own
//! switchover (`handover::switchover`, which converges), so the old primary is upgraded as a
//! standby. Every host's part is read again from fresh facts before it is done: an
//! interrupted upgrade continues where it stopped.

use std::time::{Duration, Instant};

use crate::apply::handover::{self, HandoverError};
use crate::apply::{Event, Observer, Stop};
use crate::flavours::{run_ok, ProcedureError};
use crate::plan::upgrade::{self, HostUpgrade};
use crate::session::{Session, SessionError};
use crate::steps::package::install_script;
use crate::transport::RemoteCommand;

const STEP: &str = "minor upgrade";

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Procedure(#[from] ProcedureError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Handover(#[from] HandoverError),
}

/// What the upgrade did.
#[derive(Debug, Default)]
pub struct Report {
    /// Hosts upgraded or restarted, in order.
    pub hosts: Vec<String>,
    /// The switchover's write gap, when there was one.
    pub switchover: Option<(String, String, Duration)>,
    /// A stop was requested before the upgrade ended.
    pub stopped: bool,
}

/// The upgrade as the facts call for it now; None once every host runs the pin.
fn current(session: &Session) -> Result<Option<upgrade::Upgrade>, UpgradeError> {
    let (topology, _) = session.topology()?;
    Ok(upgrade::plan(
        &session.project.cluster,
        session.project.flavour.as_ref(),
        &topology,
        &session.facts,
    ))
}

fn part_of(u: &upgrade::Upgrade, host: &str) -> Option<HostUpgrade> {
    u.hosts.iter().find(|h| h.host == host).cloned()
}

pub async fn run(
    session: &mut Session,
    observer: &dyn Observer,
    stop: &Stop,
) -> Result<Report, UpgradeError> {
    let mut report = Report::default();
    let say = |host: &str, text: String| {
        observer.event(Event::Said {
            host: host.to_owned(),
            step: STEP.to_owned(),
            text,
        })
    };
    download(session, &say).await?;
    loop {
        if stop.requested() {
            report.stopped = true;
            return Ok(report);
        }
        session.refresh_every().await?;
        let Some(u) = current(session)? else {
            return Ok(report);
        };
        if let Some(why) = &u.refusal {
            return Err(UpgradeError::Failed(why.clone()));
        }
        let Some(next) = u.hosts.first().cloned() else {
            return Ok(report);
        };
        if next.primary && next.restart {
            if let Some(to) = &u.switchover_to {
                say(
                    &next.host,
                    format!("switching over to {to} before its upgrade"),
                );
                let r = handover::switchover(session, to, observer).await?;
                if !r.failed_hosts.is_empty() {
                    return Err(UpgradeError::Failed(format!(
                        "the switchover to {to} converged with failures: {}",
                        r.failed_hosts.join("; ")
                    )));
                }
                say(
                    &next.host,
                    format!(
                        "switched over to {to}: writes paused {:.1} s",
                        r.write_gap.as_secs_f64()
                    ),
                );
                report.switchover = Some((r.old_primary, r.new_primary, r.write_gap));
                // Its part again, as a standby now.
                continue;
            }
        }
        one_host(session, &u.version, &next, &say).await?;
        report.hosts.push(next.host.clone());
        session.refresh(&next.host).await?;
        if current(session)?
            .and_then(|u| part_of(&u, &next.host))
            .is_some()
        {
            return Err(UpgradeError::Failed(format!(
                "{}: still not at {} after its upgrade",
                next.host, u.version
            )));
        }
    }
}

/// Fetch every host's packages into apt's cache first, all hosts at once: the install
/// during each host's turn then only unpacks, and the turns are shorter.
async fn download(session: &mut Session, say: &dyn Fn(&str, String)) -> Result<(), UpgradeError> {
    let Some(u) = current(session)? else {
        return Ok(());
    };
    if u.refusal.is_some() {
        return Ok(());
    }
    let jobs = u
        .hosts
        .iter()
        .filter(|h| !h.install.is_empty())
        .filter_map(|h| {
            let specs: Vec<String> = h
                .install
                .iter()
                .map(|p| format!("{p}={}", u.version))
                .collect();
            let t = session.transports.get(&h.host)?;
            let host = h.host.clone();
            Some(async move {
                let r = run_ok(
                    t.as_ref(),
                    &RemoteCommand::script(install_script(&specs, "--download-only ")),
                    "download the packages",
                )
                .await;
                (host, r)
            })
        });
    for (host, r) in futures::future::join_all(jobs).await {
        r?;
        say(&host, format!("downloaded the packages of {}", u.version));
    }
    Ok(())
}

/// Install, restart, wait: one host's part.
async fn one_host(
    session: &mut Session,
    version: &str,
    part: &HostUpgrade,
    say: &dyn Fn(&str, String),
) -> Result<(), UpgradeError> {
    let host = part.host.as_str();
    if !part.install.is_empty() {
        let specs: Vec<String> = part
            .install
            .iter()
            .map(|p| format!("{p}={version}"))
            .collect();
        let transport = session
            .transports
            .get(host)
            .ok_or_else(|| UpgradeError::Failed(format!("no connection to {host}")))?;
        run_ok(
            transport.as_ref(),
            &RemoteCommand::script(install_guarded(&specs)),
            "install the packages",
        )
        .await?;
        say(host, format!("installed {}", specs.join(" ")));
        session.refresh(host).await?;
    }
    let running = session.facts.get(host).and_then(upgrade::running_version);
    let Some(running) = running else {
        // Not running: it starts on the new binary whenever it starts.
        return Ok(());
    };
    if upgrade::runs(&running, version) {
        return Ok(());
    }
    let (topology, _) = session.topology()?;
    let standby = topology.upstream.contains_key(host);
    let flavour = session.project.flavour.clone();
    let started = Instant::now();
    {
        let view = session.view(&topology);
        flavour.restart_member(&view, host).await?;
    }
    // Back on the new binary, and streaming again when a standby.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        session.refresh(host).await?;
        let f = session.facts.get(host);
        let at = f.and_then(upgrade::running_version);
        let streams = f
            .and_then(|f| f.postgres.as_ref())
            .is_some_and(|pg| pg.streams());
        if at.as_deref().is_some_and(|r| upgrade::runs(r, version)) && (streams || !standby) {
            say(
                host,
                format!(
                    "restarted on {version}{} after {:.1} s",
                    if standby { ", streaming" } else { "" },
                    started.elapsed().as_secs_f64()
                ),
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(UpgradeError::Failed(format!(
                "{host} did not {} within 180 s of its restart (it runs {})",
                if standby {
                    format!("run {version} and stream again")
                } else {
                    format!("run {version}")
                },
                at.as_deref().unwrap_or("nothing")
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The install under a policy-rc.d that refuses PostgreSQL's units to the maintainer scripts
/// (and asks any policy the host had for the others), removed afterwards.
fn install_guarded(specs: &[String]) -> String {
    const POLICY: &str = "/usr/sbin/policy-rc.d";
    const SAVED: &str = "/usr/sbin/policy-rc.d.pgha-saved";
    const MARK: &str = "# pgha: rolling minor upgrade";
    format!(
        "if [ -e {POLICY} ] && ! grep -q '^{MARK}' {POLICY}; then mv {POLICY} {SAVED}; fi; \
         printf '%s\\n' '#!/bin/sh' '{MARK}: PostgreSQL restarts one host at a time' \
           'case \"$1\" in postgresql*) exit 101 ;; esac' \
           'if [ -x {SAVED} ]; then exec {SAVED} \"$@\"; fi' 'exit 0' > {POLICY}; \
         chmod 0755 {POLICY}; \
         trap 'rm -f {POLICY}; if [ -e {SAVED} ]; then mv {SAVED} {POLICY}; fi' EXIT; \
         ( {install} )",
        install = install_script(specs, ""),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_guarded_install_is_valid_sh() {
        let script = super::install_guarded(&["postgresql-15=15.20-0+deb12u1".to_owned()]);
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", &script])
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(script.contains("postgresql*) exit 101"));
    }
}
