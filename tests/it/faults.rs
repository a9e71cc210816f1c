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

/// Send `signal` (`INT`, `TERM`) to a process.
fn signal(child: &std::process::Child, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{signal}");
}

/// Wait until the apply `child` holds the cluster lock; fail with its output if it ends first.
#[track_caller]
fn wait_for_lock(sb: &Sandbox, child: &mut std::process::Child, log: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if sb
            .sh(
                "pg1",
                "test -f /var/lib/pgha/cluster.lock && echo held || true",
            )
            .contains("held")
        {
            return;
        }
        let ended = child.try_wait().ok().flatten();
        if ended.is_some() || Instant::now() > deadline {
            let _ = child.kill();
            panic!("apply did not take the lock ({ended:?}):\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The exit code of a child once it ends.
fn finish(mut child: std::process::Child) -> i32 {
    child.wait().expect("wait").code().unwrap_or(-1)
}

/// Ctrl-C or SIGTERM during apply, at several points: the run stops after the steps running
/// then, releases the lock, says how to continue, exits 130; a second signal aborts at once
/// and leaves the lock (named with its removal). The next apply converges.
#[test]
fn signals_during_apply_stop_gracefully_and_release_the_lock() {
    use std::process::Stdio;

    let sb = Sandbox::up("signal", Options::packaged(3));
    let lock_held = |sb: &Sandbox| {
        sb.sh(
            "pg1",
            "test -f /var/lib/pgha/cluster.lock && echo held || true",
        )
        .contains("held")
    };
    // Output to a file, not a pipe: a plan's diffs would fill a pipe nobody reads yet. A new
    // one per run, in the sandbox's folder (checked for secrets when the sandbox is dropped).
    let log = std::cell::RefCell::new(std::path::PathBuf::new());
    let spawn = || {
        let path = sb.output_file("apply");
        log.replace(path.clone());
        // Appending, so that the two streams do not overwrite each other.
        let file = || {
            Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .expect("log"),
            )
        };
        sb.command("apply")
            .arg("-y")
            .stdout(file())
            .stderr(file())
            .spawn()
            .expect("spawn apply")
    };
    let read_log = || std::fs::read_to_string(&*log.borrow()).unwrap_or_default();
    // Twice, during the bootstrap: aborts at once, the lock stays and its removal is named.
    let child = spawn();
    let mut child = child;
    wait_for_lock(&sb, &mut child, &read_log);
    // Back to back (two different signals: the kernel merges a pending one with its twin),
    // so the second lands while the first is still being honoured.
    let both = std::process::Command::new("sh")
        .args(["-c", &format!("kill -INT {0}; kill -TERM {0}", child.id())])
        .status()
        .expect("kill");
    assert!(both.success());
    let code = finish(child);
    let out = read_log();
    assert_eq!(code, 130, "{out}");
    assert!(out.contains("aborted at once"), "{out}");
    let unlock = out
        .lines()
        .find(|l| l.trim_start().starts_with("pgha force-unlock "))
        .map(|l| l.trim().to_owned())
        .unwrap_or_else(|| panic!("the removal of the lock is named:\n{out}"));
    assert!(lock_held(&sb), "an abort leaves the lock\n{out}");
    let id = unlock.split_whitespace().nth(2).expect("lock id");
    sb.pgha(["force-unlock", id])
        .stdout_has("Released lock")
        .run();

    let mut changed_runs = 0;
    // Right after the lock is taken, and a few seconds into the configuration and clones.
    for (sig, extra_ms) in [("INT", 0u64), ("TERM", 3000), ("INT", 6000)] {
        let child = spawn();
        let mut child = child;
        wait_for_lock(&sb, &mut child, &read_log);
        std::thread::sleep(Duration::from_millis(extra_ms));
        signal(&child, sig);
        let code = finish(child);
        let out = read_log();
        if code == 0 {
            // It finished before the signal landed: nothing left to stop.
            break;
        }
        assert_eq!(code, 130, "SIG{sig}: exit 130\n{out}");
        assert!(
            out.contains("no new step starts")
                && out.contains("The lock is released. Continue with:\n  pgha apply -i "),
            "SIG{sig}: says what happened and how to continue:\n{out}"
        );
        assert!(!lock_held(&sb), "SIG{sig}: the lock is released\n{out}");
        let changed = out
            .lines()
            .filter_map(|l| l.split("changed=").nth(1))
            .filter_map(|r| r.split_whitespace().next()?.parse::<usize>().ok())
            .sum::<usize>();
        if changed > 0 {
            changed_runs += 1;
        }
    }
    assert!(
        changed_runs >= 1,
        "at least one interrupted run had changed something"
    );

    sb.pgha(["apply", "-y"])
        .stdout_has("10 checks run, 10 passed, 0 failed.")
        .run();
    sb.assert_plan_clean();
}

/// The timeline of every member as `status --json` shows it.
fn timelines(sb: &Sandbox) -> Vec<(String, u64)> {
    let out = sb.command("status").arg("--json").output().expect("status");
    let parsed: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    parsed["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .map(|m| {
                    (
                        m["member"].as_str().unwrap_or_default().to_owned(),
                        m["timeline"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The primary's host dies under a write load; `pgha failover` promotes the standby with the
/// most WAL and re-points the other; writes resume. Async replication may lose what the
/// dead primary acknowledged but never sent: reported, and bounded to its last moments. The
/// host comes back running as a second primary on the old timeline: plan shows its rewind
/// and what that discards; apply rejoins it; everything verifies on the new timeline.
#[test]
fn streaming_failover_under_load_then_the_old_primary_rejoins_by_rewind() {
    use crate::load::{app_conninfo, client_sql, Writer};

    let sb = Sandbox::up("failover", Options::packaged(3));
    sb.pgha(["apply", "-y"])
        .stdout_has("10 checks run, 10 passed, 0 failed.")
        .run();
    let (conninfo, password) = app_conninfo(&sb, &["pg1", "pg2", "pg3"]);
    let writer = Writer::start(&conninfo, &password);
    std::thread::sleep(Duration::from_secs(3));
    let killed_at = Instant::now();
    sb.docker("kill", "pg1");

    let failover = sb
        .pgha(["failover", "-y"])
        .stdout_has("in place of pg1, which was not reached")
        .stdout_has("Failed over from pg1 to pg")
        .run();
    let new = if failover.stdout.contains("Failed over from pg1 to pg2") {
        "pg2"
    } else {
        "pg3"
    };
    let other = if new == "pg2" { "pg3" } else { "pg2" };
    let failed_over = killed_at.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !client_sql(&conninfo, &password, "SELECT 1") {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let acked = writer.stop();
    let gap = acked.gap_around(killed_at);
    let missing = acked.missing_on(&sb, new);
    eprintln!(
        "streaming failover: {} writes acknowledged, crash to promoted {:.1} s (the command alone, run right after the crash), write gap {:.1} s, {} acknowledged writes missing on {new} (asynchronous replication)",
        acked.ids.len(),
        failed_over.as_secs_f64(),
        gap.as_secs_f64(),
        missing.len()
    );
    assert!(acked.after(killed_at) > 0, "writes resumed on {new}");
    // What is lost is what pg1 acknowledged in its last moments and never sent.
    for (id, at) in &missing {
        assert!(
            killed_at.duration_since(*at) < Duration::from_secs(1),
            "id {id}, acknowledged long before the crash, is missing on {new}"
        );
    }
    let tl = timelines(&sb);
    assert!(
        tl.iter().any(|(m, t)| m == new && *t == 2)
            && tl.iter().any(|(m, t)| m == other && *t == 2),
        "{new} and {other} are on timeline 2: {tl:?}"
    );

    // pg1 comes back: its PostgreSQL starts at boot as a primary on timeline 1.
    sb.docker("start", "pg1");
    sb.wait_until("pg1 runs again", Duration::from_secs(120), || {
        sb.sh("pg1", "runuser -u postgres -- psql -X -At -c 'SELECT pg_is_in_recovery()' 2>/dev/null || true")
            .trim()
            == "f"
    });
    let plan = sb
        .pgha(["plan"])
        .stdout_has("pg1 runs as a second primary on an older timeline of this cluster")
        .stdout_has(&format!(
            "rewind /var/lib/postgresql/15/main onto {new}'s timeline 2"
        ))
        .stdout_has("it discards what it wrote after the fork at ")
        .run();
    assert!(
        !plan.stdout.contains("clone /var/lib"),
        "never a clone:\n{}",
        plan.stdout
    );
    let started = Instant::now();
    sb.pgha(["apply", "-y"])
        .stdout_has("10 checks run, 10 passed, 0 failed.")
        .run();
    eprintln!(
        "streaming failover: the old primary rejoined by rewind in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let tl = timelines(&sb);
    assert!(tl.len() == 3 && tl.iter().all(|(_, t)| *t == 2), "{tl:?}");
    sb.assert_plan_clean();
}

/// The primary's PostgreSQL stopped on a host that still answers: failover refuses while it
/// runs, then with `--to` promotes that standby and fences the old primary (stopped, masked,
/// a marker saying why); plan rewinds it, apply rejoins it.
#[test]
fn streaming_failover_fences_a_reachable_old_primary() {
    let sb = Sandbox::up("fence", Options::packaged(3));
    sb.pgha(["apply", "-y"])
        .stdout_has("10 checks run, 10 passed, 0 failed.")
        .run();
    sb.pgha(["failover", "-y"])
        .status(1)
        .stderr_has("pg1 answers as the primary")
        .stderr_has("pgha switchover --to")
        .run();
    sb.psql("pg1", "CREATE TABLE before_failover AS SELECT 1 AS ok");
    sb.sh("pg1", "systemctl stop postgresql@15-main");
    sb.pgha(["failover", "-y", "--to", "pg3"])
        .stdout_has("which answers but runs no primary")
        .stdout_has("Failed over from pg1 to pg3")
        .run();
    assert_eq!(
        sb.sh("pg1", "systemctl is-enabled postgresql@15-main || true")
            .trim(),
        "masked"
    );
    assert!(sb
        .sh("pg1", "cat /var/lib/pgha/fenced")
        .contains("pg3 was promoted"));
    assert_eq!(sb.psql("pg3", "SELECT ok FROM before_failover"), "1");
    sb.pgha(["plan"])
        .stdout_has("pg1 was a primary on timeline 1 (the primary pg3 is now on timeline 2)")
        .stdout_has("rewind /var/lib/postgresql/15/main onto pg3's timeline 2")
        .run();
    sb.pgha(["apply", "-y"])
        .stdout_has("10 checks run, 10 passed, 0 failed.")
        .run();
    let enabled = sb.sh("pg1", "systemctl is-enabled postgresql@15-main || true");
    // Debian's generator enables a cluster whose start.conf says auto for the running boot.
    assert!(enabled.starts_with("enabled"), "unmasked: {enabled}");
    assert_eq!(sb.psql("pg1", "SELECT pg_is_in_recovery()"), "t");
    sb.assert_plan_clean();
}
