//! Package sources and extensions on real hosts: a local apt repository built here (a small
//! package carrying a SQL-only extension, its Release signed with a key made here) declared
//! as a package source; Debian's pg_cron preloaded beside the user's library and repmgr's,
//! the restart made standbys first. Both converge: a second plan shows nothing to do.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::cluster::{Options, Sandbox};

#[track_caller]
fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut c = Command::new(program);
    c.args(args).current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A flat apt repository in `dir/repo` with one package, `pgha-test-ext` 1.0-1, that installs
/// the extension `pgha_test` (a control file and a SQL script); its InRelease signed by a key
/// made here, whose public half is written to `dir/keys/pgha-test.asc`.
fn build_repository(dir: &Path) {
    let root = dir.join("pkg");
    let ext = root.join("usr/share/postgresql/15/extension");
    std::fs::create_dir_all(&ext).expect("extension folder");
    std::fs::create_dir_all(root.join("DEBIAN")).expect("DEBIAN");
    std::fs::write(
        ext.join("pgha_test.control"),
        "comment = 'pgha test extension'\ndefault_version = '1.0'\nrelocatable = true\n",
    )
    .expect("control");
    std::fs::write(
        ext.join("pgha_test--1.0.sql"),
        "CREATE FUNCTION pgha_test_answer() RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT 42';\n",
    )
    .expect("sql");
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: pgha-test-ext\nVersion: 1.0-1\nArchitecture: all\nMaintainer: pgha tests <tests@pgha.invalid>\nDepends: postgresql-15\nDescription: pgha test extension\n a SQL-only extension for pgha's tests\n",
    )
    .expect("DEBIAN/control");
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).expect("repo");
    run(
        dir,
        "dpkg-deb",
        &[
            "--root-owner-group",
            "-Zgzip",
            "--build",
            "pkg",
            "repo/pgha-test-ext_1.0-1_all.deb",
        ],
        &[],
    );
    let packages = run(&repo, "dpkg-scanpackages", &["--multiversion", "."], &[]);
    std::fs::write(repo.join("Packages"), &packages).expect("Packages");
    let sha = run(&repo, "sha256sum", &["Packages"], &[]);
    let hash = sha.split_whitespace().next().expect("hash");
    let date = run(&repo, "date", &["-Ru"], &[]);
    std::fs::write(
        repo.join("Release"),
        format!(
            "Origin: pgha-test\nLabel: pgha-test\nDate: {}\nSHA256:\n {hash} {} Packages\n",
            date.trim(),
            packages.len()
        ),
    )
    .expect("Release");
    let home = tempfile::tempdir().expect("GNUPGHOME");
    let gnupg: &[(&str, &Path)] = &[("GNUPGHOME", home.path())];
    run(
        dir,
        "gpg",
        &[
            "--batch",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            "pgha test repository <repo@pgha.invalid>",
            "ed25519",
            "sign",
            "1d",
        ],
        gnupg,
    );
    run(
        &repo,
        "gpg",
        &[
            "--batch",
            "--yes",
            "--clearsign",
            "--output",
            "InRelease",
            "Release",
        ],
        gnupg,
    );
    std::fs::create_dir_all(dir.join("keys")).expect("keys");
    let public = run(
        dir,
        "gpg",
        &["--batch", "--armor", "--export", "repo@pgha.invalid"],
        gnupg,
    );
    std::fs::write(dir.join("keys/pgha-test.asc"), public).expect("public key");
    // gpg's agent for this home ends with it.
    let _ = Command::new("gpgconf")
        .args(["--kill", "gpg-agent"])
        .env("GNUPGHOME", home.path())
        .status();
}

/// Bytes as the TimescaleDB tuning writes them.
fn timescale_bytes(bytes: u64) -> String {
    pgha::components::extensions::timescaledb::pg_bytes(bytes)
}

/// The repository onto a host, readable by apt's unprivileged fetcher.
fn copy_repository(sb: &Sandbox, host: &str, repo: &Path) {
    let container = sb.container(host);
    let ok = Command::new("docker")
        .args([
            "cp",
            &repo.display().to_string(),
            &format!("{container}:/srv/pgha-repo"),
        ])
        .status()
        .expect("docker cp")
        .success();
    assert!(ok, "docker cp to {host}");
    sb.sh(
        host,
        "chown -R root:root /srv/pgha-repo && chmod -R a+rX /srv/pgha-repo",
    );
}

/// A local signed repository declared as a package source on streaming: the package comes
/// from it through its own key, the extension it carries is created in the named database on
/// the primary (and reaches the standby), and a second plan and apply find nothing to do.
#[test]
fn a_local_signed_repository_provides_an_extension_on_streaming() {
    let started = Instant::now();
    let sb = Sandbox::up("extrepo", Options::packaged(2));
    let folder = sb
        .inventory()
        .parent()
        .expect("inventory folder")
        .to_path_buf();
    let build = tempfile::tempdir().expect("build folder");
    build_repository(build.path());
    std::fs::create_dir_all(folder.join("keys")).expect("keys");
    std::fs::copy(
        build.path().join("keys/pgha-test.asc"),
        folder.join("keys/pgha-test.asc"),
    )
    .expect("key beside the inventory");
    for host in ["pg1", "pg2"] {
        copy_repository(&sb, host, &build.path().join("repo"));
    }
    sb.edit_inventory(
        "packages: []\n",
        "packages: []\n\
         package_sources:\n  - name: pgha-test\n    uris: file:/srv/pgha-repo\n    suites: ./\n    key: keys/pgha-test.asc\n    pin: {pgha-test-ext: 1.0-1}\n\
         extensions:\n  - name: pgha_test\n    database: appdb\n    package: pgha-test-ext\n",
    );
    sb.pgha(["apply", "-y"]).run();
    for host in ["pg1", "pg2"] {
        let sources = sb.sh(host, "cat /etc/apt/sources.list.d/pgha-pgha-test.sources");
        assert!(
            sources.contains("Signed-By: /etc/apt/keyrings/pgha-pgha-test.asc\n"),
            "{sources}"
        );
        assert_eq!(
            sb.sh(host, "dpkg-query -W -f '${Version}' pgha-test-ext"),
            "1.0-1"
        );
        // Scoped to its source: no key of it among those every source trusts.
        assert_eq!(
            sb.sh(host, "ls /etc/apt/trusted.gpg.d | grep -c pgha || true")
                .trim(),
            "0"
        );
        // apt verified the signature with that key (it would refuse an unsigned source).
        let policy = sb.sh(host, "apt-cache policy pgha-test-ext");
        assert!(policy.contains("1001"), "the pin: {policy}");
    }
    let answer = |host: &str| {
        sb.sh(
            host,
            "cd / && runuser -u postgres -- psql -X -At -d appdb -c 'SELECT pgha_test_answer()'",
        )
        .trim()
        .to_owned()
    };
    assert_eq!(answer("pg1"), "42");
    sb.wait_until(
        "the extension reaches the standby",
        std::time::Duration::from_secs(30),
        || answer("pg2") == "42",
    );
    sb.assert_converged();
    // The hosts' hardware is in the facts, and the TimescaleDB preset's tuning in a plan
    // follows it (its repository cannot be reached from here: planned, never applied).
    let facts_text = sb.pgha(["facts"]).run().stdout;
    let facts: serde_json::Value = serde_json::from_str(&facts_text).expect("facts JSON");
    let memory = facts["pg1"]["hardware"]["memory"].as_u64().expect("memory");
    let cpus = facts["pg1"]["hardware"]["cpus"].as_u64().expect("cpus");
    assert!(
        memory > 256 << 20 && cpus >= 1,
        "{memory} bytes, {cpus} CPUs"
    );
    std::fs::copy(
        folder.join("keys/pgha-test.asc"),
        folder.join("keys/timescaledb.asc"),
    )
    .expect("a stand-in key");
    let timescale = folder.join("inventory-timescaledb.yml");
    std::fs::write(
        &timescale,
        sb.inventory_text().replace(
            "extensions:\n",
            "extensions:\n  - preset: timescaledb\n    database: appdb\n    key: keys/timescaledb.asc\n",
        ),
    )
    .expect("write");
    sb.pgha_on(&timescale, ["plan"])
        .stdout_has("CPUs (the smallest data host")
        .stdout_has("timescaledb.max_background_workers")
        .stdout_has(
            "packages pinned from source timescaledb: timescaledb-2-loader-postgresql-15 2.28.*",
        )
        .run();
    // The same facts, saved, render the tuning offline.
    let saved = folder.join("facts.json");
    std::fs::write(&saved, &facts_text).expect("facts file");
    let out = folder.join("rendered");
    let (out_arg, facts_arg) = (out.display().to_string(), saved.display().to_string());
    sb.pgha_on(
        &timescale,
        ["render", "--out", &out_arg, "--facts", &facts_arg],
    )
    .run();
    let conf = std::fs::read_to_string(out.join("pg1/etc/postgresql/15/main/conf.d/pgha.conf"))
        .expect("pgha.conf");
    let cache = timescale_bytes(memory * 3 / 4);
    assert!(
        conf.contains("shared_preload_libraries = 'timescaledb'")
            && conf.contains(&format!("effective_cache_size = '{cache}'"))
            // postgres.parameters win: the sandbox's 128MB stays.
            && conf.contains("shared_buffers = '128MB'"),
        "the tuning for {memory} bytes:\n{conf}"
    );
    eprintln!(
        "local repository on streaming: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Debian's pg_cron under Patroni, added to a running cluster: the preload and pg_cron's
/// parameter go through the DCS, Patroni restarts the replicas before the leader, and the
/// cluster converges.
#[test]
fn pg_cron_under_patroni_goes_through_the_dcs() {
    let started = Instant::now();
    let sb = Sandbox::patroni("extpat", 3);
    sb.pgha(["apply", "-y"]).run();
    let primary = ["pg1", "pg2", "pg3"]
        .into_iter()
        .find(|h| sb.psql(h, "SELECT pg_is_in_recovery()") == "f")
        .expect("a primary");
    let replicas: Vec<&str> = ["pg1", "pg2", "pg3"]
        .into_iter()
        .filter(|h| *h != primary)
        .collect();
    sb.edit_inventory(
        "packages: []\n",
        "packages: []\n\
         extensions:\n  - name: pg_cron\n    database: appdb\n    package: postgresql-15-cron\n    preload: true\n    parameters:\n      cron.database_name: appdb\n",
    );
    sb.pgha(["plan"])
        .stdout_has("shared_preload_libraries = 'pg_cron'")
        .run();
    sb.pgha(["apply", "-y"]).run();
    let start = |h: &str| sb.psql(h, "SELECT pg_postmaster_start_time()");
    let leader_start = start(primary);
    for host in ["pg1", "pg2", "pg3"] {
        assert_eq!(sb.psql(host, "SHOW shared_preload_libraries"), "pg_cron");
        assert_eq!(sb.psql(host, "SHOW cron.database_name"), "appdb");
    }
    for r in &replicas {
        let replica_start = start(r);
        let first = sb.psql(
            primary,
            &format!("SELECT '{replica_start}'::timestamptz < '{leader_start}'::timestamptz"),
        );
        assert_eq!(
            first, "t",
            "{r} ({replica_start}) restarted before the leader {primary} ({leader_start})"
        );
    }
    // The DCS holds it: Patroni's own view of the configuration.
    let config = sb.sh(
        primary,
        ". /etc/profile.d/pgha-patronictl.sh && patronictl show-config",
    );
    assert!(
        config.contains("shared_preload_libraries: pg_cron"),
        "{config}"
    );
    // Where a leader is handed over for its restart, the extension is on the new one.
    let now_primary = ["pg1", "pg2", "pg3"]
        .into_iter()
        .find(|h| sb.psql(h, "SELECT pg_is_in_recovery()") == "f")
        .expect("a primary");
    let created = sb.sh(
        now_primary,
        "cd / && runuser -u postgres -- psql -X -At -d appdb -c \"SELECT extname FROM pg_extension WHERE extname = 'pg_cron'\"",
    );
    assert_eq!(created.trim(), "pg_cron");
    sb.assert_converged();
    eprintln!(
        "pg_cron under Patroni: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Debian's pg_cron on repmgr, added to a running cluster: `shared_preload_libraries` keeps
/// the user's library and repmgr's, the plan says a restart is needed, the standby restarts
/// before the primary, pg_cron is created in the named database, and the cluster converges.
#[test]
fn pg_cron_is_preloaded_beside_the_users_and_repmgrs_libraries() {
    let started = Instant::now();
    let sb = Sandbox::repmgr("extcron", 2);
    sb.edit_inventory(
        "    wal_log_hints: \"on\"\n",
        "    wal_log_hints: \"on\"\n    shared_preload_libraries: pg_stat_statements\n",
    );
    sb.pgha(["apply", "-y"]).run();
    let before_primary = sb.psql("pg1", "SELECT pg_postmaster_start_time()");
    let before_standby = sb.psql("pg2", "SELECT pg_postmaster_start_time()");
    sb.edit_inventory(
        "packages: []\n",
        "packages: []\n\
         extensions:\n  - name: pg_cron\n    database: appdb\n    package: postgresql-15-cron\n    preload: true\n    parameters:\n      cron.database_name: appdb\n",
    );
    sb.pgha(["plan"])
        .stdout_has("shared_preload_libraries = 'pg_stat_statements,pg_cron,repmgr'")
        .stdout_has("needs a restart")
        .stdout_has("shared_preload_libraries: pg_stat_statements,repmgr -> pg_stat_statements,pg_cron,repmgr (context postmaster)")
        .run();
    sb.pgha(["apply", "-y"]).run();
    for host in ["pg1", "pg2"] {
        assert_eq!(
            sb.psql(host, "SHOW shared_preload_libraries"),
            "pg_stat_statements,pg_cron,repmgr"
        );
    }
    let primary = sb.psql("pg1", "SELECT pg_postmaster_start_time()");
    let standby = sb.psql("pg2", "SELECT pg_postmaster_start_time()");
    assert_ne!(primary, before_primary, "the primary restarted");
    assert_ne!(standby, before_standby, "the standby restarted");
    let first = sb.psql(
        "pg1",
        &format!("SELECT '{standby}'::timestamptz < '{primary}'::timestamptz"),
    );
    assert_eq!(
        first, "t",
        "the standby ({standby}) restarted before the primary ({primary})"
    );
    let created = sb.sh(
        "pg1",
        "cd / && runuser -u postgres -- psql -X -At -d appdb -c \"SELECT extname FROM pg_extension WHERE extname = 'pg_cron'\"",
    );
    assert_eq!(created.trim(), "pg_cron");
    // repmgr still runs its nodes; verify proves the library loaded and the extension there.
    sb.pgha(["verify"])
        .stdout_has("extension pg_cron in appdb")
        .stdout_has("extension libraries loaded")
        .run();
    sb.assert_converged();
    eprintln!(
        "pg_cron on repmgr: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
