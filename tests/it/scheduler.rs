//! The apply engine, the cluster lock and the switchover procedures on fake hosts: ordering
//! across hosts (`after:`), `throttle`, handlers (coalesced, flushed, the primary's last), a
//! failed dependency stopping its waiters, `--limit`, facts read again after a change.
//! Commands are recorded in one journal over every host, so order and overlap are asserted
//! on sequence numbers, not on timing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgha::apply::lock::{self, LockError, LockInfo, CORRUPT, LOCK_PATH};
use pgha::apply::{self, Event, Observer, Recap};
use pgha::facts::collect::gather_all;
use pgha::model::{Secrets, Topology};
use pgha::plan::query::query_for;
use pgha::project::Project;
use pgha::session::Session;
use pgha::transport::fake::{Entry, FakeTransport, Journal};
use pgha::transport::{Connections, Output, Transport};

/// Events as apply reports them.
#[derive(Default)]
struct Events(Mutex<Vec<Event>>);

impl Observer for Events {
    fn event(&self, event: Event) {
        if let Ok(mut e) = self.0.lock() {
            e.push(event);
        }
    }
}

impl Events {
    fn all(&self) -> Vec<Event> {
        self.0.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    session: Session,
    journal: Journal,
    hosts: BTreeMap<String, Arc<FakeTransport>>,
}

/// Hosts `(name, role, upstream)`; each fake host's commands take `delay`.
struct Spec<'a> {
    hosts: &'a [(&'a str, &'a str, Option<&'a str>)],
    playbook: &'a str,
    existing: &'a [&'a str],
    delay_ms: u64,
    /// Scripted replies: (host, needle, status, stdout).
    replies: &'a [(&'a str, &'a str, i32, &'a str)],
    /// The Patroni section, for a Patroni cluster.
    patroni: Option<&'a str>,
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Spec {
            hosts: &[
                ("pg1", "primary", None),
                ("pg2", "standby", None),
                ("pg3", "standby", None),
            ],
            playbook: "",
            existing: &[],
            delay_ms: 0,
            replies: &[],
            patroni: None,
        }
    }
}

fn rig(spec: Spec<'_>) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let flavour = if spec.patroni.is_some() {
        "patroni"
    } else {
        "streaming"
    };
    let mut inventory = format!(
        "cluster: {{name: t, flavour: {flavour}}}\npostgres: {{version: 15, superuser_password: {{env: X}}}}\nreplication: {{user: replicator, password: {{env: X}}}}\n{}\nhosts:\n",
        spec.patroni.unwrap_or_default()
    );
    for (i, (name, role, upstream)) in spec.hosts.iter().enumerate() {
        inventory.push_str(&format!(
            "  - {{name: {name}, address: 10.0.0.{}, role: {role}{}}}\n",
            i + 1,
            upstream
                .map(|u| format!(", upstream: {u}"))
                .unwrap_or_default()
        ));
    }
    let path = dir.path().join("inventory.yml");
    std::fs::write(&path, inventory).expect("inventory");
    let playbooks = dir.path().join("playbooks");
    std::fs::create_dir(&playbooks).expect("playbooks");
    std::fs::write(playbooks.join(format!("{flavour}.yml")), spec.playbook).expect("playbook");
    let project = Project::load(&path, Some(&playbooks), None).expect("project loads");
    let journal = Journal::new();
    let mut hosts = BTreeMap::new();
    let mut transports: Connections = BTreeMap::new();
    for (name, _, _) in spec.hosts {
        let mut fake = FakeTransport::new(name)
            .modelled(spec.existing)
            .journal(&journal)
            .delay(Duration::from_millis(spec.delay_ms));
        for (host, needle, status, stdout) in spec.replies {
            if host == name {
                fake = fake.reply(
                    needle,
                    Output {
                        status: *status,
                        stdout: (*stdout).to_owned(),
                        stderr: format!("{needle} failed"),
                    },
                );
            }
        }
        let fake = Arc::new(fake);
        transports.insert((*name).to_owned(), fake.clone() as Arc<dyn Transport>);
        hosts.insert((*name).to_owned(), fake);
    }
    let declared = project.expand_declared().expect("expands");
    let queries = query_for(
        &project.cluster,
        project.flavour.as_ref(),
        &project.components,
        &[&declared],
    );
    let runtime = runtime();
    let (facts, unreachable) = runtime.block_on(gather_all(&transports, &queries));
    assert!(unreachable.is_empty(), "fake facts: {unreachable:?}");
    let session = Session {
        project,
        secrets: Secrets::default(),
        transports,
        queries,
        facts,
        limit: None,
        unreachable,
        read_outside_limit: BTreeMap::new(),
        forks: 8,
        leaving: BTreeMap::new(),
        leaving_transports: Default::default(),
    };
    Rig {
        _dir: dir,
        session,
        journal,
        hosts,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

impl Rig {
    fn apply(&mut self) -> (BTreeMap<String, Recap>, Vec<Event>) {
        let events = Events::default();
        let topology = Topology::declared(&self.session.project.cluster);
        let recaps = runtime()
            .block_on(apply::run(
                &mut self.session,
                &topology,
                &events,
                &apply::Stop::default(),
            ))
            .expect("apply runs");
        (recaps, events.all())
    }

    /// The journal's step commands (the facts script and its re-reads left out).
    fn steps(&self) -> Vec<Entry> {
        self.journal
            .entries()
            .into_iter()
            .filter(|e| !e.command.contains("@@pgha"))
            .collect()
    }

    fn one(&self, host: &str, needle: &str) -> Entry {
        let found: Vec<Entry> = self
            .steps()
            .into_iter()
            .filter(|e| e.host == host && e.command.contains(needle))
            .collect();
        assert_eq!(found.len(), 1, "{host} ran {needle} {} times", found.len());
        found[0].clone()
    }

    /// Every host's runs of the step commands with `needle`.
    fn runs(&self, needle: &str) -> Vec<Entry> {
        self.steps()
            .into_iter()
            .filter(|e| e.command.contains(needle))
            .collect()
    }

    fn count(&self, host: &str, needle: &str) -> usize {
        self.steps()
            .iter()
            .filter(|e| e.host == host && e.command.contains(needle))
            .count()
    }
}

/// A step that touches `/done/NAME`, guarded by it.
fn step(name: &str, extra: &str) -> String {
    format!("  - name: {name}\n    command: {{run: \"touch /done/{name}\", creates: /done/{name}}}\n{extra}")
}

fn playbook(steps: &[String], handlers: &str) -> String {
    format!("steps:\n{}{handlers}", steps.concat())
}

const HANDLER: &str = "handlers:\n  - name: h\n    command: {run: \"echo handled\"}\n";

#[test]
fn steps_run_in_playbook_order_on_each_host() {
    let pb = playbook(&[step("a", ""), step("b", ""), step("c", "")], "");
    let mut r = rig(Spec {
        playbook: &pb,
        ..Spec::default()
    });
    let (recaps, _) = r.apply();
    for host in ["pg1", "pg2", "pg3"] {
        let (a, b, c) = (
            r.one(host, "/done/a"),
            r.one(host, "/done/b"),
            r.one(host, "/done/c"),
        );
        assert!(
            a.ended < b.started && b.ended < c.started,
            "{host}: {a:?} {b:?} {c:?}"
        );
        assert_eq!(recaps[host].changed, 3);
        assert!(r.hosts[host].has("/done/c"));
    }
}

#[test]
fn hosts_run_side_by_side() {
    let pb = playbook(&[step("a", "")], "");
    let mut r = rig(Spec {
        playbook: &pb,
        delay_ms: 30,
        ..Spec::default()
    });
    r.apply();
    let runs: Vec<Entry> = ["pg1", "pg2", "pg3"]
        .iter()
        .map(|h| r.one(h, "/done/a"))
        .collect();
    let overlap = runs.iter().any(|x| {
        runs.iter()
            .any(|y| x.host != y.host && x.started < y.ended && y.started < x.ended)
    });
    assert!(overlap, "the hosts ran one after another: {runs:?}");
}

#[test]
fn after_upstream_orders_a_cascade() {
    let pb = playbook(
        &[
            step(
                "clone",
                "    when: \"host.role == 'standby'\"\n    after: {host: upstream, step: slots}\n",
            ),
            step("slots", ""),
        ],
        "",
    );
    let mut r = rig(Spec {
        hosts: &[
            ("pg1", "primary", None),
            ("pg2", "standby", None),
            ("pg3", "standby", Some("pg2")),
        ],
        playbook: &pb,
        delay_ms: 5,
        ..Spec::default()
    });
    r.apply();
    let pg1_slots = r.one("pg1", "/done/slots");
    let pg2_clone = r.one("pg2", "/done/clone");
    let pg2_slots = r.one("pg2", "/done/slots");
    let pg3_clone = r.one("pg3", "/done/clone");
    assert!(
        pg1_slots.ended < pg2_clone.started,
        "pg2 clones after pg1's slots"
    );
    assert!(
        pg2_slots.ended < pg3_clone.started,
        "pg3 clones after pg2's slots"
    );
}

#[test]
fn after_primary_waits_for_the_primary() {
    let pb = join_after_start();
    let mut r = rig(Spec {
        playbook: &pb,
        delay_ms: 5,
        ..Spec::default()
    });
    r.apply();
    let start = r.one("pg1", "/done/start");
    for h in ["pg2", "pg3"] {
        assert!(
            start.ended < r.one(h, "/done/join").started,
            "{h} joined early"
        );
    }
}

/// Standbys join once the primary has started.
fn join_after_start() -> String {
    playbook(
        &[
            step(
                "join",
                "    when: \"host.role == 'standby'\"\n    after: {host: primary, step: start}\n",
            ),
            step("start", ""),
        ],
        "",
    )
}

fn max_concurrency(runs: &[Entry]) -> usize {
    runs.iter()
        .map(|x| {
            runs.iter()
                .filter(|y| y.started <= x.started && x.started < y.ended)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn throttle_one_runs_the_hosts_one_at_a_time() {
    let pb = playbook(&[step("restart", "    throttle: 1\n")], "");
    let mut r = rig(Spec {
        playbook: &pb,
        delay_ms: 20,
        ..Spec::default()
    });
    r.apply();
    let runs = r.runs("/done/restart");
    assert_eq!(runs.len(), 3);
    assert_eq!(max_concurrency(&runs), 1, "{runs:?}");
}

#[test]
fn throttle_two_allows_two_at_once_and_no_more() {
    let pb = playbook(&[step("restart", "    throttle: 2\n")], "");
    let mut r = rig(Spec {
        hosts: &[
            ("pg1", "primary", None),
            ("pg2", "standby", None),
            ("pg3", "standby", None),
            ("pg4", "standby", None),
        ],
        playbook: &pb,
        delay_ms: 20,
        ..Spec::default()
    });
    r.apply();
    let runs = r.runs("/done/restart");
    assert_eq!(runs.len(), 4);
    assert_eq!(max_concurrency(&runs), 2, "{runs:?}");
}

#[test]
fn a_handler_notified_twice_runs_once() {
    let pb = playbook(
        &[
            step("a", "    notify: [h]\n"),
            step("b", "    notify: [h]\n"),
        ],
        HANDLER,
    );
    let mut r = rig(Spec {
        playbook: &pb,
        ..Spec::default()
    });
    r.apply();
    for h in ["pg1", "pg2", "pg3"] {
        assert_eq!(r.count(h, "echo handled"), 1, "{h}");
        assert!(r.one(h, "/done/b").ended < r.one(h, "echo handled").started);
    }
}

#[test]
fn a_handler_nobody_notified_does_not_run() {
    let pb = playbook(&[step("a", "    notify: [h]\n")], HANDLER);
    let mut r = rig(Spec {
        playbook: &pb,
        existing: &["/done/a"],
        ..Spec::default()
    });
    let (recaps, events) = r.apply();
    assert!(r.steps().is_empty(), "{:?}", r.steps());
    assert_eq!(recaps["pg1"].ok, 1);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::InSync { host, step } if host == "pg1" && step == "a")));
}

#[test]
fn flush_handlers_runs_them_there_and_again_only_when_notified_again() {
    let pb = format!(
        "steps:\n{}  - name: live\n    flush_handlers: {{}}\n{}{}",
        step("a", "    notify: [h]\n"),
        step("b", "    notify: [h]\n"),
        HANDLER
    );
    let mut r = rig(Spec {
        playbook: &pb,
        ..Spec::default()
    });
    r.apply();
    let runs: Vec<Entry> = r
        .steps()
        .into_iter()
        .filter(|e| e.host == "pg2" && e.command.contains("echo handled"))
        .collect();
    assert_eq!(runs.len(), 2);
    assert!(runs[0].ended < r.one("pg2", "/done/b").started);
    let pb = format!(
        "steps:\n{}  - name: live\n    flush_handlers: {{}}\n{}{}",
        step("a", "    notify: [h]\n"),
        step("b", ""),
        HANDLER
    );
    let mut r = rig(Spec {
        playbook: &pb,
        ..Spec::default()
    });
    r.apply();
    assert_eq!(r.count("pg2", "echo handled"), 1);
}

#[test]
fn the_primary_runs_its_handler_after_every_standby() {
    let pb = playbook(&[step("conf", "    notify: [h]\n")], HANDLER);
    let mut r = rig(Spec {
        playbook: &pb,
        delay_ms: 10,
        ..Spec::default()
    });
    r.apply();
    let primary = r.one("pg1", "echo handled");
    for h in ["pg2", "pg3"] {
        assert!(
            r.one(h, "echo handled").ended < primary.started,
            "{h} restarted after the primary"
        );
    }
}

#[test]
fn a_failed_step_stops_its_host_and_says_why() {
    let pb = playbook(&[step("a", ""), step("b", ""), step("c", "")], "");
    let mut r = rig(Spec {
        playbook: &pb,
        replies: &[("pg2", "/done/b", 1, "")],
        ..Spec::default()
    });
    let (recaps, events) = r.apply();
    assert_eq!(r.count("pg2", "/done/c"), 0, "pg2 went on after a failure");
    assert_eq!(r.count("pg3", "/done/c"), 1, "pg3 is not held up by pg2");
    let failed = recaps["pg2"].failed.clone().expect("pg2 failed");
    assert!(
        failed.starts_with("b: sh exited 1") && failed.contains("/done/b failed"),
        "{failed}"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Failed { host, step, .. } if host == "pg2" && step == "b")));
}

#[test]
fn a_failed_dependency_stops_the_hosts_that_wait_for_it() {
    let pb = playbook(
        &[
            step(
                "clone",
                "    when: \"host.role == 'standby'\"\n    after: {host: primary, step: slots}\n",
            ),
            step("slots", ""),
        ],
        "",
    );
    let mut r = rig(Spec {
        playbook: &pb,
        replies: &[("pg1", "/done/slots", 1, "")],
        ..Spec::default()
    });
    let (recaps, _) = r.apply();
    for h in ["pg2", "pg3"] {
        assert_eq!(
            r.count(h, "/done/clone"),
            0,
            "{h} cloned without its upstream"
        );
        let failed = recaps[h].failed.clone().expect("stopped");
        assert!(
            failed.contains("not run: it needs pg1, which failed"),
            "{failed}"
        );
    }
}

#[test]
fn limit_touches_only_the_named_hosts_and_nobody_waits_for_the_others() {
    let pb = join_after_start();
    let mut r = rig(Spec {
        playbook: &pb,
        ..Spec::default()
    });
    r.session.limit = Some(vec!["pg2".to_owned()]);
    let (recaps, _) = r.apply();
    assert_eq!(recaps.keys().collect::<Vec<_>>(), ["pg2"]);
    assert!(r.steps().iter().all(|e| e.host == "pg2"), "{:?}", r.steps());
    assert_eq!(r.count("pg2", "/done/join"), 1);
}

#[test]
fn what_a_command_says_of_itself_is_reported() {
    let pb = playbook(&[step("a", "")], "");
    let mut r = rig(Spec {
        playbook: &pb,
        replies: &[("pg1", "/done/a", 0, "noise\npgha: restarted pg1\n")],
        ..Spec::default()
    });
    let (_, events) = r.apply();
    let said: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Said { host, text, .. } if host == "pg1" => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(said, ["restarted pg1"]);
}

#[test]
fn facts_are_read_again_after_a_change_so_a_later_step_sees_it() {
    let pb = "steps:\n  - name: make\n    command: {run: \"touch /done/x\", creates: /done/x}\n  - name: again\n    command: {run: \"echo never; touch /done/x\", creates: /done/x}\n";
    let mut r = rig(Spec {
        playbook: pb,
        ..Spec::default()
    });
    let (recaps, _) = r.apply();
    assert_eq!(r.count("pg1", "echo never"), 0);
    assert_eq!((recaps["pg1"].changed, recaps["pg1"].ok), (1, 1));
}

#[test]
fn a_second_apply_changes_nothing() {
    let pb = playbook(&[step("a", "    notify: [h]\n"), step("b", "")], HANDLER);
    let mut r = rig(Spec {
        playbook: &pb,
        ..Spec::default()
    });
    r.apply();
    let before = r.steps().len();
    let (recaps, _) = r.apply();
    assert_eq!(
        r.steps().len(),
        before,
        "the second apply ran step commands"
    );
    assert!(recaps
        .values()
        .all(|c| c.changed == 0 && c.failed.is_none()));
}

// ---- the cluster lock ----------------------------------------------------------------------

fn fakes(replies: &[(&str, Output)]) -> (Connections, BTreeMap<String, Arc<FakeTransport>>) {
    let mut c: Connections = BTreeMap::new();
    let mut f = BTreeMap::new();
    for name in ["pg1", "pg2", "pg3"] {
        let mut fake = FakeTransport::new(name);
        for (host, out) in replies {
            if *host == name {
                fake = fake.reply("set -C", out.clone());
            }
        }
        let fake = Arc::new(fake);
        c.insert(name.to_owned(), fake.clone() as Arc<dyn Transport>);
        f.insert(name.to_owned(), fake);
    }
    (c, f)
}

fn info() -> LockInfo {
    LockInfo {
        id: "abc123".into(),
        who: "dba@laptop pid 1".into(),
        operation: "apply".into(),
        since: "2026-12-01T00:00:00Z".into(),
    }
}

#[test]
fn the_lock_is_taken_on_every_host() {
    let (c, f) = fakes(&[]);
    runtime()
        .block_on(lock::take_all(&c, &info(), "inv.yml"))
        .expect("taken");
    for (h, fake) in &f {
        let cmds = fake.commands();
        assert!(
            cmds.iter()
                .any(|c| c.contains(LOCK_PATH) && c.contains("set -C")),
            "{h}: {cmds:?}"
        );
    }
}

#[test]
fn a_held_lock_names_its_holder_and_gives_back_what_was_taken() {
    let holder = r#"{"id":"ffee00","who":"ops@ci pid 7","operation":"apply","since":"2026-12-01T01:00:00Z"}"#;
    let (c, f) = fakes(&[(
        "pg2",
        Output {
            status: 3,
            stdout: format!("HELD\n{holder}\n"),
            stderr: String::new(),
        },
    )]);
    let err = runtime()
        .block_on(lock::take_all(&c, &info(), "inv.yml"))
        .expect_err("held");
    let LockError::Held { host, holder, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!((host.as_str(), holder.id.as_str()), ("pg2", "ffee00"));
    assert!(
        err.to_string()
            .contains("pgha force-unlock ffee00 -i inv.yml"),
        "{err}"
    );
    for (h, fake) in &f {
        assert!(
            fake.commands()
                .iter()
                .any(|c| c.contains("rm -f /var/lib/pgha/cluster.lock")),
            "{h}: what was taken is given back"
        );
    }
}

#[test]
fn a_lock_killed_while_written_is_incomplete_and_removable_by_that_name() {
    let (c, _) = fakes(&[(
        "pg1",
        Output {
            status: 3,
            stdout: "HELD\n{\"id\":\"ab".into(),
            stderr: String::new(),
        },
    )]);
    let err = runtime()
        .block_on(lock::take_all(&c, &info(), "inv.yml"))
        .expect_err("held");
    let LockError::Held { holder, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(holder.id, CORRUPT);
    let (c, f) = fakes(&[]);
    runtime().block_on(lock::release_all(&c, CORRUPT));
    assert!(f["pg1"]
        .commands()
        .iter()
        .any(|c| c.contains("! grep -q") && c.contains("rm -f")));
}

#[test]
fn release_names_the_hosts_that_held_our_lock() {
    let mut c: Connections = BTreeMap::new();
    for (name, out) in [("pg1", "released\n"), ("pg2", ""), ("pg3", "released\n")] {
        let fake = FakeTransport::new(name).reply(
            "cluster.lock",
            Output {
                status: 0,
                stdout: out.into(),
                stderr: String::new(),
            },
        );
        c.insert(name.to_owned(), Arc::new(fake) as Arc<dyn Transport>);
    }
    let released = runtime().block_on(lock::release_all(&c, "abc123"));
    assert_eq!(released, ["pg1", "pg3"]);
}

// ---- switchover procedures ------------------------------------------------------------------

use pgha::facts::{HostFacts, PgFacts, WalReceiverFact};
use pgha::flavours::ProcedureError;

fn server(in_recovery: bool, streaming_from: Option<&str>) -> HostFacts {
    HostFacts {
        postgres: Some(PgFacts {
            initialized: true,
            running: true,
            in_recovery,
            wal_receiver: streaming_from.map(|s| WalReceiverFact {
                status: "streaming".into(),
                sender_host: s.into(),
                slot_name: String::new(),
            }),
            ..PgFacts::default()
        }),
        ..HostFacts::default()
    }
}

impl Rig {
    fn switchover(&mut self, target: &str) -> Result<pgha::flavours::Handover, ProcedureError> {
        let topology = Topology::declared(&self.session.project.cluster);
        let flavour = self.session.project.flavour.clone();
        let view = self.session.view(&topology);
        runtime().block_on(flavour.switchover(&view, target))
    }
}

fn streaming_cluster(replies: &[(&str, &str, i32, &str)]) -> Rig {
    let mut r = rig(Spec {
        hosts: &[
            ("pg1", "primary", None),
            ("pg2", "standby", None),
            ("pg3", "standby", Some("pg2")),
        ],
        playbook: "steps: []\n",
        replies,
        ..Spec::default()
    });
    r.session.facts = [
        ("pg1", server(false, None)),
        ("pg2", server(true, Some("10.0.0.1"))),
        ("pg3", server(true, Some("10.0.0.2"))),
    ]
    .into_iter()
    .map(|(h, f)| (h.to_owned(), f))
    .collect();
    r
}

const HANDOVER: &[(&str, &str, i32, &str)] = &[
    ("pg1", "pg_controldata", 0, "0/3000028\n"),
    ("pg2", "pg_wal_lsn_diff", 0, "t\n"),
    ("pg2", "pg_promote", 0, "t\n"),
];

#[test]
fn a_streaming_switchover_stops_waits_marks_then_promotes() {
    let mut r = streaming_cluster(HANDOVER);
    let handover = r.switchover("pg2").expect("switched over");
    assert!(
        handover.converge,
        "the playbook re-points the standbys after it"
    );
    let order = [
        ("pg1", "CHECKPOINT"),
        ("pg1", "systemctl stop postgresql@15-main"),
        ("pg1", "pg_controldata"),
        ("pg2", "pg_wal_lsn_diff"),
        ("pg1", "standby.signal"),
        ("pg2", "pg_promote"),
    ];
    let seen: Vec<(String, String)> = r
        .steps()
        .into_iter()
        .map(|e| (e.host.clone(), e.command.clone()))
        .collect();
    let mut at = 0;
    for (host, needle) in order {
        let found = seen[at..]
            .iter()
            .position(|(h, c)| h == host && c.contains(needle))
            .unwrap_or_else(|| panic!("{host} {needle} not in order: {seen:#?}"));
        at += found + 1;
    }
    assert!(
        !seen
            .iter()
            .any(|(h, c)| h == "pg1" && c.contains("systemctl start")),
        "the old primary is not started again"
    );
}

#[test]
fn a_switchover_to_a_cascaded_standby_is_refused_before_anything_runs() {
    let mut r = streaming_cluster(HANDOVER);
    let err = r.switchover("pg3").expect_err("refused");
    assert!(
        err.to_string()
            .contains("pg3 streams from pg2, not from the primary pg1"),
        "{err}"
    );
    assert!(r.steps().is_empty(), "{:?}", r.steps());
}

#[test]
fn a_switchover_to_a_standby_that_is_not_streaming_is_refused() {
    let mut r = streaming_cluster(HANDOVER);
    r.session.facts.insert("pg2".into(), server(true, None));
    let err = r.switchover("pg2").expect_err("refused");
    assert!(
        err.to_string().contains("pg2 is not streaming from pg1"),
        "{err}"
    );
    assert!(r.steps().is_empty());
}

#[test]
fn a_target_that_does_not_catch_up_leaves_the_old_primary_running_as_it_was() {
    let r = streaming_cluster(&[
        ("pg1", "pg_controldata", 0, "0/3000028\n"),
        ("pg2", "pg_wal_lsn_diff", 0, "f\n"),
    ]);
    // The procedure waits 30 s for the target; a paused clock makes that instant.
    let topology = Topology::declared(&r.session.project.cluster);
    let flavour = r.session.project.flavour.clone();
    let view = r.session.view(&topology);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let err = rt
        .block_on(flavour.switchover(&view, "pg2"))
        .expect_err("gave up");
    assert!(
        err.to_string()
            .contains("pg1 was started again as the primary, nothing changed"),
        "{err}"
    );
    let seen: Vec<String> = r.steps().into_iter().map(|e| e.command).collect();
    assert!(seen
        .iter()
        .any(|c| c.contains("systemctl start postgresql@15-main")));
    assert!(!seen
        .iter()
        .any(|c| c.contains("pg_promote") || c.contains("standby.signal")));
}

#[test]
fn patroni_will_not_switch_over_to_a_member_tagged_nofailover() {
    let mut r = rig(Spec {
        hosts: &[("pg1", "primary", None), ("pg2", "standby", None)],
        playbook: "steps: []\n",
        patroni: Some("patroni:\n  rewind: {password: {env: X}}\n  restapi_auth: {password: {env: X}}\n  etcd: {members: [pg1]}\n"),
        ..Spec::default()
    });
    // Tags are host keys: rebuild the rig's inventory with one.
    let dir = r._dir.path().to_owned();
    let inv = std::fs::read_to_string(dir.join("inventory.yml")).expect("inventory");
    let inv = inv.replace("role: standby}", "role: standby, tags: {nofailover: true}}");
    std::fs::write(dir.join("inventory.yml"), inv).expect("write");
    r.session.project = Project::load(
        &dir.join("inventory.yml"),
        Some(&dir.join("playbooks")),
        None,
    )
    .expect("reloads");
    let err = r.switchover("pg2").expect_err("refused");
    assert!(
        err.to_string().contains("pg2 has the tag nofailover"),
        "{err}"
    );
    assert!(r.steps().is_empty());
}

// ---- the real topology and components ---------------------------------------------------------

#[test]
fn under_patroni_the_leader_key_decides_even_when_every_server_is_in_recovery() {
    let r = rig(Spec {
        hosts: &[
            ("pg1", "primary", None),
            ("pg2", "standby", None),
            ("pg3", "standby", Some("pg2")),
        ],
        playbook: "steps: []\n",
        patroni: Some(
            "patroni:\n  rewind: {password: {env: X}}\n  restapi_auth: {password: {env: X}}\n  etcd: {members: [pg1, pg2, pg3]}\n  standby_cluster: {host: 10.9.9.9}\n",
        ),
        ..Spec::default()
    });
    let mut leader = server(true, Some("10.9.9.9"));
    leader.probes.insert(
        "patroni".into(),
        vec![
            r#"[{"status": 200, "body": {"state": "running", "role": "standby_leader"}}, {"status": 200, "body": {}}]"#.into(),
        ],
    );
    let facts: BTreeMap<String, HostFacts> = [
        ("pg1".to_owned(), server(true, Some("10.0.0.3"))),
        ("pg3".to_owned(), leader),
    ]
    .into();
    let p = &r.session.project;
    let (t, notes) =
        pgha::plan::topology::observe(&p.cluster, p.flavour.as_ref(), &facts).expect("observed");
    assert_eq!(t.primary, "pg3");
    assert!(notes[0].contains("pg3 is the primary"), "{notes:?}");
}

fn step_names(extra: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("inv.yml");
    let text = format!(
        "cluster: {{name: t, flavour: streaming}}\npostgres: {{version: 15}}\nreplication: {{user: r, password: {{env: X}}}}\nhosts:\n  - {{name: pg1, address: 10.0.0.1, role: primary}}\n{extra}"
    );
    std::fs::write(&path, text).expect("write");
    let project = Project::load(&path, None, None).expect("loads");
    let topology = Topology::declared(&project.cluster);
    project.expand(&topology).expect("expands")["pg1"]
        .iter()
        .map(|s| s.name.clone())
        .collect()
}

#[test]
fn a_component_is_active_when_the_inventory_has_its_section() {
    let without = step_names("");
    assert!(
        !without.iter().any(|s| s == "extra packages"),
        "{without:?}"
    );
    let with = step_names("packages: [postgresql-15-cron]\n");
    let at = |name: &str| with.iter().position(|s| s == name);
    let extra = at("extra packages").expect("the component's step");
    // At the `packages` hook: after the server's packages, before its configuration.
    assert!(at("PostgreSQL packages") < Some(extra));
    assert!(Some(extra) < at("main configuration file"));
}

#[test]
fn a_router_asks_patroni_its_rest_api_and_a_streaming_server_itself() {
    use pgha::flavours::HealthCheck;
    let r = rig(Spec {
        hosts: &[("pg1", "primary", None), ("pg2", "standby", None)],
        playbook: "steps: []\n",
        patroni: Some(
            "patroni:\n  restapi_port: 8009\n  rewind: {password: {env: X}}\n  restapi_auth: {password: {env: X}}\n  etcd: {members: [pg1]}\n",
        ),
        ..Spec::default()
    });
    let p = &r.session.project;
    assert_eq!(
        p.flavour.health(),
        HealthCheck::Http {
            port: 8009,
            primary: "/primary".into(),
            replica: "/replica".into()
        }
    );
    let s = rig(Spec {
        playbook: "steps: []\n",
        ..Spec::default()
    });
    let p = &s.session.project;
    let HealthCheck::Sql { primary } = p.flavour.health() else {
        panic!("streaming has no REST API");
    };
    assert_eq!(primary.as_str(), "SELECT NOT pg_is_in_recovery()");
}
