//! `pgha render`: every managed file of every host, deterministic, secrets masked unless
//! asked for. Snapshots hold the exact text.

use std::path::Path;

use crate::support::{root, Test};

fn render(out: &Path, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut test = Test::new()
        .args(["render", "-i"])
        .arg_path(&root().join("inventory.example"))
        .args(["--out"])
        .arg_path(out)
        .args(extra);
    for (k, v) in env {
        test = test.env(k, v);
    }
    test.stdout_has("Rendered 20 files for 3 hosts")
        .run()
        .stdout
}

fn read(out: &Path, host: &str, path: &str) -> String {
    std::fs::read_to_string(out.join(host).join(path))
        .unwrap_or_else(|e| panic!("{host}/{path}: {e}"))
}

fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("read_dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).expect("prefix").display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn renders_every_file_of_every_host() {
    let out = tempfile::tempdir().expect("tempdir");
    render(out.path(), &[], &[]);
    insta::assert_snapshot!("file_list", files(out.path()).join("\n"));
    for (host, path) in [
        ("pg1", "etc/postgresql/15/main/conf.d/pgha.conf"),
        ("pg1", "etc/postgresql/15/main/pg_hba.conf"),
        ("pg1", "etc/postgresql/15/main/postgresql.conf"),
        ("pg1", "var/lib/postgresql/.pgpass"),
        ("pg1", "etc/postgresql-common/createcluster.conf"),
        ("pg3", "etc/postgresql/15/main/conf.d/pgha-standby.conf"),
    ] {
        let name = format!("{host}_{}", path.replace('/', "_"));
        insta::assert_snapshot!(name, read(out.path(), host, path));
    }
}

#[test]
fn every_file_carries_the_managed_header() {
    let out = tempfile::tempdir().expect("tempdir");
    render(out.path(), &[], &[]);
    // A certificate is the CA's own text, byte for byte.
    for f in files(out.path())
        .into_iter()
        .filter(|f| !f.ends_with(".crt"))
    {
        let text = std::fs::read_to_string(out.path().join(&f)).expect("read");
        assert!(
            text.starts_with("# Managed by pgha"),
            "{f} lacks the header:\n{text}"
        );
    }
}

#[test]
fn output_is_byte_for_byte_deterministic() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    render(a.path(), &[], &[]);
    render(b.path(), &[], &[]);
    let list = files(a.path());
    assert_eq!(list, files(b.path()));
    for f in list {
        assert_eq!(
            std::fs::read(a.path().join(&f)).expect("a"),
            std::fs::read(b.path().join(&f)).expect("b"),
            "{f}"
        );
    }
}

#[test]
fn secrets_are_masked_unless_asked_for() {
    let masked = tempfile::tempdir().expect("tempdir");
    render(masked.path(), &[], &[]);
    let pgpass = read(masked.path(), "pg2", "var/lib/postgresql/.pgpass");
    assert!(pgpass.contains("replicator:(sensitive)"), "{pgpass}");

    let shown = tempfile::tempdir().expect("tempdir");
    let secrets = [
        ("PGHA_REPLICATION_PASSWORD", "repl:pass\\word-42"),
        ("PGHA_SUPERUSER_PASSWORD", "super-secret-42"),
        ("PGHA_APP_PASSWORD", "app-secret-42"),
    ];
    let stdout = render(shown.path(), &["--show-secrets"], &secrets);
    assert!(
        !stdout.contains("repl:pass"),
        "stdout must not show secrets: {stdout}"
    );
    let pgpass = read(shown.path(), "pg2", "var/lib/postgresql/.pgpass");
    // `.pgpass` escapes `:` and `\` inside a field.
    assert!(
        pgpass.contains("10.77.0.11:5432:replication:replicator:repl\\:pass\\\\word-42"),
        "{pgpass}"
    );
}

#[test]
fn show_secrets_without_the_secrets_fails_and_writes_nothing() {
    let out = tempfile::tempdir().expect("tempdir");
    let target = out.path().join("rendered");
    Test::new()
        .args(["render", "-i"])
        .arg_path(&root().join("inventory.example"))
        .args(["--show-secrets", "--out"])
        .arg_path(&target)
        .env("PGHA_REPLICATION_PASSWORD", "")
        .status(1)
        .stderr_has("PGHA_APP_PASSWORD is not set")
        .run();
    assert!(!target.exists());
}

/// Files are written host by host: an error on a later host (here a template that fails on the
/// standbys only) must still leave nothing behind, not even the folders it would have made.
#[test]
fn an_error_on_a_later_host_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = dir.path().join("templates/postgresql");
    std::fs::create_dir_all(&templates).expect("mkdir");
    std::fs::write(
        templates.join("pgha.conf.j2"),
        "# {{ managed_header }}\n{% if host.role == 'standby' %}{{ no_such_variable }}{% endif %}\n",
    )
    .expect("write");
    let target = dir.path().join("new/rendered");
    Test::new()
        .args(["render", "-i"])
        .arg_path(&root().join("inventory.example"))
        .args(["--templates"])
        .arg_path(&dir.path().join("templates"))
        .args(["--out"])
        .arg_path(&target)
        .status(1)
        .stderr_has("pg2: step `server parameters`")
        .run();
    assert!(!dir.path().join("new").exists());

    // Into a folder that holds files already: theirs stay, nothing of ours is added.
    let existing = dir.path().join("existing");
    std::fs::create_dir_all(existing.join("pg1")).expect("mkdir");
    std::fs::write(existing.join("pg1/keep"), "mine").expect("write");
    Test::new()
        .args(["render", "-i"])
        .arg_path(&root().join("inventory.example"))
        .args(["--templates"])
        .arg_path(&dir.path().join("templates"))
        .args(["--out"])
        .arg_path(&existing)
        .status(1)
        .run();
    assert_eq!(files(&existing), ["pg1/keep"]);
}

#[test]
fn rendering_again_replaces_the_files_and_keeps_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    render(&out, &[], &[]);
    std::fs::write(out.join("pg1/etc/postgresql/15/main/pg_hba.conf"), "edited").expect("write");
    std::fs::write(out.join("notes.txt"), "mine").expect("write");
    let before = files(&out);
    render(&out, &[], &[]);
    assert_eq!(files(&out), before);
    assert!(
        read(&out, "pg1", "etc/postgresql/15/main/pg_hba.conf").starts_with("# Managed by pgha")
    );
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).expect("read"),
        "mine"
    );
}

#[test]
fn a_template_override_replaces_the_built_in_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = dir.path().join("templates/postgresql");
    std::fs::create_dir_all(&templates).expect("mkdir");
    std::fs::write(
        templates.join("pgha.conf.j2"),
        "# {{ managed_header }}\n# site override for {{ host.name }}\nshared_buffers = '1GB'\n",
    )
    .expect("write");
    let out = dir.path().join("out");
    Test::new()
        .args(["render", "-i"])
        .arg_path(&root().join("inventory.example"))
        .args(["--templates"])
        .arg_path(&dir.path().join("templates"))
        .args(["--out"])
        .arg_path(&out)
        .run();
    assert_eq!(
        read(&out, "pg2", "etc/postgresql/15/main/conf.d/pgha.conf"),
        "# Managed by pgha: local edits are shown by `pgha plan` and overwritten by `pgha apply`.\n# site override for pg2\nshared_buffers = '1GB'\n"
    );
}

/// The Patroni flavour's files, from `inventory.patroni.example` with a watchdog and a
/// standby cluster switched on: what a DBA reviews before the first apply. The watchdog is
/// only ever tested this way: loading softdog on a test machine would arm the real kernel's.
#[test]
fn renders_the_patroni_flavour_with_watchdog_and_standby_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example =
        std::fs::read_to_string(root().join("inventory.patroni.example")).expect("example");
    let text = [
        (
            "    mode: \"off\"\n    device:",
            "    mode: required\n    device:",
        ),
        ("    load_softdog: false\n", "    load_softdog: true\n"),
        ("  # standby_cluster:\n  #   host: 10.78.0.11\n  #   port: 5432\n  #   primary_slot_name: site_b\n",
         "  standby_cluster:\n    host: 10.78.0.11\n    port: 5432\n    primary_slot_name: site_b\n"),
        ("  permanent_slots: []\n", "  permanent_slots: [site_c]\n"),
    ]
    .iter()
    .fold(example, |t, (from, to)| {
        assert_eq!(t.matches(from).count(), 1, "{from:?}");
        t.replace(from, to)
    });
    let inventory = dir.path().join("inventory.yml");
    std::fs::write(&inventory, text).expect("write");
    let out = dir.path().join("out");
    Test::new()
        .args(["render", "-i"])
        .arg_path(&inventory)
        .args(["--out"])
        .arg_path(&out)
        .stdout_has("Rendered 33 files for 3 hosts")
        .run();
    insta::assert_snapshot!("patroni_file_list", files(&out).join("\n"));
    for (host, path) in [
        ("pg3", "etc/patroni/15-main.yml"),
        ("pg3", "etc/default/etcd"),
        ("pg3", "etc/modules-load.d/pgha-softdog.conf"),
        ("pg3", "etc/udev/rules.d/61-pgha-watchdog.rules"),
        ("pg3", "etc/profile.d/pgha-patronictl.sh"),
        ("pg3", "etc/patroni/pgha-callback.py"),
    ] {
        let name = format!("patroni_{host}_{}", path.replace('/', "_"));
        insta::assert_snapshot!(name, read(&out, host, path));
    }
    let config = read(&out, "pg3", "etc/patroni/15-main.yml");
    for needle in [
        "  mode: \"required\"",
        "  safety_margin: 5",
        "  replicatefrom: \"pg2\"",
        "    standby_cluster:\n      host: \"10.78.0.11\"",
        "    slots:\n      site_c: {type: physical}",
        "  basebackup:\n    checkpoint: fast",
        "      password: (sensitive)",
    ] {
        assert!(
            config.contains(needle),
            "patroni.yml lacks {needle:?}:\n{config}"
        );
    }
}

/// An example inventory with `edits` made (each `from` once) and `tail` appended, rendered;
/// the output folder.
fn render_edited(
    dir: &Path,
    example: &str,
    edits: &[(&str, &str)],
    tail: &str,
    rendered: &str,
) -> std::path::PathBuf {
    let text = std::fs::read_to_string(root().join(example)).expect("example");
    let text = edits.iter().fold(text, |t, (from, to)| {
        assert_eq!(t.matches(from).count(), 1, "{from:?}");
        t.replace(from, to)
    });
    let inventory = dir.join("inventory.yml");
    std::fs::write(&inventory, format!("{text}{tail}")).expect("write");
    let out = dir.join("out");
    Test::new()
        .args(["render", "-i"])
        .arg_path(&inventory)
        .args(["--out"])
        .arg_path(&out)
        .stdout_has(rendered)
        .run();
    out
}

#[test]
fn objectives_reach_patroni_yml_and_haproxy_cfg() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = render_edited(
        dir.path(),
        "inventory.patroni.example",
        &[
            ("  ttl: 20\n  loop_wait: 10\n  retry_timeout: 5\n", ""),
            ("  synchronous_mode: false\n", ""),
        ],
        "objectives:\n  rto: 30s\n  rpo: 0\nrouting:\n  haproxy: {hosts: [pg1, pg2]}\n",
        "for 3 hosts",
    );
    let config = read(&out, "pg3", "etc/patroni/15-main.yml");
    // rto 30 s with haproxy checking every 0.5 s: ttl 20 + loop_wait 3 + ~3 s + 1 s = 27 s.
    for needle in [
        "    ttl: 20\n",
        "    loop_wait: 3\n",
        "    retry_timeout: 8\n",
        "    synchronous_mode: true\n",
        "    synchronous_mode_strict: false\n",
    ] {
        assert!(
            config.contains(needle),
            "patroni.yml lacks {needle:?}:\n{config}"
        );
    }
    let haproxy = read(&out, "pg1", "etc/haproxy/haproxy.cfg");
    assert!(
        haproxy
            .contains("default-server inter 500ms fastinter 500ms downinter 500ms fall 2 rise 1"),
        "{haproxy}"
    );
}

#[test]
fn objectives_reach_repmgr_conf() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = render_edited(
        dir.path(),
        "inventory.repmgr.example",
        &[(
            "  monitor_interval_secs: 2\n  reconnect_attempts: 4\n  reconnect_interval: 5\n",
            "",
        )],
        "objectives:\n  rto: 60s\n",
        "for 4 hosts",
    );
    let config = read(&out, "pg2", "etc/repmgr.conf");
    // rto 60 s, no route: 2 + 2 + 6·2 + 5·7 = 51 s of detection + ~3 s.
    for needle in [
        "monitor_interval_secs=2\n",
        "reconnect_attempts=6\n",
        "reconnect_interval=7\n",
    ] {
        assert!(
            config.contains(needle),
            "repmgr.conf lacks {needle:?}:\n{config}"
        );
    }
}

/// A proxy host (`role: proxy`) gets haproxy's files and nothing of the flavour's, for every
/// flavour; the data hosts get no rule and no password for its address.
#[test]
fn a_proxy_host_renders_only_haproxy() {
    for example in [
        "inventory.example",
        "inventory.patroni.example",
        "inventory.repmgr.example",
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = render_edited(
            dir.path(),
            example,
            &[("\nhosts:\n", "\nrouting:\n  haproxy: {}\nhosts:\n")],
            "  - {name: px1, address: 10.77.0.20, role: proxy}\n",
            "Rendered",
        );
        assert_eq!(
            files(&out.join("px1")),
            ["etc/haproxy/haproxy.cfg", "etc/haproxy/pgha-ca.crt"],
            "{example}"
        );
        let cfg = read(&out, "px1", "etc/haproxy/haproxy.cfg");
        assert!(
            cfg.contains("server pg1 10.77.0.11:5432 check port")
                && cfg.contains("ca-file /etc/haproxy/pgha-ca.crt"),
            "{example}: {cfg}"
        );
        // haproxy runs on the proxy host only (the hosts were left out).
        assert!(!out.join("pg1/etc/haproxy").exists(), "{example}");
        for host in ["pg1", "pg2", "pg3"] {
            for f in files(&out.join(host)) {
                let text = read(&out, host, &f);
                assert!(
                    !text.contains("10.77.0.20"),
                    "{example}: {host}/{f} names the proxy host:\n{text}"
                );
            }
        }
    }
}

/// The extensions a TimescaleDB inventory adds on streaming, rendered as for hosts whose
/// facts say 8 GB and 4 CPUs (pg1, pg2) and 4 GB and 2 CPUs (pg3): TimescaleDB's repository
/// cannot be reached from here, so its sources, key, pins and tuning are checked as files.
const TIMESCALEDB: &str = "
extensions:
  - preset: timescaledb
    database: appdb
    key: keys/timescaledb.asc
    parameters:
      timescaledb.telemetry_level: \"off\"
  - name: pg_cron
    database: appdb
    package: postgresql-15-cron
    preload: true
    parameters:
      cron.database_name: appdb
";

const FACTS: &str = r#"{
  "pg1": {"hardware": {"memory": 8589934592, "cpus": 4}},
  "pg2": {"hardware": {"memory": 8589934592, "cpus": 4}},
  "pg3": {"hardware": {"memory": 4294967296, "cpus": 2}}
}"#;

/// An example inventory with the TimescaleDB extensions, rendered with the facts above.
fn render_timescaledb(dir: &Path, example: &str, rendered: &str) -> std::path::PathBuf {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).expect("keys");
    std::fs::copy(
        root().join("tests/fixtures/keys/test-repository.asc"),
        keys.join("timescaledb.asc"),
    )
    .expect("key");
    let facts = dir.join("facts.json");
    std::fs::write(&facts, FACTS).expect("facts");
    let text = std::fs::read_to_string(root().join(example)).expect("example") + TIMESCALEDB;
    let inventory = dir.join("inventory.yml");
    std::fs::write(&inventory, text).expect("write");
    let out = dir.join("out");
    Test::new()
        .args(["render", "-i"])
        .arg_path(&inventory)
        .args(["--out"])
        .arg_path(&out)
        .args(["--facts"])
        .arg_path(&facts)
        .stdout_has(rendered)
        .run();
    out
}

#[test]
fn renders_the_timescaledb_preset_with_its_source_pins_and_tuning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = render_timescaledb(dir.path(), "inventory.example", "for 3 hosts");
    for path in [
        "etc/apt/sources.list.d/pgha-timescaledb.sources",
        "etc/apt/preferences.d/pgha-timescaledb.pref",
        "etc/postgresql/15/main/conf.d/pgha.conf",
    ] {
        let name = format!("timescaledb_pg1_{}", path.replace('/', "_"));
        insta::assert_snapshot!(name, read(&out, "pg1", path));
    }
    // The key is the user's file, byte for byte, where Signed-By points: never trusted.gpg.d.
    assert_eq!(
        read(&out, "pg1", "etc/apt/keyrings/pgha-timescaledb.asc"),
        std::fs::read_to_string(root().join("tests/fixtures/keys/test-repository.asc"))
            .expect("key")
    );
    assert!(!files(&out).iter().any(|f| f.contains("trusted.gpg")));
    let conf = read(&out, "pg3", "etc/postgresql/15/main/conf.d/pgha.conf");
    for needle in [
        // The user's libraries (none here) first, then the extensions' in the order declared.
        "shared_preload_libraries = 'timescaledb,pg_cron'",
        // The smallest data host decides: pg3's 4 GB and 2 CPUs.
        "effective_cache_size = '3GB'",
        "max_worker_processes = '21'",
        "timescaledb.max_background_workers = '16'",
        "max_locks_per_transaction = '128'",
        // postgres.parameters win over the preset's values.
        "shared_buffers = '256MB'",
        // An extension's own parameters.
        "timescaledb.telemetry_level = 'off'",
        "cron.database_name = 'appdb'",
    ] {
        assert!(conf.contains(needle), "pgha.conf lacks {needle:?}:\n{conf}");
    }
    assert!(!conf.contains("shared_buffers = '1GB'"), "{conf}");
}

#[test]
fn without_facts_the_timescaledb_tuning_is_left_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).expect("keys");
    std::fs::copy(
        root().join("tests/fixtures/keys/test-repository.asc"),
        keys.join("timescaledb.asc"),
    )
    .expect("key");
    let text =
        std::fs::read_to_string(root().join("inventory.example")).expect("example") + TIMESCALEDB;
    let inventory = dir.path().join("inventory.yml");
    std::fs::write(&inventory, text).expect("write");
    let out = dir.path().join("out");
    Test::new()
        .args(["render", "-i"])
        .arg_path(&inventory)
        .args(["--out"])
        .arg_path(&out)
        .run();
    let conf = read(&out, "pg1", "etc/postgresql/15/main/conf.d/pgha.conf");
    assert!(conf.contains("shared_preload_libraries = 'timescaledb,pg_cron'"));
    assert!(!conf.contains("max_worker_processes"), "{conf}");
}

/// Under Patroni the same parameters go to the DCS (patroni.yml's bootstrap and pgha's
/// PATCH read the same settings): nothing in postgresql.conf.
#[test]
fn under_patroni_the_timescaledb_parameters_are_patronis() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = render_timescaledb(dir.path(), "inventory.patroni.example", "for 3 hosts");
    let config = read(&out, "pg1", "etc/patroni/15-main.yml");
    for needle in [
        "shared_preload_libraries: \"timescaledb,pg_cron\"",
        "max_worker_processes: \"21\"",
        "timescaledb.max_background_workers: \"16\"",
        "cron.database_name: \"appdb\"",
    ] {
        assert!(
            config.contains(needle),
            "patroni.yml lacks {needle:?}:\n{config}"
        );
    }
    assert!(files(&out)
        .iter()
        .any(|f| f == "pg1/etc/apt/sources.list.d/pgha-timescaledb.sources"));
}
