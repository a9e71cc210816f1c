//! Operating through faults on real hosts: a host down, signals during apply, a dead primary.

use std::time::{Duration, Instant};

use crate::cluster::{Options, Sandbox};

/// One standby's host stopped: status shows every member (that one `unreachable`, with the
/// reason) and exits 1 after printing; verify fails that host's rows and runs the others;
/// plan names it and exits 1; `plan -l` on the others never contacts it; apply refuses.
/// Back up, nothing is left to do.
#[test]
fn a_host_down_is_a_state_not_a_crash() {
    let sb = Sandbox::up("down", Options::packaged(3));
    sb.pgha(["apply", "-y"])
        .stdout_has("10 checks run, 10 passed, 0 failed.")
        .run();
    sb.docker("stop", "pg3");

    let status = sb.pgha(["status"]).status(1).run();
    let row = |host: &str| {
        status
            .stdout
            .lines()
            .find(|l| l.contains(&format!("{host}  ")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(row("pg1").contains("primary"), "{}", status.stdout);
    assert!(row("pg2").contains("streaming"), "{}", status.stdout);
    assert!(row("pg3").contains("unreachable"), "{}", status.stdout);
    assert!(
        status.stdout.contains("pg3: unreachable: ssh "),
        "the reason is shown:\n{}",
        status.stdout
    );
    let json = sb.pgha(["status", "--json"]).status(1).run();
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).expect("status json");
    let states: Vec<(String, String)> = parsed["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["member"].as_str().unwrap_or_default().to_owned(),
                m["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&("pg3".into(), "unreachable".into())) && states.len() == 3,
        "{states:?}"
    );

    // Verify: the reachable hosts' checks run (and pass); the host down fails, and so does
    // its stream; no waiting for a host that cannot answer.
    let started = Instant::now();
    let verify = sb.pgha(["verify"]).status(1).run();
    let took = started.elapsed();
    let passed = |host: &str, check: &str| {
        verify
            .stdout
            .lines()
            .any(|l| l.starts_with(host) && l.contains(check) && l.contains("ok"))
    };
    let failed = |host: &str, check: &str| {
        verify
            .stdout
            .lines()
            .any(|l| l.starts_with(host) && l.contains(check) && l.contains("FAILED"))
    };
    assert!(passed("pg1", "role"), "{}", verify.stdout);
    assert!(passed("pg1", "streams to pg2"), "{}", verify.stdout);
    assert!(passed("pg2", "marker row read"), "{}", verify.stdout);
    assert!(failed("pg3", "reachable"), "{}", verify.stdout);
    assert!(failed("pg1", "streams to pg3"), "{}", verify.stdout);
    assert!(
        took < Duration::from_secs(30),
        "verify did not wait out its timeout for a host that is down: {took:?}\n{}",
        verify.stdout
    );

    // Plan: the others' steps, the host down named, exit 1.
    let plan = sb
        .pgha(["plan"])
        .status(1)
        .stdout_has("pg3 (unreachable)")
        .stdout_has("pg3 not reached")
        .run();
    assert!(plan.stdout.contains("\npg1 (primary)"), "{}", plan.stdout);

    // Limited to the hosts that are up: pg3 is not contacted at all (nothing names it).
    let limited = sb
        .pgha(["plan", "--detailed-exitcode", "-l", "pg1,pg2"])
        .stdout_has("No changes.")
        .run();
    assert!(
        !limited.stdout.contains("pg3") && !limited.stderr.contains("pg3"),
        "{}{}",
        limited.stdout,
        limited.stderr
    );
    // A limited standby's steps need the primary's facts: it is read and plan says so.
    sb.pgha(["plan", "-l", "pg2"])
        .stdout_has("pg1 was read, not changed (the primary")
        .run();

    sb.pgha(["apply", "-y"])
        .status(1)
        .stderr_has("not reached: pg3 (ssh ")
        .stderr_has("Nothing of plan")
        .run();
    assert_eq!(
        sb.sh(
            "pg1",
            "ls /var/lib/pgha/cluster.lock 2>/dev/null || echo none"
        )
        .trim(),
        "none",
        "a refused apply takes no lock"
    );

    sb.docker("start", "pg3");
    sb.wait_until(
        "pg3 is back and streaming",
        Duration::from_secs(120),
        || {
            sb.command("status").output().is_ok_and(|o| {
                o.status.success()
                    && String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .any(|l| l.contains("pg3  ") && l.contains("streaming"))
            })
        },
    );
    sb.assert_plan_clean();
}
