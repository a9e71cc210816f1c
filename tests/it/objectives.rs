//! `objectives:` through the library: what each way of routing adds to the derivation, the
//! expected worst case a drill compares with, and the plan's notes.

use std::path::Path;
use std::time::Duration;

use pgha::inventory::{load_str, Inventory};

const PATRONI: &str = "patroni:\n  etcd: {members: [pg1, pg2, pg3]}\n  rewind: {password: {env: X}}\n  restapi_auth: {password: {env: X}}\n";

fn inventory(flavour: &str, tail: &str) -> Inventory {
    let section = match flavour {
        "patroni" => PATRONI,
        "repmgr" => "repmgr: {password: {env: X}}\n",
        _ => "",
    };
    let text = format!(
        "cluster: {{name: t, flavour: {flavour}}}\npostgres: {{version: 15, listen_addresses: \"*\", superuser_password: {{env: X}}}}\nreplication: {{user: replicator, password: {{env: X}}}}\nhosts:\n  - {{name: pg1, address: 10.0.0.1, role: primary}}\n  - {{name: pg2, address: 10.0.0.2, role: standby}}\n  - {{name: pg3, address: 10.0.0.3, role: standby}}\n{section}{tail}"
    );
    match load_str(Path::new("t.yml"), &text) {
        Ok(i) => i,
        Err(e) => panic!("{e}\n{text}"),
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn each_route_counts_its_own_delay() {
    for (routing, route, worst) in [
        ("", 0, 27),
        ("routing:\n  vip: {address: 10.0.0.100/24}\n", 1, 27),
        ("routing:\n  haproxy: {hosts: [pg1]}\n", 1, 27),
        (
            "routing:\n  vip: {address: 10.0.0.100/24, mode: keepalived}\n  keepalived: {virtual_router_id: 9, password: {env: V}}\n",
            5,
            29,
        ),
    ] {
        let inv = inventory("patroni", &format!("objectives: {{rto: 30s}}\n{routing}"));
        let e = inv.expected_failover().expect("Patroni fails over on its own");
        assert_eq!(e.route, secs(route), "{routing}");
        assert_eq!(e.declared_rto, Some(secs(30)));
        assert_eq!(e.worst_case, e.detection + e.promotion + e.route);
        assert!(e.worst_case <= secs(30), "{routing}: {e:?}");
        assert_eq!(e.worst_case, secs(worst), "{routing}: {e:?}");
    }
}

#[test]
fn without_objectives_the_defaults_have_an_expected_worst_case_too() {
    let inv = inventory("patroni", "routing:\n  haproxy: {hosts: [pg1]}\n");
    let e = inv.expected_failover().expect("expected");
    assert_eq!(e.declared_rto, None);
    // ttl 20 + loop_wait 10 + ~3 s + haproxy 1 s × 2.
    assert_eq!(e.worst_case, secs(35));
    assert_eq!(e.settings, "Patroni ttl 20, loop_wait 10, retry_timeout 5");
    assert!(inv.objective_notes.is_empty());
    // repmgr's defaults: 27 s of detection; streaming: a person fails over.
    let inv = inventory("repmgr", "");
    assert_eq!(
        inv.expected_failover().map(|e| e.worst_case),
        Some(secs(30))
    );
    assert!(inventory("streaming", "").expected_failover().is_none());
}

#[test]
fn the_notes_say_what_the_objectives_derived() {
    let inv = inventory(
        "patroni",
        "objectives: {rto: 60s, rpo: 16MB}\nrouting:\n  haproxy: {hosts: [pg1]}\n",
    );
    assert_eq!(
        inv.objective_notes[0],
        "objectives: rto 60s → Patroni ttl 30, loop_wait 10, retry_timeout 10; haproxy checks every 1 s, out after 2; expected worst case ≈ 45 s (detection 40 s + promotion ~3 s + route 2 s)"
    );
    assert!(
        inv.objective_notes[1]
            .starts_with("objectives: rpo 16MB → maximum_lag_on_failover: 16777216"),
        "{:?}",
        inv.objective_notes
    );
    let inv = inventory("repmgr", "objectives: {rto: 25s}\n");
    assert_eq!(
        inv.objective_notes,
        vec!["objectives: rto 25s → repmgr monitor_interval_secs 2, reconnect_attempts 4, reconnect_interval 2 (connect_timeout 2); no route configured; expected worst case ≈ 21 s (detection 18 s + promotion ~3 s + route 0 s)".to_owned()]
    );
}
