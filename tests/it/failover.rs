//! The streaming flavour's failover decision on fixture facts: which standby is promoted,
//! which picks are refused, and why.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use pgha::facts::{HostFacts, PgFacts};
use pgha::flavours::{ClusterView, Failover};
use pgha::inventory::load_str;
use pgha::model::Topology;
use pgha::transport::fake::FakeTransport;
use pgha::transport::{Connections, Transport};

fn standby(received: &str) -> HostFacts {
    HostFacts {
        postgres: Some(PgFacts {
            initialized: true,
            running: true,
            in_recovery: true,
            received_lsn: received.into(),
            ..PgFacts::default()
        }),
        ..HostFacts::default()
    }
}

/// `choose` over pg1 (primary, in the state given) and the standbys pg2 and pg3.
fn decide(
    pg1: Option<HostFacts>,
    pg2: &str,
    pg3: Option<&str>,
    to: Option<&str>,
) -> Result<Failover, String> {
    let inv = load_str(
        Path::new("t.yml"),
        "cluster: {name: t, flavour: streaming}\npostgres: {version: 15, superuser_password: {env: X}}\nreplication: {user: replicator, password: {env: X}}\nhosts:\n  - {name: pg1, address: 10.0.0.1, role: primary}\n  - {name: pg2, address: 10.0.0.2, role: standby}\n  - {name: pg3, address: 10.0.0.3, role: standby}\n",
    )
    .expect("loads");
    let topology = Topology::declared(&inv.cluster);
    let mut facts = BTreeMap::new();
    let mut transports = Connections::new();
    let mut unreachable = BTreeMap::new();
    match pg1 {
        Some(f) => {
            facts.insert("pg1".to_owned(), f);
            transports.insert(
                "pg1".to_owned(),
                Arc::new(FakeTransport::new("pg1")) as Arc<dyn Transport>,
            );
        }
        None => {
            unreachable.insert("pg1".to_owned(), "connect timeout".to_owned());
        }
    }
    facts.insert("pg2".to_owned(), standby(pg2));
    match pg3 {
        Some(at) => {
            facts.insert("pg3".to_owned(), standby(at));
        }
        None => {
            unreachable.insert("pg3".to_owned(), "no route to host".to_owned());
        }
    }
    let view = ClusterView {
        cluster: &inv.cluster,
        topology: &topology,
        facts: &facts,
        transports: &transports,
        queries: &BTreeMap::new(),
        unreachable: &unreachable,
    };
    inv.flavour
        .failover_choice(&view, to)
        .map_err(|e| e.to_string())
}

#[test]
fn the_standby_with_the_most_wal_is_promoted() {
    let f = decide(None, "0/5000000", Some("0/5000100"), None).expect("chosen");
    assert_eq!(
        (f.target.as_str(), f.received.as_str()),
        ("pg3", "0/5000100")
    );
    assert!(!f.fence, "pg1 is not reached: nothing to fence");
    assert!(f
        .notes
        .iter()
        .any(|n| n.contains("pg2 has received up to 0/5000000")));
}

#[test]
fn a_pick_behind_another_standby_is_refused_and_the_better_one_named() {
    let err = decide(None, "0/5000000", Some("0/5000100"), Some("pg2")).expect_err("behind");
    assert!(
        err.contains("pg3 up to 0/5000100 (256 bytes more)"),
        "{err}"
    );
    let ok = decide(None, "0/5000100", Some("0/5000100"), Some("pg3")).expect("equal is fine");
    assert_eq!(ok.target, "pg3");
}

#[test]
fn a_primary_that_answers_is_a_switchover_not_a_failover() {
    let running = HostFacts {
        postgres: Some(PgFacts {
            initialized: true,
            running: true,
            ..PgFacts::default()
        }),
        ..HostFacts::default()
    };
    let err = decide(Some(running), "0/5000000", Some("0/5000000"), None).expect_err("runs");
    assert!(err.contains("pg1 answers as the primary"), "{err}");
    // Its host answers but PostgreSQL is down: it is fenced.
    let stopped = HostFacts {
        postgres: Some(PgFacts {
            initialized: true,
            ..PgFacts::default()
        }),
        ..HostFacts::default()
    };
    assert!(
        decide(Some(stopped), "0/5000000", Some("0/5000000"), None)
            .expect("chosen")
            .fence
    );
}

#[test]
fn a_standby_not_reached_is_named_as_a_risk() {
    let f = decide(None, "0/5000000", None, None).expect("chosen");
    assert_eq!(f.target, "pg2");
    assert!(
        f.notes
            .iter()
            .any(|n| n.contains("pg3 was not reached") && n.contains("may have received more")),
        "{:?}",
        f.notes
    );
    let err = decide(None, "0/5000000", None, Some("pg3")).expect_err("unreached");
    assert!(
        err.contains("pg3 is not a running standby that was reached"),
        "{err}"
    );
}

/// The repmgr flavour: pg1 gone, pg2 and pg3 standbys whose repmgrd is in `state`.
fn decide_repmgr(failover: &str, repmgrd: &str) -> Result<Failover, String> {
    let inv = load_str(
        Path::new("t.yml"),
        &format!("cluster: {{name: t, flavour: repmgr}}\npostgres: {{version: 15, superuser_password: {{env: X}}}}\nreplication: {{user: replicator, password: {{env: X}}}}\nrepmgr: {{password: {{env: X}}, failover: {failover}}}\nhosts:\n  - {{name: pg1, address: 10.0.0.1, role: primary}}\n  - {{name: pg2, address: 10.0.0.2, role: standby}}\n  - {{name: pg3, address: 10.0.0.3, role: standby}}\n  - {{name: w, address: 10.0.0.4, role: witness}}\n"),
    )
    .expect("loads");
    let topology = Topology::declared(&inv.cluster);
    let probe = |running: bool, paused: bool| {
        vec![format!(
            "{{\"nodes\": [], \"repmgrd\": {running}, \"paused\": {paused}}}"
        )]
    };
    let mut facts = BTreeMap::new();
    for (h, at) in [("pg2", "0/5000000"), ("pg3", "0/5000100")] {
        let mut f = standby(at);
        match repmgrd {
            "watching" => f.probes.insert("repmgr".into(), probe(true, false)),
            "paused" => f.probes.insert("repmgr".into(), probe(true, true)),
            _ => f.probes.insert("repmgr".into(), probe(false, false)),
        };
        facts.insert(h.to_owned(), f);
    }
    let unreachable = BTreeMap::from([("pg1".to_owned(), "connect timeout".to_owned())]);
    let view = ClusterView {
        cluster: &inv.cluster,
        topology: &topology,
        facts: &facts,
        transports: &Connections::new(),
        queries: &BTreeMap::new(),
        unreachable: &unreachable,
    };
    inv.flavour
        .failover_choice(&view, None)
        .map_err(|e| e.to_string())
}

/// Under repmgr, pgha promotes only where repmgrd will not: two promoters racing make two
/// primaries.
#[test]
fn repmgr_failover_is_refused_while_repmgrd_watches() {
    let refused = decide_repmgr("automatic", "watching").expect_err("refused");
    assert!(
        refused.contains("repmgrd watches the primary on pg2, pg3")
            && refused.contains("repmgr service pause"),
        "{refused}"
    );
    for (failover, state) in [
        ("automatic", "paused"),
        ("automatic", "stopped"),
        ("manual", "watching"),
    ] {
        let chosen =
            decide_repmgr(failover, state).unwrap_or_else(|e| panic!("{failover}/{state}: {e}"));
        assert_eq!(chosen.target, "pg3", "{failover}/{state}: the most WAL");
        assert!(!chosen.fence, "pg1 is not reached: nothing to fence");
    }
}
