//! The Patroni flavour end to end on real hosts, etcd and Patroni from Debian's packages:
//! bootstrap from bare hosts (etcd co-located or on its own host), DCS changes and rolling
//! restarts, switchover, the loss of an etcd member, failover under load, cascading, a
//! standby cluster.

use crate::cluster::{edit_file, Options, Sandbox};

/// From bare hosts (apt included), 3 etcd members co-located.
#[test]
fn patroni_bootstrap_verify_and_switchover() {
    let sb = Sandbox::patroni_with("patroni", Options::bare(3), 3);
    assert!(
        sb.inventory_text().contains("members: [pg1, pg2, pg3]"),
        "{}",
        sb.inventory_text()
    );
    let apply = sb
        .pgha(["apply", "-y"])
        .stdout_has("20 checks run, 20 passed, 0 failed.")
        .run();
    assert!(
        apply.stdout.contains("one Patroni leader") && apply.stdout.contains("leaders: pg1"),
        "{}",
        apply.stdout
    );
    // Patroni's files: mode 0600 for the one with passwords. On bare hosts the package made
    // no Debian cluster at all (createcluster.conf came first).
    assert_eq!(
        sb.sh("pg2", "stat -c '%a %U' /etc/patroni/15-main.yml")
            .trim(),
        "600 postgres"
    );
    assert_eq!(
        sb.sh("pg2", "ls /etc/postgresql/15/main /var/lib/postgresql/15/main 2>&1 | grep -c 'No such' || true")
            .trim(),
        "2"
    );
    assert_eq!(
        sb.sh("pg2", "stat -c '%a' /var/lib/postgresql/15/patroni")
            .trim(),
        "700"
    );
    sb.assert_converged();

    // A patroni.yml that Patroni's validator refuses (through a template override) never
    // replaces the host's file.
    let overrides = sb.state_dir().join("templates/patroni");
    std::fs::create_dir_all(&overrides).expect("mkdir");
    let real = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/patroni/patroni.yml.j2"),
    )
    .expect("the real template");
    let broken = real.replace(
        "bin_dir: {{ pg.bin_dir | tojson }}",
        "bin_dir: /usr/lib/postgresql/99/bin",
    );
    assert_ne!(broken, real, "the template has a bin_dir line");
    std::fs::write(overrides.join("patroni.yml.j2"), broken).expect("write");
    let config = "/etc/patroni/15-main.yml";
    let before = sb.sh("pg2", &format!("sha256sum {config}"));
    sb.pgha(["apply", "-y"])
        .args(["--templates"])
        .arg_path(&sb.state_dir().join("templates"))
        .status(1)
        .stderr_has("/usr/lib/postgresql/99/bin")
        .run();
    assert_eq!(
        sb.sh("pg2", &format!("sha256sum {config}")),
        before,
        "the host's patroni.yml is untouched"
    );
    assert_eq!(
        sb.sh(
            "pg2",
            &format!("ls {config}.pgha-new 2>/dev/null || echo none")
        )
        .trim(),
        "none"
    );
    sb.assert_plan_clean();

    // Parameters live in the DCS: plan shows the /config diff and the rolling restart a
    // restart-level change needs; apply PATCHes and restarts replicas first.
    sb.edit_inventory(
        "    shared_buffers: 128MB\n",
        "    shared_buffers: 160MB\n    work_mem: 8MB\n",
    );
    let plan = sb.pgha(["plan", "--detailed-exitcode"]).status(2).run();
    for needle in [
        "update Patroni /config",
        "+      \"shared_buffers\": \"160MB\"",
        "+      \"work_mem\": \"8MB\"",
        "rolling restart, replicas first, the leader last: shared_buffers (context postmaster)",
    ] {
        assert!(
            plan.stdout.contains(needle),
            "plan lacks {needle:?}:\n{}",
            plan.stdout
        );
    }
    let apply = sb
        .pgha(["apply", "-y"])
        .stdout_has("20 checks run, 20 passed, 0 failed.")
        .run();
    // The log names each restart, the leader's last.
    let restarted: Vec<&str> = apply
        .stderr
        .lines()
        .filter_map(|l| l.split("dynamic configuration: restarted ").nth(1))
        .collect();
    assert_eq!(restarted.len(), 3, "{}", apply.stderr);
    assert_eq!(
        restarted[2], "pg1",
        "the leader restarts last: {restarted:?}"
    );
    for host in ["pg1", "pg2", "pg3"] {
        assert_eq!(sb.psql(host, "SHOW shared_buffers"), "160MB", "{host}");
        assert_eq!(sb.psql(host, "SHOW work_mem"), "8MB", "{host}");
    }
    sb.assert_plan_clean();

    sb.pgha(["switchover", "--to", "pg2", "-y"])
        .stdout_has("Switched over from pg1 to pg2")
        .stdout_has("0 failed.")
        .run();
    assert_eq!(sb.psql("pg2", "SELECT pg_is_in_recovery()"), "f");
    // The new leader's callback handed etcd leadership away (it runs just after the
    // promotion: give it a moment).
    etcd_leader_not_on(&sb, "pg2");
    sb.pgha(["plan", "--detailed-exitcode"])
        .stdout_has("No changes.")
        .stdout_has("pg2 is the primary")
        .run();
    let status = sb.pgha(["status"]).run();
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("pg2 ") && l.contains("leader")),
        "{}",
        status.stdout
    );
    // status names the etcd members' health and the one etcd leader.
    let etcd = status
        .stdout
        .lines()
        .find(|l| l.starts_with("etcd: "))
        .unwrap_or_else(|| panic!("no etcd line:\n{}", status.stdout));
    assert!(
        etcd.matches(" healthy").count() == 3 && etcd.matches("(leader)").count() == 1,
        "{etcd}"
    );
    sb.pgha(["switchover", "--to", "pg1", "-y"])
        .stdout_has("Switched over from pg2 to pg1")
        .stdout_has("0 failed.")
        .run();
    sb.assert_plan_clean();

    // One of three etcd members down: the leader keeps its key and accepts writes; verify
    // names the member; plan sees the stopped service and apply starts it again.
    sb.sh("pg3", "systemctl stop etcd");
    sb.psql("pg1", "CREATE TABLE etcd_member_down AS SELECT 1 AS ok");
    // The leader renews its key with the member down: the lease's time left, which only
    // falls between renewals, goes up again.
    let last = std::cell::Cell::new(sb.leader_lease_left("pg1"));
    sb.wait_until(
        "the leader renews its key with an etcd member down",
        std::time::Duration::from_secs(40),
        || {
            let left = sb.leader_lease_left("pg1");
            left > last.replace(left)
        },
    );
    assert_eq!(
        sb.psql("pg1", "SELECT pg_is_in_recovery()"),
        "f",
        "pg1 still leads"
    );
    sb.psql("pg1", "INSERT INTO etcd_member_down VALUES (2)");
    let verify = sb.pgha(["verify"]).status(1).run();
    assert!(
        verify
            .stdout
            .lines()
            .any(|l| l.starts_with("pg3") && l.contains("etcd member") && l.contains("FAILED")),
        "{}",
        verify.stdout
    );
    sb.pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("start etcd")
        .run();
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    sb.assert_plan_clean();

    // A change to every etcd member's configuration restarts them one at a time, each
    // healthy before the next: the DCS keeps its quorum, the leader its key.
    let overrides = sb.state_dir().join("etcd-templates/etcd");
    std::fs::create_dir_all(&overrides).expect("mkdir");
    let real = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/etcd/etcd.default.j2"),
    )
    .expect("the real template");
    std::fs::write(
        overrides.join("etcd.default.j2"),
        format!("{real}ETCD_HEARTBEAT_INTERVAL=\"100\"\n"),
    )
    .expect("write");
    sb.pgha(["apply", "-y"])
        .args(["--templates"])
        .arg_path(&sb.state_dir().join("etcd-templates"))
        .stdout_has("0 failed.")
        .run();
    // Each member's start and readiness (monotonic clock: one kernel for all containers).
    let mut windows: Vec<(u64, u64)> = ["pg1", "pg2", "pg3"]
        .iter()
        .map(|h| {
            let out = sb.sh(
                h,
                "systemctl show etcd -p ExecMainStartTimestampMonotonic -p ActiveEnterTimestampMonotonic",
            );
            let value = |name: &str| -> u64 {
                out.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix('=')?.trim().parse().ok())
                    .unwrap_or_else(|| panic!("{h}: no {name} in {out}"))
            };
            (
                value("ExecMainStartTimestampMonotonic"),
                value("ActiveEnterTimestampMonotonic"),
            )
        })
        .collect();
    windows.sort();
    for pair in windows.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "etcd restarts overlap: {windows:?}");
    }
    assert_eq!(
        sb.psql("pg1", "SELECT pg_is_in_recovery()"),
        "f",
        "pg1 still leads"
    );
}

/// Failover under load with synchronous mode: a client writes sequential ids through a
/// multi-host connection string; the leader's host is killed (etcd keeps its quorum with 3
/// co-located members); a replica takes over, writes resume, and no acknowledged write is
/// missing. The old host comes back as a replica and plan has nothing to undo.
#[test]
fn failover_under_load_loses_no_acknowledged_write() {
    use crate::load::{app_conninfo, client_sql, Writer};
    use std::time::{Duration, Instant};

    let sb = Sandbox::patroni("failover", 3);
    sb.edit_inventory("  etcd:\n", "  synchronous_mode: true\n  etcd:\n");
    sb.pgha(["apply", "-y"])
        .stdout_has("synchronous standby")
        .stdout_has("0 failed.")
        .run();
    // The etcd leader is kept off the Patroni leader's host (Patroni's callback), so that
    // the crash below costs no etcd election and no lease renewal on top of the ttl.
    etcd_leader_not_on(&sb, "pg1");
    // status names the synchronous standby, as patronictl list does.
    let status = sb.pgha(["status"]).run();
    let sync_rows = status
        .stdout
        .lines()
        .filter(|l| l.contains(" sync standby ") && !l.starts_with("Synchronous"))
        .count();
    assert!(
        sync_rows == 1 && status.stdout.contains("Synchronous mode: sync standby pg"),
        "{}",
        status.stdout
    );
    let (conninfo, password) = app_conninfo(&sb, &["pg1", "pg2", "pg3"]);
    let psql = |sql: &str| client_sql(&conninfo, &password, sql);
    let writer = Writer::start(&conninfo, &password);
    std::thread::sleep(Duration::from_secs(5));
    let killed_at = Instant::now();
    sb.docker("kill", "pg1");
    // Wait for writes to resume, then a little more.
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline && !psql("SELECT 1 FROM writes LIMIT 1") {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(5));
    let acked = writer.stop();
    let (before, after) = (acked.before(killed_at), acked.after(killed_at));
    assert!(
        before > 0 && after > 0,
        "writes before ({before}) and after ({after}) the crash"
    );
    let gap = acked.gap_around(killed_at);
    eprintln!(
        "failover: {} writes acknowledged, write gap {:.1} s",
        acked.ids.len(),
        gap.as_secs_f64()
    );

    // Every acknowledged id is on the new leader.
    let new_leader = ["pg2", "pg3"]
        .into_iter()
        .find(|h| sb.psql(h, "SELECT pg_is_in_recovery()") == "f")
        .expect("a new leader");
    let missing = acked.missing_on(&sb, new_leader);
    assert!(
        missing.is_empty(),
        "acknowledged writes missing on {new_leader}: {:?}",
        missing.iter().map(|(id, _)| id).collect::<Vec<_>>()
    );
    assert!(gap < Duration::from_secs(40), "write gap {gap:?}");

    // The old leader comes back as a replica; plan has nothing to undo.
    sb.docker("start", "pg1");
    let deadline = Instant::now() + Duration::from_secs(120);
    // Until its sshd is up, status cannot reach it and says so (exit 1): keep asking.
    loop {
        let out = sb.command("status").output().expect("pgha status");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success()
            && text
                .lines()
                .any(|l| l.contains("pg1") && l.contains("streaming"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pg1 did not rejoin as a replica:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_secs(3));
    }
    sb.pgha(["plan", "--detailed-exitcode"])
        .stdout_has("No changes.")
        .stdout_has(&format!("{new_leader} is the primary"))
        .run();
    sb.pgha(["verify"]).stdout_has("0 failed.").run();
    // Every member is on the new timeline, as pgha reads it and as Patroni says it is (a
    // replica's last restartpoint still names the old one).
    let list: serde_json::Value = serde_json::from_str(&sb.sh(
        new_leader,
        "patronictl -c /etc/patroni/15-main.yml list -f json",
    ))
    .expect("patronictl list");
    let facts: serde_json::Value =
        serde_json::from_str(&sb.pgha(["facts"]).run().stdout).expect("pgha facts");
    let members = list.as_array().expect("members");
    assert_eq!(members.len(), 3, "{list}");
    for m in members {
        let name = m["Member"].as_str().expect("member name");
        let tl = m["TL"].as_u64().expect("patroni's timeline");
        assert!(tl >= 2, "{name} is on timeline {tl} after a failover");
        assert_eq!(
            facts[name]["postgres"]["timeline"].as_u64(),
            Some(tl),
            "{name}"
        );
    }
}

/// Cascading under Patroni: `upstream: pg2` becomes the tag `replicatefrom: pg2`, and pg2
/// feeds pg4 (seen in pg2's pg_stat_replication).
#[test]
fn patroni_cascading_replica() {
    let sb = Sandbox::patroni("pcascade", 4);
    let pg4 = sb.host_entry("pg4");
    sb.edit_inventory(&pg4, &format!("{pg4}    upstream: pg2\n"));
    sb.pgha(["apply", "-y"])
        .stdout_has("pg2   streams to pg4")
        .stdout_has("0 failed.")
        .run();
    assert_eq!(
        sb.sh("pg4", "grep replicatefrom /etc/patroni/15-main.yml")
            .trim(),
        "replicatefrom: \"pg2\""
    );
    // These hosts had PostgreSQL installed before pgha came: Debian's cluster is stopped and
    // never starts again; Patroni's data lives elsewhere.
    assert_eq!(
        sb.sh("pg4", "cat /etc/postgresql/15/main/start.conf; systemctl is-active postgresql@15-main || true")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["disabled", "inactive"]
    );
    assert_eq!(
        sb.psql(
            "pg2",
            "SELECT application_name || ' ' || state FROM pg_stat_replication"
        ),
        "pg4 streaming"
    );
    sb.assert_plan_clean();

    // A restart-level change with switchover_for_restart: the replicas restart, the leader
    // role moves to one of them, the old leader restarts as a replica. Nothing is moved back.
    sb.edit_inventory("patroni:\n", "patroni:\n  switchover_for_restart: true\n");
    sb.edit_inventory("    shared_buffers: 128MB\n", "    shared_buffers: 144MB\n");
    sb.pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("the leader last after a switchover to a restarted replica")
        .run();
    sb.pgha(["apply", "-y"])
        .stdout_has("0 failed.")
        .stderr_has("dynamic configuration: switched over from pg1 to")
        .run();
    assert_eq!(
        sb.psql("pg1", "SELECT pg_is_in_recovery()"),
        "t",
        "pg1 leads no more"
    );
    for host in ["pg1", "pg2", "pg3", "pg4"] {
        assert_eq!(sb.psql(host, "SHOW shared_buffers"), "144MB", "{host}");
    }
    sb.assert_plan_clean();
}

/// Standby cluster: a second 2-host Patroni cluster, with its own etcd, replicating from the
/// first through a permanent slot declared in the first one's DCS. The marker row written on
/// the source arrives on both of its members. Removing `standby_cluster` from its inventory
/// is shown by plan as a promotion, and apply performs it.
#[test]
fn patroni_standby_cluster() {
    let sb = Sandbox::patroni_etcd("pstandby", 4, 1);
    let original = sb.inventory_text();
    let replication_from = |host: &str| {
        format!(
            "    - type: hostssl\n      database: replication\n      user: replicator\n      address: {}/32\n      method: scram-sha-256\n",
            sb.ip(host)
        )
    };
    // The source: pg1 and pg2; its slot site_b for the other site, which may connect.
    sb.edit_inventory(&sb.host_entry("pg3"), "");
    sb.edit_inventory(&sb.host_entry("pg4"), "");
    sb.edit_inventory("patroni:\n", "patroni:\n  permanent_slots: [site_b]\n");
    sb.edit_inventory(
        "  hba:\n",
        &format!(
            "  hba:\n{}{}",
            replication_from("pg3"),
            replication_from("pg4")
        ),
    );
    // The standby cluster: pg3 (its leader) and pg4, its etcd on pg3.
    let standby = sb.state_dir().join("site-b.yml");
    std::fs::write(&standby, &original).expect("write the second inventory");
    let name_line = original
        .lines()
        .find(|l| l.starts_with("  name: "))
        .expect("cluster name")
        .to_owned();
    edit_file(&standby, &format!("{name_line}\n"), "  name: site-b\n");
    edit_file(&standby, &sb.host_entry("pg1"), "");
    edit_file(&standby, &sb.host_entry("pg2"), "");
    edit_file(
        &standby,
        &sb.host_entry("pg3"),
        &sb.host_entry("pg3")
            .replace("role: standby", "role: primary"),
    );
    edit_file(&standby, "members: [pg1]", "members: [pg3]");
    let source = format!(
        "  standby_cluster:\n    host: {}\n    port: 5432\n    primary_slot_name: site_b\n",
        sb.ip("pg1")
    );
    edit_file(&standby, "patroni:\n", &format!("patroni:\n{source}"));

    sb.pgha(["apply", "-y"])
        .stdout_has("permanent slot site_b")
        .stdout_has("0 failed.")
        .run();
    let apply = sb
        .pgha_on(&standby, ["apply", "-y"])
        .stdout_has("standby leader")
        .stdout_has("marker row from the source")
        .stdout_has("0 failed.")
        .run();
    assert!(
        !apply.stdout.contains("application roles"),
        "a standby cluster is read-only: no role work\n{}",
        apply.stdout
    );
    assert_eq!(
        sb.psql(
            "pg1",
            "SELECT active FROM pg_replication_slots WHERE slot_name = 'site_b'"
        ),
        "t",
        "the standby leader streams through the permanent slot"
    );
    assert_eq!(
        sb.psql(
            "pg3",
            "SELECT sender_host || ' ' || slot_name FROM pg_stat_wal_receiver"
        ),
        format!("{} site_b", sb.ip("pg1"))
    );

    // A marker written on the source arrives on both members of the standby cluster.
    let verify = sb.pgha(["verify"]).stdout_has("0 failed.").run();
    let token = verify
        .stdout
        .split("token ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .expect("the source's marker token")
        .to_owned();
    sb.pgha_on(&standby, ["verify"])
        .stdout_has(&format!("token {token}"))
        .stdout_has("0 failed.")
        .run();
    for host in ["pg3", "pg4"] {
        assert_eq!(
            sb.psql(
                host,
                &format!("SELECT count(*) FROM pgha.verify_marker WHERE token = '{token}'")
            ),
            "1",
            "{host}"
        );
    }
    sb.pgha_on(&standby, ["plan", "--detailed-exitcode"])
        .stdout_has("No changes.")
        .run();
    let status = sb.pgha_on(&standby, ["status"]).run();
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("pg3 ") && l.contains("standby leader"))
            && status.stdout.contains(&format!(
                "Standby cluster of {}:5432 (slot site_b).",
                sb.ip("pg1")
            )),
        "{}",
        status.stdout
    );

    // Promotion is an explicit inventory change, and plan says what it means.
    edit_file(&standby, &source, "");
    sb.pgha_on(&standby, ["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("PROMOTES this standby cluster to a primary cluster")
        .run();
    sb.pgha_on(&standby, ["apply", "-y"])
        .stderr_has("promoted: this cluster is a primary cluster now")
        .stdout_has("marker row written")
        .stdout_has("0 failed.")
        .run();
    assert_eq!(sb.psql("pg3", "SELECT pg_is_in_recovery()"), "f");
    sb.pgha_on(&standby, ["plan", "--detailed-exitcode"])
        .stdout_has("No changes.")
        .run();
}

/// Patroni's callback on the leader hands etcd leadership to another member; it runs just
/// after the promotion or start, so give it a moment.
#[track_caller]
fn etcd_leader_not_on(sb: &Sandbox, host: &str) {
    let ask = if host == "pg3" { "pg2" } else { "pg3" };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while sb.etcd_leader(ask) == host && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_ne!(
        sb.etcd_leader(ask),
        host,
        "the etcd leader is on the Patroni leader's host"
    );
}

/// From bare hosts (apt included): 3 PostgreSQL hosts and a dedicated etcd host. Apply,
/// verify, a clean plan at once, a second apply with nothing to do.
#[test]
fn patroni_from_bare_hosts_with_a_dedicated_etcd_host() {
    let sb = Sandbox::patroni_with("pbare", Options::bare(4), 1);
    let pg4 = sb.host_entry("pg4");
    sb.edit_inventory(&pg4, &pg4.replace("role: standby", "role: etcd"));
    sb.edit_inventory("members: [pg1]", "members: [pg4]");
    let apply = sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    for needle in [
        "pg4   etcd member",
        "one Patroni leader",
        "pg3   marker row read",
    ] {
        assert!(
            apply.stdout.contains(needle),
            "{needle:?}:\n{}",
            apply.stdout
        );
    }
    // The etcd host runs etcd and nothing of PostgreSQL; the others run no etcd.
    assert_eq!(
        sb.sh(
            "pg4",
            "systemctl is-active etcd; dpkg -l 'postgresql-15' 2>/dev/null | grep -c '^ii' || true"
        )
        .split_whitespace()
        .collect::<Vec<_>>(),
        ["active", "0"]
    );
    assert_eq!(
        sb.sh("pg1", "systemctl is-active etcd || true").trim(),
        "inactive"
    );
    sb.assert_converged();
}
