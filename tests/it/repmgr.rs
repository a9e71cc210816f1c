//! The repmgr flavour end to end on real hosts: three data nodes and a witness, repmgrd
//! failing over when the primary's host dies under a write load, and the old primary
//! rejoined by `repmgr node rejoin --force-rewind` before it starts.

use std::time::{Duration, Instant};

use crate::cluster::{Options, Sandbox};
use crate::load::{app_conninfo, client_sql, Writer};

/// From bare hosts (apt included): bootstrap, verify, no-op; then the primary's host is killed
/// under a write load: repmgrd promotes a standby (the other follows), writes resume; the old
/// host comes back without starting PostgreSQL (start.conf manual), plan shows its rejoin
/// before start, apply does it, verify passes and plan has nothing left.
#[test]
fn repmgr_with_a_witness_fails_over_and_the_old_primary_rejoins_before_start() {
    let sb = Sandbox::repmgr_with("repmgr", Options::bare(4));
    let started = Instant::now();
    sb.pgha(["apply", "-y"])
        .stdout_has("start pgha-repmgrd.service (repmgrd running)")
        .stdout_has("19 checks run, 19 passed, 0 failed.")
        .run();
    eprintln!(
        "repmgr: bare hosts -> verified cluster with a witness in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    sb.assert_converged();
    let status = sb.pgha(["status"]).run();
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("pg4") && l.contains("witness") && l.contains("running")),
        "{}",
        status.stdout
    );
    assert_eq!(
        sb.sh(
            "pg2",
            "cat /etc/postgresql/15/main/start.conf | grep -v '^#'"
        )
        .trim(),
        "manual"
    );

    let (conninfo, password) = app_conninfo(&sb, &["pg1", "pg2", "pg3"]);
    let writer = Writer::start(&conninfo, &password);
    std::thread::sleep(Duration::from_secs(3));
    let killed_at = Instant::now();
    sb.docker("kill", "pg1");
    let deadline = Instant::now() + Duration::from_secs(120);
    let promoted = loop {
        if let Some(h) = ["pg2", "pg3"]
            .into_iter()
            .find(|h| sb.sh(h, "runuser -u postgres -- psql -X -At -c 'SELECT pg_is_in_recovery()' 2>/dev/null || true").trim() == "f")
        {
            break h;
        }
        assert!(Instant::now() < deadline, "no standby was promoted");
        std::thread::sleep(Duration::from_millis(500));
    };
    let detected = killed_at.elapsed();
    while Instant::now() < deadline && !client_sql(&conninfo, &password, "SELECT 1") {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let acked = writer.stop();
    let missing = acked.missing_on(&sb, promoted);
    eprintln!(
        "repmgr failover: {promoted} promoted {:.1} s after the kill, write gap {:.1} s, {} writes acknowledged, {} missing on {promoted} (asynchronous replication)",
        detected.as_secs_f64(),
        acked.gap_around(killed_at).as_secs_f64(),
        acked.ids.len(),
        missing.len()
    );
    assert!(acked.after(killed_at) > 0, "writes resumed on {promoted}");
    for (id, at) in &missing {
        assert!(
            killed_at.duration_since(*at) < Duration::from_secs(1),
            "id {id}, acknowledged long before the crash, is missing on {promoted}"
        );
    }

    // The old host boots; PostgreSQL stays down until it has rejoined.
    sb.docker("start", "pg1");
    sb.wait_until("pg1 answers", Duration::from_secs(120), || {
        sb.command("status")
            .output()
            .is_ok_and(|o| !String::from_utf8_lossy(&o.stdout).contains("unreachable"))
    });
    assert_eq!(
        sb.sh("pg1", "systemctl is-active postgresql@15-main || true")
            .trim(),
        "inactive",
        "start.conf manual: boot does not start a former primary"
    );
    sb.pgha(["plan"])
        .stdout_has("rejoin (repmgr node rejoin --force-rewind) before start: pg1 was a primary on timeline 1")
        .run();
    let started = Instant::now();
    sb.pgha(["apply", "-y"])
        .stdout_has("19 checks run, 19 passed, 0 failed.")
        .run();
    eprintln!(
        "repmgr: the old primary rejoined in {:.1} s (apply with verify)",
        started.elapsed().as_secs_f64()
    );
    sb.assert_plan_clean();
}

/// Whether PostgreSQL on `host` answers as a primary.
fn is_primary(sb: &Sandbox, host: &str) -> bool {
    sb.sh(
        host,
        "runuser -u postgres -- psql -X -At -c 'SELECT pg_is_in_recovery()' 2>/dev/null || true",
    )
    .trim()
        == "f"
}

/// Longer than repmgrd needs to declare a primary dead with pgha's defaults (about 27 s),
/// with room for the election.
const PAST_DETECTION: Duration = Duration::from_secs(45);

/// Splits with the witness as tie-breaker: a standby cut off from everyone does not promote;
/// a broken primary-standby link alone does not promote while the witness sees the primary
/// (consensus); both heal into streaming again. First, a sudoers template with a syntax error
/// is refused before it reaches a host.
#[test]
fn repmgr_splits_do_not_promote_while_the_primary_is_seen() {
    let sb = Sandbox::repmgr("split", 3);
    sb.pgha(["apply", "-y"])
        .stdout_has("19 checks run, 19 passed, 0 failed.")
        .run();

    // A broken sudoers override: visudo refuses it, the host's file stays byte-identical.
    let sum = |sb: &Sandbox| sb.sh("pg2", "sha256sum /etc/sudoers.d/pgha-repmgr");
    let before = sum(&sb);
    let templates = tempfile::tempdir().expect("templates");
    std::fs::create_dir_all(templates.path().join("repmgr")).expect("dir");
    std::fs::write(
        templates.path().join("repmgr/sudoers.j2"),
        "postgres ALL=(root) NOPASSWD /usr/bin/pg_ctlcluster\n",
    )
    .expect("template");
    let refused = sb
        .pgha([
            "apply".to_owned(),
            "-y".to_owned(),
            format!("--templates={}", templates.path().display()),
        ])
        .status(1)
        .run();
    assert!(
        (refused.stdout.clone() + &refused.stderr)
            .contains("what repmgr may run as root: FAILED: sh exited 3: /etc/sudoers.d/pgha-repmgr.pgha-new:1:52: syntax error"),
        "{}{}",
        refused.stdout,
        refused.stderr
    );
    assert_eq!(sum(&sb), before, "the host's sudoers file is untouched");

    // A standby cut off from the primary and the witness (and its sibling): no promotion.
    for other in ["pg1", "pg2", "pg4"] {
        sb.cut("pg3", other);
    }
    std::thread::sleep(PAST_DETECTION);
    assert!(
        !is_primary(&sb, "pg3"),
        "an isolated standby promoted itself"
    );
    assert!(is_primary(&sb, "pg1"));
    for other in ["pg1", "pg2", "pg4"] {
        sb.heal("pg3", other);
    }
    sb.wait_until("pg3 streams again", Duration::from_secs(120), || {
        sb.psql(
            "pg1",
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg3' AND state = 'streaming'",
        ) == "1"
    });

    // Only the primary-standby link broken; the witness sees both: consensus, no promotion.
    sb.cut("pg1", "pg2");
    std::thread::sleep(PAST_DETECTION);
    assert!(
        !is_primary(&sb, "pg2") && !is_primary(&sb, "pg3"),
        "a standby promoted while the witness still saw the primary"
    );
    sb.heal("pg1", "pg2");
    sb.wait_until("pg2 streams again", Duration::from_secs(120), || {
        sb.psql(
            "pg1",
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg2' AND state = 'streaming'",
        ) == "1"
    });

    sb.assert_plan_clean();
}

/// `pgha switchover` under repmgr is repmgr's own (`standby switchover --siblings-follow`,
/// over the SSH trust pgha set up between the nodes with pinned host keys): to a standby and
/// back, no committed row lost, the sibling and the witness following, verify and a clean
/// plan after each. A switchover to the witness is refused before anything moves.
#[test]
fn repmgr_switchover_to_a_standby_and_back() {
    let sb = Sandbox::repmgr("rswo", 3);
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    sb.assert_plan_clean();
    // The trust is pgha's own lines, each limited to the peer's address; the host keys pinned.
    let authorized = sb.sh("pg2", "cat /var/lib/postgresql/.ssh/authorized_keys");
    assert_eq!(
        authorized.matches("pgha-repmgr:").count(),
        3,
        "{authorized}"
    );
    assert!(authorized.contains("from=\""), "{authorized}");
    assert_eq!(
        sb.sh(
            "pg2",
            "runuser -u postgres -- ssh -o BatchMode=yes -o IdentitiesOnly=yes -i /var/lib/postgresql/.ssh/pgha_ed25519 \
             -o UserKnownHostsFile=/var/lib/postgresql/.ssh/pgha_known_hosts -o StrictHostKeyChecking=yes pg1 hostname"
        )
        .trim(),
        "pg1",
        "postgres on pg2 logs in to pg1 by name with the pinned host key"
    );

    sb.pgha(["switchover", "--to", "pg4", "-y"])
        .status(1)
        .stderr_has("pg4 holds no data")
        .run();
    sb.psql(
        "pg1",
        "CREATE TABLE before_switchover AS SELECT generate_series(1, 1000) AS id",
    );
    for (old, new, other) in [("pg1", "pg2", "pg3"), ("pg2", "pg1", "pg3")] {
        let out = sb
            .pgha(["switchover", "--to", new, "-y"])
            .stdout_has(&format!("Switched over from {old} to {new}"))
            .stdout_has("0 failed.")
            .run();
        eprintln!(
            "repmgr: {}",
            out.stdout
                .lines()
                .find(|l| l.starts_with("Switched"))
                .unwrap_or("")
        );
        assert!(is_primary(&sb, new), "{new} is the primary");
        assert!(!is_primary(&sb, old), "{old} is a standby");
        assert_eq!(
            sb.psql(new, "SELECT count(*) FROM before_switchover"),
            "1000"
        );
        // repmgr's own view agrees: the sibling and the old primary follow the new one.
        let show = sb.sh(
            new,
            "runuser -u postgres -- repmgr -f /etc/repmgr.conf cluster show --csv",
        );
        let id = |h: &str| {
            sb.sh(h, "sed -n 's/^node_id=//p' /etc/repmgr.conf")
                .trim()
                .to_owned()
        };
        for follower in [old, other] {
            assert!(
                show.lines()
                    .any(|l| l.starts_with(&format!("{},", id(follower)))),
                "{show}"
            );
        }
        let plan = sb
            .pgha(["plan", "--detailed-exitcode"])
            .stdout_has("No changes.")
            .run();
        assert!(
            plan.stdout.contains(&format!("{old} (standby of {new})"))
                && plan.stdout.contains(&format!("{other} (standby of {new})")),
            "{}",
            plan.stdout
        );
        sb.pgha(["verify"]).stdout_has("0 failed.").run();
        status_agrees_with_repmgr(&sb, new);
    }
}

/// `pgha status --json` and `repmgr cluster show` (run on `host`) say the same of every node:
/// id, role, upstream, location, priority, the primary's timeline; repmgrd runs everywhere.
#[track_caller]
fn status_agrees_with_repmgr(sb: &Sandbox, host: &str) {
    let status: serde_json::Value =
        serde_json::from_str(&sb.pgha(["status", "--json"]).run().stdout).expect("status --json");
    let show = sb.sh(
        host,
        "runuser -u postgres -- repmgr -f /etc/repmgr.conf cluster show",
    );
    let rows: Vec<Vec<String>> = show
        .lines()
        .filter(|l| l.contains('|') && !l.trim_start().starts_with("ID"))
        .map(|l| l.split('|').map(|c| c.trim().to_owned()).collect())
        .collect();
    assert_eq!(rows.len(), 4, "{show}");
    for row in rows {
        // ID | Name | Role | Status | Upstream | Location | Priority | Timeline | Connection string
        let (id, name, role, upstream, location, priority, timeline) = (
            &row[0], &row[1], &row[2], &row[4], &row[5], &row[6], &row[7],
        );
        let m = status["members"]
            .as_array()
            .and_then(|a| a.iter().find(|m| m["member"] == name.as_str()))
            .unwrap_or_else(|| panic!("{name} in status: {status}"));
        let context = format!("{name}: {m}\n{show}");
        assert_eq!(m["columns"]["id"], id.as_str(), "{context}");
        assert_eq!(m["role"], role.as_str(), "{context}");
        assert_eq!(m["columns"]["location"], location.as_str(), "{context}");
        assert_eq!(m["columns"]["priority"], priority.as_str(), "{context}");
        assert_eq!(m["columns"]["repmgrd"], "running", "{context}");
        if role != "witness" {
            assert_eq!(
                m["upstream"].as_str().unwrap_or(""),
                upstream.as_str(),
                "{context}"
            );
            // repmgr shows a standby's last restartpoint's timeline, which lags after a
            // promotion upstream until the next restartpoint; pgha the one it receives.
            let ours = m["timeline"].as_u64().unwrap_or(0);
            let theirs: u64 = timeline.parse().expect("timeline");
            if role == "primary" {
                assert_eq!(ours, theirs, "{context}");
            } else {
                assert!(ours >= theirs, "{context}");
            }
        }
    }
}

/// `pgha failover` under repmgr where repmgrd only reports (`failover: manual`): refused while
/// the primary answers; once its server is down, the old primary is fenced, repmgr promotes
/// the DBA's pick and the sibling and witness follow it; plan shows the old primary's rejoin,
/// apply does it, verify passes.
#[test]
fn repmgr_failover_by_hand_when_repmgrd_only_reports() {
    let sb = Sandbox::repmgr("rfo", 3);
    sb.edit_inventory(
        "repmgr:\n  password: {env: PGHA_REPMGR_PASSWORD}\n",
        "repmgr:\n  password: {env: PGHA_REPMGR_PASSWORD}\n  failover: manual\n",
    );
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    sb.pgha(["failover", "-y"])
        .status(1)
        .stderr_has("pg1 answers as the primary")
        .run();
    sb.psql("pg1", "CREATE TABLE before_failover AS SELECT 1 AS ok");
    sb.sh("pg1", "systemctl stop postgresql@15-main");
    let started = Instant::now();
    sb.pgha(["failover", "-y", "--to", "pg3"])
        .stdout_has("Failed over from pg1 to pg3")
        .run();
    eprintln!(
        "repmgr: failover by hand in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(is_primary(&sb, "pg3"));
    assert_eq!(sb.psql("pg3", "SELECT ok FROM before_failover"), "1");
    assert_eq!(
        sb.sh("pg1", "systemctl is-enabled postgresql@15-main || true")
            .trim(),
        "masked",
        "the old primary is fenced"
    );
    sb.pgha(["plan"])
        .stdout_has("pg2 (standby of pg3)")
        .stdout_has("rejoin (repmgr node rejoin --force-rewind) before start")
        .run();
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let plan = sb
        .pgha(["plan", "--detailed-exitcode"])
        .stdout_has("No changes.")
        .run();
    assert!(
        plan.stdout.contains("pg1 (standby of pg3)"),
        "{}",
        plan.stdout
    );
}

/// The primary cut off from everyone (pgha still reaches it): a standby is promoted. The
/// sibling's repmgrd is stopped first, as when it gives up waiting for the new primary (seen on
/// a loaded machine): the sibling stays on the old primary and, once healed, streams what the
/// old primary took alone. Healed, the old primary still runs as a primary of its own (repmgr
/// does not fence); plan names both for a rejoin on the new timeline, apply rejoins them
/// (rewound where they went past the fork), verify passes.
#[test]
fn repmgr_isolated_primary_is_replaced_then_rejoined() {
    let sb = Sandbox::repmgr("isol", 3);
    sb.pgha(["apply", "-y"])
        .stdout_has("19 checks run, 19 passed, 0 failed.")
        .run();
    sb.sh("pg2", "systemctl stop pgha-repmgrd");
    for other in ["pg2", "pg3", "pg4"] {
        sb.cut("pg1", other);
    }
    // pg2 has no repmgrd to stand: pg3 wins the election.
    let (promoted, other) = ("pg3", "pg2");
    sb.wait_until("pg3 is promoted", Duration::from_secs(120), || {
        is_primary(&sb, promoted)
    });
    // What the isolated primary took meanwhile is on a timeline of its own.
    sb.psql(
        "pg1",
        "CREATE TABLE written_while_isolated AS SELECT 1 AS lost",
    );
    for other in ["pg2", "pg3", "pg4"] {
        sb.heal("pg1", other);
    }
    sb.wait_until("pg2 streams from pg1 again", Duration::from_secs(60), || {
        sb.psql(
            "pg1",
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg2' AND state = 'streaming'",
        ) == "1"
    });
    sb.pgha(["plan"])
        .stdout_has("rejoin (repmgr node rejoin --force-rewind) before start: pg1 runs as a second primary on timeline 1")
        .stdout_has("transactions committed there only are lost")
        // pg2 is rewound if it went past the fork, and follows pg3.
        .stdout_has("pg2 (standby of pg3)\n  ~ ")
        .run();
    sb.pgha(["apply", "-y"])
        .stdout_has("19 checks run, 19 passed, 0 failed.")
        .run();
    assert!(!is_primary(&sb, "pg1"), "pg1 rejoined as a standby");
    let plan = sb
        .pgha(["plan", "--detailed-exitcode"])
        .stdout_has("No changes.")
        .run();
    for standby in ["pg1", other] {
        assert!(
            plan.stdout
                .contains(&format!("{standby} (standby of {promoted})")),
            "{}",
            plan.stdout
        );
    }
    // A re-point whose `standby follow` failed leaves a standby streaming without its slot:
    // the next apply has repmgr follow again and make it.
    let slot = sb.psql(other, "SHOW primary_slot_name");
    assert!(!slot.is_empty(), "{other} streams through a slot");
    let slot_active = || {
        sb.psql(
            promoted,
            &format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"),
        ) == "t"
    };
    sb.psql(other, "ALTER SYSTEM RESET primary_slot_name");
    sb.psql(other, "SELECT pg_reload_conf()");
    sb.wait_until(
        "the slot is no longer used",
        Duration::from_secs(30),
        || sb.psql(other, "SHOW primary_slot_name").is_empty() && !slot_active(),
    );
    sb.pgha(["plan"])
        .stdout_has("it streams without a replication slot")
        .run();
    sb.pgha(["apply", "-y"])
        .stdout_has("19 checks run, 19 passed, 0 failed.")
        .run();
    assert_eq!(sb.psql(other, "SHOW primary_slot_name"), slot);
    sb.wait_until(
        "it streams through its slot",
        Duration::from_secs(30),
        slot_active,
    );
    sb.assert_converged();
}
