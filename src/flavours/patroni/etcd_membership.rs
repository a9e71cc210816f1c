//! etcd's membership against the inventory's `patroni.etcd.members`: read from what the
//! staying members know (`etcdctl member list` in their facts), never from a host outside
//! the inventory. Changes go one member at a time, each keeping the quorum: a departed
//! member is removed through a healthy staying one (`etcd_member_remove`), a new one joins as
//! a learner, starts with the current members, and is promoted once in sync
//! (`etcd_member_join`): a learner has no vote, so the cluster keeps its quorum while the new
//! member catches up, and the promotion adds a vote that is already there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::facts::HostFacts;
use crate::flavours::patroni::probes::{EtcdFact, EtcdMember};

/// A member the inventory wants: its host and its peer URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wanted {
    pub name: String,
    pub peer_url: String,
}

/// The membership as the first healthy wanted member (in the inventory's order) knows it.
pub struct Membership<'a> {
    /// The host it was read from: membership changes are asked of it.
    pub through: &'a str,
    pub members: Vec<EtcdMember>,
    /// Wanted members whose local etcd is healthy.
    pub healthy: Vec<&'a str>,
}

impl<'a> Membership<'a> {
    /// None when no wanted member is healthy with a membership (a cluster not formed yet).
    pub fn read(
        wanted: &'a [Wanted],
        facts: &'a BTreeMap<String, HostFacts>,
    ) -> Option<Membership<'a>> {
        // Every host's own word, a member on its way out included: it votes until removed.
        let healthy: Vec<&str> = facts
            .iter()
            .filter(|(_, f)| EtcdFact::of(f).is_some_and(|e| e.healthy))
            .map(|(n, _)| n.as_str())
            .collect();
        let through = wanted.iter().filter(|w| healthy.contains(&w.name.as_str()));
        through.into_iter().find_map(|w| {
            let members = EtcdMember::list_of(facts.get(&w.name)?)?;
            // Only this cluster's etcd counts: one that does not list the host itself at its
            // peer address is another's, such as the single-node etcd Debian's package
            // starts on a fresh host (its peer is localhost). Joining that would start this
            // member against a cluster of strangers.
            let ours = members
                .iter()
                .any(|m| m.peer_urls.iter().any(|u| same_peer(u, &w.peer_url)));
            ours.then(|| Membership {
                through: w.name.as_str(),
                members,
                healthy: healthy.clone(),
            })
        })
    }

    /// Members the inventory no longer wants: a name no wanted member has, or an unnamed
    /// (never started) one whose peer URL no wanted member has.
    pub fn departed(&self, wanted: &[Wanted]) -> Vec<&EtcdMember> {
        self.members
            .iter()
            .filter(|m| {
                if m.name.is_empty() {
                    !wanted.iter().any(|w| m.peer_urls.contains(&w.peer_url))
                } else {
                    !wanted.iter().any(|w| w.name == m.name)
                }
            })
            .collect()
    }

    /// The member of this peer URL (a learner added by an interrupted join has no name yet).
    pub fn of_peer(&self, peer_url: &str) -> Option<&EtcdMember> {
        self.members
            .iter()
            .find(|m| m.peer_urls.iter().any(|u| u == peer_url))
    }

    pub fn voting(&self) -> usize {
        self.members.iter().filter(|m| !m.is_learner).count()
    }

    /// Healthy voting members, as the wanted members' own probes say.
    pub fn healthy_voting(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.votes_and_started() && self.healthy.contains(&m.name.as_str()))
            .count()
    }

    /// Whether a member answers healthy on its own host.
    pub fn is_healthy(&self, m: &EtcdMember) -> bool {
        m.votes_and_started() && self.healthy.contains(&m.name.as_str())
    }

    /// Why a membership change cannot be made now: the cluster lacks its quorum.
    pub fn no_quorum(&self) -> Option<String> {
        let (voting, healthy) = (self.voting(), self.healthy_voting());
        let need = quorum(voting);
        (healthy < need).then(|| {
            format!(
                "etcd has {healthy} healthy of {voting} voting members and needs {need} for a quorum: a membership change needs the quorum first (bring members back, or restore etcd from a snapshot)"
            )
        })
    }

    /// The client URLs of the started voting members: where a joining member asks.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.votes_and_started())
            .flat_map(|m| m.client_urls.iter().cloned())
            .collect()
    }
}

/// Votes a cluster of `voting` members needs.
/// The same peer endpoint, whatever the scheme (a member moving to TLS changes only that).
fn same_peer(a: &str, b: &str) -> bool {
    let strip = |u: &str| u.split_once("://").map_or(u, |(_, rest)| rest).to_owned();
    strip(a) == strip(b)
}

pub fn quorum(voting: usize) -> usize {
    voting / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(lines: &[&str]) -> HostFacts {
        let mut f = HostFacts::default();
        f.probes.insert(
            "etcd".to_owned(),
            lines.iter().map(|l| (*l).to_owned()).collect(),
        );
        f
    }

    fn wanted(names: &[&str]) -> Vec<Wanted> {
        names
            .iter()
            .map(|n| Wanted {
                name: (*n).to_owned(),
                peer_url: format!("http://{n}:2380"),
            })
            .collect()
    }

    const THREE: &str = r#"members {"members":[{"ID":1,"name":"pg1","peerURLs":["http://pg1:2380"],"clientURLs":["http://pg1:2379"]},{"ID":2,"name":"pg2","peerURLs":["http://pg2:2380"],"clientURLs":["http://pg2:2379"]},{"ID":26,"name":"pg3","peerURLs":["http://pg3:2380"],"clientURLs":["http://pg3:2379"]}]}"#;

    #[test]
    fn a_departed_member_is_found_on_the_staying_ones() {
        let w = wanted(&["pg1", "pg2"]);
        let all: BTreeMap<String, HostFacts> = [
            ("pg1".to_owned(), facts(&["healthy", "leader", THREE])),
            ("pg2".to_owned(), facts(&["healthy", "follower", THREE])),
        ]
        .into();
        let m = Membership::read(&w, &all).expect("read");
        assert_eq!(m.through, "pg1");
        let gone: Vec<String> = m.departed(&w).iter().map(|m| m.hex_id()).collect();
        assert_eq!(gone, ["1a"]);
        assert_eq!(m.no_quorum(), None, "2 of 3 healthy");
        assert_eq!(m.endpoints().len(), 3);
    }

    #[test]
    fn no_change_without_a_quorum() {
        let w = wanted(&["pg1"]);
        let all: BTreeMap<String, HostFacts> =
            [("pg1".to_owned(), facts(&["healthy", "leader", THREE]))].into();
        let m = Membership::read(&w, &all).expect("read");
        assert!(m
            .no_quorum()
            .is_some_and(|r| r.contains("1 healthy of 3 voting members and needs 2")));
        let none: BTreeMap<String, HostFacts> = [("pg1".to_owned(), facts(&["unhealthy"]))].into();
        assert!(Membership::read(&w, &none).is_none());
    }

    #[test]
    fn debian_s_own_etcd_on_a_fresh_host_is_no_formed_cluster() {
        let w = wanted(&["pg1", "pg2"]);
        let debian = r#"members {"members":[{"ID":9,"name":"pg1","peerURLs":["http://localhost:2380"],"clientURLs":["http://localhost:2379"]}]}"#;
        let all: BTreeMap<String, HostFacts> =
            [("pg1".to_owned(), facts(&["healthy", "leader", debian]))].into();
        assert!(Membership::read(&w, &all).is_none());
        // A member moving to TLS is still this cluster's.
        let moved = THREE.replacen("http://pg1:2380", "https://pg1:2380", 1);
        let all: BTreeMap<String, HostFacts> =
            [("pg1".to_owned(), facts(&["healthy", "leader", &moved]))].into();
        assert!(Membership::read(&w, &all).is_some());
    }
}
