//! `pgha drill failover` end to end: the primary crashed under the drill's own write load
//! (from this machine, through every data host's address), the figures it reports, the
//! cluster whole again after it; and the refusals that touch nothing.

use serde_json::Value;

use crate::cluster::{Options, Sandbox};

/// The drill as JSON; the exit status it must end with.
#[track_caller]
pub fn drill(sb: &Sandbox, args: &[&str], status: i32) -> Value {
    let mut all = vec!["drill", "failover", "--yes", "--json"];
    all.extend_from_slice(args);
    let ran = sb.pgha(all).status(status).run();
    eprintln!("{}", ran.stderr);
    serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("{e}: {}", ran.stdout))
}

fn secs(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("a number of seconds: {v}"))
}

/// What every passed drill shows: writes before and after the crash, a gap that is real and
/// bounded, a new primary that took writes, the old one back as a replica, verify whole.
#[track_caller]
pub fn assert_sane(r: &Value, max_gap: f64) {
    let w = &r["writes"];
    assert!(
        w["before_crash"].as_u64() > Some(0) && w["after_crash"].as_u64() > Some(0),
        "{r:#}"
    );
    let gap = secs(&w["longest_gap_s"]);
    let to_route = secs(&w["time_to_route_s"]);
    assert!(gap > 0.0 && gap < max_gap, "gap {gap}: {r:#}");
    assert!(to_route > 0.0 && to_route < max_gap, "time to route: {r:#}");
    assert_ne!(r["new_primary"], r["old_primary"], "{r:#}");
    assert!(r["new_primary"].is_string(), "{r:#}");
    assert_eq!(r["rejoined_as_replica"], true, "{r:#}");
    assert_eq!(r["apply_after"], "ok", "{r:#}");
    assert_eq!(r["verify_after"], "ok", "{r:#}");
    assert_eq!(r["passed"], true, "{r:#}");
}

/// Nothing was touched: pg1 still the primary, no lock left, no drill table.
#[track_caller]
fn assert_untouched(sb: &Sandbox) {
    assert_eq!(sb.psql("pg1", "SELECT pg_is_in_recovery()"), "f");
    for h in ["pg1", "pg2", "pg3"] {
        assert_eq!(
            sb.sh(h, "ls /var/lib/pgha/cluster.lock 2>/dev/null || true"),
            ""
        );
    }
    assert_eq!(
        sb.psql(
            "pg1",
            "SELECT count(*) FROM pg_class WHERE relname = 'pgha_drill'"
        ),
        "0"
    );
}

/// Streaming does not fail over on its own: the drill kills pg1's postmaster, runs pgha's
/// failover once it sees it down, and apply rewinds pg1 back in as a replica. Asynchronous:
/// the writes pg1 acknowledged in its last moment may be lost, and are counted.
#[test]
fn streaming_drill_kill_runs_pghas_failover_and_rejoins_the_old_primary() {
    let sb = Sandbox::up("drill", Options::packaged(3));
    sb.pgha(["apply", "-y"])
        .stdout_has("10 checks run, 10 passed, 0 failed.")
        .run();

    // Refusals, before anything is touched.
    sb.pgha(["drill", "failover"])
        .status(1)
        .stderr_has("type the cluster's name, or pass --yes. Nothing was touched")
        .run();
    sb.pgha(["drill", "failover", "--yes", "--via", "vip"])
        .status(1)
        .stderr_has("--via vip: the inventory has no routing.vip")
        .run();
    sb.pgha(["drill", "failover", "--yes", "--crash", "isolate"])
        .status(1)
        .stderr_has("the streaming flavour does not fail over on its own")
        .run();
    assert_untouched(&sb);

    let r = drill(&sb, &["--crash", "kill", "--duration", "20"], 0);
    eprintln!("streaming drill: {r:#}");
    assert_eq!(
        (&r["flavour"], &r["route"], &r["crash"], &r["old_primary"]),
        (
            &Value::from("streaming"),
            &Value::from("multihost"),
            &Value::from("kill"),
            &Value::from("pg1")
        )
    );
    assert_eq!(r["failover_by"], "pgha failover", "{r:#}");
    assert_eq!(r["synchronous"], false);
    // pgha's failover is run as soon as the primary is seen down.
    assert_sane(&r, 30.0);
    let lost = r["writes"]["lost"].as_u64().expect("read back");
    assert!(lost <= 100, "at most the last moment's writes: {r:#}");
    // The drill's table is gone, the lock released, nothing left to do.
    let new = r["new_primary"].as_str().expect("new primary");
    assert_eq!(
        sb.psql(
            new,
            "SELECT count(*) FROM pg_class WHERE relname = 'pgha_drill'"
        ),
        "0"
    );
    sb.assert_converged();

    // Ctrl-C right after the crash: the drill is cut short, yet the crashed primary is
    // brought back and apply runs before it exits (130, a report that fails saying why),
    // the lock released; nothing is left to do.
    let r = interrupted_drill(&sb);
    assert_eq!(r["passed"], false, "{r:#}");
    assert_eq!(
        r["broken"][0], "stopped by a signal: the drill was cut short",
        "{r:#}"
    );
    assert_eq!(r["apply_after"], "ok", "{r:#}");
    assert_eq!(r["verify_after"], "ok", "{r:#}");
    for h in ["pg1", "pg2", "pg3"] {
        assert_eq!(
            sb.sh(h, "ls /var/lib/pgha/cluster.lock 2>/dev/null || true"),
            "",
            "the lock is released"
        );
    }
    sb.assert_converged();
}

/// A drill that gets SIGINT once it has crashed the primary: its report (it exits 130).
fn interrupted_drill(sb: &Sandbox) -> Value {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let out = sb.output_file("drill-out");
    let err = sb.output_file("drill-err");
    let mut command = sb.command("drill failover");
    for arg in ["--yes", "--json", "--crash", "kill", "--duration", "20"] {
        command.arg(arg);
    }
    let child = command
        .stdout(Stdio::from(std::fs::File::create(&out).expect("out")))
        .stderr(Stdio::from(std::fs::File::create(&err).expect("err")))
        .spawn()
        .expect("spawn the drill");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !std::fs::read_to_string(&err)
        .unwrap_or_default()
        .contains("crashing")
    {
        assert!(
            Instant::now() < deadline,
            "the drill did not crash the primary:\n{}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let mut child = child;
    let code = child.wait().expect("wait").code();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    eprintln!("{stderr}");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("the drill is cut short"), "{stderr}");
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Patroni fails over on its own: a clean stop of pg1's Patroni gives up the leader key, a
/// replica takes over, the drill starts Patroni again and it comes back as a replica. A
/// clean stop sends every WAL record first: nothing acknowledged is lost.
#[test]
fn patroni_drill_stop_fails_over_on_its_own_and_loses_nothing() {
    let sb = Sandbox::patroni("drill", 3);
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    // A host without nftables: an isolation is refused before anything is touched.
    sb.sh("pg1", "mv /usr/sbin/nft /usr/sbin/nft.away");
    sb.pgha(["drill", "failover", "--yes", "--crash", "isolate"])
        .status(1)
        .stderr_has(
            "--crash isolate needs nft on pg1 (Debian's package nftables): nothing was touched",
        )
        .run();
    assert_untouched(&sb);
    sb.sh("pg1", "mv /usr/sbin/nft.away /usr/sbin/nft");

    let r = drill(&sb, &["--crash", "stop", "--duration", "40"], 0);
    eprintln!("patroni drill: {r:#}");
    assert_eq!(
        (&r["flavour"], &r["failover_by"], &r["old_primary"]),
        (
            &Value::from("patroni"),
            &Value::from("the flavour"),
            &Value::from("pg1")
        )
    );
    assert_sane(&r, 45.0);
    assert_eq!(r["writes"]["lost"], 0, "{r:#}");
    let new = r["new_primary"].as_str().expect("new primary");
    assert_eq!(
        sb.psql(
            new,
            "SELECT count(*) FROM pg_class WHERE relname = 'pgha_drill'"
        ),
        "0"
    );
    sb.assert_plan_clean();

    // The new leader cut off the network (pgha's SSH kept): Patroni there loses etcd and
    // steps down, a replica takes the key; after the isolation lifts the old leader rejoins.
    let r = drill(&sb, &["--crash", "isolate", "--duration", "45"], 0);
    eprintln!("patroni isolate drill: {r:#}");
    assert_eq!(r["old_primary"], Value::from(new), "{r:#}");
    assert_sane(&r, 60.0);
    assert_eq!(
        sb.sh(
            new,
            "nft list tables 2>/dev/null | grep -c pgha_drill || true"
        )
        .trim(),
        "0",
        "the isolation was lifted"
    );
    sb.assert_plan_clean();
}
