//! haproxy's check timing, derived from the declared rto when it is tight (the routing
//! component renders it; the route's delay is computed from it).

use std::time::Duration;

use crate::model::Objectives;

/// haproxy's health check timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaproxyChecks {
    pub inter_ms: u64,
    pub fall: u64,
    pub rise: u64,
}

/// Below this rto the route's two seconds are worth halving.
const TIGHT_RTO: Duration = Duration::from_secs(40);
/// Checks more often than this load every member's health endpoint for little gain (a
/// call to the flavour's REST API, or a process of pgha's per check).
const MIN_INTER_MS: u64 = 500;

/// haproxy checks every second and takes a member out after two failures (a restart of the
/// health endpoint is no reason to cut sessions); with a tight rto every half second, so the
/// route costs 1 s of it instead of 2. One good answer brings a new primary in.
pub fn haproxy_checks(objectives: Option<&Objectives>) -> HaproxyChecks {
    let tight = objectives
        .and_then(|o| o.rto)
        .is_some_and(|rto| rto < TIGHT_RTO);
    HaproxyChecks {
        inter_ms: if tight { MIN_INTER_MS } else { 1000 },
        fall: 2,
        rise: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_checks_faster_only_for_a_tight_rto() {
        let rto = |s| Objectives {
            rto: Some(Duration::from_secs(s)),
            rpo: None,
        };
        assert_eq!(haproxy_checks(None).inter_ms, 1000);
        assert_eq!(haproxy_checks(Some(&rto(60))).inter_ms, 1000);
        assert_eq!(haproxy_checks(Some(&rto(40))).inter_ms, 1000);
        assert_eq!(haproxy_checks(Some(&rto(30))).inter_ms, 500);
        assert_eq!(haproxy_checks(Some(&rto(30))).fall, 2);
    }
}
