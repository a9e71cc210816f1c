//! The engine with fixture facts, pyinfra style: facts in, planned changes and the commands
//! that make them out (through the fake transport), for every step kind, including the no-op
//! case; then whole playbooks: a bare host, a converged host (no change at all) and handler
//! triggering.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use pgha::facts::{FileFact, HostFacts, PgFacts, RoleFact, ServiceFact, Setting, SlotFact};
use pgha::model::{Secret, Secrets, Topology};
use pgha::plan::check::{check_host, Status};
use pgha::plan::{Change, Check};
use pgha::project::Project;
use pgha::secret::scram;
use pgha::steps::file::File;
use pgha::steps::package::Package;
use pgha::steps::pg_database::PgDatabase;
use pgha::steps::pg_extension::PgExtension;
use pgha::steps::pg_reload_or_restart::PgReloadOrRestart;
use pgha::steps::pg_role::PgRole;
use pgha::steps::pg_slot::PgSlot;
use pgha::steps::service::Service;
use pgha::steps::{registry, StepContext};
use pgha::transport::fake::FakeTransport;
use pgha::transport::Transport;

use crate::support::root;

/// `VERIFIER(pw)` in fixture facts stands for the SCRAM verifier of `pw`.
fn with_verifiers(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Some(pw) = s
                .strip_prefix("VERIFIER(")
                .and_then(|r| r.strip_suffix(')'))
            {
                *s = scram::verifier(pw, b"fixture-salt-123", 4096);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(with_verifiers),
        Value::Object(map) => map.values_mut().for_each(with_verifiers),
        _ => {}
    }
}

fn facts_of(value: Option<&Value>) -> HostFacts {
    let mut v = value.cloned().unwrap_or(Value::Object(Default::default()));
    with_verifiers(&mut v);
    serde_json::from_value(v).expect("fixture facts parse")
}

fn secrets_of(value: Option<&Value>) -> Secrets {
    let mut secrets = Secrets::default();
    if let Some(Value::Object(map)) = value {
        for (k, v) in map {
            secrets.insert(k, Secret::new(v.as_str().expect("secret string")));
        }
    }
    secrets
}

fn run_commands(changes: &[Change]) -> Vec<String> {
    let transport = FakeTransport::new("fixture");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for change in changes {
            for command in &change.commands {
                transport.run(command).await.expect("fake run");
            }
        }
    });
    transport.commands()
}

fn strings(expect: &Value, key: &str) -> Vec<String> {
    expect
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs one case; returns its kind and whether it was a no-op case.
fn run_fixture(file: &Path, case: &Value) -> (String, bool) {
    let name = format!(
        "{} / {}",
        file.display(),
        case["name"].as_str().unwrap_or("?")
    );
    let module = registry::from_json(&pgha::playbook::kinds(), &case["step"])
        .unwrap_or_else(|e| panic!("{name}: step: {e}"));
    let kind = case["step"]
        .as_object()
        .and_then(|m| m.keys().next())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        module.kind(),
        kind,
        "{name}: the kind names itself as registered"
    );
    let facts = facts_of(case.get("facts"));
    let cluster_facts: BTreeMap<String, HostFacts> = case
        .get("cluster_facts")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), facts_of(Some(v))))
                .collect()
        })
        .unwrap_or_default();
    let secrets = secrets_of(case.get("secrets"));
    let cx = StepContext {
        host: "fixture",
        step: "fixture step",
        facts: &facts,
        cluster_facts: &cluster_facts,
        secrets: &secrets,
    };
    let expect = &case["expect"];
    let check = module.check(&cx);
    let (status, reason, changes) = match &check {
        Check::InSync(r) => ("in_sync", r.clone(), Vec::new()),
        Check::Refused(r) => ("refused", r.clone(), Vec::new()),
        Check::Changes(c) => (
            "changes",
            c.iter()
                .map(|c| c.reason.clone())
                .collect::<Vec<_>>()
                .join("; "),
            c.clone(),
        ),
    };
    assert_eq!(
        status,
        expect["status"].as_str().expect("status"),
        "{name}: {check:?}"
    );
    if let Some(r) = expect.get("reason").and_then(Value::as_str) {
        assert!(reason.contains(r), "{name}: reason {reason:?} lacks {r:?}");
    }
    let actions: Vec<String> = changes
        .iter()
        .map(|c| format!("{} {}", c.action.name(), c.target))
        .collect();
    let expected_actions = strings(expect, "actions");
    if !expected_actions.is_empty() || status == "changes" {
        assert_eq!(actions, expected_actions, "{name}");
    }
    let ran = run_commands(&changes);
    for needle in strings(expect, "commands") {
        assert!(
            ran.iter().any(|c| c.contains(&needle)),
            "{name}: no command has {needle:?}:\n{}",
            ran.join("\n")
        );
    }
    let stdin: Vec<String> = changes
        .iter()
        .flat_map(|c| {
            c.commands
                .iter()
                .filter_map(|cmd| cmd.stdin.as_ref().map(|s| s.masked().into_owned()))
        })
        .collect();
    for needle in strings(expect, "stdin") {
        assert!(
            stdin.iter().any(|s| s.contains(&needle)),
            "{name}: no stdin has {needle:?}:\n{}",
            stdin.join("\n---\n")
        );
    }
    // A change made by a procedure carries what the procedure is to do.
    let procedures: String = changes
        .iter()
        .filter_map(|c| c.procedure.as_ref().map(ToString::to_string))
        .collect();
    for needle in strings(expect, "procedure") {
        assert!(
            procedures.contains(&needle),
            "{name}: the procedure lacks {needle:?}: {procedures}"
        );
    }
    let diffs: String = changes.iter().filter_map(|c| c.diff.clone()).collect();
    if let Some(d) = expect.get("diff").and_then(Value::as_str) {
        assert!(diffs.contains(d), "{name}: diff lacks {d:?}:\n{diffs}");
    }
    let everything = format!(
        "{}\n{}\n{}\n{reason}",
        serde_json::to_string(&changes).expect("json"),
        ran.join("\n"),
        stdin.join("\n")
    );
    for secret in strings(expect, "absent") {
        assert!(
            !everything.contains(&secret),
            "{name}: {secret:?} is shown:\n{everything}"
        );
    }
    (kind, status == "in_sync")
}

#[test]
fn every_step_kind_against_fixture_facts() {
    let dir = root().join("tests/fixtures/steps");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut kinds = std::collections::BTreeSet::new();
    let mut no_op = std::collections::BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read fixture");
        let list: Vec<Value> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for case in &list {
            let (kind, in_sync) = run_fixture(file, case);
            if in_sync {
                no_op.insert(kind.clone());
            }
            kinds.insert(kind);
        }
    }
    // Every step kind has fixtures, and a no-op case each: a step that never says "nothing
    // to do" would keep every plan dirty.
    let all: std::collections::BTreeSet<String> = pgha::playbook::kinds()
        .iter()
        .flat_map(|r| r.iter().map(|k| k.name.to_owned()))
        .collect();
    assert_eq!(kinds, all, "step kinds without fixtures");
    assert_eq!(no_op, all, "step kinds without a no-op fixture case");
}

// ---- whole playbooks ---------------------------------------------------------------------

/// The example without TLS: the engine's fixtures predate it (TLS steps have their own).
fn project() -> Project {
    let text = std::fs::read_to_string(root().join("inventory.example")).expect("example");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("inventory.yml");
    std::fs::write(&path, format!("{text}\ntls: off\n")).expect("inventory");
    Project::load(&path, None, None).expect("example loads")
}

fn secrets() -> Secrets {
    let mut s = Secrets::default();
    s.insert("replication.password", Secret::new("repl-secret-value"));
    s.insert(
        "postgres.superuser_password",
        Secret::new("super-secret-value"),
    );
    s.insert("users[app].password", Secret::new("app-secret-value"));
    s
}

/// Facts of a host on which everything the playbook wants is already in place.
fn converged(project: &Project, host: &str, secrets: &Secrets) -> HostFacts {
    let steps = project
        .expand_declared()
        .expect("expand")
        .remove(host)
        .expect("host");
    let mut facts = HostFacts::default();
    let primary = project.cluster.primary().name == host;
    let mut pg = PgFacts {
        initialized: true,
        running: true,
        in_recovery: !primary,
        system_identifier: "7300000000000000001".into(),
        timeline: 1,
        ..PgFacts::default()
    };
    for step in &steps {
        let m = &step.module;
        if let Some(p) = m.downcast::<Package>() {
            for n in &p.names {
                facts.packages.insert(n.clone(), "1".into());
            }
        } else if let Some(f) = m.downcast::<File>() {
            let content = f.content.reveal(secrets).expect("reveal").into_owned();
            facts.files.insert(
                f.dest.clone(),
                FileFact {
                    content,
                    owner: f.owner.clone(),
                    group: f.group.clone(),
                    mode: f.mode.clone(),
                },
            );
        } else if let Some(s) = m.downcast::<Service>() {
            facts.services.insert(
                s.name.clone(),
                ServiceFact {
                    active: true,
                    enabled: true,
                    masked: false,
                },
            );
        } else if let Some(r) = m.downcast::<PgRole>() {
            let verifier = r.password.as_ref().map(|l| {
                scram::verifier(
                    secrets.get(l).expect("secret").expose(),
                    b"salt-for-tests!!",
                    4096,
                )
            });
            pg.roles.insert(
                r.name.clone(),
                RoleFact {
                    login: r.login,
                    superuser: r.superuser,
                    createdb: r.createdb,
                    createrole: r.createrole,
                    replication: r.replication,
                    connection_limit: r.connection_limit,
                    password_verifier: verifier,
                    rewind: r.rewind,
                },
            );
        } else if let Some(d) = m.downcast::<PgDatabase>() {
            pg.databases.entry(d.name.clone()).or_default().owner = d.owner.clone();
        } else if let Some(e) = m.downcast::<PgExtension>() {
            pg.databases
                .entry(e.database.clone())
                .or_default()
                .extensions
                .push(e.name.clone());
        } else if let Some(s) = m.downcast::<PgSlot>() {
            pg.slots.insert(
                s.name.clone(),
                SlotFact {
                    active: true,
                    physical: true,
                    ..SlotFact::default()
                },
            );
        } else if let Some(h) = m.downcast::<PgReloadOrRestart>() {
            for (k, v) in &h.parameters {
                pg.settings.insert(
                    k.clone(),
                    Setting {
                        value: v.clone(),
                        context: "sighup".into(),
                        pending_restart: false,
                    },
                );
            }
        }
        // The other kinds (clone, slot pruning, commands, waits) leave no fact of their own.
    }
    facts.postgres = Some(pg);
    facts
}

fn plan_all(
    project: &Project,
    facts: &BTreeMap<String, HostFacts>,
    secrets: &Secrets,
) -> BTreeMap<String, Vec<pgha::plan::check::StepOutcome>> {
    let steps = project
        .expand(&Topology::declared(&project.cluster))
        .expect("expand");
    steps
        .iter()
        .map(|(host, steps)| {
            (
                host.clone(),
                check_host(host, steps, &facts[host], facts, secrets),
            )
        })
        .collect()
}

fn changes_of(outcomes: &[pgha::plan::check::StepOutcome]) -> Vec<Change> {
    outcomes
        .iter()
        .flat_map(|o| match &o.status {
            Status::Changes { changes } => changes.clone(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn a_converged_cluster_plans_no_change() {
    let project = project();
    let secrets = secrets();
    let facts: BTreeMap<String, HostFacts> = project
        .cluster
        .hosts
        .iter()
        .map(|h| (h.name.clone(), converged(&project, &h.name, &secrets)))
        .collect();
    let plan = plan_all(&project, &facts, &secrets);
    for (host, outcomes) in &plan {
        let changes = changes_of(outcomes);
        assert!(
            changes.is_empty(),
            "{host} plans changes on a converged host: {changes:#?}"
        );
        let in_sync = outcomes
            .iter()
            .filter(|o| matches!(o.status, Status::InSync { .. }))
            .count();
        assert!(in_sync >= 8, "{host}: only {in_sync} steps checked");
        assert!(
            outcomes.iter().any(|o| o.status == Status::NotNotified),
            "{host}: the handler must not run"
        );
    }
}

#[test]
fn a_bare_cluster_plans_the_whole_bootstrap_in_order() {
    let project = project();
    let secrets = secrets();
    let facts: BTreeMap<String, HostFacts> = project
        .cluster
        .hosts
        .iter()
        .map(|h| (h.name.clone(), HostFacts::default()))
        .collect();
    let plan = plan_all(&project, &facts, &secrets);
    let summary = |host: &str| -> Vec<String> {
        changes_of(&plan[host])
            .iter()
            .map(|c| format!("{} {:?} {}", c.kind, c.action, c.target))
            .collect()
    };
    let pg1 = summary("pg1");
    let expected_pg1 = [
        "file Create /etc/postgresql-common/createcluster.conf",
        "package Install postgresql-15 postgresql-client-15",
        "file Create /etc/postgresql/15/main/postgresql.conf",
        "file Create /etc/postgresql/15/main/conf.d/pgha.conf",
        "file Create /etc/postgresql/15/main/pg_hba.conf",
        "file Create /var/lib/postgresql/.pgpass",
        "service Start postgresql@15-main",
        "service Enable postgresql@15-main",
        "wait_for Run port 5432",
        "pg_role Create replicator",
        "pg_role Create postgres",
        "pg_role Create app",
        "pg_database Create appdb",
        "pg_extension Create pg_stat_statements in appdb",
        "pg_slot Create pgha_pg2",
    ];
    assert_eq!(pg1, expected_pg1);
    let pg2 = summary("pg2");
    assert!(
        pg2.contains(&"pg_clone Clone /var/lib/postgresql/15/main from pg1".to_owned()),
        "{pg2:#?}"
    );
    assert!(
        pg2.contains(&"pg_slot Create pgha_pg3".to_owned()),
        "pg2 feeds the cascaded pg3: {pg2:#?}"
    );
    let pg3 = summary("pg3");
    assert!(
        pg3.contains(&"pg_clone Clone /var/lib/postgresql/15/main from pg2".to_owned()),
        "{pg3:#?}"
    );
    assert!(
        !pg3.iter().any(|c| c.starts_with("pg_role")),
        "roles are made on the primary only: {pg3:#?}"
    );
    // The cascaded standby's clone waits for its upstream's slot.
    let steps = project.expand_declared().expect("expand");
    let clone = steps["pg3"]
        .iter()
        .find(|s| s.kind == "pg_clone")
        .expect("clone step");
    assert_eq!(
        clone.after,
        vec![("pg2".to_owned(), "replication slots".to_owned())]
    );
    // No secret value anywhere in the plan.
    let text = serde_json::to_string(
        &plan
            .values()
            .flat_map(|o| changes_of(o))
            .collect::<Vec<_>>(),
    )
    .expect("json");
    for s in [
        "repl-secret-value",
        "super-secret-value",
        "app-secret-value",
    ] {
        assert!(!text.contains(s), "{s} in the plan");
    }
}

#[test]
fn a_changed_file_notifies_the_handler_which_decides_reload_or_restart() {
    let project = project();
    let secrets = secrets();
    let mut facts: BTreeMap<String, HostFacts> = project
        .cluster
        .hosts
        .iter()
        .map(|h| (h.name.clone(), converged(&project, &h.name, &secrets)))
        .collect();
    // A hand edit of pg_hba.conf on pg2: the file is rewritten and the server reloaded.
    let hba = "/etc/postgresql/15/main/pg_hba.conf";
    let pg2 = facts.get_mut("pg2").expect("pg2");
    pg2.files
        .get_mut(hba)
        .expect("hba")
        .content
        .push_str("host all all 0.0.0.0/0 trust\n");
    let plan = plan_all(&project, &facts, &secrets);
    let changes = changes_of(&plan["pg2"]);
    let summary: Vec<String> = changes
        .iter()
        .map(|c| format!("{} {:?} {}", c.kind, c.action, c.target))
        .collect();
    assert_eq!(
        summary,
        [
            format!("file Update {hba}"),
            "pg_reload_or_restart Reload postgresql@15-main".to_owned()
        ]
    );
    assert!(changes[0]
        .diff
        .as_deref()
        .unwrap_or("")
        .contains("-host all all 0.0.0.0/0 trust"));
    assert!(changes_of(&plan["pg1"]).is_empty() && changes_of(&plan["pg3"]).is_empty());

    // shared_buffers running with another value on pg1: restart, and the plan says why.
    let pg1 = facts.get_mut("pg1").expect("pg1");
    pg1.files
        .get_mut("/etc/postgresql/15/main/conf.d/pgha.conf")
        .expect("conf")
        .content = "# old\n".into();
    pg1.postgres.as_mut().expect("pg").settings.insert(
        "shared_buffers".into(),
        Setting {
            value: "128MB".into(),
            context: "postmaster".into(),
            pending_restart: false,
        },
    );
    let plan = plan_all(&project, &facts, &secrets);
    let restart = changes_of(&plan["pg1"])
        .into_iter()
        .find(|c| c.kind == "pg_reload_or_restart")
        .expect("handler");
    assert_eq!(format!("{:?}", restart.action), "Restart");
    assert!(
        restart
            .reason
            .contains("shared_buffers: 128MB -> 256MB (context postmaster)"),
        "{}",
        restart.reason
    );
}

/// What the extensions add to the cluster before expansion (`components::shaped`): the
/// user's libraries first, then the extensions' in the order declared (each once); the
/// user's own parameters win over a preset's tuning and an extension's; the extensions join
/// their databases' lists. The flavour's library comes after all of these (repmgr's hook).
#[test]
fn extensions_shape_the_cluster_in_a_stable_documented_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        root().join("tests/fixtures/keys/test-repository.asc"),
        dir.path().join("ts.asc"),
    )
    .expect("key");
    let text = std::fs::read_to_string(root().join("inventory.repmgr.example"))
        .expect("example")
        .replacen(
            "  parameters:\n",
            "  parameters:\n    shared_preload_libraries: \"pg_stat_statements, pg_cron\"\n    work_mem: 32MB\n",
            1,
        )
        + "extensions:
  - name: pg_cron
    database: appdb
    preload: true
    parameters: {cron.database_name: appdb}
  - preset: timescaledb
    database: appdb
    key: ts.asc
    parameters: {timescaledb.max_background_workers: \"8\"}
";
    let path = dir.path().join("inventory.yml");
    let inv = pgha::inventory::load_str(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    let hw = pgha::model::Hardware {
        memory: 16 << 30,
        cpus: 8,
    };
    let shaped =
        pgha::components::shaped(&inv.cluster, &inv.components, Some(hw)).expect("additions");
    let p = &shaped.postgres.parameters;
    assert_eq!(
        p["shared_preload_libraries"],
        "pg_stat_statements,pg_cron,timescaledb"
    );
    assert_eq!(p["work_mem"], "32MB", "the user's value wins");
    assert_eq!(p["shared_buffers"], "256MB", "the user's value wins");
    assert_eq!(
        p["effective_cache_size"], "12GB",
        "the preset's, from the hardware"
    );
    assert_eq!(
        p["timescaledb.max_background_workers"], "8",
        "the extension's own value over the preset's"
    );
    let appdb = shaped
        .databases
        .iter()
        .find(|d| d.name == "appdb")
        .expect("appdb");
    assert!(appdb
        .extensions
        .ends_with(&["pg_cron".to_owned(), "timescaledb".to_owned()]));
    // repmgr's library last, as its parameters hook adds it to what is there.
    let mut with_flavour = p.clone();
    inv.flavour.parameters(&mut with_flavour);
    assert_eq!(
        with_flavour["shared_preload_libraries"],
        "pg_stat_statements,pg_cron,timescaledb,repmgr"
    );
    // Without facts nothing hardware-derived is added; the rest is.
    let offline = pgha::components::shaped(&inv.cluster, &inv.components, None).expect("additions");
    assert!(!offline
        .postgres
        .parameters
        .contains_key("effective_cache_size"));
    assert_eq!(
        offline.postgres.parameters["shared_preload_libraries"],
        "pg_stat_statements,pg_cron,timescaledb"
    );
}

/// verify's proofs of the extensions, from facts: a server that runs without the library is
/// named (a restart pending), and a missing extension on the primary fails its check.
#[test]
fn extension_checks_read_the_running_libraries_and_the_primarys_databases() {
    use pgha::components::extensions::{verify, Extensions};
    use pgha::facts::DatabaseFact;
    let text = std::fs::read_to_string(root().join("inventory.example")).expect("example")
        + "extensions:\n  - name: pg_cron\n    database: appdb\n    preload: true\n    parameters: {cron.database_name: appdb}\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = pgha::inventory::load_str(&dir.path().join("inventory.yml"), &text)
        .unwrap_or_else(|e| panic!("{e}"));
    let ext = inv
        .components
        .iter()
        .find_map(|c| c.as_any().downcast_ref::<Extensions>())
        .expect("extensions");
    let server = |libraries: &str, extensions: &[&str]| HostFacts {
        postgres: Some(PgFacts {
            running: true,
            settings: [(
                "shared_preload_libraries".to_owned(),
                Setting {
                    value: libraries.to_owned(),
                    ..Setting::default()
                },
            )]
            .into(),
            databases: [(
                "appdb".to_owned(),
                DatabaseFact {
                    owner: "app".into(),
                    extensions: extensions.iter().map(|e| (*e).to_owned()).collect(),
                },
            )]
            .into(),
            ..PgFacts::default()
        }),
        ..HostFacts::default()
    };
    let facts: BTreeMap<String, HostFacts> = [
        ("pg1".to_owned(), server("pg_cron", &["plpgsql", "pg_cron"])),
        ("pg2".to_owned(), server("pg_cron", &[])),
        ("pg3".to_owned(), server("", &[])),
    ]
    .into();
    let topology = Topology::declared(&inv.cluster);
    let checks = verify::polled(ext, &inv.cluster, &topology, &facts);
    let result = |host: &str, check: &str| {
        checks
            .iter()
            .find(|c| c.host == host && c.check == check)
            .unwrap_or_else(|| panic!("{host}: {check} in {checks:?}"))
    };
    assert!(result("pg1", "extension pg_cron in appdb").ok);
    assert!(result("pg1", "extension libraries loaded").ok);
    assert!(result("pg2", "extension libraries loaded").ok);
    let pg3 = result("pg3", "extension libraries loaded");
    assert!(
        !pg3.ok && pg3.detail.contains("not loaded: pg_cron"),
        "{pg3:?}"
    );
    // The extension is the primary's to have: a standby is not asked.
    assert!(!checks
        .iter()
        .any(|c| c.host == "pg2" && c.check.starts_with("extension pg_cron")));
    let missing = verify::polled(
        ext,
        &inv.cluster,
        &topology,
        &[("pg1".to_owned(), server("pg_cron", &["plpgsql"]))].into(),
    );
    assert!(missing
        .iter()
        .any(|c| !c.ok && c.check == "extension pg_cron in appdb"));
}
