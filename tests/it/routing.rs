//! Client routing on real hosts: the VIP (Patroni's callback, keepalived) and haproxy follow
//! the primary through switchovers and crashes, for every flavour, and verify proves each
//! route by the certificate of the server that answers.

use std::time::{Duration, Instant};

use pgha::sandbox::{Flavour, Routing};

use crate::cluster::Sandbox;
use crate::load::{client_sql, Acked, Writer};

/// The VIP the sandbox writes: `.200` of its subnet.
fn vip(sb: &Sandbox) -> String {
    let ip = sb.ip("pg1");
    let (net, _) = ip.rsplit_once('.').expect("IPv4");
    format!("{net}.200")
}

/// The data hosts whose interfaces hold the VIP, as `ip` on each says.
fn holders(sb: &Sandbox, hosts: &[&str]) -> Vec<String> {
    let vip = vip(sb);
    hosts
        .iter()
        .filter(|h| {
            sb.sh(h, "ip -o -4 addr show | awk '{print $4}'")
                .lines()
                .any(|a| a.split('/').next() == Some(vip.as_str()))
        })
        .map(|h| (*h).to_owned())
        .collect()
}

/// The application's connection string through one route, checking the server's
/// certificate against the cluster CA (the VIP and haproxy hosts are in its names).
fn route_conninfo(sb: &Sandbox, address: &str, port: u16) -> (String, String) {
    let ca = sb
        .inventory()
        .parent()
        .expect("inventory folder")
        .join("tls/ca.crt");
    (
        format!(
            "host={address} port={port} dbname=appdb user=app sslmode=verify-full sslrootcert={} connect_timeout=2",
            ca.display()
        ),
        sb.env_value("PGHA_APP_PASSWORD"),
    )
}

/// The data host that answers `pg_is_in_recovery() = false` through a route.
fn primary_through(conninfo: &str, password: &str) -> bool {
    client_sql(conninfo, password, "SELECT 1 WHERE NOT pg_is_in_recovery()")
}

#[track_caller]
fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    start.elapsed()
}

/// The new primary among `hosts`, by its own server.
fn new_primary(sb: &Sandbox, hosts: &[&str]) -> String {
    hosts
        .iter()
        .find(|h| sb.psql(h, "SELECT pg_is_in_recovery()") == "f")
        .map(|h| (*h).to_owned())
        .expect("a new primary")
}

/// Kill `victim`'s host under a write load through `conninfo`: the route reaches a new
/// primary among `survivors`; what the load saw and who leads now. `promote` runs after the
/// crash (pgha's own failover for a flavour that does not fail over by itself).
fn crash_under_load(
    sb: &Sandbox,
    conninfo: &str,
    password: &str,
    victim: &str,
    survivors: &[&str],
    promote: impl FnOnce(),
) -> (Acked, Instant, String) {
    let writer = Writer::start(conninfo, password);
    std::thread::sleep(Duration::from_secs(4));
    let crash = Instant::now();
    sb.docker("kill", victim);
    promote();
    wait_for(
        "the route reaches a new primary",
        Duration::from_secs(120),
        || primary_through(conninfo, password),
    );
    let routed = crash.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let acked = writer.stop();
    let leader = new_primary(sb, survivors);
    eprintln!(
        "{}: route to the new primary {leader} after {:.1} s, longest write gap {:.1} s, {} writes acknowledged",
        sb.inventory().display(),
        routed.as_secs_f64(),
        acked.gap_around(crash).as_secs_f64(),
        acked.ids.len()
    );
    assert!(
        acked.before(crash) > 0 && acked.after(crash) > 0,
        "writes before and after the crash"
    );
    (acked, crash, leader)
}

/// The old primary's host back, then apply: it rejoins as a replica and nothing is left to do.
fn restore(sb: &Sandbox, victim: &str) {
    sb.docker("start", victim);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = sb.command("apply").arg("-y").output().expect("pgha apply");
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "apply after {victim} came back:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_secs(3));
    }
    sb.assert_plan_clean();
}

/// Patroni with the VIP moved by its callback and haproxy on every member, synchronous mode:
/// the VIP is on the leader only, follows a switchover within seconds, and after the leader's
/// host is killed under a write load through the VIP it is on the new leader with no
/// acknowledged write lost. verify proves every route, status shows them, connect-info
/// prints them.
#[test]
fn patroni_callback_vip_follows_the_leader() {
    let sb = Sandbox::routed(
        "vipcb",
        Flavour::Patroni,
        &[Routing::Callback, Routing::Haproxy],
    );
    let all = ["pg1", "pg2", "pg3"];
    sb.edit_inventory("  etcd:\n", "  synchronous_mode: true\n  etcd:\n");
    let applied = sb
        .pgha(["apply", "-y"])
        .stdout_has("note: routing: VIP")
        .stdout_has("role callback")
        .stdout_has("0 failed.")
        .run();
    for check in [
        "on pg1, the primary (callback mode)",
        "haproxy write route",
        &format!("route VIP {}:5432", vip(&sb)),
        "pg1 answers: the primary",
        "answers: a replica",
    ] {
        assert!(
            applied.stdout.contains(check),
            "{check}:\n{}",
            applied.stdout
        );
    }
    sb.assert_converged();
    assert_eq!(holders(&sb, &all), ["pg1"]);
    sb.pgha(["status"])
        .stdout_has("(callback): on pg1")
        .stdout_has("write :5000 [pg1 up, pg2 down, pg3 down]")
        .run();
    sb.pgha(["connect-info"])
        .stdout_has(&format!("postgresql://app@{}:5432/appdb", vip(&sb)))
        .stdout_has(":5000/appdb")
        .stdout_has("targetServerType=preferSecondary&loadBalanceHosts=true")
        .stdout_has("target_session_attrs=read-write")
        .run();

    // A switchover: the new leader's callback takes the VIP, the old one's drops it. With
    // synchronous mode Patroni hands over only to the synchronous standby; pgha says so.
    let sync = sb.psql(
        "pg1",
        "SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync'",
    );
    let other = if sync == "pg2" { "pg3" } else { "pg2" };
    sb.pgha(["switchover", "-y", "--to", other])
        .status(1)
        .stderr_has(&format!("{other} is not a synchronous standby ({sync} is)"))
        .run();
    let started = Instant::now();
    sb.pgha(["switchover", "-y", "--to", &sync])
        .stdout_has(&format!("on {sync}, the primary (callback mode)"))
        .stdout_has("0 failed.")
        .run();
    let moved = wait_for(
        "the VIP on the new leader only",
        Duration::from_secs(30),
        || holders(&sb, &all) == [sync.clone()],
    );
    eprintln!(
        "switchover: VIP on the new leader {:.1} s after the switchover started",
        (started.elapsed() - moved).as_secs_f64()
    );

    // The leader's host killed under a load through the VIP.
    let (conninfo, password) = route_conninfo(&sb, &vip(&sb), 5432);
    let survivors: Vec<&str> = all.iter().copied().filter(|h| *h != sync).collect();
    let (acked, _, leader) = crash_under_load(&sb, &conninfo, &password, &sync, &survivors, || {});
    assert_eq!(holders(&sb, &survivors), std::slice::from_ref(&leader));
    let missing = acked.missing_on(&sb, &leader);
    assert!(
        missing.is_empty(),
        "synchronous mode lost acknowledged writes: {:?}",
        missing.iter().map(|(id, _)| id).collect::<Vec<_>>()
    );
    restore(&sb, &sync);
    assert_eq!(holders(&sb, &all), std::slice::from_ref(&leader));
    sb.pgha(["verify"]).stdout_has("0 failed.").run();
}

/// A VIP added to a running Patroni cluster: PostgreSQL must then listen on every address, a
/// restart Patroni asks for only once it has read its new configuration. One apply reloads
/// Patroni, restarts the members (replicas first), puts the VIP on the leader and proves the
/// route; the next plan is clean.
#[test]
fn a_vip_added_to_a_running_patroni_cluster_takes_one_apply() {
    let sb = Sandbox::routed("vipadd", Flavour::Patroni, &[Routing::Callback]);
    let all = ["pg1", "pg2", "pg3"];
    let with_vip = sb.inventory_text();
    let mut without = String::new();
    let mut in_routing = false;
    for line in with_vip.lines() {
        if line == "routing:" {
            in_routing = true;
        } else if in_routing && !line.starts_with(' ') && !line.is_empty() {
            in_routing = false;
        }
        if !in_routing {
            without.push_str(line);
            without.push('\n');
        }
    }
    assert_ne!(without, with_vip, "the sandbox wrote no routing section");
    std::fs::write(sb.inventory(), &without).expect("write inventory");
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    assert!(holders(&sb, &all).is_empty());

    std::fs::write(sb.inventory(), &with_vip).expect("write inventory");
    sb.pgha(["plan"])
        .stdout_has("restart PostgreSQL listen addresses")
        .stdout_has("its postgresql.listen on 0.0.0.0")
        .run();
    let applied = sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    assert!(
        applied.stdout.contains("the primary (callback mode)"),
        "{}",
        applied.stdout
    );
    for h in all {
        assert_eq!(sb.psql(h, "SHOW listen_addresses"), "0.0.0.0", "{h}");
    }
    let leader = new_primary(&sb, &all);
    assert_eq!(holders(&sb, &all), [leader]);
    let (conninfo, password) = route_conninfo(&sb, &vip(&sb), 5432);
    // One attempt has a 2 s connect timeout, short for a TLS handshake on a loaded machine.
    wait_for(
        "the VIP reaches the primary",
        Duration::from_secs(30),
        || primary_through(&conninfo, &password),
    );
    sb.assert_converged();
}

/// Patroni with keepalived (weight 0: the VIP is on the leader only) and haproxy on the data
/// nodes: a write load through the VIP's haproxy write port survives the leader's crash.
#[test]
fn patroni_keepalived_and_haproxy_follow_the_leader() {
    let sb = Sandbox::routed(
        "vipka",
        Flavour::Patroni,
        &[Routing::Keepalived, Routing::Haproxy],
    );
    let all = ["pg1", "pg2", "pg3"];
    // Declared objectives instead of Patroni's settings: rpo 0 turns synchronous mode on,
    // the rto sets the timing; the drill below is judged against them.
    sb.edit_inventory(
        "\nhosts:\n",
        "\nobjectives:\n  rto: 45s\n  rpo: 0\n\nhosts:\n",
    );
    sb.pgha(["apply", "-y"])
        .stdout_has("objectives: rto 45s")
        .stdout_has("keepalived on every data host")
        .stdout_has("on pg1, the primary (keepalived mode)")
        .stdout_has("0 failed.")
        .run();
    sb.assert_converged();
    assert_eq!(holders(&sb, &all), ["pg1"]);
    let (conninfo, password) = route_conninfo(&sb, &vip(&sb), 5000);
    let (acked, _, leader) =
        crash_under_load(&sb, &conninfo, &password, "pg1", &["pg2", "pg3"], || {});
    assert_eq!(holders(&sb, &["pg2", "pg3"]), std::slice::from_ref(&leader));
    let missing = acked.missing_on(&sb, &leader);
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost",
        missing.len()
    );
    restore(&sb, "pg1");
    assert_eq!(holders(&sb, &all), [leader]);
}

/// repmgr with keepalived (the field guide's variant: a local role check): repmgrd's
/// failover moves the VIP.
#[test]
fn repmgr_keepalived_vip_follows_repmgrd() {
    let sb = Sandbox::routed("vipre", Flavour::Repmgr, &[Routing::Keepalived]);
    let data = ["pg1", "pg2", "pg3"];
    sb.pgha(["apply", "-y"])
        .stdout_has("on pg1, the primary (keepalived mode)")
        .stdout_has("0 failed.")
        .run();
    sb.assert_converged();
    assert_eq!(holders(&sb, &data), ["pg1"]);
    // The witness holds no data and runs no keepalived.
    assert_eq!(
        sb.sh("pg4", "systemctl is-active keepalived || true")
            .trim(),
        "inactive"
    );
    a_frozen_check_is_not_a_demotion(&sb, &data);
    let (conninfo, password) = route_conninfo(&sb, &vip(&sb), 5432);
    let (_, _, leader) = crash_under_load(&sb, &conninfo, &password, "pg1", &["pg2", "pg3"], || {});
    assert_eq!(holders(&sb, &["pg2", "pg3"]), [leader]);
    restore(&sb, "pg1");
}

/// keepalived's check on the primary pg1 while its postmaster is frozen (SIGSTOP: the check
/// cannot tell): the last "yes" stands for a few seconds, so one slow answer on a busy host
/// does not drop the VIP; once that memory is old the check says it cannot tell. A standby's
/// definite "no" never has a grace. The VIP is back on pg1 once the server answers again.
fn a_frozen_check_is_not_a_demotion(sb: &Sandbox, data: &[&str]) {
    let check = format!(
        "runuser -u postgres -- {} check primary; echo rc=$?",
        pgha::components::routing::HEALTH_BIN
    );
    assert!(sb.sh("pg2", &check).contains("rc=1"));
    assert!(sb.sh("pg1", &check).contains("rc=0"));
    let pid = sb
        .sh("pg1", "head -1 /var/lib/postgresql/15/main/postmaster.pid")
        .trim()
        .to_owned();
    sb.sh("pg1", &format!("kill -STOP {pid}"));
    let fresh = sb.sh("pg1", &check);
    // The memory made old (CLOCK_BOOTTIME 0 is the boot).
    sb.sh("pg1", "echo 0 > /run/postgresql/pgha-health.primary");
    let stale = sb.sh("pg1", &check);
    sb.sh("pg1", &format!("kill -CONT {pid}"));
    assert!(fresh.contains("rc=0"), "frozen, just after a yes: {fresh}");
    assert!(stale.contains("rc=2"), "frozen, long after a yes: {stale}");
    wait_for("the VIP back on pg1", Duration::from_secs(30), || {
        holders(sb, data) == ["pg1"]
    });
}

/// Streaming with haproxy on every data host (pgha's own health endpoint): `pgha failover`
/// moves the write route; the read route never offers the primary.
#[test]
fn streaming_haproxy_follows_pgha_failover() {
    let sb = Sandbox::routed("hapst", Flavour::Streaming, &[Routing::Haproxy]);
    sb.pgha(["apply", "-y"])
        .stdout_has("haproxy read route")
        .stdout_has("0 failed.")
        .run();
    sb.assert_converged();
    // The health endpoint over TLS, as haproxy asks it.
    let answer = sb.sh(
        "pg2",
        &format!(
            "printf 'OPTIONS /primary HTTP/1.0\\r\\n\\r\\n' | timeout 5 openssl s_client -quiet -connect {}:8008 -CAfile /etc/postgresql/15/main/tls/ca.crt -verify_return_error 2>/dev/null | head -1",
            sb.ip("pg1")
        ),
    );
    assert!(answer.contains("200"), "pg1's /primary: {answer}");
    let (read, password) = route_conninfo(&sb, &sb.ip("pg3"), 5001);
    assert!(client_sql(
        &read,
        &password,
        "SELECT 1 WHERE pg_is_in_recovery()"
    ));
    let (conninfo, _) = route_conninfo(&sb, &sb.ip("pg3"), 5000);
    let (acked, _, leader) =
        crash_under_load(&sb, &conninfo, &password, "pg1", &["pg2", "pg3"], || {
            // The host is gone: pgha's failover promotes the standby with the most WAL.
            std::thread::sleep(Duration::from_secs(2));
            sb.pgha(["failover", "-y"]).stdout_has("0 failed.").run();
        });
    eprintln!(
        "streaming + haproxy: {} writes lost (asynchronous replication)",
        acked.missing_on(&sb, &leader).len()
    );
    restore(&sb, "pg1");
    sb.pgha(["verify"])
        .stdout_has(&format!("{leader} answers: the primary"))
        .stdout_has("0 failed.")
        .run();

    // The drill through haproxy's write port: pgha's failover runs, haproxy follows.
    let report = crate::drill::drill(
        &sb,
        &["--via", "haproxy", "--crash", "kill", "--duration", "30"],
        0,
    );
    crate::drill::assert_sane(&report, 60.0);
    eprintln!(
        "drill via haproxy (streaming): gap {} s, time to route {} s, lost {}",
        report["writes"]["longest_gap_s"],
        report["writes"]["time_to_route_s"],
        report["writes"]["lost"]
    );
}

/// A haproxy template override with an error is refused by haproxy's own check before it
/// replaces the live file: the running haproxy keeps its configuration.
#[test]
fn a_broken_haproxy_override_never_reaches_the_live_file() {
    let sb = Sandbox::routed("hapbad", Flavour::Streaming, &[Routing::Haproxy]);
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let before = sb.sh("pg1", "sha256sum /etc/haproxy/haproxy.cfg");
    let overrides = sb.state_dir().join("overrides");
    std::fs::create_dir_all(overrides.join("routing")).expect("mkdir");
    let good =
        std::fs::read_to_string(crate::support::root().join("templates/routing/haproxy.cfg.j2"))
            .expect("template");
    std::fs::write(
        overrides.join("routing/haproxy.cfg.j2"),
        good.replace("balance roundrobin", "balance no-such-algorithm"),
    )
    .expect("write override");
    let out = sb
        .command("apply")
        .arg("-y")
        .arg("--templates")
        .arg(&overrides)
        .output()
        .expect("pgha apply");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a broken haproxy.cfg applied:\n{text}"
    );
    assert!(
        text.contains("no-such-algorithm"),
        "haproxy's reason:\n{text}"
    );
    assert_eq!(sb.sh("pg1", "sha256sum /etc/haproxy/haproxy.cfg"), before);
    assert_eq!(sb.sh("pg1", "systemctl is-active haproxy").trim(), "active");
}

/// Streaming with 3 data hosts and haproxy on a dedicated proxy host (pg4, `role: proxy`):
/// the proxy host runs haproxy and nothing of the flavour's; verify proves its routes by the
/// certificate of the server that answers (the proxy host's address is in every data host's
/// certificate), status shows it; after pg1's host is killed and `pgha failover`, the write
/// route through the proxy host reaches the new primary.
#[test]
fn streaming_haproxy_on_a_proxy_host_follows_pgha_failover() {
    let sb = Sandbox::proxied("happx", Flavour::Streaming, 3, 1);
    assert!(
        sb.inventory_text().contains("    hosts: [pg4]\n"),
        "{}",
        sb.inventory_text()
    );
    sb.pgha(["apply", "-y"])
        .stdout_has("haproxy write route")
        .stdout_has("route haproxy pg4:5000 from")
        .stdout_has("route haproxy pg4:5001 from")
        .stdout_has("0 failed.")
        .run();
    sb.assert_converged();
    // Only haproxy's: none of pgha's server settings, health endpoint or server certificate
    // (the packages image has Debian's own 15/main everywhere: not pgha's to manage here).
    let on_proxy = sb.sh(
        "pg4",
        "systemctl is-active haproxy; ls /etc/postgresql/15/main/tls/server.crt /usr/local/lib/pgha/pgha-health /etc/postgresql/15/main/conf.d/pgha.conf 2>&1 | grep -c 'No such file'",
    );
    assert_eq!(
        on_proxy.split_whitespace().collect::<Vec<_>>(),
        ["active", "3"],
        "{on_proxy}"
    );
    sb.pgha(["status"])
        .stdout_has("haproxy running")
        .stdout_has("haproxy on pg4: write :5000 [")
        .run();
    sb.pgha(["connect-info"])
        .stdout_has(&format!("{}:5000/", sb.ip("pg4")))
        .run();
    let (read, password) = route_conninfo(&sb, &sb.ip("pg4"), 5001);
    assert!(client_sql(
        &read,
        &password,
        "SELECT 1 WHERE pg_is_in_recovery()"
    ));
    let (conninfo, _) = route_conninfo(&sb, &sb.ip("pg4"), 5000);
    let (_, _, leader) =
        crash_under_load(&sb, &conninfo, &password, "pg1", &["pg2", "pg3"], || {
            std::thread::sleep(Duration::from_secs(2));
            sb.pgha(["failover", "-y"]).stdout_has("0 failed.").run();
        });
    restore(&sb, "pg1");
    sb.pgha(["verify"])
        .stdout_has(&format!("{leader} answers: the primary"))
        .stdout_has("route haproxy pg4:5000 from")
        .stdout_has("0 failed.")
        .run();
}
