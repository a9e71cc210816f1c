//! TLS on PostgreSQL's wire with the cluster's own CA (`pgha tls init`, `tls:` in the
//! inventory): every host gets a certificate signed by it, clients and replication check the
//! server (`sslmode=verify-full`), pgha's own network rules take TLS connections only, and a
//! certificate inside the renewal window is renewed as a planned change.

use std::process::Command;

use crate::cluster::{Options, Sandbox};

/// The certificate PostgreSQL on `host` serves, as openssl prints its serial.
fn served_serial(sb: &Sandbox, host: &str) -> String {
    sb.sh(
        host,
        &format!(
            "echo | openssl s_client -starttls postgres -connect {}:5432 2>/dev/null | openssl x509 -noout -serial",
            sb.ip(host)
        ),
    )
    .trim()
    .to_owned()
}

/// `pgha tls init` beside the sandbox's inventory and a `tls:` section naming it (`extra`:
/// more of its keys); the CA key's text.
fn with_cluster_ca(sb: &Sandbox, extra: &str) -> String {
    let dir = sb.inventory().parent().expect("sandbox dir").join("tls");
    let init = Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(["tls", "init", "--name", "tls-test", "--dir"])
        .arg(&dir)
        .output()
        .expect("pgha tls init");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let key = std::fs::read_to_string(dir.join("ca.key")).expect("the CA key");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("ca.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the CA key is the owner's alone");
    assert!(
        !String::from_utf8_lossy(&init.stdout).contains("PRIVATE KEY"),
        "the key is never printed"
    );
    let mut inventory = sb.inventory_text();
    inventory.push_str(&format!(
        "\ntls:\n  ca_cert: tls/ca.crt\n  ca_key: {{file: tls/ca.key}}\n{extra}"
    ));
    std::fs::write(sb.inventory(), inventory).expect("inventory");
    key
}

/// Replication connections to `primary` that use TLS.
fn encrypted_streams(sb: &Sandbox, primary: &str) -> String {
    sb.psql(
        primary,
        "SELECT count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE s.ssl",
    )
}

#[test]
fn streaming_with_the_cluster_ca_verifies_every_connection() {
    let sb = Sandbox::up("tls", Options::packaged(3));
    // Every certificate also names what clients call the cluster (a VIP, a DNS name).
    let key = with_cluster_ca(
        &sb,
        "  validity_days: 5\n  renew_before_days: 1\n  names: [db.cluster.internal]\n",
    );

    let plan = sb
        .pgha(["plan"])
        .stdout_has("no certificate yet")
        .stdout_has("db.cluster.internal")
        .run();
    let apply = sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    for text in [&plan.stdout, &plan.stderr, &apply.stdout, &apply.stderr] {
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert!(!text.contains(key.lines().nth(1).unwrap_or("?")), "{text}");
    }
    sb.assert_plan_clean();

    let san = sb.sh(
        "pg1",
        "openssl x509 -noout -ext subjectAltName -in /etc/postgresql/15/main/tls/server.crt",
    );
    assert!(san.contains("DNS:db.cluster.internal"), "{san}");

    // Replication is encrypted and checked the server's name.
    assert_eq!(encrypted_streams(&sb, "pg1"), "2");
    let conninfo = sb.sh(
        "pg2",
        "cat /etc/postgresql/15/main/conf.d/pgha-standby.conf",
    );
    assert!(conninfo.contains("sslmode=verify-full"), "{conninfo}");
    // A client that checks the server gets in; one without TLS is refused by pg_hba.
    let password = sb.env_value("PGHA_REPLICATION_PASSWORD");
    let psql = |mode: &str| {
        sb.sh(
            "pg2",
            &format!(
                "PGPASSWORD='{password}' psql -X -At \"host={} user=replicator dbname=postgres sslmode={mode} sslrootcert=/etc/postgresql/15/main/tls/ca.crt\" -c 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()' 2>&1 || true",
                sb.ip("pg1")
            ),
        )
    };
    assert_eq!(psql("verify-full").trim(), "t");
    let plain = psql("disable");
    assert!(
        plain.contains("no pg_hba.conf entry") && plain.contains("no encryption"),
        "{plain}"
    );

    // Inside the renewal window: plan says so, apply renews, the server serves the new one.
    let before = served_serial(&sb, "pg1");
    assert!(before.starts_with("serial="), "{before}");
    sb.edit_inventory(
        "validity_days: 5\n  renew_before_days: 1",
        "validity_days: 30\n  renew_before_days: 10",
    );
    sb.pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("renew (expires in 4 days)")
        .run();
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let after = served_serial(&sb, "pg1");
    assert!(
        after.starts_with("serial=") && after != before,
        "{before} -> {after}"
    );
    sb.assert_plan_clean();
}

/// repmgr with the cluster CA: repmgr's own connections and the standbys' replication (which
/// repmgr writes from its conninfo) check the server; the cluster verifies.
#[test]
fn repmgr_with_the_cluster_ca_verifies_replication() {
    let sb = Sandbox::repmgr("rtls", 3);
    with_cluster_ca(&sb, "");
    sb.pgha(["apply", "-y"])
        .stdout_has("19 checks run, 19 passed, 0 failed.")
        .run();
    sb.assert_plan_clean();
    assert_eq!(encrypted_streams(&sb, "pg1"), "2");
    // repmgr quotes the values it copies.
    let conninfo = sb.psql("pg2", "SHOW primary_conninfo").replace('\'', "");
    assert!(
        conninfo.contains("sslmode=verify-full sslrootcert=/etc/postgresql/15/main/tls/ca.crt"),
        "{conninfo}"
    );
}

/// The HTTP status of `method path` on `host`'s Patroni REST API, asked from `from` over TLS
/// checking the cluster CA, with the REST API's password or without.
pub fn rest_status(
    sb: &Sandbox,
    from: &str,
    host: &str,
    method: &str,
    path: &str,
    auth: bool,
) -> String {
    let header = if auth {
        format!(
            "req.add_header('Authorization', 'Basic ' + base64.b64encode(b'patroni:{}').decode())",
            sb.env_value("PGHA_RESTAPI_PASSWORD")
        )
    } else {
        "pass".to_owned()
    };
    let script = format!(
        "import base64, ssl, urllib.request, urllib.error\n\
         ctx = ssl.create_default_context(cafile='{PATRONI_CA}')\n\
         req = urllib.request.Request('https://{}:8008{path}', data=b'{{}}' if '{method}' != 'GET' else None, method='{method}')\n\
         {header}\n\
         try:\n    print(urllib.request.urlopen(req, timeout=60, context=ctx).status)\n\
         except urllib.error.HTTPError as e:\n    print(e.code)\n",
        sb.ip(host)
    );
    sb.sh(from, &format!("python3 -c {}", shell_words::quote(&script)))
        .trim()
        .to_owned()
}

/// The cluster CA on a Patroni member.
pub const PATRONI_CA: &str = "/etc/patroni/tls/ca.crt";

/// `etcdctl endpoint health` from pg2 against `endpoint`, with `args`, as it answers.
fn etcd_health(sb: &Sandbox, endpoint: &str, args: &str) -> String {
    sb.sh(
        "pg2",
        &format!(
            "ETCDCTL_API=3 etcdctl --dial-timeout=2s --command-timeout=3s --endpoints={endpoint} {args} endpoint health 2>&1 || true"
        ),
    )
}

/// etcd refuses a client that checks its certificate but shows none of its own, and the
/// DBA's etcdctl profile (the host's client certificate) reaches all three members.
fn etcd_takes_only_the_cluster_s_clients(sb: &Sandbox) {
    let https = format!("https://{}:2379", sb.ip("pg1"));
    let anonymous = etcd_health(sb, &https, &format!("--cacert={PATRONI_CA}"));
    assert!(!anonymous.contains("is healthy"), "{anonymous}");
    let profiled = sb.sh(
        "pg2",
        ". /etc/profile.d/pgha-etcdctl.sh && etcdctl endpoint health 2>&1",
    );
    assert_eq!(profiled.matches("is healthy").count(), 3, "{profiled}");
}

/// Patroni with the cluster CA: PostgreSQL, etcd (clients and peers) and Patroni's REST API
/// all speak TLS checked against it; etcd refuses a client without a certificate of the CA,
/// the REST API an unsafe request without the password; pgha's own calls (the bootstrap's
/// waits, the DCS settings, verify) and the DBA's etcdctl and patronictl work.
#[test]
fn patroni_with_the_cluster_ca_locks_down_etcd_and_the_rest_api() {
    let sb = Sandbox::patroni("ptls", 3);
    let key = with_cluster_ca(&sb, "");
    let apply = sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    for text in [&apply.stdout, &apply.stderr] {
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert!(!text.contains(key.lines().nth(1).unwrap_or("?")), "{text}");
    }
    sb.assert_plan_clean();
    assert_eq!(encrypted_streams(&sb, "pg1"), "2");

    // etcd: https only, and only with a client certificate of the CA.
    etcd_takes_only_the_cluster_s_clients(&sb);
    let plain = etcd_health(&sb, &format!("http://{}:2379", sb.ip("pg1")), "");
    assert!(!plain.contains("is healthy"), "{plain}");

    // The REST API: reads open (a health check has no password), unsafe requests need it.
    assert_eq!(
        rest_status(&sb, "pg3", "pg1", "GET", "/primary", false),
        "200"
    );
    assert_eq!(
        rest_status(&sb, "pg3", "pg2", "GET", "/replica", false),
        "200"
    );
    assert_eq!(
        rest_status(&sb, "pg3", "pg2", "POST", "/restart", false),
        "401"
    );
    assert_eq!(
        rest_status(&sb, "pg3", "pg2", "POST", "/restart", true),
        "200"
    );
    let listed = sb.sh(
        "pg1",
        ". /etc/profile.d/pgha-patronictl.sh && patronictl list 2>&1",
    );
    assert!(
        listed.matches("| Replica |").count() == 2 && listed.contains("| Leader "),
        "{listed}"
    );

    sb.pgha(["verify"]).stdout_has(", 0 failed.").run();
    sb.assert_plan_clean();
}

/// `pgha apply` while `writer` writes, then the writer stopped: the primary (pg1) was never
/// restarted, no acknowledged write is lost there, writes went on after the apply, and the
/// longest pause between two acknowledged writes during it is reported (as `what`; about a
/// second on a quiet machine) and bounded only loosely: a loaded machine stretches it, a
/// restart is caught by its start time.
fn apply_under_load(sb: &Sandbox, writer: crate::load::Writer, what: &str) {
    let up_since = || sb.psql("pg1", "SELECT pg_postmaster_start_time()");
    let before = up_since();
    let started = std::time::Instant::now();
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let applied = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let acked = writer.stop();
    let gap = acked.longest_gap(started, applied);
    eprintln!(
        "{what}: apply {:.1} s, longest write gap {:.2} s, {} writes acknowledged",
        applied.duration_since(started).as_secs_f64(),
        gap.as_secs_f64(),
        acked.ids.len()
    );
    assert!(
        acked.missing_on(sb, "pg1").is_empty(),
        "acknowledged writes lost"
    );
    assert!(
        acked.after(applied) > 0,
        "the application writes after the apply"
    );
    assert_eq!(up_since(), before, "the primary was restarted");
    assert!(
        gap < std::time::Duration::from_secs(15),
        "write gap {gap:?}"
    );
}

/// The sandbox's inventory as an earlier pgha's: `tls: off`, its application rule `host`.
fn without_tls(inventory: &str) -> String {
    format!(
        "{}\ntls: off\n",
        inventory.replacen("    - type: hostssl\n", "    - type: host\n", 1)
    )
}

/// A streaming cluster built without TLS (as an earlier pgha built every cluster) given the
/// inventory without `tls:` (TLS on by default): plan shows the migration, apply makes the
/// cluster CA, issues the certificates, turns ssl on, makes pgha's network rules `hostssl`
/// and re-points replication at `verify-full`, with an application writing throughout. The
/// longest pause between two acknowledged writes is reported; none is lost.
#[test]
fn a_running_streaming_cluster_takes_tls_in_place_under_load() {
    let sb = Sandbox::up("tlsmig", Options::packaged(3));
    let before = sb.inventory_text();
    std::fs::write(sb.inventory(), without_tls(&before)).expect("inventory");
    sb.pgha(["apply", "-y"])
        .stdout_has("0 failed.")
        .stdout_has("TLS is off")
        .run();
    // (Debian's own snakeoil certificate may still encrypt a stream; nothing checks it.)
    let conninfo = sb.psql("pg2", "SHOW primary_conninfo");
    assert!(!conninfo.contains("verify-full"), "{conninfo}");

    let (conninfo, password) = crate::load::app_conninfo(&sb, &["pg1", "pg2", "pg3"]);
    let writer = crate::load::Writer::start(&conninfo, &password);
    std::thread::sleep(std::time::Duration::from_secs(3));

    std::fs::write(sb.inventory(), &before).expect("inventory");
    let plan = sb
        .pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stderr_has("made the cluster CA in")
        .stdout_has("no certificate yet")
        .stdout_has("hostssl")
        .run();
    assert!(
        plan.stdout.contains("sslmode=verify-full"),
        "{}",
        plan.stdout
    );
    apply_under_load(
        &sb,
        writer,
        "in-place migration to TLS (streaming, 3 hosts)",
    );
    sb.wait_until(
        "both standbys stream over TLS",
        std::time::Duration::from_secs(30),
        || encrypted_streams(&sb, "pg1") == "2",
    );
    sb.pgha(["verify"]).stdout_has(", 0 failed.").run();
    sb.assert_plan_clean();
}

/// A Patroni cluster built without TLS (etcd and the REST API on plain http, `host` rules)
/// given the inventory without `tls:`: plan shows the move as steps in order (Patroni paused,
/// each etcd member moved to https, each Patroni member restarted with TLS, Patroni resumed),
/// apply makes it with an application writing throughout: the leader's PostgreSQL is never
/// restarted nor demoted, no acknowledged write is lost and the longest pause between two is
/// reported. Afterwards etcd and the REST API are locked down as on a cluster built with TLS;
/// moving back to http in place is refused.
#[test]
fn a_running_patroni_cluster_takes_tls_in_place_under_load() {
    let sb = Sandbox::patroni("ptlsmig", 3);
    let before = sb.inventory_text();
    std::fs::write(sb.inventory(), without_tls(&before)).expect("inventory");
    sb.pgha(["apply", "-y"])
        .stdout_has("0 failed.")
        .stdout_has("TLS is off")
        .run();
    sb.assert_plan_clean();
    let leader_since = || {
        sb.psql(
            "pg1",
            "SELECT pg_is_in_recovery() || ' ' || pg_postmaster_start_time()",
        )
    };
    let started_at = leader_since();
    assert!(started_at.starts_with("false "), "{started_at}");

    let (conninfo, password) = crate::load::app_conninfo(&sb, &["pg1", "pg2", "pg3"]);
    let writer = crate::load::Writer::start(&conninfo, &password);
    std::thread::sleep(std::time::Duration::from_secs(3));

    std::fs::write(sb.inventory(), &before).expect("inventory");
    let plan = sb
        .pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("pause Patroni for the move to TLS")
        .stdout_has("resume Patroni after the move to TLS")
        .run();
    let text = &plan.stdout;
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("the plan lacks {needle:?}:\n{text}"))
    };
    for host in ["pg1", "pg2", "pg3"] {
        assert!(
            at("pause Patroni") < at(&format!("move etcd member {host} to https"))
                && at(&format!("move etcd member {host} to https"))
                    < at(&format!("restart Patroni on {host} with TLS")),
            "{text}"
        );
    }
    assert!(text.contains("(3 of 3)"), "{text}");
    assert!(
        at("restart Patroni on pg1 with TLS") < at("resume Patroni"),
        "{text}"
    );

    let started = std::time::Instant::now();
    let apply = sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let applied = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let acked = writer.stop();
    let gap = acked.longest_gap(started, applied);
    // When the longest gap began, beside the moves' timeline.
    let gap_began = acked
        .ids
        .windows(2)
        .filter(|w| w[1].1 >= started && w[0].1 <= applied)
        .max_by_key(|w| w[1].1.duration_since(w[0].1))
        .map(|w| w[0].1.saturating_duration_since(started).as_secs_f64())
        .unwrap_or(0.0);
    for line in apply
        .stdout
        .lines()
        .chain(apply.stderr.lines())
        .filter(|l| {
            l.starts_with('[')
                && ["TLS", "https", "restart etcd", "reload"]
                    .iter()
                    .any(|w| l.contains(w))
        })
    {
        eprintln!("{}", line.chars().take(160).collect::<String>());
    }
    eprintln!(
        "in-place migration to TLS (patroni, 3 hosts): apply {:.1} s, longest write gap {:.2} s from {gap_began:.1} s, {} writes acknowledged",
        applied.duration_since(started).as_secs_f64(),
        gap.as_secs_f64(),
        acked.ids.len()
    );
    assert!(
        acked.missing_on(&sb, "pg1").is_empty(),
        "acknowledged writes lost"
    );
    assert!(
        acked.after(applied) > 0,
        "the application writes after the migration"
    );
    // Reported above; bounded loosely (a loaded machine stretches it): a restart of the
    // leader's PostgreSQL is caught by its start time.
    assert!(
        gap < std::time::Duration::from_secs(15),
        "write gap {gap:?}"
    );
    // The same leader, its PostgreSQL never restarted; Patroni no longer paused.
    assert_eq!(leader_since(), started_at);
    let listed = sb.sh(
        "pg1",
        ". /etc/profile.d/pgha-patronictl.sh && patronictl list 2>&1",
    );
    assert!(
        listed
            .lines()
            .any(|l| l.contains("| pg1 ") && l.contains("| Leader "))
            && !listed.contains("Maintenance mode"),
        "{listed}"
    );
    sb.wait_until(
        "both standbys stream over TLS",
        std::time::Duration::from_secs(30),
        || encrypted_streams(&sb, "pg1") == "2",
    );

    // Locked down as a cluster built with TLS: etcd takes no client without a certificate,
    // the REST API no unsafe request without its password.
    etcd_takes_only_the_cluster_s_clients(&sb);
    assert_eq!(
        rest_status(&sb, "pg3", "pg2", "POST", "/restart", false),
        "401"
    );
    sb.pgha(["verify"]).stdout_has(", 0 failed.").run();
    sb.assert_plan_clean();

    // Back to http in place is refused before anything is touched.
    std::fs::write(sb.inventory(), without_tls(&before)).expect("inventory");
    let refused = sb.pgha(["plan"]).status(1).run();
    let text = format!("{}{}", refused.stdout, refused.stderr);
    assert!(
        text.contains("back to http in place is not built")
            && text.contains("Keep the inventory's `tls:` section"),
        "{text}"
    );
}

/// The serial of the certificate `host` serves on `port` (`starttls`: PostgreSQL's protocol),
/// presenting the host's own client certificate where the server asks for one (etcd).
fn served_serial_on(sb: &Sandbox, host: &str, port: u16, starttls: bool) -> String {
    let client = "-cert /etc/patroni/tls/server.crt -key /etc/patroni/tls/server.key";
    sb.sh(
        host,
        &format!(
            "echo | openssl s_client {} {client} -connect {}:{port} 2>/dev/null | openssl x509 -noout -serial",
            if starttls { "-starttls postgres" } else { "" },
            sb.ip(host)
        ),
    )
    .trim()
    .to_owned()
}

/// Patroni's certificates inside the renewal window: plan shows each renewal as drift, apply
/// renews them, and PostgreSQL, the REST API and etcd serve the new ones (their serials
/// change) while an application writes throughout, none of its writes failing for long.
#[test]
fn patroni_renews_every_certificate_under_load() {
    let sb = Sandbox::patroni("prenew", 3);
    with_cluster_ca(&sb, "  validity_days: 5\n  renew_before_days: 1\n");
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let serials = |host: &str| {
        [
            served_serial_on(&sb, host, 5432, true),
            served_serial_on(&sb, host, 8008, false),
            served_serial_on(&sb, host, 2379, false),
        ]
    };
    let before = serials("pg1");
    assert!(
        before.iter().all(|s| s.starts_with("serial=")),
        "{before:?}"
    );

    let (conninfo, password) = crate::load::app_conninfo(&sb, &["pg1", "pg2", "pg3"]);
    let writer = crate::load::Writer::start(&conninfo, &password);
    std::thread::sleep(std::time::Duration::from_secs(3));
    sb.edit_inventory(
        "validity_days: 5\n  renew_before_days: 1",
        "validity_days: 30\n  renew_before_days: 10",
    );
    let plan = sb
        .pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("renew (expires in 4 days)")
        .run();
    // PostgreSQL's (also the REST API's) and etcd's, on each of the three hosts.
    assert_eq!(
        plan.stdout.matches("renew (expires in 4 days)").count(),
        6,
        "{}",
        plan.stdout
    );
    apply_under_load(&sb, writer, "certificate renewal (patroni, 3 hosts)");
    let after = serials("pg1");
    for (what, (b, a)) in ["PostgreSQL", "REST API", "etcd"]
        .iter()
        .zip(before.iter().zip(after.iter()))
    {
        assert!(a.starts_with("serial=") && a != b, "{what}: {b} -> {a}");
    }
    sb.pgha(["verify"]).stdout_has(", 0 failed.").run();
    sb.assert_plan_clean();
}

/// A CA of the DBA's own, made here with openssl as a company's would be: its certificate,
/// and for each host a certificate for the host's name and address with its key (PKCS#8),
/// in `dir` as `<host>.crt` / `<host>.key`. pgha never sees the CA's key.
fn company_ca(sb: &Sandbox, dir: &std::path::Path, hosts: &[&str]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
    openssl(&[&["genpkey"], &ec[..], &["-out", "company-ca.key"]].concat());
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "company-ca.key",
        "-subj",
        "/CN=company CA",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        "ca.crt",
    ]);
    for h in hosts {
        let ext = format!(
            "subjectAltName=DNS:{h},IP:{}\nextendedKeyUsage=serverAuth,clientAuth\n",
            sb.ip(h)
        );
        std::fs::write(dir.join(format!("{h}.ext")), ext).expect("ext");
        openssl(&[&["genpkey"], &ec[..], &["-out", &format!("{h}.key")]].concat());
        openssl(&[
            "req",
            "-new",
            "-key",
            &format!("{h}.key"),
            "-subj",
            &format!("/CN={h}"),
            "-out",
            &format!("{h}.csr"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{h}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "company-ca.key",
            "-CAcreateserial",
            "-days",
            "20",
            "-extfile",
            &format!("{h}.ext"),
            "-out",
            &format!("{h}.crt"),
        ]);
    }
    // What stays with the company's CA, not beside the inventory.
    std::fs::remove_file(dir.join("company-ca.key")).expect("rm");
}

/// Certificates issued by the DBA's own CA (`tls.certificates`, no CA key given to pgha):
/// installed as they are, served by PostgreSQL, replication checks them; a key that is not
/// its certificate's is refused in plan, and one that expires soon is a plan warning (pgha
/// cannot renew what it did not issue).
#[test]
fn streaming_with_certificates_of_the_dba_s_own_ca() {
    let sb = Sandbox::up("tlsown", Options::packaged(3));
    let dir = sb.inventory().parent().expect("dir").join("company");
    company_ca(&sb, &dir, &["pg1", "pg2", "pg3"]);
    let mut inventory = sb.inventory_text();
    inventory.push_str("\ntls:\n  ca_cert: company/ca.crt\n  certificates: company\n");
    std::fs::write(sb.inventory(), inventory).expect("inventory");

    // A key that is not the certificate's never reaches the host.
    std::fs::copy(dir.join("pg1.key"), dir.join("pg1.key.real")).expect("keep");
    std::fs::copy(dir.join("pg2.key"), dir.join("pg1.key")).expect("swap");
    sb.pgha(["plan"])
        .status(1)
        .stdout_has("is not the key of the provided certificate")
        .run();
    std::fs::rename(dir.join("pg1.key.real"), dir.join("pg1.key")).expect("restore");

    let plan = sb
        .pgha(["plan"])
        .stdout_has("install the provided certificate")
        .run();
    assert!(
        plan.stdout.contains("expires in 19 days") || plan.stdout.contains("expires in 20 days"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("pgha cannot renew"),
        "a certificate inside the renewal window that pgha did not issue is a warning:\n{}",
        plan.stdout
    );
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let provided = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(dir.join("pg1.crt"))
        .output()
        .expect("openssl");
    let provided = String::from_utf8_lossy(&provided.stdout).trim().to_owned();
    assert_eq!(served_serial(&sb, "pg1"), provided);
    assert_eq!(encrypted_streams(&sb, "pg1"), "2");
    let conninfo = sb.psql("pg2", "SHOW primary_conninfo");
    assert!(conninfo.contains("sslmode=verify-full"), "{conninfo}");
    assert!(
        !sb.inventory()
            .parent()
            .expect("dir")
            .join("tls/ca.key")
            .exists(),
        "no CA of pgha's own was made"
    );
    sb.pgha(["verify"]).stdout_has(", 0 failed.").run();
    sb.assert_plan_clean();
}

/// A repmgr cluster built without TLS takes it in place under a write load: every node is
/// registered again with a conninfo that checks the server (repmgr connects to the nodes by
/// their records), the standby's primary_conninfo checks the server from then on (the same
/// upstream and slot); repmgr's own view and verify agree afterwards.
#[test]
fn a_running_repmgr_cluster_takes_tls_in_place_under_load() {
    let sb = Sandbox::repmgr("rtlsmig", 2);
    let before = sb.inventory_text();
    std::fs::write(sb.inventory(), without_tls(&before)).expect("inventory");
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let checked = |host: &str| {
        sb.sh(
            host,
            "cd / && runuser -u postgres -- psql -X -At -d repmgr -c \"SELECT string_agg(node_name || '=' || (conninfo LIKE '%sslmode=verify-full%')::text, ' ' ORDER BY node_name) FROM repmgr.nodes\"",
        )
        .trim()
        .to_owned()
    };
    assert_eq!(checked("pg1"), "pg1=false pg2=false pg3=false");

    let (conninfo, password) = crate::load::app_conninfo(&sb, &["pg1", "pg2"]);
    let writer = crate::load::Writer::start(&conninfo, &password);
    std::thread::sleep(std::time::Duration::from_secs(3));
    std::fs::write(sb.inventory(), &before).expect("inventory");
    sb.pgha(["plan", "--detailed-exitcode"])
        .status(2)
        .stdout_has("does not check the server against the cluster CA: registered again")
        .stdout_has("reconnects with sslmode=verify-full")
        .run();
    apply_under_load(
        &sb,
        writer,
        "in-place migration to TLS (repmgr, 2 data nodes + witness)",
    );
    assert_eq!(checked("pg1"), "pg1=true pg2=true pg3=true");
    let primary_conninfo = sb.psql("pg2", "SHOW primary_conninfo");
    assert!(
        primary_conninfo.contains("sslmode=verify-full"),
        "{primary_conninfo}"
    );
    sb.wait_until(
        "the standby streams over TLS",
        std::time::Duration::from_secs(30),
        || encrypted_streams(&sb, "pg1") == "1",
    );
    sb.pgha(["verify"]).stdout_has(", 0 failed.").run();
    sb.assert_plan_clean();
}
