//! The cluster's real topology, read from the hosts' facts. The inventory's `role: primary`
//! holds only until a cluster exists; afterwards the hosts say who is primary and who streams
//! from whom, and pgha plans with that.

use std::collections::BTreeMap;

use crate::facts::HostFacts;
use crate::flavours::Flavour;
use crate::model::{Cluster, Topology};

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("more than one primary is running: {}. pgha will not pick one; stop the wrong one (it holds writes the other lacks) and run plan again", .0.join(", "))]
    SplitBrain(Vec<String>),
    #[error("the primary is not in the inventory: {} stream{} from {address}, which no host of the inventory has. Removing the current primary is refused: switch over to a standby that stays (`pgha switchover --to HOST` with the inventory that still has the primary), then remove the former primary", .standbys.join(", "), if .standbys.len() == 1 { "s" } else { "" })]
    PrimaryLeft {
        address: String,
        standbys: Vec<String>,
    },
}

/// Standbys of the inventory that stream from a server no host of the inventory is (while
/// none of them runs as primary): the primary left the inventory. `(its address, they)`.
fn primary_outside(
    cluster: &Cluster,
    facts: &BTreeMap<String, HostFacts>,
    by_address: &BTreeMap<&str, &str>,
) -> Option<(String, Vec<String>)> {
    let mut address = None;
    let mut standbys = Vec::new();
    for h in cluster.hosts.iter().filter(|h| h.role.holds_data()) {
        let Some(w) = facts
            .get(&h.name)
            .and_then(|f| f.postgres.as_ref())
            .filter(|pg| pg.running && pg.in_recovery)
            .and_then(|pg| pg.wal_receiver.as_ref())
            .filter(|w| w.status == "streaming" && !w.sender_host.is_empty())
        else {
            continue;
        };
        if !by_address.contains_key(w.sender_host.as_str()) {
            address.get_or_insert_with(|| w.sender_host.clone());
            standbys.push(h.name.clone());
        }
    }
    address.map(|a| (a, standbys))
}

/// The observed topology and notes on where it differs from the inventory.
pub fn observe(
    cluster: &Cluster,
    flavour: &dyn Flavour,
    facts: &BTreeMap<String, HostFacts>,
) -> Result<(Topology, Vec<String>), TopologyError> {
    let declared = Topology::declared(cluster);
    let mut notes = Vec::new();
    let running_primaries: Vec<String> = cluster
        .hosts
        .iter()
        .filter(|h| h.role.holds_data())
        .filter(|h| {
            facts
                .get(&h.name)
                .and_then(|f| f.postgres.as_ref())
                .is_some_and(|pg| pg.running && !pg.in_recovery && !pg.pristine)
        })
        .map(|h| h.name.clone())
        .collect();
    // Where the flavour keeps its own word on the leader (a leader key) it decides, unless it
    // names a server that is not the one running as primary. In a standby cluster every
    // server is in recovery and the leader is the standby leader.
    let flavour_leader = flavour
        .leader(cluster, facts)
        .filter(|l| running_primaries.is_empty() || running_primaries.contains(l));
    let by_address: BTreeMap<&str, &str> = cluster
        .hosts
        .iter()
        .map(|h| (h.address.as_str(), h.name.as_str()))
        .collect();
    let primary = match (flavour_leader, running_primaries.as_slice()) {
        (Some(leader), [] | [_]) => leader,
        // Nothing runs as primary (it crashed): the one the standbys follow is the former
        // primary, whatever the inventory declared (a failover may have happened since).
        (None, []) => {
            if let Some((address, standbys)) = primary_outside(cluster, facts, &by_address) {
                return Err(TopologyError::PrimaryLeft { address, standbys });
            }
            match followed_root(cluster, facts, &by_address) {
                Some(former) => {
                    if former != declared.primary {
                        notes.push(format!(
                        "no server runs as primary; the standbys follow {former}, the former primary"
                    ));
                    }
                    former
                }
                None => declared.primary.clone(),
            }
        }
        (None, [one]) => one.clone(),
        (_, many) => match newest_timeline(many, facts) {
            // A failover promoted one while the other was away: the promoted one is on a
            // newer timeline of the same cluster and is the primary; the other is a former
            // primary that came back, which plan rewinds (naming what that discards).
            Some(newest) => {
                for other in many.iter().filter(|h| **h != newest) {
                    notes.push(format!(
                        "{other} runs as a second primary on an older timeline of this cluster: {newest} was promoted after it. Plan rewinds {other} onto {newest}'s timeline"
                    ));
                }
                newest
            }
            // A fresh Debian cluster on a standby-to-be is "not in recovery" too; only data
            // that is not pristine counts as a primary, and two of those that a timeline does
            // not tell apart are a split brain.
            None => return Err(TopologyError::SplitBrain(many.to_vec())),
        },
    };
    if primary != declared.primary {
        notes.push(format!(
            "{primary} is the primary (the inventory says {}): planning with the real topology, nothing is switched back",
            declared.primary
        ));
    }
    let mut upstream = BTreeMap::new();
    for h in &cluster.hosts {
        // Only standbys stream: a witness or an etcd host holds no copy of the data.
        if h.name == primary || !h.role.holds_data() {
            continue;
        }
        let streaming_from = facts
            .get(&h.name)
            .and_then(|f| f.postgres.as_ref())
            .and_then(|pg| pg.wal_receiver.as_ref())
            .and_then(|w| by_address.get(w.sender_host.as_str()).copied())
            .filter(|u| *u != h.name);
        let wanted = match declared.upstream.get(&h.name) {
            // The declared upstream is the old primary, or itself now primary: follow the real one.
            Some(u) if *u == declared.primary || *u == primary => primary.clone(),
            Some(u) => u.clone(),
            None => primary.clone(),
        };
        if let Some(actual) = streaming_from {
            if actual != wanted {
                notes.push(format!(
                    "{} streams from {actual}; the inventory wants {wanted}: plan re-points it",
                    h.name
                ));
            }
        }
        upstream.insert(h.name.clone(), wanted);
    }
    let hardware = hardware(cluster, facts);
    Ok((
        Topology {
            primary,
            upstream,
            hardware,
        },
        notes,
    ))
}

/// What hardware-derived settings size for: the smallest memory and CPU count among the
/// data hosts read (None when none was).
pub fn hardware(
    cluster: &Cluster,
    facts: &BTreeMap<String, HostFacts>,
) -> Option<crate::model::Hardware> {
    cluster
        .hosts
        .iter()
        .filter(|h| h.role.holds_data())
        .filter_map(|h| facts.get(&h.name).and_then(|f| f.hardware))
        .reduce(crate::model::Hardware::min)
}

/// The host a running standby follows: the sender of its WAL receiver, or while that
/// reconnects, the host of its `primary_conninfo`.
fn followed<'a>(
    pg: &crate::facts::PgFacts,
    by_address: &BTreeMap<&str, &'a str>,
) -> Option<&'a str> {
    let address = match pg
        .wal_receiver
        .as_ref()
        .filter(|w| !w.sender_host.is_empty())
    {
        Some(w) => w.sender_host.clone(),
        None => pg
            .settings
            .get("primary_conninfo")?
            .value
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("host="))?
            .trim_matches('\'')
            .to_owned(),
    };
    by_address.get(address.as_str()).copied()
}

/// The one host at the top of what the running standbys follow (up through cascades), when
/// they agree on one.
fn followed_root(
    cluster: &Cluster,
    facts: &BTreeMap<String, HostFacts>,
    by_address: &BTreeMap<&str, &str>,
) -> Option<String> {
    let standby = |h: &str| {
        facts
            .get(h)
            .and_then(|f| f.postgres.as_ref())
            .filter(|pg| pg.running && pg.in_recovery)
    };
    let mut roots = std::collections::BTreeSet::new();
    for h in cluster.hosts.iter().filter(|h| h.role.holds_data()) {
        let Some(mut pg) = standby(&h.name) else {
            continue;
        };
        let mut at = h.name.as_str();
        // Up the cascade: a followed host that runs as a standby follows another.
        for _ in 0..cluster.hosts.len() {
            let Some(next) = followed(pg, by_address).filter(|n| *n != at) else {
                break;
            };
            at = next;
            match standby(next) {
                Some(up) => pg = up,
                None => break,
            }
        }
        if at != h.name {
            roots.insert(at.to_owned());
        }
    }
    let mut roots = roots.into_iter();
    match (roots.next(), roots.next()) {
        (Some(one), None) if standby(&one).is_none() => Some(one),
        _ => None,
    }
}

/// Of servers running as primaries, the one on the newest timeline when all hold the same
/// cluster and exactly one is newest.
fn newest_timeline(hosts: &[String], facts: &BTreeMap<String, HostFacts>) -> Option<String> {
    let pg = |h: &String| facts.get(h).and_then(|f| f.postgres.as_ref());
    let first = pg(hosts.first()?)?;
    if hosts
        .iter()
        .any(|h| pg(h).is_none_or(|p| p.system_identifier != first.system_identifier))
    {
        return None;
    }
    let newest = hosts
        .iter()
        .max_by_key(|h| pg(h).map_or(0, |p| p.timeline))?;
    let top = pg(newest)?.timeline;
    let tied = hosts
        .iter()
        .filter(|h| pg(h).is_some_and(|p| p.timeline == top))
        .count();
    (tied == 1).then(|| newest.clone())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::{observe, TopologyError};
    use crate::facts::{HostFacts, PgFacts, WalReceiverFact};
    use crate::inventory::{load_str, Inventory};

    fn inventory(flavour_section: &str, flavour: &str) -> Inventory {
        let text = format!(
            "cluster: {{name: t, flavour: {flavour}}}\npostgres: {{version: 15, superuser_password: {{env: X}}}}\nreplication: {{user: replicator, password: {{env: X}}}}\nhosts:\n  - {{name: pg1, address: 10.0.0.1, role: primary}}\n  - {{name: pg2, address: 10.0.0.2, role: standby}}\n  - {{name: pg3, address: 10.0.0.3, role: standby, upstream: pg2}}\n{flavour_section}"
        );
        load_str(Path::new("t.yml"), &text).expect("loads")
    }

    fn streaming() -> Inventory {
        inventory("", "streaming")
    }

    fn pg(running: bool, in_recovery: bool, sender: Option<&str>) -> HostFacts {
        HostFacts {
            postgres: Some(PgFacts {
                initialized: true,
                running,
                in_recovery,
                wal_receiver: sender.map(|s| WalReceiverFact {
                    status: "streaming".into(),
                    sender_host: s.into(),
                    slot_name: String::new(),
                }),
                ..PgFacts::default()
            }),
            ..HostFacts::default()
        }
    }

    fn facts(list: &[(&str, HostFacts)]) -> BTreeMap<String, HostFacts> {
        list.iter()
            .map(|(h, f)| ((*h).to_owned(), f.clone()))
            .collect()
    }

    /// A standby whose WAL receiver is down (its primary crashed): only its
    /// primary_conninfo says whom it follows.
    fn reconnecting(conninfo: &str) -> HostFacts {
        let mut f = pg(true, true, None);
        if let Some(p) = f.postgres.as_mut() {
            p.settings.insert(
                "primary_conninfo".into(),
                crate::facts::Setting {
                    value: conninfo.into(),
                    context: "sighup".into(),
                    pending_restart: false,
                },
            );
        }
        f
    }

    #[test]
    fn a_crashed_primary_is_the_one_the_standbys_follow_not_the_declared_one() {
        // pg2 was promoted by an earlier failover, then crashed (no facts): pg1, declared
        // primary, and pg3 follow it. A failover must take pg2 as the one gone, never fence
        // pg1.
        let inv = streaming();
        let f = facts(&[
            (
                "pg1",
                reconnecting("user=replicator host='10.0.0.2' port=5432 sslmode=verify-full"),
            ),
            (
                "pg3",
                reconnecting("host=10.0.0.2 port=5432 user=replicator"),
            ),
        ]);
        let (t, notes) = observe(&inv.cluster, inv.flavour.as_ref(), &f).expect("observe");
        assert_eq!(t.primary, "pg2");
        assert!(
            notes.iter().any(|n| n.contains("the standbys follow pg2")),
            "{notes:?}"
        );
        // Standbys that disagree (or say nothing) leave the inventory's word.
        let f = facts(&[
            ("pg2", reconnecting("host=10.0.0.1")),
            ("pg3", reconnecting("host=10.0.0.2")),
        ]);
        let (t, _) = observe(&inv.cluster, inv.flavour.as_ref(), &f).expect("observe");
        assert_eq!(t.primary, "pg1", "pg3 cascades from pg2, which follows pg1");
    }

    #[test]
    fn bare_hosts_follow_the_inventory() {
        let inv = streaming();
        let (t, notes) = observe(&inv.cluster, inv.flavour.as_ref(), &BTreeMap::new()).expect("ok");
        assert_eq!(t.primary, "pg1");
        assert_eq!(t.upstream["pg3"], "pg2");
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn a_promoted_standby_is_the_primary_and_nothing_is_switched_back() {
        let inv = streaming();
        let f = facts(&[
            ("pg1", pg(true, true, Some("10.0.0.2"))),
            ("pg2", pg(true, false, None)),
            ("pg3", pg(true, true, Some("10.0.0.2"))),
        ]);
        let (t, notes) = observe(&inv.cluster, inv.flavour.as_ref(), &f).expect("ok");
        assert_eq!(t.primary, "pg2");
        assert_eq!(t.upstream["pg1"], "pg2");
        assert_eq!(
            t.upstream["pg3"], "pg2",
            "pg3's declared upstream now leads"
        );
        assert!(
            notes[0].contains("pg2 is the primary (the inventory says pg1)"),
            "{notes:?}"
        );
    }

    #[test]
    fn two_running_primaries_are_a_split_brain_pgha_will_not_resolve() {
        let inv = streaming();
        let f = facts(&[
            ("pg1", pg(true, false, None)),
            ("pg2", pg(true, false, None)),
        ]);
        let err = observe(&inv.cluster, inv.flavour.as_ref(), &f).expect_err("split brain");
        let TopologyError::SplitBrain(hosts) = &err else {
            panic!("{err}");
        };
        assert_eq!(hosts, &["pg1", "pg2"]);
        assert!(err.to_string().contains("will not pick one"));
    }

    #[test]
    fn a_primary_that_left_the_inventory_is_refused() {
        // pg1, the primary, was deleted from the inventory: the standbys stream from its
        // address, which no host of the inventory has.
        let inv = streaming();
        let mut cluster = inv.cluster.clone();
        cluster.hosts.retain(|h| h.name != "pg1");
        let f = facts(&[
            ("pg2", pg(true, true, Some("10.0.0.1"))),
            ("pg3", pg(true, true, Some("10.0.0.2"))),
        ]);
        let err = observe(&cluster, inv.flavour.as_ref(), &f).expect_err("refused");
        assert!(
            matches!(&err, TopologyError::PrimaryLeft { address, standbys } if address == "10.0.0.1" && standbys == &["pg2"]),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("switch over to a standby that stays"),
            "{err}"
        );
    }

    #[test]
    fn a_former_primary_back_on_an_older_timeline_is_not_a_split_brain() {
        let inv = streaming();
        let on = |timeline: u32| {
            let mut f = pg(true, false, None);
            if let Some(p) = f.postgres.as_mut() {
                p.timeline = timeline;
                p.system_identifier = "7".into();
            }
            f
        };
        let f = facts(&[("pg1", on(1)), ("pg2", on(2))]);
        let (t, notes) = observe(&inv.cluster, inv.flavour.as_ref(), &f).expect("resolved");
        assert_eq!(t.primary, "pg2");
        assert_eq!(t.upstream["pg1"], "pg2");
        assert!(
            notes
                .iter()
                .any(|n| n.contains("pg1 runs as a second primary")),
            "{notes:?}"
        );
        // The same timeline tells nothing: pgha does not pick.
        let f = facts(&[("pg1", on(2)), ("pg2", on(2))]);
        assert!(observe(&inv.cluster, inv.flavour.as_ref(), &f).is_err());
    }

    #[test]
    fn a_pristine_server_on_a_standby_to_be_is_no_primary() {
        let inv = streaming();
        let mut fresh = pg(true, false, None);
        if let Some(p) = fresh.postgres.as_mut() {
            p.pristine = true;
        }
        let f = facts(&[("pg1", pg(true, false, None)), ("pg2", fresh)]);
        let (t, _) = observe(&inv.cluster, inv.flavour.as_ref(), &f).expect("ok");
        assert_eq!(t.primary, "pg1");
    }

    #[test]
    fn a_standby_streaming_from_the_wrong_host_is_noted_for_re_pointing() {
        let inv = streaming();
        let f = facts(&[
            ("pg1", pg(true, false, None)),
            ("pg2", pg(true, true, Some("10.0.0.1"))),
            ("pg3", pg(true, true, Some("10.0.0.1"))),
        ]);
        let (t, notes) = observe(&inv.cluster, inv.flavour.as_ref(), &f).expect("ok");
        assert_eq!(t.upstream["pg3"], "pg2", "the inventory's word stands");
        assert!(
            notes
                .iter()
                .any(|n| n.contains("pg3 streams from pg1; the inventory wants pg2")),
            "{notes:?}"
        );
    }
}
