//! How a drill takes the primary's host down and brings it back, over pgha's SSH connection.
//! Which units and processes are the flavour's word (`Flavour::stop_units`, `manager_unit`).

use std::time::Duration;

use crate::flavours::{run_ok, Flavour, ProcedureError};
use crate::model::Cluster;
use crate::transport::{RemoteCommand, Transport};

/// How the primary goes down (`--crash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Crash {
    /// SIGKILL of the postmaster and of the flavour's manager: a crash.
    Kill,
    /// A clean stop of the flavour's units.
    Stop,
    /// The host cut off the network (but for pgha's own SSH) for the drill's duration.
    Isolate,
}

impl Crash {
    pub fn name(self) -> &'static str {
        match self {
            Crash::Kill => "kill",
            Crash::Stop => "stop",
            Crash::Isolate => "isolate",
        }
    }
}

/// The nftables table an isolation adds; deleting it ends the isolation.
const TABLE: &str = "inet pgha_drill";
/// The transient timer that deletes it on the host itself.
const LIFT_UNIT: &str = "pgha-drill-lift";

/// Why the crash cannot be done on this host, checked before anything is touched.
pub async fn preflight(t: &dyn Transport, crash: Crash) -> Result<(), ProcedureError> {
    if crash != Crash::Isolate {
        return Ok(());
    }
    let out = run_ok(
        t,
        &RemoteCommand::script(
            "for c in nft systemd-run; do command -v $c >/dev/null 2>&1 || echo $c; done",
        ),
        "look for nft",
    )
    .await?;
    if out.is_empty() {
        return Ok(());
    }
    Err(ProcedureError::Refused(format!(
        "--crash isolate needs {} on {} ({}): nothing was touched",
        out.split_whitespace().collect::<Vec<_>>().join(" and "),
        t.host(),
        if out.contains("nft") {
            "Debian's package nftables"
        } else {
            "systemd"
        }
    )))
}

/// The command that takes the host down.
pub fn command(
    flavour: &dyn Flavour,
    cluster: &Cluster,
    crash: Crash,
    duration: Duration,
    operator: &str,
) -> RemoteCommand {
    match crash {
        Crash::Kill => kill(flavour, cluster),
        Crash::Stop => RemoteCommand::script(
            flavour
                .stop_units(cluster)
                .iter()
                .map(|u| format!("systemctl stop {}", shell_words::quote(u)))
                .collect::<Vec<_>>()
                .join(" && "),
        ),
        Crash::Isolate => isolate(duration, operator),
    }
}

/// SIGKILL the manager and the postmaster together: the manager first in the list, so it
/// cannot restart the server in between. The postmaster's PID is the first line of
/// `postmaster.pid` (what PostgreSQL itself trusts); the manager's is systemd's MainPID.
fn kill(flavour: &dyn Flavour, cluster: &Cluster) -> RemoteCommand {
    let manager = flavour
        .manager_unit(cluster)
        .map(|u| {
            format!(
                "m=$(systemctl show -p MainPID --value {} 2>/dev/null || true); case \"$m\" in ''|0|*[!0-9]*) ;; *) pids=\"$m\" ;; esac; ",
                shell_words::quote(&u)
            )
        })
        .unwrap_or_default();
    RemoteCommand::script(format!(
        "pids=''; {manager}p=$(head -n 1 {pidfile} 2>/dev/null || true); case \"$p\" in ''|*[!0-9]*) ;; *) pids=\"$pids $p\" ;; esac; \
         [ -n \"$pids\" ] || {{ echo 'neither the server nor its manager runs' >&2; exit 1; }}; kill -KILL $pids",
        pidfile = shell_words::quote(&format!("{}/postmaster.pid", flavour.data_dir(cluster))),
    ))
}

/// Drop every packet in and out but pgha's SSH (from `operator`, or the address sshd saw
/// the connection come from). The lift is scheduled on the host first, by systemd: a lost
/// SSH connection cannot leave the host cut off.
fn isolate(duration: Duration, operator: &str) -> RemoteCommand {
    RemoteCommand::script(format!(
        "set -e; client=${{SSH_CONNECTION%% *}}; [ -n \"$client\" ] || client={operator}; \
         case \"$client\" in *:*) family=ip6 ;; *) family=ip ;; esac; \
         nft delete table {TABLE} 2>/dev/null || true; \
         systemd-run --quiet --unit={LIFT_UNIT}-$(date +%s) --on-active={secs}s --timer-property=AccuracySec=1s /usr/sbin/nft delete table {TABLE}; \
         printf '%s\\n' 'table {TABLE} {{' \
           ' chain input {{ type filter hook input priority -10; policy drop; iif lo accept; '\"$family\"' saddr '\"$client\"' tcp dport 22 accept; }}' \
           ' chain output {{ type filter hook output priority -10; policy drop; oif lo accept; '\"$family\"' daddr '\"$client\"' tcp sport 22 accept; }}' \
           '}}' | nft -f -",
        operator = shell_words::quote(operator),
        secs = duration.as_secs().max(1),
    ))
}

/// Bring the host back: lift an isolation; start the manager again where it brings its
/// former primary back as a standby (Patroni). Otherwise the server stays down: pgha's apply
/// rejoins it, and a rewind needs it stopped. What was done, for the report.
pub async fn restore(
    t: &dyn Transport,
    flavour: &dyn Flavour,
    cluster: &Cluster,
    crash: Crash,
) -> Result<String, ProcedureError> {
    match crash {
        Crash::Isolate => {
            run_ok(
                t,
                &RemoteCommand::script(format!(
                    "nft delete table {TABLE} 2>/dev/null || true; systemctl stop '{LIFT_UNIT}-*.timer' 2>/dev/null || true"
                )),
                "lift the isolation",
            )
            .await?;
            Ok("the isolation lifted".to_owned())
        }
        Crash::Kill | Crash::Stop if flavour.manager_rejoins() => {
            let units: Vec<String> = match crash {
                Crash::Stop => flavour.stop_units(cluster).into_iter().rev().collect(),
                _ => flavour.manager_unit(cluster).into_iter().collect(),
            };
            run_ok(
                t,
                &RemoteCommand::script(
                    units
                        .iter()
                        .map(|u| format!("systemctl start {}", shell_words::quote(u)))
                        .collect::<Vec<_>>()
                        .join(" && "),
                ),
                "start the manager again",
            )
            .await?;
            Ok(format!("{} started again", units.join(", ")))
        }
        Crash::Kill | Crash::Stop => Ok("left down for apply to rejoin".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(flavour: &str, extra: &str) -> crate::inventory::Inventory {
        crate::inventory::load_str(
            std::path::Path::new("t.yml"),
            &format!("cluster: {{name: t, flavour: {flavour}}}\npostgres: {{version: 15, superuser_password: {{env: X}}}}\nreplication: {{user: replicator, password: {{env: X}}}}\nhosts:\n  - {{name: pg1, address: 10.0.0.1, role: primary}}\n  - {{name: pg2, address: 10.0.0.2, role: standby}}\n{extra}"),
        )
        .expect("loads")
    }

    fn script(c: &RemoteCommand) -> String {
        c.argv.last().map(|a| a.0.clone()).unwrap_or_default()
    }

    #[test]
    fn kill_takes_the_postmaster_from_its_pid_file_and_a_stop_the_flavours_units() {
        let inv = cluster("streaming", "");
        let kill = script(&command(
            inv.flavour.as_ref(),
            &inv.cluster,
            Crash::Kill,
            Duration::from_secs(30),
            "10.0.0.9",
        ));
        assert!(
            kill.contains("head -n 1 /var/lib/postgresql/15/main/postmaster.pid"),
            "{kill}"
        );
        assert!(!kill.contains("MainPID"), "no manager: {kill}");
        let stop = script(&command(
            inv.flavour.as_ref(),
            &inv.cluster,
            Crash::Stop,
            Duration::from_secs(30),
            "10.0.0.9",
        ));
        assert_eq!(stop, "systemctl stop postgresql@15-main");
    }

    #[test]
    fn isolation_schedules_its_own_lift_before_it_cuts() {
        let inv = cluster("streaming", "");
        let cut = script(&command(
            inv.flavour.as_ref(),
            &inv.cluster,
            Crash::Isolate,
            Duration::from_secs(45),
            "10.0.0.9",
        ));
        let lift = cut.find("systemd-run").expect("a lift");
        let drop = cut.find("nft -f -").expect("a cut");
        assert!(lift < drop, "{cut}");
        assert!(cut.contains("--on-active=45s"), "{cut}");
        assert!(cut.contains("tcp dport 22 accept"), "{cut}");
    }
}
