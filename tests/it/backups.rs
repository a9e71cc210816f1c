//! Scheduled base backups proven restorable, end to end on real test hosts: the first apply
//! takes and restore-tests one, `pgha backup now|list|test|restore`, a corrupted byte caught
//! by the restore test and reported as drift, retention that never deletes the last good
//! backup while runs fail, the role guard after a failover, a replica's backup under Patroni.

use std::time::{Duration, Instant};

use pgha::sandbox::Flavour;
use serde_json::Value;

use crate::cluster::Sandbox;

/// `pgha backup list --json`.
pub fn backups(sb: &Sandbox) -> Vec<Value> {
    let out = sb.pgha(["backup", "list", "--json"]).run();
    let v: Value = serde_json::from_str(&out.stdout).expect("backup list --json");
    v["backups"].as_array().cloned().unwrap_or_default()
}

/// A string field of a backup's record (empty when absent).
pub fn field<'a>(b: &'a Value, key: &str) -> &'a str {
    b[key].as_str().unwrap_or_default()
}

/// Corrupts one byte of a relation file of backup `label` on `host`; the file's name.
fn corrupt(sb: &Sandbox, host: &str, label: &str) -> String {
    sb.sh(
        host,
        &format!(
            "cd /var/backups/pgha/{label}/data && f=$(find base -type f -size +8k | sort | head -1) && \
             printf '\\102' | dd of=\"$f\" bs=1 seek=100 conv=notrunc 2>/dev/null && echo \"$f\""
        ),
    )
    .trim()
    .to_owned()
}

#[test]
fn streaming_backups_are_verified_restore_tested_and_a_corrupted_byte_is_caught() {
    let sb = Sandbox::with_backups("bk", Flavour::Streaming);
    let started = Instant::now();
    sb.pgha(["apply", "-y"])
        .stdout_has("create a verified backup, restore-tested")
        .stdout_has("newest good")
        .stdout_has("0 failed.")
        .run();
    eprintln!(
        "backups: bare cluster to a proven backup in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    sb.assert_converged();
    // The folder is the backups' alone.
    assert_eq!(
        sb.sh("pg1", "stat -c '%U %a' /var/backups/pgha").trim(),
        "postgres 700"
    );
    let first = backups(&sb);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(field(&first[0], "host"), "pg1", "the primary took it");
    assert_eq!(field(&first[0]["restore_test"], "result"), "passed");

    sb.psql(
        "pg1",
        "CREATE TABLE precious AS SELECT g AS id FROM generate_series(1, 10000) g",
    );
    // What a run killed half-way leaves: the next run takes its data away.
    sb.sh(
        "pg1",
        "mkdir -p /var/backups/pgha/20200101T000000Z.partial/data && head -c 1000000 /dev/zero > /var/backups/pgha/20200101T000000Z.partial/data/base && chown -R postgres: /var/backups/pgha/20200101T000000Z.partial",
    );
    sb.pgha(["backup", "now"])
        .stdout_has("pg1 took backup")
        .run();
    assert_eq!(
        sb.sh("pg1", "ls /var/backups/pgha | grep -c 20200101 || true")
            .trim(),
        "0",
        "the killed run's leftovers are gone"
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
    sb.pgha(["backup", "test"])
        .stdout_has(&format!("restore test of {newest} on pg1: passed"))
        .stdout_has("canary row")
        .stdout_has("pg_amcheck")
        .run();
    // The copy is gone, and the data was in it: a copy left running shows it.
    sb.pgha(["backup", "restore", "--to-scratch"])
        .stdout_has("the copy runs on pg1")
        .run();
    let port = 15432;
    assert_eq!(
        sb.sh(
            "pg1",
            &format!("runuser -u postgres -- psql -XAt -h /var/backups/pgha/.scratch-kept-{newest} -p {port} -d postgres -c 'SELECT count(*) FROM precious'")
        )
        .trim(),
        "10000"
    );
    sb.pgha(["status"])
        .stdout_has("a restored copy is running on pg1")
        .run();
    sb.pgha(["backup", "restore", "--stop"])
        .stdout_has("pg1: stopped and deleted")
        .run();

    // One byte of the newest backup goes bad on disk.
    let file = corrupt(&sb, "pg1", &newest);
    sb.pgha(["backup", "test"])
        .status(1)
        .stdout_has(&format!("checksum mismatch for file \"{file}\""))
        .run();
    sb.pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has(&format!("the newest backup {newest} on pg1 is broken"))
        .run();
    sb.pgha(["verify"])
        .status(1)
        .stdout_has(&format!("checksum mismatch for file \"{file}\""))
        .run();
    sb.pgha(["status"])
        .stdout_has(&format!(
            "backups: drift: the newest backup {newest} on pg1 is broken"
        ))
        .run();

    // Keep one good backup; runs that fail (a broken setting, put in by hand) delete nothing.
    sb.edit_inventory("retention: {count: 3}", "retention: {count: 1}");
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let after_repair = backups(&sb);
    let good: Vec<&Value> = after_repair
        .iter()
        .filter(|b| {
            field(b, "state") == "verified" && field(&b["restore_test"], "result") != "failed"
        })
        .collect();
    assert_eq!(
        good.len(),
        1,
        "apply took a new good backup, retention kept one: {after_repair:?}"
    );
    let last_good = field(good[0], "label").to_owned();
    assert_ne!(last_good, newest);
    sb.sh(
        "pg1",
        "sed -i 's/\"max_rate\": null/\"max_rate\": \"1\"/' /etc/pgha/backup.json",
    );
    for _ in 0..2 {
        sb.pgha(["backup", "now"])
            .status(1)
            .stderr_has("pg_basebackup")
            .run();
    }
    let after_failures = backups(&sb);
    assert!(
        after_failures
            .iter()
            .any(|b| field(b, "label") == last_good),
        "the last good backup is kept while runs fail: {after_failures:?}"
    );
    sb.pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("the run failed")
        .run();
    // apply puts the setting back and takes a good one; the failed runs older than it go.
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    sb.assert_converged();
    let settled = backups(&sb);
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert_eq!(field(&settled[0]["restore_test"], "result"), "passed");
}

/// Timers fire every minute: after a failover the next run happens on the new primary, and
/// only there.
#[test]
fn after_a_failover_the_scheduled_backup_runs_on_the_new_primary_once() {
    let sb = Sandbox::with_backups("bkfo", Flavour::Streaming);
    sb.edit_inventory("schedule: \"*-*-* 01:00:00\"", "schedule: \"*:*:00\"");
    sb.edit_inventory("schedule: \"*-*-* 03:00:00\"", "schedule: \"*:*:30\"");
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    sb.sh("pg1", "systemctl stop postgresql@15-main");
    sb.pgha(["failover", "-y", "--to", "pg2"])
        .stdout_has("Failed over from pg1 to pg2")
        .run();
    let since = sb.sh("pg2", "date -u +%Y%m%dT%H%M%SZ").trim().to_owned();
    let taken_after = |sb: &Sandbox| -> Vec<Value> {
        backups(sb)
            .into_iter()
            .filter(|b| field(b, "label") > since.as_str() && field(b, "state") == "verified")
            .collect()
    };
    sb.wait_until(
        "a scheduled backup after the failover",
        Duration::from_secs(150),
        || !taken_after(&sb).is_empty(),
    );
    // The other hosts' jobs of the same firing wait for pg2's canary row (at most 2 min):
    // pg3's says pg2 took it once it has it.
    sb.wait_until(
        "pg3's job of a firing after the failover is done",
        Duration::from_secs(150),
        || {
            sb.sh("pg3", "cat /var/backups/pgha/last-run.json")
                .contains("pg2 takes this backup")
        },
    );
    let after = taken_after(&sb);
    let firings: std::collections::BTreeSet<String> = after
        .iter()
        .map(|b| field(b, "label")[..13].to_owned())
        .collect();
    assert_eq!(
        after.len(),
        firings.len(),
        "one backup per firing: {after:?}"
    );
    assert!(
        after.iter().all(|b| field(b, "host") == "pg2"),
        "on the new primary only: {after:?}"
    );
    // The scheduled restore test (every minute here, at :30) proves what the new primary took.
    sb.wait_until(
        "a scheduled restore test of pg2's backup",
        Duration::from_secs(120),
        || {
            taken_after(&sb)
                .iter()
                .any(|b| field(&b["restore_test"], "result") == "passed")
        },
    );
}

/// Under Patroni, from a replica: the primary's job names the first streaming replica in the
/// canary row, that replica takes it, the restore test finds the row.
#[test]
fn patroni_backups_from_a_replica() {
    let sb = Sandbox::with_backups("bkpa", Flavour::Patroni);
    sb.edit_inventory(
        "from: primary",
        "from: replica\n  compress: true\n  max_rate: 50M",
    );
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    sb.assert_converged();
    let taken = backups(&sb);
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(
        field(&taken[0], "host"),
        "pg2",
        "the first replica in the inventory's order"
    );
    assert_eq!(field(&taken[0], "role"), "standby");
    sb.pgha(["backup", "now"])
        .stdout_has("pg2 took backup")
        .run();
    sb.pgha(["backup", "test"])
        .stdout_has("on pg2: passed")
        .stdout_has("canary row")
        .run();
    sb.pgha(["verify"])
        .stdout_has("backups")
        .stdout_has("0 failed.")
        .run();
    let stored = backups(&sb);
    assert!(stored.iter().all(|b| b["compressed"] == true), "{stored:?}");
    assert!(
        stored
            .iter()
            .all(|b| b["stored_bytes"].as_u64() < b["size_bytes"].as_u64()),
        "gzipped after the verification: {stored:?}"
    );
    // A schedule systemd does not take is refused on the host before the timer is written:
    // the working timer stays.
    sb.edit_inventory(
        "schedule: \"*-*-* 01:00:00\"",
        "schedule: \"*-*-* 25:00:00\"",
    );
    sb.pgha(["apply", "-y"])
        .status(1)
        .stdout_has("backup timer")
        .run();
    assert!(sb
        .sh("pg1", "cat /etc/systemd/system/pgha-backup.timer")
        .contains("OnCalendar=*-*-* 01:00:00"));
}
