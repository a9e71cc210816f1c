//! The repmgr flavour end to end on real hosts: three data nodes and a witness, repmgrd
//! failing over when the primary's host dies under a write load, and the old primary
//! rejoined by `repmgr node rejoin --force-rewind` before it starts.

use std::time::{Duration, Instant};

use crate::cluster::Sandbox;
use crate::load::{app_conninfo, client_sql, Writer};

/// Bootstrap, verify, no-op; then the primary's host is killed under a write load: repmgrd
/// promotes a standby (the other follows), writes resume; the old host comes back without
/// starting PostgreSQL (start.conf manual), plan shows its rejoin before start, apply does it,
/// verify passes and plan has nothing left.
#[test]
fn repmgr_with_a_witness_fails_over_and_the_old_primary_rejoins_before_start() {
    let sb = Sandbox::repmgr("repmgr", 3);
    let started = Instant::now();
    sb.pgha(["apply", "-y"])
        .stdout_has("start pgha-repmgrd.service (repmgrd running)")
        .stdout_has("19 checks run, 19 passed, 0 failed.")
        .run();
    eprintln!(
        "repmgr: hosts with packages -> verified cluster with a witness in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    sb.assert_converged();
    let status = sb.pgha(["status"]).run();
    assert!(
        status.stdout.lines().any(|l| l.starts_with("pg4")
            && l.contains("witness")
            && l.contains("repmgrd running")),
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
