//! The facts parser against output captured from real hosts (`pgha facts --raw` on sandbox
//! hosts, secrets withheld): a streaming primary and its standby, that standby stopped, a
//! Patroni leader and replica, and a dedicated etcd host. Then `pgha facts` end to end.

use std::collections::{BTreeMap, BTreeSet};

use pgha::facts::gather::{parse, scrub, WITHHELD};
use pgha::facts::HostFacts;
use pgha::flavours::patroni::probes::{EtcdFact, PatroniFact};

use crate::cluster::{Options, Sandbox};
use crate::support::root;

/// The streaming sandbox's addresses when the fixtures were captured.
const PRIMARY: &str = "10.77.192.11";
const STANDBY: &str = "10.77.192.12";
/// The Patroni sandbox's (pg3 is the dedicated etcd host).
const LEADER: &str = "10.77.121.11";
const REPLICA: &str = "10.77.121.12";
const ETCD: &str = "10.77.121.13";

const PGPASS: &str = "/var/lib/postgresql/.pgpass";
const PATRONI_YML: &str = "/etc/patroni/15-main.yml";

fn text(name: &str) -> String {
    let path = root().join(format!("tests/fixtures/facts/{name}.txt"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[track_caller]
fn fixture(name: &str) -> HostFacts {
    parse(name, &text(name)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_fixture_parses_and_holds_no_secret() {
    let dir = root().join("tests/fixtures/facts");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixture folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .map(|p| p.file_stem().expect("name").to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "etcd_member",
            "patroni_leader",
            "patroni_replica",
            "stopped_standby",
            "streaming_primary",
            "streaming_standby"
        ]
    );
    let secret_files = BTreeSet::from([PGPASS.to_owned(), PATRONI_YML.to_owned()]);
    for name in &names {
        let raw = text(name);
        assert!(raw.ends_with("@@pgha end\n"), "{name}: whole output");
        assert!(!raw.contains("SCRAM-SHA-256"), "{name}: a verifier is kept");
        assert_eq!(scrub(&raw, &secret_files), raw, "{name}: scrubbed already");
        let f = fixture(name);
        for path in &secret_files {
            if let Some(file) = f.files.get(path) {
                assert_eq!(file.content, WITHHELD, "{name}: {path}");
            }
        }
        for (role, r) in f.postgres.iter().flat_map(|p| &p.roles) {
            assert!(
                matches!(r.password_verifier.as_deref(), None | Some(WITHHELD)),
                "{name}: the verifier of {role}"
            );
        }
    }
}

#[test]
fn a_streaming_primary_with_its_standby_streaming() {
    let primary = fixture("streaming_primary");
    let standby = fixture("streaming_standby");
    let p = primary.postgres.as_ref().expect("postgres on the primary");
    let s = standby.postgres.as_ref().expect("postgres on the standby");
    assert!(p.running && !p.in_recovery && !p.standby_signal && !p.is_replica());
    assert!(s.running && s.in_recovery && s.standby_signal && s.is_replica());
    assert_eq!(p.system_identifier, s.system_identifier, "one cluster");
    assert_eq!((p.timeline, s.timeline), (1, 1));
    let [r] = p.replication.as_slice() else {
        panic!("one downstream: {:?}", p.replication);
    };
    assert_eq!(
        (
            r.application_name.as_str(),
            r.client_addr.as_str(),
            r.state.as_str(),
            r.sync_state.as_str()
        ),
        ("pg2", STANDBY, "streaming", "async")
    );
    assert!(p.slots["pgha_pg2"].active && p.slots["pgha_pg2"].physical);
    assert!(p.wal_receiver.is_none() && s.replication.is_empty());
    let w = s
        .wal_receiver
        .as_ref()
        .expect("a WAL receiver on the standby");
    assert_eq!(
        (
            w.status.as_str(),
            w.sender_host.as_str(),
            w.slot_name.as_str()
        ),
        ("streaming", PRIMARY, "pgha_pg2")
    );
    // The standby follows the address its own settings file names.
    let conninfo = &standby.files["/etc/postgresql/15/main/conf.d/pgha-standby.conf"];
    assert!(
        conninfo.content.contains(&format!("host={PRIMARY} ")),
        "{}",
        conninfo.content
    );
    assert!(!primary
        .files
        .contains_key("/etc/postgresql/15/main/conf.d/pgha-standby.conf"));
    // Settings in their base unit (8 kB pages), the same on both.
    assert_eq!(p.settings["shared_buffers"].value, "16384");
    assert_eq!(p.settings["shared_buffers"], s.settings["shared_buffers"]);
    assert_eq!(p.settings["listen_addresses"].value, "*");
    assert!(p.file_errors.is_empty());
    assert_eq!(p.databases["appdb"].owner, "app");
    assert_eq!(
        s.databases["appdb"].extensions,
        ["plpgsql", "pg_stat_statements"]
    );
    let replicator = &p.roles["replicator"];
    assert!(replicator.login && replicator.replication && !replicator.superuser);
    // A file's owner, group and mode as stat printed them.
    let pgpass = &standby.files[PGPASS];
    assert_eq!(
        (
            pgpass.owner.as_str(),
            pgpass.group.as_str(),
            pgpass.mode.as_str()
        ),
        ("postgres", "postgres", "0600")
    );
    let createcluster = &primary.files["/etc/postgresql-common/createcluster.conf"];
    assert_eq!(
        (createcluster.owner.as_str(), createcluster.mode.as_str()),
        ("root", "0644")
    );
    assert!(createcluster.content.starts_with("# Managed by pgha"));
    assert!(primary.probes.is_empty(), "no flavour probe for streaming");
}

#[test]
fn a_stopped_standby_is_read_from_pg_controldata() {
    let f = fixture("stopped_standby");
    let running = fixture("streaming_standby");
    let svc = &f.services["postgresql@15-main"];
    assert!(!svc.active && svc.enabled, "stopped, still enabled");
    let pg = f.postgres.as_ref().expect("a data directory");
    assert!(pg.initialized && !pg.running && pg.in_recovery && pg.standby_signal);
    assert!(pg.is_replica(), "it starts as a standby");
    assert_eq!(
        (pg.system_identifier.as_str(), pg.timeline),
        (
            running
                .postgres
                .as_ref()
                .expect("postgres")
                .system_identifier
                .as_str(),
            1
        )
    );
    assert!(pg.settings.is_empty() && pg.roles.is_empty() && pg.wal_receiver.is_none());
    assert_eq!(
        f.files.keys().collect::<Vec<_>>(),
        running.files.keys().collect::<Vec<_>>()
    );
    assert_eq!(f.packages, running.packages);
}

#[test]
fn a_patroni_leader_and_its_replica() {
    let leader = fixture("patroni_leader");
    let replica = fixture("patroni_replica");
    let l = PatroniFact::of(&leader).expect("Patroni answers on the leader");
    let r = PatroniFact::of(&replica).expect("Patroni answers on the replica");
    assert!(l.is_leader() && !r.is_leader());
    assert_eq!(
        (l.state.as_str(), l.role.as_str(), l.timeline),
        ("running", "master", 1)
    );
    assert_eq!(
        (r.state.as_str(), r.role.as_str(), r.timeline),
        ("running", "replica", 1)
    );
    assert!(!l.pending_restart && !r.pending_restart);
    let dcs = l.dcs.as_ref().expect("the DCS configuration on the leader");
    assert_eq!(
        (dcs["ttl"].as_u64(), dcs["loop_wait"].as_u64()),
        (Some(20), Some(10))
    );
    assert_eq!(dcs["postgresql"]["use_slots"], true);
    assert_eq!(
        dcs["postgresql"]["parameters"]["shared_buffers"].as_str(),
        Some("128MB")
    );
    assert_eq!(r.dcs.as_ref(), Some(dcs), "one configuration in the DCS");
    // PostgreSQL's own view agrees with Patroni's.
    let lp = leader.postgres.as_ref().expect("postgres on the leader");
    let rp = replica.postgres.as_ref().expect("postgres on the replica");
    assert!(lp.running && !lp.in_recovery && rp.running && rp.in_recovery);
    assert_eq!(lp.replication[0].client_addr, REPLICA);
    assert_eq!(lp.replication[0].state, "streaming");
    let w = rp.wal_receiver.as_ref().expect("WAL receiver");
    assert_eq!(
        (
            w.status.as_str(),
            w.sender_host.as_str(),
            w.slot_name.as_str()
        ),
        ("streaming", LEADER, "pg2")
    );
    assert!(lp.roles.contains_key("rewind"));
    // Patroni runs PostgreSQL: Debian's unit is off; the config holds passwords (0600).
    for f in [&leader, &replica] {
        let patroni = &f.services["patroni@15-main"];
        let debian = &f.services["postgresql@15-main"];
        assert!(patroni.active && patroni.enabled && !debian.active && !debian.enabled);
        assert_eq!(f.present, ["/var/lib/pgha/debian-cluster-disabled"]);
        let yml = &f.files[PATRONI_YML];
        assert_eq!(
            (yml.owner.as_str(), yml.mode.as_str(), yml.content.as_str()),
            ("postgres", "0600", WITHHELD)
        );
        assert_eq!(EtcdFact::of(f), None, "no etcd member here");
    }
}

#[test]
fn a_dedicated_etcd_member_healthy_and_leading() {
    let f = fixture("etcd_member");
    let etcd = EtcdFact::of(&f).expect("the etcd probe ran");
    assert_eq!((etcd.healthy, etcd.leader), (true, Some(true)));
    assert!(f.services["etcd"].active && f.services["etcd"].enabled);
    assert_eq!(PatroniFact::of(&f), None, "no Patroni asked");
    assert!(f.postgres.is_none(), "no PostgreSQL data here");
    let default = &f.files["/etc/default/etcd"];
    assert_eq!(
        (default.owner.as_str(), default.mode.as_str()),
        ("root", "0644")
    );
    assert!(
        default.content.contains("ETCD_NAME=\"pg3\""),
        "{}",
        default.content
    );
    assert!(default
        .content
        .contains(&format!("ETCD_INITIAL_CLUSTER=\"pg3=http://{ETCD}:2380\"")));
}

/// `pgha facts` on real hosts: the raw output is what `parse` reads, each host after
/// `=== HOST`; the password file and a stored verifier are withheld in both modes.
#[test]
fn facts_of_sandbox_hosts_withhold_secrets() {
    let sb = Sandbox::up("facts", Options::packaged(2));
    let password = sb.env_value("PGHA_REPLICATION_PASSWORD");
    // What apply writes: the password in the password file and as a role's verifier.
    sb.sh(
        "pg1",
        &format!(
            "printf '%s\\n' '*:5432:replication:replicator:{password}' >{PGPASS} && chown postgres:postgres {PGPASS} && chmod 600 {PGPASS}"
        ),
    );
    sb.psql(
        "pg1",
        &format!("CREATE ROLE replicator LOGIN REPLICATION PASSWORD '{password}'"),
    );
    let raw = sb.pgha(["facts", "--raw"]).run().stdout;
    assert!(raw.starts_with("=== pg1\n"), "{raw}");
    let (pg1, pg2) = raw
        .strip_prefix("=== pg1\n")
        .and_then(|r| r.split_once("=== pg2\n"))
        .expect("both hosts, in order");
    assert!(!raw.contains("SCRAM-SHA-256"), "{raw}");
    let f = parse("pg1", pg1).expect("the raw output parses");
    assert!(parse("pg2", pg2).is_ok());
    let file = &f.files[PGPASS];
    assert_eq!(
        (file.content.as_str(), file.mode.as_str()),
        (WITHHELD, "0600")
    );
    let pg = f.postgres.as_ref().expect("the packaged cluster runs");
    assert!(pg.running && !pg.in_recovery);
    assert_eq!(
        pg.roles["replicator"].password_verifier.as_deref(),
        Some(WITHHELD)
    );

    let json = sb.pgha(["facts", "-l", "pg1"]).run().stdout;
    assert!(!json.contains("SCRAM-SHA-256"), "{json}");
    let hosts: BTreeMap<String, HostFacts> = serde_json::from_str(&json).expect("JSON");
    assert_eq!(hosts.keys().collect::<Vec<_>>(), ["pg1"]);
    assert_eq!(hosts["pg1"].files, f.files);
    assert_eq!(
        hosts["pg1"].postgres.as_ref().expect("postgres").roles,
        pg.roles
    );
    sb.pgha(["facts", "-l", "pg9"])
        .status(1)
        .stderr_has("--limit pg9")
        .run();
}
