//! etcd membership and Patroni members on a running cluster, end to end: a data host that is
//! also an etcd member leaves the inventory while it is down (pgha never contacts it), then a
//! new host joins as an etcd member and a replica. The leader never changes.

use std::time::Instant;

use crate::cluster::Sandbox;

const PATRONI_CONFIG: &str = "/etc/patroni/15-main.yml";

/// The etcd members as `member list` on `host` names them (started ones), sorted.
fn etcd_members(sb: &Sandbox, host: &str) -> Vec<String> {
    let out = sb.sh(
        host,
        ". /etc/profile.d/pgha-etcdctl.sh && etcdctl member list -w json",
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("member list JSON");
    let mut names: Vec<String> = v["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            let learner = m["isLearner"].as_bool().unwrap_or(false);
            let name = m["name"].as_str().unwrap_or("").to_owned();
            if learner || name.is_empty() {
                format!("{name}(not voting)")
            } else {
                name
            }
        })
        .collect();
    names.sort();
    names
}

/// Every etcd endpoint of the cluster answers healthy, asked through `host`.
fn etcd_all_healthy(sb: &Sandbox, host: &str) -> bool {
    let out = sb.sh(
        host,
        ". /etc/profile.d/pgha-etcdctl.sh && etcdctl endpoint health --cluster 2>&1 || true",
    );
    !out.contains("unhealthy") && out.contains("is healthy")
}

/// Patroni's members as `patronictl list` on `host` shows them: (name, role), sorted.
fn patroni_members(sb: &Sandbox, host: &str) -> Vec<(String, String)> {
    let out = sb.sh(
        host,
        &format!("patronictl -c {PATRONI_CONFIG} list -f json 2>/dev/null"),
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("patronictl JSON");
    let mut members: Vec<(String, String)> = v
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| {
            (
                m["Member"].as_str().unwrap_or("").to_owned(),
                m["Role"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    members.sort();
    members
}

fn leader(sb: &Sandbox, host: &str) -> String {
    patroni_members(sb, host)
        .into_iter()
        .find(|(_, role)| role == "Leader")
        .map(|(name, _)| name)
        .unwrap_or_else(|| panic!("no Patroni leader seen from {host}"))
}

#[test]
fn a_patroni_member_leaves_while_down_and_a_new_one_joins() {
    let sb = Sandbox::patroni("etcdm", 4);
    // pg4 joins later.
    let pg4 = sb.host_entry("pg4");
    sb.edit_inventory(&pg4, "");
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    assert_eq!(etcd_members(&sb, "pg1"), ["pg1", "pg2", "pg3"]);
    let first_leader = leader(&sb, "pg1");

    // pg3 is down (unreachable: its container is stopped) and leaves the inventory, as a
    // host and as an etcd member.
    sb.docker("stop", "pg3");
    sb.edit_inventory(&sb.host_entry("pg3"), "");
    sb.edit_inventory("members: [pg1, pg2, pg3]", "members: [pg1, pg2]");
    sb.pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("warning: 2 etcd members (patroni.etcd.members): a quorum needs 2, so they tolerate no failure")
        .stdout_has("stop etcd member pg3 (")
        .stdout_has("pg3 left the inventory: its etcd member is removed through pg1 (2 voting members stay, quorum 2); its host is not contacted")
        .run();
    let started = Instant::now();
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let removal = started.elapsed();
    eprintln!(
        "removal took {:.1} s (apply with its verify: etcd member removed, Patroni member and slot gone)",
        removal.as_secs_f64()
    );
    assert_eq!(etcd_members(&sb, "pg1"), ["pg1", "pg2"]);
    assert!(etcd_all_healthy(&sb, "pg2"), "both etcd members healthy");
    let members = patroni_members(&sb, "pg2");
    assert_eq!(
        members.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["pg1", "pg2"],
        "{members:?}"
    );
    assert_eq!(
        leader(&sb, "pg2"),
        first_leader,
        "the leader did not change"
    );
    assert_eq!(
        sb.psql(
            &first_leader,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pg3'"
        ),
        "0",
        "pg3's slot is gone"
    );
    sb.pgha(["verify"]).stdout_has("0 failed.").run();
    sb.assert_converged();

    // pg4 joins: an etcd member (learner first, promoted once in sync) and a replica.
    sb.edit_inventory("members: [pg1, pg2]", "members: [pg1, pg2, pg4]");
    let pg2 = sb.host_entry("pg2");
    sb.edit_inventory(&pg2, &format!("{pg2}{pg4}"));
    sb.pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("create etcd member pg4 (etcd member joined)")
        .stdout_has("pg4 joins the etcd cluster of")
        .stdout_has("pg4 not in the DCS yet: the leader takes its new pg_hba rules now")
        .run();
    let started = Instant::now();
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let addition = started.elapsed();
    eprintln!(
        "addition took {:.1} s (apply with its verify: etcd member joined and promoted, replica cloned and streaming)",
        addition.as_secs_f64()
    );
    assert_eq!(etcd_members(&sb, "pg4"), ["pg1", "pg2", "pg4"]);
    assert!(etcd_all_healthy(&sb, "pg4"), "three etcd members healthy");
    assert_eq!(
        patroni_members(&sb, "pg4")
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["pg1", "pg2", "pg4"]
    );
    assert_eq!(leader(&sb, "pg4"), first_leader, "the leader never changed");
    // The join's settings are gone once the member is formed.
    assert_eq!(
        sb.sh(
            "pg4",
            "ls /run/systemd/system/etcd.service.d/pgha-join.conf 2>/dev/null || echo gone"
        )
        .trim(),
        "gone"
    );
    sb.assert_converged();

    // The leader may not simply leave: plan refuses and says what to do first.
    sb.edit_inventory(&sb.host_entry("pg1"), "");
    sb.edit_inventory("members: [pg1, pg2, pg4]", "members: [pg2, pg4]");
    sb.edit_inventory(&pg2, &pg2.replace("role: standby", "role: primary"));
    sb.pgha(["plan"])
        .status(1)
        .stderr_has("Removing the current primary is refused: switch over to a standby that stays")
        .run();
}

/// One etcd member to three and back, on a running cluster, one member at a time in one apply
/// each way: the members join as learners and are promoted, then leave through pg1; the hosts
/// stay as data hosts (their etcd stopped, its data kept aside). The leader never changes.
#[test]
fn etcd_grows_from_one_member_to_three_and_back() {
    let sb = Sandbox::patroni_etcd("etcd131", 3, 1);
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    assert_eq!(etcd_members(&sb, "pg1"), ["pg1"]);
    let first_leader = leader(&sb, "pg1");

    sb.edit_inventory("members: [pg1]", "members: [pg1, pg2, pg3]");
    sb.pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has(
            "create etcd member pg2 (etcd member joined) — pg2 joins the etcd cluster of pg1",
        )
        .stdout_has(
            "create etcd member pg3 (etcd member joined) — pg3 joins the etcd cluster of pg1",
        )
        .run();
    let started = Instant::now();
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    eprintln!(
        "1 to 3 etcd members took {:.1} s (apply with its verify)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(etcd_members(&sb, "pg3"), ["pg1", "pg2", "pg3"]);
    assert!(etcd_all_healthy(&sb, "pg2"));
    assert_eq!(
        leader(&sb, "pg2"),
        first_leader,
        "the leader did not change"
    );
    sb.assert_converged();

    sb.edit_inventory("members: [pg1, pg2, pg3]", "members: [pg1]");
    sb.pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("pg2 is not in patroni.etcd.members: its etcd member is removed through pg1 (2 voting members stay, quorum 2)")
        .stdout_has("pg3 is not in patroni.etcd.members: its etcd member is removed through pg1 (1 voting member is to stay, quorum 1)")
        .stdout_has("stop etcd on pg2 (etcd retired)")
        .run();
    let started = Instant::now();
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    eprintln!(
        "3 to 1 etcd members took {:.1} s (apply with its verify)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(etcd_members(&sb, "pg1"), ["pg1"]);
    for host in ["pg2", "pg3"] {
        assert_eq!(
            sb.sh(host, "systemctl is-active etcd || true").trim(),
            "inactive",
            "{host}'s etcd is stopped"
        );
    }
    assert_eq!(leader(&sb, "pg1"), first_leader, "the leader never changed");
    assert_eq!(patroni_members(&sb, "pg3").len(), 3);
    sb.assert_converged();
}

/// A member that leaves the inventory while its Patroni still runs (nothing stopped it: pgha
/// does not reach a host outside the inventory): its Patroni would renew its member key, so
/// plan refuses at once (it still streams from the leader), says what to do and touches
/// nothing. Once the host is named under `decommission:`, apply stops it there and finishes
/// the removal.
#[test]
fn a_running_patroni_member_that_leaves_is_named_in_plan() {
    let sb = Sandbox::patroni("etcdrun", 3);
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let first_leader = leader(&sb, "pg1");

    sb.edit_inventory(&sb.host_entry("pg3"), "");
    sb.edit_inventory("members: [pg1, pg2, pg3]", "members: [pg1, pg2]");
    // Its Patroni still runs (it streams from the leader): the plan says so at once, and a
    // refused plan touches nothing (its etcd member stays too).
    for command in [&["plan"][..], &["apply", "-y"][..]] {
        let refused = sb.pgha(command).status(1).run();
        let text = format!("{}{}", refused.stdout, refused.stderr);
        assert!(
            text.contains("pg3 left the inventory but still streams from here as a Patroni member")
                && text.contains("name it under `decommission:`"),
            "{command:?}: {text}"
        );
    }
    assert_eq!(
        etcd_members(&sb, "pg1"),
        ["pg1", "pg2", "pg3"],
        "nothing touched"
    );

    // Named under `decommission:` with wipe_data, its Patroni then etcd are stopped for good
    // and their data deleted before the staying hosts go on forgetting it.
    sb.edit_inventory(
        "\nhosts:\n",
        &format!(
            "\ndecommission:\n  - name: pg3\n    address: {}\n    wipe_data: true\n\nhosts:\n",
            sb.ip("pg3")
        ),
    );
    sb.pgha(["plan"])
        .stdout_has("pg3 (leaving the cluster: decommission)")
        .stdout_has("stop patroni@15-main")
        .stdout_has("destroy /var/lib/etcd/pgha-")
        .run();
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let left = sb.sh(
        "pg3",
        "systemctl is-active patroni@15-main etcd; ls -A /var/lib/etcd/pgha-*/ | wc -l",
    );
    assert_eq!(
        left.split_whitespace().collect::<Vec<_>>(),
        ["inactive", "inactive", "0"],
        "stopped, its etcd data deleted: {left}"
    );
    assert_eq!(
        patroni_members(&sb, "pg2")
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["pg1", "pg2"]
    );
    assert_eq!(
        leader(&sb, "pg2"),
        first_leader,
        "the leader did not change"
    );
    sb.assert_converged();
}

/// A dedicated etcd host (`role: etcd`) takes the place of a co-located member in one apply:
/// pg3 leaves `patroni.etcd.members` (it stays a data host: its etcd is stopped, its data kept
/// aside), then pg4 joins. Three members throughout but for the moment between.
#[test]
fn a_dedicated_etcd_host_takes_a_co_located_member_s_place() {
    let sb = Sandbox::patroni("etcdhost", 4);
    // An etcd host is there to run a member: it comes with its membership.
    let pg4 = sb.host_entry("pg4");
    sb.edit_inventory(&pg4, "");
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let first_leader = leader(&sb, "pg1");

    let pg3 = sb.host_entry("pg3");
    sb.edit_inventory(
        &pg3,
        &format!("{pg3}{}", pg4.replace("role: standby", "role: etcd")),
    );
    sb.edit_inventory("members: [pg1, pg2, pg3]", "members: [pg1, pg2, pg4]");
    sb.pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("pg3 is not in patroni.etcd.members: its etcd member is removed through pg1 (2 voting members stay, quorum 2)")
        .stdout_has("stop etcd on pg3 (etcd retired)")
        .stdout_has("create etcd member pg4 (etcd member joined) — pg4 joins the etcd cluster of")
        .run();
    let started = Instant::now();
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    eprintln!(
        "moving an etcd member from pg3 to the etcd host pg4 took {:.1} s (apply with its verify)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(etcd_members(&sb, "pg4"), ["pg1", "pg2", "pg4"]);
    assert!(etcd_all_healthy(&sb, "pg1"));
    assert_eq!(
        sb.sh("pg3", "systemctl is-active etcd || true").trim(),
        "inactive"
    );
    assert_eq!(
        leader(&sb, "pg3"),
        first_leader,
        "the leader did not change"
    );
    sb.assert_converged();
}
