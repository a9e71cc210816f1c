//! pgBackRest end to end on real test hosts: three streaming data hosts and the repository on
//! a fourth (`role: backup`). The first apply archives the WAL into the repository, makes the
//! stanza and proves it with `check`, takes a verified backup and restore-tests it on the
//! repository's host; `pgha backup now|list|test` work as with base backups.

use std::time::Instant;

use pgha::sandbox::Flavour;

use crate::backups::{backups, field};
use crate::cluster::Sandbox;

#[test]
fn pgbackrest_on_a_repository_host_archives_backs_up_verifies_and_restore_tests() {
    let sb = Sandbox::with_pgbackrest("pgbr", Flavour::Streaming);
    let started = Instant::now();
    sb.pgha(["apply", "-y"])
        .stdout_has("create pgBackRest stanza")
        .stdout_has("create a verified backup, restore-tested")
        .stdout_has("0 failed.")
        .run();
    eprintln!(
        "pgbackrest: bare cluster to a proven backup in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    sb.assert_converged();
    eprintln!(
        "pgbackrest: plan + a second apply in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The WAL goes into the repository: `check` forces a switch and waits for the segment.
    let stanza = sb
        .sh(
            "pg4",
            "sed -n 's/^\\[\\(.*\\)\\]$/\\1/p' /etc/pgbackrest/pgbackrest.conf | grep -v global",
        )
        .trim()
        .to_owned();
    assert!(
        stanza.starts_with("e2e-pgbr-"),
        "the cluster's name: {stanza}"
    );
    let check = sb.sh(
        "pg4",
        &format!("runuser -u postgres -- pgbackrest --stanza={stanza} check && echo CHECKED"),
    );
    assert!(check.contains("CHECKED"), "{check}");
    assert_eq!(
        sb.psql("pg1", "SHOW archive_mode").trim(),
        "on",
        "archive_mode through pgha's parameters"
    );
    let archived = sb.psql("pg1", "SELECT archived_count > 0 FROM pg_stat_archiver");
    assert_eq!(archived.trim(), "t");

    let first = backups(&sb);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(
        field(&first[0], "host"),
        "pg4",
        "the repository host took it"
    );
    assert_eq!(field(&first[0], "method"), "pgbackrest");
    assert_eq!(field(&first[0], "state"), "verified");
    assert_eq!(field(&first[0]["restore_test"], "result"), "passed");

    sb.psql(
        "pg1",
        "CREATE TABLE precious AS SELECT g AS id FROM generate_series(1, 10000) g",
    );
    let t = Instant::now();
    sb.pgha(["backup", "now"])
        .stdout_has("pg4 took backup")
        .stdout_has("pgbackrest verify")
        .run();
    eprintln!(
        "pgbackrest: backup now in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let list = sb.pgha(["backup", "list"]).run();
    assert_eq!(
        list.stdout.matches("verified").count(),
        2,
        "{}",
        list.stdout
    );
    let newest = backups(&sb)
        .last()
        .map(|b| field(b, "label").to_owned())
        .expect("a backup");
    let t = Instant::now();
    sb.pgha(["backup", "test"])
        .stdout_has(&format!("restore test of {newest} on pg4: passed"))
        .stdout_has("canary row")
        .stdout_has("pg_amcheck")
        .run();
    eprintln!(
        "pgbackrest: restore test in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // The data is in the backup: a copy left running on the repository's host shows it.
    sb.pgha(["backup", "restore", "--to-scratch"])
        .stdout_has("the copy runs on pg4")
        .run();
    assert_eq!(
        sb.sh(
            "pg4",
            &format!("runuser -u postgres -- psql -XAt -h /var/backups/pgha/.scratch-kept-{newest} -p 15432 -d postgres -c 'SELECT count(*) FROM precious'")
        )
        .trim(),
        "10000"
    );
    sb.pgha(["backup", "restore", "--stop"])
        .stdout_has("pg4: stopped and deleted")
        .run();
    sb.pgha(["status"])
        .stdout_has("pgBackRest repository")
        .run();
    sb.assert_converged();
}

/// Under Patroni the archive settings go through the DCS (a PATCH and a rolling restart),
/// pgBackRest's pg1-path is Patroni's data directory, and `from: replica` copies the files
/// from a standby (backup-standby).
#[test]
fn pgbackrest_under_patroni_archives_through_the_dcs_and_copies_from_a_standby() {
    let sb = Sandbox::with_pgbackrest("pgbrpa", Flavour::Patroni);
    sb.edit_inventory("from: primary", "from: replica");
    sb.pgha(["apply", "-y"])
        .stdout_has("create pgBackRest stanza")
        .stdout_has("0 failed.")
        .run();
    sb.assert_converged();
    let leader = sb.psql("pg1", "SELECT pg_is_in_recovery()");
    let primary = if leader.trim() == "f" { "pg1" } else { "pg2" };
    assert_eq!(sb.psql(primary, "SHOW archive_mode").trim(), "on");
    let taken = backups(&sb);
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(field(&taken[0], "state"), "verified");
    assert_eq!(field(&taken[0]["restore_test"], "result"), "passed");
    sb.pgha(["backup", "now"])
        .stdout_has("pg4 took backup")
        .run();
    sb.pgha(["backup", "test"])
        .stdout_has("on pg4: passed")
        .stdout_has("canary row")
        .run();
    sb.pgha(["verify"]).stdout_has("0 failed.").run();
}

/// The repository in a folder every data host mounts (`repository: {path: ...}`, as an NFS
/// share): the primary archives into it and takes the backups; after a switchover the new
/// primary does, into the same repository, and its backup restores.
#[test]
fn pgbackrest_on_a_shared_path_follows_the_primary() {
    let sb = Sandbox::with_shared_pgbackrest("pgbrsh");
    sb.pgha(["apply", "-y"])
        .stdout_has("create pgBackRest stanza")
        .stdout_has("create a verified backup, restore-tested")
        .stdout_has("0 failed.")
        .run();
    sb.assert_converged();
    let first = backups(&sb);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(field(&first[0], "host"), "pg1", "the primary took it");
    assert_eq!(field(&first[0], "method"), "pgbackrest");
    assert_eq!(field(&first[0], "state"), "verified");
    assert_eq!(field(&first[0]["restore_test"], "result"), "passed");
    let archived = sb.psql("pg1", "SELECT archived_count > 0 FROM pg_stat_archiver");
    assert_eq!(archived.trim(), "t");
    // One repository: what pg1 wrote, pg3 reads.
    let listed = sb.sh("pg3", "ls /mnt/pgbackrest/backup/*/ | grep -c 'F$' || true");
    assert_eq!(listed.trim(), "1", "one full backup seen from pg3");

    sb.pgha(["switchover", "--to", "pg2", "-y"])
        .stdout_has("0 failed.")
        .run();
    sb.psql(
        "pg2",
        "CREATE TABLE precious AS SELECT g AS id FROM generate_series(1, 1000) g",
    );
    sb.pgha(["backup", "now"])
        .stdout_has("pg2 took backup")
        .stdout_has("pgbackrest verify")
        .run();
    let newest = backups(&sb)
        .last()
        .map(|b| field(b, "label").to_owned())
        .expect("a backup");
    sb.pgha(["backup", "test"])
        .stdout_has(&format!("restore test of {newest} on pg2: passed"))
        .stdout_has("canary row")
        .run();
    sb.assert_converged();
}
