//! Day-2 topology: hosts removed from the inventory while the cluster still knows them, end
//! to end on a streaming cluster. A standby that still streams (with a standby cascading from
//! it), one that is down, and the primary (refused).

use crate::cluster::{Options, Sandbox};

/// `SELECT` on pg1 as postgres, one value.
fn on_pg1(sb: &Sandbox, sql: &str) -> String {
    sb.psql("pg1", sql)
}

#[test]
fn streaming_standbys_leave_the_inventory_and_the_primary_may_not() {
    let sb = Sandbox::up("rm", Options::packaged(4));
    // pg4 cascades from pg3.
    let pg4 = sb.host_entry("pg4");
    sb.edit_inventory(&pg4, &format!("{pg4}    upstream: pg3\n"));
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();

    // pg3 leaves while it streams; pg4, below it, follows the primary instead.
    sb.edit_inventory(&sb.host_entry("pg3"), "");
    sb.edit_inventory("    upstream: pg3\n", "");
    sb.pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("stop replication of pg3 (from ")
        .stdout_has("is not in the inventory and still streams here with slot pgha_pg3")
        .run();
    sb.pgha(["verify"])
        .status(1)
        .stdout_has("in use by pg3, which is not in the inventory")
        .run();
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    assert_eq!(
        on_pg1(
            &sb,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgha_pg3'"
        ),
        "0",
        "its slot is dropped"
    );
    assert_eq!(
        on_pg1(
            &sb,
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg3'"
        ),
        "0",
        "its stream ended"
    );
    assert_eq!(
        on_pg1(
            &sb,
            "SELECT state FROM pg_stat_replication WHERE application_name = 'pg4'"
        ),
        "streaming",
        "the cascaded standby follows the primary"
    );
    // Its data stays: pgha does not touch a host outside the inventory.
    assert_eq!(
        sb.sh(
            "pg3",
            "test -f /var/lib/postgresql/15/main/PG_VERSION && echo kept"
        )
        .trim(),
        "kept"
    );
    sb.assert_converged();

    // Named under `decommission:` with consent, pg3 is stopped for good (masked: Debian's
    // postgresql.service would start it at boot) and its data deleted; plan shows that as
    // destroying data first.
    sb.edit_inventory(
        "\nhosts:\n",
        &format!(
            "\ndecommission:\n  - name: pg3\n    address: {}\n    wipe_data: true\n\nhosts:\n",
            sb.ip("pg3")
        ),
    );
    sb.pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("pg3 (leaving the cluster: decommission)")
        .stdout_has("stop postgresql@15-main")
        .stdout_has("destroy /var/lib/postgresql/15/main")
        .stdout_has("wipe_data: true: DESTROYS")
        .run();
    let started = std::time::Instant::now();
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    println!(
        "decommission of pg3 (stop, mask, delete its data) with apply and verify: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let left = sb.sh(
        "pg3",
        "systemctl is-active postgresql@15-main; systemctl is-enabled postgresql@15-main; ls -A /var/lib/postgresql/15/main | wc -l",
    );
    assert_eq!(
        left.split_whitespace().collect::<Vec<_>>(),
        ["inactive", "masked", "0"],
        "{left}"
    );
    sb.assert_converged();

    // Back in `hosts:` later, the decommissioned host is unmasked and cloned again.
    sb.edit_inventory(
        &format!(
            "\ndecommission:\n  - name: pg3\n    address: {}\n    wipe_data: true\n\nhosts:\n",
            sb.ip("pg3")
        ),
        "\nhosts:\n",
    );
    sb.edit_inventory(
        &sb.host_entry("pg1"),
        &format!("{}{}", sb.host_entry("pg1"), sb.host_entry("pg3")),
    );
    let started = std::time::Instant::now();
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    println!(
        "pg3 added back (unmask, clone, stream) with apply and verify: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        on_pg1(
            &sb,
            "SELECT state FROM pg_stat_replication WHERE application_name = 'pg3'"
        ),
        "streaming"
    );
    sb.assert_converged();

    // pg2 is down, then leaves: its slot holds WAL back until apply drops it. Named under
    // `decommission:` while down, it is a note: the cluster forgets it all the same.
    sb.docker("stop", "pg2");
    sb.edit_inventory(
        "\nhosts:\n",
        &format!(
            "\ndecommission:\n  - name: pg2\n    address: {}\n\nhosts:\n",
            sb.ip("pg2")
        ),
    );
    sb.edit_inventory(&sb.host_entry("pg2"), "");
    sb.pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("update pgha_pg2")
        .stdout_has("abandoned replication slot")
        .run();
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    assert_eq!(
        on_pg1(
            &sb,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgha_pg2'"
        ),
        "0"
    );
    sb.pgha(["plan", "--detailed-exitcode"])
        .stdout_has("pg2 (decommission) did not answer")
        .stdout_has("No changes.")
        .run();
    sb.assert_converged();

    // The primary may not simply leave: plan refuses and says what to do first.
    sb.edit_inventory(&sb.host_entry("pg1"), "");
    sb.edit_inventory(
        &sb.host_entry("pg4"),
        &sb.host_entry("pg4")
            .replace("role: standby", "role: primary"),
    );
    sb.pgha(["plan"])
        .status(1)
        .stderr_has("the primary is not in the inventory: pg3, pg4 stream from")
        .stderr_has("switch over to a standby that stays")
        .run();
}

/// repmgr: a standby leaves the inventory while it streams. It is unregistered (`repmgr
/// cluster show` no longer lists it), its stream and slot end, and its repmgrd stays paused,
/// so it never promotes itself once every node refuses it.
#[test]
fn a_repmgr_standby_leaves_the_inventory() {
    let sb = Sandbox::repmgr("rmr", 3);
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    sb.edit_inventory(&sb.host_entry("pg3"), "");
    sb.pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("stop pg3 (node ")
        .stdout_has("pg3 is in repmgr's metadata and not in the inventory")
        .run();
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let show = sb.sh(
        "pg1",
        "cd / && runuser -u postgres -- repmgr -f /etc/repmgr.conf cluster show 2>&1 || true",
    );
    assert!(show.contains("pg2") && show.contains("pg4"), "{show}");
    assert!(!show.contains("pg3"), "pg3 is unregistered: {show}");
    assert_eq!(
        sb.psql(
            "pg1",
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg3'"
        ),
        "0"
    );
    // Refused everywhere, pg3's repmgrd would take the primary for dead: it stays paused.
    std::thread::sleep(std::time::Duration::from_secs(40));
    assert_eq!(
        sb.sh(
            "pg3",
            "runuser -u postgres -- psql -XAt -c 'SELECT pg_is_in_recovery()'"
        )
        .trim(),
        "t",
        "the departed standby did not promote itself"
    );
    sb.assert_converged();

    // Decommissioned without `wipe_data`: repmgrd and PostgreSQL stopped for good, the data
    // kept.
    sb.edit_inventory(
        "\nhosts:\n",
        &format!(
            "\ndecommission:\n  - name: pg3\n    address: {}\n\nhosts:\n",
            sb.ip("pg3")
        ),
    );
    sb.pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("stop pgha-repmgrd.service")
        .stdout_has("stop postgresql@15-main")
        .stdout_has("set `wipe_data: true` under `decommission:` to delete")
        .run();
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let left = sb.sh(
        "pg3",
        "systemctl is-active pgha-repmgrd postgresql@15-main; test -f /var/lib/postgresql/15/main/PG_VERSION && echo kept",
    );
    assert_eq!(
        left.split_whitespace().collect::<Vec<_>>(),
        ["inactive", "inactive", "kept"],
        "{left}"
    );
    sb.assert_converged();
}
