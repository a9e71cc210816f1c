//! The cluster's backups judged as a whole from every data host's facts: the newest good
//! backup, whether it is proven (a restore test passed), and what is drift. One judgment for
//! plan, verify, status and `pgha backup list`.
//!
//! Drift: no good backup anywhere; the timer fired after the newest good backup started and
//! no run is going on (a missed or failed run); a restore test ran since the newest good
//! backup was taken and did not pass on it. A backup whose restore test is not due yet is not
//! drift: a nightly backup at 01:00 is not unproven at 02:00 when the test runs at 03:00.

use std::collections::BTreeMap;

use crate::facts::HostFacts;
use crate::model::Cluster;

use super::broken_reason;
use super::probes::{self, Record, Report};

/// Seconds between the timer firing and the run's start that still count as that run.
const SLACK_S: i64 = 90;

#[derive(Debug, Clone, Default)]
pub struct Judgment {
    /// The newest backup that is verified and not found broken since, with its host.
    pub newest_good: Option<Record>,
    /// Every backup of every host read, oldest first.
    pub all: Vec<Record>,
    /// Hosts where a run is going on now.
    pub running: Vec<String>,
    /// Why the cluster's backups are not what the inventory asks for (empty: they are).
    pub drift: Vec<String>,
    /// Backups found broken (a failed run, a failed restore test), newest first: shown, not
    /// drift once a newer good backup is proven.
    pub broken: Vec<Record>,
    /// Hosts whose backups were not read (facts missing, program not installed yet).
    pub unread: Vec<String>,
    /// Copies `restore --to-scratch` left running, `host: folder`.
    pub scratch: Vec<String>,
}

/// Seconds since the Unix epoch of `2026-12-02T01:00:00Z`.
pub fn epoch(stamp: &str) -> Option<i64> {
    let t = time::PrimitiveDateTime::parse(
        stamp.trim_end_matches('Z'),
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    )
    .ok()?;
    Some(t.assume_utc().unix_timestamp())
}

pub fn judge(cluster: &Cluster, facts: &BTreeMap<String, HostFacts>) -> Judgment {
    let data: Vec<&str> = cluster
        .hosts
        .iter()
        .filter(|h| h.role.holds_data())
        .map(|h| h.name.as_str())
        .collect();
    judge_hosts(&data, facts)
}

/// The judgment over these data hosts.
pub fn judge_hosts(data: &[&str], facts: &BTreeMap<String, HostFacts>) -> Judgment {
    let mut j = Judgment::default();
    let mut reports: Vec<(String, Report)> = Vec::new();
    for host in data {
        match facts.get(*host).and_then(probes::read) {
            Some((_, Some(report))) => reports.push(((*host).to_owned(), report)),
            _ => j.unread.push((*host).to_owned()),
        }
    }
    for (host, report) in &reports {
        if report.running {
            j.running.push(host.clone());
        }
        j.scratch
            .extend(report.scratch.iter().map(|s| format!("{host}: {s}")));
        for b in &report.backups {
            let mut b = b.clone();
            if b.host.is_empty() {
                b.host = host.clone();
            }
            j.all.push(b);
        }
    }
    j.all
        .sort_by(|a, b| a.label.cmp(&b.label).then(a.host.cmp(&b.host)));
    j.newest_good = j.all.iter().rev().find(|b| b.good()).cloned();
    j.broken = j
        .all
        .iter()
        .rev()
        .filter(|b| !b.good() && b.state != "partial")
        .cloned()
        .collect();
    if !j.running.is_empty() {
        return j;
    }
    let last_fired = reports
        .iter()
        .filter_map(|(_, r)| r.backup_fired.as_deref().and_then(epoch))
        .max();
    let why_not = last_failure(&reports);
    // The newest backup taken is broken (its run or a restore test failed): the newest good
    // one is older than what the schedule last made.
    if let Some(bad) = j.broken.first() {
        if j.newest_good.as_ref().is_none_or(|g| g.label < bad.label) {
            j.drift.push(format!(
                "the newest backup {} on {} is broken: {}",
                bad.label,
                bad.host,
                broken_reason(bad)
            ));
        }
    }
    match &j.newest_good {
        None => j.drift.push(match why_not {
            Some(w) => {
                format!("no verified backup on any host that takes backups; the last run: {w}")
            }
            None => "no verified backup on any host that takes backups yet".to_owned(),
        }),
        Some(b) => {
            let started = epoch(&b.started).unwrap_or(0);
            if let Some(fired) = last_fired.filter(|f| *f > started + SLACK_S) {
                j.drift.push(format!(
                    "the backup timer fired at {} and no good backup followed (the newest is {} on {}){}",
                    stamp_of(fired),
                    b.label,
                    b.host,
                    why_not.map(|w| format!("; the last run: {w}")).unwrap_or_default()
                ));
            }
            let finished = epoch(&b.finished).unwrap_or(0);
            let tested_since = reports
                .iter()
                .find(|(h, _)| *h == b.host)
                .and_then(|(_, r)| r.test_fired.as_deref().and_then(epoch))
                .is_some_and(|t| t > finished + SLACK_S);
            if tested_since && !b.proven() {
                j.drift.push(format!(
                    "the newest good backup {} on {} is not proven: a restore test was due since it was taken and none passed on it",
                    b.label, b.host
                ));
            }
        }
    }
    j
}

/// The newest failed or interrupted run on any host, said in a line.
fn last_failure(reports: &[(String, Report)]) -> Option<String> {
    reports
        .iter()
        .filter_map(|(h, r)| r.last_run.as_ref().map(|l| (h, l)))
        .filter(|(_, l)| l.state == "failed" || l.state == "interrupted")
        .max_by(|a, b| a.1.started.cmp(&b.1.started))
        .map(|(h, l)| {
            format!(
                "{} on {h} at {}{}",
                l.state,
                l.started,
                if l.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", l.reason)
                }
            )
        })
}

fn stamp_of(epoch: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(epoch)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| epoch.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(facts: &BTreeMap<String, HostFacts>) -> Judgment {
        judge_hosts(&["pg1", "pg2"], facts)
    }

    fn facts(report: &str) -> HostFacts {
        let mut f = HostFacts::default();
        f.probes.insert(
            probes::NAME.to_owned(),
            vec![
                "dir postgres postgres 700".to_owned(),
                format!("facts {report}"),
            ],
        );
        f
    }

    const GOOD: &str = r#"{"label": "20261202T010000Z", "state": "verified", "started": "2026-12-02T01:00:01Z", "finished": "2026-12-02T01:00:09Z"}"#;

    #[test]
    fn no_backup_is_drift() {
        let f = BTreeMap::from([
            ("pg1".to_owned(), facts(r#"{"backups": []}"#)),
            ("pg2".to_owned(), facts(r#"{"backups": []}"#)),
        ]);
        let j = judge(&f);
        assert!(j.newest_good.is_none());
        assert_eq!(j.drift.len(), 1, "{:?}", j.drift);
    }

    #[test]
    fn a_fresh_backup_whose_test_is_not_due_is_fine() {
        let report = format!(
            r#"{{"backups": [{GOOD}], "backup_fired": "2026-12-02T01:00:00Z", "test_fired": "2026-12-01T03:00:00Z"}}"#
        );
        let f = BTreeMap::from([
            ("pg1".to_owned(), facts(&report)),
            (
                "pg2".to_owned(),
                facts(r#"{"backups": [], "backup_fired": "2026-12-02T01:00:00Z"}"#),
            ),
        ]);
        let j = judge(&f);
        assert_eq!(j.newest_good.expect("good").label, "20261202T010000Z");
        assert!(j.drift.is_empty(), "{:?}", j.drift);
    }

    #[test]
    fn a_missed_run_and_a_due_test_are_drift() {
        let report = format!(
            r#"{{"backups": [{GOOD}], "backup_fired": "2026-12-03T01:00:00Z", "test_fired": "2026-12-02T03:00:00Z", "last_run": {{"state": "failed", "started": "2026-12-03T01:00:00Z", "reason": "pg_basebackup exited 1"}}}}"#
        );
        let f = BTreeMap::from([
            ("pg1".to_owned(), facts(&report)),
            ("pg2".to_owned(), facts(r#"{"backups": []}"#)),
        ]);
        let j = judge(&f);
        assert_eq!(j.drift.len(), 2, "{:?}", j.drift);
        assert!(
            j.drift[0].contains("pg_basebackup exited 1"),
            "{:?}",
            j.drift
        );
    }

    #[test]
    fn a_backup_that_failed_its_test_is_not_good_and_the_older_one_is_kept_as_newest() {
        let report = format!(
            r#"{{"backups": [{GOOD}, {{"label": "20261203T010000Z", "state": "verified", "started": "2026-12-03T01:00:01Z", "restore_test": {{"result": "failed", "reason": "checksum mismatch for file base/5/1259"}}}}]}}"#
        );
        let f = BTreeMap::from([
            ("pg1".to_owned(), facts(&report)),
            ("pg2".to_owned(), facts(r#"{"backups": []}"#)),
        ]);
        let j = judge(&f);
        assert_eq!(j.newest_good.expect("good").label, "20261202T010000Z");
        assert_eq!(j.broken.len(), 1);
        assert_eq!(
            j.drift.len(),
            1,
            "the newest backup is broken: {:?}",
            j.drift
        );
    }

    #[test]
    fn a_running_backup_is_no_drift() {
        let f = BTreeMap::from([
            (
                "pg1".to_owned(),
                facts(r#"{"backups": [], "running": true}"#),
            ),
            ("pg2".to_owned(), facts(r#"{"backups": []}"#)),
        ]);
        assert!(judge(&f).drift.is_empty());
    }
}
