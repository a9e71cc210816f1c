//! The rolling minor upgrade end to end: a cluster installed at 15.18 (Debian's `bookworm`
//! suite; the image has `bookworm-security`'s 15.20, so the hosts are downgraded first, in
//! parallel), then `postgres.package_version` pinned to 15.20 and applied under a write load:
//! standbys first, a switchover, the old primary last. Every server runs 15.20 afterwards,
//! no acknowledged write is lost, plan is clean, and the figures are printed.

use std::time::{Duration, Instant};

use crate::cluster::{Options, Sandbox};
use crate::load::{app_conninfo, Writer};

const OLD: &str = "15.18-0+deb12u1";
const NEW: &str = "15.20-0+deb12u1";
const HOSTS: [&str; 3] = ["pg1", "pg2", "pg3"];

/// Install 15.18 on every host at once, before pgha's first apply.
fn downgrade(sb: &Sandbox) {
    let script = format!(
        "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq >/dev/null && \
         apt-get install -y -qq --allow-downgrades postgresql-15={OLD} postgresql-client-15={OLD} libpq5={OLD} >/dev/null"
    );
    std::thread::scope(|s| {
        for host in HOSTS {
            let script = script.as_str();
            s.spawn(move || sb.sh(host, script));
        }
    });
}

fn server_version(sb: &Sandbox, host: &str) -> String {
    sb.psql(host, "SELECT current_setting('server_version')")
}

fn primary(sb: &Sandbox) -> &'static str {
    HOSTS
        .into_iter()
        .find(|h| sb.psql(h, "SELECT pg_is_in_recovery()") == "f")
        .expect("a primary")
}

/// From 15.18 to 15.20 under a write load; the figures as one line.
fn rolling_upgrade(sb: &Sandbox, flavour: &str, drifted: Option<&str>) {
    for host in HOSTS {
        assert!(
            server_version(sb, host).starts_with("15.18 "),
            "{host} runs 15.18 before the upgrade"
        );
    }
    // The newest candidate the hosts' apt sources offer, and the upgrade to it (written by
    // hand below: the archive may have moved past 15.20 by the time this runs).
    sb.pgha(["upgrade", "--minor"])
        .stdout_has("pg1: postgresql-15 candidate ")
        .stdout_has("The newest minor version every host offers: ")
        .stdout_has("rolling minor upgrade to ")
        .stdout_has("To upgrade, pin it in the inventory")
        .run();
    sb.edit_inventory(
        "  version: 15\n",
        &format!("  version: 15\n  package_version: \"{NEW}\"\n"),
    );
    let before = primary(sb);
    let mut plan = sb.pgha(["plan", "--detailed-exitcode"]);
    if let Some(host) = drifted {
        plan = plan.stdout_has(&format!(
            "{host}: package {NEW} → {NEW}, server runs {OLD}: restart (its server still runs the old binary)"
        ));
    }
    plan.status(2)
        .stdout_has(&format!("rolling minor upgrade to {NEW}"))
        .stdout_has(&format!("package {OLD} → {NEW}, server runs {OLD}"))
        .stdout_has(&format!("switch over from {before} to "))
        .run();
    let (conninfo, password) = app_conninfo(sb, &HOSTS);
    let writer = Writer::start(&conninfo, &password);
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    let applied = sb
        .pgha(["apply", "-y"])
        .stdout_has("Minor upgrade: 3 hosts done.")
        .stdout_has(&format!("Minor upgrade: switched over from {before} to "))
        .run();
    let total = started.elapsed();
    let ended = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let acked = writer.stop();
    for host in HOSTS {
        let v = server_version(sb, host);
        assert!(
            v.starts_with("15.20 "),
            "{host} runs {v} after the upgrade\n{}",
            applied.stdout
        );
    }
    let after = primary(sb);
    assert_ne!(
        before, after,
        "the primary role moved before the old primary's turn"
    );
    let gap = acked.longest_gap(started, ended);
    let missing = acked.missing_on(sb, after);
    eprintln!(
        "rolling upgrade {flavour}: total {:.1} s, longest write gap {:.1} s, {} writes acknowledged, {} missing, primary {before} -> {after}",
        total.as_secs_f64(),
        gap.as_secs_f64(),
        acked.ids.len(),
        missing.len()
    );
    // Apply's own account: each host's turn and the switchover's pause (progress is on
    // stderr, the summary on stdout).
    for line in applied
        .stderr
        .lines()
        .chain(applied.stdout.lines())
        .filter(|l| l.contains("minor upgrade: ") || l.starts_with("Minor upgrade: "))
    {
        eprintln!("  {line}");
    }
    assert!(acked.after(ended) > 0, "writes go on after the upgrade");
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    sb.assert_plan_clean();
}

#[test]
fn streaming_rolling_upgrade_under_load() {
    let sb = Sandbox::up("minor-streaming", Options::packaged(3));
    downgrade(&sb);
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    // pg3's packages upgraded by hand with the maintainer scripts kept from restarting it:
    // its server still runs 15.18, which plan shows as a restart to do.
    sb.sh(
        "pg3",
        &format!(
            "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d && \
             DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15={NEW} postgresql-client-15={NEW} libpq5={NEW} >/dev/null; \
             s=$?; rm -f /usr/sbin/policy-rc.d; exit $s"
        ),
    );
    rolling_upgrade(&sb, "streaming", Some("pg3"));
}

#[test]
fn patroni_rolling_upgrade_with_synchronous_mode_loses_no_acknowledged_write() {
    let sb = Sandbox::patroni("minor-patroni", 3);
    downgrade(&sb);
    sb.edit_inventory("  etcd:\n", "  synchronous_mode: true\n  etcd:\n");
    sb.pgha(["apply", "-y"])
        .stdout_has("synchronous standby")
        .stdout_has("0 failed.")
        .run();
    rolling_upgrade(&sb, "patroni", None);
}

/// repmgr: the witness (already at 15.20) is left as it is; the switchover is repmgr's own.
#[test]
fn repmgr_rolling_upgrade_under_load() {
    let sb = Sandbox::repmgr("minor-repmgr", 3);
    downgrade(&sb);
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    rolling_upgrade(&sb, "repmgr", None);
}
