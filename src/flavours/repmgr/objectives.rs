//! repmgrd's monitoring timing derived from the declared rto.
//!
//! repmgrd checks its upstream every `monitor_interval_secs`; a failed check (up to
//! `connect_timeout` against a host that does not answer) starts `reconnect_attempts`
//! attempts (each up to `connect_timeout`) `reconnect_interval` apart; then the election and
//! the promotion. Detection ≈ monitor + connect_timeout + attempts × connect_timeout +
//! (attempts - 1) × interval: pgha's defaults 2/4/5 with connect_timeout 2 give 27 s and
//! measured a 29.3 s median failover.

use std::time::Duration;

use crate::flavours::objectives::{route_words, target, PROMOTION};
use crate::flavours::repmgr::config::Repmgr;
use crate::flavours::{FailoverTiming, Refusal, RouteDelay};
use crate::model::objectives::ceil_secs;

/// A restart of the primary (connections refused for a few seconds) must not be a failover:
/// the attempts after the first failed check span at least this long.
const RIDE_OUT: u64 = 5;
/// repmgr's own defaults: a generous rto buys tolerance up to them, never a slower failover.
const MAX_ATTEMPTS: u64 = 6;
const MAX_INTERVAL: u64 = 10;
/// Two attempts at least: one failed reconnection is not proof the primary is gone.
const MIN_ATTEMPTS: u64 = 2;
/// Shorter than this between attempts only hammers a host that is restarting.
const MIN_INTERVAL: u64 = 2;

/// monitor_interval_secs, reconnect_attempts, reconnect_interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub monitor_interval_secs: i64,
    pub reconnect_attempts: i64,
    pub reconnect_interval: i64,
}

/// Seconds from the primary's loss until repmgrd starts the election (`Repmgr::detection_seconds`
/// for settings not yet chosen).
pub fn detection(monitor: u64, attempts: u64, interval: u64, connect_timeout: u64) -> u64 {
    monitor + connect_timeout + attempts * connect_timeout + attempts.saturating_sub(1) * interval
}

/// The fastest failover that still rides out a restart of the primary.
pub fn least(route: &RouteDelay, connect_timeout: u64) -> u64 {
    detection(1, MIN_ATTEMPTS, RIDE_OUT, connect_timeout)
        + ceil_secs(PROMOTION)
        + ceil_secs(route.worst)
}

/// The most attempts (up to repmgr's 6) whose interval, within the budget, is at least 2 s
/// and spans the ride-out; the monitor interval stays at 2 s unless only 1 s fits.
fn fit(budget: u64, connect_timeout: u64) -> Option<Timing> {
    for monitor in [2, 1] {
        for attempts in (MIN_ATTEMPTS..=MAX_ATTEMPTS).rev() {
            let fixed = detection(monitor, attempts, 0, connect_timeout);
            let Some(left) = budget.checked_sub(fixed) else {
                continue;
            };
            let interval = (left / (attempts - 1)).min(MAX_INTERVAL);
            if interval >= MIN_INTERVAL && (attempts - 1) * interval >= RIDE_OUT {
                return Some(Timing {
                    monitor_interval_secs: monitor as i64,
                    reconnect_attempts: attempts as i64,
                    reconnect_interval: interval as i64,
                });
            }
        }
    }
    None
}

pub fn derive(rto: Duration, route: &RouteDelay, connect_timeout: u64) -> Result<Timing, Refusal> {
    let least = least(route, connect_timeout);
    let refusal = || {
        Refusal {
        objective: "rto",
        reason: format!(
            "repmgr cannot fail over in under {least} s here without promoting on a mere restart of the primary: monitor_interval_secs ≥ 1 + a failed check and {MIN_ATTEMPTS} reconnect attempts of up to connect_timeout {connect_timeout} s each, {RIDE_OUT} s apart, + ~{} s promotion + {}",
            ceil_secs(PROMOTION),
            route_words(route),
        ),
        best: format!("the best is rto: {least}s"),
    }
    };
    if rto.as_secs() < least {
        return Err(refusal());
    }
    let budget = target(rto, least) - ceil_secs(PROMOTION) - ceil_secs(route.worst);
    fit(budget, connect_timeout).ok_or_else(refusal)
}

/// The worst case with these settings, the route aside; None when repmgrd does not promote.
pub fn timing(r: &Repmgr) -> Option<FailoverTiming> {
    if r.failover != "automatic" {
        return None;
    }
    // The same sum as `detection` (the status footer's number).
    Some(FailoverTiming {
        detection: Duration::from_secs(u64::try_from(r.detection_seconds()).unwrap_or(0)),
        promotion: PROMOTION,
        settings: format!(
            "repmgr monitor_interval_secs {}, reconnect_attempts {}, reconnect_interval {} (connect_timeout {})",
            r.monitor_interval_secs, r.reconnect_attempts, r.reconnect_interval, r.connect_timeout
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(secs: u64) -> RouteDelay {
        RouteDelay {
            worst: Duration::from_secs(secs),
            how: "a route".to_owned(),
        }
    }

    fn t(monitor: i64, attempts: i64, interval: i64) -> Timing {
        Timing {
            monitor_interval_secs: monitor,
            reconnect_attempts: attempts,
            reconnect_interval: interval,
        }
    }

    #[test]
    fn pgha_defaults_give_the_measured_detection() {
        assert_eq!(detection(2, 4, 5, 2), 27);
        // repmgr's own 2 / 6 / 10 (measured 67.7 s).
        assert_eq!(detection(2, 6, 10, 2), 66);
    }

    #[test]
    fn derives_timing_from_the_rto() {
        for (rto, route_s, want) in [
            (25, 1, t(2, 4, 2)),
            (25, 0, t(2, 4, 2)),
            (25, 5, t(2, 2, 7)),
            (30, 1, t(2, 5, 2)),
            (30, 2, t(2, 5, 2)),
            (60, 2, t(2, 6, 6)),
            (60, 0, t(2, 6, 7)),
            (300, 2, t(2, 6, 10)),
        ] {
            let r = route(route_s);
            let got = derive(Duration::from_secs(rto), &r, 2).expect("fits");
            assert_eq!(got, want, "rto {rto}, route {route_s} s");
            let (m, a, i) = (
                got.monitor_interval_secs as u64,
                got.reconnect_attempts as u64,
                got.reconnect_interval as u64,
            );
            assert!(a >= 2 && (a - 1) * i >= RIDE_OUT);
            let worst = detection(m, a, i, 2) + 3 + route_s;
            assert!(worst <= rto, "rto {rto}: worst {worst}");
        }
    }

    #[test]
    fn refuses_an_rto_that_would_fail_over_on_a_restart() {
        // 1 + 2 + 2·2 + 5 = 12 s of detection, 3 s of promotion, 1 s of route.
        let r = derive(Duration::from_secs(15), &route(1), 2).unwrap_err();
        assert_eq!(r.objective, "rto");
        assert!(
            r.reason
                .starts_with("repmgr cannot fail over in under 16 s"),
            "{}",
            r.reason
        );
        assert_eq!(r.best, "the best is rto: 16s");
        assert!(derive(Duration::from_secs(16), &route(1), 2).is_ok());
        // A longer connect timeout costs each attempt more.
        assert_eq!(
            derive(Duration::from_secs(16), &route(1), 5)
                .unwrap_err()
                .best,
            "the best is rto: 25s"
        );
    }
}
