//! The Patroni flavour end to end on real hosts: etcd (3 members co-located) and Patroni from
//! Debian's packages. Bootstrap, verify, a clean re-plan, switchover through the REST API.

use crate::cluster::{Options, Sandbox};

#[test]
fn patroni_bootstrap_verify_and_switchover() {
    let sb = Sandbox::up_with(
        "patroni",
        Options {
            hosts: 3,
            ssh_user: None,
            packages: true,
        },
        |o| {
            o.flavour = pgha::sandbox::Flavour::Patroni;
        },
    );
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
    // Patroni's files: mode 0600 for the one with passwords; Debian's cluster disabled.
    assert_eq!(
        sb.sh("pg2", "stat -c '%a %U' /etc/patroni/15-main.yml")
            .trim(),
        "600 postgres"
    );
    assert_eq!(
        sb.sh("pg2", "cat /etc/postgresql/15/main/start.conf")
            .trim(),
        "disabled"
    );
    assert_eq!(
        sb.sh("pg2", "stat -c '%a' /var/lib/postgresql/15/patroni")
            .trim(),
        "700"
    );
    sb.pgha(["plan", "--detailed-exitcode"])
        .stdout_has("No changes.")
        .run();
    sb.pgha(["apply", "-y"])
        .stdout_has("Nothing to apply.")
        .run();

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
    sb.pgha(["apply", "-y"])
        .stdout_has("20 checks run, 20 passed, 0 failed.")
        .run();
    for host in ["pg1", "pg2", "pg3"] {
        assert_eq!(sb.psql(host, "SHOW shared_buffers"), "160MB", "{host}");
        assert_eq!(sb.psql(host, "SHOW work_mem"), "8MB", "{host}");
    }
    sb.pgha(["plan", "--detailed-exitcode"])
        .stdout_has("No changes.")
        .run();

    sb.pgha(["switchover", "--to", "pg2", "-y"])
        .stdout_has("Switched over from pg1 to pg2")
        .stdout_has("0 failed.")
        .run();
    assert_eq!(sb.psql("pg2", "SELECT pg_is_in_recovery()"), "f");
    sb.pgha(["plan", "--detailed-exitcode"])
        .stdout_has("No changes.")
        .stdout_has("pg2 is the primary")
        .run();
    let status = sb.pgha(["status"]).run();
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("pg2 ") && l.contains("primary")),
        "{}",
        status.stdout
    );
    sb.pgha(["switchover", "--to", "pg1", "-y"])
        .stdout_has("Switched over from pg2 to pg1")
        .stdout_has("0 failed.")
        .run();
    sb.pgha(["plan", "--detailed-exitcode"])
        .stdout_has("No changes.")
        .run();
}
