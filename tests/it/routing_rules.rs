//! The `routing:` section's rules, checked offline: what loads, what is refused with which
//! reason, the connection strings, and how verify tells which host answered a route.

use std::path::Path;

use pgha::components::routing::verify::identify;
use pgha::components::routing::{connect, Routing, VipMode};
use pgha::inventory::{load_str, Inventory, LoadError};

fn text(flavour: &str, routing: &str) -> String {
    let section = match flavour {
        "patroni" => "patroni:\n  etcd: {members: [pg1, pg2, pg3]}\n  rewind: {password: {env: X}}\n  restapi_auth: {password: {env: X}}\n",
        _ => "",
    };
    format!(
        "cluster: {{name: t, flavour: {flavour}}}\npostgres: {{version: 15, superuser_password: {{env: X}}}}\nreplication: {{user: replicator, password: {{env: X}}}}\nhosts:\n  - {{name: pg1, address: 10.0.0.1, role: primary}}\n  - {{name: pg2, address: 10.0.0.2, role: standby}}\n  - {{name: pg3, address: 10.0.0.3, role: standby}}\n{section}routing:\n  {routing}\n"
    )
}

fn inventory(flavour: &str, routing: &str) -> Inventory {
    load_str(Path::new("t.yml"), &text(flavour, routing)).expect("loads")
}

/// The rendered errors of an inventory that must not load.
fn refused(flavour: &str, routing: &str) -> String {
    match load_str(Path::new("t.yml"), &text(flavour, routing)) {
        Err(LoadError::Invalid(d)) => d.render(),
        Err(e) => panic!("not a validation error: {e}"),
        Ok(_) => panic!("loaded: {routing}"),
    }
}

fn routing(inv: &Inventory) -> &Routing {
    inv.components
        .iter()
        .find_map(|c| c.as_any().downcast_ref::<Routing>())
        .expect("routing")
}

#[test]
fn the_vip_mode_follows_the_flavour() {
    let inv = inventory("patroni", "vip: {address: 10.0.0.100/24}");
    let vip = routing(&inv).section.vip.clone().expect("vip");
    assert_eq!(
        (vip.mode, vip.interface.as_str()),
        (VipMode::Callback, "eth0")
    );
    let inv = inventory(
        "streaming",
        "vip: {address: 10.0.0.100/24}\n  keepalived: {virtual_router_id: 9, password: {env: V}}",
    );
    assert_eq!(
        routing(&inv).section.vip.as_ref().map(|v| v.mode),
        Some(VipMode::Keepalived)
    );
    // The VIP is in every host's certificate.
    let tls = inv.cluster.tls.as_ref().expect("tls");
    assert!(
        tls.extra_names.contains(&"10.0.0.100".to_owned()),
        "{:?}",
        tls.extra_names
    );
}

#[test]
fn a_wrong_vip_is_refused_with_its_reason() {
    let e = refused("patroni", "vip: {address: 10.0.1.100/24}");
    assert!(
        e.contains("outside 10.0.1.0/24, the subnet of hosts pg1, pg2, pg3"),
        "{e}"
    );
    let e = refused("patroni", "vip: {address: 10.0.0.2/24}");
    assert!(e.contains("is the address of host pg2"), "{e}");
    let e = refused("patroni", "vip: {address: 10.0.0.255/24}");
    assert!(e.contains("network or broadcast"), "{e}");
    let e = refused("patroni", "vip: {address: 10.0.0.100}");
    assert!(e.contains("with the prefix of the hosts' subnet"), "{e}");
    let e = refused("streaming", "vip: {address: 10.0.0.100/24, mode: callback}");
    assert!(e.contains("this flavour has none"), "{e}");
    let e = refused(
        "patroni",
        "vip: {address: 10.0.0.100/24, mode: vip-manager}",
    );
    assert!(e.contains("speaks only etcd's v2 API"), "{e}");
    let e = refused(
        "streaming",
        "vip: {address: 10.0.0.100/24, mode: keepalived}",
    );
    assert!(e.contains("needs a `routing.keepalived` section"), "{e}");
    let e = refused(
        "streaming",
        "vip: {address: 10.0.0.100/24}\n  keepalived: {virtual_router_id: 0, password: {env: V}}",
    );
    assert!(e.contains("virtual_router_id"), "{e}");
    let e = refused(
        "streaming",
        "keepalived: {virtual_router_id: 3, password: {env: V}}",
    );
    assert!(
        e.contains("needs `routing.vip` with `mode: keepalived`"),
        "{e}"
    );
}

#[test]
fn a_vip_needs_a_server_that_listens_on_it() {
    let t = text(
        "repmgr",
        "vip: {address: 10.0.0.100/24}\n  keepalived: {virtual_router_id: 3, password: {env: V}}",
    )
    .replace(
        "postgres: {version: 15,",
        "postgres: {version: 15, listen_addresses: 10.0.0.1,",
    )
    .replace("hosts:", "repmgr: {password: {env: X}}\nhosts:");
    let e = match load_str(Path::new("t.yml"), &t) {
        Err(LoadError::Invalid(d)) => d.render(),
        other => panic!("{:?}", other.err()),
    };
    assert!(e.contains("PostgreSQL listens on `10.0.0.1` only"), "{e}");
}

#[test]
fn ports_may_not_clash() {
    let e = refused("patroni", "haproxy: {primary_port: 8008}");
    assert!(
        e.contains("port 8008 is both patroni.restapi_port and routing.haproxy.primary_port"),
        "{e}"
    );
    let e = refused("streaming", "haproxy: {primary_port: 5001}");
    assert!(
        e.contains(
            "port 5001 is both routing.haproxy.primary_port and routing.haproxy.replica_port"
        ),
        "{e}"
    );
    let e = refused("streaming", "haproxy: {replica_port: 5432}");
    assert!(e.contains("postgres.port"), "{e}");
    let e = refused("streaming", "haproxy: {hosts: [pg9]}");
    assert!(e.contains("there is no host pg9"), "{e}");
    let e = refused("streaming", "haproxy: {max_lag: lots}");
    assert!(e.contains("is not a size"), "{e}");
}

#[test]
fn connection_strings_verify_the_server() {
    let inv = inventory(
        "patroni",
        "vip: {address: 10.0.0.100/24}\n  haproxy: {max_lag: 16MB}",
    );
    let r = routing(&inv);
    assert_eq!(
        r.section.haproxy.as_ref().map(|h| h.max_lag),
        Some(16 << 20)
    );
    let target = connect::Target {
        user: "app",
        database: "appdb",
        ca_file: "/etc/ssl/pgha ca.crt",
    };
    let all = connect::connections(&inv.cluster, Some(r), &target);
    let urls: Vec<&str> = all.iter().map(|c| c.url.as_str()).collect();
    assert!(urls.contains(&"postgresql://app@10.0.0.1:5432,10.0.0.2:5432,10.0.0.3:5432/appdb?target_session_attrs=read-write&connect_timeout=3&sslmode=verify-full&sslrootcert=/etc/ssl/pgha%20ca.crt"), "{urls:#?}");
    assert!(urls.contains(&"jdbc:postgresql://10.0.0.1:5432,10.0.0.2:5432,10.0.0.3:5432/appdb?user=app&targetServerType=preferSecondary&loadBalanceHosts=true&connectTimeout=3&ssl=true&sslmode=verify-full&sslrootcert=/etc/ssl/pgha%20ca.crt"), "{urls:#?}");
    assert!(urls.contains(&"postgresql://app@10.0.0.100:5000/appdb?connect_timeout=3&sslmode=verify-full&sslrootcert=/etc/ssl/pgha%20ca.crt"), "{urls:#?}");
    assert!(urls.iter().all(|u| u.contains("verify-full")));
}

#[test]
fn a_certificate_names_its_host() {
    let inv = inventory(
        "streaming",
        "vip: {address: 10.0.0.100/24, mode: keepalived}\n  keepalived: {virtual_router_id: 7, password: {env: V}}",
    );
    let printed =
        "subject=CN = pg2\nX509v3 Subject Alternative Name: \n    DNS:pg2, IP Address:10.0.0.2\n";
    assert_eq!(identify(&inv.cluster, printed).as_deref(), Some("pg2"));
    let other = "subject=CN = elsewhere\n    DNS:elsewhere, IP Address:10.0.0.3, DNS:x\n";
    assert_eq!(identify(&inv.cluster, other).as_deref(), Some("pg3"));
    assert_eq!(identify(&inv.cluster, "").as_deref(), None);
}

/// `text` with a proxy host `px1` (10.0.0.9) after the data hosts.
fn with_proxy(flavour: &str, routing: &str) -> String {
    let pg3 = "  - {name: pg3, address: 10.0.0.3, role: standby}\n";
    text(flavour, routing).replace(
        pg3,
        &format!("{pg3}  - {{name: px1, address: 10.0.0.9, role: proxy}}\n"),
    )
}

fn refused_text(t: &str) -> String {
    match load_str(Path::new("t.yml"), t) {
        Err(LoadError::Invalid(d)) => d.render(),
        Err(e) => panic!("not a validation error: {e}"),
        Ok(_) => panic!("loaded:\n{t}"),
    }
}

#[test]
fn a_proxy_host_needs_haproxy_and_runs_it_alone() {
    let t = with_proxy("streaming", "haproxy: {}");
    for flavour in ["streaming", "patroni"] {
        let t = with_proxy(flavour, "haproxy: {}");
        let inv = load_str(Path::new("t.yml"), &t).expect("loads");
        let r = routing(&inv);
        let h = r.section.haproxy.as_ref().expect("haproxy");
        // Left out: the proxy hosts only, and the plan says so.
        assert_eq!(h.hosts, ["px1"]);
        assert!(!h.on_every_data_host);
        let notes = r.describe().join("\n");
        assert!(
            notes.contains("haproxy on px1 (the proxy hosts only"),
            "{notes}"
        );
        // Clients dial the proxy host: its name and address are in every certificate.
        let tls = inv.cluster.tls.as_ref().expect("tls");
        for name in ["px1", "10.0.0.9"] {
            assert!(
                tls.extra_names.contains(&name.to_owned()),
                "{:?}",
                tls.extra_names
            );
        }
    }
    // The role without routing.haproxy: an error at the host's role.
    let no_haproxy = t.replace(
        "routing:\n  haproxy: {}\n",
        "routing:\n  vip: {address: 10.0.0.100/24}\n  keepalived: {virtual_router_id: 9, password: {env: V}}\n",
    );
    let e = refused_text(&no_haproxy);
    assert!(
        e.contains("t.yml:8:")
            && e.contains("hosts[3].role")
            && e.contains("a role of the routing component"),
        "{e}"
    );
    let no_routing = t.replace("routing:\n  haproxy: {}\n", "");
    let e = refused_text(&no_routing);
    assert!(
        e.contains("hosts[3].role") && e.contains("routing.haproxy"),
        "{e}"
    );
    // Named: a proxy host left out of routing.haproxy.hosts would run nothing.
    let e = refused_text(&t.replace("haproxy: {}", "haproxy: {hosts: [pg1]}"));
    assert!(
        e.contains("routing.haproxy.hosts") && e.contains("px1 has `role: proxy` and is not in"),
        "{e}"
    );
    // Proxy and data hosts together; the VIP follows the primary, not haproxy.
    let both = t.replace(
        "routing:\n  haproxy: {}\n",
        "routing:\n  vip: {address: 10.0.0.100/24}\n  keepalived: {virtual_router_id: 9, password: {env: V}}\n  haproxy: {hosts: [px1, pg2]}\n",
    );
    let inv = load_str(Path::new("t.yml"), &both).expect("loads");
    let r = routing(&inv);
    let target = connect::Target {
        user: "app",
        database: "appdb",
        ca_file: "/ca.crt",
    };
    let urls: Vec<String> = connect::connections(&inv.cluster, Some(r), &target)
        .into_iter()
        .map(|c| c.url)
        .collect();
    assert!(
        urls.contains(&"postgresql://app@10.0.0.9:5000,10.0.0.2:5000/appdb?connect_timeout=3&sslmode=verify-full&sslrootcert=/ca.crt".to_owned()),
        "{urls:#?}"
    );
    assert!(
        !urls.iter().any(|u| u.contains("10.0.0.100:5000")),
        "{urls:#?}"
    );
    // A proxy host is no etcd member.
    let e = refused_text(
        &with_proxy("patroni", "haproxy: {}")
            .replace("members: [pg1, pg2, pg3]", "members: [pg1, pg2, px1]"),
    );
    assert!(e.contains("etcd member `px1` is a proxy host"), "{e}");
}
