//! The rolling minor upgrade, as planned: which hosts move from which version to
//! `postgres.package_version`, and in which order. Pure: facts in, the order out;
//! `apply::upgrade` does it.
//!
//! Order: the standbys first, one at a time (each installs, restarts, and streams again
//! before the next), then a switchover to an upgraded standby, then the old primary, a
//! standby by then. A host counts as done when its package is the wanted version and its
//! server runs it, so an interrupted upgrade continues where it stopped, and a host whose
//! package someone upgraded by hand (the server still running the old binary) is restarted.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::facts::HostFacts;
use crate::flavours::Flavour;
use crate::inventory::checks::package_version::upstream;
use crate::model::{Cluster, Topology};

/// One host's part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostUpgrade {
    pub host: String,
    /// `postgresql-15`'s installed version.
    pub installed: String,
    /// The version the server runs (its `server_version`'s Debian part), when it runs.
    #[serde(default)]
    pub running: Option<String>,
    /// The packages to install at the wanted version (empty: they are at it).
    pub install: Vec<String>,
    /// Restart the server afterwards (it runs another version than the wanted one).
    pub restart: bool,
    /// The primary when planned: it hands the role over before its own turn.
    pub primary: bool,
}

/// The whole upgrade, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upgrade {
    pub version: String,
    /// In the order they are done; the primary, when it has a part, last.
    pub hosts: Vec<HostUpgrade>,
    /// The standby the primary hands over to before its turn (None: no primary part, or no
    /// streaming standby, and the primary restarts in place).
    #[serde(default)]
    pub switchover_to: Option<String>,
    /// Why it is not done (a downgrade); the plan then refuses.
    #[serde(default)]
    pub refusal: Option<String>,
}

impl Upgrade {
    /// How many changes it counts as in the plan: each host's part and the switchover.
    pub fn change_count(&self) -> usize {
        self.hosts.len() + usize::from(self.switchover_to.is_some())
    }
}

/// The Debian part of `server_version` (`15.20 (Debian 15.20-0+deb12u1)`), else its number.
pub fn running_version(facts: &HostFacts) -> Option<String> {
    let pg = facts.postgres.as_ref().filter(|pg| pg.running)?;
    let text = &pg.settings.get("server_version")?.value;
    Some(match text.split_once("(Debian ") {
        Some((_, rest)) => rest.trim_end_matches(')').trim().to_owned(),
        None => text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
    })
}

/// Whether a server running `running` runs the package version `wanted`: the same Debian
/// version, or the same upstream version when the server does not name its package.
pub fn runs(running: &str, wanted: &str) -> bool {
    running == wanted || (!running.contains('-') && running == upstream(wanted))
}

/// The upgrade the facts call for, or None: no version pinned, or every host read is at it.
pub fn plan(
    cluster: &Cluster,
    flavour: &dyn Flavour,
    topology: &Topology,
    facts: &BTreeMap<String, HostFacts>,
) -> Option<Upgrade> {
    let wanted = cluster.postgres.package_version.clone()?;
    let [server, client] = cluster.postgres.server_packages();
    let mut parts = Vec::new();
    let mut downgrades = Vec::new();
    for host in cluster.hosts.iter().filter(|h| h.role.has_postgres()) {
        let Some(f) = facts.get(&host.name) else {
            continue;
        };
        // A host without the server package is a fresh one: `package` installs the pin.
        let Some(installed) = f.packages.get(&server) else {
            continue;
        };
        if compare(installed, &wanted) == Ordering::Greater {
            downgrades.push(format!("{} has {installed}", host.name));
        }
        let install: Vec<String> = [server.as_str(), client.as_str(), "libpq5"]
            .into_iter()
            .filter(|p| f.packages.get(*p).is_some_and(|v| v != &wanted))
            .map(str::to_owned)
            .collect();
        let running = running_version(f);
        let restart = running.as_deref().is_some_and(|r| !runs(r, &wanted));
        if install.is_empty() && !restart {
            continue;
        }
        parts.push(HostUpgrade {
            host: host.name.clone(),
            installed: installed.clone(),
            running,
            install,
            restart,
            primary: host.name == topology.primary,
        });
    }
    if parts.is_empty() {
        return None;
    }
    // Standbys first (leaves before their upstreams: a cascaded standby's restart must not
    // find its upstream restarting), the primary last.
    parts.sort_by_key(|p| (p.primary, depth(topology, &p.host) == 1, p.host.clone()));
    let switchover_to = parts
        .iter()
        .any(|p| p.primary && p.restart)
        .then(|| target(topology, facts, |h| flavour.may_lead(h)))
        .flatten();
    Some(Upgrade {
        refusal: (!downgrades.is_empty()).then(|| {
            format!(
                "postgres.package_version {wanted} is older than what is installed ({}): pgha moves minor versions forward only. Pin the installed version, or downgrade by hand",
                downgrades.join(", ")
            )
        }),
        version: wanted,
        hosts: parts,
        switchover_to,
    })
}

/// How many hops from the primary (1: a direct standby).
fn depth(topology: &Topology, host: &str) -> usize {
    let mut n = 0;
    let mut at = host;
    while let Some(up) = topology.upstream.get(at) {
        n += 1;
        at = up;
        if n > 64 {
            break;
        }
    }
    n
}

/// The standby to hand the primary role to: a synchronous one first (with synchronous
/// replication the only one that holds every acknowledged commit), then the least lagging
/// direct standby that streams; never one the flavour may not promote (Patroni's
/// `nofailover`).
fn target(
    topology: &Topology,
    facts: &BTreeMap<String, HostFacts>,
    may_lead: impl Fn(&str) -> bool,
) -> Option<String> {
    let primary = facts.get(&topology.primary)?.postgres.as_ref()?;
    let mut candidates: Vec<(bool, i64, String)> = primary
        .replication
        .iter()
        .filter(|r| r.state == "streaming")
        .filter(|r| topology.upstream.get(&r.application_name) == Some(&topology.primary))
        .filter(|r| may_lead(&r.application_name))
        .filter(|r| {
            facts
                .get(&r.application_name)
                .and_then(|f| f.postgres.as_ref())
                .is_some_and(|pg| pg.streams())
        })
        .map(|r| {
            (
                r.sync_state != "sync",
                r.lag_bytes,
                r.application_name.clone(),
            )
        })
        .collect();
    candidates.sort();
    candidates.into_iter().next().map(|(_, _, h)| h)
}

/// The Candidate line of `apt-cache policy PACKAGE`: the version apt would install.
pub fn candidate(policy: &str) -> Option<String> {
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "(none)")
        .map(str::to_owned)
}

/// Debian's version order (`dpkg --compare-versions`): epoch, upstream, revision; in each,
/// non-digit runs (`~` before everything, letters before other signs) and digit runs in turn.
pub fn compare(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) => (e.parse().unwrap_or(0), r),
            None => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((u, r)) => (epoch, u, r),
            None => (epoch, rest, ""),
        }
    }
    fn order(c: Option<char>) -> i32 {
        match c {
            Some('~') => -1,
            None => 0,
            Some(c) if c.is_ascii_alphabetic() => c as i32,
            Some(c) => c as i32 + 256,
        }
    }
    fn part(a: &str, b: &str) -> Ordering {
        let (mut a, mut b) = (a, b);
        while !a.is_empty() || !b.is_empty() {
            let na = a.find(|c: char| c.is_ascii_digit()).unwrap_or(a.len());
            let nb = b.find(|c: char| c.is_ascii_digit()).unwrap_or(b.len());
            let (sa, sb) = (&a[..na], &b[..nb]);
            let (mut ca, mut cb) = (sa.chars(), sb.chars());
            loop {
                let (x, y) = (ca.next(), cb.next());
                if x.is_none() && y.is_none() {
                    break;
                }
                match order(x).cmp(&order(y)) {
                    Ordering::Equal => {}
                    o => return o,
                }
            }
            a = &a[na..];
            b = &b[nb..];
            let da = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
            let db = b.find(|c: char| !c.is_ascii_digit()).unwrap_or(b.len());
            let x: u64 = a[..da].parse().unwrap_or(0);
            let y: u64 = b[..db].parse().unwrap_or(0);
            match x.cmp(&y) {
                Ordering::Equal => {}
                o => return o,
            }
            a = &a[da..];
            b = &b[db..];
        }
        Ordering::Equal
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| part(ua, ub))
        .then_with(|| part(ra, rb))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{PgFacts, ReplicationFact, Setting, WalReceiverFact};

    #[test]
    fn the_candidate_is_read_from_apt_cache_policy() {
        let policy = "postgresql-15:\n  Installed: 15.18-0+deb12u1\n  Candidate: 15.20-0+deb12u1\n  Version table:\n";
        assert_eq!(candidate(policy).as_deref(), Some("15.20-0+deb12u1"));
        assert_eq!(
            candidate("postgresql-15:\n  Installed: (none)\n  Candidate: (none)\n"),
            None
        );
    }

    #[test]
    fn debian_versions_compare_as_dpkg_does() {
        assert_eq!(
            compare("15.18-0+deb12u1", "15.20-0+deb12u1"),
            Ordering::Less
        );
        assert_eq!(
            compare("15.20-0+deb12u1", "15.20-0+deb12u1"),
            Ordering::Equal
        );
        assert_eq!(compare("15.9-1", "15.10-1"), Ordering::Less);
        assert_eq!(compare("15.20~rc1-1", "15.20-1"), Ordering::Less);
        assert_eq!(compare("1:15.1-1", "15.20-1"), Ordering::Greater);
        assert_eq!(
            compare("15.20-0+deb12u2", "15.20-0+deb12u1"),
            Ordering::Greater
        );
    }

    fn host(version: &str, running: &str, standby: bool) -> HostFacts {
        let mut f = HostFacts::default();
        for p in ["postgresql-15", "postgresql-client-15", "libpq5"] {
            f.packages.insert(p.into(), version.into());
        }
        let mut pg = PgFacts {
            running: true,
            in_recovery: standby,
            ..PgFacts::default()
        };
        pg.settings.insert(
            "server_version".into(),
            Setting {
                value: format!("{} (Debian {running})", upstream(running)),
                ..Setting::default()
            },
        );
        if standby {
            pg.wal_receiver = Some(WalReceiverFact {
                status: "streaming".into(),
                ..WalReceiverFact::default()
            });
        }
        f.postgres = Some(pg);
        f
    }

    fn cluster(version: Option<&str>) -> (Cluster, Topology) {
        let text = "cluster: {name: t, flavour: streaming}\npostgres: {version: 15, superuser_password: {env: X}}\nreplication: {user: replicator, password: {env: X}}\nhosts:\n  - {name: pg1, address: 10.0.0.1, role: primary}\n  - {name: pg2, address: 10.0.0.2, role: standby}\n  - {name: pg3, address: 10.0.0.3, role: standby}\n";
        let mut c = crate::inventory::load_str(std::path::Path::new("t.yml"), text)
            .expect("loads")
            .cluster;
        c.postgres.package_version = version.map(str::to_owned);
        let topology = Topology::declared(&c);
        (c, topology)
    }

    #[test]
    fn standbys_first_then_a_switchover_to_the_synchronous_one_then_the_old_primary() {
        let (c, t) = cluster(Some("15.20-0+deb12u1"));
        let mut facts = BTreeMap::new();
        let mut primary = host("15.18-0+deb12u1", "15.18-0+deb12u1", false);
        if let Some(pg) = primary.postgres.as_mut() {
            for (name, sync) in [("pg2", "async"), ("pg3", "sync")] {
                pg.replication.push(ReplicationFact {
                    application_name: name.into(),
                    state: "streaming".into(),
                    sync_state: sync.into(),
                    ..ReplicationFact::default()
                });
            }
        }
        facts.insert("pg1".to_owned(), primary);
        facts.insert(
            "pg2".to_owned(),
            host("15.18-0+deb12u1", "15.18-0+deb12u1", true),
        );
        // Upgraded by hand, still running the old binary: a restart only.
        facts.insert(
            "pg3".to_owned(),
            host("15.20-0+deb12u1", "15.18-0+deb12u1", true),
        );
        let u = plan(&c, &crate::flavours::streaming::Streaming, &t, &facts).expect("an upgrade");
        let order: Vec<&str> = u.hosts.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(order, ["pg2", "pg3", "pg1"]);
        assert!(u.hosts[1].install.is_empty() && u.hosts[1].restart);
        assert_eq!(
            u.hosts[0].install,
            ["postgresql-15", "postgresql-client-15", "libpq5"]
        );
        assert_eq!(u.switchover_to.as_deref(), Some("pg3"));
        assert_eq!(u.refusal, None);
        assert_eq!(u.change_count(), 4);
        // A standby the flavour may not promote (Patroni's nofailover) is never the target.
        assert_eq!(target(&t, &facts, |h| h != "pg3").as_deref(), Some("pg2"));
        assert_eq!(target(&t, &facts, |_| false), None);
    }

    #[test]
    fn nothing_when_every_host_runs_the_pin_and_a_downgrade_is_refused() {
        let (c, t) = cluster(Some("15.20-0+deb12u1"));
        let v = "15.20-0+deb12u1";
        let facts: BTreeMap<String, HostFacts> = [
            ("pg1".to_owned(), host(v, v, false)),
            ("pg2".to_owned(), host(v, v, true)),
        ]
        .into();
        assert_eq!(
            plan(&c, &crate::flavours::streaming::Streaming, &t, &facts),
            None
        );
        let (c, t) = cluster(Some("15.18-0+deb12u1"));
        let u = plan(&c, &crate::flavours::streaming::Streaming, &t, &facts).expect("a refusal");
        assert!(u.refusal.expect("refused").contains(
            "older than what is installed (pg1 has 15.20-0+deb12u1, pg2 has 15.20-0+deb12u1)"
        ));
        let (c, t) = cluster(None);
        assert_eq!(
            plan(&c, &crate::flavours::streaming::Streaming, &t, &facts),
            None,
            "no pin, no upgrade"
        );
    }
}
