//! The streaming flavour end to end on real hosts (containers with systemd, sshd and Debian's
//! PostgreSQL 15): bootstrap, no-op re-runs, parameter changes, drift, saved plans, growth with
//! cascading, failures, a non-root SSH user, killed applies and the lock.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::cluster::{assert_no_secret, Options, Sandbox};
use crate::support::Test;

/// From bare hosts (apt included) to a verified cluster; then everything a day-2 DBA does.
#[test]
fn bare_hosts_to_verified_cluster_and_day_two_changes() {
    let sb = Sandbox::up("bare", Options::bare(3));
    let mut outputs = Vec::new();

    let plan = sb
        .pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("install postgresql-15 postgresql-client-15")
        .run();
    assert!(
        plan.stdout.contains("replicator:(sensitive)"),
        "the .pgpass diff masks the password:\n{}",
        plan.stdout
    );
    outputs.push(plan.stdout + &plan.stderr);

    let started = Instant::now();
    let apply = sb
        .pgha(["apply", "-y"])
        .stdout_has("10 checks run, 10 passed, 0 failed.")
        .run();
    eprintln!(
        "bare hosts -> verified cluster: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    outputs.push(apply.stdout + &apply.stderr);

    // Immediately: nothing to do, and a second apply changes nothing.
    let plan = sb
        .pgha(["plan", "--detailed-exitcode"])
        .stdout_has("No changes.")
        .run();
    outputs.push(plan.stdout);
    let again = sb
        .pgha(["apply", "-y"])
        .stdout_has("Nothing to apply.")
        .stdout_has("0 failed.")
        .run();
    outputs.push(again.stdout + &again.stderr);

    // A reload-level parameter: exactly that diff, and a reload, not a restart.
    sb.edit_inventory(
        "    max_connections: 100\n",
        "    max_connections: 100\n    work_mem: 8MB\n",
    );
    let plan = sb
        .pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("+work_mem = '8MB'")
        .stdout_has("reload postgresql@15-main")
        .run();
    assert!(
        !plan.stdout.contains("restart postgresql@15-main"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 6 changes (pg1: 2, pg2: 2, pg3: 2)."),
        "only the file and a reload per host:\n{}",
        plan.stdout
    );
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    for host in ["pg1", "pg2", "pg3"] {
        assert_eq!(sb.psql(host, "SHOW work_mem"), "8MB");
    }
    sb.assert_plan_clean();

    // A restart-level parameter: the plan says why, standbys restart before the primary.
    sb.edit_inventory("shared_buffers: 128MB", "shared_buffers: 160MB");
    sb.pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("shared_buffers: 128MB -> 160MB (context postmaster)")
        .stdout_has("restart postgresql@15-main")
        .run();
    let apply = sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let restarts: Vec<&str> = apply
        .stderr
        .lines()
        .filter(|l| l.contains(": restart postgresql@15-main"))
        .collect();
    assert_eq!(restarts.len(), 3, "{}", apply.stderr);
    assert!(
        restarts[2].contains("] pg1:"),
        "the primary restarts last: {restarts:#?}"
    );
    for host in ["pg1", "pg2", "pg3"] {
        assert_eq!(sb.psql(host, "SHOW shared_buffers"), "160MB");
    }
    sb.assert_plan_clean();

    // A file the server refuses never reaches it: the previous version is put back.
    let overrides = sb.state_dir().join("templates/postgresql");
    std::fs::create_dir_all(&overrides).expect("mkdir");
    std::fs::write(
        overrides.join("pgha.conf.j2"),
        "# {{ managed_header }}\nshared_buffers = 'lots'\n",
    )
    .expect("write");
    let before = sb.sh("pg2", "cat /etc/postgresql/15/main/conf.d/pgha.conf");
    let templates = sb.state_dir().join("templates");
    sb.pgha(["apply", "-y"])
        .args(["--templates"])
        .arg_path(&templates)
        .status(1)
        .stderr_has("configuration refused by the server, previous files restored")
        .stderr_has("shared_buffers")
        .run();
    assert_eq!(
        sb.sh("pg2", "cat /etc/postgresql/15/main/conf.d/pgha.conf"),
        before,
        "the bad file was rolled back"
    );
    assert_eq!(
        sb.psql("pg2", "SHOW shared_buffers"),
        "160MB",
        "the server never saw it"
    );
    sb.assert_plan_clean();

    // --limit plans one host; a name that matches nothing is an error.
    let limited = sb.pgha(["plan", "-l", "pg2"]).run();
    assert!(
        limited.stdout.contains("pg2 (") && !limited.stdout.contains("pg1 ("),
        "{}",
        limited.stdout
    );
    sb.pgha(["plan", "-l", "pg7"])
        .status(1)
        .stderr_has("--limit pg7: no host of the inventory has that name")
        .run();
    // --json is the same plan, as data.
    let json = sb.pgha(["plan", "--json"]).run();
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("plan --json is JSON");
    assert_eq!(value["topology"]["primary"], "pg1");
    outputs.push(json.stdout);

    // A hand edit of a managed file is drift: exit 2 and the diff.
    sb.sh(
        "pg2",
        "echo 'host all all 0.0.0.0/0 trust' >> /etc/postgresql/15/main/pg_hba.conf",
    );
    let drift = sb
        .pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("-host all all 0.0.0.0/0 trust")
        .stdout_has("Plan: 2 changes (pg1: 0, pg2: 2, pg3: 0).")
        .run();
    outputs.push(drift.stdout);

    // A saved plan is refused once the hosts moved on.
    let planfile = sb.state_dir().join("drift.plan");
    sb.pgha(["plan"]).args(["--out"]).arg_path(&planfile).run();
    let saved = std::fs::read_to_string(&planfile).expect("plan file");
    outputs.push(saved.clone());
    sb.sh(
        "pg3",
        "echo '# hand edit' >> /etc/postgresql/15/main/conf.d/pgha.conf",
    );
    sb.pgha(["apply"])
        .arg_path(&planfile)
        .status(1)
        .stderr_has("is stale: pg3 changed since it was made")
        .run();
    // A fresh plan, saved and applied as is, without a question.
    sb.pgha(["plan"]).args(["--out"]).arg_path(&planfile).run();
    sb.pgha(["apply"])
        .arg_path(&planfile)
        .stdout_has("0 failed.")
        .stdout_has("10 checks run, 10 passed")
        .run();
    sb.assert_plan_clean();

    // Verify on its own, and no secret anywhere.
    let verify = sb
        .pgha(["verify"])
        .stdout_has("10 checks run, 10 passed, 0 failed.")
        .run();
    outputs.push(verify.stdout);
    let all: Vec<&str> = outputs.iter().map(String::as_str).collect();
    assert_no_secret(&sb, &all);
}

/// A fourth host joins as a cascaded standby of pg2: plan shows only its work and its slot on
/// pg2; afterwards pg2 feeds it.
#[test]
fn a_fourth_host_cascading_from_a_standby() {
    let sb = Sandbox::up("grow", Options::packaged(4));
    let pg4 = format!(
        "  - name: pg4\n    address: {}\n    role: standby\n",
        sb.ip("pg4")
    );
    sb.edit_inventory(&pg4, "");
    sb.pgha(["apply", "-y"])
        .stdout_has("10 checks run, 10 passed, 0 failed.")
        .run();

    sb.edit_inventory(
        "hosts:\n",
        &format!(
            "hosts:\n{}    upstream: pg2\n",
            pg4.trim_end_matches('\n').to_owned() + "\n"
        ),
    );
    let plan = sb
        .pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("create pgha_pg4")
        .run();
    // pg1 and pg3 only learn the new address (pg_hba, .pgpass); pg2 also makes the slot.
    let section = |host: &str| -> String {
        let start = plan
            .stdout
            .find(&format!("\n{host} ("))
            .unwrap_or_else(|| panic!("{host} in plan"));
        let rest = &plan.stdout[start + 1..];
        let end = rest.find("\npg").unwrap_or(rest.len());
        rest[..end].to_owned()
    };
    assert!(
        section("pg2").contains("create pgha_pg4"),
        "{}",
        plan.stdout
    );
    assert!(
        !section("pg1").contains("pgha_pg4") && !section("pg3").contains("pgha_pg4"),
        "{}",
        plan.stdout
    );
    assert!(
        section("pg4").contains("clone /var/lib/postgresql/15/main from pg2"),
        "{}",
        plan.stdout
    );
    for host in ["pg1", "pg2", "pg3"] {
        let s = section(host);
        assert!(
            !s.contains("+ clone") && !s.contains("> restart"),
            "{host} is only told about pg4:\n{}",
            plan.stdout
        );
    }
    sb.pgha(["apply", "-y"])
        .stdout_has("pg2   streams to pg4")
        .stdout_has("0 failed.")
        .run();
    assert_eq!(
        sb.psql(
            "pg2",
            "SELECT application_name || ' ' || state FROM pg_stat_replication"
        ),
        "pg4 streaming"
    );
    assert_eq!(
        sb.psql("pg4", "SELECT sender_host FROM pg_stat_wal_receiver"),
        sb.ip("pg2")
    );
    sb.assert_plan_clean();
}

/// A non-root SSH user: everything through `sudo -n`.
#[test]
fn apply_with_a_non_root_ssh_user() {
    let sb = Sandbox::up(
        "sudo",
        Options {
            hosts: 3,
            ssh_user: Some("deploy"),
            packages: true,
        },
    );
    assert!(
        sb.inventory_text().contains("user: \"deploy\""),
        "{}",
        sb.inventory_text()
    );
    let apply = sb
        .pgha(["-vv", "apply", "-y"])
        .stdout_has("10 checks run, 10 passed, 0 failed.")
        .run();
    assert!(
        apply.stderr.contains("sudo -n"),
        "commands go through sudo -n"
    );
    assert_no_secret(&sb, &[&apply.stdout, &apply.stderr]);
    sb.assert_plan_clean();
}

/// Bad input touches nothing; an unreachable host is named and nothing is changed anywhere.
#[test]
fn bad_inventory_and_unreachable_host() {
    let sb = Sandbox::up("fail", Options::packaged(2));
    let good = sb.inventory_text();
    sb.edit_inventory("  port: 5432", "  port: 99999");
    let started = Instant::now();
    let bad = sb
        .pgha(["apply", "-y"])
        .status(1)
        .stderr_has("`postgres.port` is 99999")
        .stderr_has("nothing was changed on any host")
        .run();
    assert!(
        !bad.stderr.contains("ssh") && started.elapsed() < Duration::from_secs(2),
        "no connection is tried:\n{}",
        bad.stderr
    );
    std::fs::write(sb.inventory(), &good).expect("restore");

    // A third host that does not answer: named, and apply stops before touching the others.
    // An address on the sandbox's own network where no host answers.
    let ip = sb.ip("pg1");
    let silent = format!(
        "{}.99",
        ip.rsplit_once('.').map(|(net, _)| net).unwrap_or("10.77.0")
    );
    let text = good.replacen("hosts:\n", &format!("hosts:\n  - name: pg9\n    address: {silent}\n    role: standby\n    ssh: {{connect_timeout: 2}}\n"), 1);
    std::fs::write(sb.inventory(), text).expect("write");
    sb.pgha(["apply", "-y"])
        .status(1)
        .stderr_has("not reached: pg9 (ssh ")
        .run();
    assert_eq!(sb.sh("pg1", "ls /var/lib/pgha 2>/dev/null; test -e /etc/postgresql/15/main/conf.d/pgha.conf && echo touched || echo untouched").trim(), "untouched");
}

/// SIGKILL a bare-hosts apply at three points; the lock it leaves names the one command that
/// continues; after that, apply converges to a verified cluster.
#[test]
fn killed_apply_converges_and_the_lock_says_how_to_continue() {
    let sb = Sandbox::up("kill", Options::bare(3));
    let mut locks_met = 0;
    // During the package installs, the configuration and the clones of successive runs:
    // so long after the run took the lock (how long it takes to get there depends on the
    // machine's load, not on pgha).
    for delay_ms in [1000u64, 6000, 3000] {
        let mut child = sb
            .command("apply")
            .arg("-y")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn apply");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline
            && sb
                .sh(
                    "pg1",
                    "test -s /var/lib/pgha/cluster.lock && echo held || true",
                )
                .trim()
                != "held"
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL: no cleanup of any kind
        let _ = child.wait();
        let lock = sb.sh("pg1", "cat /var/lib/pgha/cluster.lock 2>/dev/null || true");
        if lock.trim().is_empty() {
            continue;
        }
        locks_met += 1;
        // The next apply is refused, naming the holder and the command that continues.
        let refused = sb
            .pgha(["apply", "-y"])
            .status(1)
            .stderr_has("the cluster is locked by apply")
            .stderr_has("pgha force-unlock ")
            .run();
        let id = refused
            .stderr
            .split("pgha force-unlock ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("lock id")
            .to_owned();
        // A run killed while writing the lock leaves no whole record: it is named `incomplete`.
        assert!(
            lock.contains(&id) || (id == "incomplete" && !lock.contains("\"}")),
            "the message names the lock on the host: {lock}"
        );
        sb.pgha(["force-unlock", &id])
            .stdout_has("Released lock")
            .run();
    }
    assert!(
        locks_met >= 2,
        "the kills should interrupt applies that hold the lock"
    );
    sb.pgha(["apply", "-y"])
        .stdout_has("10 checks run, 10 passed, 0 failed.")
        .run();
    sb.assert_plan_clean();
}

/// A second apply while one runs fails fast and names the holder.
#[test]
fn concurrent_apply_is_refused() {
    let sb = Sandbox::up("lock", Options::packaged(2));
    let mut first = sb
        .command("apply")
        .arg("-y")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    sb.wait_until(
        "the first apply holds the lock",
        Duration::from_secs(60),
        || {
            sb.sh(
                "pg1",
                "if [ -f /var/lib/pgha/cluster.lock ]; then echo held; fi",
            )
            .contains("held")
        },
    );
    let second: Test = sb
        .pgha(["apply", "-y"])
        .status(1)
        .stderr_has("the cluster is locked by apply");
    second.run();
    // Fails fast: refused while the first still runs, not after waiting for it (a condition,
    // not a time limit that a loaded machine may miss).
    assert!(
        first.try_wait().expect("first apply").is_none(),
        "fails fast: the second apply waited for the first to end"
    );
    assert!(
        first.wait().expect("first apply").success(),
        "the first apply is not disturbed"
    );
    sb.assert_plan_clean();
}

/// Switch over to a standby and back; verify and a clean plan after each, the inventory
/// untouched (roles follow the hosts), no committed row lost.
#[test]
fn switchover_to_a_standby_and_back() {
    let sb = Sandbox::up("swo", Options::packaged(3));
    sb.pgha(["apply", "-y"])
        .stdout_has("10 checks run, 10 passed, 0 failed.")
        .run();
    sb.psql(
        "pg1",
        "CREATE TABLE before_switchover AS SELECT generate_series(1, 1000) AS id",
    );

    let out = sb
        .pgha(["switchover", "--to", "pg2", "-y"])
        .stdout_has("Switched over from pg1 to pg2")
        .stdout_has("0 failed.")
        .run();
    eprintln!(
        "{}",
        out.stdout
            .lines()
            .find(|l| l.starts_with("Switched"))
            .unwrap_or("")
    );
    assert_eq!(sb.psql("pg2", "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(sb.psql("pg1", "SELECT pg_is_in_recovery()"), "t");
    assert_eq!(
        sb.psql("pg2", "SELECT count(*) FROM before_switchover"),
        "1000"
    );
    let plan = sb
        .pgha(["plan", "--detailed-exitcode"])
        .stdout_has("No changes.")
        .stdout_has("pg2 is the primary (the inventory says pg1)")
        .run();
    assert!(
        plan.stdout.contains("pg1 (standby of pg2)")
            && plan.stdout.contains("pg3 (standby of pg2)"),
        "{}",
        plan.stdout
    );
    let status = sb.pgha(["status"]).run();
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("pg2 ") && l.contains("primary")),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.contains("pg1") && l.contains("streaming") && l.trim_end().ends_with("pg2")),
        "{}",
        status.stdout
    );
    // The same as JSON, for scripts: every member on the new timeline (a replica's last
    // restartpoint would still say 1), both standbys streaming from pg2.
    let json: serde_json::Value =
        serde_json::from_str(&sb.pgha(["status", "--json"]).run().stdout).expect("status --json");
    assert_eq!(json["primary"], "pg2", "{json}");
    let members = json["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{json}");
    for m in members {
        assert_eq!(m["timeline"], 2, "{m}");
        if m["member"] != "pg2" {
            assert_eq!(
                (&m["upstream"], &m["state"]),
                (&"pg2".into(), &"streaming".into()),
                "{m}"
            );
        }
    }
    let verify: serde_json::Value =
        serde_json::from_str(&sb.pgha(["verify", "--json"]).run().stdout).expect("verify --json");
    assert_eq!(verify["failed"], 0, "{verify}");
    assert!(verify["run"].as_u64() >= Some(10), "{verify}");
    // No abandoned slot is left on the old primary.
    assert_eq!(
        sb.psql("pg1", "SELECT count(*) FROM pg_replication_slots"),
        "0"
    );

    sb.psql("pg2", "INSERT INTO before_switchover VALUES (1001)");
    sb.pgha(["switchover", "--to", "pg1", "-y"])
        .stdout_has("Switched over from pg2 to pg1")
        .stdout_has("0 failed.")
        .run();
    assert_eq!(
        sb.psql("pg1", "SELECT count(*) FROM before_switchover"),
        "1001"
    );
    sb.assert_plan_clean();
    sb.pgha(["switchover", "--to", "pg1", "-y"])
        .status(1)
        .stderr_has("pg1 is already the primary")
        .run();
}
