//! The `patroni:` section against the rest of the inventory: listeners that would share a
//! port on a host, the rewind role beside the other roles, a standby cluster that would follow
//! itself, SSL that hostssl rules need, settings that contradict each other.

use crate::diag::Diagnostics;
use crate::flavours::patroni::config::Patroni;
use crate::flavours::patroni::ETCD_ROLE;
use crate::model::{pg_names, pg_params, same_machine, Host, Postgres, Replication, Role, User};
use crate::yaml::node::Node;

pub(super) struct Input<'a> {
    pub d: &'a mut Diagnostics,
    /// The document, to point at the keys.
    pub root: &'a Node,
    pub patroni: &'a Patroni,
    pub hosts: &'a [Host],
    pub postgres: Option<&'a Postgres>,
    pub replication: Option<&'a Replication>,
    pub users: Option<&'a [User]>,
}

impl Input<'_> {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.root.pos_near(path);
        self.d.error(pos, path, message);
    }
}

/// Every rule; whether they all passed.
pub(super) fn check(input: &mut Input) -> bool {
    let before = input.d.items.len();
    etcd_hosts(input);
    ports(input);
    rewind_user(input);
    standby_source(input);
    synchronous(input);
    ssl(input);
    input.d.items.len() == before
}

/// A dedicated etcd host is there to run a member.
fn etcd_hosts(i: &mut Input) {
    for (n, h) in i.hosts.iter().enumerate() {
        if h.role == Role::Member(ETCD_ROLE) && !i.patroni.etcd.members.contains(&h.name) {
            let message = format!(
                "host `{}` has `role: etcd` but is not in patroni.etcd.members",
                h.name
            );
            i.error(&format!("hosts[{n}].role"), message);
        }
    }
}

/// Whether a host runs one of Patroni's listeners.
type Runs = fn(&Patroni, &Host) -> bool;

/// Patroni's and etcd's listeners against each other, PostgreSQL's and sshd's, on each host
/// that runs them; and none below 1024 (neither runs as root).
fn ports(i: &mut Input) {
    let p = i.patroni;
    let etcd: Runs = |p, h| p.etcd.members.contains(&h.name);
    let own: [(&str, u16, &str, Runs); 3] = [
        (
            "patroni.restapi_port",
            p.restapi_port,
            "Patroni's REST API",
            |_, h| h.role.has_postgres(),
        ),
        (
            "patroni.etcd.client_port",
            p.etcd.client_port,
            "etcd's client port",
            etcd,
        ),
        (
            "patroni.etcd.peer_port",
            p.etcd.peer_port,
            "etcd's peer port",
            etcd,
        ),
    ];
    let pg_port = i.postgres.map(|pg| pg.port);
    for (k, (key, port, what, runs)) in own.iter().enumerate() {
        if *port < 1024 {
            i.error(key, format!("{what} on port {port}: only root may listen below 1024, and it runs as an unprivileged user"));
            continue;
        }
        for h in i.hosts.iter().filter(|h| runs(p, h)) {
            // What else listens on this host, and the key that sets it.
            let mut others = vec![(h.ssh.port, "sshd".to_owned(), None)];
            if let (true, Some(pg)) = (h.role.has_postgres(), pg_port) {
                others.push((pg, "PostgreSQL".to_owned(), Some("postgres.port")));
            }
            for (key2, port2, what2, runs2) in &own[..k] {
                if runs2(p, h) {
                    others.push((*port2, what2.to_string(), Some(*key2)));
                }
            }
            if let Some((_, other, other_key)) = others.iter().find(|(o, _, _)| o == port) {
                // At the key the inventory sets: this one, else the other one.
                let at = match other_key {
                    Some(k2) if i.root.at(key).is_none() && i.root.at(k2).is_some() => k2,
                    _ => key,
                };
                let message = format!(
                    "{what} ({key}) and {other} would both listen on port {port} on `{}`",
                    h.name
                );
                i.error(at, message);
                break;
            }
        }
    }
}

/// Patroni makes the rewind role with its own attributes at bootstrap: it is no role pgha
/// manages, and none the server keeps for itself.
fn rewind_user(i: &mut Input) {
    let user = i.patroni.rewind_user.as_str();
    let key = "patroni.rewind.user";
    let why = pg_names::role_problem(key, user)
        .or_else(|| {
            (i.replication.map(|r| r.user.as_str()) == Some(user)).then(|| {
                format!("the rewind user `{user}` is also the replication user: Patroni gives each its own attributes")
            })
        })
        .or_else(|| {
            i.users.unwrap_or_default().iter().any(|u| u.name == user).then(|| {
                format!("the rewind user `{user}` is also declared under `users:`: Patroni and pgha would both set its attributes")
            })
        });
    if let Some(why) = why {
        i.error(key, why);
    }
}

/// A standby cluster follows another cluster, not one of its own members.
fn standby_source(i: &mut Input) {
    let (Some(source), Some(pg)) = (&i.patroni.standby_cluster, i.postgres) else {
        return;
    };
    let own = i
        .hosts
        .iter()
        .find(|h| h.name == source.host || same_machine(&h.address) == same_machine(&source.host));
    if let (Some(h), true) = (own, source.port == pg.port) {
        let message = format!(
            "the standby cluster's source `{}` is `{}`, a member of this cluster: it would follow itself",
            source.host, h.name
        );
        i.error("patroni.standby_cluster.host", message);
    }
}

fn synchronous(i: &mut Input) {
    if i.patroni.synchronous_mode_strict && !i.patroni.synchronous_mode {
        i.error(
            "patroni.synchronous_mode_strict",
            "synchronous_mode_strict needs synchronous_mode: true (alone it does nothing)",
        );
    }
}

/// Patroni's servers have SSL only when the parameters turn it on (its data directory has no
/// certificate of its own): hostssl rules need it, and SSL needs certificate files.
fn ssl(i: &mut Input) {
    let Some(pg) = i.postgres else {
        return;
    };
    let param = |name: &str| pg.parameters.get(name);
    let on = param("ssl").and_then(|v| pg_params::parse_bool(v));
    if on == Some(true) {
        for file in ["ssl_cert_file", "ssl_key_file"] {
            if param(file).is_none() {
                i.error(
                    "postgres.parameters.ssl",
                    format!("`ssl` is on without `{file}`: Patroni's data directory holds no certificate, and PostgreSQL would not start"),
                );
            }
        }
    }
    // `ssl` written off is the generic rule's; the cluster's TLS turns it on.
    if on.is_none() && i.patroni.tls.is_none() {
        for (n, rule) in pg.hba.iter().enumerate() {
            if rule.kind == "hostssl" {
                i.error(
                    &format!("postgres.hba[{n}].type"),
                    "a `hostssl` rule cannot match: Patroni's servers run without SSL unless postgres.parameters sets `ssl: on` (with ssl_cert_file and ssl_key_file)",
                );
            }
        }
    }
}
