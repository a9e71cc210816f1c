//! What a drill measured, and its verdict: the figures from the acknowledged writes, and what
//! broke (writes lost where replication is synchronous, no new primary, the cluster not whole
//! again afterwards, an objective missed).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::drill::load::Ack;

/// What the cluster promises (the inventory's `objectives:`): the longest time to route
/// writes to a new primary, and whether no acknowledged write may be lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Objectives {
    pub rto: Option<Duration>,
    pub rpo_zero: bool,
}

impl Objectives {
    /// What the inventory declares, when it declares anything.
    pub fn declared(o: Option<&crate::model::Objectives>) -> Option<Objectives> {
        let o = o?;
        Some(Objectives {
            rto: o.rto,
            rpo_zero: matches!(o.rpo, Some(crate::model::Rpo::Zero)),
        })
    }
}

/// The figures of the write load around the crash.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Writes {
    pub acknowledged: usize,
    pub before_crash: usize,
    pub after_crash: usize,
    /// The longest time between two acknowledged writes (the crash's gap).
    pub longest_gap_s: Option<f64>,
    /// From the crash to the first write a server other than the old primary acknowledged.
    pub time_to_route_s: Option<f64>,
    /// Acknowledged ids missing on the new primary; None when it could not be read.
    pub lost: Option<usize>,
    /// The first of them, for the DBA to look at.
    pub lost_ids: Vec<i64>,
}

impl Writes {
    /// The figures from the acknowledgements, the crash's instant, the servers that
    /// acknowledged before it (the old primary) and the ids the new primary holds (None: not
    /// read).
    pub fn measure(
        acks: &[Ack],
        crashed_at: Instant,
        old_servers: &[String],
        held: Option<&BTreeSet<i64>>,
    ) -> Writes {
        let longest_gap = acks
            .windows(2)
            .map(|w| w[1].at.saturating_duration_since(w[0].at))
            .max();
        let time_to_route = acks
            .iter()
            .find(|a| a.at >= crashed_at && !old_servers.contains(&a.server))
            .map(|a| a.at.saturating_duration_since(crashed_at));
        let lost: Option<Vec<i64>> = held.map(|held| {
            acks.iter()
                .map(|a| a.id)
                .filter(|id| !held.contains(id))
                .collect()
        });
        Writes {
            acknowledged: acks.len(),
            before_crash: acks.iter().filter(|a| a.at < crashed_at).count(),
            after_crash: acks.iter().filter(|a| a.at >= crashed_at).count(),
            longest_gap_s: longest_gap.map(|d| d.as_secs_f64()),
            time_to_route_s: time_to_route.map(|d| d.as_secs_f64()),
            lost: lost.as_ref().map(Vec::len),
            lost_ids: lost.unwrap_or_default().into_iter().take(20).collect(),
        }
    }
}

/// A drill's whole story, as the table and `--json` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub cluster: String,
    pub flavour: String,
    pub route: String,
    pub route_hosts: String,
    pub crash: String,
    pub duration_s: u64,
    pub old_primary: String,
    pub new_primary: Option<String>,
    /// `the flavour` or `pgha failover`.
    pub failover_by: String,
    /// A standby was synchronous before the crash: no acknowledged write may be lost.
    pub synchronous: bool,
    pub writes: Writes,
    pub rejoined_as_replica: bool,
    /// Apply after the restore: `ok` or why not.
    pub apply_after: String,
    /// `ok` or `failed`.
    pub verify_after: String,
    pub verify_failures: Vec<String>,
    pub notes: Vec<String>,
    pub rto_s: Option<f64>,
    pub rpo_zero: Option<bool>,
    /// What the flavour's settings and the route should cost at worst (None: a person runs
    /// the failover), with the settings it comes from.
    pub expected_worst_case_s: Option<f64>,
    pub expected_from: Option<String>,
    /// What broke; empty: the drill passed.
    pub broken: Vec<String>,
    pub passed: bool,
}

impl Report {
    /// Fill in the verdict against the objectives, when there are any.
    /// A drill a signal cut short did not prove anything: it fails, saying so first.
    pub fn interrupted(mut self, interrupted: bool) -> Report {
        if interrupted {
            self.broken
                .insert(0, "stopped by a signal: the drill was cut short".to_owned());
            self.passed = false;
        }
        self
    }

    pub fn judge(mut self, objectives: Option<&Objectives>) -> Report {
        self.broken = verdict(&self, objectives);
        self.passed = self.broken.is_empty();
        self.rto_s = objectives.and_then(|o| o.rto).map(|d| d.as_secs_f64());
        self.rpo_zero = objectives.map(|o| o.rpo_zero);
        self
    }
}

/// Why the drill failed; empty when it passed.
pub fn verdict(r: &Report, objectives: Option<&Objectives>) -> Vec<String> {
    let mut broken = Vec::new();
    match &r.new_primary {
        None => broken.push(format!(
            "no other data host became the primary within {} s",
            r.duration_s
        )),
        Some(_) if r.writes.time_to_route_s.is_none() => broken.push(format!(
            "no write reached the new primary through {}",
            r.route
        )),
        Some(_) => {}
    }
    match r.writes.lost {
        Some(n) if n > 0 && r.synchronous => broken.push(format!(
            "{n} acknowledged write{} lost although replication was synchronous",
            plural(n)
        )),
        None if r.new_primary.is_some() => {
            broken.push("the acknowledged writes could not be read back".to_owned())
        }
        _ => {}
    }
    if r.apply_after != "ok" {
        broken.push(format!("apply after the drill: {}", r.apply_after));
    }
    if r.verify_after != "ok" {
        broken.push("verify failed after the drill".to_owned());
    }
    if !r.rejoined_as_replica {
        broken.push(format!("{} did not come back as a replica", r.old_primary));
    }
    if let Some(o) = objectives {
        let rto = o.rto.map(|d| d.as_secs_f64());
        match (rto, r.writes.time_to_route_s) {
            (Some(rto), Some(t)) if t > rto => {
                broken.push(format!("time to route {t:.1} s is over the RTO of {rto} s"))
            }
            (Some(rto), None) => broken.push(format!("writes were not routed again (RTO {rto} s)")),
            _ => {}
        }
        if o.rpo_zero {
            if let Some(n) = r.writes.lost.filter(|n| *n > 0) {
                broken.push(format!(
                    "{n} acknowledged write{} lost: the RPO is zero",
                    plural(n)
                ));
            }
        }
    }
    broken
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: i64, at: Instant, server: &str) -> Ack {
        Ack {
            id,
            at,
            server: server.to_owned(),
        }
    }

    fn passed() -> Report {
        Report {
            cluster: "t".into(),
            flavour: "streaming".into(),
            route: "multihost".into(),
            route_hosts: "10.0.0.1:5432,10.0.0.2:5432".into(),
            crash: "kill".into(),
            duration_s: 30,
            old_primary: "pg1".into(),
            new_primary: Some("pg2".into()),
            failover_by: "pgha failover".into(),
            synchronous: false,
            writes: Writes {
                acknowledged: 100,
                before_crash: 50,
                after_crash: 50,
                longest_gap_s: Some(4.0),
                time_to_route_s: Some(4.2),
                lost: Some(0),
                lost_ids: vec![],
            },
            rejoined_as_replica: true,
            apply_after: "ok".into(),
            verify_after: "ok".into(),
            verify_failures: vec![],
            notes: vec![],
            rto_s: None,
            rpo_zero: None,
            expected_worst_case_s: None,
            expected_from: None,
            broken: vec![],
            passed: false,
        }
    }

    #[test]
    fn figures_come_from_the_acknowledgements_around_the_crash() {
        let t0 = Instant::now();
        let s = Duration::from_millis;
        let acks = [
            ack(1, t0, "10.0.0.1"),
            ack(2, t0 + s(100), "10.0.0.1"),
            // The crash at 150 ms; id 3 and 4 were attempts that failed.
            ack(5, t0 + s(2100), "10.0.0.2"),
            ack(6, t0 + s(2200), "10.0.0.2"),
        ];
        let held: BTreeSet<i64> = [1, 5, 6].into();
        let old = ["10.0.0.1".to_owned()];
        let w = Writes::measure(&acks, t0 + s(150), &old, Some(&held));
        assert_eq!((w.acknowledged, w.before_crash, w.after_crash), (4, 2, 2));
        assert_eq!(w.longest_gap_s, Some(2.0));
        assert_eq!(w.time_to_route_s, Some(1.95));
        assert_eq!((w.lost, w.lost_ids.clone()), (Some(1), vec![2]));
        // The old primary answering again after the crash is no new route.
        let w = Writes::measure(&acks[..2], t0 + s(50), &old, None);
        assert_eq!((w.time_to_route_s, w.lost), (None, None));
    }

    #[test]
    fn asynchronous_losses_are_reported_but_pass_and_synchronous_ones_fail() {
        let mut r = passed();
        r.writes.lost = Some(3);
        assert!(r.clone().judge(None).passed);
        r.synchronous = true;
        let judged = r.judge(None);
        assert_eq!(
            judged.broken,
            ["3 acknowledged writes lost although replication was synchronous"]
        );
        assert!(!judged.passed);
    }

    #[test]
    fn a_cluster_not_whole_again_fails() {
        let mut r = passed();
        r.verify_after = "failed".into();
        r.rejoined_as_replica = false;
        r.new_primary = None;
        assert_eq!(
            r.judge(None).broken,
            [
                "no other data host became the primary within 30 s",
                "verify failed after the drill",
                "pg1 did not come back as a replica",
            ]
        );
    }

    #[test]
    fn objectives_break_on_a_slow_route_and_on_any_loss_with_rpo_zero() {
        let strict = Objectives {
            rto: Some(Duration::from_secs(3)),
            rpo_zero: true,
        };
        let loose = Objectives {
            rto: Some(Duration::from_secs(10)),
            rpo_zero: false,
        };
        let judged = passed().judge(Some(&strict));
        assert_eq!(
            judged.broken,
            ["time to route 4.2 s is over the RTO of 3 s"]
        );
        assert_eq!((judged.rto_s, judged.rpo_zero), (Some(3.0), Some(true)));
        let mut lossy = passed();
        lossy.writes.lost = Some(1);
        assert_eq!(
            lossy.clone().judge(Some(&strict)).broken[1],
            "1 acknowledged write lost: the RPO is zero"
        );
        assert!(lossy.judge(Some(&loose)).passed);
        let mut unrouted = passed();
        unrouted.writes.time_to_route_s = None;
        assert_eq!(
            unrouted.judge(Some(&loose)).broken,
            [
                "no write reached the new primary through multihost",
                "writes were not routed again (RTO 10 s)"
            ]
        );
    }
}
